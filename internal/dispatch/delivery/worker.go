// Package delivery runs the delivery workers: each claims due deliveries
// under a lease (lease.go) or takes the intake's hand-offs (handoff.go),
// asks the send-time gates (gate.go), renders and sends each (notification,
// action) group with one Channel.Send, decides retries (retry.go), and hands
// the outcomes to the recorder (record.go); the dialect-specific claim and
// record statements are in oneshot.go. Recovery returns a dead instance's
// deliveries to the queue (recover.go) and the retention prune removes
// finished notifications (retention.go).
package delivery

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"gorm.io/gorm"

	"github.com/notificationservice/notificationservice/internal/actions"
	"github.com/notificationservice/notificationservice/internal/apperr"
	"github.com/notificationservice/notificationservice/internal/channels"
	"github.com/notificationservice/notificationservice/internal/config"
	"github.com/notificationservice/notificationservice/internal/dispatch"
	"github.com/notificationservice/notificationservice/internal/jsonenc"
	"github.com/notificationservice/notificationservice/internal/macros"
	"github.com/notificationservice/notificationservice/internal/render"
	"github.com/notificationservice/notificationservice/internal/schedule"
	"github.com/notificationservice/notificationservice/internal/store"
)

// Senders are the service-wide sender defaults an action may override.
type Senders = render.Senders

// Dispatcher runs the delivery workers: each claims due deliveries (under
// a lease, lease.go), renders them, sends each (notification, action) group
// with one Channel.Send, and hands the outcomes to the recorder, which
// writes them within dispatch.recordInterval (record.go); a recovery loop
// returns deliveries whose lease expired (a dead instance's) to the queue
// (see Recover).
type Dispatcher struct {
	db        *gorm.DB
	pg        bool
	channels  map[string]channels.Channel
	exact     map[string]bool // the channels that reconcile exactly (channels.ReconcilesExactly), set by Run
	cfg       config.Dispatch
	senders   Senders
	log       *slog.Logger
	now       func() time.Time
	wake      chan struct{}
	local     local // deliveries the intake handed off (handoff.go)
	actions   ActionSource
	renderLim macros.RenderLimits // bounds each message's render; zero: the defaults
	claims    atomic.Int64        // claim statements run (tests)
	owner     string              // lease_owner of this instance's claims (lease.go)
	held      held                // the deliveries this instance holds (lease.go)
	rec       *recorder
	gates     []gate         // send-time rules, before render and send (gate.go)
	sandbox   SandboxRecords // nil: the sandbox's records in db (retention.go)
	// suppressor takes the addresses providers refuse for good (record.go).
	suppressor Suppressor
	unsub      Unsubscribes // nil: emails carry no unsubscribe link
	// channelRetry are the channels with a retry schedule of their own
	// (WithChannelRetry); the others use dispatch.*.
	channelRetry map[string]ChannelRetry
	// due is set by Wake (deliveries pending, maybe due) and cleared by
	// each claim statement as it starts.
	due atomic.Bool

	// OnSent, when set, is called once per delivery the provider accepted,
	// after its status is committed (benchmarks measure latency with it).
	OnSent func(d *dispatch.Delivery)
	// JoinTraces makes each provider call run under the trace of the
	// request or message that created the notification (its stored
	// traceparent). The claim then looks the traceparent up per delivery,
	// which cost 0-9% of deliveries/s in BenchmarkIntakeAndDispatch
	// (docs/observability.md), so the app sets it only when spans are
	// recorded (tracing.enabled). Set it before Run.
	JoinTraces bool
	// events, when set, records the lifecycle events of the status
	// changes (events.go). Set by WithEvents before Run.
	events Events
	// Outage, when set, hears every failed worker cycle, so /readyz reports
	// a database the workers cannot write to (store.Outage). On PostgreSQL
	// the claim and record statements bypass gorm's callbacks. Set it
	// before Run.
	Outage interface{ Observe(err error) bool }
	// OnInDoubt, when set, is called with how many deliveries each Recover
	// round found in sending with an expired lease: deliveries whose send
	// may or may not have reached the provider (the app counts them in
	// notify_deliveries_in_doubt_total).
	OnInDoubt func(n int)
	// OnRecordWait, when set, is called with how long a worker waited
	// before a provider call because dispatch.recordBatch deliveries were
	// already sent (or being sent) and not yet recorded (recorder.reserve).
	// The app sums it in notify_dispatch_record_wait_seconds_total: time
	// spent there is throughput the in-doubt bound costs (docs/runbook.md).
	OnRecordWait func(waited time.Duration)
}

// ActionSource gives the workers the actions a batch sends, with their
// collections' default senders (actions.Rules).
type ActionSource interface {
	ForSend(ctx context.Context, refs []actions.Ref) ([]actions.Action, error)
}

