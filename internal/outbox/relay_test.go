package outbox_test

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"gorm.io/gorm"

	"github.com/notificationservice/notificationservice/internal/config"
	"github.com/notificationservice/notificationservice/internal/outbox"
	"github.com/notificationservice/notificationservice/internal/outbox/eventbridgetest"
	"github.com/notificationservice/notificationservice/internal/store"
	"github.com/notificationservice/notificationservice/internal/testdb"
)

func TestRelayPublishesInIDOrderWithinPutEventsLimits(t *testing.T) {
	t.Parallel()
	testdb.Dialects(t, func(t *testing.T, db *gorm.DB) {
		t.Parallel()
		fake := eventbridgetest.New(t)
		w := outbox.NewWriter(nil, nil)
		// 23 small entries around three of ~100 KB: ten small ones fit a call,
		// but only two of the large ones do.
		var changes []outbox.Change
		for i := range 26 {
			if i >= 10 && i < 13 {
				changes = append(changes, bigChange(i, 100*1024))
				continue
			}
			changes = append(changes, change(i))
		}
		ids := record(t, db, w, changes...)
		cfg := testConfig()
		cfg.Concurrency = 1 // one call at a time, so the fake sees calls in order
		start(t, outbox.NewRelay(db, newSink(t, fake, time.Second), cfg, discard()))
		allAccepted(t, fake, ids)
		allPublished(t, db, ids)

		var got []string
		for _, e := range fake.Accepted() {
			got = append(got, e.EnvelopeID())
		}
		require.Equal(t, ids, got, "published in id order, each once")
		require.Empty(t, fake.Violations())
		var sizes []int
		for _, c := range fake.Calls() {
			total := 0
			for _, e := range c.Entries {
				total += e.Size()
			}
			require.LessOrEqual(t, len(c.Entries), outbox.MaxBatchEntries)
			require.LessOrEqual(t, total, outbox.MaxBatchBytes)
			sizes = append(sizes, len(c.Entries))
		}
		// 10 small | 2 big | 1 big + 9 small | 4 small.
		require.Equal(t, []int{10, 2, 10, 4}, sizes)

		// The entry is the envelope the catalogue shows.
		rows := allRows(t, db)
		e := fake.Accepted()[0]
		require.Equal(t, "notificationservice", e.Source)
		require.Equal(t, outbox.EventCreate, e.DetailType)
		require.Equal(t, "default", e.EventBusName)
		require.Equal(t, rows[0].Detail, e.Detail, "detail is sent byte for byte as stored")
		require.NotNil(t, e.Time)
		require.InDelta(t, float64(rows[0].CreatedAt)/1000, *e.Time, 0.001)
		for _, r := range rows {
			require.NotNil(t, r.PublishedAt)
			require.Equal(t, 1, r.Attempts)
		}
	})
}

func TestRelayRetriesOnlyTheFailedEntries(t *testing.T) {
	t.Parallel()
	testdb.Dialects(t, func(t *testing.T, db *gorm.DB) {
		t.Parallel()
		fake := eventbridgetest.New(t)
		ids := record(t, db, outbox.NewWriter(nil, nil), change(0), change(1), change(2), change(3), change(4),
			change(5), change(6), change(7), change(8), change(9))
		failOnce := map[string]bool{ids[1]: true, ids[4]: true, ids[8]: true}
		seen := map[string]bool{}
		fake.FailEntries(func(e eventbridgetest.Entry) string {
			id := e.EnvelopeID()
			if failOnce[id] && !seen[id] {
				seen[id] = true
				return "ThrottlingException"
			}
			return ""
		})
		cfg := testConfig()
		cfg.Concurrency = 1
		relay := outbox.NewRelay(db, newSink(t, fake, time.Second), cfg, discard())
		start(t, relay)
		allAccepted(t, fake, ids)
		allPublished(t, db, ids)

		calls := fake.Calls()
		require.Equal(t, []int{1, 4, 8}, calls[0].Failed, "FailedEntryCount 3 in the first call")
		var resent []string
		for _, c := range calls[1:] {
			for _, e := range c.Entries {
				resent = append(resent, e.EnvelopeID())
			}
		}
		slices.Sort(resent)
		want := []string{ids[1], ids[4], ids[8]}
		slices.Sort(want)
		require.Equal(t, want, resent, "only the failed entries are sent again")
		for _, id := range ids {
			require.Equal(t, 1, fake.Count(id))
			r := rowByEnvelope(t, db, id)
			require.NotNil(t, r.PublishedAt)
			if failOnce[id] {
				require.Equal(t, 2, r.Attempts)
				require.Contains(t, r.LastError, "ThrottlingException")
			} else {
				require.Equal(t, 1, r.Attempts)
			}
		}
		require.Eventually(t, func() bool { return relay.Counters() == outbox.Counters{Published: 10, Retried: 3} }, wait, tick,
			"counters: %+v", relay.Counters())
	})
}

