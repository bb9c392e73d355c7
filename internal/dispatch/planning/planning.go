// Package planning decides what one accepted notification becomes: for each
// (recipient, action) of the notification's resolved rule, a delivery that is
// pending, or skipped with the reason why. It is pure: the intake resolves
// the rule and stores what planning returns, in its batch's transaction.
package planning

import (
	"context"
	"fmt"
	"net/mail"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/notificationservice/notificationservice/internal/actions"
	"github.com/notificationservice/notificationservice/internal/apperr"
	"github.com/notificationservice/notificationservice/internal/condition"
	"github.com/notificationservice/notificationservice/internal/dispatch"
)

// Input is one named notification of a submission, as planning sees it.
type Input struct {
	CollectionID int64
	Source       string // dispatch's notification source: queue or api
	Key          string // the submission's idempotency key, "" for none
	Correlation  map[string]string
	CreatedBy    string // the API caller's user id, "" for the queue
	// Tenant, Team, Service and EntityID are the submission's producer
	// headers (dispatch.Producer), "" when not given.
	Tenant       string
	Team         string
	Service      string
	EntityID     string
	Notification dispatch.Notification
	// Latest is the latest due time (epoch ms) a delay may give a
	// delivery (now + dispatch.maxScheduleAhead); 0: no limit.
	Latest int64
}

// Resolution is what the notification's name resolved to: its event's
// ACTIVE actions, or Found false when the collection has no ACTIVE event of
// that name.
type Resolution struct {
	Rule  actions.Rule
	Found bool
}

// Pair is what a Rule decides on: one recipient of one notification (In),
// and one action of the event the notification's name resolved to.
type Pair struct {
	In        *Input
	Event     *actions.Rule // the resolved event: its id and ACTIVE actions
	Action    *actions.Action
	Recipient *dispatch.Recipient
	Index     int   // the recipient's position in the notification
	Now       int64 // the planning time, epoch ms
}

// Rule is one planning-time check on a (recipient, action) pair that has an
// address on the action's channel: reason "" lets the delivery go ahead;
// anything else skips it, with reason one of dispatch's Reason* codes and
// detail the words (which expression, which preference). A Planner runs its
// rules in order and the first reason wins, so the order is the order
// docs/rules.md gives.
//
// Skip runs inside the intake's transaction, once per (recipient, action):
// it answers from memory. A rule that needs stored data is a BatchRule.
type Rule interface {
	Skip(p Pair) (reason, detail string)
}

// BatchRule is a rule that needs stored data (preferences, suppressions):
// the intake calls ForBatch once per batch, before its transaction, with
// every notification of the batch, and plans the batch with the Rule it
// returns. So a batch costs one query per rule, not one per recipient. An
// error fails the batch as an outage (the caller answers 503 or the message
// goes back to the queue), never as the message's fault.
type BatchRule interface {
	ForBatch(ctx context.Context, ins []Input) (Rule, error)
}

// Static is a Rule that needs no stored data, as a BatchRule.
func Static(r Rule) BatchRule { return static{r} }

type static struct{ r Rule }

func (s static) ForBatch(context.Context, []Input) (Rule, error) { return s.r, nil }

// Condition is the conditions of docs/rules.md: the event's, then the
// action's, each an expr-lang expression compiled when its rule was loaded
// (actions.Rules.Resolve). A false condition skips the delivery with
// condition_false and the expression; an error (a stored condition that no
// longer compiles, a type mismatch in the notification's data, the
// evaluation budget exceeded) skips it with condition_error and the error,
// and never fails the batch.
type Condition struct{}

