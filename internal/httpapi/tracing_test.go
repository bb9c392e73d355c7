package httpapi_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/notificationservice/notificationservice/internal/app"
	"github.com/notificationservice/notificationservice/internal/config"
	"github.com/notificationservice/notificationservice/internal/rabbitmq"
	"github.com/notificationservice/notificationservice/internal/testdb"
)

// spansOf returns the recorded spans of one trace.
func spansOf(exp *tracetest.InMemoryExporter, traceID string) []tracetest.SpanStub {
	var out []tracetest.SpanStub
	for _, s := range exp.GetSpans() {
		if s.SpanContext.TraceID().String() == traceID {
			out = append(out, s)
		}
	}
	return out
}

func findSpan(spans []tracetest.SpanStub, pred func(tracetest.SpanStub) bool) (tracetest.SpanStub, bool) {
	for _, s := range spans {
		if pred(s) {
			return s, true
		}
	}
	return tracetest.SpanStub{}, false
}

func named(name string) func(tracetest.SpanStub) bool {
	return func(s tracetest.SpanStub) bool { return s.Name == name }
}

// TestOneTraceFromTheRequestToTheProviderAndTheEnvelope follows one trace id
// from a REST send (the caller's traceparent header) through the server
// span, the statements of its transaction, the notification row, the
// worker's provider call and the envelope's detail, to the EventBridge (log
// sink) publish that links back to it; the log lines of the request and of
// the delivery carry the same trace id.
func TestOneTraceFromTheRequestToTheProviderAndTheEnvelope(t *testing.T) {
	t.Parallel()
	exp := tracetest.NewInMemoryExporter()
	var logs syncBuffer
	api := serveAPI(t, "postgres", &logs, []app.Option{app.WithSpanExporter(exp)})
	cid, _ := seedInvite(t, api.testAPI)

	const traceID = "4bf92f3577b34da6a3ce929d0e0e4736"
	req, err := http.NewRequest(http.MethodPost, fmt.Sprintf("%s/v1/collections/%d/notifications", api.URL, cid),
		strings.NewReader(`{"notification": [{"name": "USER_INVITEUSER", "recipients": [{"email": "ann@example.com", "macros": {"FNAME": "Ann"}}]}]}`))
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+api.superAdmin())
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("traceparent", "00-"+traceID+"-00f067aa0ba902b7-01")
	addIdempotencyKey(req)
	res, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	require.NoError(t, res.Body.Close())
	require.Equal(t, http.StatusAccepted, res.StatusCode)

	// The delivery is sent and the envelope published.
	var spans []tracetest.SpanStub
	require.Eventually(t, func() bool {
		spans = spansOf(exp, traceID)
		_, sent := findSpan(spans, named("send email"))
		_, published := findSpan(exp.GetSpans(), named("outbox publish"))
		return sent && published
	}, 30*time.Second, 20*time.Millisecond)

	server, ok := findSpan(spans, named("POST /v1/collections/:collectionId/notifications"))
	require.True(t, ok, "the server span continues the caller's trace")
	require.Equal(t, "00f067aa0ba902b7", server.Parent.SpanID().String())
	traceparent := "00-" + traceID + "-" + server.SpanContext.SpanID().String() + "-01"
	require.Equal(t, traceparent, res.Header.Get("traceresponse"), "the client learns the trace")

	// The transaction's statements are spans of the request.
	stmt, ok := findSpan(spans, func(s tracetest.SpanStub) bool {
		return strings.HasPrefix(s.Name, "db.") && s.Parent.SpanID() == server.SpanContext.SpanID() &&
			strings.Contains(spanAttr(s, "db.query.text"), "INSERT INTO notifications")
	})
	require.True(t, ok, "the notification insert is a child of the request span")
	require.Equal(t, "postgresql", spanAttr(stmt, "db.system.name"))

	// The notification keeps the request's context; the provider call is its
	// child, in the same trace.
	var stored string
	require.NoError(t, api.DB.Raw("SELECT trace_parent FROM notifications").Scan(&stored).Error)
	require.Equal(t, traceparent, stored)
	send, _ := findSpan(spans, named("send email"))
	require.Equal(t, server.SpanContext.SpanID(), send.Parent.SpanID())
	require.Equal(t, "sandbox", spanAttr(send, "notify.provider"))
	require.Equal(t, trace.SpanKindClient, send.SpanKind)

	// The envelope's detail carries it, and the publish links to it.
	var detail string
	require.NoError(t, api.DB.Raw("SELECT detail FROM outbox WHERE detail_type = 'notificationservice/notifications/send'").Scan(&detail).Error)
	var d struct {
		TraceParent string `json:"traceparent"`
	}
	require.NoError(t, json.Unmarshal([]byte(detail), &d))
	require.Equal(t, traceparent, d.TraceParent)
	publish, _ := findSpan(exp.GetSpans(), func(s tracetest.SpanStub) bool {
		if s.Name != "outbox publish" {
			return false
		}
		for _, l := range s.Links {
			if l.SpanContext.TraceID().String() == traceID {
				return true
			}
		}
		return false
	})
	require.Equal(t, "log", spanAttr(publish, "notify.sink"))

	// And the log lines of the request and the delivery name the trace.
	require.Eventually(t, func() bool {
		out := logs.String()
		return strings.Contains(out, `"msg":"http request"`) && strings.Contains(out, `"msg":"delivery accepted by provider"`)
	}, 10*time.Second, 20*time.Millisecond)
	for _, line := range strings.Split(logs.String(), "\n") {
		if strings.Contains(line, `"msg":"http request"`) && strings.Contains(line, `"route":"/v1/collections/:collectionId/notifications"`) ||
			strings.Contains(line, `"msg":"delivery accepted by provider"`) {
			require.Contains(t, line, `"traceId":"`+traceID+`"`, line)
		}
	}
}

