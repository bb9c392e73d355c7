package tracing

import (
	"fmt"
	"net/http"

	"github.com/gin-gonic/gin"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// traceparentKey is the W3C traceparent header in canonical form, as the
// server stores it, so the check for it canonicalises nothing.
const traceparentKey = "Traceparent"

// HTTP is Gin middleware that continues the caller's trace (the traceparent
// header) or starts one, with a server span per request named after the
// route template ("POST /v1/collections/:collectionId/notifications"). The
// request's context carries the span, so the database statements, the
// envelope the request records and the log lines it writes belong to it. The
// response carries the trace id in the traceresponse header, so a client can
// quote it.
//
// With tracing off and no trace to continue there is nothing to record or
// pass on (the no-op span of a request without a parent is invalid, so no
// traceresponse either), and the request goes straight through: starting a
// no-op span still cost its name, its options, a context and a copy of the
// request (eight allocations) on every request.
func (t *Tracing) HTTP(c *gin.Context) {
	r := c.Request
	if t.sdk == nil && len(r.Header[traceparentKey]) == 0 && !trace.SpanContextFromContext(r.Context()).IsValid() {
		c.Next()
		return
	}
	ctx := t.prop.Extract(r.Context(), propagation.HeaderCarrier(r.Header))
	route := c.FullPath()
	name := r.Method + " " + route
	if route == "" {
		name = r.Method + " unmatched"
	}
	ctx, span := t.tracer.Start(ctx, name,
		trace.WithSpanKind(trace.SpanKindServer),
		trace.WithAttributes(
			attribute.String("http.request.method", r.Method),
			attribute.String("http.route", route),
			attribute.String("url.path", r.URL.Path),
		))
	defer span.End()
	if sc := span.SpanContext(); sc.IsValid() {
		c.Header("traceresponse", fmt.Sprintf("00-%s-%s-%s", sc.TraceID(), sc.SpanID(), sc.TraceFlags()))
	}
	c.Request = r.WithContext(ctx)
	c.Next()
	status := c.Writer.Status()
	span.SetAttributes(attribute.Int("http.response.status_code", status))
	if status >= http.StatusInternalServerError {
		span.SetStatus(codes.Error, http.StatusText(status))
	}
}
