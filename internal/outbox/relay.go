package outbox

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"gorm.io/gorm"

	"github.com/notificationservice/notificationservice/internal/apperr"
	"github.com/notificationservice/notificationservice/internal/config"
	"github.com/notificationservice/notificationservice/internal/retry"
	"github.com/notificationservice/notificationservice/internal/store"
)

// pruneBatch caps one DELETE of published rows so pruning a large backlog
// never holds long locks.
const pruneBatch = 1000

// Relay publishes pending outbox rows to a sink, oldest id first.
//
// On PostgreSQL each cycle claims up to outbox.claimSize due rows with
// SELECT … FOR UPDATE SKIP LOCKED inside a transaction that stays open while
// the rows are sent and is committed with their new state, so any number of
// relays (one per service instance) share the table and no two ever hold, and
// so send, the same row at the same time. The claim marks the rows published
// in the same statement (UPDATE … RETURNING), and the rows the sink did not
// accept are set back before the commit: one statement a cycle fewer when all
// goes well. A relay that dies mid-cycle loses its connection, PostgreSQL
// rolls the claim and its marks back, and the rows are sent again by
// whichever relay claims them next: delivery is at least once.
//
// On SQLite the relay reads without locking: exactly one relay may run
// against a SQLite file (the service runs one per process and SQLite
// deployments are single-instance).
type Relay struct {
	db       *gorm.DB
	sink     Sink
	cfg      config.Outbox
	log      *slog.Logger
	postgres bool
	wake     chan struct{}

	now        func() time.Time
	retry      retry.Policy // failures of the sink: the relay's waits and each row's next attempt
	pruneEvery time.Duration

	published    atomic.Int64
	retried      atomic.Int64
	parked       atomic.Int64
	sinkFailures atomic.Int64

	mu       sync.Mutex
	failing  error // the last sink error while the sink is failing; nil when healthy
	failedAt time.Time

	// nothingToFanOut, when set, is a SQL condition under which a row has
	// no one to fan out to (WithFanoutShortcut).
	nothingToFanOut string
}

// RelayOption configures a Relay.
type RelayOption func(*Relay)

// WithFanoutShortcut has the relay's claim also mark its rows fanned out
// (fanned_out_at, the webhook fan-out's mark; ClaimFanout) when cond, a
// condition of the statement's snapshot, says no one is subscribed: the
// default of a service without customer webhooks. Otherwise the fan-out
// marked every row of the outbox in an UPDATE of its own after the relay
// had marked it published: a second new version of each row, its detail
// copied again into the WAL with an entry in each index, which on an API
// send cost as much as the envelope's INSERT. On PostgreSQL only (the
// fan-out's own shortcut is too); cond reads the webhook tables, so the
// webhooks package, which owns them, supplies it.
func WithFanoutShortcut(cond string) RelayOption {
	return func(r *Relay) { r.nothingToFanOut = cond }
}

// NewRelay returns a relay that publishes rows of db to sink. cfg supplies
// Source, EventBusName, the batching limits, backoff and retention.
func NewRelay(db *gorm.DB, sink Sink, cfg config.Outbox, log *slog.Logger, opts ...RelayOption) *Relay {
	r := &Relay{
		db:         db,
		sink:       sink,
		cfg:        cfg,
		log:        log,
		postgres:   store.IsPostgres(db),
		wake:       make(chan struct{}, 1),
		now:        time.Now,
		retry:      retryPolicy(cfg),
		pruneEvery: time.Minute,
	}
	for _, o := range opts {
		o(r)
	}
	return r
}

