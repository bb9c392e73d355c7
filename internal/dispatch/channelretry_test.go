package dispatch_test

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"gorm.io/gorm"

	"github.com/notificationservice/notificationservice/internal/actions"
	"github.com/notificationservice/notificationservice/internal/channels"
	"github.com/notificationservice/notificationservice/internal/dispatch"
	"github.com/notificationservice/notificationservice/internal/dispatch/delivery"
	"github.com/notificationservice/notificationservice/internal/dispatch/intake"
	"github.com/notificationservice/notificationservice/internal/dispatch/status"
	"github.com/notificationservice/notificationservice/internal/outbox"
	"github.com/notificationservice/notificationservice/internal/retry"
	"github.com/notificationservice/notificationservice/internal/testdb"
)

// A webhook delivery follows its channel's own schedule: retried past
// dispatch.maxAttempts while within its time (webhooks.retryFor), given up
// on the first failure after it. The worker gives the channel the
// notification's name and the recipient without its macros.
func TestWebhookDeliveriesRetryOnTheirChannelsSchedule(t *testing.T) {
	t.Parallel()
	testdb.Dialects(t, func(t *testing.T, db *gorm.DB) {
		fail := errors.New("endpoint down")
		ch := &scripted{errs: []error{fail, fail, fail, fail, fail}}
		hook := actions.Action{Name: "hook", ConfigName: actions.ConfigWebhook, Config: actions.Config{Content: actions.Content{Body: "Hi {{FNAME}}"}}}
		cid, _ := seedRule(t, db, "USER_INVITEUSER", hook)
		clock := time.Now().Add(time.Second) // after the intake's own clock
		cfg := testConfig()
		cfg.MaxAttempts = 2 // the provider schedule would give up after the second
		disp := delivery.New(db, map[string]channels.Channel{channels.ChannelWebhook: ch}, cfg, delivery.Senders{}, discard(), func() time.Time { return clock }).
			WithChannelRetry(channels.ChannelWebhook, delivery.ChannelRetry{Policy: retry.Policy{Initial: time.Minute, Max: time.Hour}, For: 3*time.Hour + 30*time.Minute})
		in := intake.New(db, actions.NewRules(db), outbox.NewWriter(nil, nil), nil, disp)
		ctx := context.Background()
		out, err := in.Submit(ctx, []intake.Submission{{Source: intake.SourceQueue,
			Request: request(t, cid, `{"collectionId": CID, "notification": [{"name": "USER_INVITEUSER", "recipients": [{"id": "u1", "email": "a@example.com", "macros": {"FNAME": "A"}}]}]}`)}})
		require.NoError(t, err)
		store := status.New(db, nil)
		get := func() dispatch.Delivery {
			ds, err := store.ListDeliveries(ctx, cid, status.DeliveryFilter{NotificationID: out[0].Notifications[0].ID, Limit: 10})
			require.NoError(t, err)
			require.Len(t, ds, 1)
			return ds[0]
		}
		require.Equal(t, "webhook:*", get().Address)

		for attempt := 1; attempt <= 4; attempt++ {
			_, err := disp.RunOnce(ctx)
			require.NoError(t, err)
			d := get()
			require.Equal(t, attempt, d.Attempts)
			require.Equal(t, dispatch.StatusPending, d.Status, "attempt %d: within webhooks.retryFor, whatever dispatch.maxAttempts", attempt)
			wait := time.UnixMilli(d.NextAttemptAt).Sub(clock)
			full := min(time.Minute<<(attempt-1), time.Hour)
			require.True(t, wait >= full/2 && wait <= full, "attempt %d: wait %s on the channel's policy (%s, jittered)", attempt, wait, full)
			clock = clock.Add(time.Hour)
		}
		_, err = disp.RunOnce(ctx) // 4 hours after creation: past the 3½ hours
		require.NoError(t, err)
		d := get()
		require.Equal(t, dispatch.StatusFailed, d.Status)
		require.Equal(t, "gave up after 5 attempts over 3h30m0s: endpoint down", d.Reason)

		m := ch.calls[0][0]
		require.Equal(t, "USER_INVITEUSER", m.Notification)
		require.Equal(t, "Hi A", m.Body)
		require.Equal(t, map[string]string{"FNAME": "A"}, m.Macros)
		var rc map[string]any
		require.NoError(t, json.Unmarshal(m.Recipient, &rc))
		require.Equal(t, map[string]any{"id": "u1", "email": "a@example.com"}, rc)
	})
}
