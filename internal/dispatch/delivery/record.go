package delivery

import (
	"context"
	"sync"
	"time"

	"github.com/notificationservice/notificationservice/internal/dispatch"
	"github.com/notificationservice/notificationservice/internal/retry"
)

// recorder writes outcomes as the provider calls return, grouped by time
// rather than by claim batch: an outcome waits at most
// dispatch.recordInterval (or until dispatch.recordBatch are waiting) and is
// then written with every other outcome waiting, from any worker, in one
// statement. A crash then leaves in doubt (sent, not recorded) only the
// outcomes of that last interval and the provider calls still in flight,
// where recording per claim batch left every finished send of every batch
// still being sent (docs/queue.md). One writer, so under load one commit
// carries the outcomes of all the workers.
type recorder struct {
	d    *Dispatcher
	kick chan struct{} // an outcome arrived (capacity 1)
	stop chan struct{} // closed by Run when the workers have stopped
	done chan struct{} // closed when the writer has written everything

	mu      sync.Mutex
	taken   *sync.Cond // the writer finished a statement, or stopped
	running bool
	buf     []outcome
	spare   []outcome // the last written buf, emptied: the next buf, so it does not grow from nothing each time
	since   time.Time // when the oldest outcome in buf arrived
	// unrecorded counts the deliveries reserved for sending and not yet
	// written: in a provider call, waiting, or in the statement being
	// written. reserve keeps it within dispatch.recordBatch.
	unrecorded int
	// exact counts the same for channels that reconcile exactly
	// (channels.ExactReconciler), which the in-doubt bound does not
	// concern; reserve keeps it within ExactBacklog × recordBatch, so
	// outcomes cannot pile up faster than they are written.
	exact int
}

// ExactBacklog bounds, in dispatch.recordBatch, the deliveries sent through
// exactly reconciling channels and not yet recorded. It is not an in-doubt
// bound (a crash leaves none of them in doubt) but back-pressure: the
// workers stop sending when the recorder falls this far behind. Two
// batches (512 by default) are as many as the eight workers' claims (64
// each) in flight and waiting for their record together; the in-doubt
// bound of one batch held the default configuration's drain back by about
// a tenth on two cores. Four let more sends run at once against the intake
// for the same two cores: in six alternated pairs of the binary harness,
// two gave a lower enqueue→sent p50 in every pair and a lower p99 in five,
// with no loss of drain (docs/benchmarks.md, issue 17).
const ExactBacklog = 2

func newRecorder(d *Dispatcher) *recorder {
	r := &recorder{d: d, kick: make(chan struct{}, 1)}
	r.taken = sync.NewCond(&r.mu)
	return r
}

// reserve waits until n more deliveries may be sent: while a running
// writer has dispatch.recordBatch deliveries unrecorded (being sent, or sent
// and waiting to be written) no worker starts another provider call. That
// is the bound on what a crash leaves in doubt: whatever the backlog, at
// most one record group (recordBatch deliveries; a single group larger than
// that goes alone) can have reached the provider without its outcome being
// written. The gate is before the send, not after it: a send that already
// happened is in doubt whether or not its outcome is queued.
//
// How long it waited goes to Dispatcher.OnRecordWait: an operator cannot
// otherwise tell a drain held back by this bound from one held back by the
// CPU or the database (issue 17: on a slow machine it cost the drain a
// sixth to a third).
//
// A group sent through a channel that reconciles exactly (exact) counts
// against ExactBacklog instead, apart from the others: recovery asks such
// a channel and gets the exact answer, so its sends need no in-doubt bound,
// and they do not take the bounded channels' room either.
func (r *recorder) reserve(n int, exact bool) {
	r.mu.Lock()
	var began time.Time
	count, limit := &r.unrecorded, r.d.cfg.RecordBatch
	if exact {
		count, limit = &r.exact, ExactBacklog*r.d.cfg.RecordBatch
	}
	for r.running && *count > 0 && *count+n > limit {
		if began.IsZero() {
			began = time.Now()
		}
		r.taken.Wait()
	}
	if r.running {
		*count += n
	}
	r.mu.Unlock()
	if !began.IsZero() && r.d.OnRecordWait != nil {
		r.d.OnRecordWait(time.Since(began))
	}
}

