package dispatch_test

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"gorm.io/gorm"

	"github.com/notificationservice/notificationservice/internal/actions"
	"github.com/notificationservice/notificationservice/internal/channels"
	"github.com/notificationservice/notificationservice/internal/dispatch"
	"github.com/notificationservice/notificationservice/internal/dispatch/delivery"
	"github.com/notificationservice/notificationservice/internal/dispatch/intake"
	"github.com/notificationservice/notificationservice/internal/outbox"
	"github.com/notificationservice/notificationservice/internal/schedule"
	"github.com/notificationservice/notificationservice/internal/testdb"
)

// atSend is an email action delayed by delay whose condition cond is
// evaluated by the delivery worker (config.conditionEvaluateAt send), or
// at planning when plan is set.
func atSend(cond, delay string, plan bool) actions.Action {
	a := emailAction()
	a.Name = "remind"
	a.Config.Condition = actions.Condition(cond)
	if !plan {
		a.Config.ConditionEvaluateAt = actions.EvaluateAtSend
	}
	if delay != "" {
		d, err := time.ParseDuration(delay)
		if err != nil {
			panic(err)
		}
		a.Config.Delay = &actions.Delay{Duration: d}
	}
	return a
}

// sendData submits one notification to Ann with data and returns its id.
func (c *clocked) sendData(t *testing.T, data string) int64 {
	t.Helper()
	body := `{"collectionId": CID, "notification": [{"name": "USER_INVITEUSER", "data": ` + data + `, "recipients": [
  {"email": "a@example.com", "macros": {"FNAME": "Ann"}}]}]}`
	out, err := c.intake.Submit(context.Background(), []intake.Submission{{Source: intake.SourceQueue, Request: request(t, c.collectionID, body)}})
	require.NoError(t, err)
	require.Nil(t, out[0].Problem)
	return out[0].Notifications[0].ID
}

// "Remind after 24 h unless paid": the condition on the notification's
// stored data (and the event's name, which the worker reads beside it) is
// not evaluated at planning, where both notifications wait as scheduled
// (delay), but when the delivery comes due: the paid one is skipped then
// (condition_false, "at send"), the unpaid one is sent. A data member of the
// wrong type is a condition_error at send. No attempt is spent on a skip.
func TestSendTimeConditionOnData(t *testing.T) {
	t.Parallel()
	testdb.Dialects(t, func(t *testing.T, db *gorm.DB) {
		cond := `notification.data.paid != true && event.name == "USER_INVITEUSER" && notification.source == "queue" && recipient.macros.FNAME == "Ann"`
		c := setupClocked(t, db, atSend(cond, "24h", false), atSend(`notification.data.amount > 100`, "24h", false))
		paid := c.sendData(t, `{"paid": true, "amount": 500}`)
		unpaid := c.sendData(t, `{"paid": false, "amount": "lots"}`)
		for _, id := range []int64{paid, unpaid} {
			for _, d := range c.deliveries(t, id) {
				require.Equal(t, dispatch.StatusScheduled, d.Status, "planning does not evaluate a send-time condition")
				require.Equal(t, dispatch.ReasonDelay, d.Reason)
			}
		}
		c.at(t0.Add(24 * time.Hour))
		runUntilIdle(t, c.disp)

		for _, d := range c.deliveries(t, paid) {
			if d.ActionID == c.email {
				require.Equal(t, dispatch.StatusSkipped, d.Status)
				require.Equal(t, dispatch.ReasonConditionFalse, d.Reason)
				require.Equal(t, "the action's condition is false at send: "+cond, d.ReasonDetail)
				require.Zero(t, d.Attempts, "the skip costs no attempt")
			} else {
				require.Equal(t, dispatch.StatusSent, d.Status, "amount 500 > 100 at send")
			}
		}
		for _, d := range c.deliveries(t, unpaid) {
			if d.ActionID == c.email {
				require.Equal(t, dispatch.StatusSent, d.Status, d.ReasonDetail)
			} else {
				require.Equal(t, dispatch.StatusSkipped, d.Status)
				require.Equal(t, dispatch.ReasonConditionError, d.Reason)
				require.Contains(t, d.ReasonDetail, "the action's condition notification.data.amount > 100 failed at send")
			}
		}
	})
}

