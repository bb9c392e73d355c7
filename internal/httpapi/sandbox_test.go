package httpapi_test

import (
	"context"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/notificationservice/notificationservice/internal/actions"
	"github.com/notificationservice/notificationservice/internal/config"
)

// TestSandboxFailsSMSTheProviderWouldRefuse sends SMS through the service
// with no Twilio account (the sandbox): a number Twilio would refuse fails
// with Twilio's reason instead of showing sent, and a national number is
// sent only with channels.twilio.defaultCountryCode, as with Twilio.
func TestSandboxFailsSMSTheProviderWouldRefuse(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		country  string
		national string // the status of the national number's delivery
	}{{"", "failed"}, {"1", "sent"}} {
		t.Run("defaultCountryCode="+tc.country, func(t *testing.T) {
			t.Parallel()
			api := newAPI(t, "sqlite", func(c *config.Config) { c.Channels.Twilio.DefaultCountryCode = tc.country })
			cid, _ := seedInvite(t, api)
			var eventID int64
			require.NoError(t, api.DB.Raw(`SELECT id FROM events WHERE collection_id = ?`, cid).Scan(&eventID).Error)
			now := time.Now().UnixMilli()
			require.NoError(t, api.DB.Create(&actions.Action{CollectionID: cid, EventID: eventID, Name: "sms", Status: actions.StatusActive,
				ConfigName: actions.ConfigSMS, Config: actions.Config{Content: actions.Content{Body: "Hi {{FNAME}}"}},
				CreatedTime: now, UpdatedTime: now}).Error)
			body := `{"notification": [{"name": "USER_INVITEUSER", "recipients": [
  {"phone": "abc", "macros": {"FNAME": "A"}},
  {"phone": "409-685-4167", "macros": {"FNAME": "B"}},
  {"phone": "+14155550100", "macros": {"FNAME": "C"}}]}]}`
			res := api.do(http.MethodPost, fmt.Sprintf("/v1/collections/%d/notifications", cid), api.superAdmin(), body)
			require.Equal(t, http.StatusAccepted, res.Code, "body: %s", res.Raw)
			_, err := api.App.Dispatcher.RunOnce(context.Background())
			require.NoError(t, err)

			var rows []struct {
				RecipientIndex int
				Status, Reason string
			}
			require.NoError(t, api.DB.Raw(`SELECT recipient_index, status, reason FROM deliveries WHERE channel = 'sms' ORDER BY recipient_index`).Scan(&rows).Error)
			require.Len(t, rows, 3)
			require.Equal(t, "failed", rows[0].Status)
			require.Contains(t, rows[0].Reason, `invalid phone "abc"`)
			require.Equal(t, tc.national, rows[1].Status, rows[1].Reason)
			require.Equal(t, "sent", rows[2].Status)
			var recorded int64
			require.NoError(t, api.DB.Raw(`SELECT COUNT(*) FROM sandbox_messages WHERE channel = 'sms'`).Scan(&recorded).Error)
			want := int64(1)
			if tc.national == "sent" {
				want = 2
			}
			require.Equal(t, want, recorded, "only what was accepted is recorded as sent")
		})
	}
}