// Notify wakes the relay: call it after a transaction that recorded an
// envelope commits (it is the Writer's notify hook). It never blocks; wakes
// that arrive while one is pending collapse into it.
func (r *Relay) Notify() {
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// Counters are what this relay has done since it started.
type Counters struct {
	Published    int64 // entries the sink accepted
	Retried      int64 // entries the sink failed and that were rescheduled
	Parked       int64 // entries set aside as unpublishable
	SinkFailures int64 // PutEvents calls that failed as a whole (throttled, 5xx, timeout, unreachable)
}

// Counters returns the relay's counters.
func (r *Relay) Counters() Counters {
	return Counters{
		Published:    r.published.Load(),
		Retried:      r.retried.Load(),
		Parked:       r.parked.Load(),
		SinkFailures: r.sinkFailures.Load(),
	}
}

// Health returns nil while the sink is accepting calls, and the last error
// (with when the failures began) while it is not. /readyz reports it as a
// non-critical check: the API keeps working and envelopes wait in the table.
func (r *Relay) Health() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.failing == nil {
		return nil
	}
	return fmt.Errorf("sink failing since %s: %w", r.failedAt.UTC().Format(time.RFC3339), r.failing)
}

func (r *Relay) setHealth(err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err != nil && r.failing == nil {
		r.failedAt = r.now()
	}
	r.failing = err
}

// Run publishes until ctx ends. It wakes on Notify, when a retry falls due,
// and every outbox.pollInterval (for rows other instances committed). While
// the sink or the database fails it backs off exponentially with jitter and
// sends at most one batch per attempt, ignoring wakes, so an outage costs a
// bounded trickle of calls. Run returns ctx's error; it never gives up on its
// own.
func (r *Relay) Run(ctx context.Context) error {
	var (
		retryAt   time.Time // the earliest retry this relay scheduled
		failures  int
		lastPrune time.Time
	)
	for {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if r.cfg.Retention > 0 && r.now().Sub(lastPrune) >= r.pruneEvery {
			if err := r.Prune(ctx); err != nil && ctx.Err() == nil {
				r.log.WarnContext(ctx, "outbox prune failed", "error", err)
			}
			lastPrune = r.now()
		}
		if !retryAt.IsZero() && !r.now().Before(retryAt) {
			retryAt = time.Time{}
		}
		res, err := r.cycle(ctx, failures > 0)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if next := res.nextRetry; !next.IsZero() && (retryAt.IsZero() || next.Before(retryAt)) {
			retryAt = next
		}
		if err != nil {
			failures++
			d := r.retry.Delay(failures)
			r.log.WarnContext(ctx, "outbox relay failing; backing off", "error", err, "failures", failures, "backoff", d)
			if !sleep(ctx, d) {
				return ctx.Err()
			}
			continue
		}
		if failures > 0 {
			r.log.InfoContext(ctx, "outbox relay recovered", "failures", failures)
			failures = 0
			r.setHealth(nil)
			continue // the probe succeeded: drain the backlog at full pace
		}
		if res.claimed >= r.claimSize() {
			continue // a full claim: more rows are probably due now
		}
		wait := r.cfg.PollInterval
		if !retryAt.IsZero() {
			if d := retryAt.Sub(r.now()); d < wait {
				wait = d
			}
		}
		if wait <= 0 {
			continue
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-r.wake:
		case <-t.C:
		}
		t.Stop()
	}
}

func (r *Relay) claimSize() int {
	if r.cfg.ClaimSize < 1 {
		return MaxBatchEntries
	}
	return r.cfg.ClaimSize
}

// sleep waits d or until ctx ends; it reports whether ctx is still live.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// retryPolicy is the schedule of outbox.backoffBase and outbox.backoffMax:
// the delay before attempt n+1 after n consecutive failures is the base
// doubled per failure, capped, with jitter so relays and retries do not
// move in lockstep (never less than half of it, so a failing dependency is
// not hammered, yet spread out).
func retryPolicy(cfg config.Outbox) retry.Policy {
	base := cfg.BackoffBase
	if base <= 0 {
		base = 100 * time.Millisecond
	}
	return retry.Policy{Initial: base, Max: cfg.BackoffMax}
}

// cycleResult is what one claim did.
type cycleResult struct {
	claimed   int
	nextRetry time.Time // the earliest retry scheduled, zero if none
}

// outcome is what happened to one claimed row.
type outcome int

const (
	untouched  outcome = iota // not sent (the sink failed first, or ctx ended): stays due
	published                 // accepted by the sink
	retryLater                // failed by the sink; try again after a backoff
	parked                    // can never succeed; set aside with its error
)

