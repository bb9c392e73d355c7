// Package intake is the one way into the send pipeline, shared by the queue
// consumer and the REST API: it dedupes submissions by key, resolves each
// notification name to its actions, has planning plan the deliveries, and
// commits a whole batch in one transaction, handing the deliveries the
// local workers have room for straight to them.
package intake

import (
	"context"
	"encoding/json"
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
	"github.com/notificationservice/notificationservice/internal/groupcommit"
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
	// RecordAll records the envelopes of cs, in one statement.
	RecordAll(ctx context.Context, tx *gorm.DB, cs []outbox.Change) error
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
	// Return takes back the claimed deliveries of a batch whose COMMIT
	// failed, so its outcome is unknown: instead of Release, it puts those
	// that were stored back to pending and wakes a worker for them.
	Return(batch []delivery.Claimed)
	// AwaitRoom waits, within a bound of its own, until the workers have
	// room for a batch's hand-offs. Only queue batches wait: their
	// messages stay in the broker meanwhile, where an API caller would
	// wait for its answer.
	AwaitRoom(ctx context.Context)
}

// commitTimeout bounds a batch's transaction, which no caller's ctx cancels.
const commitTimeout = 30 * time.Second

// Submission is one request to accept: a queue message or an API call.
type Submission struct {
	Source string // SourceQueue or SourceAPI
	// Key is the dedupe key: the AMQP message id or idempotency-key header,
	// or the API's Idempotency-Key. Empty means no dedupe.
	Key         string
	Request     dispatch.Request
	Correlation map[string]string
	// Producer is the submission's producer headers: kept on each of its
	// notifications and in their send envelopes. Its Tenant, when the
	// collection has a tenant, must be that tenant (ErrTenantMismatch).
	Producer dispatch.Producer
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
	// Refused is set when the submission was refused before anything was
	// looked up or created: its tenant is not its collection's
	// (ErrTenantMismatch).
	Refused error
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
	events  Events                                  // nil: no lifecycle events (events.go)
	ahead   time.Duration                           // dispatch.maxScheduleAhead; 0: no limit
	group   *groupcommit.Group[Submission, Outcome] // nil: each Send is its own Submit
	obs     Observer                                // nil: no one listens
}

