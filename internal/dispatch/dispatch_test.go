package dispatch_test

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/stretchr/testify/require"
	"gorm.io/gorm"

	"github.com/notificationservice/notificationservice/internal/actions"
	"github.com/notificationservice/notificationservice/internal/apperr"
	"github.com/notificationservice/notificationservice/internal/auth"
	"github.com/notificationservice/notificationservice/internal/channels"
	"github.com/notificationservice/notificationservice/internal/config"
	"github.com/notificationservice/notificationservice/internal/dispatch"
	"github.com/notificationservice/notificationservice/internal/dispatch/delivery"
	"github.com/notificationservice/notificationservice/internal/dispatch/intake"
	"github.com/notificationservice/notificationservice/internal/dispatch/status"
	"github.com/notificationservice/notificationservice/internal/outbox"
	"github.com/notificationservice/notificationservice/internal/testdb"
)

// bundle is one test's database with a collection, an ACTIVE event
// USER_INVITEUSER and its actions.
type bundle struct {
	db           *gorm.DB
	collectionID int64
	email, sms   int64 // action ids
	intake       *intake.Intake
	store        *status.Store
	sandbox      *channels.Sandbox
	disp         *delivery.Dispatcher
}

func discard() *slog.Logger { return slog.New(slog.DiscardHandler) }

func testConfig() config.Dispatch {
	cfg := config.Default().Dispatch
	cfg.BackoffBase = time.Second
	cfg.Lease = time.Minute
	return cfg
}

// seedRule inserts a collection, an event and actions, as the admin API would.
func seedRule(t testing.TB, db *gorm.DB, name string, acts ...actions.Action) (collectionID int64, actionIDs []int64) {
	t.Helper()
	now := time.Now().UnixMilli()
	require.NoError(t, db.Raw(`INSERT INTO collections (name, status, created_time, updated_time) VALUES (?, 'ACTIVE', ?, ?) RETURNING id`,
		testdb.Name("c"), now, now).Scan(&collectionID).Error)
	var eventID int64
	require.NoError(t, db.Raw(`INSERT INTO events (collection_id, name, status, created_time, updated_time) VALUES (?, ?, 'ACTIVE', ?, ?) RETURNING id`,
		collectionID, name, now, now).Scan(&eventID).Error)
	for _, a := range acts {
		a.CollectionID, a.EventID, a.CreatedTime, a.UpdatedTime = collectionID, eventID, now, now
		if a.Status == "" {
			a.Status = actions.StatusActive
		}
		require.NoError(t, db.Create(&a).Error)
		actionIDs = append(actionIDs, a.ID)
	}
	return collectionID, actionIDs
}

func emailAction() actions.Action {
	return actions.Action{Name: "Invite email", ConfigName: actions.ConfigEmail, Config: actions.Config{
		Content: actions.Content{Subject: "Hello {{FNAME}}", HTML: "<p>Hi {{FNAME}}</p>", Text: "Hi {{FNAME}}"},
		Locales: map[string]actions.Content{"fr": {Subject: "Bonjour {{FNAME}}"}},
	}}
}

func smsAction() actions.Action {
	return actions.Action{Name: "Invite sms", ConfigName: actions.ConfigSMS, Config: actions.Config{Content: actions.Content{Body: "Hi {{FNAME}}"}}}
}

func setup(t *testing.T, db *gorm.DB, chans ...channels.Channel) *bundle {
	t.Helper()
	cid, ids := seedRule(t, db, "USER_INVITEUSER", emailAction(), smsAction())
	b := &bundle{db: db, collectionID: cid, email: ids[0], sms: ids[1]}
	b.sandbox = channels.NewSandbox(db, discard(), nil, channels.SandboxKeepAll())
	var ch channels.Channel = b.sandbox
	if len(chans) > 0 {
		ch = chans[0]
	}
	b.disp = delivery.New(db, map[string]channels.Channel{"email": ch, "sms": ch, "push": ch}, testConfig(),
		delivery.Senders{Email: channels.Address{Email: "noreply@example.com"}}, discard(), nil)
	b.intake = intake.New(db, actions.NewRules(db), outbox.NewWriter(nil, nil), nil, b.disp)
	b.store = status.New(db, nil)
	return b
}

func request(t testing.TB, collectionID int64, body string) dispatch.Request {
	t.Helper()
	body = strings.ReplaceAll(body, "CID", jsonInt(collectionID))
	req, err := dispatch.Parse([]byte(body), 1<<20)
	require.NoError(t, err)
	return req
}

func jsonInt(n int64) string { b, _ := json.Marshal(n); return string(b) }