// TestRelayBacksOffOnWholeCallFailures: throttling, 5xx and timeouts fail the
// whole call; the relay waits longer after each (exponential backoff) and
// sends the same entries again, without counting attempts against them.
func TestRelayBacksOffOnWholeCallFailures(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name   string
		inject func(f *eventbridgetest.Server)
		status int
	}{
		{"throttling", func(f *eventbridgetest.Server) { f.Throttle(3) }, http.StatusBadRequest},
		{"5xx", func(f *eventbridgetest.Server) { f.ServerError(3) }, http.StatusInternalServerError},
		{"timeout", func(f *eventbridgetest.Server) { f.Slow(3, 3*time.Second) }, http.StatusRequestTimeout},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			db, _ := testdb.SQLite(t)
			fake := eventbridgetest.New(t)
			tc.inject(fake)
			ids := record(t, db, outbox.NewWriter(nil, nil), change(1), change(2), change(3))
			cfg := testConfig()
			cfg.BackoffBase, cfg.BackoffMax = 40*time.Millisecond, time.Second
			cfg.Timeout = 300 * time.Millisecond
			relay := outbox.NewRelay(db, newSink(t, fake, 5*time.Second), cfg, discard())
			relay.NoJitter()
			start(t, relay)
			allAccepted(t, fake, ids)
			allPublished(t, db, ids)

			var failed []eventbridgetest.Call
			var last eventbridgetest.Call
			for _, c := range fake.Calls() {
				if c.Status == http.StatusOK {
					last = c
					continue
				}
				failed = append(failed, c)
			}
			require.Len(t, failed, 3)
			for _, c := range failed {
				require.Equal(t, tc.status, c.Status)
				require.Len(t, c.Entries, 3)
			}
			// The gaps grow: at least 40, 80, 160 ms after failures 1, 2, 3
			// (jitter is off, so the backoff is exact). A timed-out call
			// also spends the call timeout itself.
			after := append(failed, last)
			for i := 1; i < len(after); i++ {
				gap := after[i].At.Sub(after[i-1].At)
				require.GreaterOrEqual(t, gap, cfg.BackoffBase<<(i-1), "gap %d", i)
			}
			require.Equal(t, int64(3), relay.Counters().SinkFailures)
			for _, id := range ids {
				require.Equal(t, 1, rowByEnvelope(t, db, id).Attempts, "a failed call is not an attempt against the entry")
			}
			// The relay clears its failure after the batch that succeeded
			// has committed, so the rows can be seen published first.
			require.Eventually(t, func() bool { return relay.Health() == nil }, 5*time.Second, 10*time.Millisecond)
		})
	}
}

