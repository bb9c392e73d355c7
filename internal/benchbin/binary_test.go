package benchbin

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"gorm.io/gorm"

	"github.com/notificationservice/notificationservice/internal/actions"
	"github.com/notificationservice/notificationservice/internal/config"
	"github.com/notificationservice/notificationservice/internal/rabbitmq"
	"github.com/notificationservice/notificationservice/internal/store"
	"github.com/notificationservice/notificationservice/internal/testdb"
)

// settings are the sizes, small by default (the whole run takes a minute or
// two after the build); the environment scales them up.
type settings struct {
	messages int           // BENCH_MESSAGES: the drain
	rate     int           // BENCH_RATE: msg/s of the latency phase
	seconds  time.Duration // BENCH_SECONDS: each timed phase
	conns    int           // BENCH_CONNS: concurrent HTTP clients
}

func envInt(b *testing.B, name string, def int) int {
	b.Helper()
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n <= 0 {
		b.Fatalf("%s=%q: want a positive integer", name, v)
	}
	return n
}

func readSettings(b *testing.B) settings {
	return settings{
		messages: envInt(b, "BENCH_MESSAGES", 5000),
		rate:     envInt(b, "BENCH_RATE", 1000),
		seconds:  time.Duration(envInt(b, "BENCH_SECONDS", 5)) * time.Second,
		conns:    envInt(b, "BENCH_CONNS", 64),
	}
}

// BenchmarkBinary is the leading table of docs/benchmarks.md ("The built
// binary"). One iteration is the whole harness; run it with -benchtime 1x
// (make bench does).
// BENCH_SOAK_SECONDS runs the soak (soak_test.go) instead of the phases.
func BenchmarkBinary(b *testing.B) {
	for range b.N {
		if s, ok := readSoak(b); ok {
			runSoak(b, s)
			continue
		}
		runHarness(b, readSettings(b))
	}
}