// TestOneTraceFromAnAMQPMessageToTheProviderCall follows one trace id from a
// NotificationQueue message (its traceparent header) through the consumer's
// span, the statements of the intake transaction and the notification row to
// the provider calls. Queue messages record no envelope (the catalogue has
// the send envelope for the REST call only), so the envelope leg is the REST
// test's.
func TestOneTraceFromAnAMQPMessageToTheProviderCall(t *testing.T) {
	t.Parallel()
	conn, err := amqp.Dial("amqp://guest:guest@127.0.0.1:5672/")
	if err != nil {
		testdb.Unavailable(t, "RabbitMQ", err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	prefix := testdb.Name("trace_")
	exp := tracetest.NewInMemoryExporter()
	var logs syncBuffer
	api := serveAPI(t, "postgres", &logs, []app.Option{app.WithSpanExporter(exp)}, func(c *config.Config) {
		c.AMQP.Enabled = true
		c.AMQP.URL = "amqp://guest:guest@127.0.0.1:5672/"
		c.AMQP.Exchange, c.AMQP.Queue, c.AMQP.RoutingKey = prefix+".ex", prefix+".q", prefix+".q"
		c.AMQP.DeadLetterExchange, c.AMQP.DeadLetterQueue = prefix+".dlx", prefix+".dlq"
		c.AMQP.Consumers = 1
	})
	t.Cleanup(func() {
		ch, err := conn.Channel()
		if err != nil {
			return
		}
		_, _ = ch.QueueDelete(prefix+".q", false, false, false)
		_, _ = ch.QueueDelete(prefix+".dlq", false, false, false)
		_ = ch.ExchangeDelete(prefix+".ex", false, false)
		_ = ch.ExchangeDelete(prefix+".dlx", false, false)
	})
	cid, _ := seedInvite(t, api.testAPI)
	require.Eventually(t, func() bool {
		var body map[string]any
		res := api.do(http.MethodGet, "/readyz", "", nil)
		body = res.JSON
		checks, _ := body["checks"].(map[string]any)
		return checks["rabbitmq"] == "ok"
	}, 30*time.Second, 20*time.Millisecond, "the consumer never came up")

	const traceID = "0af7651916cd43dd8448eb211c80319c"
	ch, err := conn.Channel()
	require.NoError(t, err)
	require.NoError(t, ch.Confirm(false))
	body := fmt.Sprintf(`{"collectionId": %d, "notification": [{"name": "USER_INVITEUSER", "recipients": [{"email": "bo@example.com", "macros": {"FNAME": "Bo"}}]}]}`, cid)
	dc, err := ch.PublishWithDeferredConfirmWithContext(context.Background(), prefix+".ex", prefix+".q", true, false, amqp.Publishing{
		MessageId: "traced-1", ContentType: "application/json", DeliveryMode: amqp.Persistent, Body: []byte(body),
		Headers: amqp.Table{rabbitmq.HeaderTraceParent: "00-" + traceID + "-b7ad6b7169203331-01"},
	})
	require.NoError(t, err)
	require.True(t, dc.Wait())

	var spans []tracetest.SpanStub
	require.Eventually(t, func() bool {
		spans = spansOf(exp, traceID)
		_, sent := findSpan(spans, named("send email"))
		return sent
	}, 30*time.Second, 20*time.Millisecond)

	process, ok := findSpan(spans, named("process "+prefix+".q"))
	require.True(t, ok)
	require.Equal(t, "b7ad6b7169203331", process.Parent.SpanID().String(), "the consumer's span is the producer's child")
	_, ok = findSpan(spans, func(s tracetest.SpanStub) bool {
		return strings.HasPrefix(s.Name, "db.") && s.Parent.SpanID() == process.SpanContext.SpanID() &&
			strings.Contains(spanAttr(s, "db.query.text"), "INSERT INTO notifications")
	})
	require.True(t, ok, "the intake transaction runs under the message's span")
	send, _ := findSpan(spans, named("send email"))
	require.Equal(t, process.SpanContext.SpanID(), send.Parent.SpanID(), "the provider call is the message's child")

	var stored string
	require.NoError(t, api.DB.Raw("SELECT trace_parent FROM notifications").Scan(&stored).Error)
	require.Equal(t, "00-"+traceID+"-"+process.SpanContext.SpanID().String()+"-01", stored)
}

func spanAttr(s tracetest.SpanStub, key string) string {
	for _, a := range s.Attributes {
		if string(a.Key) == key {
			return a.Value.String()
		}
	}
	return ""
}