// Observer hears of every batch the intake commits (metrics.Metrics
// implements it, for /metrics): where its submissions came from
// (SourceQueue or SourceAPI), how many it held, and how long it took from
// the rule reads to the commit. The batch sizes and times are what
// amqp.batchWait and http.sendBatchWait trade (docs/configuration.md).
type Observer interface {
	BatchCommitted(source string, submissions int, took time.Duration)
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

// WithObserver makes the intake tell o of every batch it commits.
func WithObserver(o Observer) Option { return func(in *Intake) { in.obs = o } }

// WithMaxScheduleAhead refuses a sendAt more than ahead in the future
// (dispatch.maxScheduleAhead) and skips a delivery an action's delay would
// put beyond it.
func WithMaxScheduleAhead(ahead time.Duration) Option {
	return func(in *Intake) { in.ahead = ahead }
}

// WithGroupCommit has concurrent Sends share one Submit, one transaction:
// a Send waits at most wait for others to join it (not at all when it
// comes after a quiet spell longer than wait), a batch takes at most most,
// and at most inflight batches submit at once (while they do, the next
// batch keeps taking members). A wait of 0 (or a most below 1) submits
// each Send alone.
func WithGroupCommit(wait time.Duration, most, inflight int) Option {
	return func(in *Intake) {
		if wait <= 0 || most < 1 {
			in.group = nil
			return
		}
		in.group = groupcommit.New(in.Submit, wait, most, inflight, in.now)
	}
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
	// A submission refused before anything is stored takes no further
	// part: a sendAt beyond dispatch.maxScheduleAhead (which only the
	// intake's clock can tell; Outcome.Problem), or a tenant that is not
	// its collection's (Outcome.Refused). It claims no key and creates
	// nothing, so the same key can be sent again, corrected.
	at := in.now()
	began := time.Now() // a duration, on the monotonic clock: not in.now, which tests fake
	resolved := map[ruleKey]planning.Resolution{}
	if err := in.resolve(ctx, subs, resolved); err != nil {
		return nil, err
	}
	outs := make([]Outcome, len(subs))
	var kept []Submission
	var idx []int
	for i, s := range subs {
		if p := s.Request.CheckSchedule(at, in.ahead); p != nil {
			outs[i].Problem = p
			continue
		}
		if err := tenantMismatch(s, resolved); err != nil {
			outs[i].Refused = err
			continue
		}
		kept, idx = append(kept, s), append(idx, i)
	}
	if len(kept) == 0 {
		return outs, nil
	}
	b := newBatch(kept, at.UnixMilli(), traceParent(ctx))
	if in.ahead > 0 {
		b.latest = at.Add(in.ahead).UnixMilli()
	}
	b.rules = resolved
	// The rules read what they need for the whole batch once, before the
	// transaction (on SQLite a read beside an open write transaction would
	// wait for it).
	rules, err := in.planner.ForBatch(ctx, b.inputs())
	if err != nil {
		return nil, fmt.Errorf("dispatch: intake: %w", err)
	}
	if in.local != nil && fromQueue(kept) {
		in.local.AwaitRoom(ctx)
	}
	recorded, body := false, false
	// The transaction does not take ctx's cancellation: with pgx the COMMIT
	// runs under the transaction's ctx, so a client that went away during it
	// made the commit's outcome unknown here while the database had kept the
	// rows, deliveries claimed for this instance's workers included, which
	// then waited in sending for their lease to expire. Once begun, a batch
	// (other clients' requests too, under group commit) is committed or not
	// for reasons of the database's only.
	txCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), commitTimeout)
	defer cancel()
	err = in.db.WithContext(txCtx).Transaction(func(tx *gorm.DB) error {
		b.reset()
		if err := b.plan(rules); err != nil {
			return err
		}
		if err := in.claimKeys(txCtx, tx, b); err != nil {
			return err
		}
		if err := in.insertNotifications(txCtx, tx, b.keepFresh()); err != nil {
			return err
		}
		if err := in.storeDeliveries(txCtx, tx, b); err != nil {
			return err
		}
		if err := in.recordResults(txCtx, tx, b); err != nil {
			return err
		}
		ok, err := in.recordEvents(txCtx, tx, b)
		recorded = ok
		body = err == nil
		return err
	})
	if err != nil {
		switch {
		case body && len(b.handed) > 0:
			// The COMMIT itself failed: the rows may be stored, claimed by
			// this instance. They go back to pending (fenced by the lease:
			// a no-op for rows that are not there) and a worker is woken,
			// so a committed delivery is sent now, not after its lease.
			in.local.Return(b.handed)
		case b.reserved > 0:
			in.local.Release(b.reserved)
		}
		return nil, fmt.Errorf("dispatch: intake: %w", err)
	}
	if in.obs != nil {
		in.obs.BatchCommitted(subs[0].Source, len(subs), time.Since(began))
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
	if recorded {
		in.events.Committed()
	}
	for j, o := range b.outcomes() {
		outs[idx[j]] = o
	}
	return outs, nil
}

// resolve looks up the rule of every (collection, name) in subs once.
func (in *Intake) resolve(ctx context.Context, subs []Submission, rules map[ruleKey]planning.Resolution) error {
	for _, e := range subs {
		for _, n := range e.Request.Notification {
			k := ruleKey{int64(e.Request.CollectionID), n.Name}
			if _, ok := rules[k]; ok {
				continue
			}
			rule, found, err := in.rules.Resolve(ctx, k.collectionID, k.name)
			if err != nil {
				return fmt.Errorf("dispatch: resolve: %w", err)
			}
			rules[k] = planning.Resolution{Rule: rule, Found: found}
		}
	}
	return nil
}

// ErrTenantMismatch is why a submission is refused whose tenant header
// names another tenant than its collection's (Outcome.Refused wraps it).
var ErrTenantMismatch = errors.New("dispatch: tenant does not match the collection's tenant")

// tenantMismatch checks s's tenant against its collection's, which the
// resolved rules carry (no query of its own). A collection without a
// tenant, or a submission without one, is not checked; nor is a name
// that resolved to nothing (it is rejected anyway and sends nothing).
func tenantMismatch(s Submission, rules map[ruleKey]planning.Resolution) error {
	if s.Producer.Tenant == "" {
		return nil
	}
	for _, n := range s.Request.Notification {
		r := rules[ruleKey{int64(s.Request.CollectionID), n.Name}]
		if r.Found && r.Rule.Tenant != "" && r.Rule.Tenant != s.Producer.Tenant {
			return fmt.Errorf("%w: tenant %q may not send to collection %d, which belongs to another tenant",
				ErrTenantMismatch, s.Producer.Tenant, s.Request.CollectionID)
		}
	}
	return nil
}

