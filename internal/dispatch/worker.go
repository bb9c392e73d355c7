package dispatch

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"gorm.io/gorm"

	"github.com/notificationservice/notificationservice/internal/actions"
	"github.com/notificationservice/notificationservice/internal/apperr"
	"github.com/notificationservice/notificationservice/internal/channels"
	"github.com/notificationservice/notificationservice/internal/config"
	"github.com/notificationservice/notificationservice/internal/macros"
	"github.com/notificationservice/notificationservice/internal/store"
)

// Senders are the service-wide sender defaults an action may override.
type Senders struct {
	Email               channels.Address
	SMSFrom             string
	MessagingServiceSID string
}

// Dispatcher runs the delivery workers: each claims due deliveries, renders
// them, sends each (notification, action) group with one Channel.Send, and
// records the outcome; a recovery loop returns deliveries that a crash left
// in sending to the queue (see Recover).
type Dispatcher struct {
	db       *gorm.DB
	pg       bool
	channels map[string]channels.Channel
	cfg      config.Dispatch
	senders  Senders
	log      *slog.Logger
	now      func() time.Time
	wake     chan struct{}
	local    local // deliveries the intake handed off (handoff.go)
	actions  ActionSource
	claims   atomic.Int64 // claim statements run (tests)
	// due is set by Wake (deliveries pending, maybe due) and cleared by
	// each claim statement as it starts.
	due atomic.Bool

	// OnSent, when set, is called once per delivery the provider accepted,
	// after its status is committed (benchmarks measure latency with it).
	OnSent func(d *Delivery)
	// JoinTraces makes each provider call run under the trace of the
	// request or message that created the notification (its stored
	// traceparent). The claim then looks the traceparent up per delivery,
	// which cost 0-9% of deliveries/s in BenchmarkIntakeAndDispatch
	// (docs/observability.md), so the app sets it only when spans are
	// recorded (tracing.enabled). Set it before Run.
	JoinTraces bool
}

// ActionSource gives the workers the actions a batch sends, with their
// collections' default senders (actions.Rules).
type ActionSource interface {
	ForSend(ctx context.Context, refs []actions.Ref) ([]actions.Action, error)
}

// NewDispatcher returns a Dispatcher sending through chans, keyed by channel
// name (email, sms, push). It reads actions from db on every batch until
// WithActions gives it a cached source.
func NewDispatcher(db *gorm.DB, chans map[string]channels.Channel, cfg config.Dispatch, senders Senders, log *slog.Logger, now func() time.Time) *Dispatcher {
	if now == nil {
		now = time.Now
	}
	room := cfg.Workers * cfg.ClaimBatch
	if handoffWait(cfg.StaleSending, cfg.SendTimeout) < 10*time.Second {
		room = 0
	}
	return &Dispatcher{
		db: db, pg: store.IsPostgres(db), channels: chans, cfg: cfg, senders: senders, log: log, now: now,
		wake:    make(chan struct{}, max(cfg.Workers, 1)),
		local:   local{capacity: room},
		actions: actions.NewRules(db),
	}
}

// WithActions makes the workers read actions through src (the app gives
// them actions.Rules on the action cache) and returns d. Call it before Run.
func (d *Dispatcher) WithActions(src ActionSource) *Dispatcher {
	d.actions = src
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

// Run runs the workers, the recovery loop and the retention prune until ctx
// ends. A worker finishes the batch it holds (sends and records, bounded by
// dispatch.sendTimeout) before it stops.
func (d *Dispatcher) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	d.openLocal()
	for i := range d.cfg.Workers {
		wg.Go(func() { d.work(ctx, i) })
	}
	wg.Go(func() { d.recoverLoop(ctx) })
	wg.Go(func() { d.pruneLoop(ctx) })
	wg.Wait()
	d.closeLocal()
	return ctx.Err()
}

