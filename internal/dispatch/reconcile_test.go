package dispatch_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"gorm.io/gorm"

	"github.com/notificationservice/notificationservice/internal/actions"
	"github.com/notificationservice/notificationservice/internal/channels"
	"github.com/notificationservice/notificationservice/internal/config"
	"github.com/notificationservice/notificationservice/internal/dispatch"
	"github.com/notificationservice/notificationservice/internal/dispatch/delivery"
	"github.com/notificationservice/notificationservice/internal/dispatch/intake"
	"github.com/notificationservice/notificationservice/internal/dispatch/status"
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
		disp := delivery.New(db, map[string]channels.Channel{"email": email, "sms": sms, "push": sms}, testConfig(),
			delivery.Senders{Email: channels.Address{Email: "noreply@example.com"}, SMSFrom: "+15550100"}, discard(), func() time.Time { return clock })
		in := intake.New(db, actions.NewRules(db), outbox.NewWriter(nil, nil), nil, disp)
		store := status.New(db, nil)
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
			out, err := in.Submit(ctx, []intake.Submission{{Source: intake.SourceQueue, Request: request(t, cid,
				`{"collectionId": CID, "notification": [{"name": "USER_INVITEUSER", "recipients": [{"email": "a@example.com", "phone": "+15550001", "macros": {"FNAME": "Ann"}}]}]}`)}})
			require.NoError(t, err)
			nid := out[0].Notifications[0].ID
			require.NoError(t, db.Exec("UPDATE deliveries SET status = 'sending', attempts = 1, lease_owner = 'a-dead-instance', lease_until = 1, claimed_at = ? WHERE notification_id = ?", claimedAt.UnixMilli(), nid).Error)
			var e, s dispatch.Delivery
			require.NoError(t, db.Where("notification_id = ? AND channel = 'email'", nid).First(&e).Error)
			require.NoError(t, db.Where("notification_id = ? AND channel = 'sms'", nid).First(&s).Error)
			return e.ID, s.ID
		}
		get := func(id int64) dispatch.Delivery {
			t.Helper()
			ds, err := store.ListDeliveries(ctx, cid, status.DeliveryFilter{Limit: 100})
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
		require.NoError(t, db.Exec("UPDATE deliveries SET status = 'sending', attempts = 2, lease_owner = 'a-dead-instance', lease_until = 1, claimed_at = ? WHERE id IN (?, ?)", claimedAt.UnixMilli(), e2, s2).Error)
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
		ds, err := store.ListDeliveries(ctx, cid, status.DeliveryFilter{Status: dispatch.StatusUnknown, Limit: 100})
		require.NoError(t, err)
		require.Len(t, ds, 1)
		require.Equal(t, s1, ds[0].ID)
	})
}

// Recovery through the real Twilio channel (twilio-go against a fake of the
// Messages list): the SMS the dead worker sent is found by its rendered
// body, recipient and sender, and marked sent with Twilio's SID.
func TestRecoverFindsTheSMSTwilioAccepted(t *testing.T) {
	t.Parallel()
	testdb.Dialects(t, func(t *testing.T, db *gorm.DB) {
		ctx := context.Background()
		clock := time.Now().Truncate(time.Second)
		var queries []url.Values
		var mu sync.Mutex
		fake := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			mu.Lock()
			queries = append(queries, r.URL.Query())
			mu.Unlock()
			msgs := []map[string]any{}
			if r.URL.Query().Get("To") == "+15550001" {
				created := clock.Add(-90 * time.Second).UTC().Format(time.RFC1123Z)
				msgs = append(msgs, map[string]any{"sid": "SM0000000000000000000000000000ann", "to": "+15550001", "from": "+15550100",
					"body": "Hi Ann", "status": "delivered", "date_created": created, "date_sent": created})
			}
			w.Header().Set("Content-Type", "application/json")
			_ = json.NewEncoder(w).Encode(map[string]any{"messages": msgs, "next_page_uri": nil})
		}))
		t.Cleanup(fake.Close)
		tc := config.Default().Channels.Twilio
		tc.AccountSID, tc.AuthToken, tc.BaseURL, tc.RatePerSecond = "AC0123456789abcdef0123456789abcdef", "token", fake.URL, 0
		tw, err := channels.NewTwilio(tc, 3, time.Minute, nil)
		require.NoError(t, err)

		cid, _ := seedRule(t, db, "USER_INVITEUSER", smsAction())
		disp := delivery.New(db, map[string]channels.Channel{"sms": tw}, testConfig(),
			delivery.Senders{SMSFrom: "+15550100"}, discard(), func() time.Time { return clock })
		in := intake.New(db, actions.NewRules(db), outbox.NewWriter(nil, nil), nil, disp)
		out, err := in.Submit(ctx, []intake.Submission{{Source: intake.SourceQueue, Request: request(t, cid,
			`{"collectionId": CID, "notification": [{"name": "USER_INVITEUSER", "recipients": [{"phone": "+1 555 0001", "macros": {"FNAME": "Ann"}}, {"phone": "+15550002", "macros": {"FNAME": "Bob"}}]}]}`)}})
		require.NoError(t, err)
		nid := out[0].Notifications[0].ID
		require.NoError(t, db.Exec("UPDATE deliveries SET status = 'sending', attempts = 1, lease_owner = 'a-dead-instance', lease_until = 1, claimed_at = ? WHERE notification_id = ?",
			clock.Add(-2*time.Minute).UnixMilli(), nid).Error)

		n, err := disp.Recover(ctx)
		require.NoError(t, err)
		require.EqualValues(t, 2, n)
		var ds []dispatch.Delivery
		require.NoError(t, db.Where("notification_id = ?", nid).Order("recipient_index").Find(&ds).Error)
		require.Equal(t, dispatch.StatusSent, ds[0].Status)
		require.Equal(t, "SM0000000000000000000000000000ann", *ds[0].ProviderMessageID)
		require.Equal(t, channels.TwilioName, ds[0].Provider)
		require.Equal(t, dispatch.ReconciledAccepted, ds[0].Reconciled)
		require.Equal(t, dispatch.StatusPending, ds[1].Status, "Twilio has no message to Bob: sent again")
		require.Equal(t, dispatch.ReconciledNotFound, ds[1].Reconciled)
		require.Len(t, queries, 2)
		for _, q := range queries {
			require.Equal(t, "+15550100", q.Get("From"))
		}
	})
}