// fromQueue reports whether every submission of a batch is a queue message.
func fromQueue(subs []Submission) bool {
	for _, s := range subs {
		if s.Source != SourceQueue {
			return false
		}
	}
	return true
}

// storeDeliveries inserts the deliveries of b's notes. The ones the local
// workers have room for go in claimed (as claim would leave them) and are
// handed off after the commit (b.handed).
func (in *Intake) storeDeliveries(ctx context.Context, tx *gorm.DB, b *batch) error {
	all, rcpts := b.deliveries()
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
	if err := in.insertDeliveries(ctx, tx, all, rcpts); err != nil {
		return err
	}
	if err := in.joinDigests(ctx, tx, b, all); err != nil {
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
	var sends []outbox.Change
	for _, p := range b.notes {
		e := b.subs[p.sub]
		e.outcome.Notifications = append(e.outcome.Notifications, summarize(p.note))
		if e.Actor != nil && in.outbox != nil && p.note.Status == dispatch.NotificationAccepted {
			sends = append(sends, sendChange(p, *e.Actor))
		}
	}
	// One statement for the batch's envelopes, not one per send.
	if len(sends) > 0 {
		if err := in.outbox.RecordAll(ctx, tx, sends); err != nil {
			return err
		}
		b.envelopes = len(sends)
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

// sendChange is the notifications/send envelope of p. Its recipients are
// the ones p encoded (planned.recipients), the bytes json.Marshal wrote for
// the []dispatch.Recipient the envelope carried before, not a fourth
// encoding of them.
func sendChange(p *planned, actor auth.Principal) outbox.Change {
	n := p.note
	rcpts := json.RawMessage(p.recipients)
	if n.Recipients == nil {
		rcpts = json.RawMessage("null") // as a nil slice encodes
	}
	return outbox.Change{
		DetailType:   outbox.NotificationsSend,
		EntityID:     n.Name,
		CollectionID: n.CollectionID,
		Payload: map[string]any{"notification": struct {
			Name       string          `json:"name"`
			Recipients json.RawMessage `json:"recipients"`
		}{n.Name, rcpts}},
		Actor: actor,
		Producer: &outbox.Producer{Tenant: n.Tenant, Team: n.Team, Service: n.Service, EntityID: n.EntityID,
			Correlation: n.Correlation},
		// A send with many recipients outgrows EventBridge's 256 KB entry: its
		// envelope then points here instead (outbox.ClaimCheck).
		Href: fmt.Sprintf("/v1/collections/%d/notifications/%d", n.CollectionID, n.ID),
	}
}

// ErrKeyConflict is returned by Send when an Idempotency-Key was used before
// with a different request.
var ErrKeyConflict = errors.New("dispatch: idempotency key reused with a different request")

// Send is the REST API's intake: one request, deduped by key (may be empty),
// with the producer headers of the request. A key reused with a different
// request is FAILED_PRECONDITION; a tenant that is not the collection's is
// PERMISSION_DENIED. With WithGroupCommit concurrent Sends share one
// transaction; each still returns only after its own notification is
// committed, with its own outcome, and a failed transaction fails each.
func (in *Intake) Send(ctx context.Context, req dispatch.Request, key string, correlation map[string]string, producer dispatch.Producer, actor auth.Principal) (Outcome, error) {
	sub := Submission{Source: SourceAPI, Key: key, Request: req, Correlation: correlation, Producer: producer, Actor: &actor}
	var out []Outcome
	if in.group != nil {
		// The batch's ctx is its leader's: each member keeps its own span.
		sub.TraceParent = traceParent(ctx)
		o, err := in.group.Do(ctx, sub)
		if err != nil {
			return Outcome{}, err
		}
		out = []Outcome{o}
	} else {
		var err error
		if out, err = in.Submit(ctx, []Submission{sub}); err != nil {
			return Outcome{}, err
		}
	}
	if out[0].Refused != nil {
		return Outcome{}, &apperr.Error{Kind: apperr.PermissionDenied, Err: out[0].Refused,
			Message: fmt.Sprintf("tenant %q may not send to collection %d: the collection belongs to another tenant", producer.Tenant, req.CollectionID),
			Details: []apperr.Detail{{Field: dispatch.HeaderTenant, Reason: "must be the collection's tenant, or left out"}}}
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