func runHarness(b *testing.B, s settings) {
	loadBefore := loadavg()
	dir := b.TempDir()
	bin := build(b, dir)
	st, err := os.Stat(bin)
	if err != nil {
		b.Fatal(err)
	}
	dbURL, db := freshDatabase(b)
	cid, actionID := seed(b, db)
	svcQ, bareQ := queues(b, "svc"), queues(b, "bare")
	conn, err := amqp.Dial(svcQ.URL)
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	ctx := context.Background()
	def := config.Default().AMQP
	deadline := 2*time.Minute + time.Duration(s.messages)*5*time.Millisecond // a bound on any drain: 200 msg/s at the least

	// 1. Bare amqp091-go: the same messages, preloaded, consumed and acked
	// with the service's consumer count and prefetch; then the same fixed
	// rate, publish→receive.
	if err := preload(ctx, conn, bareQ.Exchange, bareQ.RoutingKey, s.messages, preID, message(cid)); err != nil {
		b.Fatal(err)
	}
	t0 := time.Now()
	if _, err := bareConsume(conn, bareQ.Queue, def.Consumers, def.Prefetch, s.messages, deadline); err != nil {
		b.Fatal(err)
	}
	bareDrain := float64(s.messages) / time.Since(t0).Seconds()
	steadyN := s.rate * int(s.seconds/time.Second)
	bareLatC := make(chan []time.Duration, 1)
	go func() {
		lat, err := bareConsume(conn, bareQ.Queue, def.Consumers, def.Prefetch, steadyN, s.seconds+deadline)
		if err != nil {
			b.Error(err)
		}
		bareLatC <- lat
	}()
	time.Sleep(200 * time.Millisecond) // let the consumers attach before the clock starts
	if _, err := publishAt(ctx, conn, bareQ.Exchange, bareQ.RoutingKey, steadyN, s.rate, steadyID, message(cid)); err != nil {
		b.Fatal(err)
	}
	bareLat := <-bareLatC

	// 2. Bare Gin: the service's GET answer from memory, and bind + one
	// INSERT, at the same concurrency as the service will see.
	tok := token(b, bin, dir)

	// 3. The binary, first idle: RSS at rest, then the cached GET.
	p := start(b, bin, dir, "idle", dbURL, svcQ)
	time.Sleep(time.Second) // settle: the listeners connect, the first GC runs
	idle, err := p.mem()
	if err != nil {
		b.Fatal(err)
	}
	idleHeap := heapAtIdle(b, p)
	getURL := fmt.Sprintf("http://%s/v1/collections/%d/actions/%d", p.addr, cid, actionID)
	body := getBody(b, getURL, tok)
	bodyFile := filepath.Join(dir, "action.json")
	if err := os.WriteFile(bodyFile, body, 0o600); err != nil {
		b.Fatal(err)
	}
	bg := startBare(b, dir, "bare-get", envBareMode+"=get", envBareBody+"="+bodyFile)
	bareGetURL := fmt.Sprintf("http://%s/v1/collections/%d/actions/%d", bg.addr, cid, actionID)
	get := closedLoop(s.conns, s.seconds, http.StatusOK, func(int64) *http.Request { return request(http.MethodGet, getURL, tok, "") })
	bareGetRes := closedLoop(s.conns, s.seconds, http.StatusOK, func(int64) *http.Request { return request(http.MethodGet, bareGetURL, tok, "") })
	bareRSS, err := bg.rss()
	if err != nil {
		b.Fatal(err)
	}
	bg.stop()
	if !p.stop() {
		b.Errorf("the idle service did not shut down cleanly on SIGTERM")
	}

	// 3b. A first start: the binary migrates an empty database itself, as a
	// newcomer's first make run and an upgrade's start do. Its heap a second
	// later shows what start-up left behind: a large goal would let it grow
	// at idle until the runtime's forced collection (docs/benchmarks.md).
	fp := start(b, bin, dir, "first", emptyDatabase(b), svcQ)
	time.Sleep(time.Second)
	firstHeap := heapAtIdle(b, fp)
	if !fp.stop() {
		b.Errorf("the first-start service did not shut down cleanly on SIGTERM")
	}

	// 4. The drain: the messages preloaded, then the binary started; the
	// rate from the first notification's intake to the last delivery sent.
	if err := preload(ctx, conn, svcQ.Exchange, svcQ.RoutingKey, s.messages, preID, message(cid)); err != nil {
		b.Fatal(err)
	}
	p = start(b, bin, dir, "serve", dbURL, svcQ)
	rss := sampleRSS(p, 100*time.Millisecond)
	cpu0, err := p.cpu()
	if err != nil {
		b.Fatal(err)
	}
	pm := postmaster(db)
	var pg0 time.Duration
	if pm != 0 {
		if pg0, err = clusterCPU(pm); err != nil {
			b.Fatal(err)
		}
	}
	// A profile of the drain's first seconds (BENCH_PROFILE_DIR): a
	// 5,000-message drain lasts about a second on two cores, so it is
	// meaningful with BENCH_MESSAGES of 20,000 and more.
	drainProfiled := profile(b, p, "drain", s.seconds)
	pool0 := poolWait(b, p)
	waitConsumed(b, conn, svcQ.Queue, deadline)
	deliveries := waitSent(b, db, "pre-%", s.messages, deadline, p)
	// The intake's batches of each phase, from the service's own /metrics:
	// what batch sizes the queue's batchWait and the REST group commit
	// gave, and what each transaction cost.
	drained := intakeBatches(b, p, "queue")
	poolDrained := poolWait(b, p)
	// CPU per delivery moves far less with the machine's load than the
	// rate does: it is how a GC setting's cost shows on a shared machine.
	cpu1, err := p.cpu()
	if err != nil {
		b.Fatal(err)
	}
	drainCPU := float64((cpu1 - cpu0).Microseconds()) / float64(max(deliveries, 1))
	drainPG, pgPer := "PostgreSQL is not on this machine", -1.0
	if pm != 0 {
		pg1, err := clusterCPU(pm)
		if err != nil {
			b.Fatal(err)
		}
		pgPer = float64((pg1 - pg0).Microseconds()) / float64(max(deliveries, 1))
		drainPG = fmt.Sprintf("%.0f µs per delivery", pgPer)
	}
	var span struct{ First, Last int64 }
	if err := db.Raw(`SELECT min(n.created_time) AS first, max(d.sent_time) AS last FROM notifications n
JOIN deliveries d ON d.notification_id = n.id WHERE n.idempotency_key LIKE 'pre-%'`).Scan(&span).Error; err != nil {
		b.Fatal(err)
	}
	drainSecs := float64(max(span.Last-span.First, 1)) / 1000

	// 5. Enqueue→sent at the fixed rate: publish → the message's last
	// delivery committed as sent (the row's own sent_time, ms).
	published, err := publishAt(ctx, conn, svcQ.Exchange, svcQ.RoutingKey, steadyN, s.rate, steadyID, message(cid))
	if err != nil {
		b.Fatal(err)
	}
	waitSent(b, db, "steady-%", steadyN, deadline, p)
	lat, toIntake, fromIntake := steadyLatency(b, db, published)
	steadied := intakeBatches(b, p, "queue")
	queuePeak := rss.peakSoFar() // the queue's work only; the REST phases below add their connections

	// 6. The REST send against bare Gin + INSERT, at the same concurrency.
	sendURL := fmt.Sprintf("http://%s/v1/collections/%d/notifications", p.addr, cid)
	if err := db.Exec(bareTable).Error; err != nil {
		b.Fatal(err)
	}
	bi := startBare(b, dir, "bare-insert", envBareMode+"=insert", envBareDB+"="+dbURL)
	bareSendURL := fmt.Sprintf("http://%s/v1/collections/%d/notifications", bi.addr, cid)
	send := func(url, prefix string) func(int64) *http.Request {
		return func(i int64) *http.Request {
			r := request(http.MethodPost, url, tok, restBody(int(i)))
			r.Header.Set("Idempotency-Key", prefix+strconv.FormatInt(i, 10))
			return r
		}
	}
	drainProfiled()
	restProfiled := profile(b, p, "rest", s.seconds)
	rest0 := intakeBatches(b, p, "api")
	poolRest0 := poolWait(b, p)
	restStmts := startStatements(b, db)
	restCPU := startCPU(b, p, pm)
	rest := closedLoop(s.conns, s.seconds, http.StatusAccepted, send(sendURL, "rest-"))
	restSpent := restCPU.per(b, rest.ok)
	restStatements := restStmts.table(b, rest.ok)
	rest1 := intakeBatches(b, p, "api")
	poolRest1 := poolWait(b, p)
	restProfiled()
	bareRest := closedLoop(s.conns, s.seconds, http.StatusAccepted, send(bareSendURL, "bare-"))
	// And at the fixed rate, open loop: latency from each request's slot.
	waitSent(b, db, "rest-%", rest.ok, deadline, p) // the closed loop's backlog out of the way
	rest2 := intakeBatches(b, p, "api")
	poolRest2 := poolWait(b, p)
	restAt := openLoop(s.rate, s.seconds, http.StatusAccepted, send(sendURL, "rate-"))
	rest3 := intakeBatches(b, p, "api")
	poolRest3 := poolWait(b, p)
	bareAt := openLoop(s.rate, s.seconds, http.StatusAccepted, send(bareSendURL, "barerate-"))
	bi.stop()
	// End: the REST backlog sent, the process at rest again.
	waitSent(b, db, "rate-%", restAt.ok, deadline, p)
	peak, end := rss.finish()
	if !p.stop() {
		b.Errorf("the service did not shut down cleanly on SIGTERM")
	}

	drainRate := float64(deliveries) / drainSecs
	msgRate := float64(s.messages) / drainSecs
	b.ReportMetric(drainRate, "deliveries/s")
	b.ReportMetric(100*msgRate/bareDrain, "%drain_of_bare")
	b.ReportMetric(float64(pct(lat, 0.99).Microseconds())/1000, "p99_ms")
	b.ReportMetric(rest.rate(), "rest_accepted/s")
	b.ReportMetric(get.rate(), "get/s")
	b.ReportMetric(mib(queuePeak.rss), "rss_drain_peak_MiB")
	b.ReportMetric(mib(queuePeak.anon), "rss_anon_drain_peak_MiB")
	b.ReportMetric(drainCPU, "drain_cpu_us/delivery")
	if pgPer >= 0 {
		b.ReportMetric(pgPer, "drain_pg_us/delivery")
	}

	ms := func(d time.Duration) string { return strconv.FormatFloat(float64(d.Microseconds())/1000, 'f', 1, 64) }
	var t strings.Builder
	fmt.Fprintf(&t, "\nBenchmarkBinary: the built binary (docs/benchmarks.md)\n\n| measure | service | bare, same run | ratio |\n|---|---|---|---|\n")
	fmt.Fprintf(&t, "| drain, %d messages (%d deliveries), default config | %.0f deliveries/s = %.0f msg/s | amqp091-go consume+ack: %.0f msg/s | %.1f%% (msg/s), %.1f%% (deliveries/s) |\n",
		s.messages, deliveries, drainRate, msgRate, bareDrain, 100*msgRate/bareDrain, 100*drainRate/bareDrain)
	fmt.Fprintf(&t, "| service CPU in the drain (user+sys, /proc/<pid>/stat) | %.0f µs per delivery | – | – |\n", drainCPU)
	fmt.Fprintf(&t, "| PostgreSQL CPU in the drain (the server's processes, exited backends included; every database in it) | %s | – | – |\n", drainPG)
	fmt.Fprintf(&t, "| enqueue→sent at %d msg/s for %s, p50 / p99 / max | %s / %s / %s ms | publish→consume: %s / %s / %s ms | – |\n",
		s.rate, s.seconds, ms(pct(lat, 0.5)), ms(pct(lat, 0.99)), ms(pct(lat, 1)), ms(pct(bareLat, 0.5)), ms(pct(bareLat, 0.99)), ms(pct(bareLat, 1)))
	fmt.Fprintf(&t, "| the same, split at the intake's clock: publish→intake p50 / p99, intake→sent p50 / p99 | %s / %s ms, %s / %s ms | – | – |\n",
		ms(pct(toIntake, 0.5)), ms(pct(toIntake, 0.99)), ms(pct(fromIntake, 0.5)), ms(pct(fromIntake, 0.99)))
	fmt.Fprintf(&t, "| REST send, %d connections, %s: accepted/s (p50 / p99) | %.0f/s (%s / %s ms), %d other | Gin + one INSERT: %.0f/s (%s / %s ms), %d other | %.1f%% |\n",
		s.conns, s.seconds, rest.rate(), ms(pct(rest.lat, 0.5)), ms(pct(rest.lat, 0.99)), rest.other,
		bareRest.rate(), ms(pct(bareRest.lat, 0.5)), ms(pct(bareRest.lat, 0.99)), bareRest.other, 100*rest.rate()/bareRest.rate())
	fmt.Fprintf(&t, "| CPU per accepted send in that phase: the service / PostgreSQL / this load generator (deliveries included, as far as they ran in it) | %s | – | – |\n", restSpent)
	fmt.Fprintf(&t, "| REST send at %d req/s for %s (open loop): p50 / p99 (accepted/s) | %s / %s ms (%.0f/s), %d other | Gin + one INSERT: %s / %s ms (%.0f/s), %d other | – |\n",
		s.rate, s.seconds, ms(pct(restAt.lat, 0.5)), ms(pct(restAt.lat, 0.99)), restAt.rate(), restAt.other,
		ms(pct(bareAt.lat, 0.5)), ms(pct(bareAt.lat, 0.99)), bareAt.rate(), bareAt.other)
	fmt.Fprintf(&t, "| intake transactions (notify_intake_batch_*): drain / queue at %d msg/s / REST, %d connections / REST at %d req/s | %s / %s / %s / %s | – | – |\n",
		s.rate, s.conns, s.rate, drained.since(batches{}), steadied.since(drained), rest1.since(rest0), rest3.since(rest2))
	fmt.Fprintf(&t, "| waits for a database connection (go_sql_wait_*, database.maxOpenConns): drain / REST, %d connections / REST at %d req/s | %s / %s / %s | – | – |\n",
		s.conns, s.rate, poolDrained.since(pool0, deliveries, "delivery"), poolRest1.since(poolRest0, rest.ok, "send"), poolRest3.since(poolRest2, restAt.ok, "send"))
	fmt.Fprintf(&t, "| GET an action (cached), %d connections, %s (p50 / p99) | %.0f/s (%s / %s ms), %d other | Gin, same JSON from memory: %.0f/s (%s / %s ms) | %.1f%% |\n",
		s.conns, s.seconds, get.rate(), ms(pct(get.lat, 0.5)), ms(pct(get.lat, 0.99)), get.other,
		bareGetRes.rate(), ms(pct(bareGetRes.lat, 0.5)), ms(pct(bareGetRes.lat, 0.99)), 100*get.rate()/bareGetRes.rate())
	fmt.Fprintf(&t, "| RSS (VmRSS): idle / peak in the drain and the fixed rate / peak with the REST phases / end | %.1f / %.1f / %.1f / %.1f MiB | bare Gin (this test binary) after its GET load: %.1f MiB | – |\n",
		mib(idle.rss), mib(queuePeak.rss), mib(peak.rss), mib(end.rss), mib(bareRSS))
	fmt.Fprintf(&t, "| the same, total (anonymous + file-backed: heap, stacks, runtime / the executable's pages) | %s / %s / %s / %s MiB | – | – |\n",
		idle, queuePeak, peak, end)
	fmt.Fprintf(&t, "| Go heap 1 s after start, allocated / the next collection's goal (go_memstats_heap_alloc_bytes / go_memstats_next_gc_bytes): the idle binary / a first start, migrating an empty database | %.1f / %.1f MiB, %.1f / %.1f MiB | – | – |\n",
		idleHeap.alloc/(1<<20), idleHeap.goal/(1<<20), firstHeap.alloc/(1<<20), firstHeap.goal/(1<<20))
	fmt.Fprintf(&t, "| binary size (-trimpath -s -w) | %.1f MB | – | – |\n", float64(st.Size())/1e6)
	t.WriteString(restStatements)
	fmt.Fprintf(&t, "\nload average (1/5/15 min): %s at the start, %s at the end\n", loadBefore, loadavg())
	// To stdout, not b.Log: the testing package cuts a benchmark's log to
	// ten lines without -v.
	fmt.Print(t.String())
}

