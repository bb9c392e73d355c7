// Package planning decides what one accepted notification becomes: for each
// (recipient, action) of the notification's resolved rule, a delivery that is
// pending, or skipped with the reason why. It is pure: the intake resolves
// the rule and stores what planning returns, in its batch's transaction.
package planning

import (
	"fmt"
	"net/mail"
	"strings"

	"github.com/notificationservice/notificationservice/internal/actions"
	"github.com/notificationservice/notificationservice/internal/apperr"
	"github.com/notificationservice/notificationservice/internal/dispatch"
)

// Input is one named notification of a submission, as planning sees it.
type Input struct {
	CollectionID int64
	Source       string // dispatch's notification source: queue or api
	Key          string // the submission's idempotency key, "" for none
	Correlation  map[string]string
	CreatedBy    string // the API caller's user id, "" for the queue
	Notification dispatch.Notification
}

// Resolution is what the notification's name resolved to: its event's
// ACTIVE actions, or Found false when the collection has no ACTIVE event of
// that name.
type Resolution struct {
	Rule  actions.Rule
	Found bool
}

// Rule is one planning-time check on a (recipient, action) pair that has an
// address on the action's channel: "" lets the delivery go ahead, anything
// else skips it with that reason. A Planner runs its rules in order and the
// first reason wins, so the order is the order docs/DESIGN.md's rule engine
// gives.
//
// This is where the rule engine's planning-time rules join (issue 15):
// expression conditions, preferences (opt-outs) and suppressions, each a
// Rule after or in place of Condition. A rule that needs stored data reads
// it once per batch, before planning, through a small interface it declares
// (wired in app), and answers Skip from memory: Skip runs inside the
// intake's transaction, once per (recipient, action).
type Rule interface {
	Skip(a *actions.Action, rc dispatch.Recipient) (reason string)
}

// Condition is the action's config.condition: a macro that must equal a
// value for the recipient to get the action. It is today's only Rule.
type Condition struct{}

// Skip implements Rule.
func (Condition) Skip(a *actions.Action, rc dispatch.Recipient) string {
	if a.Config.Condition.Matches(rc.Macros) {
		return ""
	}
	c := a.Config.Condition
	return fmt.Sprintf("condition not met: macro %s is %q, action %d needs %q", c.Macro, rc.Macros[c.Macro], a.ID, c.Equals)
}

// Planner plans notifications under its rules.
type Planner struct {
	rules []Rule
}

// New returns a Planner that runs rules, in order, on every (recipient,
// action) pair with an address.
func New(rules ...Rule) *Planner { return &Planner{rules: rules} }

// Default is the Planner of today's rule set: the action's condition.
func Default() *Planner { return New(Condition{}) }

// Plan builds the notification row and its deliveries: one per (recipient,
// action), skipped with a reason when the recipient has no usable address on
// the action's channel or one of p's rules stops it.
func (p *Planner) Plan(in Input, r Resolution, now int64) (*dispatch.NotificationRecord, []*dispatch.Delivery) {
	cid, n := in.CollectionID, in.Notification
	note := &dispatch.NotificationRecord{
		CollectionID:   cid,
		Name:           n.Name,
		Source:         in.Source,
		IdempotencyKey: in.Key,
		Correlation:    in.Correlation,
		Recipients:     n.Recipients,
		Status:         dispatch.NotificationAccepted,
		EventID:        r.Rule.EventID,
		CreatedBy:      in.CreatedBy,
		CreatedTime:    now,
	}
	if !r.Found {
		note.Status = dispatch.NotificationRejected
		note.Reason = fmt.Sprintf("collection %d has no ACTIVE event named %q (or the collection does not exist or is not ACTIVE)", cid, n.Name)
		return note, nil
	}
	if len(r.Rule.Actions) == 0 {
		note.Reason = fmt.Sprintf("event %q has no ACTIVE actions; nothing to send", n.Name)
		return note, nil
	}
	var ds []*dispatch.Delivery
	for i, rc := range n.Recipients {
		for k := range r.Rule.Actions {
			a := &r.Rule.Actions[k]
			d := &dispatch.Delivery{
				CollectionID:   cid,
				ActionID:       a.ID,
				RecipientIndex: i,
				Channel:        a.Channel(),
				Recipient:      rc,
				Status:         dispatch.StatusPending,
				NextAttemptAt:  now,
				CreatedTime:    now,
				UpdatedTime:    now,
			}
			d.Address, d.Reason = address(d.Channel, a.ConfigName, rc)
			for _, rule := range p.rules {
				if d.Reason != "" {
					break
				}
				d.Reason = rule.Skip(a, rc)
			}
			if d.Reason != "" {
				d.Status = dispatch.StatusSkipped
				note.SkippedCount++
			}
			ds = append(ds, d)
		}
	}
	note.DeliveryCount = len(ds)
	return note, ds
}

// address returns the recipient's address on channel for display, or a
// reason why there is none.
func address(channel, configName string, rc dispatch.Recipient) (addr, reason string) {
	switch channel {
	case actions.ChannelEmail:
		to := rc.To()
		if len(to) == 0 {
			return "", "recipient has no email address (neither tos nor email)"
		}
		emails := make([]string, 0, len(to))
		for _, l := range [][]dispatch.Address{to, rc.Ccs, rc.Bccs} {
			for _, a := range l {
				if !validEmail(a.Email) {
					return "", fmt.Sprintf("invalid email address %q", apperr.Truncate(a.Email, 100))
				}
			}
		}
		for _, a := range to {
			emails = append(emails, a.Email)
		}
		return strings.Join(emails, ","), ""
	case actions.ChannelSMS:
		if strings.TrimSpace(rc.Phone) == "" {
			return "", "recipient has no phone number"
		}
		return rc.Phone, ""
	case actions.ChannelPush:
		if strings.TrimSpace(rc.PushID) == "" {
			return "", "recipient has no pushId"
		}
		return rc.PushID, ""
	}
	return "", fmt.Sprintf("action has unknown configName %q", configName)
}

func validEmail(s string) bool {
	a, err := mail.ParseAddress(s)
	return err == nil && a.Address == strings.TrimSpace(s) && a.Name == ""
}