// Skip implements Rule.
func (Condition) Skip(p Pair) (string, string) {
	ev := p.Event.CompiledCondition()
	var ac *actions.Compiled
	if !p.Action.Config.ConditionAtSend() { // else the delivery worker's (conditionEvaluateAt send)
		ac = p.Action.CompiledCondition()
	}
	if ev == nil && ac == nil {
		return "", ""
	}
	env := Env(p)
	for _, c := range []struct {
		what string
		c    *actions.Compiled
	}{{"event", ev}, {"action", ac}} {
		if c.c == nil {
			continue
		}
		if c.c.Err != nil {
			return dispatch.ReasonConditionError, fmt.Sprintf("the %s's condition does not compile: %v", c.what, c.c.Err)
		}
		ok, err := c.c.Program.Eval(env)
		if err != nil {
			return dispatch.ReasonConditionError, fmt.Sprintf("the %s's condition %s failed: %v", c.what, c.c.Program, err)
		}
		if !ok {
			return dispatch.ReasonConditionFalse, fmt.Sprintf("the %s's condition is false: %s", c.what, c.c.Program)
		}
	}
	return "", ""
}

// Env is the environment a condition sees for the pair p (docs/rules.md).
func Env(p Pair) condition.Env {
	in := p.In
	return condition.Env{
		Recipient: p.Recipient.ForCondition(),
		Notification: condition.Notification{
			Name: in.Notification.Name, Source: in.Source, Correlation: in.Correlation,
			Tenant: in.Tenant, EntityID: in.EntityID, Data: in.Notification.Data,
		},
		Collection: condition.Ref{ID: in.CollectionID, Name: p.Event.CollectionName},
		Event:      condition.Ref{ID: p.Event.EventID, Name: p.Event.EventName},
		Now:        time.UnixMilli(p.Now).UTC(),
	}
}

// Planner plans notifications under its rules.
type Planner struct {
	rules []BatchRule
	obs   Observer
}

// Decision labels an Observer sees besides the rules' reason codes.
const (
	DecisionPlanned   = "planned"    // the delivery goes ahead (pending)
	DecisionNoAddress = "no_address" // the recipient has no usable address on the channel
)

// Observer is told what planning decided, so the decisions can be counted
// (app wires the metrics; planning imports none): n deliveries of one
// notification got reason, which is DecisionPlanned, DecisionNoAddress or
// the reason code of the rule that skipped them. It is called once per
// reason per notification, from concurrent batches.
type Observer interface {
	Decided(reason string, n int)
}

// WithObserver makes p report its decisions to o, and returns p.
func (p *Planner) WithObserver(o Observer) *Planner {
	p.obs = o
	return p
}

// New returns a Planner that runs rules, in order, on every (recipient,
// action) pair with an address.
func New(rules ...BatchRule) *Planner { return &Planner{rules: rules} }

// Default is the Planner of the rules that need no stored data: the event's
// and the action's conditions. app adds the rules that read stored data
// (preferences, suppressions) after it, in docs/rules.md's order.
func Default() *Planner { return New(Static(Condition{})) }

// Batch is a Planner bound to one batch's stored data (BatchRule.ForBatch).
type Batch struct {
	rules []Rule
	obs   Observer
}