// loadavg is /proc/loadavg's three load averages: the machine is shared,
// so every figure is quoted with it.
func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}

func mib(n int64) float64 { return float64(n) / (1 << 20) }

func preID(i int) string    { return "pre-" + strconv.Itoa(i) }
func steadyID(i int) string { return "steady-" + strconv.Itoa(i) }

// recipient is message i's one recipient, the whole docs/queue.md model:
// tos, email, phone, pushId, locale, macros; every action has an address.
func recipient(i int) string {
	return fmt.Sprintf(`{"tos": [{"email": "to%d@example.com", "name": "To %d"}], "ccs": [], "bccs": [], "email": "u%d@example.com", `+
		`"phone": "+1555%07d", "pushId": "push-%d", "locale": "en_US", "macros": {"FNAME": "U%d"}}`, i, i, i, i, i, i)
}

// message is the queue message: docs/queue.md's NotificationQueue model.
func message(cid int64) func(int) []byte {
	return func(i int) []byte {
		return fmt.Appendf(nil, `{"collectionId": %d, "notification": [{"name": "USER_INVITEUSER", "recipients": [%s]}]}`, cid, recipient(i))
	}
}

// restBody is the REST send of the same notification.
func restBody(i int) string {
	return fmt.Sprintf(`{"notification": [{"name": "USER_INVITEUSER", "recipients": [%s]}]}`, recipient(i))
}

