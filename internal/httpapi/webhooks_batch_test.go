package httpapi_test

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// insertSent inserts n SendGrid email deliveries in sent and returns their ids.
func (f *webhookFixture) insertSent(t testing.TB, n int) []int64 {
	t.Helper()
	now := time.Now().UnixMilli()
	var nid int64
	require.NoError(t, f.api.DB.Raw(`INSERT INTO notifications (collection_id, name, source, recipients, status, created_time)
VALUES (1, 'USER_INVITEUSER', 'api', '[]', 'accepted', ?) RETURNING id`, now).Scan(&nid).Error)
	var ids []int64
	require.NoError(t, f.api.DB.Raw(`INSERT INTO deliveries (notification_id, collection_id, action_id, recipient_index, channel, status,
attempts, provider, provider_message_id, created_time, updated_time)
SELECT ?, 1, 1, i, 'email', 'sent', 1, 'sendgrid', 'batch-big', ?, ? FROM (`+series1(n)+`) AS s RETURNING id`, nid, now, now).Scan(&ids).Error)
	require.Len(t, ids, n)
	return ids
}

// series1 is a SELECT of the integers 1..n, on both dialects.
func series1(n int) string {
	return fmt.Sprintf("WITH RECURSIVE r(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM r WHERE i < %d) SELECT i FROM r", n)
}

// deliveredBatch is a SendGrid Event Webhook batch with a delivered event
// for each id.
func deliveredBatch(ids []int64, at time.Time) string {
	events := make([]string, len(ids))
	for i, id := range ids {
		events[i] = fmt.Sprintf(`{"email":"u%d@example.test","timestamp":%d,"event":"delivered","sg_message_id":"batch-big.f%d","delivery_id":"%d"}`,
			i, at.Unix(), i, id)
	}
	return "[" + strings.Join(events, ",") + "]"
}

// TestSendGridWebhookLargeBatch: a batch of 1,000 events is applied as a
// whole; one event for a delivery not yet recorded as sent makes the answer
// 503 (SendGrid sends the batch again) while the rest are recorded, and the
// batch sent again is recorded in full.
func TestSendGridWebhookLargeBatch(t *testing.T) {
	t.Parallel()
	webhookDialects(t, func(t *testing.T, f *webhookFixture) {
		ids := f.insertSent(t, 1000)
		body := deliveredBatch(append(ids, f.smsStill), time.Now())
		res := f.sendGrid(t, body, f.sign(t, body, time.Now())...)
		requireError(t, res, http.StatusServiceUnavailable, "UNAVAILABLE", "NOWHUPD0503")
		require.Equal(t, "30", res.Header.Get("Retry-After"))
		var n int64
		require.NoError(t, f.api.DB.Raw(`SELECT COUNT(*) FROM deliveries WHERE provider_message_id = 'batch-big' AND status = 'delivered'`).Scan(&n).Error)
		require.EqualValues(t, 1000, n)
		s, _ := f.status(t, f.smsStill)
		require.Equal(t, "sending", s)

		require.NoError(t, f.api.DB.Exec(`UPDATE deliveries SET status = 'sent' WHERE id = ?`, f.smsStill).Error)
		res = f.sendGrid(t, body, f.sign(t, body, time.Now())...)
		require.Equal(t, http.StatusOK, res.Code, "body: %s", res.Raw)
		require.EqualValues(t, 1001, res.JSON["updated"], "delivered again is recorded again, harmlessly")
		s, _ = f.status(t, f.smsStill)
		require.Equal(t, "delivered", s)
	})
}

// BenchmarkSendGridWebhookBatch is one signed SendGrid batch of 1,000
// delivered events through the route, deliveries reset to sent between
// iterations (docs/benchmarks.md):
//
//	go test -run '^$' -bench SendGridWebhookBatch ./internal/httpapi/
func BenchmarkSendGridWebhookBatch(b *testing.B) {
	for _, dialect := range []string{"sqlite", "postgres"} {
		b.Run(dialect, func(b *testing.B) {
			f := newWebhookFixture(b, dialect)
			ids := f.insertSent(b, 1000)
			body := deliveredBatch(ids, time.Now())
			for b.Loop() {
				b.StopTimer()
				require.NoError(b, f.api.DB.Exec(`UPDATE deliveries SET status = 'sent' WHERE provider_message_id = 'batch-big'`).Error)
				headers := f.sign(b, body, time.Now())
				b.StartTimer()
				res := f.sendGrid(b, body, headers...)
				if res.Code != http.StatusOK {
					b.Fatalf("status %d: %s", res.Code, res.Raw)
				}
			}
		})
	}
}
