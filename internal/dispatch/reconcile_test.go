package dispatch_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"gorm.io/gorm"

	"github.com/notificationservice/notificationservice/internal/actions"
	"github.com/notificationservice/notificationservice/internal/channels"
	"github.com/notificationservice/notificationservice/internal/dispatch"
	"github.com/notificationservice/notificationservice/internal/outbox"
	"github.com/notificationservice/notificationservice/internal/testdb"
)

// oracle is a channel whose provider can be asked what it accepted: it
// answers accepted, or fails with err.
type oracle struct {
	*scripted
	accepted map[int64]string
	err      error
	asked    []channels.InDoubt
}

func (o *oracle) Accepted(_ context.Context, ds []channels.InDoubt) (map[int64]string, error) {
	o.asked = append(o.asked, ds...)
	if o.err != nil {
		return nil, o.err
	}
	out := map[int64]string{}
	for _, d := range ds {
		if pm, ok := o.accepted[d.DeliveryID]; ok {
			out[d.DeliveryID] = pm
		}
	}
	return out, nil
}

// Each way recovery can resolve an in-doubt attempt: the provider says
// accepted (sent) or not (sent again); the provider cannot be asked, or
// fails, and the action's inDoubt policy says resend or markUnknown.
func TestRecoverResolvesInDoubtAttemptsByProviderAndPolicy(t *testing.T) {
	t.Parallel()
	testdb.Dialects(t, func(t *testing.T, db *gorm.DB) {
		ctx := context.Background()
		clock := time.UnixMilli(1_900_000_000_000)
		cid, ids := seedRule(t, db, "USER_INVITEUSER", emailAction(), smsAction())
		emailAct, smsAct := ids[0], ids[1]
		email := &oracle{scripted: &scripted{}}
		sms := &scripted{} // no lookup
		disp := dispatch.NewDispatcher(db, map[string]channels.Channel{"email": email, "sms": sms, "push": sms}, testConfig(),
			dispatch.Senders{Email: channels.Address{Email: "noreply@example.com"}, SMSFrom: "+15550100"}, discard(), func() time.Time { return clock })
		intake := dispatch.NewIntake(db, actions.NewRules(db), outbox.NewWriter(nil, nil), nil, disp)
		store := dispatch.NewStore(db, nil)
		policy := func(actionID int64, p string) {
			t.Helper()
			var a actions.Action
			require.NoError(t, db.First(&a, actionID).Error)
			a.Config.InDoubt = p
			require.NoError(t, db.Model(&actions.Action{}).Where("id = ?", actionID).Update("config", a.Config).Error)
		}
		claimedAt := clock.Add(-2 * time.Minute)
		// crash submits a notification and leaves both its deliveries in
		// sending, claimed two minutes ago, as a worker that died mid-send.
		crash := func() (emailID, smsID int64) {
			t.Helper()
			out, err := intake.Submit(ctx, []dispatch.Submission{{Source: dispatch.SourceQueue, Request: request(t, cid,
				`{"collectionId": CID, "notification": [{"name": "USER_INVITEUSER", "recipients": [{"email": "a@example.com", "phone": "+15550001", "macros": {"FNAME": "Ann"}}]}]}`)}})
			require.NoError(t, err)
			nid := out[0].Notifications[0].ID
			require.NoError(t, db.Exec("UPDATE deliveries SET status = 'sending', attempts = 1, claimed_at = ? WHERE notification_id = ?", claimedAt.UnixMilli(), nid).Error)
			var e, s dispatch.Delivery
			require.NoError(t, db.Where("notification_id = ? AND channel = 'email'", nid).First(&e).Error)
			require.NoError(t, db.Where("notification_id = ? AND channel = 'sms'", nid).First(&s).Error)
			return e.ID, s.ID
		}
		get := func(id int64) dispatch.Delivery {
			t.Helper()
			ds, err := store.ListDeliveries(ctx, cid, dispatch.DeliveryFilter{Limit: 100})
			require.NoError(t, err)
			for _, d := range ds {
				if d.ID == id {
					return d
				}
			}
			t.Fatalf("delivery %d not found", id)
			return dispatch.Delivery{}
		}
		recoverAll := func(want int64) {
			t.Helper()
			n, err := disp.Recover(ctx)
			require.NoError(t, err)
			require.Equal(t, want, n)
		}

		// The provider accepted the email; SMS cannot be asked and its
		// action says markUnknown.
		policy(smsAct, actions.InDoubtMarkUnknown)
		e1, s1 := crash()
		email.accepted = map[int64]string{e1: "pm-found"}
		recoverAll(2)
		got := get(e1)
		require.Equal(t, dispatch.StatusSent, got.Status)
		require.Equal(t, "pm-found", *got.ProviderMessageID)
		require.Equal(t, "scripted", got.Provider)
		require.Equal(t, dispatch.ReconciledAccepted, got.Reconciled)
		require.Equal(t, 1, got.InDoubt)
		require.Equal(t, []channels.InDoubt{{DeliveryID: e1, NotificationID: got.NotificationID, Address: "a@example.com",
			Sender: "noreply@example.com", Body: "Hello Ann", Since: claimedAt, Until: clock}}, email.asked,
			"the provider is asked with where, from whom, what and when")
		got = get(s1)
		require.Equal(t, dispatch.StatusUnknown, got.Status)
		require.Equal(t, dispatch.ReconciledUnknown, got.Reconciled)
		require.Equal(t, 1, got.InDoubt)
		require.Contains(t, got.Reason, "config.inDoubt is markUnknown")
		require.Empty(t, sms.calls, "not sent again")

		// The provider has not got the email: sent again, due now. SMS
		// cannot be asked and its action resends (the default).
		policy(smsAct, "")
		e2, s2 := crash()
		email.accepted = nil
		recoverAll(2)
		got = get(e2)
		require.Equal(t, dispatch.StatusPending, got.Status)
		require.Equal(t, clock.UnixMilli(), got.NextAttemptAt)
		require.Equal(t, dispatch.ReconciledNotFound, got.Reconciled)
		got = get(s2)
		require.Equal(t, dispatch.StatusPending, got.Status)
		require.Equal(t, dispatch.ReconciledResent, got.Reconciled)
		require.Contains(t, got.Reason, "cannot be asked")

		// The same email crashes again and the provider has it now: two
		// in-doubt attempts, the last accepted.
		require.NoError(t, db.Exec("UPDATE deliveries SET status = 'sending', attempts = 2, claimed_at = ? WHERE id IN (?, ?)", claimedAt.UnixMilli(), e2, s2).Error)
		email.accepted = map[int64]string{e2: "pm-second"}
		recoverAll(2)
		got = get(e2)
		require.Equal(t, dispatch.StatusSent, got.Status)
		require.Equal(t, 2, got.InDoubt)
		require.Equal(t, dispatch.ReconciledAccepted, got.Reconciled)

		// The provider's lookup fails: each action's policy decides.
		email.err = errors.New("HTTP 503 from the lookup")
		e3, _ := crash()
		recoverAll(2)
		got = get(e3)
		require.Equal(t, dispatch.StatusPending, got.Status)
		require.Equal(t, dispatch.ReconciledResent, got.Reconciled)
		require.Contains(t, got.Reason, "HTTP 503 from the lookup")
		policy(emailAct, actions.InDoubtMarkUnknown)
		e4, _ := crash()
		recoverAll(2)
		got = get(e4)
		require.Equal(t, dispatch.StatusUnknown, got.Status)
		require.Equal(t, dispatch.ReconciledUnknown, got.Reconciled)

		// A provider report for an unknown delivery shows it got there.
		require.NoError(t, store.MarkByID(ctx, e4, dispatch.StatusDelivered, ""))
		require.Equal(t, dispatch.StatusDelivered, get(e4).Status)

		// The status filter knows unknown.
		ds, err := store.ListDeliveries(ctx, cid, dispatch.DeliveryFilter{Status: dispatch.StatusUnknown, Limit: 100})
		require.NoError(t, err)
		require.Len(t, ds, 1)
		require.Equal(t, s1, ds[0].ID)
	})
}