// TestRelayKeepsABoundedPaceWhileTheSinkIsDown: while every call fails, wakes
// do not hurry the relay, it sends one batch per attempt, and the attempts
// slow down to backoffMax; it reports itself unhealthy, and recovers.
func TestRelayKeepsABoundedPaceWhileTheSinkIsDown(t *testing.T) {
	t.Parallel()
	db, _ := testdb.SQLite(t)
	fake := eventbridgetest.New(t)
	fake.SetDown(true)
	cfg := testConfig()
	cfg.BackoffBase, cfg.BackoffMax = 20*time.Millisecond, 80*time.Millisecond
	relay := outbox.NewRelay(db, newSink(t, fake, time.Second), cfg, discard())
	relay.NoJitter()
	w := outbox.NewWriter(nil, relay.Notify)
	var changes []outbox.Change
	for i := range 35 {
		changes = append(changes, change(i))
	}
	ids := record(t, db, w, changes...)
	start(t, relay)

	// Commits keep waking the relay while it is backing off.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		for ctx.Err() == nil {
			relay.Notify()
			time.Sleep(time.Millisecond)
		}
	}()
	require.Eventually(t, func() bool { return len(fake.Calls()) >= 8 }, wait, tick)
	require.Error(t, relay.Health())
	calls := fake.Calls()
	for i, c := range calls {
		require.Equal(t, http.StatusServiceUnavailable, c.Status)
		require.LessOrEqual(t, len(c.Entries), cfg.BatchSize, "one batch per attempt while down")
		if i > 0 {
			want := min(cfg.BackoffBase<<(i-1), cfg.BackoffMax)
			require.GreaterOrEqual(t, c.At.Sub(calls[i-1].At), want, "call %d came too soon", i)
		}
	}
	cancel()

	fake.SetDown(false)
	allAccepted(t, fake, ids)
	allPublished(t, db, ids)
	require.Eventually(t, func() bool { return relay.Health() == nil }, wait, tick)
	for _, id := range ids {
		require.Equal(t, 1, fake.Count(id))
	}
}

// TestRelayParksWhatCanNeverSucceed: an oversized entry, a malformed one,
// one the sink fails with a permanent code, one that makes the sink reject
// the whole call, and one that keeps failing past maxAttempts are each
// parked with their error, counted, listed, and do not hold up the rest.
func TestRelayParksWhatCanNeverSucceed(t *testing.T) {
	t.Parallel()
	testdb.Dialects(t, func(t *testing.T, db *gorm.DB) {
		t.Parallel()
		fake := eventbridgetest.New(t)
		w := outbox.NewWriter(nil, nil)
		before := record(t, db, w, change(1), change(2))
		insertRow(t, db, "oversized", `{"id":"3","blob":"`+strings.Repeat("x", outbox.MaxBatchBytes)+`"}`)
		insertRow(t, db, "malformed", `{"id": "4", `)
		mid := record(t, db, w, change(5), change(6), change(7), change(8))
		after := record(t, db, w, change(9), change(10))
		permanent, rejected, flaky := mid[0], mid[1], mid[2]

		fake.FailEntries(func(e eventbridgetest.Entry) string {
			switch e.EnvelopeID() {
			case permanent:
				return "MalformedDetail"
			case flaky:
				return "InternalFailure"
			}
			return ""
		})
		fake.RejectCalls(func(es []eventbridgetest.Entry) bool {
			return slices.ContainsFunc(es, func(e eventbridgetest.Entry) bool { return e.EnvelopeID() == rejected })
		})
		cfg := testConfig()
		cfg.MaxAttempts = 3
		relay := outbox.NewRelay(db, newSink(t, fake, time.Second), cfg, discard())
		start(t, relay)

		good := append(append(before, mid[3]), after...)
		allAccepted(t, fake, good)
		store := outbox.NewStore(db, nil)
		require.Eventually(t, func() bool {
			st, err := store.Stats(context.Background())
			require.NoError(t, err)
			return st.Parked == 5 && st.Pending == 0
		}, wait, tick)

		reasons := map[string]string{
			"oversized": "262144",
			"malformed": "not valid JSON",
			permanent:   "MalformedDetail",
			rejected:    "ValidationException",
			flaky:       "gave up after 3 attempts: InternalFailure",
		}
		for id, reason := range reasons {
			r := rowByEnvelope(t, db, id)
			require.NotNil(t, r.ParkedAt, id)
			require.Nil(t, r.PublishedAt, id)
			require.Contains(t, r.LastError, reason, id)
			require.Zero(t, fake.Count(id), id)
		}
		require.Equal(t, 3, rowByEnvelope(t, db, flaky).Attempts)
		require.Eventually(t, func() bool { return relay.Counters().Parked == 5 }, wait, tick)

		parked, err := store.List(context.Background(), outbox.Filter{State: outbox.StateParked}, 0, 50)
		require.NoError(t, err)
		require.Len(t, parked, 5)
		for _, e := range parked {
			require.Equal(t, outbox.StateParked, e.State)
			require.NotEmpty(t, e.LastError)
		}
		require.Empty(t, fake.Violations(), "the oversized entry was never sent")
	})
}

