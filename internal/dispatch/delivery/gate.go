package delivery

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/notificationservice/notificationservice/internal/actions"
	"github.com/notificationservice/notificationservice/internal/apperr"
	"github.com/notificationservice/notificationservice/internal/dispatch"
	"github.com/notificationservice/notificationservice/internal/schedule"
)

// gate is one send-time rule: the worker asks each of its gates, in order,
// about every delivery of a group before it renders the delivery and hands
// it to the provider (sendGroup). The first gate that holds a delivery
// decides its outcome instead of a send: back to the queue at a later time
// (deferred: scheduled, or pending after an error), or skipped or failed
// with its reason.
//
// The order is docs/DESIGN.md's: the lease, the action's condition when it
// is evaluated at send time (skip, conditionGate in condition.go), quiet
// hours in the recipient's zone (defer, quietGate), throttle per recipient
// (skip, throttleGate), then (to come) the digest window. The condition
// comes first so that a delivery it skips is not deferred to the morning
// only to be skipped then, nor counted by the throttle. Quiet hours come before the throttle
// so that a deferred delivery does not use up a throttle slot it may not
// use until morning. Schedules and delays need no gate: planning sets the
// due time and the claim takes a delivery only when it is due.
type gate interface {
	// hold returns the outcome that replaces the send of c (of action a)
	// at now, or ok false to let it go on. It runs in the worker's hot
	// path, once per delivery: data it needs is read once per batch, and
	// a gate that writes (the throttle) does so in one statement.
	hold(ctx context.Context, c *Claimed, a *actions.Action, now time.Time) (v verdict, ok bool)
}

// verdict is a gate's outcome for a delivery it holds.
type verdict struct {
	status        string // dispatch.StatusPending or StatusScheduled (deferred), StatusSkipped or StatusFailed
	nextAttemptAt int64  // epoch ms, for pending and scheduled
	reason        string
	detail        string // for a rule-engine reason (dispatch.Reason*): the words
	// uncount gives back the attempt the claim counted: the delivery was
	// not attempted (deferred by quiet hours, throttled), so it keeps its
	// full dispatch.maxAttempts for the sends still to come.
	uncount bool
}

// leaseGate holds a delivery whose lease lapsed (renewals failing, or a
// hand-off that waited past it): it may be another instance's by now, and
// its Recover may send the delivery too. Back to the queue instead (the
// write is fenced, so if Recover moved it first this changes nothing).
type leaseGate struct{ held *held }

func (g leaseGate) hold(_ context.Context, c *Claimed, _ *actions.Action, now time.Time) (verdict, bool) {
	if g.held.validUntil(*c) > now.UnixMilli() {
		return verdict{}, false
	}
	return verdict{status: dispatch.StatusPending, nextAttemptAt: now.UnixMilli(),
		reason: "not sent: this instance's lease on it lapsed before the send; back to the queue"}, true
}

// recipient is c's recipient, decoded once (the hand-offs carry it
// decoded already).
func (c *Claimed) recipient() (*dispatch.Recipient, error) {
	if c.Decoded == nil {
		rc := new(dispatch.Recipient)
		if err := json.Unmarshal([]byte(c.Recipient), rc); err != nil {
			return nil, err
		}
		c.Decoded = rc
	}
	return c.Decoded, nil
}

// quietGate defers a delivery that falls due inside its quiet hours to the
// window's end, on the recipient's wall clock: the action's
// config.quietHours, else its collection's (actions.Rules.ForSend fills
// it in; null turns them off), read in the recipient's timezone, else the
// collection's. An urgent action ignores them. The delivery waits as
// scheduled (reason quiet_hours) and the claim takes it again at the end:
// it is never dropped, and the deferral costs no attempt.
type quietGate struct{ zones *schedule.Zones }