// add queues outs (reserved with reserve) for the writer. Without a
// running writer (RunOnce alone, tests) it writes them at once.
func (r *recorder) add(ctx context.Context, outs []outcome) {
	if len(outs) == 0 {
		return
	}
	r.mu.Lock()
	if !r.running {
		r.mu.Unlock()
		r.d.write(ctx, outs)
		return
	}
	if len(r.buf) == 0 {
		r.since = time.Now()
		if r.buf == nil {
			r.buf, r.spare = r.spare, nil
		}
	}
	r.buf = append(r.buf, outs...)
	r.mu.Unlock()
	select {
	case r.kick <- struct{}{}:
	default:
	}
}

// start runs the writer until finish is called.
func (r *recorder) start(ctx context.Context) {
	r.mu.Lock()
	r.running, r.unrecorded, r.exact = true, 0, 0
	r.stop, r.done = make(chan struct{}), make(chan struct{})
	r.mu.Unlock()
	go r.run(ctx)
}

// finish writes what is waiting and stops the writer; later outcomes are
// written at once by add.
func (r *recorder) finish() {
	close(r.stop)
	<-r.done
}

func (r *recorder) run(ctx context.Context) {
	defer close(r.done)
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	for {
		stopping := false
		select {
		case <-r.kick:
		case <-r.stop:
			stopping = true
		}
		// Wait out the interval from the oldest outcome's arrival, unless
		// a statement's worth is waiting: outcomes that arrived during the
		// last write have often waited long enough already.
		for !stopping {
			r.mu.Lock()
			n, wait := len(r.buf), r.d.cfg.RecordInterval-time.Since(r.since)
			r.mu.Unlock()
			if n == 0 || n >= r.d.cfg.RecordBatch || wait <= 0 {
				break
			}
			// Since Go 1.23 a stopped timer delivers no stale value, and
			// draining one that fired unseen would block: Stop only.
			timer.Reset(wait)
			select {
			case <-timer.C:
			case <-r.kick:
				timer.Stop()
			case <-r.stop:
				stopping = true
				timer.Stop()
			}
		}
		r.mu.Lock()
		if stopping {
			r.running = false
		}
		buf := r.buf
		r.buf = nil
		r.mu.Unlock()
		if len(buf) > 0 {
			r.d.write(context.WithoutCancel(ctx), buf)
		}
		exact := 0
		for i := range buf {
			if buf[i].exact {
				exact++
			}
		}
		r.mu.Lock()
		r.unrecorded = max(r.unrecorded-(len(buf)-exact), 0)
		r.exact = max(r.exact-exact, 0)
		// write is done with buf (held.remove, OnSent and suppress copy
		// what they keep): cleared, so it holds no strings alive, and
		// kept for the next outcomes.
		clear(buf)
		r.spare = buf[:0]
		if stopping {
			r.unrecorded, r.exact = 0, 0
		}
		r.taken.Broadcast()
		r.mu.Unlock()
		if stopping {
			return
		}
	}
}

// recordRetry bounds how long a write of outcomes is retried. Meanwhile
// their deliveries stay held and their leases renewed (a database that
// refuses writes usually refuses the renewals too, and then the leases
// expire anyway); after it they are left to Recover.
const recordRetry = 30 * time.Second

