package delivery

import (
	"time"

	"github.com/notificationservice/notificationservice/internal/actions"
	"github.com/notificationservice/notificationservice/internal/dispatch"
)

// gate is one send-time rule: the worker asks each of its gates, in order,
// about every delivery of a group before it renders the delivery and hands
// it to the provider (sendGroup). The first gate that holds a delivery
// decides its outcome instead of a send: back to pending at a later time
// (deferred), or skipped or failed with its reason.
//
// This is where the rule engine's send-time rules join (issue 16), in
// docs/DESIGN.md's order: quiet hours in the recipient's zone (defer),
// throttle per recipient (skip), digest window (append, send at close).
// Schedules and delays need no gate: planning sets the due time and the
// claim takes a delivery only when it is due. Today's only gate is the
// lease: a delivery whose lease lapsed is not sent here.
type gate interface {
	// hold returns the outcome that replaces the send of c (of action a)
	// at now, or ok false to let it go on. It runs in the worker's hot
	// path, once per delivery: data it needs is read once per batch.
	hold(c *Claimed, a *actions.Action, now time.Time) (v verdict, ok bool)
}

// verdict is a gate's outcome for a delivery it holds.
type verdict struct {
	status        string // dispatch.StatusPending (deferred), StatusSkipped or StatusFailed
	nextAttemptAt int64  // epoch ms, for pending
	reason        string
	detail        string // for a rule-engine reason (dispatch.Reason*): the words
}

// leaseGate holds a delivery whose lease lapsed (renewals failing, or a
// hand-off that waited past it): it may be another instance's by now, and
// its Recover may send the delivery too. Back to the queue instead (the
// write is fenced, so if Recover moved it first this changes nothing).
type leaseGate struct{ held *held }

func (g leaseGate) hold(c *Claimed, _ *actions.Action, now time.Time) (verdict, bool) {
	if g.held.validUntil(*c) > now.UnixMilli() {
		return verdict{}, false
	}
	return verdict{status: dispatch.StatusPending, nextAttemptAt: now.UnixMilli(),
		reason: "not sent: this instance's lease on it lapsed before the send; back to the queue"}, true
}