// New returns a Dispatcher sending through chans, keyed by channel
// name (email, sms, push). It reads actions from db on every batch until
// WithActions gives it a cached source.
func New(db *gorm.DB, chans map[string]channels.Channel, cfg config.Dispatch, senders Senders, log *slog.Logger, now func() time.Time) *Dispatcher {
	if now == nil {
		now = time.Now
	}
	d := &Dispatcher{
		db: db, pg: store.IsPostgres(db), channels: chans, cfg: cfg, senders: senders, log: log, now: now,
		wake:    make(chan struct{}, max(cfg.Workers, 1)),
		local:   local{capacity: handOffFactor * cfg.Workers * cfg.ClaimBatch},
		actions: actions.NewRules(db),
		owner:   newOwner(),
	}
	d.rec = newRecorder(d)
	d.gates = []gate{leaseGate{&d.held}, conditionGate{}, quietGate{new(schedule.Zones)}, throttleGate{d}}
	return d
}

// WithActions makes the workers read actions through src (the app gives
// them actions.Rules on the action cache) and returns d. Call it before Run.
func (d *Dispatcher) WithActions(src ActionSource) *Dispatcher {
	d.actions = src
	return d
}

// Unsubscribes gives an email its one-click unsubscribe link (RFC 8058,
// docs/rules.md): a signed token for the recipient, the collection and the
// action's event. The zero Unsubscribe is no link.
type Unsubscribes interface {
	Link(collectionID, eventID int64, rc dispatch.Recipient) (render.Unsubscribe, error)
}

// WithUnsubscribes makes every email of an event that is not required carry
// the link u gives it (its List-Unsubscribe headers and {{unsubscribeUrl}};
// a required event's renders it empty) and returns d. Call it
// before Run.
func (d *Dispatcher) WithUnsubscribes(u Unsubscribes) *Dispatcher {
	d.unsub = u
	return d
}

// WithRenderLimits bounds the render of each message (templates.* in the
// config) and returns d. Call it before Run.
func (d *Dispatcher) WithRenderLimits(lim macros.RenderLimits) *Dispatcher {
	d.renderLim = lim
	return d
}

// Wake tells one idle worker that deliveries may be due. It never blocks.
// A worker that then claims a full batch wakes the next one before it sends
// (see RunOnce), so a large commit fans out to as many workers as it needs,
// while a small one (a few messages at steady load) costs one claim, not one
// per worker: the others' empty claims were most of the database work per
// delivery at 1,000 msg/s.
//
// It also marks that pending deliveries may be due (see cycle): a worker
// that finishes a batch of hand-offs then claims too, rather than leave
// them to whichever worker its wake-up reaches, which may be busy with
// hand-offs of its own.
func (d *Dispatcher) Wake() {
	d.due.Store(true)
	d.signal()
}

// signal wakes one idle worker, if any; it never blocks.
func (d *Dispatcher) signal() {
	select {
	case d.wake <- struct{}{}:
	default:
	}
}

// Run runs the workers, the recorder, the lease renewer, the recovery loop
// and the retention prune until ctx ends. A worker finishes the batch it
// holds (sends, bounded by dispatch.sendTimeout) before it stops, and the
// recorder writes every outcome before Run returns; the leases are renewed
// until then.
func (d *Dispatcher) Run(ctx context.Context) error {
	var wg, workers sync.WaitGroup
	// Asked here, not in New: a channel may be finished being built
	// between the two (tests wire one after New).
	d.exact = make(map[string]bool, len(d.channels))
	for name, ch := range d.channels {
		d.exact[name] = channels.ReconcilesExactly(ch)
	}
	d.rec.start(ctx)
	stopRenew := make(chan struct{})
	wg.Go(func() { d.renewLoop(ctx, stopRenew) })
	d.openLocal()
	for i := range d.cfg.Workers {
		workers.Go(func() { d.work(ctx, i) })
	}
	wg.Go(func() { d.recoverLoop(ctx) })
	wg.Go(func() { d.pruneLoop(ctx) })
	workers.Wait()
	d.closeLocal()
	d.rec.finish()
	close(stopRenew)
	wg.Wait()
	return ctx.Err()
}

func (d *Dispatcher) work(ctx context.Context, worker int) {
	idle := time.NewTimer(0)
	defer idle.Stop()
	pool := newSenders(d.sendConcurrency() - 1) // process sends one group itself
	defer pool.close()
	failures := 0
	for {
		if ctx.Err() != nil {
			return
		}
		// A cycle in hand is finished on shutdown, within a bound: a database
		// that hangs leaves the claim in sending, for Recover.
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), d.cfg.SendTimeout+30*time.Second)
		more, _, err := d.cycle(cctx, pool)
		cancel()
		switch {
		case err != nil:
			if d.Outage != nil {
				d.Outage.Observe(err)
			}
			failures++
			if failures == 1 || failures%100 == 0 {
				d.log.WarnContext(ctx, "dispatch: worker cycle failed; retrying", "worker", worker, "error", err, "failures", failures)
			}
		case failures > 0:
			d.log.InfoContext(ctx, "dispatch: worker recovered", "worker", worker, "failures", failures)
			failures = 0
		}
		if ctx.Err() != nil {
			return
		}
		if more && err == nil {
			continue
		}
		wait := d.cfg.PollInterval
		if err != nil {
			wait = min(d.cfg.PollInterval*time.Duration(failures), 30*time.Second)
		}
		idle.Reset(wait)
		select {
		case <-ctx.Done():
			return
		case <-d.wake:
		case <-idle.C:
		}
		if !idle.Stop() {
			select {
			case <-idle.C:
			default:
			}
		}
	}
}