// freshDatabase creates a database of the harness's own on the local
// PostgreSQL (dropped at the end, connections forced off), migrated.
func freshDatabase(b *testing.B) (string, *gorm.DB) {
	b.Helper()
	ctx := context.Background()
	u := emptyDatabase(b)
	// As many connections as the service's pool: the bare INSERT handler
	// uses this one.
	db, err := store.Open(ctx, config.Database{URL: u, MaxOpenConns: config.Default().Database.MaxOpenConns})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = store.Close(db) })
	if err := store.Migrate(ctx, db, slog.New(slog.DiscardHandler)); err != nil {
		b.Fatal(err)
	}
	return u, db
}

// emptyDatabase creates a database of its own on the local PostgreSQL,
// dropped when b ends, with nothing in it, and returns its URL.
func emptyDatabase(b *testing.B) string {
	b.Helper()
	ctx := context.Background()
	admin, err := store.Open(ctx, config.Database{URL: testdb.PostgresURL(), MaxOpenConns: 2})
	if err != nil {
		testdb.Unavailable(b, "PostgreSQL", err)
	}
	name := testdb.Name("bench_")
	if err := admin.Exec("CREATE DATABASE " + name).Error; err != nil {
		_ = store.Close(admin)
		b.Fatal(err)
	}
	b.Cleanup(func() {
		if err := admin.Exec("DROP DATABASE " + name + " WITH (FORCE)").Error; err != nil {
			b.Errorf("drop database %s: %v", name, err)
		}
		_ = store.Close(admin)
	})
	return databaseURL(b, testdb.PostgresURL(), name)
}