const twoRecipients = `{"collectionId": CID, "notification": [{"name": "USER_INVITEUSER", "recipients": [
  {"email": "a@example.com", "phone": "+15550001", "locale": "fr_CA", "macros": {"FNAME": "Ann"}},
  {"tos": [{"email": "b@example.com", "name": "Bob"}], "ccs": [{"email": "c@example.com"}], "macros": {"FNAME": "Bob"}}
]}]}`

func TestIntakePlansOneDeliveryPerRecipientAndAction(t *testing.T) {
	t.Parallel()
	testdb.Dialects(t, func(t *testing.T, db *gorm.DB) {
		b := setup(t, db)
		ctx := context.Background()
		out, err := b.intake.Submit(ctx, []intake.Submission{{Source: intake.SourceQueue, Key: "m1",
			Request: request(t, b.collectionID, twoRecipients), Correlation: map[string]string{"correlationId": "corr-1"}}})
		require.NoError(t, err)
		require.Len(t, out[0].Notifications, 1)
		s := out[0].Notifications[0]
		require.Equal(t, dispatch.NotificationAccepted, s.Status)
		require.Equal(t, 4, s.Deliveries)
		require.Equal(t, 1, s.Skipped)

		n, err := b.store.Get(ctx, b.collectionID, s.ID)
		require.NoError(t, err)
		require.Equal(t, "corr-1", n.Correlation["correlationId"])
		require.Len(t, n.Recipients, 2)
		got := map[[2]int64]*dispatch.Delivery{}
		for _, d := range n.Deliveries {
			got[[2]int64{int64(d.RecipientIndex), d.ActionID}] = d
		}
		require.Equal(t, "a@example.com", got[[2]int64{0, b.email}].Address)
		require.Equal(t, dispatch.StatusPending, got[[2]int64{0, b.email}].Status)
		require.Equal(t, "+15550001", got[[2]int64{0, b.sms}].Address)
		require.Equal(t, "b@example.com", got[[2]int64{1, b.email}].Address)
		bobSMS := got[[2]int64{1, b.sms}]
		require.Equal(t, dispatch.StatusSkipped, bobSMS.Status)
		require.Equal(t, "recipient has no phone number", bobSMS.Reason)

		// The sandbox gets exactly the planned, unskipped deliveries, rendered.
		n2, err := b.disp.RunOnce(ctx)
		require.NoError(t, err)
		require.Equal(t, 3, n2)
		msgs := b.sandbox.Messages()
		require.Len(t, msgs, 3)
		byDelivery := map[int64]channels.Message{}
		for _, m := range msgs {
			byDelivery[m.DeliveryID] = m
		}
		ann := byDelivery[got[[2]int64{0, b.email}].ID]
		require.Equal(t, "Bonjour Ann", ann.Subject) // fr_CA falls back to fr
		require.Equal(t, "<p>Hi Ann</p>", ann.HTML)
		require.Equal(t, []channels.Address{{Email: "a@example.com"}}, ann.To)
		require.Equal(t, "noreply@example.com", ann.From.Email)
		bob := byDelivery[got[[2]int64{1, b.email}].ID]
		require.Equal(t, []channels.Address{{Email: "b@example.com", Name: "Bob"}}, bob.To)
		require.Equal(t, []channels.Address{{Email: "c@example.com"}}, bob.Cc)
		require.Equal(t, "Hi Ann", byDelivery[got[[2]int64{0, b.sms}].ID].Body)

		n, err = b.store.Get(ctx, b.collectionID, s.ID)
		require.NoError(t, err)
		for _, d := range n.Deliveries {
			if d.Status == dispatch.StatusSkipped {
				continue
			}
			require.Equal(t, dispatch.StatusSent, d.Status)
			require.Equal(t, 1, d.Attempts)
			require.Equal(t, channels.SandboxName, d.Provider)
			require.NotNil(t, d.ProviderMessageID)
		}
		var recorded int64
		require.NoError(t, db.Raw("SELECT COUNT(*) FROM sandbox_messages").Scan(&recorded).Error)
		require.EqualValues(t, 3, recorded)
	})
}