func (d *Dispatcher) work(ctx context.Context, worker int) {
	idle := time.NewTimer(0)
	defer idle.Stop()
	failures := 0
	var next []claimed // claimed by the statement that recorded the last batch
	for {
		// A cycle in hand is finished on shutdown, within a bound: a database
		// that hangs leaves the claim in sending, for Recover.
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), d.cfg.SendTimeout+30*time.Second)
		var more bool
		var err error
		more, next, err = d.cycle(cctx, next, ctx.Err() == nil)
		cancel()
		switch {
		case err != nil:
			failures++
			if failures == 1 || failures%100 == 0 {
				d.log.WarnContext(ctx, "dispatch: worker cycle failed; retrying", "worker", worker, "error", err, "failures", failures)
			}
		case failures > 0:
			d.log.InfoContext(ctx, "dispatch: worker recovered", "worker", worker, "failures", failures)
			failures = 0
		}
		if len(next) > 0 {
			continue // claimed while recording: process it, even on shutdown
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

func (d *Dispatcher) recoverLoop(ctx context.Context) {
	every := min(max(d.cfg.StaleSending/4, 100*time.Millisecond), time.Minute)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		if n, err := d.Recover(ctx); err != nil && ctx.Err() == nil {
			d.log.WarnContext(ctx, "dispatch: stale-sending recovery failed", "error", err)
		} else if n > 0 {
			d.log.WarnContext(ctx, "dispatch: recovered deliveries left in sending", "count", n, "staleAfter", d.cfg.StaleSending)
			d.Wake()
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Reconciler is a channel that can say which deliveries it already
// accepted, by delivery id, with the provider message id it gave each. Recover
// asks it before sending a stale delivery again, so a crash between the
// provider's accept and the status commit does not send twice. The sandbox
// implements it; a provider without a lookup does not, and its stale
// deliveries are sent again (at least once).
type Reconciler interface {
	Accepted(ctx context.Context, deliveryIDs []int64) (map[int64]string, error)
}

// Recover applies the stale-sending rule: a delivery in sending whose claim
// is older than dispatch.staleSending belonged to a worker that died
// mid-send (dispatch.staleSending must exceed dispatch.sendTimeout, so a
// live send never looks stale). If its channel is a Reconciler and says it
// accepted the delivery, the delivery is marked sent. Otherwise whether the
// provider got it is unknown, and it goes back to pending, due now (the
// attempt stays counted), to be sent again: at least once. If that attempt
// was its last (dispatch.maxAttempts) it is failed with a reason that says
// the outcome is unknown. It is never left in sending and never dropped
// without a reason. Recover returns how many deliveries it moved.
func (d *Dispatcher) Recover(ctx context.Context) (int64, error) {
	var total int64
	for {
		n, err := d.recoverBatch(ctx, 1000)
		total += n
		if err != nil || n < 1000 {
			return total, err
		}
	}
}

func (d *Dispatcher) recoverBatch(ctx context.Context, limit int) (int64, error) {
	now := d.now()
	cutoff := now.UnixMilli() - d.cfg.StaleSending.Milliseconds()
	var stale []claimed
	if err := d.db.WithContext(ctx).Raw(`SELECT id, channel, attempts FROM deliveries
WHERE status = 'sending' AND claimed_at < ? ORDER BY id LIMIT ?`, cutoff, limit).Scan(&stale).Error; err != nil {
		return 0, fmt.Errorf("dispatch: recover: %w", err)
	}
	if len(stale) == 0 {
		return 0, nil
	}
	byChannel := map[string][]int64{}
	for _, c := range stale {
		byChannel[c.Channel] = append(byChannel[c.Channel], c.ID)
	}
	accepted := map[int64]string{}
	provider := map[string]string{}
	for name, ids := range byChannel {
		ch := d.channels[name]
		rec, ok := ch.(Reconciler)
		if !ok {
			continue
		}
		got, err := rec.Accepted(ctx, ids)
		if err != nil {
			d.log.WarnContext(ctx, "dispatch: cannot ask the channel what it accepted; sending again", "channel", name, "error", err)
			continue
		}
		provider[name] = ch.Name()
		for id, pm := range got {
			accepted[id] = pm
		}
	}
	outs := make([]outcome, len(stale))
	for i, c := range stale {
		o := outcome{id: c.ID, attempts: c.Attempts}
		switch pm, ok := accepted[c.ID]; {
		case ok:
			o.status, o.provider, o.providerMessageID, o.sentTime = StatusSent, provider[c.Channel], pm, now.UnixMilli()
			o.reason = "the worker stopped while sending; the provider had accepted it"
		case c.Attempts >= d.cfg.MaxAttempts:
			o.status = StatusFailed
			o.reason = "outcome of the last attempt unknown: the worker stopped while sending and dispatch.maxAttempts is reached"
		default:
			o.status, o.nextAttemptAt = StatusPending, now.UnixMilli()
			o.reason = "the worker stopped while sending; attempt outcome unknown, sending again"
		}
		outs[i] = o
	}
	if err := d.record(ctx, outs); err != nil {
		return 0, err
	}
	return int64(len(stale)), nil
}

// claimed is a delivery a worker owns until it records the outcome. Its
// (ID, Attempts) pair is the claim: the outcome is written only if the row
// is still in sending with that attempt count.
type claimed struct {
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
	handedAt       int64  // when the intake handed it off (handoff.go); 0 if claimed
	// rc is Recipient decoded, when the intake handed the delivery off
	// with the value it planned it from: no need to decode it again.
	rc *Recipient
}

// RunOnce takes one batch, the hand-offs waiting or else a claim of due
// deliveries, sends it and records the outcomes. It returns how many it
// took.
func (d *Dispatcher) RunOnce(ctx context.Context) (int, error) {
	batch := d.takeLocal()
	if len(batch) == 0 {
		var err error
		if batch, err = d.claim(ctx, d.now().UnixMilli()); err != nil || len(batch) == 0 {
			return 0, err
		}
	}
	_, _, err := d.cycle(ctx, batch, false)
	return len(batch), err
}

// cycle sends batch (when batch is empty: the intake's hand-offs, else a
// claim) and records the outcomes. more reports whether more work may be
// ready right now: a full claim (more may be due), or hand-offs waiting.
//
// With claimNext, the statement that records a claimed batch also claims
// the next one, which cycle returns: one statement and one commit per batch
// instead of two, and on PostgreSQL every commit waits for a WAL flush
// (docs/benchmarks.md). A batch of hand-offs is recorded alone, and is not
// followed by a claim, unless Wake has said since the last claim that
// deliveries are pending (those the intake could not hand off, those
// Recover put back): under load nearly every batch is a hand-off, and nearly
// every claim after one found nothing (2,436 empty claims in one
// BenchmarkQueueDrain run, each planned for its arguments). Retries that
// come due later are claimed at the next poll.
func (d *Dispatcher) cycle(ctx context.Context, batch []claimed, claimNext bool) (more bool, next []claimed, err error) {
	handed := false
	if len(batch) == 0 {
		batch = d.takeLocal()
		handed = len(batch) > 0
	}
	if len(batch) == 0 {
		if batch, err = d.claim(ctx, d.now().UnixMilli()); err != nil || len(batch) == 0 {
			return false, nil, err
		}
	}
	full := len(batch) == d.cfg.ClaimBatch
	if full && !handed {
		d.Wake() // more may be due: let another worker claim them meanwhile
	}
	outs, err := d.process(ctx, batch)
	if err != nil {
		return false, nil, err
	}
	if claimNext && d.localLen() == 0 && (!handed || d.due.Load()) {
		next, err = d.recordAndClaim(ctx, outs)
	} else {
		err = d.record(ctx, outs)
	}
	if err != nil {
		// The rows stay in sending; Recover returns them after
		// dispatch.staleSending and they are sent again.
		return false, nil, err
	}
	if d.OnSent != nil {
		for _, o := range outs {
			if o.status == StatusSent {
				d.OnSent(&Delivery{ID: o.id, NotificationID: o.notificationID, CreatedTime: o.createdTime, SentTime: o.sentTime})
			}
		}
	}
	return (full && !handed) || d.localLen() > 0 || d.due.Load(), next, nil
}

func (d *Dispatcher) claim(ctx context.Context, now int64) ([]claimed, error) {
	d.claims.Add(1)
	d.due.Store(false) // before the statement: a Wake during it sets it again
	q, args := d.claimSQL(now, nil)
	var rows []claimed
	if err := d.oneShotQuery(ctx, &rows, q, args); err != nil {
		return nil, fmt.Errorf("dispatch: claim: %w", err)
	}
	return rows, nil
}

// claimSQL is the claim statement: due pending deliveries, oldest first,
// to sending with one more attempt, except the ids in exclude.
func (d *Dispatcher) claimSQL(now int64, exclude []int64) (string, []any) {
	lock := ""
	if d.pg {
		lock = " FOR UPDATE SKIP LOCKED"
	}
	traceParent := "''"
	if d.JoinTraces {
		traceParent = "(SELECT n.trace_parent FROM notifications n WHERE n.id = deliveries.notification_id)"
	}
	args := []any{now, now, now}
	not := ""
	if len(exclude) > 0 {
		// One array parameter (PostgreSQL only, as is this branch), not
		// a list: the statement's text stays the same.
		var b strings.Builder
		b.WriteByte('{')
		for i, id := range exclude {
			if i > 0 {
				b.WriteByte(',')
			}
			b.WriteString(strconv.FormatInt(id, 10))
		}
		b.WriteByte('}')
		not = " AND id <> ALL (CAST(? AS bigint[]))"
		args = append(args, b.String())
	}
	args = append(args, d.cfg.ClaimBatch)
	return `
UPDATE deliveries SET status = 'sending', attempts = attempts + 1, claimed_at = ?, updated_time = ?
WHERE id IN (
  SELECT id FROM deliveries
  WHERE status = 'pending' AND next_attempt_at <= ?` + not + `
  ORDER BY next_attempt_at, id
  LIMIT ?` + lock + `)
RETURNING id, notification_id, collection_id, action_id, recipient_index, channel, recipient, attempts, created_time,
  ` + traceParent + ` AS trace_parent`, args
}

// recordAndClaim records outs and claims the next batch. On PostgreSQL it
// is one statement: the record UPDATE as a data-modifying CTE beside the
// claim UPDATE (both run, in one snapshot, and commit together). The claim
// skips the recorded ids: a row Recover put back to pending may be in both,
// and one statement must not update a row twice. SQLite runs the two
// statements in turn.
func (d *Dispatcher) recordAndClaim(ctx context.Context, outs []outcome) ([]claimed, error) {
	parts := chunks(outs, 500)
	if !d.pg || len(parts) == 0 {
		if err := d.record(ctx, outs); err != nil {
			return nil, err
		}
		return d.claim(ctx, d.now().UnixMilli())
	}
	if err := d.record(ctx, slices.Concat(parts[:len(parts)-1]...)); err != nil {
		return nil, err
	}
	last := parts[len(parts)-1]
	now := d.now().UnixMilli()
	rec, recArgs, err := d.recordSQL(last, now)
	if err != nil {
		return nil, fmt.Errorf("dispatch: record outcomes: %w", err)
	}
	ids := make([]int64, len(last))
	for i, o := range last {
		ids[i] = o.id
	}
	d.claims.Add(1)
	d.due.Store(false)
	cl, clArgs := d.claimSQL(now, ids)
	var rows []claimed
	if err := d.oneShotQuery(ctx, &rows, "WITH recorded AS ("+rec+" RETURNING deliveries.id)"+cl, append(recArgs, clArgs...)); err != nil {
		return nil, fmt.Errorf("dispatch: record outcomes and claim: %w", err)
	}
	return rows, nil
}

// outcome is what happened to one claimed delivery.
type outcome struct {
	id, notificationID int64
	attempts           int
	status             string
	reason             string
	provider           string
	providerMessageID  string
	nextAttemptAt      int64
	sentTime           int64
	createdTime        int64
}

type groupKey struct{ notificationID, actionID int64 }

func (d *Dispatcher) process(ctx context.Context, batch []claimed) ([]outcome, error) {
	ids := map[int64]bool{}
	var refs []actions.Ref
	for _, c := range batch {
		if !ids[c.ActionID] {
			ids[c.ActionID] = true
			refs = append(refs, actions.Ref{CollectionID: c.CollectionID, ID: c.ActionID})
		}
	}
	acts, err := d.actions.ForSend(ctx, refs)
	if err != nil {
		// Leave the batch in sending; nothing was sent.
		return nil, d.release(ctx, batch, err)
	}
	byID := make(map[int64]*actions.Action, len(acts))
	for i := range acts {
		byID[acts[i].ID] = &acts[i]
	}

	outs := make([]outcome, len(batch))
	var order []groupKey
	groups := map[groupKey][]int{}
	for i, c := range batch {
		outs[i] = outcome{id: c.ID, notificationID: c.NotificationID, attempts: c.Attempts, createdTime: c.CreatedTime}
		k := groupKey{c.NotificationID, c.ActionID}
		if groups[k] == nil {
			order = append(order, k)
		}
		groups[k] = append(groups[k], i)
	}
	sem := make(chan struct{}, 64)
	var wg sync.WaitGroup
	for _, k := range order {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			d.sendGroup(ctx, byID[k.actionID], batch, groups[k], outs)
		})
	}
	wg.Wait()
	return outs, nil
}

// release puts a batch back to pending when it could not even be prepared.
func (d *Dispatcher) release(ctx context.Context, batch []claimed, cause error) error {
	outs := make([]outcome, len(batch))
	now := d.now().UnixMilli()
	for i, c := range batch {
		outs[i] = outcome{id: c.ID, attempts: c.Attempts, status: StatusPending, nextAttemptAt: now + d.cfg.BackoffBase.Milliseconds(),
			reason: "not sent: " + apperr.Truncate(cause.Error(), 500)}
	}
	if err := d.record(ctx, outs); err != nil {
		return errors.Join(cause, err)
	}
	return cause
}

// sendGroup renders and sends the deliveries idx of one (notification,
// action) with one Send call, and fills their outcomes.
func (d *Dispatcher) sendGroup(ctx context.Context, a *actions.Action, batch []claimed, idx []int, outs []outcome) {
	first := batch[idx[0]]
	now := d.now()
	if a == nil {
		for _, i := range idx {
			outs[i].status, outs[i].reason = StatusFailed, fmt.Sprintf("action %d no longer exists", first.ActionID)
		}
		return
	}
	ch := d.channels[first.Channel]
	if ch == nil {
		for _, i := range idx {
			outs[i].status, outs[i].reason = StatusFailed, fmt.Sprintf("no provider is configured for channel %q", first.Channel)
		}
		return
	}
	msgs := make([]channels.Message, 0, len(idx))
	send := make([]int, 0, len(idx))
	for _, i := range idx {
		c := batch[i]
		rc := c.rc
		if rc == nil {
			rc = new(Recipient)
			if err := json.Unmarshal([]byte(c.Recipient), rc); err != nil {
				outs[i].status, outs[i].reason = StatusFailed, "stored recipient is unreadable: "+err.Error()
				continue
			}
		}
		m, err := d.render(a, *rc)
		if err != nil {
			outs[i].status, outs[i].reason = StatusFailed, "render: "+err.Error()
			continue
		}
		m.DeliveryID, m.NotificationID, m.CollectionID, m.ActionID, m.Channel = c.ID, c.NotificationID, c.CollectionID, c.ActionID, c.Channel
		msgs = append(msgs, m)
		send = append(send, i)
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
			o.status, o.providerMessageID, o.sentTime = StatusSent, res.ProviderMessageID, done
			continue
		}
		d.retry(o, channels.Classify(provider, res.Err), now)
	}
}

