package dispatch_test

import (
	"context"
	"encoding/json"
	"errors"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"gorm.io/gorm"

	"github.com/notificationservice/notificationservice/internal/actions"
	"github.com/notificationservice/notificationservice/internal/apperr"
	"github.com/notificationservice/notificationservice/internal/auth"
	"github.com/notificationservice/notificationservice/internal/channels"
	"github.com/notificationservice/notificationservice/internal/dispatch"
	"github.com/notificationservice/notificationservice/internal/dispatch/delivery"
	"github.com/notificationservice/notificationservice/internal/dispatch/intake"
	"github.com/notificationservice/notificationservice/internal/dispatch/status"
	"github.com/notificationservice/notificationservice/internal/outbox"
	"github.com/notificationservice/notificationservice/internal/testdb"
)

// t0 is the test clock's start: 2026-12-24T17:00:00Z.
var t0 = time.Date(2026, 12, 24, 17, 0, 0, 0, time.UTC)

// clocked is a bundle whose intake, workers and store run on one test
// clock, so a scheduled delivery comes due when the test says, not later.
type clocked struct {
	*bundle
	clock *atomic.Int64
}

func setupClocked(t *testing.T, db *gorm.DB, acts ...actions.Action) *clocked {
	t.Helper()
	if len(acts) == 0 {
		acts = []actions.Action{emailAction(), smsAction()}
	}
	cid, ids := seedRule(t, db, "USER_INVITEUSER", acts...)
	clock := new(atomic.Int64)
	clock.Store(t0.UnixMilli())
	now := func() time.Time { return time.UnixMilli(clock.Load()) }
	b := &bundle{db: db, collectionID: cid, email: ids[0]}
	if len(ids) > 1 {
		b.sms = ids[1]
	}
	b.sandbox = channels.NewSandbox(db, discard(), now, channels.SandboxKeepAll())
	b.disp = delivery.New(db, map[string]channels.Channel{"email": b.sandbox, "sms": b.sandbox}, testConfig(),
		delivery.Senders{Email: channels.Address{Email: "noreply@example.com"}}, discard(), now)
	w := outbox.NewWriter(nil, nil)
	b.intake = intake.New(db, actions.NewRules(db), w, now, b.disp, intake.WithMaxScheduleAhead(90*24*time.Hour))
	b.store = status.New(db, now).WithEnvelopes(w)
	return &clocked{bundle: b, clock: clock}
}

func (c *clocked) at(tm time.Time) { c.clock.Store(tm.UnixMilli()) }

// send submits one notification to Ann (email and phone) with extra
// fields (`"sendAt": …`) and returns its id.
func (c *clocked) send(t *testing.T, extra string) int64 {
	t.Helper()
	body := `{"collectionId": CID, "notification": [{"name": "USER_INVITEUSER"` + extra + `, "recipients": [
  {"email": "a@example.com", "phone": "+15550001", "macros": {"FNAME": "Ann", "REMIND_AT": "2026-12-25T09:00:00+01:00"}}]}]}`
	out, err := c.intake.Submit(context.Background(), []intake.Submission{{Source: intake.SourceQueue, Request: request(t, c.collectionID, body)}})
	require.NoError(t, err)
	require.Nil(t, out[0].Problem)
	return out[0].Notifications[0].ID
}

func (c *clocked) deliveries(t *testing.T, id int64) []*dispatch.Delivery {
	t.Helper()
	n, err := c.store.Get(context.Background(), c.collectionID, id)
	require.NoError(t, err)
	return n.Deliveries
}

func statuses(ds []*dispatch.Delivery) []string {
	out := make([]string, len(ds))
	for i, d := range ds {
		out[i] = d.Status
	}
	return out
}