// seed creates a collection with the ACTIVE event USER_INVITEUSER and an
// email, an SMS and a push action (each message plans three deliveries,
// rendered with its macro), and returns the collection and the email
// action's id.
func seed(b *testing.B, db *gorm.DB) (cid, emailID int64) {
	b.Helper()
	now := time.Now().UnixMilli()
	var eid int64
	if err := db.Raw(`INSERT INTO collections (name, status, created_time, updated_time) VALUES ('bench', 'ACTIVE', ?, ?) RETURNING id`,
		now, now).Scan(&cid).Error; err != nil {
		b.Fatal(err)
	}
	if err := db.Raw(`INSERT INTO events (collection_id, name, status, created_time, updated_time) VALUES (?, 'USER_INVITEUSER', 'ACTIVE', ?, ?) RETURNING id`,
		cid, now, now).Scan(&eid).Error; err != nil {
		b.Fatal(err)
	}
	for _, a := range []actions.Action{
		{Name: "email", ConfigName: actions.ConfigEmail, Config: actions.Config{Content: actions.Content{Subject: "Hi {{FNAME}}", HTML: "<b>{{FNAME}}</b>"}}},
		{Name: "sms", ConfigName: actions.ConfigSMS, Config: actions.Config{Content: actions.Content{Body: "Hi {{FNAME}}"}}},
		{Name: "push", ConfigName: actions.ConfigPush, Config: actions.Config{Content: actions.Content{Title: "Hi", Body: "Hi {{FNAME}}"}}},
	} {
		a.CollectionID, a.EventID, a.Status, a.CreatedTime, a.UpdatedTime = cid, eid, actions.StatusActive, now, now
		if err := db.Create(&a).Error; err != nil {
			b.Fatal(err)
		}
		if a.ConfigName == actions.ConfigEmail {
			emailID = a.ID
		}
	}
	return cid, emailID
}