// retry decides what a failed attempt leads to: failed (permanent error, or
// out of attempts) or pending again after a backoff.
func (d *Dispatcher) retry(o *outcome, e *channels.Error, now time.Time) {
	reason := apperr.Truncate(e.Reason, 1000)
	switch {
	case e.Permanent:
		o.status, o.reason = StatusFailed, reason
	case o.attempts >= d.cfg.MaxAttempts:
		o.status, o.reason = StatusFailed, fmt.Sprintf("gave up after %d attempts: %s", o.attempts, reason)
	default:
		wait := Backoff(o.attempts, d.cfg.BackoffBase, d.cfg.BackoffMax, rand.Float64())
		wait = max(wait, e.RetryAfter)
		o.status = StatusPending
		o.reason = fmt.Sprintf("attempt %d failed: %s", o.attempts, reason)
		o.nextAttemptAt = now.Add(wait).UnixMilli()
	}
}

// Backoff is the wait after attempt n (1-based) fails: base·2^(n-1), capped
// at maxWait, with "equal jitter" (between half and all of it; r in [0,1)),
// so retries of a burst spread out but never come sooner than half the
// schedule.
func Backoff(n int, base, maxWait time.Duration, r float64) time.Duration {
	d := base
	for i := 1; i < n && d < maxWait; i++ {
		d *= 2
	}
	d = min(d, maxWait)
	return d/2 + time.Duration(r*float64(d/2))
}

