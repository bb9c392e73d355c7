package tracing_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/gin-gonic/gin"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"gorm.io/gorm"

	"github.com/notificationservice/notificationservice/internal/channels"
	"github.com/notificationservice/notificationservice/internal/config"
	"github.com/notificationservice/notificationservice/internal/outbox"
	"github.com/notificationservice/notificationservice/internal/testalloc"
	"github.com/notificationservice/notificationservice/internal/testdb"
	"github.com/notificationservice/notificationservice/internal/tracing"
)

const parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"

func newTracing(t *testing.T) (*tracing.Tracing, *tracetest.InMemoryExporter) {
	t.Helper()
	exp := tracetest.NewInMemoryExporter()
	tr := tracing.NewWithExporter(exp, "notificationservice", "test")
	t.Cleanup(func() { _ = tr.Shutdown(context.Background()) })
	return tr, exp
}

func spanNamed(t *testing.T, exp *tracetest.InMemoryExporter, name string) tracetest.SpanStub {
	t.Helper()
	for _, s := range exp.GetSpans() {
		if s.Name == name {
			return s
		}
	}
	require.Failf(t, "no span", "no span named %q among %d", name, len(exp.GetSpans()))
	return tracetest.SpanStub{}
}

func attr(s tracetest.SpanStub, key string) attribute.Value {
	for _, a := range s.Attributes {
		if string(a.Key) == key {
			return a.Value
		}
	}
	return attribute.Value{}
}

func TestHTTPContinuesTheCallersTrace(t *testing.T) {
	t.Parallel()
	tr, exp := newTracing(t)
	gin.SetMode(gin.ReleaseMode)
	e := gin.New()
	e.Use(tr.HTTP)
	var inHandler string
	e.GET("/v1/collections/:collectionId", func(c *gin.Context) {
		inHandler = tracing.TraceParent(c.Request.Context())
		c.Status(http.StatusInternalServerError)
	})
	req := httptest.NewRequest(http.MethodGet, "/v1/collections/42", nil)
	req.Header.Set("traceparent", parent)
	rec := httptest.NewRecorder()
	e.ServeHTTP(rec, req)

	s := spanNamed(t, exp, "GET /v1/collections/:collectionId")
	require.Equal(t, "4bf92f3577b34da6a3ce929d0e0e4736", s.SpanContext.TraceID().String())
	require.Equal(t, "00f067aa0ba902b7", s.Parent.SpanID().String())
	require.True(t, s.Parent.IsRemote())
	require.Equal(t, trace.SpanKindServer, s.SpanKind)
	require.EqualValues(t, 500, attr(s, "http.response.status_code").AsInt64())
	require.Equal(t, "/v1/collections/:collectionId", attr(s, "http.route").AsString())
	require.Equal(t, codes.Error, s.Status.Code)
	require.Equal(t, "00-4bf92f3577b34da6a3ce929d0e0e4736-"+s.SpanContext.SpanID().String()+"-01", inHandler, "the handler's context carries the server span")
	require.Equal(t, inHandler, rec.Header().Get("traceresponse"))
}

func TestNoopTracingStillPassesTraceContextOn(t *testing.T) {
	t.Parallel()
	tr, err := tracing.New(context.Background(), config.Default().Tracing, "test")
	require.NoError(t, err)
	require.False(t, tr.Enabled())
	gin.SetMode(gin.ReleaseMode)
	e := gin.New()
	e.Use(tr.HTTP)
	var inHandler string
	e.GET("/x", func(c *gin.Context) { inHandler = tracing.TraceParent(c.Request.Context()) })
	req := httptest.NewRequest(http.MethodGet, "/x", nil)
	req.Header.Set("traceparent", parent)
	e.ServeHTTP(httptest.NewRecorder(), req)
	require.Equal(t, parent, inHandler, "with tracing off the caller's context reaches the envelope and the provider call unchanged")
}

func TestTraceParentRoundTrip(t *testing.T) {
	t.Parallel()
	ctx := tracing.WithTraceParent(context.Background(), parent)
	require.Equal(t, parent, tracing.TraceParent(ctx))
	require.Equal(t, "", tracing.TraceParent(context.Background()))
	require.Equal(t, "", tracing.TraceParent(tracing.WithTraceParent(context.Background(), "garbage")))
}