// amqpURL is the broker: NOTIFY_TEST_AMQP_URL or the local one.
func amqpURL() string {
	if u := os.Getenv("NOTIFY_TEST_AMQP_URL"); u != "" {
		return u
	}
	return "amqp://guest:guest@127.0.0.1:5672/"
}

// queues names queues and exchanges of the harness's own on the shared
// broker, declares them as the service does (so messages published before
// it starts are routed) and deletes them at the end.
func queues(b *testing.B, role string) config.AMQP {
	b.Helper()
	cfg := config.Default().AMQP
	cfg.URL = amqpURL()
	prefix := testdb.Name("bench_" + role + "_")
	cfg.Exchange, cfg.Queue, cfg.RoutingKey = prefix+".ex", prefix+".NotificationQueue", prefix+".NotificationQueue"
	cfg.DeadLetterExchange, cfg.DeadLetterQueue = prefix+".dlx", prefix+".dlq"
	conn, err := amqp.Dial(cfg.URL)
	if err != nil {
		testdb.Unavailable(b, "RabbitMQ", err)
	}
	ch, err := conn.Channel()
	if err != nil {
		b.Fatal(err)
	}
	if _, err := rabbitmq.Declare(ch, cfg, slog.New(slog.DiscardHandler), conn.Channel); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		defer conn.Close()
		ch, err := conn.Channel()
		if err != nil {
			return
		}
		_, _ = ch.QueueDelete(cfg.Queue, false, false, false)
		_, _ = ch.QueueDelete(cfg.DeadLetterQueue, false, false, false)
		_ = ch.ExchangeDelete(cfg.Exchange, false, false)
		_ = ch.ExchangeDelete(cfg.DeadLetterExchange, false, false)
	})
	return cfg
}