type rowResult struct {
	kind      outcome
	attempted bool // the sink saw it (so it counts as an attempt)
	err       error
}

// cycle claims due rows, publishes them and records the outcome. probe (set
// while the sink is failing) limits it to one batch. The error is the sink's
// or the database's; rows the sink accepted before it failed are recorded
// as published all the same.
func (r *Relay) cycle(ctx context.Context, probe bool) (cycleResult, error) {
	limit, concurrency := r.claimSize(), r.cfg.Concurrency
	if probe {
		limit, concurrency = r.cfg.BatchSize, 1
	}
	if concurrency < 1 {
		concurrency = 1
	}
	// The claim outlives ctx by design: if ctx ends mid-send, what the sink
	// already accepted is still recorded before the locks are released.
	hold := r.cfg.Timeout*time.Duration(limit/max(r.cfg.BatchSize, 1)/concurrency+2) + 30*time.Second
	txCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), hold)
	defer cancel()

	q := r.db.WithContext(txCtx)
	var tx *gorm.DB
	if r.postgres {
		tx = q.Begin()
		if tx.Error != nil {
			return cycleResult{}, fmt.Errorf("outbox: begin claim: %w", tx.Error)
		}
		defer tx.Rollback() // a no-op after Commit
		q = tx
	}
	claimedAt := r.now().UnixMilli()
	rows, err := r.claim(q, claimedAt, limit)
	if err != nil {
		return cycleResult{}, err
	}
	res := cycleResult{claimed: len(rows)}
	if len(rows) == 0 {
		return res, nil
	}
	results, sinkErr := r.publish(ctx, rows, concurrency)
	now := r.now()
	apply := func(tx *gorm.DB) error {
		var err error
		res.nextRetry, err = r.record(tx, rows, results, now, r.postgres)
		return err
	}
	if tx != nil {
		err = apply(tx)
		if err == nil {
			err = tx.Commit().Error
		}
	} else {
		err = q.Transaction(apply)
	}
	if err != nil {
		return res, fmt.Errorf("outbox: record publish outcome: %w", err)
	}
	r.count(rows, results)
	if sinkErr != nil {
		r.sinkFailures.Add(1)
		r.setHealth(sinkErr)
		return res, sinkErr
	}
	return res, nil
}

// claim returns the due rows, oldest first. On PostgreSQL it also marks
// them published (at now, one attempt more) in the same statement, and
// fanned out where WithFanoutShortcut says no one is subscribed; record
// sets back the publication of those the sink did not accept (not the
// fan-out's mark: it does not depend on the sink). Attempts is returned as
// it was before the claim.
func (r *Relay) claim(q *gorm.DB, now int64, limit int) ([]Row, error) {
	var rows []Row
	if r.postgres {
		set, args := "published_at = ?, attempts = attempts + 1", []any{now}
		if r.nothingToFanOut != "" {
			set += ", fanned_out_at = CASE WHEN fanned_out_at IS NULL AND " + r.nothingToFanOut + " THEN ? ELSE fanned_out_at END"
			args = append(args, now)
		}
		err := q.Raw(`UPDATE outbox SET `+set+` WHERE id IN (
  SELECT id FROM outbox WHERE published_at IS NULL AND parked_at IS NULL AND next_attempt_at <= ?
  ORDER BY id LIMIT ? FOR UPDATE SKIP LOCKED)
RETURNING id, envelope_id, detail_type, collection_id, detail, created_at, attempts`, append(args, now, limit)...).Scan(&rows).Error
		if err != nil {
			return nil, fmt.Errorf("outbox: claim: %w", err)
		}
		slices.SortFunc(rows, func(a, b Row) int { return cmp.Compare(a.ID, b.ID) }) // RETURNING has no order
		for i := range rows {
			rows[i].Attempts--
		}
		return rows, nil
	}
	err := q.Raw(`SELECT id, envelope_id, detail_type, collection_id, detail, created_at, attempts
FROM outbox WHERE published_at IS NULL AND parked_at IS NULL AND next_attempt_at <= ?
ORDER BY id LIMIT ?`, now, limit).Scan(&rows).Error
	if err != nil {
		return nil, fmt.Errorf("outbox: claim: %w", err)
	}
	return rows, nil
}

