package faulttest

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"golang.org/x/time/rate"
	"gorm.io/gorm"

	"github.com/notificationservice/notificationservice/internal/actions"
	"github.com/notificationservice/notificationservice/internal/config"
	"github.com/notificationservice/notificationservice/internal/metrics"
	"github.com/notificationservice/notificationservice/internal/rabbitmq"
	"github.com/notificationservice/notificationservice/internal/store"
	"github.com/notificationservice/notificationservice/internal/testdb"
)

// buildService builds the service binary into dir (no -race: the suite
// measures the binary operators run). The suite runs it while its servers
// start, so it returns the error rather than failing the test.
func buildService(dir string) (string, error) {
	bin := filepath.Join(dir, "notificationservice")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, "go", "build", "-o", bin,
		"github.com/notificationservice/notificationservice/cmd/notificationservice").CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("go build: %w\n%s", err, out)
	}
	return bin, nil
}

// cleanEnv is the environment without NOTIFY_* variables, which the
// service would refuse (the test runner's own) or that would override ours.
func cleanEnv() []string {
	var out []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, config.EnvPrefix) && !strings.HasPrefix(kv, "RABBITMQ_") {
			out = append(out, kv)
		}
	}
	return out
}

// scenario is one fault scenario: its own database on the private cluster,
// its own queue names on the private node, the instances it started and
// what its clients saw.
type scenario struct {
	t            *testing.T
	s            *suite
	name         string
	dbName       string
	db           *gorm.DB
	amqp         config.AMQP
	collectionID int64
	dir          string
	instances    []*instance

	mu        sync.Mutex
	confirmed map[string]bool // message ids the broker confirmed, REST keys answered 202
	rest      map[int]int     // REST answers by status code (0: no answer)
	bodies500 []string        // the first few 500 bodies, logged: a 500 is a target miss to explain
}

// newScenario creates database name (in tablespace, if given), migrates
// it, seeds an ACTIVE event with an email and an SMS action, and names the
// scenario's queues.
func (s *suite) newScenario(t *testing.T, name, tablespace string) *scenario {
	t.Helper()
	sc := &scenario{t: t, s: s, name: name, dbName: "f_" + strings.ReplaceAll(name, "-", "_"), dir: t.TempDir(),
		confirmed: map[string]bool{}, rest: map[int]int{}}
	create := "CREATE DATABASE " + sc.dbName
	if tablespace != "" {
		create += " TABLESPACE " + tablespace
	}
	sc.exec(s.admin, create)
	ctx := context.Background()
	db, err := store.Open(ctx, config.Database{URL: s.pg.url(sc.dbName), MaxOpenConns: 4})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = store.Close(db) })
	sc.db = db
	if err := store.Migrate(ctx, db, slog.New(slog.DiscardHandler)); err != nil {
		t.Fatal(err)
	}
	sc.collectionID = seedRule(t, db)

	cfg := config.Default().AMQP
	cfg.URL = s.rabbit.url()
	prefix := sc.dbName
	cfg.Exchange, cfg.Queue, cfg.RoutingKey = prefix+".ex", prefix+".NotificationQueue", prefix+".NotificationQueue"
	cfg.DeadLetterExchange, cfg.DeadLetterQueue = prefix+".dlx", prefix+".dlq"
	sc.amqp = cfg
	// Declare up front, as the service would, so messages published before
	// it starts are routed.
	conn, err := amqp.Dial(cfg.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := rabbitmq.Declare(ch, cfg, slog.New(slog.DiscardHandler), conn.Channel); err != nil {
		t.Fatal(err)
	}
	return sc
}

func (sc *scenario) exec(db *gorm.DB, sql string) {
	sc.t.Helper()
	if err := db.Exec(sql).Error; err != nil {
		sc.t.Fatalf("%s: %v", sql, err)
	}
}