func TestIntakeDedupesByKey(t *testing.T) {
	t.Parallel()
	testdb.Dialects(t, func(t *testing.T, db *gorm.DB) {
		b := setup(t, db)
		ctx := context.Background()
		req := request(t, b.collectionID, twoRecipients)
		other := request(t, b.collectionID, strings.Replace(twoRecipients, "Ann", "Anne", 1))
		sub := func(key string, r dispatch.Request) intake.Submission {
			return intake.Submission{Source: intake.SourceQueue, Key: key, Request: r}
		}
		first, err := b.intake.Submit(ctx, []intake.Submission{sub("k1", req), sub("k1", req), sub("k1", other)})
		require.NoError(t, err)
		require.False(t, first[0].Replayed)
		require.True(t, first[1].Replayed, "same key in the same batch")
		require.Equal(t, first[0].Notifications, first[1].Notifications)
		require.True(t, first[2].Conflict)

		again, err := b.intake.Submit(ctx, []intake.Submission{sub("k1", req), sub("k1", other), sub("k2", req)})
		require.NoError(t, err)
		require.True(t, again[0].Replayed, "redelivery")
		require.Equal(t, first[0].Notifications, again[0].Notifications)
		require.True(t, again[1].Conflict)
		require.False(t, again[2].Replayed)

		var notes, deliveries int64
		require.NoError(t, db.Raw("SELECT COUNT(*) FROM notifications").Scan(&notes).Error)
		require.NoError(t, db.Raw("SELECT COUNT(*) FROM deliveries").Scan(&deliveries).Error)
		require.EqualValues(t, 2, notes)
		require.EqualValues(t, 8, deliveries)

		// API keys are scoped by collection, apart from queue message ids.
		api, err := b.intake.Send(ctx, req, "k1", nil, dispatch.Producer{}, auth.Principal{UserID: "1"})
		require.NoError(t, err)
		require.False(t, api.Replayed)
		replay, err := b.intake.Send(ctx, req, "k1", nil, dispatch.Producer{}, auth.Principal{UserID: "1"})
		require.NoError(t, err)
		require.True(t, replay.Replayed)
		require.Equal(t, api.Notifications, replay.Notifications)
		_, err = b.intake.Send(ctx, other, "k1", nil, dispatch.Producer{}, auth.Principal{UserID: "1"})
		require.ErrorIs(t, err, intake.ErrKeyConflict)
		require.Equal(t, apperr.FailedPrecondition, apperr.KindOf(err))
		var envelopes int64
		require.NoError(t, db.Raw("SELECT COUNT(*) FROM outbox WHERE detail_type = ?", outbox.NotificationsSend).Scan(&envelopes).Error)
		require.EqualValues(t, 1, envelopes, "one envelope for the one API notification created")
	})
}

func TestIntakeRecordsUnresolvableNames(t *testing.T) {
	t.Parallel()
	testdb.Dialects(t, func(t *testing.T, db *gorm.DB) {
		b := setup(t, db)
		ctx := context.Background()
		body := `{"collectionId": CID, "notification": [{"name": "NO_SUCH_EVENT", "recipients": [{"email": "a@example.com"}]},
		  {"name": "USER_INVITEUSER", "recipients": [{"email": "not an address", "phone": "+1555"}]}]}`
		out, err := b.intake.Submit(ctx, []intake.Submission{{Source: intake.SourceQueue, Request: request(t, b.collectionID, body)},
			{Source: intake.SourceQueue, Request: request(t, 987654321, body)}})
		require.NoError(t, err)
		unknown := out[0].Notifications[0]
		require.Equal(t, dispatch.NotificationRejected, unknown.Status)
		require.Contains(t, unknown.Reason, `no ACTIVE event named "NO_SUCH_EVENT"`)
		require.Zero(t, unknown.Deliveries)
		known := out[0].Notifications[1]
		require.Equal(t, dispatch.NotificationAccepted, known.Status)
		require.Equal(t, 2, known.Deliveries)
		require.Equal(t, 1, known.Skipped)
		n, err := b.store.Get(ctx, b.collectionID, known.ID)
		require.NoError(t, err)
		require.Equal(t, `invalid email address "not an address"`, n.Deliveries[0].Reason)
		for _, s := range out[1].Notifications {
			require.Equal(t, dispatch.NotificationRejected, s.Status, "unknown collection")
		}
		list, err := b.store.List(ctx, b.collectionID, status.NotificationFilter{Status: dispatch.NotificationRejected, Limit: 10})
		require.NoError(t, err)
		require.Len(t, list, 1)
		require.Equal(t, unknown.ID, list[0].ID)
	})
}

