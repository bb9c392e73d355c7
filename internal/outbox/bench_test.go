package outbox_test

import (
	"context"
	"encoding/json"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"
	"gorm.io/gorm"

	"github.com/notificationservice/notificationservice/internal/config"
	"github.com/notificationservice/notificationservice/internal/outbox"
	"github.com/notificationservice/notificationservice/internal/outbox/eventbridgetest"
	"github.com/notificationservice/notificationservice/internal/testdb"
)

// The benchmarks in docs/benchmarks.md ("Outbox"). Run them with
//
//	go test -run '^$' -bench 'PutEvents|Relay|CommitToPublish' -benchmem ./internal/outbox/
//
// BenchmarkFakePutEventsRaw is the baseline: the EventBridge sink (the real
// SDK client) sending full batches to the fake as fast as it can, with the
// relay's default concurrency. BenchmarkRelayThroughput is the relay
// draining a backlog from the database through the same sink to the same
// fake; its ratio to the baseline is the cost of the outbox itself.

// benchEntries builds n valid entries.
func benchEntries(n int) []outbox.Entry {
	out := make([]outbox.Entry, n)
	for i := range out {
		id := uuid.NewString()
		d, _ := outbox.BuildDetail(change(i), id, time.Now())
		b, _ := json.Marshal(d)
		out[i] = outbox.Entry{EnvelopeID: id, Source: "notificationservice", DetailType: outbox.EventCreate,
			Detail: string(b), EventBusName: "default", Time: time.Now()}
	}
	return out
}

func BenchmarkFakePutEventsRaw(b *testing.B) {
	fake := eventbridgetest.New(b)
	sink := newSink(b, fake, 10*time.Second)
	concurrency := testConfig().Concurrency
	entries := benchEntries(b.N)
	batches := slices.Collect(slices.Chunk(entries, outbox.MaxBatchEntries))
	work := make(chan []outbox.Entry, len(batches))
	for _, bt := range batches {
		work <- bt
	}
	close(work)
	b.ResetTimer()
	start := time.Now()
	var wg sync.WaitGroup
	for range concurrency {
		wg.Go(func() {
			for bt := range work {
				if _, err := sink.Put(context.Background(), bt); err != nil {
					b.Error(err)
				}
			}
		})
	}
	wg.Wait()
	b.StopTimer()
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "entries/s")
	require.Len(b, fake.Accepted(), b.N)
}

// BenchmarkRelayThroughput drains b.N pending rows through one relay.
func BenchmarkRelayThroughput(b *testing.B) {
	for _, dialect := range []string{"postgres", "sqlite"} {
		b.Run(dialect, func(b *testing.B) {
			var db *gorm.DB
			if dialect == "postgres" {
				db, _ = testdb.Postgres(b)
			} else {
				db, _ = testdb.SQLite(b)
			}
			fake := eventbridgetest.New(b)
			rows := make([]outbox.Row, b.N)
			for i, e := range benchEntries(b.N) {
				rows[i] = outbox.Row{EnvelopeID: e.EnvelopeID, DetailType: e.DetailType, CollectionID: 7, Detail: e.Detail,
					CreatedAt: time.Now().UnixMilli()}
			}
			require.NoError(b, db.CreateInBatches(rows, 500).Error)
			relay := outbox.NewRelay(db, newSink(b, fake, 10*time.Second), testConfig(), discard())

			b.ResetTimer()
			began := time.Now()
			stop := start(b, relay)
			for fake.AcceptedCount() < b.N {
				time.Sleep(time.Millisecond) // a benchmark's own polling, not test synchronisation
			}
			elapsed := time.Since(began)
			b.StopTimer()
			stop()
			b.ReportMetric(float64(b.N)/elapsed.Seconds(), "entries/s")
		})
	}
}

// BenchmarkCommitToPublish commits mutations (each an outbox insert in its
// own transaction, as the services do) at a steady 500 per second on
// PostgreSQL with the relay running as in production (woken by the Writer's
// hook), and reports the latency from commit to the fake receiving the
// envelope. It runs at least 5 s (2,500 mutations) whatever b.N is, so the
// p99 rests on enough samples; ns/op is per mutation.
func BenchmarkCommitToPublish(b *testing.B) {
	const rate = 500
	n := max(b.N, 5*rate)
	db, _ := testdb.Postgres(b)
	fake := eventbridgetest.New(b)
	relay := outbox.NewRelay(db, newSink(b, fake, 10*time.Second), testConfigProduction(), discard())
	w := outbox.NewWriter(nil, relay.Notify)
	start(b, relay)

	var (
		mu        sync.Mutex
		committed = make(map[string]time.Time, n)
	)
	ctx := context.Background()
	b.ResetTimer()
	begin := time.Now()
	var wg sync.WaitGroup
	for i := range n {
		// An absolute schedule (not a ticker, which drops ticks when the
		// machine is busy) keeps the offered rate at 500/s on average.
		time.Sleep(time.Until(begin.Add(time.Duration(i) * time.Second / rate)))
		// Each mutation runs on its own goroutine, as concurrent requests
		// do, so a slow commit does not hold back the schedule.
		wg.Go(func() {
			c := change(i)
			err := db.Transaction(func(tx *gorm.DB) error { return w.Record(ctx, tx, c) })
			at := time.Now()
			if err != nil {
				b.Error(err)
				return
			}
			w.Committed()
			mu.Lock()
			committed[c.EntityID] = at
			mu.Unlock()
		})
	}
	wg.Wait()
	sent := time.Since(begin)
	for fake.AcceptedCount() < n {
		time.Sleep(time.Millisecond)
	}
	b.StopTimer()

	// When the fake first accepted each entity's envelope (detail.id).
	seen := map[string]time.Time{}
	for _, c := range fake.Calls() {
		failed := map[int]bool{}
		for _, i := range c.Failed {
			failed[i] = true
		}
		for i, e := range c.Entries {
			var d outbox.Detail
			require.NoError(b, json.Unmarshal([]byte(e.Detail), &d))
			if _, ok := seen[d.ID]; !ok && c.Status == http.StatusOK && !failed[i] {
				seen[d.ID] = c.At
			}
		}
	}
	lat := make([]time.Duration, 0, n)
	for id, at := range committed {
		p, ok := seen[id]
		require.True(b, ok, "the envelope of mutation %s never reached the fake", id)
		lat = append(lat, max(p.Sub(at), 0))
	}
	slices.Sort(lat)
	pct := func(p float64) float64 { return float64(lat[int(float64(len(lat)-1)*p)].Microseconds()) / 1000 }
	b.ReportMetric(float64(n)/sent.Seconds(), "mutations/s")
	b.ReportMetric(pct(0.50), "p50-ms")
	b.ReportMetric(pct(0.99), "p99-ms")
	b.ReportMetric(float64(lat[len(lat)-1].Microseconds())/1000, "max-ms")
	b.ReportMetric(float64(sent.Nanoseconds())/float64(n), "ns/op")
	if len(committed) != n {
		b.Fatalf("%d of %d mutations committed", len(committed), n)
	}
}

// testConfigProduction is the default outbox config: the latency benchmark
// measures what a deployment gets.
func testConfigProduction() config.Outbox { return config.Default().Outbox }
