package tracing

import (
	"context"
	"encoding/json"
	"strconv"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/notificationservice/notificationservice/internal/apperr"
	"github.com/notificationservice/notificationservice/internal/channels"
	"github.com/notificationservice/notificationservice/internal/outbox"
)

// Channel wraps ch so every Send is a client span "send <channel>" under the
// span in ctx (the dispatch worker parents it on the trace of the request or
// message that created the notification). The span names the provider, the
// delivery and notification ids, and records each refused message as an
// event with its class and reason; never an address or a body. It is a
// channels.Middleware: channels.Wrap keeps ch's capabilities.
func (t *Tracing) Channel(ch channels.Channel) channels.Channel {
	return channels.Wrap(ch, (&channel{next: ch, tracer: t.tracer, off: !t.Enabled()}).Send)
}

type channel struct {
	next   channels.Channel
	tracer trace.Tracer
	// off: tracing is off, and the no-op tracer's span would only carry
	// the span context ctx already holds (the provider call still joins
	// the trace in ctx), so Send skips it: its ids and attributes were
	// about 1.4% of the drain's CPU for nothing (issue 17).
	off bool
}

func (c *channel) Send(ctx context.Context, msgs []channels.Message) []channels.Result {
	if len(msgs) == 0 || c.off {
		return c.next.Send(ctx, msgs)
	}
	provider := c.next.Name()
	deliveries := make([]int64, len(msgs))
	notifications := make([]int64, 0, 1)
	for i, m := range msgs {
		deliveries[i] = m.DeliveryID
		if n := len(notifications); n == 0 || notifications[n-1] != m.NotificationID {
			notifications = append(notifications, m.NotificationID)
		}
	}
	ctx, span := c.tracer.Start(ctx, "send "+msgs[0].Channel,
		trace.WithSpanKind(trace.SpanKindClient),
		trace.WithAttributes(
			attribute.String("notify.provider", provider),
			attribute.String("notify.channel", msgs[0].Channel),
			attribute.Int("notify.messages", len(msgs)),
			attribute.Int64Slice("notify.delivery_ids", deliveries),
			attribute.Int64Slice("notify.notification_ids", notifications),
		))
	defer span.End()
	res := c.next.Send(ctx, msgs)
	failed := 0
	for i, r := range res {
		if r.Err == nil || i >= len(msgs) {
			continue
		}
		failed++
		e := channels.Classify(provider, r.Err)
		class := "retryable"
		if e.Permanent {
			class = "permanent"
		}
		span.AddEvent("message refused", trace.WithAttributes(
			attribute.Int64("notify.delivery_id", msgs[i].DeliveryID),
			attribute.String("notify.error_class", class),
			attribute.String("notify.reason", apperr.Truncate(e.Reason, 300)),
		))
	}
	if failed > 0 {
		span.SetStatus(codes.Error, strconv.Itoa(failed)+" of "+strconv.Itoa(len(msgs))+" messages refused")
	}
	return res
}

// Sink wraps s, the outbox sink named name, so every Put is a producer span
// "outbox publish". The relay sends envelopes of many requests in one call,
// so the span is not a child of any of them: it links to the trace each
// envelope's detail carries (its traceparent field).
func (t *Tracing) Sink(name string, s outbox.Sink) outbox.Sink {
	// With tracing off the span would be the no-op tracer's and its links
	// nobody's: s is returned as it is. Finding the links decodes every
	// envelope's detail, about 1.4% of the service's CPU in the REST send
	// (issue 17). The relay's ctx carries no trace of its own to pass on.
	if !t.Enabled() {
		return s
	}
	return &sink{next: s, name: name, tracer: t.tracer}
}

type sink struct {
	next   outbox.Sink
	name   string
	tracer trace.Tracer
}

func (s *sink) Put(ctx context.Context, entries []outbox.Entry) ([]error, error) {
	var links []trace.Link
	ids := make([]string, len(entries))
	for i, e := range entries {
		ids[i] = e.EnvelopeID
		var d struct {
			TraceParent string `json:"traceparent"`
		}
		if json.Unmarshal([]byte(e.Detail), &d) != nil || d.TraceParent == "" {
			continue
		}
		sc := trace.SpanContextFromContext(propagation.TraceContext{}.Extract(context.Background(),
			propagation.MapCarrier{"traceparent": d.TraceParent}))
		if sc.IsValid() {
			links = append(links, trace.Link{SpanContext: sc, Attributes: []attribute.KeyValue{attribute.String("notify.envelope_id", e.EnvelopeID)}})
		}
	}
	ctx, span := s.tracer.Start(ctx, "outbox publish",
		trace.WithSpanKind(trace.SpanKindProducer),
		trace.WithLinks(links...),
		trace.WithAttributes(
			attribute.String("notify.sink", s.name),
			attribute.Int("notify.entries", len(entries)),
			attribute.StringSlice("notify.envelope_ids", ids),
		))
	defer span.End()
	errs, err := s.next.Put(ctx, entries)
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, "sink call failed")
		return errs, err
	}
	failed := 0
	for i, e := range errs {
		if e != nil && i < len(entries) {
			failed++
			span.AddEvent("entry refused", trace.WithAttributes(
				attribute.String("notify.envelope_id", entries[i].EnvelopeID),
				attribute.String("notify.error", apperr.Truncate(e.Error(), 300)),
			))
		}
	}
	if failed > 0 {
		span.SetStatus(codes.Error, strconv.Itoa(failed)+" entries refused")
	}
	return errs, err
}
