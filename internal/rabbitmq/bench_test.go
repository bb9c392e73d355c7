package rabbitmq_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/stretchr/testify/require"

	"github.com/notificationservice/notificationservice/internal/actions"
	"github.com/notificationservice/notificationservice/internal/auth"
	"github.com/notificationservice/notificationservice/internal/channels"
	"github.com/notificationservice/notificationservice/internal/config"
	"github.com/notificationservice/notificationservice/internal/dispatch"
	"github.com/notificationservice/notificationservice/internal/dispatch/delivery"
	"github.com/notificationservice/notificationservice/internal/dispatch/intake"
	"github.com/notificationservice/notificationservice/internal/dispatch/planning"
	"github.com/notificationservice/notificationservice/internal/outbox"
	"github.com/notificationservice/notificationservice/internal/preferences"
	"github.com/notificationservice/notificationservice/internal/rabbitmq"
	"github.com/notificationservice/notificationservice/internal/suppressions"
	"github.com/notificationservice/notificationservice/internal/webhooks"
)

const (
	steadyRate = 1000 // messages/s for the latency phase
	steadyFor  = 10 * time.Second
)

// benchMessages is the messages preloaded for the drain phases: 100,000, or
// NOTIFY_BENCH_MESSAGES for a short paired comparison on a busy machine.
var benchMessages = func() int {
	if n, err := strconv.Atoi(os.Getenv("NOTIFY_BENCH_MESSAGES")); err == nil && n > 0 {
		return n
	}
	return 100_000
}()

// BenchmarkQueueDrain is the figure in docs/benchmarks.md ("Queue and
// dispatch"). In one run, on the local broker and PostgreSQL:
//
//  1. bare: 100,000 messages pre-loaded on a quorum queue, drained by a
//     bare amqp091-go consume-and-ack loop with the service's consumer
//     count and prefetch;
//  2. service: 100,000 messages (one recipient, one email action) pre-loaded
//     on NotificationQueue, drained by the consumer and the workers into the
//     sandbox channel; deliveries/s until the last is sent, and the ratio to
//     the bare loop;
//  3. steady: 1,000 messages/s for 10 s; enqueue-to-send latency p50/p99
//     (publish to the delivery's sent status committed).
//
// The heap is sampled through phases 2 and 3 to show whether it stays flat.
//
// It runs three times: with the sandbox recording in memory only (the
// pipeline's own cost), with the sandbox writing every message to
// sandbox_messages as the default configuration does (one more insert per
// delivery), and "rules": in memory, with every delivery passing an
// expression condition, a preference lookup and a suppression lookup, the
// planner wired as app wires it (issue 15: within 15% of sandbox=memory).
func BenchmarkQueueDrain(b *testing.B) {
	for _, v := range []struct {
		name          string
		record, rules bool
	}{{"sandbox=memory", false, false}, {"sandbox=database", true, false}, {"rules", false, true}} {
		b.Run(v.name, func(b *testing.B) {
			for range b.N {
				benchQueueDrain(b, v.record, v.rules)
			}
		})
	}
}

