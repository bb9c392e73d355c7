// Package intake is the one way into the send pipeline, shared by the queue
// consumer and the REST API: it dedupes submissions by key, resolves each
// notification name to its actions, has planning plan the deliveries, and
// commits a whole batch in one transaction, handing the deliveries the
// local workers have room for straight to them.
package intake

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"gorm.io/gorm"

	"github.com/notificationservice/notificationservice/internal/actions"
	"github.com/notificationservice/notificationservice/internal/apperr"
	"github.com/notificationservice/notificationservice/internal/auth"
	"github.com/notificationservice/notificationservice/internal/dispatch"
	"github.com/notificationservice/notificationservice/internal/dispatch/delivery"
	"github.com/notificationservice/notificationservice/internal/dispatch/planning"
	"github.com/notificationservice/notificationservice/internal/outbox"
	"github.com/notificationservice/notificationservice/internal/store"
)

// Resolver finds the actions a notification name fires (actions.Rules).
type Resolver interface {
	Resolve(ctx context.Context, collectionID int64, name string) (actions.Rule, bool, error)
}

// EnvelopeRecorder records an outbox envelope in the caller's transaction
// (outbox.Writer).
type EnvelopeRecorder interface {
	Record(ctx context.Context, tx *gorm.DB, c outbox.Change) error
	Committed()
}

// Notification sources (NotificationRecord.Source).
const (
	SourceQueue = "queue"
	SourceAPI   = "api"
)

// Local is this instance's delivery workers (*delivery.Dispatcher) as the
// Intake sees them. The intake inserts some of a batch's deliveries already
// claimed (sending, attempt 1) and hands them to the local workers after the
// commit, so a fresh delivery costs no claim statement and no wait for a
// worker's poll (delivery/handoff.go says why). Deliveries the local workers
// have no room for are inserted pending and claimed as before, by any
// instance.
type Local interface {
	// Reserve returns how many of n deliveries the workers can take now
	// (0 to n); the caller inserts that many claimed and then calls Hand
	// with them after the commit, or Release if the commit failed.
	Reserve(n int) int
	Release(n int)
	Hand(batch []delivery.Claimed)
	// Lease returns the lease_owner and lease_until the caller writes on
	// the deliveries it inserts claimed at now (epoch ms).
	Lease(now int64) (owner string, until int64)
	// Wake tells an idle worker that pending deliveries may be due.
	Wake()
}

// Submission is one request to accept: a queue message or an API call.
type Submission struct {
	Source string // SourceQueue or SourceAPI
	// Key is the dedupe key: the AMQP message id or idempotency-key header,
	// or the API's Idempotency-Key. Empty means no dedupe.
	Key         string
	Request     dispatch.Request
	Correlation map[string]string
	// TraceParent is the W3C traceparent of the message (the queue consumer
	// sets it per message); empty: the span in Submit's ctx, if any.
	TraceParent string
	// Actor is the API caller; when set, each accepted notification records
	// a notificationservice/notifications/send envelope.
	Actor *auth.Principal
}

func (s Submission) scope() string {
	if s.Source == SourceAPI {
		return "api:" + strconv.FormatInt(int64(s.Request.CollectionID), 10)
	}
	return SourceQueue
}

// Summary is what a caller learns about one accepted notification.
type Summary struct {
	ID         int64  `json:"id"`
	Name       string `json:"name"`
	Status     string `json:"status"`
	Reason     string `json:"reason,omitempty"`
	Deliveries int    `json:"deliveries"`
	Skipped    int    `json:"skipped"`
}

// Outcome is the result of one Submission.
type Outcome struct {
	Notifications []Summary
	// Replayed is true when the key was seen before with the same request:
	// nothing new was created and Notifications are the first result.
	Replayed bool
	// Conflict is true when the key was seen before with a different
	// request: nothing was created.
	Conflict bool
	// Problem, when set, is why the submission was refused before
	// anything was stored: a sendAt beyond dispatch.maxScheduleAhead,
	// which only the intake's clock can tell. The queue dead-letters the
	// message with its code; Send answers INVALID_ARGUMENT.
	Problem *dispatch.Problem
}

// Intake accepts submissions: it dedupes them by key, resolves each
// notification to its actions, plans deliveries and commits a whole batch
// in one transaction.
type Intake struct {
	db      *gorm.DB
	pg      bool
	rules   Resolver
	planner *planning.Planner
	outbox  EnvelopeRecorder
	now     func() time.Time
	local   Local
	ahead   time.Duration // dispatch.maxScheduleAhead; 0: no limit
}