func TestConditionSkipsRecipients(t *testing.T) {
	t.Parallel()
	testdb.Dialects(t, func(t *testing.T, db *gorm.DB) {
		a := emailAction()
		a.Config.Condition = `recipient.macros.TIER == "gold"`
		cid, _ := seedRule(t, db, "PROMO", a)
		in := intake.New(db, actions.NewRules(db), nil, nil, nil)
		out, err := in.Submit(context.Background(), []intake.Submission{{Source: intake.SourceQueue, Request: request(t, cid,
			`{"collectionId": CID, "notification": [{"name": "PROMO", "recipients": [{"email": "a@example.com", "macros": {"TIER": "gold"}}, {"email": "b@example.com", "macros": {"TIER": 3}}]}]}`)}})
		require.NoError(t, err)
		require.Equal(t, 1, out[0].Notifications[0].Skipped)
		ds, err := status.New(db, nil).ListDeliveries(context.Background(), cid, status.DeliveryFilter{Status: dispatch.StatusSkipped, Limit: 10})
		require.NoError(t, err)
		require.Len(t, ds, 1)
		require.Equal(t, dispatch.ReasonConditionFalse, ds[0].Reason)
		require.Equal(t, `the action's condition is false: recipient.macros.TIER == "gold"`, ds[0].ReasonDetail)
	})
}

// scripted is a channel that answers from a script, per call.
type scripted struct {
	mu    sync.Mutex
	calls [][]channels.Message
	errs  []error // the error for each call in turn; nil: accept
	name  string  // the provider it records; "" is "scripted"
}

func (s *scripted) Name() string {
	if s.name != "" {
		return s.name
	}
	return "scripted"
}

func (s *scripted) Send(_ context.Context, msgs []channels.Message) []channels.Result {
	s.mu.Lock()
	defer s.mu.Unlock()
	var err error
	if n := len(s.calls); n < len(s.errs) {
		err = s.errs[n]
	}
	s.calls = append(s.calls, msgs)
	out := make([]channels.Result, len(msgs))
	for i, m := range msgs {
		if err != nil {
			out[i].Err = err
		} else {
			out[i].ProviderMessageID = "pm-" + jsonInt(m.DeliveryID)
		}
	}
	return out
}

func TestRetryBackoffAndPermanentFailure(t *testing.T) {
	t.Parallel()
	testdb.Dialects(t, func(t *testing.T, db *gorm.DB) {
		ch := &scripted{errs: []error{
			channels.Retryable("scripted", "503 busy", 90*time.Second, nil),
			channels.Permanent("scripted", "invalid recipient", nil),
		}}
		b := setup(t, db, ch)
		clock := time.Now().Add(time.Second) // after the intake's own clock
		b.disp = delivery.New(db, map[string]channels.Channel{"email": ch}, testConfig(), delivery.Senders{}, discard(), func() time.Time { return clock })
		ctx := context.Background()
		out, err := b.intake.Submit(ctx, []intake.Submission{{Source: intake.SourceQueue,
			Request: request(t, b.collectionID, `{"collectionId": CID, "notification": [{"name": "USER_INVITEUSER", "recipients": [{"email": "a@example.com", "macros": {"FNAME": "A"}}, {"email": "b@example.com", "macros": {"FNAME": "B"}}]}]}`)}})
		require.NoError(t, err)
		id := out[0].Notifications[0].ID

		n, err := b.disp.RunOnce(ctx)
		require.NoError(t, err)
		require.Equal(t, 2, n)
		require.Len(t, ch.calls, 1, "both recipients of one action go in one Send")
		require.Len(t, ch.calls[0], 2)
		ds := deliveries(t, b, id, "email")
		for _, d := range ds {
			require.Equal(t, dispatch.StatusPending, d.Status)
			require.Equal(t, 1, d.Attempts)
			require.Equal(t, "attempt 1 failed: 503 busy", d.Reason)
			require.Equal(t, clock.Add(90*time.Second).UnixMilli(), d.NextAttemptAt, "Retry-After beats the 1s backoff")
		}
		n, err = b.disp.RunOnce(ctx)
		require.NoError(t, err)
		require.Zero(t, n, "not due before Retry-After")

		clock = clock.Add(91 * time.Second)
		_, err = b.disp.RunOnce(ctx)
		require.NoError(t, err)
		for _, d := range deliveries(t, b, id, "email") {
			require.Equal(t, dispatch.StatusFailed, d.Status)
			require.Equal(t, 2, d.Attempts)
			require.Equal(t, "invalid recipient", d.Reason)
		}
	})
}

