package benchbin

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"gorm.io/gorm"
)

// soakSettings select the soak (BENCH_SOAK_SECONDS > 0): one process fed a
// fixed rate for a long time, to show whether its RSS stays flat.
type soakSettings struct {
	duration time.Duration // BENCH_SOAK_SECONDS
	rate     int           // BENCH_SOAK_RATE msg/s (three deliveries each)
	window   time.Duration // BENCH_SOAK_WINDOW seconds: one row of the table
}

// readSoak is the soak's settings, or ok false when BENCH_SOAK_SECONDS is
// unset (the usual phases run instead).
func readSoak(b *testing.B) (s soakSettings, ok bool) {
	if os.Getenv("BENCH_SOAK_SECONDS") == "" {
		return soakSettings{}, false
	}
	s = soakSettings{
		duration: time.Duration(envInt(b, "BENCH_SOAK_SECONDS", 600)) * time.Second,
		rate:     envInt(b, "BENCH_SOAK_RATE", 1000),
		window:   time.Duration(envInt(b, "BENCH_SOAK_WINDOW", 60)) * time.Second,
	}
	if s.duration < 3*s.window {
		b.Fatalf("BENCH_SOAK_SECONDS=%s: want at least three windows of BENCH_SOAK_WINDOW=%s (the second is the reference)", s.duration, s.window)
	}
	return s, true
}

// soakWindow is what one window of the soak saw.
type soakWindow struct {
	rssMin, rssMax int64
	atMax          memSample // the sample of rssMax: its anon and file parts
	queued         int       // messages ready on the queue at the window's end
	waiting        int       // deliveries planned but not yet sent (pending or sending) then
	published      int       // by the window's end, in all
}

// flatTolerance is how much the last window's peak may exceed the second's
// and still count as flat: the first window holds the start-up, and the GC
// moves a peak by a few MiB from one window to the next.
const flatTolerance = 1.10

// keptUpSeconds is the backlog, in seconds of the soak's rate, a service
// that keeps up may have at the end: a burst of GC or a slow commit on a
// shared machine leaves a second or two waiting.
const keptUpSeconds = 5

// runSoak starts the binary on an empty queue and publishes s.rate msg/s
// for s.duration, sampling its RSS every 100 ms; it prints RSS min/max,
// the queue's backlog per window, whether RSS is flat, and whether the
// service kept up: a flat RSS of a process that fell behind says little.
func runSoak(b *testing.B, s soakSettings) {
	loadBefore := loadavg()
	dir := b.TempDir()
	bin := build(b, dir)
	dbURL, db := freshDatabase(b)
	cid, _ := seed(b, db)
	q := queues(b, "soak")
	conn, err := amqp.Dial(q.URL)
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	depthCh, err := conn.Channel()
	if err != nil {
		b.Fatal(err)
	}

	p := start(b, bin, dir, "soak", dbURL, q)
	cpu0, err := p.cpu()
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var published atomic.Int64
	pubErr := make(chan error, 1)
	go func() { pubErr <- soakPublish(ctx, conn, q.Exchange, q.RoutingKey, s, message(cid), &published) }()

	start := time.Now()
	var windows []soakWindow
	cur := soakWindow{rssMin: 1 << 62}
	sample := time.NewTicker(100 * time.Millisecond)
	defer sample.Stop()
	for done := false; !done; {
		select {
		case err := <-pubErr:
			if err != nil {
				b.Fatal(err)
			}
			pubErr = nil // the publisher is done; sample to the end
		case <-sample.C:
		}
		if m, err := p.mem(); err == nil {
			cur.rssMin = min(cur.rssMin, m.rss)
			if m.rss > cur.rssMax {
				cur.rssMax, cur.atMax = m.rss, m
			}
		}
		if el := time.Since(start); el >= time.Duration(len(windows)+1)*s.window {
			cur.queued, cur.waiting, cur.published = queueDepth(b, depthCh, q.Queue), countWaiting(b, db), int(published.Load())
			windows = append(windows, cur)
			cur = soakWindow{rssMin: 1 << 62}
			done = el >= s.duration
		}
	}
	if pubErr != nil {
		if err := <-pubErr; err != nil {
			b.Fatal(err)
		}
	}
	cpu1, err := p.cpu()
	if err != nil {
		b.Fatal(err)
	}
	n := int(published.Load())
	sentInSoak := countSent(b, db, start.UnixMilli(), start.Add(s.duration).UnixMilli())
	// Then the backlog, so every message is accounted for: the drain after
	// the soak is reported, not hidden.
	tailStart := time.Now()
	deliveries := waitSent(b, db, "soak-%", n, 2*time.Minute+time.Duration(n)*5*time.Millisecond, p)
	tail := time.Since(tailStart)
	if !p.stop() {
		b.Errorf("the service did not shut down cleanly on SIGTERM")
	}

	second, last := windows[1], windows[len(windows)-1]
	flat := float64(last.rssMax) <= flatTolerance*float64(second.rssMax)
	// Kept up: at most keptUpSeconds' worth waiting at the end, in the
	// queue and as deliveries not yet sent (intake can keep the queue empty
	// while the deliveries it planned pile up); a process that falls behind
	// piles up far more over a soak.
	keptUp := last.queued <= keptUpSeconds*s.rate && last.waiting <= keptUpSeconds*3*s.rate
	achieved := float64(sentInSoak) / s.duration.Seconds()
	wantDeliveries := float64(3 * s.rate)
	var peak int64
	for _, w := range windows {
		peak = max(peak, w.rssMax)
	}
	b.ReportMetric(mib(peak), "rss_soak_peak_MiB")
	b.ReportMetric(mib(last.rssMax), "rss_soak_last_MiB")
	b.ReportMetric(achieved, "deliveries/s")

	var t strings.Builder
	fmt.Fprintf(&t, "\nBenchmarkBinary soak: %d msg/s (%d deliveries/s planned) for %s, RSS (VmRSS) sampled every 100 ms\n\n", s.rate, 3*s.rate, s.duration)
	fmt.Fprintf(&t, "| window | RSS min / max MiB | max = anon + file MiB | at its end: messages queued / deliveries not yet sent | published (confirmed) by its end |\n|---|---|---|---|---|\n")
	for i, w := range windows {
		fmt.Fprintf(&t, "| %s–%s | %.1f / %.1f | %.1f + %.1f | %d / %d | %d |\n", time.Duration(i)*s.window, time.Duration(i+1)*s.window,
			mib(w.rssMin), mib(w.rssMax), mib(w.atMax.anon), mib(w.atMax.file), w.queued, w.waiting, w.published)
	}
	fmt.Fprintf(&t, "\nRSS: peak %.1f MiB; last window's max %.1f vs the second's %.1f MiB: %s (flat = within %.0f%%)\n",
		mib(peak), mib(last.rssMax), mib(second.rssMax), map[bool]string{true: "flat", false: "GROWING"}[flat], 100*(flatTolerance-1))
	fmt.Fprintf(&t, "published %d messages = %.0f msg/s of %d asked; deliveries sent during the soak %d = %.0f/s of %.0f planned (%.0f%%)\n",
		n, float64(n)/s.duration.Seconds(), s.rate, sentInSoak, achieved, wantDeliveries, 100*achieved/wantDeliveries)
	if keptUp {
		fmt.Fprintf(&t, "kept up: at the end %d messages queued and %d deliveries not yet sent (≤ %d seconds' worth)\n", last.queued, last.waiting, keptUpSeconds)
	} else {
		fmt.Fprintf(&t, "DID NOT KEEP UP at %d msg/s: at the end %d messages queued and %d deliveries not yet sent; the RSS above is of a process behind its load\n",
			s.rate, last.queued, last.waiting)
	}
	fmt.Fprintf(&t, "after the soak: all %d deliveries sent %.1f s later; service CPU %.1f s in the soak = %.0f µs per delivery sent\n",
		deliveries, tail.Seconds(), (cpu1 - cpu0).Seconds(), float64((cpu1-cpu0).Microseconds())/float64(max(sentInSoak, 1)))
	fmt.Fprintf(&t, "load average (1/5/15 min): %s at the start, %s at the end\n", loadBefore, loadavg())
	fmt.Print(t.String())
}