// record writes the outcomes of one batch in one statement per 500.
func (d *Dispatcher) record(ctx context.Context, outs []outcome) error {
	now := d.now().UnixMilli()
	for _, chunk := range chunks(outs, 500) {
		q, args, err := d.recordSQL(chunk, now)
		if err != nil {
			return fmt.Errorf("dispatch: record outcomes: %w", err)
		}
		if err := d.oneShotExec(ctx, q, args); err != nil {
			return fmt.Errorf("dispatch: record outcomes: %w", err)
		}
	}
	return nil
}

// recordColumns are the fields of one outcome in recordSQL's parameter.
var recordColumns = store.Columns(
	"id bigint", "attempts integer", "status text", "reason text", "provider text", "pmid text",
	"next_at bigint", "sent_time bigint",
)

type recordRow struct {
	ID       int64  `json:"id"`
	Attempts int    `json:"attempts"`
	Status   string `json:"status"`
	Reason   string `json:"reason"`
	Provider string `json:"provider"`
	PMID     string `json:"pmid"`
	NextAt   int64  `json:"next_at"`
	SentTime int64  `json:"sent_time"`
}

// recordSQL is the UPDATE that writes outs (not empty). The outcomes are
// one JSON parameter, so the statement's text is the same for every batch.
func (d *Dispatcher) recordSQL(outs []outcome, now int64) (string, []any, error) {
	rows := make([]recordRow, len(outs))
	for i, o := range outs {
		rows[i] = recordRow{o.id, o.attempts, o.status, o.reason, o.provider, o.providerMessageID, o.nextAttemptAt, o.sentTime}
	}
	doc, err := json.Marshal(rows)
	if err != nil {
		return "", nil, err
	}
	sel, from := store.JSONRows(d.pg, recordColumns)
	// The claim is (id, attempts). A row Recover put back to pending but
	// nobody claimed again still takes this outcome (so a slow send is
	// not repeated); a row claimed again has more attempts and is left
	// to its new owner.
	q := "UPDATE deliveries SET status = v.status, reason = v.reason, provider = v.provider, " +
		"provider_message_id = COALESCE(NULLIF(v.pmid, ''), deliveries.provider_message_id), next_attempt_at = v.next_at, " +
		"sent_time = v.sent_time, updated_time = ? FROM (SELECT " + sel + " FROM " + from + ") AS v " +
		"WHERE deliveries.id = v.id AND deliveries.status IN ('sending', 'pending') AND deliveries.attempts = v.attempts"
	return q, []any{now, string(doc)}, nil
}