func TestGivesUpAfterMaxAttempts(t *testing.T) {
	t.Parallel()
	testdb.Dialects(t, func(t *testing.T, db *gorm.DB) {
		ch := &scripted{errs: []error{errors.New("reset"), errors.New("reset"), errors.New("reset")}}
		b := setup(t, db, ch)
		clock := time.Now().Add(time.Second) // after the intake's own clock
		cfg := testConfig()
		cfg.MaxAttempts = 3
		b.disp = delivery.New(db, map[string]channels.Channel{"email": ch, "sms": ch}, cfg, delivery.Senders{}, discard(), func() time.Time { return clock })
		ctx := context.Background()
		out, err := b.intake.Submit(ctx, []intake.Submission{{Source: intake.SourceQueue,
			Request: request(t, b.collectionID, `{"collectionId": CID, "notification": [{"name": "USER_INVITEUSER", "recipients": [{"email": "a@example.com", "macros": {"FNAME": "A"}}]}]}`)}})
		require.NoError(t, err)
		for range 3 {
			_, err := b.disp.RunOnce(ctx)
			require.NoError(t, err)
			clock = clock.Add(time.Hour)
		}
		d := deliveries(t, b, out[0].Notifications[0].ID, "email")[0]
		require.Equal(t, dispatch.StatusFailed, d.Status)
		require.Equal(t, 3, d.Attempts)
		require.Equal(t, "gave up after 3 attempts: reset", d.Reason)
	})
}

func TestRenderFailureFailsWithoutSending(t *testing.T) {
	t.Parallel()
	db, _ := testdb.SQLite(t)
	ch := &scripted{}
	b := setup(t, db, ch)
	ctx := context.Background()
	out, err := b.intake.Submit(ctx, []intake.Submission{{Source: intake.SourceQueue,
		Request: request(t, b.collectionID, `{"collectionId": CID, "notification": [{"name": "USER_INVITEUSER", "recipients": [{"email": "a@example.com"}]}]}`)}})
	require.NoError(t, err)
	_, err = b.disp.RunOnce(ctx)
	require.NoError(t, err)
	require.Empty(t, ch.calls)
	d := deliveries(t, b, out[0].Notifications[0].ID, "email")[0]
	require.Equal(t, dispatch.StatusFailed, d.Status)
	require.Equal(t, `render: macros: missing macro "FNAME"`, d.Reason)
}

func TestRecoverExpiredLeases(t *testing.T) {
	t.Parallel()
	testdb.Dialects(t, func(t *testing.T, db *gorm.DB) {
		b := setup(t, db)
		ctx := context.Background()
		out, err := b.intake.Submit(ctx, []intake.Submission{{Source: intake.SourceQueue,
			Request: request(t, b.collectionID, `{"collectionId": CID, "notification": [{"name": "USER_INVITEUSER", "recipients": [{"email": "a@example.com", "phone": "+1", "macros": {"FNAME": "A"}}]}]}`)}})
		require.NoError(t, err)
		id := out[0].Notifications[0].ID
		// A worker claimed both and died: one on its first attempt, one on its last.
		old := time.Now().Add(-2 * time.Minute).UnixMilli()
		require.NoError(t, db.Exec("UPDATE deliveries SET status = 'sending', claimed_at = ?, lease_owner = 'dead', lease_until = ?, attempts = 1 WHERE notification_id = ? AND channel = 'email'", old, old+1, id).Error)
		require.NoError(t, db.Exec("UPDATE deliveries SET status = 'sending', claimed_at = ?, lease_owner = 'dead', lease_until = ?, attempts = ? WHERE notification_id = ? AND channel = 'sms'", old, old+1, testConfig().MaxAttempts, id).Error)
		n, err := b.disp.Recover(ctx)
		require.NoError(t, err)
		require.EqualValues(t, 2, n)
		// The sandbox is asked, and has not got them.
		email := deliveries(t, b, id, "email")[0]
		require.Equal(t, dispatch.StatusPending, email.Status)
		require.Contains(t, email.Reason, "the provider had not accepted it, sending again")
		require.Equal(t, dispatch.ReconciledNotFound, email.Reconciled)
		sms := deliveries(t, b, id, "sms")[0]
		require.Equal(t, dispatch.StatusFailed, sms.Status)
		require.Contains(t, sms.Reason, "gave up after")

		// A lease that has not expired is left alone.
		require.NoError(t, db.Exec("UPDATE deliveries SET status = 'sending', lease_until = ? WHERE id = ?", time.Now().Add(time.Second).UnixMilli(), email.ID).Error)
		n, err = b.disp.Recover(ctx)
		require.NoError(t, err)
		require.Zero(t, n)
	})
}

