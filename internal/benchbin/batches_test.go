package benchbin

import (
	"bufio"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
)

// batches is the service's intake histograms for one source, as /metrics
// has them (notify_intake_batch_submissions and
// notify_intake_batch_duration_seconds): how many transactions, the
// submissions they held, and their time in all.
type batches struct {
	count   float64
	subs    float64
	seconds float64
}

// metricsLines calls each with every line of p's /metrics.
func metricsLines(p *process, each func(line string) error) error {
	resp, err := http.Get("http://" + p.addr + "/metrics")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if err := each(sc.Text()); err != nil {
			return err
		}
	}
	return sc.Err()
}

// readSeries sets each of into's values from the /metrics series of that
// name with the labels label (`{source="api"}`), and returns how many it
// found.
func readSeries(b *testing.B, p *process, label string, into map[string]*float64) int {
	b.Helper()
	found := 0
	if err := metricsLines(p, func(line string) error {
		name, value, ok := strings.Cut(line, label+" ")
		if !ok || into[name] == nil {
			return nil
		}
		found++
		var err error
		if *into[name], err = strconv.ParseFloat(value, 64); err != nil {
			return fmt.Errorf("/metrics: %s: %w", line, err)
		}
		return nil
	}); err != nil {
		b.Fatal(err)
	}
	return found
}

// intakeBatches reads p's intake histograms of source from /metrics.
func intakeBatches(b *testing.B, p *process, source string) batches {
	b.Helper()
	label := `{source="` + source + `"}`
	var out batches
	if readSeries(b, p, label, map[string]*float64{
		"notify_intake_batch_submissions_count":    &out.count,
		"notify_intake_batch_submissions_sum":      &out.subs,
		"notify_intake_batch_duration_seconds_sum": &out.seconds,
	}) == 0 {
		b.Fatalf("/metrics has no notify_intake_batch_* series%s", label)
	}
	return out
}

// since is what the intake committed between from and to: "N batches of M
// on average, T ms each".
func (to batches) since(from batches) string {
	n := to.count - from.count
	if n <= 0 {
		return "no batch"
	}
	return fmt.Sprintf("%.0f batches of %.1f, %.1f ms each", n, (to.subs-from.subs)/n, 1000*(to.seconds-from.seconds)/n)
}

// poolWaits is the service's connection pool waits so far (go_sql_wait_*
// on /metrics): how many statements found all database.maxOpenConns in use,
// and how long they waited in all.
type poolWaits struct{ count, seconds float64 }

func poolWait(b *testing.B, p *process) poolWaits {
	b.Helper()
	var out poolWaits
	if readSeries(b, p, `{db_name="notificationservice"}`, map[string]*float64{
		"go_sql_wait_count_total":            &out.count,
		"go_sql_wait_duration_seconds_total": &out.seconds,
	}) != 2 {
		b.Fatalf("/metrics has no go_sql_wait_* series of the service's pool")
	}
	return out
}

// since is the waits between from and to, per unit of work done in
// between: "N waits, T ms in all (U µs per send)".
func (to poolWaits) since(from poolWaits, done int, unit string) string {
	n, s := to.count-from.count, to.seconds-from.seconds
	if n <= 0 {
		return "none"
	}
	return fmt.Sprintf("%.0f waits, %.0f ms in all (%.0f µs per %s)", n, 1000*s, 1e6*s/float64(max(done, 1)), unit)
}

// heap is the Go heap of a service, as its /metrics says: what is
// allocated and the goal at which the next collection starts.
type heap struct{ alloc, goal float64 }

// heapAtIdle reads p's heap. Start-up work that leaves a large goal behind
// lets an idle service grow until the runtime's two-minute forced
// collection (goose v3.29's parser did: a 36 MB goal, docs/benchmarks.md);
// the RSS one second after start does not show it yet, the goal does.
func heapAtIdle(b *testing.B, p *process) heap {
	b.Helper()
	var out heap
	if readSeries(b, p, "", map[string]*float64{
		"go_memstats_heap_alloc_bytes": &out.alloc,
		"go_memstats_next_gc_bytes":    &out.goal,
	}) != 2 {
		b.Fatalf("/metrics has no go_memstats_heap_alloc_bytes or go_memstats_next_gc_bytes")
	}
	return out
}