// loadActions reads the actions of deliveries, by action id: for a send,
// what to send; for Recover, their inDoubt policy and what the provider is
// asked about (sender, body).
func (d *Dispatcher) loadActions(ctx context.Context, deliveries []Claimed) (map[int64]*actions.Action, error) {
	seen := map[int64]bool{}
	var refs []actions.Ref
	for _, c := range deliveries {
		if !seen[c.ActionID] {
			seen[c.ActionID] = true
			refs = append(refs, actions.Ref{CollectionID: c.CollectionID, ID: c.ActionID})
		}
	}
	list, err := d.actions.ForSend(ctx, refs)
	if err != nil {
		return nil, fmt.Errorf("dispatch: actions: %w", err)
	}
	out := make(map[int64]*actions.Action, len(list))
	for i := range list {
		out[list[i].ID] = &list[i]
	}
	return out, nil
}

// Claimed is a delivery a worker owns until it records the outcome. Its
// (ID, Attempts) pair and this instance's lease_owner are the claim: the
// outcome is written only if the row is still this owner's with that
// attempt count.
type Claimed struct {
	ID             int64
	NotificationID int64
	CollectionID   int64
	ActionID       int64
	RecipientIndex int
	Channel        string
	Recipient      string
	Attempts       int
	CreatedTime    int64
	TraceParent    string // the notification's
	// Address is the recipient's address on the channel, and ClaimedAt,
	// LeaseOwner and LeaseUntil the claim: Recover reads them, so the
	// channels can be asked about the delivery; a worker's claim sets
	// LeaseUntil (and leaves the rest empty).
	Address    string
	ClaimedAt  int64
	LeaseOwner string
	LeaseUntil int64
	// Decoded is Recipient decoded, when the intake handed the delivery
	// off with the value it planned it from: no need to decode it again.
	Decoded *dispatch.Recipient `gorm:"-"`
	// note is the delivery's notification, read once per batch for a
	// condition evaluated at send time (loadNotes); nil otherwise.
	note *sendNote `gorm:"-"`
	// DigestDeliveryID equal to ID marks the delivery of a digest window:
	// it is rendered with the window's items (digest.go).
	DigestDeliveryID int64
}

// RunOnce takes one batch, the hand-offs waiting or else a claim of due
// deliveries, sends it and records the outcomes. It returns how many it
// took.
func (d *Dispatcher) RunOnce(ctx context.Context) (int, error) {
	_, n, err := d.cycle(ctx, nil)
	return n, err
}

// cycle sends one batch: the intake's hand-offs, else a claim. Each
// (notification, action) group's outcomes go to the recorder as soon as its
// Channel.Send returns, so the recorder writes them within
// dispatch.recordInterval, while the rest of the batch may still be on its
// way. cycle returns when the batch is sent; with the recorder running it
// does not wait for the write, the next batch's sends overlap it. Without
// it (RunOnce alone) the outcomes are written before cycle returns. more
// reports whether more work may be ready right now: a full claim (more may
// be due), hand-offs waiting, or a Wake since the last claim (deliveries
// the intake could not hand off, those Recover put back).
//
// A batch of hand-offs is not followed by a claim unless Wake said
// deliveries are pending: under load nearly every batch is a hand-off, and
// nearly every claim after one found nothing (2,436 empty claims in one
// BenchmarkQueueDrain run, each planned for its arguments). Retries that
// come due later are claimed at the next poll.
func (d *Dispatcher) cycle(ctx context.Context, pool *senders) (more bool, n int, err error) {
	batch := d.takeLocal()
	handed := len(batch) > 0
	if !handed {
		if batch, err = d.claim(ctx, d.now().UnixMilli()); err != nil || len(batch) == 0 {
			return false, 0, err
		}
	}
	full := len(batch) == d.cfg.ClaimBatch
	if full && !handed {
		d.Wake() // more may be due: let another worker claim them meanwhile
	}
	if err := d.process(ctx, batch, pool); err != nil {
		return false, len(batch), err
	}
	return (full && !handed) || d.localLen() > 0 || d.due.Load(), len(batch), nil
}