// ForBatch reads what p's rules need for the notifications ins, once. The
// rules read at the same time: each read is a round trip to the database
// before the intake's transaction, and on a busy machine a round trip was
// about 1 ms of every batch's 9 (docs/benchmarks.md), so the preference
// and suppression reads cost one round trip's wait, not two.
func (p *Planner) ForBatch(ctx context.Context, ins []Input) (*Batch, error) {
	b := &Batch{rules: make([]Rule, len(p.rules)), obs: p.obs}
	g, gctx := errgroup.WithContext(ctx)
	for i, r := range p.rules {
		g.Go(func() error {
			bound, err := r.ForBatch(gctx, ins)
			b.rules[i] = bound
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return nil, fmt.Errorf("planning: %w", err)
	}
	return b, nil
}

// Plan plans one notification with p's rules, for a caller that has no
// batch (tests, a one-off): the rules are bound to in alone.
func (p *Planner) Plan(ctx context.Context, in Input, r Resolution, now int64) (*dispatch.NotificationRecord, []*dispatch.Delivery, error) {
	b, err := p.ForBatch(ctx, []Input{in})
	if err != nil {
		return nil, nil, err
	}
	note, ds := b.Plan(in, r, now)
	return note, ds, nil
}

// Plan builds the notification row and its deliveries: one per (recipient,
// action), skipped with a reason when the recipient has no usable address on
// the action's channel or one of p's rules stops it.
func (p *Batch) Plan(in Input, r Resolution, now int64) (*dispatch.NotificationRecord, []*dispatch.Delivery) {
	cid, n := in.CollectionID, in.Notification
	note := &dispatch.NotificationRecord{
		CollectionID:   cid,
		Name:           n.Name,
		Source:         in.Source,
		IdempotencyKey: in.Key,
		Tenant:         in.Tenant,
		Team:           in.Team,
		Service:        in.Service,
		EntityID:       in.EntityID,
		Correlation:    in.Correlation,
		Recipients:     n.Recipients,
		Data:           n.Data,
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
	// The deliveries are allocated together: one allocation per
	// notification, not one per recipient and action.
	slab := make([]dispatch.Delivery, len(n.Recipients)*len(r.Rule.Actions))
	ds := make([]*dispatch.Delivery, 0, len(slab))
	var tally tally
	for i, rc := range n.Recipients {
		for k := range r.Rule.Actions {
			a := &r.Rule.Actions[k]
			d := &slab[len(ds)]
			*d = dispatch.Delivery{
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
			d.Address, d.Reason = address(a, rc)
			decision := DecisionNoAddress
			pair := Pair{In: &in, Event: &r.Rule, Action: a, Recipient: &n.Recipients[i], Index: i, Now: now}
			for _, rule := range p.rules {
				if d.Reason != "" {
					break
				}
				d.Reason, d.ReasonDetail = rule.Skip(pair)
			}
			if d.Reason == "" {
				d.Status, d.NextAttemptAt, d.Reason, d.ReasonDetail = when(in, a, rc, now)
			} else {
				d.Status = dispatch.StatusSkipped
			}
			switch {
			case d.Status != dispatch.StatusSkipped:
				decision = DecisionPlanned // pending, or scheduled for later
			case d.Address != "":
				decision = d.Reason // a rule's code: the address step leaves no address
			}
			tally.add(decision)
			if d.Status == dispatch.StatusSkipped {
				note.SkippedCount++
			}
			ds = append(ds, d)
		}
	}
	note.DeliveryCount = len(ds)
	if p.obs != nil {
		for _, c := range tally {
			p.obs.Decided(c.reason, c.n)
		}
	}
	return note, ds
}

// tally counts decisions by reason; a notification has a handful of
// distinct ones, so a slice beats a map.
type tally []struct {
	reason string
	n      int
}

func (t *tally) add(reason string) {
	for i := range *t {
		if (*t)[i].reason == reason {
			(*t)[i].n++
			return
		}
	}
	*t = append(*t, struct {
		reason string
		n      int
	}{reason, 1})
}

// when decides when a delivery that goes ahead is due: now (pending), or
// later (scheduled) for the notification's sendAt and the action's delay,
// which counts from sendAt. A delay to a macro's timestamp that is missing,
// unreadable or beyond in.Latest skips the delivery (reason delay): the
// producer's data is wrong, and sending at once would break the promise the
// action makes.
func when(in Input, a *actions.Action, rc dispatch.Recipient, now int64) (status string, due int64, reason, detail string) {
	due, reason = now, ""
	if at := int64(in.Notification.SendAt); at > now {
		due, reason, detail = at, dispatch.ReasonSendAt, "sendAt "+time.UnixMilli(at).UTC().Format(time.RFC3339Nano)
	}
	if dl := a.Config.Delay; dl != nil {
		switch {
		case dl.Macro != "" || dl.Data != "":
			// A time the producer sent: the recipient's macro, or a field of
			// the notification's data.
			what, raw := "macro "+dl.Macro, rc.Macros[dl.Macro]
			if dl.Data != "" {
				what, raw = "data."+dl.Data, dataTime(in.Notification.Data[dl.Data])
			}
			at, ok := timestamp(raw)
			if !ok {
				return dispatch.StatusSkipped, now, dispatch.ReasonDelay,
					fmt.Sprintf("action %d delays to %s, which is %q: not an RFC 3339 time or epoch milliseconds", a.ID, what, apperr.Truncate(raw, 100))
			}
			if in.Latest > 0 && at > in.Latest {
				return dispatch.StatusSkipped, now, dispatch.ReasonDelay,
					fmt.Sprintf("action %d delays to %s, %s: beyond dispatch.maxScheduleAhead", a.ID, what, time.UnixMilli(at).UTC().Format(time.RFC3339))
			}
			if at > due {
				due, reason, detail = at, dispatch.ReasonDelay, fmt.Sprintf("config.delay: %s, %s", what, time.UnixMilli(at).UTC().Format(time.RFC3339Nano))
			}
		case dl.Duration > 0:
			due += dl.Duration.Milliseconds()
			reason, detail = dispatch.ReasonDelay, fmt.Sprintf("config.delay %s after %s", dl.Duration, time.UnixMilli(due-dl.Duration.Milliseconds()).UTC().Format(time.RFC3339Nano))
		}
	}
	if dg := a.Config.Digest; dg != nil && dg.Every() > 0 {
		// A digest window counts from when the delivery would have been
		// due. The intake's store step decides whether this delivery opens
		// the window (and stays so) or joins an open one (digested).
		due += dg.Every().Milliseconds()
		return dispatch.StatusScheduled, due, dispatch.ReasonDigest,
			fmt.Sprintf("config.digest: window %s, closes %s", dg.Window, time.UnixMilli(due).UTC().Format(time.RFC3339Nano))
	}
	if reason == "" {
		return dispatch.StatusPending, now, "", ""
	}
	return dispatch.StatusScheduled, due, reason, detail
}

// dataTime is a data field's value as timestamp reads it: a string as it
// is, a JSON number (decoded as float64) as its integer text.
func dataTime(v any) string {
	switch v := v.(type) {
	case string:
		return v
	case float64:
		return strconv.FormatInt(int64(v), 10)
	case nil:
		return ""
	}
	return fmt.Sprint(v)
}

// timestamp reads a macro's value as an instant: RFC 3339 or epoch ms.
func timestamp(v string) (int64, bool) {
	if n, err := strconv.ParseInt(v, 10, 64); err == nil {
		return n, n > 0
	}
	at, err := time.Parse(time.RFC3339Nano, v)
	return at.UnixMilli(), err == nil && at.UnixMilli() > 0
}

// address returns the recipient's address on a's channel for display, or
// a reason why there is none.
func address(a *actions.Action, rc dispatch.Recipient) (addr, reason string) {
	switch a.Channel() {
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
	case actions.ChannelWebhook:
		// The collection's endpoints, not the recipient's: every recipient
		// has this address. Which endpoints are ACTIVE is read at send time
		// (the channel), when the state that matters is known.
		return WebhookAddress(a.Config.WebhookID), ""
	}
	return "", fmt.Sprintf("action has unknown configName %q", a.ConfigName)
}

// WebhookAddress is a webhook delivery's address: "webhook:<id>" for the
// endpoint an action names, "webhook:*" for all of the collection's.
func WebhookAddress(webhookID int64) string {
	if webhookID > 0 {
		return fmt.Sprintf("webhook:%d", webhookID)
	}
	return "webhook:*"
}

func validEmail(s string) bool {
	a, err := mail.ParseAddress(s)
	return err == nil && a.Address == strings.TrimSpace(s) && a.Name == ""
}