func (g quietGate) hold(_ context.Context, c *Claimed, a *actions.Action, now time.Time) (verdict, bool) {
	w := a.Config.QuietHours.Window
	if a.Config.Urgent || w == nil {
		return verdict{}, false
	}
	rc, err := c.recipient()
	if err != nil {
		return verdict{}, false // sendGroup fails it, naming the error
	}
	// Both zones were validated when saved; one the binary no longer
	// knows falls back to the next rather than hold the delivery.
	loc, err := g.zones.Load(rc.Timezone)
	if err != nil || rc.Timezone == "" {
		if loc, err = g.zones.Load(a.Timezone); err != nil {
			loc = time.UTC
		}
	}
	until, inside := schedule.Defer(now, loc, *w)
	if !inside {
		return verdict{}, false
	}
	return verdict{status: dispatch.StatusScheduled, nextAttemptAt: until.UnixMilli(), reason: dispatch.ReasonQuietHours,
		detail:  fmt.Sprintf("quiet hours %s %s: deferred to %s", w, loc, until.In(loc).Format("2006-01-02 15:04 MST")),
		uncount: true}, true
}

// throttleGate skips a delivery over its action's config.throttle. Each
// delivery is counted once, at its first attempt (a retry or a delivery
// deferred back to its first attempt is not counted again), in a fixed
// window aligned on the epoch (window_start = now − now mod window). The
// count and the decision are one statement (throttleSQL), so instances
// sharing the database never let more than limit through in a window.
type throttleGate struct{ d *Dispatcher }

// throttleSQL counts one delivery against a key's window and returns the
// new count, or no row when the window is full: the INSERT creates the
// window at 1, the conflict adds one only while under the limit. PostgreSQL
// locks the row for the conflict's update, SQLite serializes writers, so
// concurrent callers each see the count their own increment made.
const throttleSQL = `INSERT INTO throttle_counters (collection_id, key, window_start, n, expires_at) VALUES (?, ?, ?, 1, ?)
ON CONFLICT (collection_id, key, window_start) DO UPDATE SET n = throttle_counters.n + 1 WHERE throttle_counters.n < ?
RETURNING n`

func (g throttleGate) hold(ctx context.Context, c *Claimed, a *actions.Action, now time.Time) (verdict, bool) {
	t := a.Config.Throttle
	if t == nil || c.Attempts != 1 {
		return verdict{}, false
	}
	every := t.Every()
	rc, err := c.recipient()
	if every <= 0 || err != nil {
		return verdict{}, false
	}
	key := throttleKey(t, a, c.Channel, rc, every)
	ms := every.Milliseconds()
	start := now.UnixMilli() - now.UnixMilli()%ms
	var counts []int64
	err = g.d.db.WithContext(ctx).Raw(throttleSQL, c.CollectionID, key, start, start+ms, t.Limit).Scan(&counts).Error
	if err != nil {
		// Cannot tell whether it is over: back to the queue (not sent,
		// not counted) rather than send past a throttle or skip under it.
		return verdict{status: dispatch.StatusPending, nextAttemptAt: now.Add(g.d.cfg.BackoffBase).UnixMilli(),
			reason: "not sent: throttle: " + apperr.Truncate(err.Error(), 500), uncount: true}, true
	}
	if len(counts) > 0 {
		return verdict{}, false
	}
	return verdict{status: dispatch.StatusSkipped, reason: dispatch.ReasonThrottled, uncount: true,
		detail: fmt.Sprintf("throttle: %d per %s per %s reached in the window from %s", t.Limit, t.Window, t.KeyOrDefault(),
			time.UnixMilli(start).UTC().Format(time.RFC3339))}, true
}

// throttleKey is the counter a delivery counts against: the action's
// (recipient) or the event's (recipient+event, shared by the event's
// actions that declare that key), with the window's length (two windows
// never share a counter) and the recipient: its id, else its address on
// the channel.
func throttleKey(t *actions.Throttle, a *actions.Action, channel string, rc *dispatch.Recipient, every time.Duration) string {
	who := "id:" + rc.ID
	if rc.ID == "" {
		who = channel + ":" + strings.ToLower(address(channel, rc))
	}
	scope := fmt.Sprintf("action:%d", a.ID)
	if t.KeyOrDefault() == actions.ThrottleRecipientEvent {
		scope = fmt.Sprintf("event:%d", a.EventID)
	}
	return fmt.Sprintf("%s:%d:%s", scope, int64(every/time.Second), who)
}

// address is rc's address on channel (the first To for email).
func address(channel string, rc *dispatch.Recipient) string {
	switch channel {
	case actions.ChannelSMS:
		return rc.Phone
	case actions.ChannelPush:
		return rc.PushID
	}
	if to := rc.To(); len(to) > 0 {
		return to[0].Email
	}
	return ""
}