func TestGormPluginRecordsStatementsUnderASpanOnly(t *testing.T) {
	t.Parallel()
	tr, exp := newTracing(t)
	db, _ := testdb.SQLite(t)
	require.NoError(t, db.Use(tr.GormPlugin("sqlite")))

	// No span in the context (an idle poll): nothing recorded.
	require.NoError(t, db.Exec("SELECT 1").Error)
	require.Empty(t, exp.GetSpans())

	ctx, root := tr.Tracer().Start(context.Background(), "request")
	var n int64
	require.NoError(t, db.WithContext(ctx).Raw("SELECT COUNT(*) FROM outbox WHERE id > ?", 5).Scan(&n).Error)
	err := db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		return tx.Exec("INSERT INTO nowhere VALUES (1)").Error
	})
	require.Error(t, err)
	root.End()

	spans := exp.GetSpans()
	var stmts []tracetest.SpanStub
	for _, s := range spans {
		if s.Name != "request" {
			stmts = append(stmts, s)
		}
	}
	require.Len(t, stmts, 2)
	for _, s := range stmts {
		require.Equal(t, root.SpanContext().SpanID(), s.Parent.SpanID())
		require.Equal(t, "sqlite", attr(s, "db.system.name").AsString())
		require.Equal(t, trace.SpanKindClient, s.SpanKind)
	}
	require.Equal(t, "SELECT COUNT(*) FROM outbox WHERE id > ?", attr(stmts[0], "db.query.text").AsString(), "placeholders, never values")
	require.Equal(t, codes.Unset, stmts[0].Status.Code)
	require.Equal(t, codes.Error, stmts[1].Status.Code)
}

type fakeChannel struct{}

func (fakeChannel) Name() string { return "fakeprovider" }

func (fakeChannel) Send(_ context.Context, msgs []channels.Message) []channels.Result {
	out := make([]channels.Result, len(msgs))
	out[len(msgs)-1].Err = channels.Permanent("fakeprovider", "unknown template", nil)
	return out
}

type fakeReconciler struct{ fakeChannel }

func (fakeReconciler) Accepted(context.Context, []channels.InDoubt) (map[int64]string, error) {
	return nil, nil
}

func TestChannelSpanIsAChildOfTheNotificationsTrace(t *testing.T) {
	t.Parallel()
	tr, exp := newTracing(t)
	ch := tr.Channel(fakeChannel{})
	ctx := tracing.WithTraceParent(context.Background(), parent)
	ch.Send(ctx, []channels.Message{
		{DeliveryID: 1, NotificationID: 10, Channel: "email", To: []channels.Address{{Email: "jane@example.com"}}},
		{DeliveryID: 2, NotificationID: 10, Channel: "email"},
	})
	s := spanNamed(t, exp, "send email")
	require.Equal(t, "4bf92f3577b34da6a3ce929d0e0e4736", s.SpanContext.TraceID().String())
	require.Equal(t, trace.SpanKindClient, s.SpanKind)
	require.Equal(t, "fakeprovider", attr(s, "notify.provider").AsString())
	require.Equal(t, []int64{1, 2}, attr(s, "notify.delivery_ids").AsInt64Slice())
	require.Equal(t, []int64{10}, attr(s, "notify.notification_ids").AsInt64Slice())
	require.Equal(t, codes.Error, s.Status.Code)
	require.Len(t, s.Events, 1)
	for _, a := range s.Attributes {
		require.NotContains(t, a.Value.String(), "jane@example.com", "no address on a span")
	}

	_, ok := ch.(channels.Reconciler)
	require.False(t, ok)
	_, ok = tr.Channel(fakeReconciler{}).(channels.Reconciler)
	require.True(t, ok, "the wrapper keeps the sandbox's Accepted")
}

type okSink struct{}

func (okSink) Put(_ context.Context, entries []outbox.Entry) ([]error, error) {
	return make([]error, len(entries)), nil
}

