// Package groupcommit coalesces concurrent requests into one call of a
// batch function, so one transaction (one WAL flush at COMMIT) serves many
// requests: under load the commit, not the work, is what a request per
// transaction waits on. The REST send (dispatch/intake) and the provider
// status callbacks (dispatch/status) commit through it.
package groupcommit

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
)

// Group coalesces concurrent Do calls into one call of its flush function.
// The first request of a group leads it: it waits up to wait for others,
// or until most have joined, then flushes them all and hands each its own
// result, or the batch's error to every one.
//
// Two things keep the wait from costing more than it gains:
//
//   - A request that comes after a quiet spell (none for longer than wait)
//     does not wait: the gap since the last request is the best guess of
//     the next one's, and waiting for nobody only added wait to every
//     request of a server that is not busy (and to the REST send's p50 at
//     1,000 req/s).
//   - At most inflight batches are submitting at once. A group whose
//     leader finds them all busy keeps taking members until one finishes,
//     so under load batches grow instead of transactions multiplying:
//     unbounded, every window started one more transaction, which took a
//     pool connection from the delivery workers (the pool ran out at
//     1,000 req/s on a loaded machine, and the latency with it) and made
//     PostgreSQL's two cores switch between more of them.
type Group[In, Out any] struct {
	flush func(context.Context, []In) ([]Out, error)
	wait  time.Duration
	most  int // members a batch takes at most
	now   func() time.Time
	slots chan struct{} // one per batch submitting: its capacity is inflight

	mu   sync.Mutex
	open *group[In, Out] // the group taking members, nil when none is
	last time.Time       // when the last request arrived
}

// New returns a Group that calls flush with the requests of each batch, in
// the order they came, and expects one result per request back, in that
// order. A request waits at most wait for others to join it (not at all
// after a quiet spell longer than wait), a batch takes at most most, and
// at most inflight batches flush at once (while they do, the next batch
// keeps taking members). now is the clock the quiet spell is read on.
//
// flush runs on the leader's ctx without its cancellation: the other
// members wait on it, so no one caller's disconnect may stop it. An error
// it returns must mean nothing of the batch was done (each member gets it).
func New[In, Out any](flush func(context.Context, []In) ([]Out, error), wait time.Duration, most, inflight int, now func() time.Time) *Group[In, Out] {
	if now == nil {
		now = time.Now
	}
	// The clock starts as if a request had just come: the first after
	// start does not count as after a quiet spell, so a burst at start is
	// batched like any other.
	return &Group[In, Out]{flush: flush, wait: wait, most: max(most, 1), now: now, slots: make(chan struct{}, max(inflight, 1)), last: now()}
}

// group is one batch of requests and, once done is closed, their results.
type group[In, Out any] struct {
	ins  []In
	ctxs []context.Context // each member's request ctx
	full chan struct{}     // closed when most members joined
	done chan struct{}     // closed when outs and err are set
	outs []Out             // by member
	errs []error           // by member
}

// ErrAborted is what the members of a group get whose leader stopped
// before the batch's result was known (a panic in flush).
var ErrAborted = errors.New("groupcommit: the batch did not complete")

// Do adds in to the open group, or to a new one it leads, and returns its
// result once the group's flush has returned. A ctx that ends before its
// group is flushed leaves it (ctx.Err()); one that ends later is flushed
// all the same, and its result is lost to it.
func (g *Group[In, Out]) Do(ctx context.Context, in In) (Out, error) {
	now := g.now()
	g.mu.Lock()
	grp, lead, quiet := g.open, false, false
	if grp == nil {
		grp = &group[In, Out]{full: make(chan struct{}), done: make(chan struct{})}
		g.open, lead = grp, true
		quiet = now.Sub(g.last) > g.wait
	}
	g.last = now
	i := len(grp.ins)
	grp.ins, grp.ctxs = append(grp.ins, in), append(grp.ctxs, ctx)
	if len(grp.ins) >= g.most {
		g.open = nil
		close(grp.full)
	}
	g.mu.Unlock()
	if lead {
		g.lead(ctx, grp, quiet)
		return grp.outs[i], grp.errs[i]
	}
	select {
	case <-grp.done:
		return grp.outs[i], grp.errs[i]
	case <-ctx.Done():
		// Gone before the batch was taken: the leader drops it. Gone after:
		// the batch commits it all the same (flush does not take a
		// caller's cancellation), and no one is left to answer.
		var zero Out
		return zero, ctx.Err()
	}
}

// lead waits for the group to fill or for wait to pass (not at all after
// a quiet spell), then for a free slot, then takes the group and flushes
// the members whose clients are still there. The leader's own
// cancellation does not stop it: the others wait on it.
func (g *Group[In, Out]) lead(ctx context.Context, grp *group[In, Out], quiet bool) {
	if !quiet {
		t := time.NewTimer(g.wait)
		select {
		case <-grp.full:
		case <-t.C:
		}
		t.Stop()
	}
	// Until a slot is free the group stays open: whoever comes meanwhile
	// joins this batch rather than start one more.
	g.slots <- struct{}{}
	defer func() { <-g.slots }()
	g.mu.Lock()
	if g.open == grp {
		g.open = nil
	}
	ins, ctxs := grp.ins, grp.ctxs // no one joins a taken group
	g.mu.Unlock()

	grp.outs, grp.errs = make([]Out, len(ins)), make([]error, len(ins))
	defer close(grp.done)
	var kept []In
	var idx []int
	for i, c := range ctxs {
		if err := c.Err(); err != nil {
			grp.errs[i] = err
			continue
		}
		kept, idx = append(kept, ins[i]), append(idx, i)
	}
	if len(kept) == 0 {
		return
	}
	for _, i := range idx {
		grp.errs[i] = ErrAborted // until flush returns
	}
	outs, err := g.flush(context.WithoutCancel(ctx), kept)
	if err == nil && len(outs) != len(kept) {
		err = fmt.Errorf("groupcommit: %d results for a batch of %d", len(outs), len(kept))
	}
	for j, i := range idx {
		if err != nil {
			grp.errs[i] = err
			continue
		}
		grp.outs[i], grp.errs[i] = outs[j], nil
	}
}