// New returns an Intake. outbox may be nil (no envelopes). local,
// when not nil, is this instance's Dispatcher: it takes the deliveries it
// has room for straight from each commit and is woken for the rest.
func New(db *gorm.DB, rules Resolver, ob EnvelopeRecorder, now func() time.Time, local Local, opts ...Option) *Intake {
	if now == nil {
		now = time.Now
	}
	in := &Intake{db: db, pg: store.IsPostgres(db), rules: rules, planner: planning.Default(), outbox: ob, now: now, local: local}
	for _, o := range opts {
		o(in)
	}
	return in
}

// Option configures an Intake.
type Option func(*Intake)

// WithPlanner plans with p instead of planning.Default(): app wires the
// rule engine's rules (conditions, preferences, suppressions) here.
func WithPlanner(p *planning.Planner) Option { return func(in *Intake) { in.planner = p } }

// WithMaxScheduleAhead refuses a sendAt more than ahead in the future
// (dispatch.maxScheduleAhead) and skips a delivery an action's delay would
// put beyond it.
func WithMaxScheduleAhead(ahead time.Duration) Option {
	return func(in *Intake) { in.ahead = ahead }
}

// Submit accepts subs in one transaction and returns one Outcome per
// submission, in order. An error means nothing was committed (the caller
// may retry the whole batch: keys make that safe).
//
// Each step works on the one batch: resolve the names, then, in the
// transaction, plan, claim the keys (the dedupe), store the fresh
// notifications, store their deliveries (some claimed for the local
// workers), and record the summaries and envelopes; after the commit the
// claimed deliveries are handed off.
func (in *Intake) Submit(ctx context.Context, subs []Submission) ([]Outcome, error) {
	// A sendAt beyond the horizon refuses its submission alone (Outcome.
	// Problem), before the batch: the others go ahead.
	now := in.now()
	var refused map[int]*dispatch.Problem
	for i, s := range subs {
		if p := s.Request.CheckSchedule(now, in.ahead); p != nil {
			if refused == nil {
				refused = map[int]*dispatch.Problem{}
			}
			refused[i] = p
		}
	}
	if len(refused) == 0 {
		return in.submit(ctx, subs, now)
	}
	keep := make([]Submission, 0, len(subs)-len(refused))
	for i, s := range subs {
		if refused[i] == nil {
			keep = append(keep, s)
		}
	}
	var kept []Outcome
	if len(keep) > 0 {
		var err error
		if kept, err = in.submit(ctx, keep, now); err != nil {
			return nil, err
		}
	}
	out := make([]Outcome, len(subs))
	for i := range subs {
		if p := refused[i]; p != nil {
			out[i] = Outcome{Problem: p}
			continue
		}
		out[i], kept = kept[0], kept[1:]
	}
	return out, nil
}

// submit is Submit for submissions that passed the schedule check, all
// stamped at.
func (in *Intake) submit(ctx context.Context, subs []Submission, at time.Time) ([]Outcome, error) {
	now := at.UnixMilli()
	b := newBatch(subs, now, traceParent(ctx))
	if in.ahead > 0 {
		b.latest = at.Add(in.ahead).UnixMilli()
	}
	if err := in.resolve(ctx, b); err != nil {
		return nil, err
	}
	// The rules read what they need for the whole batch once, before the
	// transaction (on SQLite a read beside an open write transaction would
	// wait for it).
	rules, err := in.planner.ForBatch(ctx, b.inputs())
	if err != nil {
		return nil, fmt.Errorf("dispatch: intake: %w", err)
	}
	err = in.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		b.reset()
		b.plan(rules)
		if err := in.claimKeys(ctx, tx, b); err != nil {
			return err
		}
		if err := in.insertNotifications(ctx, tx, b.keepFresh()); err != nil {
			return err
		}
		if err := in.storeDeliveries(ctx, tx, b); err != nil {
			return err
		}
		return in.recordResults(ctx, tx, b)
	})
	if err != nil {
		if b.reserved > 0 {
			in.local.Release(b.reserved)
		}
		return nil, fmt.Errorf("dispatch: intake: %w", err)
	}
	if len(b.handed) > 0 {
		in.local.Hand(b.handed)
	}
	if b.pending > 0 && in.local != nil {
		in.local.Wake()
	}
	if b.envelopes > 0 {
		in.outbox.Committed()
	}
	return b.outcomes(), nil
}

// resolve looks up the rule of every (collection, name) in b once.
func (in *Intake) resolve(ctx context.Context, b *batch) error {
	for _, e := range b.subs {
		for _, n := range e.Request.Notification {
			k := ruleKey{int64(e.Request.CollectionID), n.Name}
			if _, ok := b.rules[k]; ok {
				continue
			}
			rule, found, err := in.rules.Resolve(ctx, k.collectionID, k.name)
			if err != nil {
				return fmt.Errorf("dispatch: resolve: %w", err)
			}
			b.rules[k] = planning.Resolution{Rule: rule, Found: found}
		}
	}
	return nil
}