// A send whose answer was lost (the provider may have accepted it: a
// connection broken mid-call) is neither retried nor failed: its delivery
// stays in sending, as after a crash, and recovery asks the provider once
// the lease has expired. Retrying at once is how the fault suite's
// REST-during-outage scenario once sent a message twice: the sandbox's
// record had committed as PostgreSQL went down.
func TestALostAnswerIsLeftToRecoveryNotSentAgain(t *testing.T) {
	t.Parallel()
	testdb.Dialects(t, func(t *testing.T, db *gorm.DB) {
		lost := channels.MaybeAccepted("scripted", "the connection broke before the answer", nil)
		email := &oracle{scripted: &scripted{errs: []error{lost, lost}}}
		b := setup(t, db, email)
		clock := time.Now().Add(time.Second) // after the intake's own clock
		cfg := testConfig()
		b.disp = delivery.New(db, map[string]channels.Channel{"email": email, "sms": email, "push": email}, cfg,
			delivery.Senders{Email: channels.Address{Email: "noreply@example.com"}}, discard(), func() time.Time { return clock })
		ctx := context.Background()
		submit := func() dispatch.Delivery {
			t.Helper()
			out, err := b.intake.Submit(ctx, []intake.Submission{{Source: intake.SourceQueue,
				Request: request(t, b.collectionID, `{"collectionId": CID, "notification": [{"name": "USER_INVITEUSER", "recipients": [{"email": "a@example.com", "macros": {"FNAME": "A"}}]}]}`)}})
			require.NoError(t, err)
			n, err := b.disp.RunOnce(ctx)
			require.NoError(t, err)
			require.Equal(t, 1, n)
			return deliveries(t, b, out[0].Notifications[0].ID, "email")[0]
		}
		get := func(id int64) dispatch.Delivery {
			t.Helper()
			var d dispatch.Delivery
			require.NoError(t, db.First(&d, id).Error)
			return d
		}

		// The provider had accepted it.
		accepted := submit()
		// The provider had not: sent again by recovery, once.
		notAccepted := submit()
		require.Len(t, email.calls, 2)
		for _, d := range []dispatch.Delivery{accepted, notAccepted} {
			require.Equal(t, dispatch.StatusSending, d.Status, "no outcome is written for a lost answer")
			require.Equal(t, 1, d.Attempts)
		}
		n, err := b.disp.RunOnce(ctx)
		require.NoError(t, err)
		require.Zero(t, n, "not claimable while in doubt")
		moved, err := b.disp.Recover(ctx)
		require.NoError(t, err)
		require.Zero(t, moved, "its lease has not expired yet")

		email.accepted = map[int64]string{accepted.ID: "pm-late"}
		clock = clock.Add(cfg.Lease + time.Second)
		moved, err = b.disp.Recover(ctx)
		require.NoError(t, err)
		require.Equal(t, int64(2), moved)
		got := get(accepted.ID)
		require.Equal(t, dispatch.StatusSent, got.Status)
		require.Equal(t, "pm-late", *got.ProviderMessageID)
		require.Equal(t, dispatch.ReconciledAccepted, got.Reconciled)
		require.Equal(t, 1, got.InDoubt)
		require.Equal(t, dispatch.StatusPending, get(notAccepted.ID).Status)

		n, err = b.disp.RunOnce(ctx)
		require.NoError(t, err)
		require.Equal(t, 1, n)
		require.Len(t, email.calls, 3, "only the one the provider had not accepted is sent again")
		require.Equal(t, notAccepted.ID, email.calls[2][0].DeliveryID)
		got = get(notAccepted.ID)
		require.Equal(t, dispatch.StatusSent, got.Status)
		require.Equal(t, 2, got.Attempts)
		require.Equal(t, dispatch.ReconciledNotFound, got.Reconciled)
	})
}