func benchQueueDrain(b *testing.B, record, rules bool) {
	e := newEnv(b)
	// The default dispatch configuration, not the tests' faster polling.
	e.sandbox = channels.NewSandbox(nil, nil, nil)
	if record {
		e.sandbox = channels.NewSandbox(e.db, nil, nil)
	}
	chans := map[string]channels.Channel{"email": e.sandbox, "sms": e.sandbox, "push": e.sandbox}
	// As app.New wires them: rules and actions through the action cache,
	// kept honest by the invalidation bus.
	resolver := actions.NewRules(e.db).WithCache(e.actionCache())
	// And the delivery lifecycle events for the customer webhooks, as app
	// wires them: the collection has no endpoint (the common case), so
	// each status change costs a lookup in the subscriber snapshot.
	hooks, err := webhooks.New(e.db, outbox.NewWriter(nil, nil), config.Default().Webhooks, nil, nil)
	require.NoError(b, err)
	events := hooks.Sender(discard())
	e.disp = delivery.New(e.db, chans, config.Default().Dispatch, delivery.Senders{}, discard(), nil).WithActions(resolver).WithEvents(events)
	opts := []intake.Option{intake.WithEvents(events)}
	if rules {
		opts = append(opts, intake.WithPlanner(benchRules(b, e)))
	}
	e.intake = intake.New(e.db, resolver, nil, nil, e.disp, opts...)
	// One email action only, as the benchmark asks.
	require.NoError(b, e.db.Exec("UPDATE actions SET status = 'INACTIVE' WHERE config_name <> 'SendEmailConfig'").Error)
	e.cfg.Prefetch, e.cfg.BatchSize = 1000, 250
	message := func(i int) []byte {
		return fmt.Appendf(nil, `{"collectionId": %d, "notification": [{"name": "USER_INVITEUSER", "recipients": [{"email": "u%d@example.com", "macros": {"FNAME": "U%d"}}]}]}`,
			e.collectionID, i, i)
	}

	// 1. The bare loop on a quorum queue of its own.
	bare := testAMQP(b)
	bare.Prefetch = e.cfg.Prefetch
	conn, err := amqp.Dial(bare.URL)
	require.NoError(b, err)
	defer conn.Close()
	ch, err := conn.Channel()
	require.NoError(b, err)
	_, err = rabbitmq.Declare(ch, bare, discard(), conn.Channel)
	require.NoError(b, err)
	preload(b, conn, bare.Exchange, bare.RoutingKey, benchMessages, message)
	bareStart := time.Now()
	bareLoop(b, conn, bare.Queue, e.cfg.Consumers, bare.Prefetch, benchMessages)
	bareRate := float64(benchMessages) / time.Since(bareStart).Seconds()

	// 2. The service.
	preload(b, conn, e.cfg.Exchange, e.cfg.RoutingKey, benchMessages, message)
	var sent atomic.Int64
	var mu sync.Mutex
	sentAt := map[int64]time.Time{} // notification id → sent, steady phase only
	steady := atomic.Bool{}
	e.disp.OnSent = func(d *dispatch.Delivery) {
		sent.Add(1)
		if steady.Load() {
			mu.Lock()
			sentAt[d.NotificationID] = time.Now()
			mu.Unlock()
		}
	}
	heap := &heapSampler{}
	stopHeap := heap.run(time.Second)
	start := time.Now()
	e.start(true)
	var drained time.Duration
	require.Eventually(b, func() bool {
		if drained == 0 && e.consumer.Stats().Accepted >= int64(benchMessages) {
			drained = time.Since(start)
		}
		return sent.Load() >= int64(benchMessages)
	}, 15*time.Minute, 5*time.Millisecond)
	elapsed := time.Since(start)
	rate := float64(benchMessages) / elapsed.Seconds()
	heapAfterDrain := heap.last()

	// 3. Steady load: latency.
	steady.Store(true)
	publishedAt := map[string]time.Time{}
	tick := time.NewTicker(time.Second / steadyRate)
	n := int(steadyFor.Seconds()) * steadyRate
	pub, err := conn.Channel()
	require.NoError(b, err)
	for i := range n {
		<-tick.C
		id := "steady-" + strconv.Itoa(i)
		publishedAt[id] = time.Now()
		require.NoError(b, pub.PublishWithContext(context.Background(), e.cfg.Exchange, e.cfg.RoutingKey, false, false,
			amqp.Publishing{MessageId: id, DeliveryMode: amqp.Persistent, Body: message(benchMessages + i)}))
	}
	tick.Stop()
	require.Eventually(b, func() bool { return sent.Load() >= int64(benchMessages+n) }, 5*time.Minute, 5*time.Millisecond)
	stopHeap()
	var rows []struct {
		ID             int64
		IdempotencyKey string
	}
	require.NoError(b, e.db.Raw("SELECT id, idempotency_key FROM notifications WHERE idempotency_key LIKE 'steady-%'").Scan(&rows).Error)
	lat := make([]time.Duration, 0, len(rows))
	for _, r := range rows {
		lat = append(lat, sentAt[r.ID].Sub(publishedAt[r.IdempotencyKey]))
	}
	slices.Sort(lat)
	p := func(q float64) time.Duration { return lat[int(q*float64(len(lat)-1))] }
	phases := latencyPhases(b, e, publishedAt)

	b.ReportMetric(rate, "deliveries/s")
	b.ReportMetric(float64(benchMessages)/drained.Seconds(), "intake_msgs/s")
	b.ReportMetric(bareRate, "bare_msgs/s")
	b.ReportMetric(100*rate/bareRate, "%_of_bare")
	b.ReportMetric(float64(p(0.50).Microseconds())/1000, "p50_ms")
	b.ReportMetric(float64(p(0.99).Microseconds())/1000, "p99_ms")
	b.ReportMetric(float64(heap.peak())/(1<<20), "heap_peak_MB")
	b.Logf("bare loop %.0f msg/s; service %.0f deliveries/s (%.1f%% of bare), queue drained at %.0f msg/s; "+
		"steady %d msg/s: p50 %v p99 %v max %v; heap MB at start %.1f, after drain %.1f, end %.1f, peak %.1f",
		bareRate, rate, 100*rate/bareRate, float64(benchMessages)/drained.Seconds(), steadyRate, p(0.5), p(0.99), lat[len(lat)-1],
		mb(heap.first()), mb(heapAfterDrain), mb(heap.last()), mb(heap.peak()))
	b.Logf("steady latency by phase (ms, p50/p99): %s", phases)
}

