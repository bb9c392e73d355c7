package httpapi_test

import (
	"net/http"
	"net/url"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/notificationservice/notificationservice/internal/channels"
	"github.com/notificationservice/notificationservice/internal/config"
)

// Status changes record their lifecycle events in their own transaction,
// and whether an endpoint wants one is asked there. When the answer needed
// the endpoints read again (at start, after an endpoint changed), that read
// waited for a pool connection of its own, and for a lock other askers
// held, while the callbacks' transactions held every connection, waiting
// on it: with more callbacks at once than database.maxOpenConns the route
// hung for good. Here two connections and eight callbacks at once, each its
// own commit (no group commit, which would bound the transactions): all
// are answered.
func TestConcurrentCallbacksDoNotExhaustThePool(t *testing.T) {
	t.Parallel()
	f := newWebhookFixture(t, "postgres", func(c *config.Config) {
		c.HTTP.ReportBatchWait = 0
		c.Database.MaxOpenConns = 2
	})
	ids := f.insertSMS(t, "sent", 8)
	done := make(chan response, len(ids))
	for _, id := range ids {
		cb := signedCallback(id, "delivered")
		go func() { done <- f.twilio(t, cb.query, cb.form, cb.sig) }()
	}
	deadline := time.After(20 * time.Second)
	for range ids {
		select {
		case r := <-done:
			require.Equal(t, http.StatusOK, r.Code, "body: %s", r.Raw)
			require.EqualValues(t, 1, r.JSON["updated"], "body: %s", r.Raw)
		case <-deadline:
			t.Fatal("callbacks still waiting after 20 s: the pool is exhausted")
		}
	}
}

// insertSMS inserts n Twilio SMS deliveries in status and returns their ids.
func (f *webhookFixture) insertSMS(t testing.TB, status string, n int) []int64 {
	t.Helper()
	now := time.Now().UnixMilli()
	var nid int64
	require.NoError(t, f.api.DB.Raw(`INSERT INTO notifications (collection_id, name, source, recipients, status, created_time)
VALUES (1, 'USER_INVITEUSER', 'api', '[]', 'accepted', ?) RETURNING id`, now).Scan(&nid).Error)
	ids := make([]int64, n)
	for i := range ids {
		require.NoError(t, f.api.DB.Raw(`INSERT INTO deliveries (notification_id, collection_id, action_id, recipient_index, channel, status,
attempts, provider, provider_message_id, created_time, updated_time) VALUES (?, 1, 1, ?, 'sms', ?, 1, 'twilio', ?, ?, ?) RETURNING id`,
			nid, i, status, "SM-"+strconv.Itoa(i), now, now).Scan(&ids[i]).Error)
	}
	return ids
}

// twilioCallback is a Twilio status callback for one delivery, signed as
// Twilio signs the callback URL the service gave it (?deliveryId=).
type twilioCallback struct {
	query string
	form  url.Values
	sig   string
}

// signedCallback is the callback reporting status for delivery id.
func signedCallback(id int64, status string) twilioCallback {
	form := url.Values{"MessageSid": {"SM" + strconv.FormatInt(id, 10)}, "MessageStatus": {status}}
	query := "deliveryId=" + strconv.FormatInt(id, 10)
	return twilioCallback{query: query, form: form, sig: channels.TwilioSignature(whTwilioToken, whCallbackURL+"?"+query, form)}
}