// soakPublish publishes s.rate messages a second for s.duration, message i
// at its slot start+i/rate (a late tick does not lower the rate, a
// publisher that cannot keep up shows in the count), as publishAt does
// without keeping a timestamp per message.
func soakPublish(ctx context.Context, conn *amqp.Connection, exchange, key string, s soakSettings, body func(int) []byte, n *atomic.Int64) error {
	ch, err := conn.Channel()
	if err != nil {
		return err
	}
	defer ch.Close()
	// With confirms: n counts what the broker has. Without them, two soaks
	// lost their last 4 and 200 messages (the channel closed right after
	// its last publish) and the harness reported them as the service's.
	if err := ch.Confirm(false); err != nil {
		return err
	}
	var w confirmWindow
	start := time.Now()
	end := start.Add(s.duration)
	for i := 0; ; i++ {
		slot := start.Add(time.Duration(i) * time.Second / time.Duration(s.rate))
		if !slot.Before(end) {
			k, err := w.wait(ctx)
			n.Add(int64(k))
			return err
		}
		time.Sleep(time.Until(slot))
		dc, err := ch.PublishWithDeferredConfirmWithContext(ctx, exchange, key, false, false, amqp.Publishing{
			MessageId: "soak-" + strconv.Itoa(i), DeliveryMode: amqp.Persistent, ContentType: "application/json", Body: body(i)})
		if err != nil {
			return fmt.Errorf("soak publish %d: %w", i, err)
		}
		k, err := w.add(ctx, dc)
		n.Add(int64(k))
		if err != nil {
			return fmt.Errorf("soak publish %d: %w", i, err)
		}
	}
}

// countWaiting is the number of deliveries planned and not yet sent (the
// partial indexes on pending and sending keep this cheap on a large table).
func countWaiting(b *testing.B, db *gorm.DB) int {
	b.Helper()
	var n int64
	if err := db.Raw(`SELECT count(*) FROM deliveries WHERE status IN ('pending', 'sending')`).Scan(&n).Error; err != nil {
		b.Fatal(err)
	}
	return int(n)
}

// countSent is the number of deliveries sent between from and to (ms).
func countSent(b *testing.B, db *gorm.DB, from, to int64) int {
	b.Helper()
	var n int64
	if err := db.Raw(`SELECT count(*) FROM deliveries WHERE status = 'sent' AND sent_time >= ? AND sent_time < ?`, from, to).Scan(&n).Error; err != nil {
		b.Fatal(err)
	}
	return int(n)
}