// write records outs (this instance's), retrying a failed statement for up
// to recordRetry, then forgets their deliveries: recorded, or left in
// sending for Recover once their lease expires. It reports sent deliveries
// to OnSent.
func (d *Dispatcher) write(ctx context.Context, outs []outcome) {
	defer d.held.remove(outs)
	if outs = d.leaveInDoubt(ctx, outs); len(outs) == 0 {
		return
	}
	var lastErr error
	failures := 0
	// From 50 ms doubling to 2 s, without jitter (one writer per instance:
	// nothing to spread); it gives up rather than start a wait that would
	// end past recordRetry.
	policy := retry.Policy{Initial: 50 * time.Millisecond, Max: 2 * time.Second, NoJitter: true, MaxElapsed: recordRetry}
	err := policy.Do(ctx, func() error {
		lastErr = d.record(ctx, outs)
		if lastErr != nil {
			failures++
			if d.Outage != nil {
				d.Outage.Observe(lastErr) // /readyz: the workers cannot write
			}
		}
		return lastErr
	}, func(err error, _ time.Duration) {
		if failures == 1 {
			d.log.WarnContext(ctx, "dispatch: cannot record outcomes; retrying", "count", len(outs), "error", err)
		}
	})
	if err != nil {
		d.log.WarnContext(ctx, "dispatch: cannot record outcomes; their deliveries stay in sending until their lease expires and Recover takes them",
			"count", len(outs), "error", lastErr, "failures", failures)
		return
	}
	d.suppress(ctx, outs)
	if d.OnSent != nil {
		for _, o := range outs {
			if o.status == dispatch.StatusSent {
				d.OnSent(&dispatch.Delivery{ID: o.id, NotificationID: o.notificationID, CreatedTime: o.createdTime, SentTime: o.sentTime})
			}
		}
	}
}

// leaveInDoubt returns outs without the sends whose answer was lost
// (outcome.inDoubt). Writing any outcome for one would be a guess:
// "retry" sends it twice if the provider had accepted it, "sent" loses it
// if not. Its delivery stays in sending and, no longer held, its lease is
// not renewed: Recover takes it once the lease expires (about
// 1–1.25 × dispatch.lease later), asks the provider if it can be asked,
// and otherwise applies the action's config.inDoubt, as after a crash.
func (d *Dispatcher) leaveInDoubt(ctx context.Context, outs []outcome) []outcome {
	n := 0
	for i := range outs {
		if outs[i].inDoubt {
			n++
		}
	}
	if n == 0 {
		return outs
	}
	kept := make([]outcome, 0, len(outs)-n)
	var first *outcome
	for i := range outs {
		if !outs[i].inDoubt {
			kept = append(kept, outs[i])
		} else if first == nil {
			first = &outs[i]
		}
	}
	d.log.WarnContext(ctx, "dispatch: the provider's answer was lost; left in sending for recovery to ask the provider",
		"count", n, "deliveryId", first.id, "error", first.reason)
	return kept
}

// Suppressor puts addresses on their collection's suppression list
// (internal/suppressions, wired in app). It must be idempotent: an entry
// already there is kept.
type Suppressor interface {
	Suppress(ctx context.Context, entries []dispatch.Suppression) (int, error)
}

// WithSuppressor makes the workers put the addresses a provider refused
// for good (Twilio 21610: the recipient replied STOP) on the suppression
// list through s, and returns d. Call it before Run.
func (d *Dispatcher) WithSuppressor(s Suppressor) *Dispatcher {
	d.suppressor = s
	return d
}

// suppress writes the suppressions outs carry, after their outcomes: the
// record statement is one UPDATE on the deliveries, and the list's write
// records envelopes in a transaction of its own. It is retried as the
// record is (up to recordRetry); if it still fails, the entries are
// dropped with a warning: the delivery is recorded as failed with the
// provider's reason, and the next send to the address fails the same way
// and suppresses it then.
func (d *Dispatcher) suppress(ctx context.Context, outs []outcome) {
	if d.suppressor == nil {
		return
	}
	var entries []dispatch.Suppression
	for _, o := range outs {
		if o.suppress != nil {
			entries = append(entries, *o.suppress)
		}
	}
	if len(entries) == 0 {
		return
	}
	policy := retry.Policy{Initial: 50 * time.Millisecond, Max: 2 * time.Second, NoJitter: true, MaxElapsed: recordRetry}
	var lastErr error
	err := policy.Do(ctx, func() error {
		_, lastErr = d.suppressor.Suppress(ctx, entries)
		return lastErr
	}, nil)
	if err != nil {
		d.log.WarnContext(ctx, "dispatch: cannot write suppressions; the next send to these addresses fails and suppresses them again",
			"count", len(entries), "error", lastErr)
	}
}
