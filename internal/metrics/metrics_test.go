package metrics

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"
	"gorm.io/gorm"

	"github.com/notificationservice/notificationservice/internal/channels"
	"github.com/notificationservice/notificationservice/internal/config"
	"github.com/notificationservice/notificationservice/internal/dispatch"
	"github.com/notificationservice/notificationservice/internal/dispatch/planning"
	"github.com/notificationservice/notificationservice/internal/outbox"
	"github.com/notificationservice/notificationservice/internal/testalloc"
	"github.com/notificationservice/notificationservice/internal/testdb"
)

// scriptedChannel answers each message with the error its index picks.
type scriptedChannel struct {
	errs []error
}

func (c *scriptedChannel) Name() string { return "fakeprovider" }

func (c *scriptedChannel) Send(_ context.Context, msgs []channels.Message) []channels.Result {
	out := make([]channels.Result, len(msgs))
	for i := range msgs {
		out[i].Err = c.errs[i%len(c.errs)]
	}
	return out
}

type reconcilingChannel2 struct{ scriptedChannel }

func (c *reconcilingChannel2) Accepted(context.Context, []channels.InDoubt) (map[int64]string, error) {
	return map[int64]string{7: "pm-7"}, nil
}

func TestChannelCountsMessagesAndErrorsByClass(t *testing.T) {
	t.Parallel()
	m := New()
	ch := m.Channel(&scriptedChannel{errs: []error{
		nil,
		channels.Permanent("fakeprovider", "bad address", nil),
		channels.Retryable("fakeprovider", "429", time.Second, nil),
		errors.New("connection reset"), // unclassified: retryable
		channels.MaybeAccepted("fakeprovider", "answer lost", nil),
	}})
	msgs := make([]channels.Message, 10)
	for i := range msgs {
		msgs[i].Channel = "sms"
	}
	res := ch.Send(context.Background(), msgs)
	require.Len(t, res, 10)
	require.Equal(t, "fakeprovider", ch.Name())

	require.EqualValues(t, 10, testutil.ToFloat64(m.providerMessages.WithLabelValues("fakeprovider", "sms")))
	require.EqualValues(t, 2, testutil.ToFloat64(m.providerErrors.WithLabelValues("fakeprovider", "sms", ClassPermanent)))
	require.EqualValues(t, 4, testutil.ToFloat64(m.providerErrors.WithLabelValues("fakeprovider", "sms", ClassRetryable)))
	require.EqualValues(t, 2, testutil.ToFloat64(m.providerErrors.WithLabelValues("fakeprovider", "sms", ClassInDoubt)))
	require.Equal(t, 1, testutil.CollectAndCount(m.providerDuration))

	_, ok := ch.(channels.Reconciler)
	require.False(t, ok, "a channel that cannot reconcile must not pretend to")
	rc := m.Channel(&reconcilingChannel2{})
	r, ok := rc.(channels.Reconciler)
	require.True(t, ok, "the wrapper keeps the sandbox's Accepted, which dispatch's stale-send recovery needs")
	got, err := r.Accepted(context.Background(), []channels.InDoubt{{DeliveryID: 7}})
	require.NoError(t, err)
	require.Equal(t, map[int64]string{7: "pm-7"}, got)
}

type scriptedSink struct {
	errs []error
	err  error
}

func (s *scriptedSink) Put(_ context.Context, entries []outbox.Entry) ([]error, error) {
	if s.err != nil {
		return nil, s.err
	}
	return s.errs[:len(entries)], nil
}

