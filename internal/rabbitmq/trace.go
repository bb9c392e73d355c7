package rabbitmq

import (
	"context"

	amqp "github.com/rabbitmq/amqp091-go"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// W3C trace context headers (https://www.w3.org/TR/trace-context/), read
// from every message and written on every message the consumer publishes.
const (
	HeaderTraceParent = "traceparent"
	HeaderTraceState  = "tracestate"
)

// headerCarrier reads and writes W3C trace context in AMQP headers.
type headerCarrier amqp.Table

func (h headerCarrier) Get(key string) string { return headerString(h[key]) }

func (h headerCarrier) Set(key, value string) { h[key] = value }

func (h headerCarrier) Keys() []string {
	keys := make([]string, 0, len(h))
	for k := range h {
		keys = append(keys, k)
	}
	return keys
}

var traceContext = propagation.TraceContext{}

// batchTrace is the tracing of one batch: a consumer span per message,
// continuing the producer's trace when the message carries a traceparent
// header, and the context the batch's transaction runs in.
type batchTrace struct {
	tracer trace.Tracer
	queue  string
	spans  map[uint64]trace.Span // by delivery tag
	order  []trace.Span
}

// traceMessages starts a "process <queue>" span per message. With tracing
// off (a no-op tracer) the spans record nothing but still carry the
// producer's trace context on, to the notification and its provider calls.
func (c *Consumer) traceMessages(ctx context.Context, batch []amqp.Delivery) *batchTrace {
	bt := &batchTrace{tracer: c.Tracer, queue: c.cfg.Queue, spans: make(map[uint64]trace.Span, len(batch))}
	for i := range batch {
		d := &batch[i]
		mctx := traceContext.Extract(ctx, headerCarrier(d.Headers))
		_, span := c.Tracer.Start(mctx, "process "+c.cfg.Queue,
			trace.WithSpanKind(trace.SpanKindConsumer),
			trace.WithAttributes(
				attribute.String("messaging.system", "rabbitmq"),
				attribute.String("messaging.operation.name", "process"),
				attribute.String("messaging.destination.name", c.cfg.Queue),
				attribute.String("messaging.message.id", d.MessageId),
				attribute.Bool("messaging.rabbitmq.redelivered", d.Redelivered),
			))
		bt.spans[d.DeliveryTag] = span
		bt.order = append(bt.order, span)
	}
	return bt
}

// traceParent is the traceparent the notification created from d keeps.
func (bt *batchTrace) traceParent(d *amqp.Delivery) string {
	c := propagation.MapCarrier{}
	traceContext.Inject(trace.ContextWithSpan(context.Background(), bt.spans[d.DeliveryTag]), c)
	return c[HeaderTraceParent]
}

// context returns ctx with d's span, for what is done about d alone (its
// dead-lettering).
func (bt *batchTrace) context(ctx context.Context, d *amqp.Delivery) context.Context {
	return trace.ContextWithSpan(ctx, bt.spans[d.DeliveryTag])
}

// commit returns ctx and hctx (the two contexts submit takes) under the span
// of the batch's transaction, so its statements are traced: the message's
// own span for a batch of one, else an "intake <queue>" span linked to every
// message's span.
func (bt *batchTrace) commit(ctx, hctx context.Context) (context.Context, context.Context, func()) {
	if len(bt.order) == 1 {
		s := bt.order[0]
		return trace.ContextWithSpan(ctx, s), trace.ContextWithSpan(hctx, s), func() {}
	}
	links := make([]trace.Link, len(bt.order))
	for i, s := range bt.order {
		links[i] = trace.Link{SpanContext: s.SpanContext()}
	}
	// A new root: the messages belong to as many traces as there are messages.
	_, span := bt.tracer.Start(context.Background(), "intake "+bt.queue,
		trace.WithNewRoot(), trace.WithLinks(links...),
		trace.WithAttributes(attribute.Int("messaging.batch.message_count", len(bt.order))))
	return trace.ContextWithSpan(ctx, span), trace.ContextWithSpan(hctx, span), func() { span.End() }
}

// end ends every message span.
func (bt *batchTrace) end() {
	for _, s := range bt.order {
		s.End()
	}
}

// injectTrace writes the trace context of the span in ctx into headers,
// replacing what the message carried, so a consumer of the dead-letter
// queue continues the trace; it also notes the dead-lettering on the span.
func injectTrace(ctx context.Context, headers amqp.Table, reason string) {
	trace.SpanFromContext(ctx).SetAttributes(attribute.String("notify.dead_letter_reason", reason))
	traceContext.Inject(ctx, headerCarrier(headers))
}