func (d *Dispatcher) claim(ctx context.Context, now int64) ([]Claimed, error) {
	d.claims.Add(1)
	d.due.Store(false) // before the statement: a Wake during it sets it again
	_, until := d.Lease(now)
	q, args := d.claimSQL(now, until)
	var rows []Claimed
	if err := d.oneShotQuery(ctx, &rows, q, args); err != nil {
		return nil, fmt.Errorf("dispatch: claim: %w", err)
	}
	for i := range rows {
		rows[i].LeaseUntil = until
	}
	d.held.add(rows)
	return rows, nil
}

// claimPick picks the claim's rows (parameters: now, limit): the part of
// the claim a backlog of future rows could slow, which
// BenchmarkClaimWithScheduledBacklog times alone.
const claimPick = `
  SELECT id FROM deliveries
  WHERE status IN ('pending', 'scheduled') AND next_attempt_at <= ?
  ORDER BY next_attempt_at, id
  LIMIT ?`

// claimSQL is the claim statement: due pending and scheduled deliveries
// (a quiet-hours deferral waits as scheduled too), oldest first, to sending with one more attempt, leased to this instance
// until until. Its WHERE repeats the predicate of the partial index
// deliveries_waiting_idx (migration 00020) word for word, so both dialects
// use it: the rows due now are at the index's start, whatever number of
// scheduled rows wait after them.
func (d *Dispatcher) claimSQL(now, until int64) (string, []any) {
	// On PostgreSQL the pick is an ARRAY(…) subquery, run once as an
	// init plan, rather than IN (…), which the planner weighs as a
	// semi-join at every run (the claim is planned at every run,
	// oneshot.go): a quarter less planning, 0.13 against 0.17 ms on an
	// idle machine. Run once, it also locks exactly the rows it returns.
	where := "id IN (" + claimPick + ")"
	if d.pg {
		where = "id = ANY (ARRAY(" + claimPick + " FOR UPDATE SKIP LOCKED))"
	}
	traceParent := "''"
	if d.JoinTraces {
		traceParent = "(SELECT n.trace_parent FROM notifications n WHERE n.id = deliveries.notification_id)"
	}
	args := []any{now, d.owner, until, now, now, d.cfg.ClaimBatch}
	return `
UPDATE deliveries SET status = 'sending', attempts = attempts + 1, claimed_at = ?, lease_owner = ?, lease_until = ?, updated_time = ?
WHERE ` + where + `
RETURNING id, notification_id, collection_id, action_id, recipient_index, channel, recipient, attempts, created_time, digest_delivery_id,
  ` + traceParent + ` AS trace_parent`, args
}

// outcome is what happened to one claimed delivery.
type outcome struct {
	id, notificationID int64
	collectionID       int64 // asks Events whether the change is wanted
	attempts           int
	status             string
	reason             string
	reasonDetail       string // for a rule-engine reason (dispatch.Reason*)
	uncount            bool   // give back the claim's attempt (verdict.uncount)
	provider           string
	providerMessageID  string
	nextAttemptAt      int64
	sentTime           int64
	createdTime        int64
	// owner is the lease_owner the write is fenced on (this instance's
	// when empty); leaseBefore, when set, also requires the lease to have
	// expired before it (Recover's writes).
	owner       string
	leaseBefore int64
	reconciled  string // Recover's resolution of an in-doubt attempt (Reconciled*)
	// inDoubt marks a send whose answer was lost (channels.Error.
	// MaybeAccepted): nothing is written for it, and the delivery is left
	// in sending, for Recover, as a crash would have left it.
	inDoubt bool
	// suppress is the address the provider's answer put on the
	// suppression list (Twilio 21610), written after the outcome.
	suppress *dispatch.Suppression
	// exact marks a send reserved against the exact channels' backlog
	// (recorder.reserve), so the recorder gives it back there.
	exact bool
}

type groupKey struct{ notificationID, actionID int64 }