// item is an entry and the index of the row it came from.
type item struct {
	idx   int
	entry Entry
}

// publish sends rows in id order, in batches: the first alone, the rest up
// to concurrency calls at a time. After a whole-call failure it starts no
// further batch.
func (r *Relay) publish(ctx context.Context, rows []Row, concurrency int) ([]rowResult, error) {
	results := make([]rowResult, len(rows))
	items := make([]item, 0, len(rows))
	for i, row := range rows {
		e := EntryFromRow(row, r.cfg.Source, r.cfg.EventBusName)
		if err := e.check(); err != nil {
			results[i] = rowResult{kind: parked, err: err}
			continue
		}
		items = append(items, item{idx: i, entry: e})
	}
	var (
		mu      sync.Mutex
		sinkErr error
		wg      sync.WaitGroup
	)
	bs := batchItems(items, r.cfg.BatchSize)
	if len(bs) == 0 {
		return results, nil
	}
	// The first batch goes alone: if the sink is down, one call finds out,
	// not concurrency calls at once.
	if err := r.send(ctx, bs[0], results); err != nil {
		return results, err
	}
	sem := make(chan struct{}, concurrency)
	for _, b := range bs[1:] {
		sem <- struct{}{}
		mu.Lock()
		stop := sinkErr != nil
		mu.Unlock()
		if stop || ctx.Err() != nil {
			<-sem
			break
		}
		wg.Go(func() {
			defer func() { <-sem }()
			if err := r.send(ctx, b, results); err != nil {
				mu.Lock()
				if sinkErr == nil {
					sinkErr = err
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if sinkErr == nil && ctx.Err() != nil {
		sinkErr = ctx.Err()
	}
	return results, sinkErr
}

// send makes one PutEvents call for b and fills in results for its rows. A
// call the sink rejects as invalid is split in half until the entry at fault
// is alone, and that entry is parked; the others go through.
func (r *Relay) send(ctx context.Context, b []item, results []rowResult) error {
	entries := make([]Entry, len(b))
	for i, it := range b {
		entries[i] = it.entry
	}
	cctx, cancel := context.WithTimeout(ctx, r.cfg.Timeout)
	errs, err := r.sink.Put(cctx, entries)
	cancel()
	if err != nil {
		if !errors.Is(err, ErrRejected) {
			return err
		}
		if len(b) == 1 {
			results[b[0].idx] = rowResult{kind: parked, attempted: true, err: err}
			return nil
		}
		mid := len(b) / 2
		if err := r.send(ctx, b[:mid], results); err != nil {
			return err
		}
		return r.send(ctx, b[mid:], results)
	}
	if len(errs) != len(b) {
		return fmt.Errorf("outbox: sink returned %d results for %d entries", len(errs), len(b))
	}
	for i, it := range b {
		switch e := errs[i]; {
		case e == nil:
			results[it.idx] = rowResult{kind: published, attempted: true}
		default:
			var ee *EntryError
			if errors.As(e, &ee) && ee.Permanent() {
				results[it.idx] = rowResult{kind: parked, attempted: true, err: e}
			} else {
				results[it.idx] = rowResult{kind: retryLater, attempted: true, err: e}
			}
		}
	}
	return nil
}

// batchItems splits items, in order, into calls of at most maxEntries
// entries and MaxBatchBytes bytes.
func batchItems(items []item, maxEntries int) [][]item {
	if maxEntries < 1 || maxEntries > MaxBatchEntries {
		maxEntries = MaxBatchEntries
	}
	var (
		out  [][]item
		cur  []item
		size int
	)
	for _, it := range items {
		n := it.entry.Size()
		if len(cur) > 0 && (len(cur) == maxEntries || size+n > MaxBatchBytes) {
			out = append(out, cur)
			cur, size = nil, 0
		}
		cur = append(cur, it)
		size += n
	}
	if len(cur) > 0 {
		out = append(out, cur)
	}
	return out
}

// record writes each row's outcome and returns the earliest retry scheduled.
// A retryable failure that reaches outbox.maxAttempts is parked. marked says
// the claim already marked every row published: then the published rows need
// nothing, and the others are set back (published_at NULL, their attempts).
func (r *Relay) record(tx *gorm.DB, rows []Row, results []rowResult, now time.Time, marked bool) (time.Time, error) {
	var (
		pub       []int64
		unsent    []int64
		nextRetry time.Time
	)
	nowMs := now.UnixMilli()
	for i := range results {
		res := &results[i]
		row := rows[i]
		attempts := row.Attempts
		if res.attempted {
			attempts++
		}
		switch res.kind {
		case published:
			pub = append(pub, row.ID)
		case untouched:
			unsent = append(unsent, row.ID)
		case retryLater:
			if attempts >= r.cfg.MaxAttempts {
				res.kind = parked
				res.err = fmt.Errorf("gave up after %d attempts: %w", attempts, res.err)
				break
			}
			at := nowMs + r.retry.Delay(attempts).Milliseconds()
			err := tx.Exec(`UPDATE outbox SET attempts = ?, next_attempt_at = ?, last_error = ?, published_at = NULL WHERE id = ?`,
				attempts, at, apperr.Truncate(res.err.Error(), maxErrorLen), row.ID).Error
			if err != nil {
				return time.Time{}, err
			}
			if t := time.UnixMilli(at); nextRetry.IsZero() || t.Before(nextRetry) {
				nextRetry = t
			}
		}
		if res.kind == parked {
			err := tx.Exec(`UPDATE outbox SET attempts = ?, parked_at = ?, last_error = ?, published_at = NULL WHERE id = ?`,
				attempts, nowMs, apperr.Truncate(res.err.Error(), maxErrorLen), row.ID).Error
			if err != nil {
				return time.Time{}, err
			}
		}
	}
	if marked {
		if len(unsent) > 0 {
			// Not sent: due again at once, the attempt the claim counted undone.
			err := tx.Exec(`UPDATE outbox SET published_at = NULL, attempts = attempts - 1 WHERE id = ANY(?::bigint[])`,
				store.Int64s(unsent)).Error
			if err != nil {
				return time.Time{}, err
			}
		}
		return nextRetry, nil
	}
	if len(pub) > 0 {
		err := tx.Exec(`UPDATE outbox SET published_at = ?, attempts = attempts + 1 WHERE id IN ?`, nowMs, pub).Error
		if err != nil {
			return time.Time{}, err
		}
	}
	return nextRetry, nil
}

// count updates the counters and logs parked rows, once each, after their
// state is committed.
func (r *Relay) count(rows []Row, results []rowResult) {
	for i, res := range results {
		switch res.kind {
		case published:
			r.published.Add(1)
		case retryLater:
			r.retried.Add(1)
		case parked:
			r.parked.Add(1)
			r.log.Warn("outbox envelope parked", "envelopeId", rows[i].EnvelopeID, "detailType", rows[i].DetailType,
				"outboxId", rows[i].ID, "error", res.err)
		}
	}
}

// maxErrorLen bounds last_error so a verbose sink cannot bloat the table.
const maxErrorLen = 1000

// Prune deletes rows published more than outbox.retention ago. Pending and
// parked rows are never pruned.
func (r *Relay) Prune(ctx context.Context) error {
	cutoff := r.now().Add(-r.cfg.Retention).UnixMilli()
	for {
		// The outer conditions are re-checked on each row, so a row replayed
		// (made pending again) while this runs is not deleted.
		res := r.db.WithContext(ctx).Exec(`DELETE FROM outbox
WHERE published_at IS NOT NULL AND published_at < ? AND id IN (
  SELECT id FROM outbox WHERE created_at < ? AND published_at IS NOT NULL AND published_at < ? ORDER BY id LIMIT ?)`,
			cutoff, cutoff, cutoff, pruneBatch)
		if res.Error != nil {
			return fmt.Errorf("outbox: prune: %w", res.Error)
		}
		if res.RowsAffected < pruneBatch {
			return nil
		}
	}
}