// seedRule creates a collection with the ACTIVE event USER_INVITEUSER and
// an email and an SMS action: every message plans two deliveries.
func seedRule(t testing.TB, db *gorm.DB) int64 {
	t.Helper()
	now := time.Now().UnixMilli()
	var cid, eid int64
	if err := db.Raw(`INSERT INTO collections (name, status, created_time, updated_time) VALUES (?, 'ACTIVE', ?, ?) RETURNING id`,
		testdb.Name("c"), now, now).Scan(&cid).Error; err != nil {
		t.Fatal(err)
	}
	if err := db.Raw(`INSERT INTO events (collection_id, name, status, created_time, updated_time) VALUES (?, 'USER_INVITEUSER', 'ACTIVE', ?, ?) RETURNING id`,
		cid, now, now).Scan(&eid).Error; err != nil {
		t.Fatal(err)
	}
	for _, a := range []actions.Action{
		{Name: "email", ConfigName: actions.ConfigEmail, Config: actions.Config{Content: actions.Content{Subject: "Hi {{FNAME}}", HTML: "<b>{{FNAME}}</b>"}}},
		{Name: "sms", ConfigName: actions.ConfigSMS, Config: actions.Config{Content: actions.Content{Body: "Hi {{FNAME}}"}}},
	} {
		a.CollectionID, a.EventID, a.Status, a.CreatedTime, a.UpdatedTime = cid, eid, actions.StatusActive, now, now
		if err := db.Create(&a).Error; err != nil {
			t.Fatal(err)
		}
	}
	return cid
}

// recipients is the recipient list of message i: one recipient with an
// email address and a valid phone number, so both actions send.
func recipients(i int) string {
	return fmt.Sprintf(`[{"email": "u%d@example.com", "phone": "+1555%07d", "macros": {"FNAME": "U%d"}}]`, i, i, i)
}

func (sc *scenario) message(i int) []byte {
	return fmt.Appendf(nil, `{"collectionId": %d, "notification": [{"name": "USER_INVITEUSER", "recipients": %s}]}`, sc.collectionID, recipients(i))
}

// count runs a COUNT-like query, retrying while the database is coming
// back (the scenario may just have restarted it).
func (sc *scenario) count(q string, args ...any) int64 {
	sc.t.Helper()
	var n int64
	var err error
	for deadline := time.Now().Add(time.Minute); ; {
		if err = sc.db.Raw(q, args...).Scan(&n).Error; err == nil {
			return n
		}
		if time.Now().After(deadline) {
			sc.t.Fatalf("%s: %v", q, err)
		}
		time.Sleep(200 * time.Millisecond) // the database is down: poll until it answers
	}
}

// instance is one running service process.
type instance struct {
	name    string
	cmd     *exec.Cmd
	addr    string
	logPath string
	done    chan struct{}
}

// start runs the binary against the scenario's database and queues. The
// environment is clean (cleanEnv) and the config file absent, so only the
// variables set here apply.
func (sc *scenario) start(name string, extra ...string) *instance {
	sc.t.Helper()
	in := &instance{name: name, addr: fmt.Sprintf("127.0.0.1:%d", freePort(sc.t)),
		logPath: filepath.Join(sc.dir, name+".log"), done: make(chan struct{})}
	logf, err := os.Create(in.logPath)
	if err != nil {
		sc.t.Fatal(err)
	}
	c := sc.amqp
	in.cmd = exec.Command(sc.s.bin, "-config", filepath.Join(sc.dir, "none.yaml"), "serve")
	in.cmd.Env = append(append(cleanEnv(),
		config.EnvName("database.url")+"="+sc.s.pg.url(sc.dbName),
		config.EnvName("http.addr")+"="+in.addr,
		config.EnvName("log.level")+"=warn",
		config.EnvName("log.format")+"=json",
		config.EnvName("amqp.enabled")+"=true",
		config.EnvName("amqp.url")+"="+c.URL,
		config.EnvName("amqp.exchange")+"="+c.Exchange,
		config.EnvName("amqp.queue")+"="+c.Queue,
		config.EnvName("amqp.routingKey")+"="+c.RoutingKey,
		config.EnvName("amqp.deadLetterExchange")+"="+c.DeadLetterExchange,
		config.EnvName("amqp.deadLetterQueue")+"="+c.DeadLetterQueue,
		// The sandbox stands in for a provider that cannot be asked
		// exactly: held to dispatch.recordBatch as such a provider is, so
		// the in-doubt count checks the bound real providers get. (It
		// still answers recovery from its records, so nothing is sent
		// twice either way.)
		config.EnvName("dispatch.boundSandbox")+"=true",
	), extra...)
	in.cmd.Stdout, in.cmd.Stderr = logf, logf
	if err := in.cmd.Start(); err != nil {
		sc.t.Fatal(err)
	}
	go func() { _ = in.cmd.Wait(); _ = logf.Close(); close(in.done) }()
	sc.instances = append(sc.instances, in)
	sc.t.Cleanup(func() {
		in.kill()
		if sc.t.Failed() {
			b, _ := os.ReadFile(in.logPath)
			sc.t.Logf("%s log (last 2 KB):\n%s", in.name, tail(b, 2048))
		}
	})
	sc.waitFor(fmt.Sprintf("%s ready", name), time.Minute, func() bool {
		select {
		case <-in.done:
			b, _ := os.ReadFile(in.logPath)
			sc.t.Fatalf("%s exited at start:\n%s", name, tail(b, 4096))
		default:
		}
		return in.ready()
	})
	return in
}

