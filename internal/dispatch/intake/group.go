package intake

import (
	"context"
	"errors"
	"sync"
	"time"
)

// groupCommit coalesces concurrent Sends into one Submit, so one
// transaction (one WAL flush at COMMIT) serves many REST requests: under
// load the commit, not the work, is what a request per transaction waits
// on. The first request of a group leads it: it waits up to wait for
// others, or until most have joined, then submits them all and hands each
// its own Outcome, or the batch's error to every one.
//
// Two things keep the wait from costing more than it gains:
//
//   - A send that comes after a quiet spell (no send for longer than wait)
//     does not wait: the gap since the last send is the best guess of the
//     next one's, and waiting for nobody only added wait to every request
//     of a server that is not busy (and to its p50 at 1,000 req/s).
//   - At most inflight batches are submitting at once. A group whose
//     leader finds them all busy keeps taking members until one finishes,
//     so under load batches grow instead of transactions multiplying:
//     unbounded, every window started one more transaction, which took a
//     pool connection from the delivery workers (the pool ran out at
//     1,000 req/s on a loaded machine, and the latency with it) and made
//     PostgreSQL's two cores switch between more of them.
type groupCommit struct {
	submit func(context.Context, []Submission) ([]Outcome, error)
	wait   time.Duration
	most   int // members a batch takes at most
	now    func() time.Time
	slots  chan struct{} // one per batch submitting: its capacity is inflight

	mu   sync.Mutex
	open *group    // the group taking members, nil when none is
	last time.Time // when the last send arrived
}

func newGroupCommit(submit func(context.Context, []Submission) ([]Outcome, error), wait time.Duration, most, inflight int, now func() time.Time) *groupCommit {
	// The clock starts as if a send had just come: the first send after
	// start does not count as after a quiet spell, so a burst at start is
	// batched like any other.
	return &groupCommit{submit: submit, wait: wait, most: most, now: now, slots: make(chan struct{}, max(inflight, 1)), last: now()}
}

// group is one batch of Sends and, once done is closed, their results.
type group struct {
	subs []Submission
	ctxs []context.Context // each member's request ctx
	full chan struct{}     // closed when most members joined
	done chan struct{}     // closed when outs and err are set
	outs []Outcome         // by member
	errs []error           // by member
}

// errGroupAborted is what the members of a group get whose leader stopped
// before the batch's result was known (a panic in Submit).
var errGroupAborted = errors.New("dispatch: intake: the batch did not complete")

// send submits s as a member of the open group, or of a new one it leads.
func (g *groupCommit) send(ctx context.Context, s Submission) (Outcome, error) {
	if s.TraceParent == "" {
		// The batch's ctx is its leader's: each member keeps its own span.
		s.TraceParent = traceParent(ctx)
	}
	now := g.now()
	g.mu.Lock()
	grp, lead, quiet := g.open, false, false
	if grp == nil {
		grp = &group{full: make(chan struct{}), done: make(chan struct{})}
		g.open, lead = grp, true
		quiet = now.Sub(g.last) > g.wait
	}
	g.last = now
	i := len(grp.subs)
	grp.subs, grp.ctxs = append(grp.subs, s), append(grp.ctxs, ctx)
	if len(grp.subs) >= g.most {
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
		// the batch commits it all the same (Submit does not take a
		// caller's cancellation), and no one is left to answer.
		return Outcome{}, ctx.Err()
	}
}

// lead waits for the group to fill or for wait to pass (not at all after
// a quiet spell), then for a free slot, then takes the group and submits
// the members whose clients are still there. The leader's own
// cancellation does not stop it: the others wait on it.
func (g *groupCommit) lead(ctx context.Context, grp *group, quiet bool) {
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
	subs, ctxs := grp.subs, grp.ctxs // no one joins a taken group
	g.mu.Unlock()

	grp.outs, grp.errs = make([]Outcome, len(subs)), make([]error, len(subs))
	defer close(grp.done)
	var kept []Submission
	var idx []int
	for i, c := range ctxs {
		if err := c.Err(); err != nil {
			grp.errs[i] = err
			continue
		}
		kept, idx = append(kept, subs[i]), append(idx, i)
	}
	if len(kept) == 0 {
		return
	}
	for _, i := range idx {
		grp.errs[i] = errGroupAborted // until Submit returns
	}
	outs, err := g.submit(context.WithoutCancel(ctx), kept)
	for j, i := range idx {
		if err != nil {
			grp.errs[i] = err
			continue
		}
		grp.outs[i], grp.errs[i] = outs[j], nil
	}
}