// storeDeliveries inserts the deliveries of b's notes. The ones the local
// workers have room for go in claimed (as claim would leave them) and are
// handed off after the commit (b.handed).
func (in *Intake) storeDeliveries(ctx context.Context, tx *gorm.DB, b *batch) error {
	all := b.deliveries()
	var handOff []int // index into all
	if in.local != nil && b.pending > 0 {
		b.reserved = in.local.Reserve(b.pending)
		owner, until := in.local.Lease(b.now)
		for i, d := range all {
			if len(handOff) == b.reserved {
				break
			}
			if d.Status == dispatch.StatusPending {
				d.Status, d.Attempts, d.ClaimedAt, d.LeaseOwner, d.LeaseUntil = dispatch.StatusSending, 1, b.now, owner, until
				handOff = append(handOff, i)
			}
		}
		b.pending -= b.reserved
	}
	rcpts, err := in.insertDeliveries(ctx, tx, all)
	if err != nil {
		return err
	}
	trace := make(map[int64]string, len(b.notes))
	for _, p := range b.notes {
		trace[p.note.ID] = p.note.TraceParent
	}
	for _, i := range handOff {
		d := all[i]
		b.handed = append(b.handed, delivery.Claimed{ID: d.ID, NotificationID: d.NotificationID, CollectionID: d.CollectionID,
			ActionID: d.ActionID, RecipientIndex: d.RecipientIndex, Channel: d.Channel, Recipient: rcpts[i],
			Attempts: d.Attempts, CreatedTime: d.CreatedTime, TraceParent: trace[d.NotificationID], LeaseUntil: d.LeaseUntil, Decoded: &d.Recipient})
	}
	return nil
}

// recordResults sets each fresh submission's summaries and records the
// notifications/send envelope of each accepted notification an API caller
// sent. A key twice in the batch: the later one replays the first's result,
// fresh or not.
func (in *Intake) recordResults(ctx context.Context, tx *gorm.DB, b *batch) error {
	for _, p := range b.notes {
		e := b.subs[p.sub]
		e.outcome.Notifications = append(e.outcome.Notifications, summarize(p.note))
		if e.Actor != nil && in.outbox != nil && p.note.Status == dispatch.NotificationAccepted {
			if err := in.outbox.Record(ctx, tx, sendChange(p.note, *e.Actor)); err != nil {
				return err
			}
			b.envelopes++
		}
	}
	for i, e := range b.subs {
		if f := e.first; e.Key != "" && f != i && e.outcome.Replayed && e.outcome.Notifications == nil {
			e.outcome.Notifications = b.subs[f].outcome.Notifications
		}
	}
	return nil
}

func summarize(n *dispatch.NotificationRecord) Summary {
	return Summary{ID: n.ID, Name: n.Name, Status: n.Status, Reason: n.Reason, Deliveries: n.DeliveryCount, Skipped: n.SkippedCount}
}

func sendChange(n *dispatch.NotificationRecord, actor auth.Principal) outbox.Change {
	return outbox.Change{
		DetailType:   outbox.NotificationsSend,
		EntityID:     n.Name,
		CollectionID: n.CollectionID,
		Payload: map[string]any{"notification": struct {
			Name       string               `json:"name"`
			Recipients []dispatch.Recipient `json:"recipients"`
		}{n.Name, n.Recipients}},
		Actor: actor,
		// A send with many recipients outgrows EventBridge's 256 KB entry: its
		// envelope then points here instead (outbox.ClaimCheck).
		Href: fmt.Sprintf("/v1/collections/%d/notifications/%d", n.CollectionID, n.ID),
	}
}

// ErrKeyConflict is returned by Send when an Idempotency-Key was used before
// with a different request.
var ErrKeyConflict = errors.New("dispatch: idempotency key reused with a different request")

// Send is the REST API's intake: one request, deduped by key (may be empty).
// A key reused with a different request is FAILED_PRECONDITION.
func (in *Intake) Send(ctx context.Context, req dispatch.Request, key string, correlation map[string]string, actor auth.Principal) (Outcome, error) {
	out, err := in.Submit(ctx, []Submission{{Source: SourceAPI, Key: key, Request: req, Correlation: correlation, Actor: &actor}})
	if err != nil {
		return Outcome{}, err
	}
	if p := out[0].Problem; p != nil {
		return Outcome{}, p.AppErr()
	}
	if out[0].Conflict {
		return Outcome{}, &apperr.Error{Kind: apperr.FailedPrecondition, Err: ErrKeyConflict,
			Message: "Idempotency-Key was already used with a different request body",
			Details: []apperr.Detail{{Field: "Idempotency-Key", Reason: "was used before with a different body; use a new key for a new request"}}}
	}
	return out[0], nil
}