func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}

// queueMetrics is each running instance's queue counters from /metrics:
// what it took off the queue and acked.
func (sc *scenario) queueMetrics() string {
	var b strings.Builder
	for _, in := range sc.instances {
		resp, err := http.Get("http://" + in.addr + "/metrics")
		if err != nil {
			fmt.Fprintf(&b, "%s: %v\n", in.name, err)
			continue
		}
		body, _ := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		for _, line := range strings.Split(string(body), "\n") {
			if strings.HasPrefix(line, metrics.Namespace+"_queue_") {
				fmt.Fprintf(&b, "%s: %s\n", in.name, line)
			}
		}
	}
	return b.String()
}

func (in *instance) ready() bool {
	resp, err := http.Get("http://" + in.addr + "/readyz")
	if err != nil {
		return false
	}
	_ = resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// kill is SIGKILL: no shutdown, no last record.
func (in *instance) kill() {
	select {
	case <-in.done:
		return
	default:
	}
	_ = in.cmd.Process.Signal(syscall.SIGKILL)
	<-in.done
}

// waitFor polls cond until it holds or the deadline passes (then fails).
func (sc *scenario) waitFor(what string, d time.Duration, cond func() bool) {
	sc.t.Helper()
	if !poll(d, cond) {
		sc.t.Fatalf("timed out after %s waiting for %s", d, what)
	}
}

// poll reports whether cond came true within d.
func poll(d time.Duration, cond func() bool) bool {
	for deadline := time.Now().Add(d); ; {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(20 * time.Millisecond) // state lives in other processes: poll
	}
}

// publish publishes messages 0..n-1 with message ids <scenario>-i at most
// at lim, with publisher confirms, and republishes every message not
// confirmed (broker killed, connection lost) on a new connection until all
// are confirmed or ctx ends. The message id is the service's dedupe key,
// so a republished message that did arrive is not a second notification.
func (sc *scenario) publish(ctx context.Context, n int, lim *rate.Limiter) error {
	pending := make([]int, n)
	for i := range pending {
		pending[i] = i
	}
	for len(pending) > 0 {
		if ctx.Err() != nil {
			return fmt.Errorf("%d messages never confirmed: %w", len(pending), ctx.Err())
		}
		var raw net.Conn
		conn, err := amqp.DialConfig(sc.amqp.URL, amqp.Config{Dial: func(network, addr string) (net.Conn, error) {
			c, err := net.DialTimeout(network, addr, 5*time.Second)
			raw = c
			return c, err
		}})
		if err != nil {
			time.Sleep(100 * time.Millisecond) // broker down: retry the dial
			continue
		}
		// A broker that has just restarted can leave a channel's open, a
		// confirm or the connection's close unanswered, and amqp091-go
		// waits for each without a deadline: the watchdog cuts the socket
		// when a window makes no progress, which fails every such wait.
		const stall = 45 * time.Second
		watchdog := time.AfterFunc(stall, func() { _ = raw.Close() })
		left := sc.publishOn(ctx, conn, pending, lim, func() { watchdog.Reset(stall) })
		_ = conn.Close()
		watchdog.Stop()
		if len(left) > 0 && len(left) == len(pending) {
			// Nothing went in on this connection (a broker that accepts
			// connections but does not route yet): not a busy loop.
			time.Sleep(100 * time.Millisecond)
		}
		pending = left
	}
	return nil
}

// publishOn publishes pending on conn in windows, waiting for each
// window's confirms, and returns the messages still not confirmed when the
// connection fails.
//
// It publishes mandatory, as docs/queue.md tells producers to, and counts a
// returned message as not published: a broker that has just restarted can
// confirm messages it could not route yet (RabbitMQ 3.10 confirms an
// unroutable message, and without mandatory drops it), which the suite
// would otherwise count as lost by the service (docs/runbook.md, "A
// broker-kill that counts messages the broker dropped"). A window's
// confirms share one deadline, so confirms a restarted broker never sends
// cost one wait and a new connection, not one wait each; progress is
// called after each window that went in.
func (sc *scenario) publishOn(ctx context.Context, conn *amqp.Connection, pending []int, lim *rate.Limiter, progress func()) []int {
	ch, err := conn.Channel()
	if err != nil {
		return pending
	}
	if err := ch.Confirm(false); err != nil {
		return pending
	}
	const window = 100
	// A return arrives before its message's confirm, on the same channel:
	// once a window's confirms are in, its returns are here.
	returns := ch.NotifyReturn(make(chan amqp.Return, window))
	for len(pending) > 0 {
		w := pending[:min(window, len(pending))]
		dcs := make([]*amqp.DeferredConfirmation, 0, len(w))
		for _, i := range w {
			if err := lim.Wait(ctx); err != nil {
				return pending
			}
			dc, err := ch.PublishWithDeferredConfirmWithContext(ctx, sc.amqp.Exchange, sc.amqp.RoutingKey, true, false, amqp.Publishing{
				MessageId: sc.messageID(i), DeliveryMode: amqp.Persistent, ContentType: "application/json",
				Timestamp: time.Now(), Body: sc.message(i),
			})
			if err != nil {
				break
			}
			dcs = append(dcs, dc)
		}
		acked := make([]bool, len(w))
		wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		for k := range dcs {
			acked[k], _ = dcs[k].WaitContext(wctx)
		}
		cancel()
		returned := map[string]bool{}
	drain:
		for {
			select {
			case r, open := <-returns:
				if !open {
					break drain
				}
				returned[r.MessageId] = true
			default:
				break drain
			}
		}
		if len(returned) > 0 {
			sc.t.Logf("publish: %d of %d messages returned unroutable (the broker confirms and drops them otherwise); publishing them again", len(returned), len(w))
		}
		var failed []int
		for k, i := range w {
			if acked[k] && !returned[sc.messageID(i)] {
				sc.mu.Lock()
				sc.confirmed[sc.messageID(i)] = true
				sc.mu.Unlock()
			} else {
				failed = append(failed, i)
			}
		}
		pending = pending[len(w):]
		if len(failed) > 0 {
			return append(failed, pending...)
		}
		progress()
	}
	return nil
}

func (sc *scenario) messageID(i int) string { return sc.name + "-" + strconv.Itoa(i) }

// token mints a sender token for the scenario's collection with the
// binary's own token command (the default development secret, as serve).
func (sc *scenario) token() string {
	sc.t.Helper()
	cmd := exec.Command(sc.s.bin, "-config", filepath.Join(sc.dir, "none.yaml"), "token",
		"-user", "fault", "-roles", "ROLE_SENDER", "-collections", strconv.FormatInt(sc.collectionID, 10))
	cmd.Env = cleanEnv()
	out, err := cmd.Output()
	if err != nil {
		sc.t.Fatalf("token: %v", err)
	}
	return strings.TrimSpace(string(out))
}

// sendREST sends n notifications through POST .../notifications with
// Idempotency-Key <scenario>-i, from workers clients, at most at lim. A
// client retries what was not answered 202 (5xx, no answer), honouring
// Retry-After up to a second, with the same key, until ctx ends: what a
// well-behaved caller does. Every answer is counted.
func (sc *scenario) sendREST(ctx context.Context, in *instance, n, workers int, lim *rate.Limiter) {
	tok := sc.token()
	url := fmt.Sprintf("http://%s/v1/collections/%d/notifications", in.addr, sc.collectionID)
	client := &http.Client{Timeout: 30 * time.Second}
	next := make(chan int)
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for i := range next {
				for ctx.Err() == nil {
					if lim.Wait(ctx) != nil {
						return
					}
					code, retryAfter, body := sc.sendOne(ctx, client, url, tok, i)
					sc.mu.Lock()
					sc.rest[code]++
					if code == http.StatusInternalServerError && len(sc.bodies500) < 10 {
						sc.bodies500 = append(sc.bodies500, body)
					}
					if code == http.StatusAccepted {
						sc.confirmed[sc.messageID(i)] = true
					}
					sc.mu.Unlock()
					if code == http.StatusAccepted || (code >= 400 && code < 500 && code != http.StatusTooManyRequests) {
						break
					}
					time.Sleep(min(max(retryAfter, 100*time.Millisecond), time.Second)) // the caller's back-off
				}
			}
		})
	}
	for i := range n {
		select {
		case next <- i:
		case <-ctx.Done():
		}
	}
	close(next)
	wg.Wait()
	sc.mu.Lock()
	defer sc.mu.Unlock()
	for _, b := range sc.bodies500 {
		sc.t.Logf("REST 500: %s", b)
	}
	if len(sc.bodies500) > 0 {
		sc.logLines(in, `"request failed"`, 10)
	}
}