func TestSinkSpanLinksToTheEnvelopesTraces(t *testing.T) {
	t.Parallel()
	tr, exp := newTracing(t)
	other := "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
	_, err := tr.Sink("eventbridge", okSink{}).Put(context.Background(), []outbox.Entry{
		{EnvelopeID: "e1", Detail: `{"id":"1","traceparent":"` + parent + `"}`},
		{EnvelopeID: "e2", Detail: `{"id":"2"}`},
		{EnvelopeID: "e3", Detail: `{"id":"3","traceparent":"` + other + `"}`},
	})
	require.NoError(t, err)
	s := spanNamed(t, exp, "outbox publish")
	require.Equal(t, trace.SpanKindProducer, s.SpanKind)
	require.Len(t, s.Links, 2)
	require.Equal(t, "4bf92f3577b34da6a3ce929d0e0e4736", s.Links[0].SpanContext.TraceID().String())
	require.Equal(t, "0af7651916cd43dd8448eb211c80319c", s.Links[1].SpanContext.TraceID().String())
	require.Equal(t, []string{"e1", "e2", "e3"}, attr(s, "notify.envelope_ids").AsStringSlice())
}

// With tracing off, the sink is the one given: no span, and no envelope's
// detail decoded to find the links nobody records.
func TestSinkWithTracingOffIsTheSinkItself(t *testing.T) {
	t.Parallel()
	tr, err := tracing.New(context.Background(), config.Tracing{}, "test")
	require.NoError(t, err)
	var s outbox.Sink = okSink{}
	require.Equal(t, s, tr.Sink("eventbridge", s))
}

// ctxChannel records the context of its last Send.
type ctxChannel struct{ got *context.Context }

func (ctxChannel) Name() string { return "fakeprovider" }

func (c ctxChannel) Send(ctx context.Context, msgs []channels.Message) []channels.Result {
	*c.got = ctx
	return make([]channels.Result, len(msgs))
}

// With tracing off, the channel starts no span and builds no attributes
// (it allocates nothing of its own): the provider call runs under the trace
// context it was given. Not parallel: AllocsPerRun counts every goroutine's.
func TestChannelWithTracingOffPassesTheTraceThrough(t *testing.T) {
	tr, err := tracing.New(context.Background(), config.Tracing{}, "test")
	require.NoError(t, err)
	var got context.Context
	ch := tr.Channel(ctxChannel{&got})
	sc := trace.NewSpanContext(trace.SpanContextConfig{TraceID: trace.TraceID{1}, SpanID: trace.SpanID{2}, TraceFlags: trace.FlagsSampled, Remote: true})
	ctx := trace.ContextWithRemoteSpanContext(context.Background(), sc)
	res := ch.Send(ctx, []channels.Message{{DeliveryID: 1, Channel: "email"}})
	require.Len(t, res, 1)
	require.Equal(t, sc, trace.SpanContextFromContext(got))
	msgs := []channels.Message{{DeliveryID: 1, NotificationID: 2, Channel: "email"}, {DeliveryID: 3, NotificationID: 4, Channel: "email"}}
	allocs := testing.AllocsPerRun(100, func() { ch.Send(ctx, msgs) })
	require.LessOrEqual(t, allocs, 2.0, "the results slice and little else")
}

// nopWriter is a response writer that keeps nothing, so a request served
// into it allocates only what the middleware under test does.
type nopWriter struct{ h http.Header }

func (w nopWriter) Header() http.Header         { return w.h }
func (w nopWriter) Write(b []byte) (int, error) { return len(b), nil }
func (w nopWriter) WriteHeader(int)             {}

// With tracing off, a request that carries no trace goes through the
// middleware without a span, a context or a copy of the request: nothing
// is allocated. One with a traceparent still gets its context and its
// traceresponse.
func TestNoopTracingCostsNothingWithoutATrace(t *testing.T) {
	testalloc.SkipUnderRace(t)
	tr, err := tracing.New(context.Background(), config.Default().Tracing, "test")
	require.NoError(t, err)
	gin.SetMode(gin.ReleaseMode)
	e := gin.New()
	e.Use(tr.HTTP)
	e.GET("/x", func(c *gin.Context) {})
	req := httptest.NewRequest(http.MethodGet, "/x", nil)
	w := nopWriter{h: http.Header{}}
	allocs := testing.AllocsPerRun(100, func() { e.ServeHTTP(w, req) })
	require.Zero(t, allocs)
	require.Empty(t, w.h.Get("traceresponse"))

	req.Header.Set("traceparent", parent)
	rec := httptest.NewRecorder()
	e.ServeHTTP(rec, req)
	require.Equal(t, parent, rec.Header().Get("traceresponse"))
}