func TestMarkByProviderID(t *testing.T) {
	t.Parallel()
	testdb.Dialects(t, func(t *testing.T, db *gorm.DB) {
		// Only Twilio reports by its own message id (migration 00023).
		ch := &scripted{name: channels.TwilioName}
		b := setup(t, db, ch)
		ctx := context.Background()
		out, err := b.intake.Submit(ctx, []intake.Submission{{Source: intake.SourceQueue,
			Request: request(t, b.collectionID, `{"collectionId": CID, "notification": [{"name": "USER_INVITEUSER", "recipients": [{"email": "a@example.com", "macros": {"FNAME": "A"}}]}]}`)}})
		require.NoError(t, err)
		d := deliveries(t, b, out[0].Notifications[0].ID, "email")[0]
		_, err = b.store.MarkByProviderID(ctx, channels.TwilioName, "pm-"+jsonInt(d.ID), dispatch.StatusDelivered, "")
		require.Equal(t, apperr.NotFound, apperr.KindOf(err), "not sent yet")

		_, err = b.disp.RunOnce(ctx)
		require.NoError(t, err)
		_, err = b.store.MarkByProviderID(ctx, channels.SandboxName, "pm-"+jsonInt(d.ID), dispatch.StatusDelivered, "")
		require.ErrorContains(t, err, "do not name deliveries by message id", "a provider that reports by our delivery id")
		n, err := b.store.MarkByProviderID(ctx, channels.TwilioName, "pm-"+jsonInt(d.ID), dispatch.StatusDelivered, "")
		require.NoError(t, err)
		require.EqualValues(t, 1, n)
		require.Equal(t, dispatch.StatusDelivered, deliveries(t, b, d.NotificationID, "email")[0].Status)
		require.NoError(t, b.store.MarkByID(ctx, d.ID, dispatch.StatusBounced, "bounce: mailbox full"))
		got := deliveries(t, b, d.NotificationID, "email")[0]
		require.Equal(t, dispatch.StatusBounced, got.Status)
		require.Equal(t, "bounce: mailbox full", got.Reason)
		require.Error(t, b.store.MarkByID(ctx, d.ID, dispatch.StatusDelivered, ""), "bounced is final")
		require.Error(t, b.store.MarkByID(ctx, d.ID, dispatch.StatusPending, ""), "not a provider status")
	})
}

func deliveries(t *testing.T, b *bundle, notificationID int64, channel string) []dispatch.Delivery {
	t.Helper()
	ds, err := b.store.ListDeliveries(context.Background(), b.collectionID, status.DeliveryFilter{NotificationID: notificationID, Channel: channel, Limit: 100})
	require.NoError(t, err)
	require.NotEmpty(t, ds)
	return ds
}

