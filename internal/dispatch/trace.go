package dispatch

import (
	"context"

	"go.opentelemetry.io/otel/propagation"
)

// traceParent is the W3C traceparent of the span in ctx, or "" when ctx
// carries none.
func traceParent(ctx context.Context) string {
	c := propagation.MapCarrier{}
	propagation.TraceContext{}.Inject(ctx, c)
	return c["traceparent"]
}

// withTraceParent returns ctx with the span context traceparent names as its
// remote parent, so spans started under it (the provider call) join that
// trace; an empty or malformed value leaves ctx as it is.
func withTraceParent(ctx context.Context, traceparent string) context.Context {
	if traceparent == "" {
		return ctx
	}
	return propagation.TraceContext{}.Extract(ctx, propagation.MapCarrier{"traceparent": traceparent})
}
