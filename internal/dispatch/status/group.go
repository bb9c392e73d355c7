package status

import (
	"context"
	"slices"
	"time"

	"github.com/notificationservice/notificationservice/internal/groupcommit"
)

// BatchObserver hears of every batch of provider status requests the store
// committed as one (metrics.Metrics implements it, for /metrics): how many
// requests shared the statement and its commit.
type BatchObserver interface {
	ReportBatchCommitted(requests int)
}

// WithGroupCommit has concurrent MarkReports calls share one statement and
// one commit, as the REST send shares its intake transaction
// (groupcommit): Twilio calls back once per message and status, so at a
// thousand text messages a second the callbacks were a thousand or more
// autocommits a second, each its own WAL flush. A call waits at most wait
// for others to join it (not at all after a quiet spell), a batch takes at
// most most calls, and at most inflight batches commit at once. A wait of
// 0 (or a most below 1) marks each call alone. obs may be nil.
//
// The batch is marked as one call with every member's reports in the order
// the members came, which is what marking them one after another would
// have done: a delivery's reports still apply in order up to its first
// final one. Each member gets its own reports' results; an error (the
// database is away) is every member's, and nothing of the batch was
// written.
func (s *Store) WithGroupCommit(wait time.Duration, most, inflight int, obs BatchObserver) *Store {
	s.group, s.obs = nil, obs
	if wait > 0 && most >= 1 {
		s.group = groupcommit.New(s.markBatch, wait, most, inflight, nil)
	}
	return s
}

// markBatch is the group's flush: the members' reports marked as one call,
// the results handed back by member.
func (s *Store) markBatch(ctx context.Context, members [][]Report) ([][]bool, error) {
	all := members[0]
	if len(members) > 1 {
		all = slices.Concat(members...)
	}
	applied, err := s.markReports(ctx, all)
	if err != nil {
		return nil, err
	}
	if s.obs != nil {
		s.obs.ReportBatchCommitted(len(members))
	}
	out := make([][]bool, len(members))
	at := 0
	for i, m := range members {
		out[i] = applied[at : at+len(m) : at+len(m)]
		at += len(m)
	}
	return out, nil
}