// process sends batch and gives each group's outcomes to the recorder as
// its send returns. Without a running recorder they are written before it
// returns. The groups are sent concurrently, by pool's goroutines (nil: a
// pool of this call's) and the last by the calling goroutine, which would
// otherwise only wait: at most sendConcurrency at once (the pool's bound
// plus one), so a slow provider holds only its own groups.
func (d *Dispatcher) process(ctx context.Context, batch []Claimed, pool *senders) error {
	byID, err := d.loadActions(ctx, batch)
	if err == nil {
		err = d.loadNotes(ctx, batch, byID)
	}
	if err != nil {
		// Nothing was sent: back to pending after a backoff.
		return d.release(ctx, batch, err)
	}

	shareRecipients(batch)
	outs := make([]outcome, len(batch))
	var order []groupKey
	groups := map[groupKey][]int{}
	for i, c := range batch {
		outs[i] = outcome{id: c.ID, notificationID: c.NotificationID, collectionID: c.CollectionID, attempts: c.Attempts, createdTime: c.CreatedTime}
		k := groupKey{c.NotificationID, c.ActionID}
		if groups[k] == nil {
			order = append(order, k)
		}
		groups[k] = append(groups[k], i)
	}
	// reserve reserves group k's sends (recorder.reserve) and says whether
	// its channel reconciles exactly, which reserved them apart; the
	// outcomes carry it so the recorder gives them back there. A group is
	// one action's, so one channel's.
	reserve := func(k groupKey) bool {
		exact := d.exact[batch[groups[k][0]].Channel]
		d.rec.reserve(len(groups[k]), exact)
		return exact
	}
	// send sends group k, reserved already.
	send := func(k groupKey, exact bool) {
		idx := groups[k]
		d.sendGroup(ctx, byID[k.actionID], batch, idx, outs)
		mine := make([]outcome, len(idx))
		for j, i := range idx {
			mine[j] = outs[i]
			mine[j].exact = exact
		}
		d.rec.add(ctx, mine)
	}
	if pool == nil && len(order) > 1 {
		pool = newSenders(d.sendConcurrency() - 1)
		defer pool.close()
	}
	var wg sync.WaitGroup
	last := len(order) - 1
	for _, k := range order[:last] {
		// The reservation is waited for here, not in the job: a pool
		// goroutine parked in reserve sat at the top of its stack, where
		// every garbage collection halved the stack, and the send then
		// grew it back through render and the channel (copystack, 5% of
		// the REST send's CPU; senders).
		exact := reserve(k)
		wg.Add(1)
		pool.do(func() {
			defer wg.Done()
			send(k, exact)
		})
	}
	send(order[last], reserve(order[last]))
	wg.Wait()
	return nil
}

// shareRecipients decodes each distinct stored recipient of batch once and
// gives the decoded value to every delivery that stores it. A claim returns
// the recipient's JSON per delivery, and the three deliveries of a
// recipient on email, SMS and push store the same text: decoding it per
// delivery was 9% of the drain's CPU (issue 17). Hand-offs carry Decoded
// already. The value is shared read-only (gates, render and the
// unsubscribe link read it; webhookRecipient changes a copy). One that
// does not decode is left to sendGroup, which fails its delivery naming
// the error.
func shareRecipients(batch []Claimed) {
	var seen map[string]*dispatch.Recipient
	for i := range batch {
		c := &batch[i]
		if c.Decoded != nil {
			continue
		}
		if rc, ok := seen[c.Recipient]; ok {
			c.Decoded = rc
			continue
		}
		if rc, err := c.recipient(); err == nil {
			if seen == nil {
				seen = make(map[string]*dispatch.Recipient, len(batch))
			}
			seen[c.Recipient] = rc
		}
	}
}

// release puts a batch back to pending when it could not even be prepared.
func (d *Dispatcher) release(ctx context.Context, batch []Claimed, cause error) error {
	outs := make([]outcome, len(batch))
	now := d.now().UnixMilli()
	for i, c := range batch {
		outs[i] = outcome{id: c.ID, attempts: c.Attempts, status: dispatch.StatusPending, nextAttemptAt: now + d.cfg.BackoffBase.Milliseconds(),
			reason: "not sent: " + apperr.Truncate(cause.Error(), 500)}
	}
	defer d.held.remove(outs)
	if err := d.record(ctx, outs); err != nil {
		return errors.Join(cause, err)
	}
	return cause
}

// hold asks d's gates, in order, about c; the first that holds it decides.
func (d *Dispatcher) hold(ctx context.Context, c *Claimed, a *actions.Action, now time.Time) (verdict, bool) {
	for _, g := range d.gates {
		if v, ok := g.hold(ctx, c, a, now); ok {
			return v, true
		}
	}
	return verdict{}, false
}