// Twilio takes an SMS and its answer never comes (the call times out): the
// real client reports it in doubt, so the workers do not send it again;
// recovery, once the lease has expired, finds it in Twilio's Messages list
// and records it sent. Retrying the timeout at once sent the SMS twice.
func TestATwilioTimeoutIsNotSentTwice(t *testing.T) {
	t.Parallel()
	testdb.Dialects(t, func(t *testing.T, db *gorm.DB) {
		ctx := context.Background()
		var mu sync.Mutex
		var taken []map[string]any // what the fake accepted, for its Messages list
		posts := 0
		fake := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method == http.MethodGet {
				mu.Lock()
				msgs := append([]map[string]any{}, taken...)
				mu.Unlock()
				w.Header().Set("Content-Type", "application/json")
				_ = json.NewEncoder(w).Encode(map[string]any{"messages": msgs, "next_page_uri": nil})
				return
			}
			require.NoError(t, r.ParseForm())
			now := time.Now().UTC().Format(time.RFC1123Z)
			mu.Lock()
			posts++
			taken = append(taken, map[string]any{"sid": "SM00000000000000000000000000000001", "to": r.PostForm.Get("To"),
				"from": r.PostForm.Get("From"), "body": r.PostForm.Get("Body"), "status": "queued", "date_created": now, "date_sent": now})
			mu.Unlock()
			<-r.Context().Done() // accepted; the answer never leaves
		}))
		t.Cleanup(fake.Close)
		tc := config.Default().Channels.Twilio
		tc.AccountSID, tc.AuthToken, tc.BaseURL, tc.RatePerSecond = "AC0123456789abcdef0123456789abcdef", "token", fake.URL, 0
		tc.Timeout = time.Second
		tw, err := channels.NewTwilio(tc, 3, time.Minute, nil)
		require.NoError(t, err)

		cid, _ := seedRule(t, db, "USER_INVITEUSER", smsAction())
		cfg := testConfig()
		clock := time.Now().Add(time.Second) // after the intake's own clock
		disp := delivery.New(db, map[string]channels.Channel{"sms": tw}, cfg,
			delivery.Senders{SMSFrom: "+15550100"}, discard(), func() time.Time { return clock })
		in := intake.New(db, actions.NewRules(db), outbox.NewWriter(nil, nil), nil, nil)
		out, err := in.Submit(ctx, []intake.Submission{{Source: intake.SourceQueue, Request: request(t, cid,
			`{"collectionId": CID, "notification": [{"name": "USER_INVITEUSER", "recipients": [{"phone": "+15550001", "macros": {"FNAME": "Ann"}}]}]}`)}})
		require.NoError(t, err)
		nid := out[0].Notifications[0].ID
		get := func() dispatch.Delivery {
			t.Helper()
			var d dispatch.Delivery
			require.NoError(t, db.Where("notification_id = ?", nid).First(&d).Error)
			return d
		}

		n, err := disp.RunOnce(ctx)
		require.NoError(t, err)
		require.Equal(t, 1, n)
		require.Equal(t, dispatch.StatusSending, get().Status, "no outcome is written for a lost answer")
		clock = clock.Add(cfg.BackoffBase * 10)
		n, err = disp.RunOnce(ctx)
		require.NoError(t, err)
		require.Zero(t, n, "not sent again while in doubt")

		clock = clock.Add(cfg.Lease + time.Second)
		moved, err := disp.Recover(ctx)
		require.NoError(t, err)
		require.EqualValues(t, 1, moved)
		d := get()
		require.Equal(t, dispatch.StatusSent, d.Status)
		require.Equal(t, "SM00000000000000000000000000000001", *d.ProviderMessageID)
		require.Equal(t, dispatch.ReconciledAccepted, d.Reconciled)
		require.Equal(t, 1, d.InDoubt)
		n, err = disp.RunOnce(ctx)
		require.NoError(t, err)
		require.Zero(t, n)
		mu.Lock()
		defer mu.Unlock()
		require.Equal(t, 1, posts, "one SMS")
	})
}