func TestSinkCountsPublishedAndFailures(t *testing.T) {
	t.Parallel()
	m := New()
	s := &scriptedSink{errs: []error{nil, nil, &outbox.EntryError{Code: "ThrottlingException"},
		&outbox.EntryError{Code: "MalformedDetail"}, outbox.ErrUnpublishable}}
	sink := m.Sink("eventbridge", s)
	_, err := sink.Put(context.Background(), make([]outbox.Entry, 5))
	require.NoError(t, err)
	s.err = errors.New("503")
	_, err = sink.Put(context.Background(), make([]outbox.Entry, 2))
	require.Error(t, err)
	s.err = errors.Join(outbox.ErrRejected, errors.New("ValidationException"))
	_, err = sink.Put(context.Background(), make([]outbox.Entry, 1))
	require.Error(t, err)

	require.EqualValues(t, 2, testutil.ToFloat64(m.sinkPublished.WithLabelValues("eventbridge")))
	for class, want := range map[string]float64{ClassEntryRetryable: 1, ClassEntryPermanent: 2, ClassUnavailable: 1, ClassRejected: 1} {
		require.Equal(t, want, testutil.ToFloat64(m.sinkErrors.WithLabelValues("eventbridge", class)), class)
	}
	require.EqualValues(t, 3, histogramCount(t, m, "notify_outbox_publish_duration_seconds"))
}

func histogramCount(t *testing.T, m *Metrics, name string) uint64 {
	t.Helper()
	mfs, err := m.Registry().Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		if mf.GetName() == name {
			var n uint64
			for _, mm := range mf.GetMetric() {
				n += mm.GetHistogram().GetSampleCount()
			}
			return n
		}
	}
	return 0
}

func TestHTTPMiddlewareLabelsByRouteTemplate(t *testing.T) {
	t.Parallel()
	gin.SetMode(gin.ReleaseMode)
	m := New()
	e := gin.New()
	e.Use(m.HTTP)
	e.GET("/v1/collections/:collectionId", func(c *gin.Context) { c.Status(http.StatusOK) })
	e.GET("/metrics", gin.WrapH(m.Handler()))
	for _, path := range []string{"/v1/collections/1", "/v1/collections/2", "/v1/collections/3", "/nowhere"} {
		e.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, path, nil))
	}
	e.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("BREW", "/v1/collections/1", nil))

	require.EqualValues(t, 3, testutil.ToFloat64(m.httpRequests.WithLabelValues("GET", "/v1/collections/:collectionId", "200")))
	require.EqualValues(t, 1, testutil.ToFloat64(m.httpRequests.WithLabelValues("GET", "unmatched", "404")))
	require.EqualValues(t, 1, testutil.ToFloat64(m.httpRequests.WithLabelValues("OTHER", "unmatched", "404")), "made-up methods share one series")

	rec := httptest.NewRecorder()
	e.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	require.Equal(t, http.StatusOK, rec.Code)
	body := rec.Body.String()
	require.Contains(t, body, `notify_http_requests_total{method="GET",route="/v1/collections/:collectionId",status="200"} 3`)
	require.Contains(t, body, `notify_http_request_duration_seconds_count{method="GET",route="/v1/collections/:collectionId"} 3`)
	require.Contains(t, body, "go_goroutines ")
	require.Contains(t, body, "process_cpu_seconds_total ")
}

// TestInitCreatesAlertSeriesAtZero: the counters alerts watch exist at zero
// before their first increment, so rate() and increase() see the first one.
func TestInitCreatesAlertSeriesAtZero(t *testing.T) {
	t.Parallel()
	m := New()
	_, found := find(t, m, "notify_provider_errors_total")
	require.False(t, found, "nothing before Init")
	m.InitProvider("twilio", "sms")
	m.InitSink("eventbridge")
	m.InitDeadLetterReasons("not_json", "processing_failed")
	for _, s := range [][]string{
		{"notify_provider_messages_total", "provider", "twilio", "channel", "sms"},
		{"notify_provider_errors_total", "provider", "twilio", "channel", "sms", "class", ClassPermanent},
		{"notify_provider_errors_total", "provider", "twilio", "channel", "sms", "class", ClassRetryable},
		{"notify_outbox_published_total", "sink", "eventbridge"},
		{"notify_outbox_publish_errors_total", "sink", "eventbridge", "class", ClassUnavailable},
		{"notify_outbox_publish_errors_total", "sink", "eventbridge", "class", ClassRejected},
		{"notify_outbox_publish_errors_total", "sink", "eventbridge", "class", ClassEntryRetryable},
		{"notify_outbox_publish_errors_total", "sink", "eventbridge", "class", ClassEntryPermanent},
		{"notify_queue_messages_dead_lettered_total", "reason", "not_json"},
		{"notify_queue_messages_dead_lettered_total", "reason", "processing_failed"},
	} {
		require.Equal(t, 0.0, gauge(t, m, s[0], s[1:]...), "%v", s)
	}
	// An increment after Init lands on the same series.
	m.InitProvider("fakeprovider", "sms")
	m.Channel(&scriptedChannel{errs: []error{channels.Permanent("fakeprovider", "bad number", nil)}}).
		Send(context.Background(), []channels.Message{{Channel: "sms"}})
	require.Equal(t, 1.0, gauge(t, m, "notify_provider_errors_total", "provider", "fakeprovider", "channel", "sms", "class", ClassPermanent))
	require.Equal(t, 0.0, gauge(t, m, "notify_provider_errors_total", "provider", "twilio", "channel", "sms", "class", ClassPermanent))
}

