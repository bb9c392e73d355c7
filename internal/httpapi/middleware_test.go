package httpapi

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/gin-gonic/gin"
	"github.com/stretchr/testify/require"

	"github.com/notificationservice/notificationservice/internal/config"
	"github.com/notificationservice/notificationservice/internal/dispatch"
	"github.com/notificationservice/notificationservice/internal/dispatch/intake"
	"github.com/notificationservice/notificationservice/internal/metrics"
	"github.com/notificationservice/notificationservice/internal/testalloc"
	"github.com/notificationservice/notificationservice/internal/tracing"
)

// nopWriter is a response writer that keeps nothing, so a request served
// into it allocates only what the server does.
type nopWriter struct{ h http.Header }

func (w nopWriter) Header() http.Header         { return w.h }
func (w nopWriter) Write(b []byte) (int, error) { return len(b), nil }
func (w nopWriter) WriteHeader(int)             {}

// chainServer is the router with the middleware the app installs (tracing
// off, metrics) and a route that does nothing, so serving it costs what the
// chain costs. The access log is on (info) and written to nowhere.
func chainServer(t testing.TB) *Server {
	t.Helper()
	tr, err := tracing.New(context.Background(), config.Default().Tracing, "test")
	require.NoError(t, err)
	s := New(Deps{
		Log:        slog.New(slog.NewJSONHandler(io.Discard, nil)),
		HTTP:       config.Default().HTTP,
		Middleware: []gin.HandlerFunc{tr.HTTP, metrics.New().HTTP},
	})
	s.engine.GET("/noop", func(c *gin.Context) { c.Status(http.StatusNoContent) })
	return s
}

// The middleware chain's allocations per request, counted: the request's
// state (its id, code, caller and log attributes) is one object under one
// key, tracing off and metrics allocate nothing, and a bodiless request's
// body is not wrapped. Each of these, undone, adds at least one allocation
// and fails the budget. What is
// left: gin's Keys map (2), the request state, the X-Request-Id header value,
// the access log record's sixth attribute, which slog keeps outside the
// record, and a made request id's string.
func TestMiddlewareChainAllocations(t *testing.T) {
	testalloc.SkipUnderRace(t)
	s := chainServer(t)
	req := httptest.NewRequest(http.MethodGet, "/noop", nil)
	req.Header.Set(RequestIDHeader, "req-1")
	w := nopWriter{h: http.Header{}}
	require.LessOrEqual(t, testing.AllocsPerRun(200, func() {
		clear(w.h)
		s.ServeHTTP(w, req)
	}), 5.0, "a caller's request id")

	req.Header.Del(RequestIDHeader)
	require.LessOrEqual(t, testing.AllocsPerRun(200, func() {
		clear(w.h)
		s.ServeHTTP(w, req)
	}), 6.0, "a request id made here")
}

// BenchmarkMiddlewareChain is one request through the chain to a route that
// does nothing (go test -bench MiddlewareChain -benchmem).
func BenchmarkMiddlewareChain(b *testing.B) {
	s := chainServer(b)
	req := httptest.NewRequest(http.MethodGet, "/noop", nil)
	w := nopWriter{h: http.Header{}}
	for b.Loop() {
		clear(w.h)
		s.ServeHTTP(w, req)
	}
}

// The send's 202 body is encoded from a struct; it must be the bytes the
// map it replaced gave (docs/api.md), keys in the same order.
func TestSendResponseEncodesAsTheMap(t *testing.T) {
	for _, replayed := range []bool{false, true} {
		sums := []intake.Summary{{ID: 7, Name: "USER_INVITEUSER", Status: "accepted", Deliveries: 2, Skipped: 1},
			{ID: 8, Name: "B<&>", Status: "skipped", Reason: "no action"}}
		got, err := json.Marshal(sendResponse{ResponseCode: "NONTSND0000", ResponseMessage: "Notification accepted",
			NotificationIDs: []int64{7, 8}, Notifications: sums, Replayed: replayed})
		require.NoError(t, err)
		want, err := json.Marshal(gin.H{"responseCode": "NONTSND0000", "responseMessage": "Notification accepted",
			"notificationIds": []int64{7, 8}, "notifications": sums, "replayed": replayed})
		require.NoError(t, err)
		require.Equal(t, string(want), string(got))
	}
}

// The per-response helpers allocate only what they must: setETag the value
// and its header slice (the key is not canonicalised anew), and checkParams
// nothing for a request without a query string.
func TestResponseHelpersAllocations(t *testing.T) {
	w := nopWriter{h: http.Header{}}
	c, _ := gin.CreateTestContext(w)
	require.Equal(t, 2.0, testing.AllocsPerRun(100, func() { setETag(c, 1234) }))
	require.Equal(t, `"1234"`, w.h.Get("ETag"))

	c.Request = httptest.NewRequest(http.MethodGet, "/v1/collections/1", nil)
	c.Params = gin.Params{{Key: "collectionId", Value: "1"}}
	require.Zero(t, testing.AllocsPerRun(100, func() { require.NoError(t, checkParams(c)) }))
}

// headerValue reads the send's headers by their canonical names without
// canonicalising (allocating) anew, and finds what Header.Set stored.
func TestHeaderValueNeedsNoCanonicalisation(t *testing.T) {
	h := http.Header{}
	names := []string{dispatch.HeaderTenant, dispatch.HeaderTeam, dispatch.HeaderService, dispatch.HeaderEntityID,
		dispatch.HeaderCorrelationIDs, CorrelationIDHeader}
	for _, name := range names {
		h.Set(name, "v-"+name)
	}
	for _, name := range names {
		require.Equal(t, "v-"+name, headerValue(h, name))
		require.Zero(t, testing.AllocsPerRun(100, func() { _ = headerValue(h, name) }), name)
	}
	require.Empty(t, headerValue(http.Header{}, dispatch.HeaderTenant))
	h.Set(IdempotencyKeyHeader, "k")
	require.Equal(t, "k", headerValue(h, IdempotencyKeyHeader))
}

// readBody reads a body of a declared length into one allocation, and
// still reads all of one longer than declared and reports an overflow.
func TestReadBody(t *testing.T) {
	body := strings.Repeat("x", 2000)
	req := func(declared int64) *http.Request {
		r := httptest.NewRequest(http.MethodPost, "/", strings.NewReader(body))
		r.ContentLength = declared
		return r
	}
	require.Equal(t, 1.0, testing.AllocsPerRun(100, func() {
		got, err := readBody(req(2000))
		if err != nil || len(got) != 2000 {
			t.Fatal(len(got), err)
		}
	})-allocsOf(func() { _ = req(2000) }))
	for _, declared := range []int64{0, 100, 1999, 2000, 5000, 1 << 20} {
		got, err := readBody(req(declared))
		require.NoError(t, err)
		require.Equal(t, body, string(got), "declared %d", declared)
	}
	r := req(2000)
	r.Body = http.MaxBytesReader(httptest.NewRecorder(), r.Body, 1000)
	_, err := readBody(r)
	var tooBig *http.MaxBytesError
	require.ErrorAs(t, err, &tooBig)
}

func allocsOf(f func()) float64 { return testing.AllocsPerRun(100, f) }
