package httpapi_test

import (
	"fmt"
	"net/http"
	"testing"

	"github.com/stretchr/testify/require"
)

// Every intake batch is on /metrics: its size and its time, by source.
// Under group commit a batch may hold several sends, so the sizes' sum is
// the count of sends, however they were grouped.
func TestIntakeBatchesAreOnMetrics(t *testing.T) {
	t.Parallel()
	eachDialect(t, func(t *testing.T, api *testAPI) {
		cid := api.createCollection("batches")
		api.addAction(cid, api.createEvent(cid, "PING"), "email")
		base := fmt.Sprintf("/v1/collections/%d", cid)

		// histogram is the count and sum of the series name{source}.
		histogram := func(name, source string) (uint64, float64) { return metricHistogram(t, api, name, source) }
		const sends = 3
		for i := range sends {
			res := api.do(http.MethodPost, base+"/notifications", api.superAdmin(), `{"notification": [{"name": "PING", "recipients": [{"email": "ann@example.test"}]}]}`,
				"Idempotency-Key", fmt.Sprintf("batch-%d", i))
			require.Equal(t, http.StatusAccepted, res.Code, "body: %s", res.Raw)
		}
		batches, submissions := histogram("notify_intake_batch_submissions", "api")
		require.EqualValues(t, sends, submissions, "every send is in one batch")
		require.GreaterOrEqual(t, batches, uint64(1))
		timed, seconds := histogram("notify_intake_batch_duration_seconds", "api")
		require.Equal(t, batches, timed, "a time for every batch")
		require.Positive(t, seconds)
		queued, _ := histogram("notify_intake_batch_submissions", "queue")
		require.Zero(t, queued, "the queue's series is there at zero")
	})
}