// TestHandlerNegotiatesOpenMetrics: OpenMetrics for a scraper that asks for
// it, the Prometheus text format otherwise.
func TestHandlerNegotiatesOpenMetrics(t *testing.T) {
	t.Parallel()
	m := New()
	m.InitProvider("sendgrid", "email")
	get := func(accept string) *httptest.ResponseRecorder {
		req := httptest.NewRequest(http.MethodGet, "/metrics", nil)
		req.Header.Set("Accept", accept)
		rec := httptest.NewRecorder()
		m.Handler().ServeHTTP(rec, req)
		require.Equal(t, http.StatusOK, rec.Code)
		return rec
	}
	rec := get("application/openmetrics-text;version=1.0.0;q=0.9,text/plain;version=0.0.4;q=0.5")
	require.Contains(t, rec.Header().Get("Content-Type"), "application/openmetrics-text")
	require.Contains(t, rec.Body.String(), "# EOF")
	rec = get("text/plain")
	require.Contains(t, rec.Header().Get("Content-Type"), "text/plain")
	require.NotContains(t, rec.Body.String(), "# EOF")
}

func TestDatabaseGauges(t *testing.T) {
	t.Parallel()
	testdb.Dialects(t, func(t *testing.T, db *gorm.DB) {
		t.Parallel()
		now := time.Now()
		ms := now.UnixMilli()
		exec := func(q string, args ...any) {
			t.Helper()
			require.NoError(t, db.Exec(q, args...).Error)
		}
		m := New()
		c := newDBCollector(db, config.Metrics{Enabled: true, DBTimeout: 5 * time.Second, DBCacheTTL: time.Hour}, nil, func() time.Time { return now })
		require.NoError(t, m.Register(c))

		// Empty: the gauges are there, at zero, for every channel and status.
		require.Equal(t, 1.0, gauge(t, m, "notify_metrics_db_up"))
		require.Equal(t, 0.0, gauge(t, m, "notify_outbox_pending"))
		require.Equal(t, 0.0, gauge(t, m, "notify_outbox_oldest_pending_age_seconds"))
		for _, ch := range []string{"email", "sms", "push"} {
			require.Equal(t, 0.0, gauge(t, m, "notify_retry_queue_depth", "channel", ch))
			for _, st := range []string{"pending", "sending", "sent", "delivered", "bounced", "failed", "skipped"} {
				require.Equal(t, 0.0, gauge(t, m, "notify_deliveries", "channel", ch, "status", st))
			}
		}

		// Outbox: two pending (the oldest 90 s old), one published, one parked.
		ins := `INSERT INTO outbox (envelope_id, detail_type, detail, created_at, published_at, parked_at) VALUES (?, 'x', '{}', ?, ?, ?)`
		exec(ins, testdb.Name("e"), ms-90_000, nil, nil)
		exec(ins, testdb.Name("e"), ms-10_000, nil, nil)
		exec(ins, testdb.Name("e"), ms-200_000, ms, nil)
		exec(ins, testdb.Name("e"), ms-300_000, nil, ms)
		// Deliveries: email sent ×3, email pending ×2 (one a retry), sms failed ×1, sms pending retry ×1.
		del := deliveryRows(t, db, ms)
		del("email", "sent", 1)
		del("email", "sent", 1)
		del("email", "sent", 2)
		del("email", "pending", 0)
		del("email", "pending", 1)
		del("sms", "failed", 8)
		del("sms", "pending", 3)
		del("webhook", "pending", 2) // a channel the collector does not list is reported all the same
		// Scheduled is its own series, and not a retry even after an attempt
		// (a send-time gate holds a claimed delivery as scheduled again).
		del("email", "scheduled", 1)

		// The first reading is cached: a scrape within metrics.dbCacheTTL
		// does not query again.
		require.Equal(t, 0.0, gauge(t, m, "notify_outbox_pending"))
		c.mu.Lock()
		c.readAt = time.Time{}
		c.mu.Unlock()

		require.Equal(t, 2.0, gauge(t, m, "notify_outbox_pending"))
		require.Equal(t, 90.0, gauge(t, m, "notify_outbox_oldest_pending_age_seconds"))
		require.Equal(t, 1.0, gauge(t, m, "notify_outbox_parked"))
		require.Equal(t, 3.0, gauge(t, m, "notify_deliveries", "channel", "email", "status", "sent"))
		require.Equal(t, 2.0, gauge(t, m, "notify_deliveries", "channel", "email", "status", "pending"))
		require.Equal(t, 1.0, gauge(t, m, "notify_deliveries", "channel", "sms", "status", "failed"))
		require.Equal(t, 1.0, gauge(t, m, "notify_retry_queue_depth", "channel", "email"))
		require.Equal(t, 1.0, gauge(t, m, "notify_deliveries", "channel", "email", "status", "scheduled"))
		require.Equal(t, 0.0, gauge(t, m, "notify_deliveries", "channel", "push", "status", "canceled"))
		require.Equal(t, 1.0, gauge(t, m, "notify_retry_queue_depth", "channel", "sms"))
		require.Equal(t, 0.0, gauge(t, m, "notify_retry_queue_depth", "channel", "push"))
		require.Equal(t, 0.0, gauge(t, m, "notify_deliveries", "channel", "sms", "status", "sent"))
		require.Equal(t, 1.0, gauge(t, m, "notify_deliveries", "channel", "webhook", "status", "pending"))
		require.Equal(t, 1.0, gauge(t, m, "notify_retry_queue_depth", "channel", "webhook"))
		n, err := testutil.GatherAndCount(m.Registry(), "notify_deliveries")
		require.NoError(t, err)
		require.Equal(t, 3*9+1, n, "each series once")

		// A database that fails: up is 0 and the gauges are left out.
		broken := newDBCollector(db, config.Metrics{DBTimeout: time.Second}, nil, time.Now)
		exec("ALTER TABLE outbox RENAME TO outbox_gone")
		t.Cleanup(func() { _ = db.Exec("ALTER TABLE outbox_gone RENAME TO outbox").Error })
		m2 := New()
		require.NoError(t, m2.Register(broken))
		require.Equal(t, 0.0, gauge(t, m2, "notify_metrics_db_up"))
		_, found := find(t, m2, "notify_outbox_pending")
		require.False(t, found)
	})
}

