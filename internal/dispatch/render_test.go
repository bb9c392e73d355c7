package dispatch_test

import (
	"context"
	"strings"
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
	"github.com/notificationservice/notificationservice/internal/macros"
	"github.com/notificationservice/notificationservice/internal/outbox"
	"github.com/notificationservice/notificationservice/internal/testdb"
)

// TestRenderLimitFailsTheDelivery is the 54 KB send that became a 10 MB
// email marked sent: the render stops at templates.maxOutput, the delivery
// fails with a render_limit reason, and nothing reaches the provider. The
// recipient's other delivery, within the limit, is sent.
func TestRenderLimitFailsTheDelivery(t *testing.T) {
	t.Parallel()
	testdb.Dialects(t, func(t *testing.T, db *gorm.DB) {
		amplify := actions.Action{Name: "amplify", ConfigName: actions.ConfigEmail, Config: actions.Config{
			Content: actions.Content{Subject: "Hi", HTML: "<p>" + strings.Repeat("{{V}}", 200) + "</p>"}}}
		small := actions.Action{Name: "small", ConfigName: actions.ConfigSMS, Config: actions.Config{Content: actions.Content{Body: "Hi"}}}
		cid, ids := seedRule(t, db, "BIG", amplify, small)
		sandbox := channels.NewSandbox(db, discard(), nil, channels.SandboxKeepAll())
		disp := delivery.New(db, map[string]channels.Channel{"email": sandbox, "sms": sandbox}, testConfig(),
			delivery.Senders{Email: channels.Address{Email: "noreply@example.com"}}, discard(), nil).
			WithRenderLimits(macros.RenderLimits{MaxOutputBytes: 1 << 20, Timeout: time.Hour}) // no deadline in reach under load
		in := intake.New(db, actions.NewRules(db), outbox.NewWriter(nil, nil), nil, disp)
		store := status.New(db, nil)
		ctx := context.Background()

		v := strings.Repeat("a", 50<<10) // 200 × 50 KB = 10 MB
		out, err := in.Submit(ctx, []intake.Submission{{Source: intake.SourceQueue, Request: request(t, cid,
			`{"collectionId": CID, "notification": [{"name": "BIG", "recipients": [{"email": "a@example.com", "phone": "+15550001", "macros": {"V": "`+v+`"}}]}]}`)}})
		require.NoError(t, err)
		_, err = disp.RunOnce(ctx)
		require.NoError(t, err)

		ds, err := store.ListDeliveries(ctx, cid, status.DeliveryFilter{NotificationID: out[0].Notifications[0].ID, Limit: 10})
		require.NoError(t, err)
		require.Len(t, ds, 2)
		byAction := map[int64]dispatch.Delivery{}
		for _, d := range ds {
			byAction[d.ActionID] = d
		}
		big := byAction[ids[0]]
		require.Equal(t, dispatch.StatusFailed, big.Status)
		require.True(t, strings.HasPrefix(big.Reason, "render_limit: output exceeds 1048576 bytes"), big.Reason)
		require.Equal(t, dispatch.StatusSent, byAction[ids[1]].Status)

		msgs := sandbox.Messages()
		require.Len(t, msgs, 1, "only the SMS was sent")
		require.Equal(t, "sms", msgs[0].Channel)
		var recorded int64
		require.NoError(t, db.Raw("SELECT COUNT(*) FROM sandbox_messages WHERE delivery_id = ?", big.ID).Scan(&recorded).Error)
		require.Zero(t, recorded, "the sandbox recorded nothing for the failed delivery")
	})
}
