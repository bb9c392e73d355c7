package delivery

import (
	"context"

	"go.opentelemetry.io/otel/propagation"
)

// withTraceParent returns ctx with the span context traceparent names as its
// remote parent, so spans started under it (the provider call) join that
// trace; an empty or malformed value leaves ctx as it is.
func withTraceParent(ctx context.Context, traceparent string) context.Context {
	if traceparent == "" {
		return ctx
	}
	return propagation.TraceContext{}.Extract(ctx, propagation.MapCarrier{"traceparent": traceparent})
}