// sendGroup renders and sends the deliveries idx of one (notification,
// action) with one Send call, and fills their outcomes.
func (d *Dispatcher) sendGroup(ctx context.Context, a *actions.Action, batch []Claimed, idx []int, outs []outcome) {
	first := batch[idx[0]]
	now := d.now()
	if a == nil {
		for _, i := range idx {
			outs[i].status, outs[i].reason = dispatch.StatusFailed, fmt.Sprintf("action %d no longer exists", first.ActionID)
		}
		return
	}
	ch := d.channels[first.Channel]
	if ch == nil {
		for _, i := range idx {
			outs[i].status, outs[i].reason = dispatch.StatusFailed, fmt.Sprintf("no provider is configured for channel %q", first.Channel)
		}
		return
	}
	msgs := make([]channels.Message, 0, len(idx))
	send := make([]int, 0, len(idx))
	var name string
	if first.Channel == channels.ChannelWebhook {
		// The webhook event names the notification, which no delivery row
		// carries: one read per (notification, action) group.
		var err error
		if name, err = d.notificationName(ctx, first.NotificationID); err != nil {
			for _, i := range idx {
				d.retry(&outs[i], first.Channel, channels.Retryable(ch.Name(), "the notification could not be read", 0, err), now)
			}
			return
		}
	}
	rcs := make([]*dispatch.Recipient, 0, len(idx)) // the recipient of each of send
	for _, i := range idx {
		c := batch[i]
		// The send-time rules (gate.go): a held delivery is not sent.
		if v, held := d.hold(ctx, &batch[i], a, now); held {
			outs[i].status, outs[i].nextAttemptAt, outs[i].reason, outs[i].reasonDetail = v.status, v.nextAttemptAt, v.reason, v.detail
			outs[i].uncount = v.uncount
			continue
		}
		rc, err := batch[i].recipient()
		if err != nil {
			outs[i].status, outs[i].reason = dispatch.StatusFailed, "stored recipient is unreadable: "+err.Error()
			continue
		}
		rr := rc.ForRender()
		// A required event's emails (password reset) carry no unsubscribe
		// link: opt-outs do not apply to them, so the link would lie.
		if d.unsub != nil && c.Channel == channels.ChannelEmail && a.EventRequired {
			rr.Unsubscribe = render.Unsubscribe{Withheld: true}
		} else if d.unsub != nil && c.Channel == channels.ChannelEmail {
			var err error
			if rr.Unsubscribe, err = d.unsub.Link(c.CollectionID, a.EventID, *rc); err != nil {
				outs[i].status, outs[i].reason = dispatch.StatusFailed, "unsubscribe link: "+err.Error()
				continue
			}
		}
		if c.DigestDeliveryID == c.ID {
			if rr.Extra, err = d.digest(ctx, c.ID); err != nil {
				d.retry(&outs[i], first.Channel, channels.Retryable(ch.Name(), "the digest's items could not be read", 0, err), now)
				continue
			}
		}
		m, err := d.render(a, rr)
		if err != nil {
			// A render limit names itself (render_limit: …); it is the
			// template's or the data's fault, so retrying cannot help.
			reason := "render: " + err.Error()
			if errors.Is(err, macros.ErrRenderLimit) {
				reason = err.Error()
			}
			outs[i].status, outs[i].reason = dispatch.StatusFailed, reason
			continue
		}
		m.DeliveryID, m.NotificationID, m.CollectionID, m.ActionID, m.Channel = c.ID, c.NotificationID, c.CollectionID, c.ActionID, c.Channel
		if c.Channel == channels.ChannelWebhook {
			m.Notification, m.Recipient = name, webhookRecipient(*rc)
		}
		msgs = append(msgs, m)
		send = append(send, i)
		rcs = append(rcs, rc)
	}
	if len(msgs) == 0 {
		return
	}
	// The provider call joins the trace of the request or message that
	// created the notification.
	sctx, cancel := context.WithTimeout(withTraceParent(ctx, first.TraceParent), d.cfg.SendTimeout)
	results := ch.Send(sctx, msgs)
	cancel()
	provider := ch.Name()
	done := d.now().UnixMilli()
	for j, i := range send {
		o := &outs[i]
		o.provider = provider
		var res channels.Result
		if j < len(results) {
			res = results[j]
		} else {
			res.Err = channels.Retryable(provider, "provider returned no result for this message", 0, nil)
		}
		if res.Err == nil {
			o.status, o.providerMessageID, o.sentTime = dispatch.StatusSent, res.ProviderMessageID, done
			continue
		}
		e := channels.Classify(provider, res.Err)
		if e.MaybeAccepted {
			o.inDoubt, o.reason = true, e.Error()
			continue
		}
		d.retry(o, first.Channel, e, now)
		if addr := suppressAddress(first.Channel, rcs[j]); e.Suppress != "" && addr != "" {
			o.suppress = &dispatch.Suppression{CollectionID: batch[i].CollectionID, Channel: first.Channel, Address: addr,
				Reason: apperr.Truncate(e.Reason, 1000), Source: e.Suppress, Who: provider}
		}
	}
}

// suppressAddress is the address a provider's refusal of rc's message on
// channel names, as the recipient gave it (so planning, which looks the
// recipient's own address up, finds it): the phone or the push id. An
// email may go to several To addresses, and a send error does not say
// which refused it: "" (SendGrid's refusals arrive as webhook events, which
// name the address).
func suppressAddress(channel string, rc *dispatch.Recipient) string {
	switch channel {
	case channels.ChannelSMS:
		return rc.Phone
	case channels.ChannelPush:
		return rc.PushID
	}
	return ""
}

// record writes outs in one statement per 500.
func (d *Dispatcher) record(ctx context.Context, outs []outcome) error {
	_, err := d.recordCount(ctx, outs)
	return err
}