// TestRelayWakesOnCommit: with a poll interval of an hour, only the Writer's
// notify hook can get a new envelope out promptly.
func TestRelayWakesOnCommit(t *testing.T) {
	t.Parallel()
	testdb.Dialects(t, func(t *testing.T, db *gorm.DB) {
		t.Parallel()
		fake := eventbridgetest.New(t)
		cfg := testConfig()
		cfg.PollInterval = time.Hour
		relay := outbox.NewRelay(db, newSink(t, fake, time.Second), cfg, discard())
		w := outbox.NewWriter(nil, relay.Notify)
		first := record(t, db, w, change(1))
		start(t, relay)
		allAccepted(t, fake, first) // found by the first cycle; now the relay sleeps

		for i := range 3 {
			ids := record(t, db, w, change(10+i))
			allAccepted(t, fake, ids)
		}
	})
}

// TestRolledBackMutationPublishesNothing: an envelope recorded in a
// transaction that rolls back never exists, so it is never published.
func TestRolledBackMutationPublishesNothing(t *testing.T) {
	t.Parallel()
	testdb.Dialects(t, func(t *testing.T, db *gorm.DB) {
		t.Parallel()
		fake := eventbridgetest.New(t)
		relay := outbox.NewRelay(db, newSink(t, fake, time.Second), testConfig(), discard())
		w := outbox.NewWriter(nil, relay.Notify)
		start(t, relay)

		errInvalid := errors.New("validation failed after the insert")
		err := db.Transaction(func(tx *gorm.DB) error {
			require.NoError(t, w.Record(context.Background(), tx, change(1)))
			return errInvalid
		})
		require.ErrorIs(t, err, errInvalid)
		w.Committed() // a careless caller: the wake must not publish anything

		committed := record(t, db, w, change(2))
		allAccepted(t, fake, committed)
		require.Len(t, allRows(t, db), 1)
		require.Len(t, fake.Accepted(), 1, "only the committed envelope reached the sink")
	})
}

func TestPruneDeletesOnlyPublishedRowsPastRetention(t *testing.T) {
	t.Parallel()
	testdb.Dialects(t, func(t *testing.T, db *gorm.DB) {
		t.Parallel()
		ids := record(t, db, outbox.NewWriter(nil, nil), change(1), change(2), change(3), change(4))
		old := time.Now().Add(-8 * 24 * time.Hour).UnixMilli()
		recent := time.Now().Add(-time.Hour).UnixMilli()
		set := func(id string, cols map[string]any) {
			require.NoError(t, db.Model(&outbox.Row{}).Where("envelope_id = ?", id).Updates(cols).Error)
		}
		set(ids[0], map[string]any{"created_at": old, "published_at": old})    // pruned
		set(ids[1], map[string]any{"created_at": old, "published_at": recent}) // published late: kept
		set(ids[2], map[string]any{"created_at": old})                         // still pending: kept
		set(ids[3], map[string]any{"created_at": old, "parked_at": old})       // parked: kept

		cfg := testConfig()
		cfg.Retention = 7 * 24 * time.Hour
		relay := outbox.NewRelay(db, outbox.NewLogSink(discard(), "000000000000", "us-east-1"), cfg, discard())
		relay.SetPruneEvery(10 * time.Millisecond)
		start(t, relay) // Run prunes as it starts
		require.Eventually(t, func() bool { return len(allRows(t, db)) == 3 }, wait, tick)
		var left []string
		for _, r := range allRows(t, db) {
			left = append(left, r.EnvelopeID)
		}
		require.Equal(t, ids[1:], left)
	})
}