// A condition on now is decided by the send time, not the planning time:
// true at planning (10:00) but false when the delayed delivery comes due
// (06:00 the next day) skips it; false at planning (02:00) but true at the
// send (12:00) sends it. The same condition evaluated at planning (the
// default) decides by the planning time.
func TestSendTimeConditionOnNow(t *testing.T) {
	t.Parallel()
	const cond = "now.Hour() >= 8"
	day := time.Date(2026, 12, 24, 0, 0, 0, 0, time.UTC)
	cases := []struct {
		name     string
		plan     bool
		planAt   time.Time
		delay    string
		planned  string // status after planning
		final    string // status after the due time
		reason   string
		detailIn string
	}{
		{"true at plan, false at send", false, day.Add(10 * time.Hour), "20h", dispatch.StatusScheduled, dispatch.StatusSkipped, dispatch.ReasonConditionFalse, "at send: " + cond},
		{"false at plan, true at send", false, day.Add(2 * time.Hour), "10h", dispatch.StatusScheduled, dispatch.StatusSent, "", ""},
		{"evaluated at plan: true then", true, day.Add(10 * time.Hour), "20h", dispatch.StatusScheduled, dispatch.StatusSent, "", ""},
		{"evaluated at plan: false then", true, day.Add(2 * time.Hour), "10h", dispatch.StatusSkipped, dispatch.StatusSkipped, dispatch.ReasonConditionFalse, "is false: " + cond},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			testdb.Dialects(t, func(t *testing.T, db *gorm.DB) {
				c := setupClocked(t, db, atSend(cond, tc.delay, tc.plan))
				c.at(tc.planAt)
				id := c.sendData(t, `{}`)
				require.Equal(t, tc.planned, c.deliveries(t, id)[0].Status)
				d, _ := time.ParseDuration(tc.delay)
				c.at(tc.planAt.Add(d))
				runUntilIdle(t, c.disp)
				got := c.deliveries(t, id)[0]
				require.Equal(t, tc.final, got.Status, got.ReasonDetail)
				if tc.reason != "" {
					require.Equal(t, tc.reason, got.Reason)
					require.Contains(t, got.ReasonDetail, tc.detailIn)
				}
			})
		})
	}
}

// The worker reads the notifications its send-time conditions need once
// per claimed batch, whatever the number of deliveries in it, and not at
// all for a batch without such a condition.
func TestSendTimeConditionReadsNotificationsOncePerBatch(t *testing.T) {
	t.Parallel()
	testdb.Dialects(t, func(t *testing.T, db *gorm.DB) {
		var reads atomic.Int64
		require.NoError(t, db.Callback().Query().After("gorm:query").Register("test:count_notes", func(tx *gorm.DB) {
			if strings.Contains(tx.Statement.SQL.String(), "LEFT JOIN events e") {
				reads.Add(1)
			}
		}))
		c := setupClocked(t, db, atSend(`notification.data.n < 3`, "1h", false), smsAction())
		for i := range 6 {
			c.sendData(t, fmt.Sprintf(`{"n": %d}`, i))
		}
		runUntilIdle(t, c.disp) // the SMS deliveries, due now
		require.Zero(t, reads.Load(), "no send-time condition in the batch: no read")
		c.at(t0.Add(time.Hour))
		n, err := c.disp.RunOnce(context.Background())
		require.NoError(t, err)
		require.Equal(t, 6, n, "the six reminders in one claim")
		require.Equal(t, int64(1), reads.Load())
		require.Equal(t, int64(3), countRows(t, db, "SELECT COUNT(*) FROM deliveries WHERE action_id = ? AND status = 'sent'", c.email))
		require.Equal(t, int64(3), countRows(t, db, "SELECT COUNT(*) FROM deliveries WHERE action_id = ? AND reason = ?", c.email, dispatch.ReasonConditionFalse))
	})
}

// The send-time condition is the first gate after the lease: a delivery it
// skips during the collection's quiet hours is skipped at once, not
// deferred to the morning; one it lets through is then deferred. It holds
// on the intake's hand-off path too (no delay: the delivery never waits in
// the queue).
func TestSendTimeConditionComesBeforeQuietHours(t *testing.T) {
	t.Parallel()
	testdb.Dialects(t, func(t *testing.T, db *gorm.DB) {
		ctx := context.Background()
		no, yes := atSend(`recipient.macros.FNAME == "Bob"`, "", false), atSend(`recipient.macros.FNAME == "Ann"`, "", false)
		no.Name, yes.Name = "no", "yes"
		cid, ids := quietRule(t, db, "UTC", &schedule.Window{Start: "21:00", End: "08:00"}, no, yes)
		clk := &clock{t: mustTime(t, "2026-06-01T23:00:00Z")}
		sandbox := channels.NewSandbox(db, discard(), nil)
		disp := delivery.New(db, map[string]channels.Channel{"email": sandbox}, testConfig(), delivery.Senders{}, discard(), clk.now)
		in := intake.New(db, actions.NewRules(db), outbox.NewWriter(nil, nil), clk.now, disp)
		_, err := in.Submit(ctx, []intake.Submission{{Source: intake.SourceQueue, Request: request(t, cid,
			`{"collectionId": CID, "notification": [{"name": "USER_INVITEUSER", "recipients": [{"email": "a@example.com", "macros": {"FNAME": "Ann"}}]}]}`)}})
		require.NoError(t, err)
		planned := gateRows(t, db, "action_id IN (?, ?)", ids[0], ids[1])
		require.Equal(t, []string{dispatch.StatusPending, dispatch.StatusPending}, []string{planned[0].Status, planned[1].Status})

		runUntilIdle(t, disp)
		skipped := gateRows(t, db, "action_id = ?", ids[0])[0]
		require.Equal(t, dispatch.StatusSkipped, skipped.Status)
		require.Equal(t, dispatch.ReasonConditionFalse, skipped.Reason)
		deferred := gateRows(t, db, "action_id = ?", ids[1])[0]
		require.Equal(t, dispatch.StatusScheduled, deferred.Status)
		require.Equal(t, dispatch.ReasonQuietHours, deferred.Reason)
	})
}