// recordCount is record, returning how many rows took their outcome (the
// others were fenced out: claimed again, or renewed by a live owner).
func (d *Dispatcher) recordCount(ctx context.Context, outs []outcome) (int64, error) {
	now := d.now().UnixMilli()
	var n int64
	for chunk := range slices.Chunk(outs, 500) {
		q, args := d.recordSQL(chunk, now)
		if d.wantsEvents(ctx, chunk) {
			k, err := d.recordWithEvents(ctx, q, args, now)
			n += k
			if err != nil {
				return n, fmt.Errorf("dispatch: record outcomes: %w", err)
			}
			continue
		}
		k, err := d.oneShotExec(ctx, q, args)
		n += k
		if err != nil {
			return n, fmt.Errorf("dispatch: record outcomes: %w", err)
		}
	}
	return n, nil
}

// recordColumns are the fields of one outcome in recordSQL's parameter.
var recordColumns = store.Columns(
	"id bigint", "attempts integer", "status text", "reason text", "reason_detail text", "provider text", "pmid text",
	"next_at bigint", "sent_time bigint", "owner text", "lease_before bigint", "reconciled text", "uncount integer",
)

// appendRecordRow appends o as one element of recordSQL's JSON parameter,
// with recordColumns' names, written by hand: encoding/json's reflection
// over a struct per outcome was most of the record statement's cost in Go
// (issue 17). owner is the lease owner the write is fenced on.
func appendRecordRow(b []byte, o *outcome, owner string) []byte {
	uncount := 0
	if o.uncount {
		uncount = 1
	}
	b = append(b, `{"id":`...)
	b = strconv.AppendInt(b, o.id, 10)
	b = append(b, `,"attempts":`...)
	b = strconv.AppendInt(b, int64(o.attempts), 10)
	b = append(b, `,"status":`...)
	b = jsonenc.AppendString(b, o.status)
	b = append(b, `,"reason":`...)
	b = jsonenc.AppendString(b, o.reason)
	b = append(b, `,"reason_detail":`...)
	b = jsonenc.AppendString(b, o.reasonDetail)
	b = append(b, `,"provider":`...)
	b = jsonenc.AppendString(b, o.provider)
	b = append(b, `,"pmid":`...)
	b = jsonenc.AppendString(b, o.providerMessageID)
	b = append(b, `,"next_at":`...)
	b = strconv.AppendInt(b, o.nextAttemptAt, 10)
	b = append(b, `,"sent_time":`...)
	b = strconv.AppendInt(b, o.sentTime, 10)
	// Owner and lease_before fence the write (outcome.owner); reconciled
	// is set by Recover only; uncount gives the claim's attempt back.
	b = append(b, `,"owner":`...)
	b = jsonenc.AppendString(b, owner)
	b = append(b, `,"lease_before":`...)
	b = strconv.AppendInt(b, o.leaseBefore, 10)
	b = append(b, `,"reconciled":`...)
	b = jsonenc.AppendString(b, o.reconciled)
	b = append(b, `,"uncount":`...)
	b = strconv.AppendInt(b, int64(uncount), 10)
	return append(b, '}')
}