// render builds the provider message for recipient rc from action a: the
// content for the recipient's locale, with macros substituted (HTML-escaped
// in HTML bodies) under the action's missing-macro policy.
func (d *Dispatcher) render(a *actions.Action, rc Recipient) (channels.Message, error) {
	c := a.Config.ContentFor(rc.Locale)
	policy := a.Config.MissingMacro
	vars := map[string]string(rc.Macros)
	var m channels.Message
	var errs []error
	r := func(tmpl string, mode macros.Mode) string {
		if tmpl == "" {
			return ""
		}
		out, err := macros.Render(tmpl, vars, mode, policy)
		if err != nil {
			errs = append(errs, err)
		}
		return out
	}
	switch a.Channel() {
	case actions.ChannelEmail:
		// a's sender is its config's, or its collection's default
		// (ActionSource.ForSend); the service's default comes last.
		m.From = d.senders.Email
		if a.Config.FromEmail != "" {
			m.From = channels.Address{Email: a.Config.FromEmail, Name: a.Config.FromName}
		}
		for _, t := range rc.To() {
			m.To = append(m.To, channels.Address(t))
		}
		for _, t := range rc.Ccs {
			m.Cc = append(m.Cc, channels.Address(t))
		}
		for _, t := range rc.Bccs {
			m.Bcc = append(m.Bcc, channels.Address(t))
		}
		m.Subject = r(c.Subject, macros.Text)
		if a.Template != "" {
			m.TemplateID = a.Template
			m.DynamicData = vars
		}
		m.HTML = r(c.HTML, macros.HTML)
		m.Text = r(c.Text, macros.Text)
		if m.Text == "" && c.Body != "" {
			m.Text = r(c.Body, macros.Text)
		}
		if len(errs) > 0 {
			return m, errs[0]
		}
		if m.TemplateID == "" && m.HTML == "" && m.Text == "" {
			return m, errors.New("the action has neither a template nor content for this email")
		}
	case actions.ChannelSMS:
		m.Phone = rc.Phone
		m.SMSFrom, m.MessagingServiceSID = d.senders.SMSFrom, d.senders.MessagingServiceSID
		if a.Config.From != "" || a.Config.MessagingServiceSID != "" {
			m.SMSFrom, m.MessagingServiceSID = a.Config.From, a.Config.MessagingServiceSID
		}
		body := c.Body
		if body == "" {
			body = c.Text
		}
		m.Body = r(body, macros.Text)
		if len(errs) > 0 {
			return m, errs[0]
		}
		if m.Body == "" {
			return m, errors.New("the action has no SMS body")
		}
	case actions.ChannelPush:
		m.PushToken = rc.PushID
		m.Title = r(c.Title, macros.Text)
		m.Body = r(c.Body, macros.Text)
		if len(c.Data) > 0 {
			m.Data = make(map[string]string, len(c.Data))
			for k, v := range c.Data {
				m.Data[k] = r(v, macros.Text)
			}
		}
		if len(errs) > 0 {
			return m, errs[0]
		}
	default:
		return m, fmt.Errorf("unknown configName %q", a.ConfigName)
	}
	return m, nil
}