// deliveryRows inserts a notification of collection 1 at ms and returns
// a function that inserts one of its deliveries, on channel, in status,
// after attempts.
func deliveryRows(t *testing.T, db *gorm.DB, ms int64) func(channel, status string, attempts int) {
	t.Helper()
	require.NoError(t, db.Exec(`INSERT INTO notifications (collection_id, name, source, recipients, status, created_time) VALUES (1, 'N', 'api', '[]', 'accepted', ?)`, ms).Error)
	var nid int64
	require.NoError(t, db.Raw(`SELECT MAX(id) FROM notifications`).Scan(&nid).Error)
	i := 0
	return func(channel, status string, attempts int) {
		t.Helper()
		i++
		require.NoError(t, db.Exec(`INSERT INTO deliveries (notification_id, collection_id, action_id, recipient_index, channel, status, attempts, created_time, updated_time)
VALUES (?, 1, 1, ?, ?, ?, ?, ?, ?)`, nid, i, channel, status, attempts, ms, ms).Error)
	}
}

// gauge returns the value of the series name{labels...}; it fails if there
// is none.
func gauge(t *testing.T, m *Metrics, name string, labels ...string) float64 {
	t.Helper()
	v, ok := find(t, m, name, labels...)
	require.True(t, ok, "no series %s%v", name, labels)
	return v
}