// waitSent waits until the n notifications whose key matches like exist
// and every delivery of theirs is sent, and returns how many deliveries
// that is. Any other final status fails: the harness measures sends.
func waitSent(b *testing.B, db *gorm.DB, like string, n int, d time.Duration, p *process) int {
	b.Helper()
	if n == 0 {
		return 0
	}
	var c struct{ Notifications, Deliveries, Sent int64 }
	for deadline := time.Now().Add(d); ; {
		if err := db.Raw(`SELECT (SELECT count(*) FROM notifications WHERE idempotency_key LIKE ?) AS notifications,
count(*) AS deliveries, count(*) FILTER (WHERE d.status = 'sent') AS sent
FROM deliveries d JOIN notifications n ON n.id = d.notification_id WHERE n.idempotency_key LIKE ?`, like, like).Scan(&c).Error; err != nil {
			b.Fatal(err)
		}
		if c.Notifications >= int64(n) && c.Deliveries > 0 && c.Sent == c.Deliveries {
			return int(c.Deliveries)
		}
		if time.Now().After(deadline) {
			var rows []struct {
				Status string
				N      int64
			}
			_ = db.Raw(`SELECT d.status, count(*) AS n FROM deliveries d JOIN notifications n ON n.id = d.notification_id
WHERE n.idempotency_key LIKE ? GROUP BY d.status`, like).Scan(&rows).Error
			b.Fatalf("%s: after %s, %d of %d notifications, %d of %d deliveries sent; by status %v\n%s", like, d, c.Notifications, n, c.Sent, c.Deliveries, rows,
				unsettled(db, like, n, p))
		}
		time.Sleep(100 * time.Millisecond) // the work happens in the service: poll its database
	}
}

// unsettled says what became of the messages waitSent did not see: the
// keys missing among like's 0..n-1 (the first ten), and the service's own
// queue counters (consumed, dead-lettered, requeued), so that a message
// the broker lost can be told from one the service dropped or parked.
func unsettled(db *gorm.DB, like string, n int, p *process) string {
	var have []string
	_ = db.Raw(`SELECT idempotency_key FROM notifications WHERE idempotency_key LIKE ?`, like).Scan(&have).Error
	seen := make(map[string]bool, len(have))
	for _, k := range have {
		seen[k] = true
	}
	prefix := strings.TrimSuffix(like, "%")
	var missing []string
	for i := 0; i < n && len(missing) < 10; i++ {
		if k := prefix + strconv.Itoa(i); !seen[k] {
			missing = append(missing, k)
		}
	}
	var out strings.Builder
	fmt.Fprintf(&out, "missing keys (first ten): %v\n", missing)
	// Messages the broker still holds, ready, beside consumers that do not
	// take them, are the service's; none ready (and none missing from the
	// counters below) points at the publisher or the broker.
	fmt.Fprintf(&out, "queue %s: %s\n", p.amqp.Queue, brokerQueue(p.amqp))
	if err := metricsLines(p, func(line string) error {
		if strings.HasPrefix(line, "notify_queue_") {
			out.WriteString(line + "\n")
		}
		return nil
	}); err != nil {
		fmt.Fprintf(&out, "metrics: %v\n", err)
	}
	return out.String()
}