// A sendAt an hour ahead, in either form: the deliveries are planned now,
// wait as scheduled (reason send_at, dueTime the sendAt), are not claimed a
// millisecond before, and are sent when due, once.
func TestScheduledSendFiresAtItsTimeAndNotBefore(t *testing.T) {
	t.Parallel()
	due := t0.Add(time.Hour)
	forms := map[string]string{
		"rfc3339":  `"` + due.In(time.FixedZone("CET", 3600)).Format(time.RFC3339) + `"`,
		"epoch ms": strconv.FormatInt(due.UnixMilli(), 10),
	}
	for name, sendAt := range forms {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			testdb.Dialects(t, func(t *testing.T, db *gorm.DB) {
				c := setupClocked(t, db)
				ctx := context.Background()
				id := c.send(t, `, "sendAt": `+sendAt)
				ds := c.deliveries(t, id)
				require.Equal(t, []string{dispatch.StatusScheduled, dispatch.StatusScheduled}, statuses(ds))
				for _, d := range ds {
					require.Equal(t, dispatch.ReasonSendAt, d.Reason)
					require.Equal(t, due.UnixMilli(), d.NextAttemptAt)
					require.Zero(t, d.Attempts)
					raw, err := json.Marshal(d)
					require.NoError(t, err)
					var shown map[string]any
					require.NoError(t, json.Unmarshal(raw, &shown))
					require.EqualValues(t, due.UnixMilli(), shown["dueTime"])
				}

				c.at(due.Add(-time.Millisecond))
				n, err := c.disp.RunOnce(ctx)
				require.NoError(t, err)
				require.Zero(t, n, "claimed before its time")
				require.Empty(t, c.sandbox.Messages())

				c.at(due)
				n, err = c.disp.RunOnce(ctx)
				require.NoError(t, err)
				require.Equal(t, 2, n)
				require.Equal(t, []string{dispatch.StatusSent, dispatch.StatusSent}, statuses(c.deliveries(t, id)))
				require.Len(t, c.sandbox.Messages(), 2)

				c.at(due.Add(time.Hour))
				n, err = c.disp.RunOnce(ctx)
				require.NoError(t, err)
				require.Zero(t, n, "sent once")
			})
		})
	}
}

// The intake hands fresh deliveries straight to running local workers; a
// scheduled one must stay in the table, scheduled, for its time.
func TestScheduledDeliveriesAreNotHandedOff(t *testing.T) {
	t.Parallel()
	testdb.Dialects(t, func(t *testing.T, db *gorm.DB) {
		c := setupClocked(t, db)
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- c.disp.Run(ctx) }()
		defer func() { cancel(); <-done }()

		now := c.send(t, "")
		later := c.send(t, `, "sendAt": "2026-12-24T18:00:00Z"`)
		require.Eventually(t, func() bool {
			return statuses(c.deliveries(t, now))[0] == dispatch.StatusSent && statuses(c.deliveries(t, now))[1] == dispatch.StatusSent
		}, 10*time.Second, 10*time.Millisecond)
		for _, d := range c.deliveries(t, later) {
			require.Equal(t, dispatch.StatusScheduled, d.Status)
			require.Zero(t, d.Attempts)
		}
	})
}

// A sendAt in the past sends now: pending, claimed at once.
func TestPastSendAtSendsNow(t *testing.T) {
	t.Parallel()
	testdb.Dialects(t, func(t *testing.T, db *gorm.DB) {
		c := setupClocked(t, db)
		id := c.send(t, `, "sendAt": `+strconv.FormatInt(t0.Add(-time.Hour).UnixMilli(), 10))
		ds := c.deliveries(t, id)
		require.Equal(t, []string{dispatch.StatusPending, dispatch.StatusPending}, statuses(ds))
		require.Empty(t, ds[0].Reason)
		require.Equal(t, t0.UnixMilli(), ds[0].NextAttemptAt)
		n, err := c.disp.RunOnce(context.Background())
		require.NoError(t, err)
		require.Equal(t, 2, n)
	})
}