// recordSQL is the UPDATE that writes outs (not empty). The outcomes are
// one array parameter per column on PostgreSQL (store.UnnestRows), one JSON
// parameter on SQLite, so the statement's text is the same for every batch.
func (d *Dispatcher) recordSQL(outs []outcome, now int64) (string, []any) {
	sel, from := store.BatchRows(d.pg, recordColumns)
	var args []any
	if d.pg {
		args = append([]any{now}, d.recordArrays(outs)...)
	} else {
		doc := make([]byte, 0, 256*len(outs))
		doc = append(doc, '[')
		for i := range outs {
			if i > 0 {
				doc = append(doc, ',')
			}
			doc = appendRecordRow(doc, &outs[i], d.outcomeOwner(&outs[i]))
		}
		doc = append(doc, ']')
		args = []any{now, string(doc)}
	}
	// The claim is (id, attempts, lease_owner): the write is fenced on
	// all three. A row Recover put back to pending but nobody claimed
	// again still takes this outcome (so a send that outlived its lease
	// is not repeated); a row claimed again, by this instance or another,
	// has more attempts and a new lease, and is left to its new owner.
	// Recover's own writes also require the lease to be still expired, so
	// an owner that renewed in the meantime keeps its row. A cancel
	// (status.Store.Cancel) takes pending rows, and one may be a row
	// Recover put back while its old owner was still sending: when that
	// send was accepted the row says sent, not canceled, because it was.
	//
	// A gate's deferral or skip gives the claim's attempt back (uncount):
	// the SET reads the row as it was, so attempts is the fenced value
	// minus one. The row's (attempts, owner) are then what they were
	// before the claim, and this instance's next claim makes them the
	// claim's again; a retry of the same write (its commit succeeded but
	// the answer was lost) must not land on that next claim. The deferral
	// moved next_attempt_at to v.next_at, later than when it was due, and
	// a claim does not change it: an uncounted write applies only while
	// next_attempt_at is not yet v.next_at.
	//
	// On PostgreSQL the status fence is one = ANY over a CASE rather than
	// the OR SQLite gets: the two mean the same, but the planner tries
	// each arm of an OR on status against the partial indexes on status
	// (deliveries_waiting_idx, deliveries_lease_idx) as bitmap paths, and
	// this statement is planned at every run (oneshot.go): the OR doubled
	// its planning, 0.22 against 0.11 ms on an idle machine; under the
	// binary harness planning had been a fifth of the statement's database
	// time (docs/benchmarks.md, "where PostgreSQL spends a REST send").
	fence := "(deliveries.status IN ('sending', 'pending') OR (deliveries.status = 'canceled' AND v.status = 'sent'))"
	if d.pg {
		fence = "deliveries.status = ANY (CASE WHEN v.status = 'sent' THEN '{sending,pending,canceled}'::text[] ELSE '{sending,pending}'::text[] END)"
	}
	q := "UPDATE deliveries SET status = v.status, attempts = deliveries.attempts - v.uncount, reason = v.reason, reason_detail = v.reason_detail, provider = v.provider, " +
		"provider_message_id = COALESCE(NULLIF(v.pmid, ''), deliveries.provider_message_id), next_attempt_at = v.next_at, " +
		"sent_time = v.sent_time, in_doubt = deliveries.in_doubt + CASE WHEN v.reconciled = '' THEN 0 ELSE 1 END, " +
		"reconciled = CASE WHEN v.reconciled = '' THEN deliveries.reconciled ELSE v.reconciled END, updated_time = ? FROM (SELECT " + sel + " FROM " + from + ") AS v " +
		"WHERE deliveries.id = v.id AND " + fence + " AND deliveries.attempts = v.attempts " +
		"AND deliveries.lease_owner = v.owner AND (v.lease_before = 0 OR deliveries.lease_until < v.lease_before) " +
		"AND (v.uncount = 0 OR deliveries.next_attempt_at <> v.next_at)"
	return q, args
}

// outcomeOwner is the lease owner o's write is fenced on.
func (d *Dispatcher) outcomeOwner(o *outcome) string {
	if o.owner != "" {
		return o.owner
	}
	return d.owner
}

// recordArrays is outs as one array per column of recordColumns, in its
// order, for store.UnnestRows.
func (d *Dispatcher) recordArrays(outs []outcome) []any {
	n := len(outs)
	ints := func() store.Int64s { return make(store.Int64s, n) }
	texts := func() store.Texts { return make(store.Texts, n) }
	id, attempts, next, sent, leaseBefore, uncount := ints(), ints(), ints(), ints(), ints(), ints()
	status, reason, detail, provider, pmid, owner, reconciled := texts(), texts(), texts(), texts(), texts(), texts(), texts()
	for i := range outs {
		o := &outs[i]
		id[i], attempts[i], next[i], sent[i], leaseBefore[i] = o.id, int64(o.attempts), o.nextAttemptAt, o.sentTime, o.leaseBefore
		if o.uncount {
			uncount[i] = 1
		}
		status[i], reason[i], detail[i], provider[i] = o.status, o.reason, o.reasonDetail, o.provider
		pmid[i], owner[i], reconciled[i] = o.providerMessageID, d.outcomeOwner(o), o.reconciled
	}
	return []any{id, attempts, status, reason, detail, provider, pmid, next, sent, owner, leaseBefore, reconciled, uncount}
}

// notificationName reads the name of notification id.
func (d *Dispatcher) notificationName(ctx context.Context, id int64) (string, error) {
	var names []string
	if err := d.db.WithContext(ctx).Table("notifications").Where("id = ?", id).Pluck("name", &names).Error; err != nil {
		return "", fmt.Errorf("dispatch: notification %d: %w", id, err)
	}
	if len(names) == 0 {
		return "", fmt.Errorf("dispatch: notification %d is gone", id)
	}
	return names[0], nil
}

// webhookRecipient is rc as the webhook event carries it: as the producer
// sent it, without the macros, which the event carries beside it.
func webhookRecipient(rc dispatch.Recipient) json.RawMessage {
	rc.Macros = nil
	b, err := json.Marshal(rc)
	if err != nil {
		return nil // a decoded recipient always encodes
	}
	return b
}

// render builds the provider message for recipient rc from action a
// through package render, within one budget of d.renderLim, so a message
// over a limit fails (render_limit) instead of being sent. The error is the
// field's own (the delivery's reason names what failed, not where).
func (d *Dispatcher) render(a *actions.Action, rc render.Recipient) (channels.Message, error) {
	m, err := render.Message(*a, rc, d.senders, d.renderLim)
	if fe := (*macros.FieldError)(nil); errors.As(err, &fe) {
		err = fe.Err
	}
	return m, err
}