func TestParseClassifiesBadInput(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, body, code, field string
	}{
		{"not json", `{"collectionId": 1, "notification": [`, dispatch.ProblemNotJSON, "body"},
		{"binary", "\x00\x01\x02", dispatch.ProblemNotJSON, "body"},
		{"empty", "  ", dispatch.ProblemNotJSON, "body"},
		{"trailing", `{"collectionId": 1, "notification": [{"name": "A", "recipients": [{}]}]} {}`, dispatch.ProblemNotJSON, "body"},
		{"wrong type name", `{"collectionId": 1, "notification": [{"name": 7, "recipients": [{}]}]}`, dispatch.ProblemSchema, "notification.name"},
		{"wrong type collection", `{"collectionId": true, "notification": [{"name": "A", "recipients": [{}]}]}`, dispatch.ProblemSchema, "collectionId"},
		{"bad id string", `{"collectionId": "x1", "notification": [{"name": "A", "recipients": [{}]}]}`, dispatch.ProblemSchema, "collectionId"},
		{"macro object", `{"collectionId": 1, "notification": [{"name": "A", "recipients": [{"macros": {"A": {}}}]}]}`, dispatch.ProblemSchema, "notification.recipients.macros.A"},
		{"no collection", `{"notification": [{"name": "A", "recipients": [{}]}]}`, dispatch.ProblemSchema, "collectionId"},
		{"no notifications", `{"collectionId": 1, "notification": []}`, dispatch.ProblemSchema, "notification"},
		{"no name", `{"collectionId": 1, "notification": [{"recipients": [{}]}]}`, dispatch.ProblemSchema, "notification[0].name"},
		{"no recipients", `{"collectionId": 1, "notification": [{"name": "A"}]}`, dispatch.ProblemSchema, "notification[0].recipients"},
		{"nul", `{"collectionId": 1, "notification": [{"name": "A", "recipients": [{"email": "a\u0000@x"}]}]}`, dispatch.ProblemSchema, "notification[0].recipients[0]"},
		{"bad timezone", `{"collectionId": 1, "notification": [{"name": "A", "recipients": [{"timezone": "Mars/Olympus"}]}]}`, dispatch.ProblemSchema, "notification[0].recipients[0].timezone"},
		{"long id", `{"collectionId": 1, "notification": [{"name": "A", "recipients": [{"id": "` + strings.Repeat("u", 256) + `"}]}]}`, dispatch.ProblemSchema, "notification[0].recipients[0].id"},
		{"too large", `{"collectionId": 1, "notification": [{"name": "` + strings.Repeat("A", 70000) + `"}]}`, dispatch.ProblemTooLarge, "body"},
		{"data not an object", `{"collectionId": 1, "notification": [{"name": "A", "recipients": [{}], "data": [1]}]}`, dispatch.ProblemSchema, "notification.data"},
		{"data a string", `{"collectionId": 1, "notification": [{"name": "A", "recipients": [{}], "data": "x"}]}`, dispatch.ProblemSchema, "notification.data"},
		{"data with nul", `{"collectionId": 1, "notification": [{"name": "A", "recipients": [{}], "data": {"k": ["\u0000"]}}]}`, dispatch.ProblemSchema, "notification[0].data"},
		{"data too large", `{"collectionId": 1, "notification": [{"name": "A", "recipients": [{}], "data": {"k": "` + strings.Repeat("x", dispatch.MaxDataLen) + `"}}]}`, dispatch.ProblemSchema, "notification[0].data"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := dispatch.Parse([]byte(tc.body), 64<<10)
			var p *dispatch.Problem
			require.ErrorAs(t, err, &p)
			require.Equal(t, tc.code, p.Code, "%v", err)
			require.Equal(t, tc.field, p.Details[0].Field, "%v", err)
		})
	}
	req, err := dispatch.Parse([]byte(`{"collectionId": 1, "notification": [{"name": "A", "recipients": [{"id": "u-1", "timezone": "Europe/Paris"}], "data": {"amount": 150, "tags": ["vip"], "k": "\\u0000"}}]}`), 1024)
	require.NoError(t, err)
	require.Equal(t, dispatch.Data{"amount": float64(150), "tags": []any{"vip"}, "k": `\u0000`}, req.Notification[0].Data, "an escaped backslash is no NUL")
	require.Equal(t, "u-1", req.Notification[0].Recipients[0].ID)
	require.Equal(t, "Europe/Paris", req.Notification[0].Recipients[0].Timezone)
	req, err = dispatch.Parse([]byte(`{"collectionId": "772", "extra": 1, "notification": [{"name": "A", "recipients": [{"email": "a@x.io", "macros": {"N": 3, "B": true, "Z": null}}]}]}`), 1024)
	require.NoError(t, err, "the queue accepts unknown fields and numeric strings")
	require.EqualValues(t, 772, req.CollectionID)
	require.Equal(t, dispatch.Macros{"N": "3", "B": "true", "Z": ""}, req.Notification[0].Recipients[0].Macros)
	_, err = dispatch.ParseForCollection([]byte(`{"collectionId": 1, "extra": 1, "notification": [{"name": "A", "recipients": [{}]}]}`), 1)
	require.ErrorContains(t, err, "extra", "the API does not")
	_, err = dispatch.ParseForCollection([]byte(`{"collectionId": 2, "notification": [{"name": "A", "recipients": [{}]}]}`), 1)
	require.ErrorContains(t, err, "collectionId must match the collection in the path")
	req, err = dispatch.ParseForCollection([]byte(`{"notification": [{"name": "A", "recipients": [{}]}]}`), 5)
	require.NoError(t, err)
	require.EqualValues(t, 5, req.CollectionID)
}

func TestBackoffGrowsWithJitterAndCap(t *testing.T) {
	t.Parallel()
	require.Equal(t, 500*time.Millisecond, delivery.Backoff(1, time.Second, time.Minute, 0))
	require.Equal(t, time.Second, delivery.Backoff(2, time.Second, time.Minute, 0))
	require.InDelta(t, float64(2*time.Second), float64(delivery.Backoff(2, time.Second, time.Minute, 0.999)), float64(10*time.Millisecond))
	require.Equal(t, 4*time.Second, delivery.Backoff(4, time.Second, time.Minute, 0))
	require.Equal(t, 30*time.Second, delivery.Backoff(30, time.Second, time.Minute, 0))
}