// A sendAt beyond dispatch.maxScheduleAhead is refused before anything is
// stored, naming the entry: INVALID_ARGUMENT for the API, a Problem (the
// dead-letter's reason) for the queue, without failing the batch's others.
func TestSendAtBeyondTheHorizonIsRefused(t *testing.T) {
	t.Parallel()
	testdb.Dialects(t, func(t *testing.T, db *gorm.DB) {
		c := setupClocked(t, db)
		ctx := context.Background()
		far := request(t, c.collectionID, `{"collectionId": CID, "notification": [{"name": "USER_INVITEUSER", "recipients": [{"email": "a@example.com"}]},
  {"name": "USER_INVITEUSER", "sendAt": "2027-06-01T00:00:00Z", "recipients": [{"email": "a@example.com"}]}]}`)
		_, err := c.intake.Send(ctx, far, "k-far", nil, dispatch.Producer{}, auth.Principal{UserID: "7"})
		var ae *apperr.Error
		require.True(t, errors.As(err, &ae), "%v", err)
		require.Equal(t, apperr.InvalidArgument, ae.Kind)
		require.Len(t, ae.Details, 1)
		require.Equal(t, "notification[1].sendAt", ae.Details[0].Field)

		ok := request(t, c.collectionID, `{"collectionId": CID, "notification": [{"name": "USER_INVITEUSER", "recipients": [{"email": "a@example.com"}]}]}`)
		out, err := c.intake.Submit(ctx, []intake.Submission{{Source: intake.SourceQueue, Key: "m1", Request: far}, {Source: intake.SourceQueue, Key: "m2", Request: ok}})
		require.NoError(t, err)
		require.NotNil(t, out[0].Problem)
		require.Equal(t, dispatch.ProblemSchema, out[0].Problem.Code)
		require.Empty(t, out[0].Notifications)
		require.Nil(t, out[1].Problem)
		require.Len(t, out[1].Notifications, 1)
		require.EqualValues(t, 1, countRows(t, db, "SELECT COUNT(*) FROM notifications"), "only the batch's good message is stored")
	})
}

// config.delay postpones an action's deliveries: a duration from the
// notification (from its sendAt when it has one), or the timestamp a macro
// holds; a macro that holds no timestamp skips the delivery, reason delay.
func TestActionDelay(t *testing.T) {
	t.Parallel()
	delayed := func(js string) actions.Action {
		a := emailAction()
		a.Config.Delay = new(actions.Delay)
		if err := json.Unmarshal([]byte(js), a.Config.Delay); err != nil {
			panic(err)
		}
		return a
	}
	remindAt := time.Date(2026, 12, 25, 8, 0, 0, 0, time.UTC) // the macro's 09:00+01:00
	cases := []struct {
		name, delay, extra string
		status, reason     string
		due                time.Time
	}{
		{"duration", `"10m"`, "", dispatch.StatusScheduled, dispatch.ReasonDelay, t0.Add(10 * time.Minute)},
		{"duration after sendAt", `"24h"`, `, "sendAt": "2026-12-24T18:00:00Z"`, dispatch.StatusScheduled, dispatch.ReasonDelay, t0.Add(25 * time.Hour)},
		{"macro", `{"macro": "REMIND_AT"}`, "", dispatch.StatusScheduled, dispatch.ReasonDelay, remindAt},
		{"sendAt after the macro's time", `{"macro": "REMIND_AT"}`, `, "sendAt": "2026-12-26T00:00:00Z"`, dispatch.StatusScheduled, dispatch.ReasonSendAt, time.Date(2026, 12, 26, 0, 0, 0, 0, time.UTC)},
		{"macro missing", `{"macro": "NOT_THERE"}`, "", dispatch.StatusSkipped, dispatch.ReasonDelay, t0},
		{"data string", `{"data": "remindAt"}`, `, "data": {"remindAt": "2026-12-25T09:00:00+01:00"}`, dispatch.StatusScheduled, dispatch.ReasonDelay, remindAt},
		{"data epoch ms", `{"data": "remindAt"}`, `, "data": {"remindAt": ` + strconv.FormatInt(remindAt.UnixMilli(), 10) + `}`, dispatch.StatusScheduled, dispatch.ReasonDelay, remindAt},
		{"data missing", `{"data": "remindAt"}`, `, "data": {"other": 1}`, dispatch.StatusSkipped, dispatch.ReasonDelay, t0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			testdb.Dialects(t, func(t *testing.T, db *gorm.DB) {
				c := setupClocked(t, db, delayed(tc.delay), smsAction())
				id := c.send(t, tc.extra)
				byAction := map[int64]*dispatch.Delivery{}
				for _, d := range c.deliveries(t, id) {
					byAction[d.ActionID] = d
				}
				email := byAction[c.email]
				require.Equal(t, tc.status, email.Status)
				require.Equal(t, tc.reason, email.Reason)
				require.NotEmpty(t, email.ReasonDetail)
				if tc.status == dispatch.StatusScheduled {
					require.Equal(t, tc.due.UnixMilli(), email.NextAttemptAt)
				}
				if tc.extra == "" {
					require.Equal(t, dispatch.StatusPending, byAction[c.sms].Status, "the undelayed action sends now")
				}
				if tc.status == dispatch.StatusScheduled {
					c.at(tc.due.Add(-time.Millisecond))
					runUntilIdle(t, c.disp)
					require.Equal(t, dispatch.StatusScheduled, c.deliveries(t, id)[0].Status)
					c.at(tc.due)
					runUntilIdle(t, c.disp)
					require.Equal(t, dispatch.StatusSent, byID(c.deliveries(t, id), email.ID).Status)
				}
			})
		})
	}
}