// benchRules gives the email action a condition every recipient passes and
// the collection preferences and suppressions that match none of them (the
// lookups find rows to read past), and returns the planner as app.New wires
// it: conditions, then preferences (one query per batch), then
// suppressions (one query per batch).
func benchRules(b *testing.B, e *env) *planning.Planner {
	require.NoError(b, e.db.Model(&actions.Action{}).Where("config_name = ?", actions.ConfigEmail).Update("config", actions.Config{
		Content: actions.Content{Subject: "Hi {{FNAME}}", HTML: "<b>{{FNAME}}</b>"}, Condition: `recipient.macros.FNAME startsWith "U"`}).Error)
	prefs := preferences.New(e.db, outbox.NewWriter(nil, nil), time.Now)
	supp := suppressions.New(e.db, outbox.NewWriter(nil, nil), time.Now)
	admin := auth.Principal{UserID: "bench", Roles: []string{auth.RoleSuperAdmin}}
	for i := range 100 {
		var doc preferences.Document
		require.NoError(b, json.Unmarshal([]byte(`{"channels": {"email": false}}`), &doc))
		_, err := prefs.Put(context.Background(), admin, e.collectionID, fmt.Sprintf("other%d@example.com", i), doc)
		require.NoError(b, err)
		_, err = supp.Create(context.Background(), admin, e.collectionID, suppressions.Input{
			Address: fmt.Sprintf("bounced%d@example.com", i), Channel: "email", Reason: "bench"})
		require.NoError(b, err)
	}
	return planning.New(planning.Static(planning.Condition{}), preferences.NewRule(e.db), planning.Suppressions(suppressions.NewDispatch(supp)))
}

// latencyPhases splits the steady phase's latency, from the rows' own
// timestamps (ms): publish → intake transaction start, → claim by a worker,
// → provider accepted.
func latencyPhases(b *testing.B, e *env, publishedAt map[string]time.Time) string {
	var rows []struct {
		IdempotencyKey string
		CreatedTime    int64
		ClaimedAt      int64
		SentTime       int64
	}
	require.NoError(b, e.db.Raw(`SELECT n.idempotency_key, n.created_time, d.claimed_at, d.sent_time
FROM notifications n JOIN deliveries d ON d.notification_id = n.id WHERE n.idempotency_key LIKE 'steady-%'`).Scan(&rows).Error)
	var intake, claim, send []int64
	for _, r := range rows {
		intake = append(intake, r.CreatedTime-publishedAt[r.IdempotencyKey].UnixMilli())
		claim = append(claim, r.ClaimedAt-r.CreatedTime)
		send = append(send, r.SentTime-r.ClaimedAt)
	}
	out := ""
	for i, a := range [][]int64{intake, claim, send} {
		slices.Sort(a)
		out += fmt.Sprintf("%s %d/%d; ", []string{"publish→intake", "intake→claim", "claim→sent"}[i], a[len(a)/2], a[len(a)*99/100])
	}
	return out
}

func mb(n uint64) float64 { return float64(n) / (1 << 20) }

// preload publishes n messages with confirms, in windows.
func preload(b *testing.B, conn *amqp.Connection, exchange, key string, n int, body func(int) []byte) {
	ch, err := conn.Channel()
	require.NoError(b, err)
	defer ch.Close()
	require.NoError(b, ch.Confirm(false))
	var window []*amqp.DeferredConfirmation
	for i := range n {
		dc, err := ch.PublishWithDeferredConfirmWithContext(context.Background(), exchange, key, false, false, amqp.Publishing{
			MessageId: "pre-" + strconv.Itoa(i), DeliveryMode: amqp.Persistent, Body: body(i)})
		require.NoError(b, err)
		window = append(window, dc)
		if len(window) == 1000 {
			for _, dc := range window {
				require.True(b, dc.Wait())
			}
			window = window[:0]
		}
	}
	for _, dc := range window {
		require.True(b, dc.Wait())
	}
}

// bareLoop is the baseline: consumers channels with prefetch, each acking
// every message as it arrives, until n are acked.
func bareLoop(b *testing.B, conn *amqp.Connection, queue string, consumers, prefetch, n int) {
	var acked atomic.Int64
	var wg sync.WaitGroup
	done := make(chan struct{})
	for range consumers {
		ch, err := conn.Channel()
		require.NoError(b, err)
		require.NoError(b, ch.Qos(prefetch, 0, false))
		ds, err := ch.Consume(queue, "", false, false, false, false, nil)
		require.NoError(b, err)
		wg.Go(func() {
			defer ch.Close()
			for {
				select {
				case d := <-ds:
					if err := d.Ack(false); err != nil {
						return
					}
					if acked.Add(1) == int64(n) {
						close(done)
					}
				case <-done:
					return
				}
			}
		})
	}
	<-done
	wg.Wait()
}

// heapSampler records the live heap (after a GC) at intervals.
type heapSampler struct {
	mu      sync.Mutex
	samples []uint64
}

func (h *heapSampler) sample() {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	h.mu.Lock()
	h.samples = append(h.samples, m.HeapAlloc)
	h.mu.Unlock()
}

func (h *heapSampler) run(every time.Duration) (stop func()) {
	h.sample()
	quit := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-quit:
				h.sample()
				return
			case <-t.C:
				h.sample()
			}
		}
	})
	return func() { close(quit); wg.Wait() }
}

func (h *heapSampler) first() uint64 { h.mu.Lock(); defer h.mu.Unlock(); return h.samples[0] }
func (h *heapSampler) last() uint64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.samples[len(h.samples)-1]
}
func (h *heapSampler) peak() uint64 { h.mu.Lock(); defer h.mu.Unlock(); return slices.Max(h.samples) }