// A worker that died after the sandbox accepted its messages but before it
// recorded them: Recover asks the sandbox and marks them sent, not again.
func TestRecoverAsksTheChannelWhatItAccepted(t *testing.T) {
	t.Parallel()
	testdb.Dialects(t, func(t *testing.T, db *gorm.DB) {
		b := setup(t, db)
		ctx := context.Background()
		out, err := b.intake.Submit(ctx, []intake.Submission{{Source: intake.SourceQueue,
			Request: request(t, b.collectionID, `{"collectionId": CID, "notification": [{"name": "USER_INVITEUSER", "recipients": [{"email": "a@example.com", "phone": "+1", "macros": {"FNAME": "A"}}]}]}`)}})
		require.NoError(t, err)
		id := out[0].Notifications[0].ID
		_, err = b.disp.RunOnce(ctx)
		require.NoError(t, err)
		email := deliveries(t, b, id, "email")[0]
		// Undo the record of the email only, as if the worker died just after Send.
		old := time.Now().Add(-2 * time.Minute).UnixMilli()
		require.NoError(t, db.Exec("UPDATE deliveries SET status = 'sending', lease_until = ?, provider_message_id = NULL, provider = '' WHERE id = ?", old, email.ID).Error)

		n, err := b.disp.Recover(ctx)
		require.NoError(t, err)
		require.EqualValues(t, 1, n)
		got := deliveries(t, b, id, "email")[0]
		require.Equal(t, dispatch.StatusSent, got.Status)
		require.Equal(t, *email.ProviderMessageID, *got.ProviderMessageID)
		require.Equal(t, channels.SandboxName, got.Provider)
		require.Contains(t, got.Reason, "the provider had accepted it")
		_, err = b.disp.RunOnce(ctx)
		require.NoError(t, err)
		var sends int64
		require.NoError(t, db.Raw("SELECT COUNT(*) FROM sandbox_messages WHERE delivery_id = ?", email.ID).Scan(&sends).Error)
		require.EqualValues(t, 1, sends, "not sent again")
	})
}

// The statements that join a batch of ids to deliveries are never prepared
// on PostgreSQL, so none of them runs on a generic plan: one made while the
// table was small is a sequential scan that a growing table keeps
// (oneshot.go). pg_prepared_statements lists the session's prepared
// statements with how often each ran on a generic plan.
func TestClaimAndRecordAreNeverGenericPlans(t *testing.T) {
	t.Parallel()
	db, _ := testdb.Postgres(t)
	sqlDB, err := db.DB()
	require.NoError(t, err)
	// One connection: the workers' statements and the check below share
	// a session, whose prepared statements the view shows.
	sqlDB.SetMaxOpenConns(1)
	b := setup(t, db)
	ctx := context.Background()
	// More rounds than the five after which a prepared statement may
	// switch to its generic plan.
	for i := range 8 {
		_, err := b.intake.Submit(ctx, []intake.Submission{{Source: intake.SourceQueue, Key: "k" + strconv.Itoa(i),
			Request: request(t, b.collectionID, twoRecipients)}})
		require.NoError(t, err)
		n, err := b.disp.RunOnce(ctx)
		require.NoError(t, err)
		require.Equal(t, 3, n, "round %d: two emails and one SMS", i)
	}
	var sent int64
	require.NoError(t, db.Raw("SELECT count(*) FROM deliveries WHERE status = 'sent'").Row().Scan(&sent))
	require.EqualValues(t, 24, sent)

	var prepared []struct {
		Statement    string
		GenericPlans int64
	}
	require.NoError(t, db.Raw("SELECT statement, generic_plans FROM pg_prepared_statements WHERE statement LIKE '%UPDATE deliveries%' AND statement NOT LIKE '%pg_prepared_statements%'").
		Find(&prepared).Error)
	require.Empty(t, prepared, "claim and record must run as one-shot statements")
}

// TestLongReasonIsCutBetweenCharacters records a provider reason whose
// 1000th byte falls inside a three-byte character: a byte cut writes invalid
// UTF-8, which PostgreSQL refuses (the report would fail) and SQLite stores.
func TestLongReasonIsCutBetweenCharacters(t *testing.T) {
	t.Parallel()
	testdb.Dialects(t, func(t *testing.T, db *gorm.DB) {
		b := setup(t, db, &scripted{})
		ctx := context.Background()
		out, err := b.intake.Submit(ctx, []intake.Submission{{Source: intake.SourceQueue,
			Request: request(t, b.collectionID, `{"collectionId": CID, "notification": [{"name": "USER_INVITEUSER", "recipients": [{"email": "a@example.com", "macros": {"FNAME": "A"}}]}]}`)}})
		require.NoError(t, err)
		d := deliveries(t, b, out[0].Notifications[0].ID, "email")[0]
		_, err = b.disp.RunOnce(ctx)
		require.NoError(t, err)

		reason := strings.Repeat("€", 400) // 1,200 bytes; byte 1,000 is inside a character
		require.NoError(t, b.store.MarkByID(ctx, d.ID, dispatch.StatusBounced, reason))
		got := deliveries(t, b, d.NotificationID, "email")[0].Reason
		require.True(t, utf8.ValidString(got), "reason %q", got)
		require.LessOrEqual(t, len(got), 1000)
		require.True(t, strings.HasPrefix(reason, strings.TrimSuffix(got, "…")))
	})
}