func byID(ds []*dispatch.Delivery, id int64) *dispatch.Delivery {
	for _, d := range ds {
		if d.ID == id {
			return d
		}
	}
	return nil
}

// Cancel before the due time: every delivery canceled, one envelope, and
// nothing is ever sent; a second cancel changes nothing. Cancel after the
// send: nothing changes. An unknown notification is NOT_FOUND.
func TestCancelStopsAScheduledSend(t *testing.T) {
	t.Parallel()
	testdb.Dialects(t, func(t *testing.T, db *gorm.DB) {
		c := setupClocked(t, db)
		ctx := context.Background()
		actor := auth.Principal{UserID: "42"}
		id := c.send(t, `, "sendAt": "2026-12-24T18:00:00Z"`)

		n, done, err := c.store.Cancel(ctx, c.collectionID, id, actor)
		require.NoError(t, err)
		require.Equal(t, status.Cancellation{ID: id, Name: "USER_INVITEUSER", Canceled: 2}, done)
		require.Equal(t, []string{dispatch.StatusCanceled, dispatch.StatusCanceled}, statuses(n.Deliveries))
		envelopes := `SELECT COUNT(*) FROM outbox WHERE detail_type = 'notificationservice/notifications/cancel'`
		require.EqualValues(t, 1, countRows(t, db, envelopes))

		_, again, err := c.store.Cancel(ctx, c.collectionID, id, actor)
		require.NoError(t, err)
		require.Zero(t, again.Canceled, "idempotent")
		require.EqualValues(t, 1, countRows(t, db, envelopes), "no envelope for no change")

		c.at(t0.Add(2 * time.Hour))
		runUntilIdle(t, c.disp)
		require.Empty(t, c.sandbox.Messages(), "a canceled delivery is never sent")
		require.Equal(t, []string{dispatch.StatusCanceled, dispatch.StatusCanceled}, statuses(c.deliveries(t, id)))

		sent := c.send(t, "")
		runUntilIdle(t, c.disp)
		_, late, err := c.store.Cancel(ctx, c.collectionID, sent, actor)
		require.NoError(t, err)
		require.Zero(t, late.Canceled)
		require.Equal(t, []string{dispatch.StatusSent, dispatch.StatusSent}, statuses(c.deliveries(t, sent)))

		_, _, err = c.store.Cancel(ctx, c.collectionID, sent+1000, actor)
		require.ErrorIs(t, err, status.ErrNotFound)
	})
}

// A notification with a scheduled delivery is kept past retention: it
// still has something to send.
func TestPruneKeepsScheduledNotifications(t *testing.T) {
	t.Parallel()
	testdb.Dialects(t, func(t *testing.T, db *gorm.DB) {
		c := setupClocked(t, db)
		id := c.send(t, `, "sendAt": "2027-02-01T00:00:00Z"`)
		cfg := testConfig()
		cfg.Retention = 24 * time.Hour
		clock := c.clock
		disp := delivery.New(db, nil, cfg, delivery.Senders{}, discard(), func() time.Time { return time.UnixMilli(clock.Load()) })
		c.at(t0.Add(30 * 24 * time.Hour))
		pruned, err := disp.Prune(context.Background())
		require.NoError(t, err)
		require.Zero(t, pruned.Notifications)
		require.Len(t, c.deliveries(t, id), 2)
	})
}