// logLines logs the first max lines of in's log that contain substr.
func (sc *scenario) logLines(in *instance, substr string, max int) {
	b, err := os.ReadFile(in.logPath)
	if err != nil {
		sc.t.Logf("%s log: %v", in.name, err)
		return
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if max == 0 {
			return
		}
		if strings.Contains(line, substr) {
			sc.t.Logf("%s log: %s", in.name, line)
			max--
		}
	}
}

// sendOne returns the status (0: no answer), the Retry-After and the body
// (the first 1 KB).
func (sc *scenario) sendOne(ctx context.Context, client *http.Client, url, tok string, i int) (int, time.Duration, string) {
	body := fmt.Sprintf(`{"notification": [{"name": "USER_INVITEUSER", "recipients": %s}]}`, recipients(i))
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		return 0, 0, ""
	}
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Idempotency-Key", sc.messageID(i))
	resp, err := client.Do(req)
	if err != nil {
		return 0, 0, ""
	}
	defer resp.Body.Close()
	answer, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
	_, _ = io.Copy(io.Discard, resp.Body)
	ra, _ := strconv.Atoi(resp.Header.Get("Retry-After"))
	return resp.StatusCode, time.Duration(ra) * time.Second, string(answer)
}

// deadLettered counts the messages on the scenario's dead-letter queue.
func (sc *scenario) deadLettered() int64 { return sc.depth(sc.amqp.DeadLetterQueue) }

