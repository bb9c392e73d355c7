package rabbitmq_test

import (
	"context"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/stretchr/testify/require"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/notificationservice/notificationservice/internal/config"
	"github.com/notificationservice/notificationservice/internal/rabbitmq"
	"github.com/notificationservice/notificationservice/internal/testdb"
)

// startTraced runs a consumer whose spans go to exp.
func (e *env) startTraced(exp *tracetest.InMemoryExporter) {
	e.t.Helper()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	e.consumer = rabbitmq.New(e.cfg, e.intake, nil, discard())
	e.consumer.Name = testdb.Name("nstest-")
	e.consumer.Tracer = tp.Tracer("test")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = e.consumer.Run(ctx); close(done) }()
	e.t.Cleanup(func() { cancel(); <-done; _ = tp.Shutdown(context.Background()) })
	require.Eventually(e.t, func() bool { return e.consumer.Ready(context.Background()) == nil }, 20*time.Second, 10*time.Millisecond)
}

func processSpan(t *testing.T, exp *tracetest.InMemoryExporter, messageID string) (tracetest.SpanStub, bool) {
	t.Helper()
	for _, s := range exp.GetSpans() {
		for _, a := range s.Attributes {
			if a.Key == "messaging.message.id" && a.Value.AsString() == messageID {
				return s, true
			}
		}
	}
	return tracetest.SpanStub{}, false
}

// The consumer continues the producer's trace from the traceparent header:
// the message's span is its child, the notification keeps that span as the
// parent of its provider calls, and a dead-lettered copy carries the trace
// on.
func TestConsumerContinuesTheProducersTrace(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(c *config.AMQP) { c.Consumers = 1 })
	exp := tracetest.NewInMemoryExporter()
	e.startTraced(exp)

	const good = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	const bad = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
	e.publish(e.message(1), amqp.Publishing{MessageId: "traced", Headers: amqp.Table{rabbitmq.HeaderTraceParent: good}})
	require.Eventually(t, func() bool { return e.count("SELECT COUNT(*) FROM notifications") == 1 }, 20*time.Second, 10*time.Millisecond)

	var s tracetest.SpanStub
	require.Eventually(t, func() bool { var ok bool; s, ok = processSpan(t, exp, "traced"); return ok }, 10*time.Second, 10*time.Millisecond)
	require.Equal(t, "process "+e.cfg.Queue, s.Name)
	require.Equal(t, trace.SpanKindConsumer, s.SpanKind)
	require.Equal(t, "4bf92f3577b34da6a3ce929d0e0e4736", s.SpanContext.TraceID().String())
	require.Equal(t, "00f067aa0ba902b7", s.Parent.SpanID().String())
	require.True(t, s.Parent.IsRemote())

	var stored string
	require.NoError(t, e.db.Raw("SELECT trace_parent FROM notifications").Scan(&stored).Error)
	require.Equal(t, "00-4bf92f3577b34da6a3ce929d0e0e4736-"+s.SpanContext.SpanID().String()+"-01", stored)

	// Poison with a trace: the dead-lettered copy carries the trace, with the
	// consumer's span as the parent.
	e.publish([]byte("not json"), amqp.Publishing{MessageId: "poison", Headers: amqp.Table{rabbitmq.HeaderTraceParent: bad}})
	dead := e.deadLetters(1)
	require.Len(t, dead, 1)
	var ps tracetest.SpanStub
	require.Eventually(t, func() bool { var ok bool; ps, ok = processSpan(t, exp, "poison"); return ok }, 10*time.Second, 10*time.Millisecond)
	require.Equal(t, "0af7651916cd43dd8448eb211c80319c", ps.SpanContext.TraceID().String())
	require.Equal(t, "00-0af7651916cd43dd8448eb211c80319c-"+ps.SpanContext.SpanID().String()+"-01", dead[0].Headers[rabbitmq.HeaderTraceParent])
}