func find(t *testing.T, m *Metrics, name string, labels ...string) (float64, bool) {
	t.Helper()
	mfs, err := m.Registry().Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	series:
		for _, mm := range mf.GetMetric() {
			got := map[string]string{}
			for _, lp := range mm.GetLabel() {
				got[lp.GetName()] = lp.GetValue()
			}
			for i := 0; i+1 < len(labels); i += 2 {
				if got[labels[i]] != labels[i+1] {
					continue series
				}
			}
			if mm.GetGauge() != nil {
				return mm.GetGauge().GetValue(), true
			}
			return mm.GetCounter().GetValue(), true
		}
	}
	return 0, false
}

// Planning's decisions are counted by reason; the reasons planning always
// has are series from the start, at zero.
func TestPlanningDecisionsAreCountedByReason(t *testing.T) {
	m := New()
	var _ planning.Observer = m
	require.Zero(t, testutil.ToFloat64(m.planningDecisions.WithLabelValues(dispatch.ReasonConditionError)))
	m.Decided(planning.DecisionPlanned, 3)
	m.Decided(dispatch.ReasonConditionFalse, 2)
	m.Decided(dispatch.ReasonConditionFalse, 1)
	require.EqualValues(t, 3, testutil.ToFloat64(m.planningDecisions.WithLabelValues(planning.DecisionPlanned)))
	require.EqualValues(t, 3, testutil.ToFloat64(m.planningDecisions.WithLabelValues(dispatch.ReasonConditionFalse)))
	require.Equal(t, 4, testutil.CollectAndCount(m.planningDecisions, "notify_planning_decisions_total"))
}

type nopWriter struct{ h http.Header }

func (w nopWriter) Header() http.Header         { return w.h }
func (w nopWriter) Write(b []byte) (int, error) { return len(b), nil }
func (w nopWriter) WriteHeader(int)             {}

// Counting a request allocates nothing once its series exist: the status
// label of a 2xx–5xx is not formatted anew on every request.
func TestHTTPMiddlewareAllocatesNothing(t *testing.T) {
	testalloc.SkipUnderRace(t)
	gin.SetMode(gin.ReleaseMode)
	m := New()
	e := gin.New()
	e.Use(m.HTTP)
	e.GET("/x", func(c *gin.Context) { c.Status(http.StatusAccepted) })
	req := httptest.NewRequest(http.MethodGet, "/x", nil)
	w := nopWriter{h: http.Header{}}
	require.Zero(t, testing.AllocsPerRun(100, func() { e.ServeHTTP(w, req) }))
	require.EqualValues(t, 101, testutil.ToFloat64(m.httpRequests.WithLabelValues("GET", "/x", "202")))
	require.Equal(t, "599", statusLabel(599))
	require.Equal(t, "99", statusLabel(99))
	require.Equal(t, "600", statusLabel(600))
}

// The workers' waits for dispatch.recordBatch add up, in seconds, on a
// series that is there from the start (an alert on its rate sees the first
// wait).
func TestRecordWaitSumsTheWorkersWaits(t *testing.T) {
	t.Parallel()
	m := New()
	require.Equal(t, 0.0, gauge(t, m, "notify_dispatch_record_wait_seconds_total"))
	m.RecordWait(250 * time.Millisecond)
	m.RecordWait(time.Second)
	require.InDelta(t, 1.25, gauge(t, m, "notify_dispatch_record_wait_seconds_total"), 1e-9)
}
