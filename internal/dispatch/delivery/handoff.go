package delivery

import (
	"context"
	"sync"
	"time"

	"github.com/notificationservice/notificationservice/internal/dispatch"
)

// The intake inserts some of a batch's deliveries already claimed (sending,
// attempt 1) and hands them to this instance's workers after the commit, so
// a fresh delivery costs no claim statement and no wait for a worker's poll:
// on PostgreSQL the claim UPDATE was a quarter of the database time per
// delivery (docs/benchmarks.md). Deliveries the local workers have no room
// for are inserted pending and claimed as before, by any instance.
// *Dispatcher's Reserve, Release, Hand, Lease and Wake are the intake's
// intake.Local.

// local is the queue of handed-off deliveries. Their leases are renewed
// while they wait, like those of claimed ones; its capacity bounds how long
// one waits for a worker, and how many a crash leaves in sending until
// their leases expire.
type local struct {
	mu       sync.Mutex
	items    []Claimed
	reserved int
	capacity int
	running  bool // Run has started the workers: only then are hand-offs taken
	closed   bool
	// freed, when not nil, is closed by the next take: AwaitRoom's
	// waiters (several consumers may wait at once) then look again.
	freed chan struct{}
}

// handOffFactor sizes the hand-off queue: handOffFactor × workers ×
// claimBatch (2,048 by default). The queue intake waits until it is at most
// half full (AwaitRoom), so that half must hold a whole intake batch's
// deliveries (128 messages of three actions: 384) with the workers still
// busy on the other half while the batch commits. At workers × claimBatch a
// batch either went pending in part, or, when the consumer waited for room,
// the queue ran dry during each commit (docs/benchmarks.md).
const handOffFactor = 4

// AwaitRoom returns once the hand-off queue is at most half full, or after
// the configured dispatch.handOffWait, or when ctx ends. The queue intake
// calls it before a batch: a delivery that fits is handed off, while one
// stored pending costs a claim statement later, the most expensive write
// per delivery on PostgreSQL. Meanwhile the batch's messages wait in the
// broker, which gives them to other instances' consumers: the queue, not
// this instance's table, holds the backlog. Without running workers it
// returns at once.
func (d *Dispatcher) AwaitRoom(ctx context.Context) {
	if d.cfg.HandOffWait <= 0 {
		return
	}
	var timeout <-chan time.Time
	l := &d.local
	for {
		l.mu.Lock()
		if !l.running || l.closed || l.capacity-len(l.items)-l.reserved >= l.capacity/2 {
			l.mu.Unlock()
			return
		}
		if l.freed == nil {
			l.freed = make(chan struct{})
		}
		freed := l.freed
		l.mu.Unlock()
		if timeout == nil {
			t := time.NewTimer(d.cfg.HandOffWait)
			defer t.Stop()
			timeout = t.C
		}
		select {
		case <-freed:
		case <-timeout:
			return
		case <-ctx.Done():
			return
		}
	}
}

// Reserve returns how many of n deliveries the workers can take now (0 to
// n); the caller inserts that many claimed and then calls Hand with them
// after the commit, or Release if the commit failed.
func (d *Dispatcher) Reserve(n int) int {
	d.local.mu.Lock()
	defer d.local.mu.Unlock()
	if !d.local.running || d.local.closed {
		return 0
	}
	k := max(min(n, d.local.capacity-len(d.local.items)-d.local.reserved), 0)
	d.local.reserved += k
	return k
}

// Release gives back n reserved places whose commit failed.
func (d *Dispatcher) Release(n int) {
	d.local.mu.Lock()
	d.local.reserved -= n
	d.local.mu.Unlock()
}

// Hand queues batch for the workers and wakes as many
// as it fills claim batches. After the Dispatcher stopped it puts batch back
// to pending instead.
func (d *Dispatcher) Hand(batch []Claimed) {
	d.held.add(batch)
	d.local.mu.Lock()
	d.local.reserved -= len(batch)
	closed := d.local.closed
	if !closed {
		d.local.items = append(d.local.items, batch...)
	}
	d.local.mu.Unlock()
	if closed {
		d.requeue(batch, "accepted while the dispatcher was stopping; back to the queue")
		return
	}
	for range (len(batch) + d.cfg.ClaimBatch - 1) / d.cfg.ClaimBatch {
		d.signal() // not Wake: hand-offs make nothing due in the table
	}
}

// Return takes back batch, reserved and inserted claimed by a transaction
// whose COMMIT failed, so whether the rows exist is unknown: it releases
// their places, puts those that were stored back to pending, due now (the
// write is fenced by this instance's lease, so rows that were never
// committed are not touched), and wakes a worker to claim them. Without it
// a committed delivery would wait in sending until its lease expired.
func (d *Dispatcher) Return(batch []Claimed) {
	d.Release(len(batch))
	d.requeue(batch, "the intake's commit reported an error; back to the queue")
	d.Wake()
}

// takeLocal returns up to one claim batch of handed-off deliveries. One
// whose lease lapsed while it waited is not sent (sendGroup).
func (d *Dispatcher) takeLocal() []Claimed {
	d.local.mu.Lock()
	k := min(d.cfg.ClaimBatch, len(d.local.items))
	if k == 0 {
		d.local.mu.Unlock()
		return nil
	}
	batch := make([]Claimed, k)
	copy(batch, d.local.items)
	d.local.items = append(d.local.items[:0], d.local.items[k:]...)
	if d.local.freed != nil {
		close(d.local.freed)
		d.local.freed = nil
	}
	d.local.mu.Unlock()
	return batch
}

func (d *Dispatcher) localLen() int {
	d.local.mu.Lock()
	defer d.local.mu.Unlock()
	return len(d.local.items)
}

func (d *Dispatcher) openLocal() {
	d.local.mu.Lock()
	d.local.running = true
	d.local.mu.Unlock()
}

// closeLocal stops hand-offs and puts what is still queued back to pending
// (Run calls it when the workers have stopped).
func (d *Dispatcher) closeLocal() {
	d.local.mu.Lock()
	d.local.closed = true
	left := d.local.items
	d.local.items = nil
	if d.local.freed != nil {
		close(d.local.freed)
		d.local.freed = nil
	}
	d.local.mu.Unlock()
	if len(left) > 0 {
		d.requeue(left, "not sent before shutdown; back to the queue")
	}
}

// requeue puts claimed deliveries back to pending, due now, with reason. If
// that fails they stay in sending and Recover returns them when their lease
// expires.
func (d *Dispatcher) requeue(batch []Claimed, reason string) {
	now := d.now().UnixMilli()
	outs := make([]outcome, len(batch))
	for i, c := range batch {
		outs[i] = outcome{id: c.ID, attempts: c.Attempts, status: dispatch.StatusPending, nextAttemptAt: now, reason: reason}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	defer d.held.remove(outs)
	if err := d.record(ctx, outs); err != nil {
		d.log.WarnContext(ctx, "dispatch: cannot put deliveries back to pending; Recover will when their lease expires", "count", len(batch), "error", err)
	}
}