// brokerQueue is what the broker says of a's queue: messages ready and
// consumers, or why it could not say.
func brokerQueue(a config.AMQP) string {
	conn, err := amqp.Dial(a.URL)
	if err != nil {
		return err.Error()
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		return err.Error()
	}
	q, err := ch.QueueDeclarePassive(a.Queue, true, false, false, false, nil)
	if err != nil {
		return err.Error()
	}
	return fmt.Sprintf("%d messages ready, %d consumers", q.Messages, q.Consumers)
}

// waitConsumed waits until queue has no message ready, asking the broker
// every 100 ms. The drain waits on it before waitSent, whose count scans
// both of the service's big tables (24 ms a call on average, up to 104 ms,
// in a 10,000-message run; pg_stat_statements): polled every 100 ms
// through the drain, it took PostgreSQL time from the service being
// measured, which PostgreSQL bounds. Once the queue is empty, what is left
// is the deliveries of the last messages the consumers had prefetched.
func waitConsumed(b *testing.B, conn *amqp.Connection, queue string, d time.Duration) {
	b.Helper()
	ch, err := conn.Channel()
	if err != nil {
		b.Fatal(err)
	}
	defer ch.Close()
	for deadline := time.Now().Add(d); time.Now().Before(deadline); {
		if queueDepth(b, ch, queue) == 0 {
			return
		}
		time.Sleep(100 * time.Millisecond) // the broker's count: cheap to ask, the consuming is the service's
	}
	// Past the deadline waitSent reports what is missing.
}

// queueDepth is how many messages queue has ready, as the broker counts
// them (a passive declare on ch).
func queueDepth(b *testing.B, ch *amqp.Channel, queue string) int {
	b.Helper()
	q, err := ch.QueueDeclarePassive(queue, true, false, false, false, amqp.Table{})
	if err != nil {
		b.Fatalf("queue depth: %v", err)
	}
	return q.Messages
}

// steadyLatency is, per steady message, its publish time to its last
// delivery's sent_time (ms resolution), sorted; and the same split at the
// intake's clock (the notification's created_time, taken as the intake
// starts on its batch): publish→intake (the broker, the consumer's
// prefetch and batch wait, the intake's turn) and intake→sent (the
// transaction, the hand-off, the render and the provider call).
func steadyLatency(b *testing.B, db *gorm.DB, published []time.Time) (total, toIntake, fromIntake []time.Duration) {
	b.Helper()
	var rows []struct {
		Key     string
		Created int64
		Sent    int64
	}
	if err := db.Raw(`SELECT n.idempotency_key AS key, n.created_time AS created, max(d.sent_time) AS sent FROM notifications n
JOIN deliveries d ON d.notification_id = n.id WHERE n.idempotency_key LIKE 'steady-%' GROUP BY n.idempotency_key, n.created_time`).Scan(&rows).Error; err != nil {
		b.Fatal(err)
	}
	for _, r := range rows {
		i, err := strconv.Atoi(strings.TrimPrefix(r.Key, "steady-"))
		if err != nil || i >= len(published) {
			b.Fatalf("unexpected steady key %q", r.Key)
		}
		total = append(total, time.UnixMilli(r.Sent).Sub(published[i]))
		toIntake = append(toIntake, time.UnixMilli(r.Created).Sub(published[i]))
		fromIntake = append(fromIntake, time.Duration(r.Sent-r.Created)*time.Millisecond)
	}
	slices.Sort(total)
	slices.Sort(toIntake)
	slices.Sort(fromIntake)
	return total, toIntake, fromIntake
}

// getBody GETs url once (the first GET fills the action cache) and returns
// the answer, which the bare handler then serves.
func getBody(b *testing.B, url, tok string) []byte {
	b.Helper()
	resp, err := http.DefaultClient.Do(request(http.MethodGet, url, tok, ""))
	if err != nil {
		b.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		b.Fatalf("GET %s: %d %v: %s", url, resp.StatusCode, err, body)
	}
	return body
}
