package intake

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
