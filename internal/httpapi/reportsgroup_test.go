package httpapi_test

import (
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/notificationservice/notificationservice/internal/config"
	"github.com/notificationservice/notificationservice/internal/testdb"
)

// Concurrent provider status callbacks share one statement and commit
// (http.reportBatchWait; here a batch goes when 4 joined it), and each is
// answered for its own reports: three delivered reports recorded, one for
// a delivery not yet sent unmatched, in the same batch. When the batch's
// statement fails for the database, every callback of it is 503 and none
// is recorded. The batches are on /metrics.
func TestProviderCallbacksShareACommit(t *testing.T) {
	t.Parallel()
	for _, d := range []string{"sqlite", "postgres"} {
		t.Run(d, func(t *testing.T) {
			t.Parallel()
			f := newWebhookFixture(t, d, func(c *config.Config) { c.HTTP.ReportBatchWait, c.HTTP.ReportBatchMax = time.Second, 4 })
			api := f.api
			// Registered before any request: gorm's callbacks are not to be
			// changed beside running statements.
			failing := testdb.OutageOn(t, api.DB, "UPDATE deliveries SET status = v.status")
			sent := f.insertSMS(t, "sent", 3)
			pending := f.insertSMS(t, "pending", 1)
			ids := append(sent, pending...)

			callbacks := func(status string) []response {
				res := make([]response, len(ids))
				var wg sync.WaitGroup
				for i, id := range ids {
					cb := signedCallback(id, status)
					wg.Go(func() { res[i] = f.twilio(t, cb.query, cb.form, cb.sig) })
				}
				wg.Wait()
				return res
			}

			failing.Store(true)
			for i, r := range callbacks("delivered") {
				requireError(t, r, http.StatusServiceUnavailable, "UNAVAILABLE", "NOWHUPD0503")
				s, _ := f.status(t, ids[i])
				require.NotEqual(t, "delivered", s, "callback %d", i)
			}
			failing.Store(false)

			res := callbacks("delivered")
			for i := range sent {
				require.Equal(t, http.StatusOK, res[i].Code, "callback %d: %s", i, res[i].Raw)
				require.EqualValues(t, 1, res[i].JSON["updated"], "callback %d: %s", i, res[i].Raw)
				require.EqualValues(t, 0, res[i].JSON["unmatched"], "callback %d: %s", i, res[i].Raw)
				s, _ := f.status(t, sent[i])
				require.Equal(t, "delivered", s)
			}
			last := res[len(sent)]
			require.Equal(t, http.StatusOK, last.Code, "body: %s", last.Raw)
			require.EqualValues(t, 0, last.JSON["updated"], "body: %s", last.Raw)
			require.EqualValues(t, 1, last.JSON["unmatched"], "body: %s", last.Raw)
			s, _ := f.status(t, pending[0])
			require.Equal(t, "pending", s)

			batches, requests := metricHistogram(t, api, "notify_status_report_batch_requests")
			require.EqualValues(t, 1, batches, "the four callbacks in one commit (the failed batch is not counted)")
			require.EqualValues(t, 4, requests)
		})
	}
}

// metricHistogram is the count and sum of the histogram series name, the
// one whose first label has the value label when one is given.
func metricHistogram(t *testing.T, api *testAPI, name string, label ...string) (uint64, float64) {
	t.Helper()
	families, err := api.App.Metrics.Registry().Gather()
	require.NoError(t, err)
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			if len(label) == 0 || m.GetLabel()[0].GetValue() == label[0] {
				return m.GetHistogram().GetSampleCount(), m.GetHistogram().GetSampleSum()
			}
		}
	}
	t.Fatalf("no %s%v on /metrics", name, label)
	return 0, 0
}

// BenchmarkTwilioCallbacks is Twilio status callbacks ("delivered", signed,
// with their deliveryId) through the route from 64 goroutines at once, on
// PostgreSQL, each callback its own commit ("alone", http.reportBatchWait
// 0) against the default group commit ("grouped"); docs/benchmarks.md:
//
//	go test -run '^$' -bench TwilioCallbacks ./internal/httpapi/
func BenchmarkTwilioCallbacks(b *testing.B) {
	for _, c := range []struct {
		name string
		wait time.Duration
	}{{"alone", 0}, {"grouped", config.Default().HTTP.ReportBatchWait}} {
		b.Run(c.name, func(b *testing.B) {
			f := newWebhookFixture(b, "postgres", func(cfg *config.Config) { cfg.HTTP.ReportBatchWait = c.wait })
			ids := f.insertSMS(b, "sent", 256)
			type callback struct{ path, body, sig string }
			calls := make([]callback, len(ids))
			for i, id := range ids {
				cb := signedCallback(id, "delivered")
				calls[i] = callback{"/v1/webhooks/twilio/status?" + cb.query, cb.form.Encode(), cb.sig}
			}
			var next atomic.Int64
			b.SetParallelism(32) // 64 goroutines on two cores
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					cb := calls[next.Add(1)%int64(len(calls))]
					res := f.api.do(http.MethodPost, cb.path, "", cb.body,
						"Content-Type", "application/x-www-form-urlencoded", "X-Twilio-Signature", cb.sig)
					if res.Code != http.StatusOK {
						b.Errorf("callback: %d %s", res.Code, res.Raw)
						return
					}
				}
			})
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "callbacks/s")
		})
	}
}