// depth counts the messages ready or unacked on queue.
func (sc *scenario) depth(queue string) int64 {
	sc.t.Helper()
	conn, err := amqp.Dial(sc.amqp.URL)
	if err != nil {
		sc.t.Fatal(err)
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		sc.t.Fatal(err)
	}
	q, err := ch.QueueDeclarePassive(queue, true, false, false, false, nil)
	if err != nil {
		sc.t.Fatal(err)
	}
	return int64(q.Messages)
}

// recoveredFromLogs sums the "recovered deliveries left in sending" counts
// the scenario's instances logged (the dispatcher's stale-sending
// recovery), the in-doubt figure when the database does not count it.
func (sc *scenario) recoveredFromLogs() int64 {
	var total int64
	for _, in := range sc.instances {
		f, err := os.Open(in.logPath)
		if err != nil {
			continue
		}
		s := bufio.NewScanner(f)
		s.Buffer(make([]byte, 1<<20), 1<<20)
		for s.Scan() {
			line := s.Bytes()
			if !bytes.Contains(line, []byte("recovered deliveries")) {
				continue
			}
			var rec struct {
				Count int64 `json:"count"`
			}
			if json.Unmarshal(line, &rec) == nil {
				total += rec.Count
			}
		}
		_ = f.Close()
	}
	return total
}