// TestTwoRelaysNeverPublishTheSameRowAtOnce runs two relays (two service
// instances) on one PostgreSQL. Row claiming means each envelope is sent by
// exactly one of them, and never by both at the same moment.
func TestTwoRelaysNeverPublishTheSameRowAtOnce(t *testing.T) {
	t.Parallel()
	db, url := testdb.Postgres(t)
	fake := eventbridgetest.New(t)
	fake.SetLatency(3 * time.Millisecond) // calls overlap in time
	var changes []outbox.Change
	for i := range 400 {
		changes = append(changes, change(i))
	}
	ids := record(t, db, outbox.NewWriter(nil, nil), changes...)

	cfg := testConfig()
	cfg.ClaimSize, cfg.Concurrency = 20, 2
	var relays []*outbox.Relay
	for range 2 {
		instance := openPostgres(t, url) // a pool of its own, as another process has
		r := outbox.NewRelay(instance, newSink(t, fake, time.Second), cfg, discard())
		relays = append(relays, r)
		start(t, r)
	}
	allAccepted(t, fake, ids)
	require.Empty(t, fake.Overlaps(), "an envelope was in two PutEvents calls at once")
	for _, id := range ids {
		require.Equal(t, 1, fake.Count(id), "envelope %s published more than once", id)
	}
	for _, r := range relays {
		require.Positive(t, r.Counters().Published, "both relays took part")
	}
}

// openPostgres opens another pool on url, as another service instance has.
func openPostgres(t testing.TB, url string) *gorm.DB {
	t.Helper()
	db, err := store.Open(context.Background(), config.Database{URL: url, MaxOpenConns: 10})
	require.NoError(t, err)
	t.Cleanup(func() { _ = store.Close(db) })
	return db
}

// On PostgreSQL the claim marks its rows published in the same statement;
// rows a failed call did not get out must be set back before the commit,
// pending with their attempts as they were, and go out on the next cycle.
func TestRelayClaimMarkIsUndoneForRowsNotSent(t *testing.T) {
	t.Parallel()
	db, _ := testdb.Postgres(t)
	fake := eventbridgetest.New(t)
	fake.ServerError(1)
	ids := record(t, db, outbox.NewWriter(nil, nil), change(1), change(2), change(3))
	cfg := testConfig()
	cfg.Timeout = 2 * time.Second
	relay := outbox.NewRelay(db, newSink(t, fake, 5*time.Second), cfg, discard())

	_, err := relay.Cycle(context.Background())
	require.Error(t, err, "the sink failed the call")
	for _, id := range ids {
		row := rowByEnvelope(t, db, id)
		require.Nil(t, row.PublishedAt, "not sent, so not published")
		require.Zero(t, row.Attempts, "a failed call is not an attempt against the entry")
	}
	n, err := relay.Cycle(context.Background())
	require.NoError(t, err)
	require.Equal(t, 3, n)
	allAccepted(t, fake, ids)
	for _, id := range ids {
		row := rowByEnvelope(t, db, id)
		require.NotNil(t, row.PublishedAt)
		require.Equal(t, 1, row.Attempts)
	}
}
