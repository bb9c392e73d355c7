package rabbitmq_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/stretchr/testify/require"
	"gorm.io/gorm"

	"github.com/notificationservice/notificationservice/internal/actions"
	"github.com/notificationservice/notificationservice/internal/channels"
	"github.com/notificationservice/notificationservice/internal/config"
	"github.com/notificationservice/notificationservice/internal/dispatch/delivery"
	"github.com/notificationservice/notificationservice/internal/dispatch/intake"
	"github.com/notificationservice/notificationservice/internal/invalidate"
	"github.com/notificationservice/notificationservice/internal/rabbitmq"
	"github.com/notificationservice/notificationservice/internal/testdb"
)

// amqpURL is the broker tests use: NOTIFY_TEST_AMQP_URL or the local one.
func amqpURL() string {
	if u := os.Getenv("NOTIFY_TEST_AMQP_URL"); u != "" {
		return u
	}
	return "amqp://guest:guest@127.0.0.1:5672/"
}

// testAMQP returns an AMQP config with names of the test's own, and deletes
// the queues and exchanges when the test ends.
func testAMQP(t testing.TB) config.AMQP {
	t.Helper()
	conn, err := amqp.Dial(amqpURL())
	if err != nil {
		testdb.Unavailable(t, "RabbitMQ", err)
	}
	cfg := config.Default().AMQP
	cfg.URL = amqpURL()
	prefix := testdb.Name("t_")
	cfg.Exchange, cfg.Queue, cfg.RoutingKey = prefix+".ex", prefix+".NotificationQueue", prefix+".NotificationQueue"
	cfg.DeadLetterExchange, cfg.DeadLetterQueue = prefix+".dlx", prefix+".dlq"
	cfg.ReconnectMin, cfg.ReconnectMax = 50*time.Millisecond, time.Second
	cfg.Consumers = 2
	t.Cleanup(func() {
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

// env is a consumer wired to a real intake on PostgreSQL, with a sandbox
// dispatcher, for one test.
type env struct {
	t            testing.TB
	cfg          config.AMQP
	db           *gorm.DB
	dbURL        string
	collectionID int64
	intake       *intake.Intake
	sandbox      *channels.Sandbox
	disp         *delivery.Dispatcher
	consumer     *rabbitmq.Consumer
	observer     rabbitmq.Observer // set before start to count
	pub          *amqp.Channel
	pubMu        sync.Mutex
}

func newEnv(t testing.TB, mutate ...func(*config.AMQP)) *env {
	t.Helper()
	e := &env{t: t, cfg: testAMQP(t)}
	for _, m := range mutate {
		m(&e.cfg)
	}
	e.db, e.dbURL = testdb.Postgres(t)
	e.collectionID = seedRule(t, e.db)
	e.sandbox = channels.NewSandbox(e.db, discard(), nil, channels.SandboxKeepAll())
	chans := map[string]channels.Channel{"email": e.sandbox, "sms": e.sandbox, "push": e.sandbox}
	dcfg := config.Default().Dispatch
	dcfg.PollInterval = 50 * time.Millisecond
	e.disp = delivery.New(e.db, chans, dcfg, delivery.Senders{Email: channels.Address{Email: "noreply@example.com"}}, discard(), nil)
	e.intake = intake.New(e.db, actions.NewRules(e.db), nil, nil, e.disp)

	conn, err := amqp.Dial(e.cfg.URL)
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close() })
	ch, err := conn.Channel()
	require.NoError(t, err)
	// Declare up front so tests may publish before the consumer starts.
	ch, err = rabbitmq.Declare(ch, e.cfg, discard(), conn.Channel)
	require.NoError(t, err)
	require.NoError(t, ch.Confirm(false))
	e.pub = ch
	return e
}

// actionCache returns an action cache kept by an invalidation bus that
// listens on the test's schema until the test ends, as app.New wires it.
func (e *env) actionCache() *actions.Cache {
	e.t.Helper()
	cache := actions.NewCache(actions.DefaultCacheSize)
	bus := invalidate.New(e.dbURL, discard())
	bus.Subscribe(cache)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- bus.Run(ctx) }()
	e.t.Cleanup(func() { cancel(); <-done })
	require.Eventually(e.t, bus.Live, 10*time.Second, 5*time.Millisecond, "invalidation listener never connected")
	return cache
}

func discard() *slog.Logger { return slog.New(slog.DiscardHandler) }

// seedRule creates a collection with the ACTIVE event USER_INVITEUSER and an
// email and an SMS action.
func seedRule(t testing.TB, db *gorm.DB) int64 {
	t.Helper()
	now := time.Now().UnixMilli()
	var cid, eid int64
	require.NoError(t, db.Raw(`INSERT INTO collections (name, status, created_time, updated_time) VALUES (?, 'ACTIVE', ?, ?) RETURNING id`,
		testdb.Name("c"), now, now).Scan(&cid).Error)
	require.NoError(t, db.Raw(`INSERT INTO events (collection_id, name, status, created_time, updated_time) VALUES (?, 'USER_INVITEUSER', 'ACTIVE', ?, ?) RETURNING id`,
		cid, now, now).Scan(&eid).Error)
	for _, a := range []actions.Action{
		{Name: "email", ConfigName: actions.ConfigEmail, Config: actions.Config{Content: actions.Content{Subject: "Hi {{FNAME}}", HTML: "<b>{{FNAME}}</b>"}}},
		{Name: "sms", ConfigName: actions.ConfigSMS, Config: actions.Config{Content: actions.Content{Body: "Hi {{FNAME}}"}}},
	} {
		a.CollectionID, a.EventID, a.Status, a.CreatedTime, a.UpdatedTime = cid, eid, actions.StatusActive, now, now
		require.NoError(t, db.Create(&a).Error)
	}
	return cid
}

// start runs the consumer (and, with dispatch, the workers) until the test
// ends, and waits until it consumes.
func (e *env) start(dispatch bool) {
	e.t.Helper()
	e.consumer = rabbitmq.New(e.cfg, e.intake, nil, discard())
	e.consumer.Name = testdb.Name("nstest-")
	if e.observer != nil {
		e.consumer.Observer = e.observer
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{}, 2)
	go func() { _ = e.consumer.Run(ctx); done <- struct{}{} }()
	n := 1
	if dispatch {
		n++
		go func() { _ = e.disp.Run(ctx); done <- struct{}{} }()
	}
	e.t.Cleanup(func() {
		cancel()
		for range n {
			<-done
		}
	})
	require.Eventually(e.t, func() bool { return e.consumer.Ready(context.Background()) == nil }, 20*time.Second, 10*time.Millisecond)
}

// message is a valid NotificationQueue body for the env's collection.
func (e *env) message(i int) []byte {
	return []byte(fmt.Sprintf(`{"collectionId": %d, "notification": [{"name": "USER_INVITEUSER", "recipients": [{"email": "u%d@example.com", "phone": "+1555%07d", "macros": {"FNAME": "U%d"}}]}]}`,
		e.collectionID, i, i, i))
}

// publish publishes to the service's exchange and waits for the confirm.
func (e *env) publish(body []byte, p amqp.Publishing) {
	e.t.Helper()
	e.pubMu.Lock()
	defer e.pubMu.Unlock()
	p.Body, p.DeliveryMode = body, amqp.Persistent
	dc, err := e.pub.PublishWithDeferredConfirmWithContext(context.Background(), e.cfg.Exchange, e.cfg.RoutingKey, true, false, p)
	require.NoError(e.t, err)
	require.True(e.t, dc.Wait(), "broker nacked the publish")
}

// publishMany publishes n messages with message ids prefix-0..n-1, waiting
// for confirms in windows so it is quick.
func (e *env) publishMany(prefix string, n int) {
	e.t.Helper()
	e.pubMu.Lock()
	defer e.pubMu.Unlock()
	var pending []*amqp.DeferredConfirmation
	flush := func() {
		for _, dc := range pending {
			require.True(e.t, dc.Wait())
		}
		pending = pending[:0]
	}
	for i := range n {
		dc, err := e.pub.PublishWithDeferredConfirmWithContext(context.Background(), e.cfg.Exchange, e.cfg.RoutingKey, true, false, amqp.Publishing{
			MessageId: fmt.Sprintf("%s-%d", prefix, i), DeliveryMode: amqp.Persistent, ContentType: "application/json",
			Timestamp: time.Now(), Body: e.message(i),
		})
		require.NoError(e.t, err)
		pending = append(pending, dc)
		if len(pending) == 500 {
			flush()
		}
	}
	flush()
}

func (e *env) count(q string, args ...any) int64 {
	e.t.Helper()
	var n int64
	require.NoError(e.t, e.db.Raw(q, args...).Scan(&n).Error)
	return n
}

// deadLetters takes every message off the dead-letter queue.
func (e *env) deadLetters(want int) []amqp.Delivery {
	e.t.Helper()
	conn, err := amqp.Dial(e.cfg.URL)
	require.NoError(e.t, err)
	defer conn.Close()
	ch, err := conn.Channel()
	require.NoError(e.t, err)
	var out []amqp.Delivery
	require.Eventually(e.t, func() bool {
		for {
			d, ok, err := ch.Get(e.cfg.DeadLetterQueue, true)
			require.NoError(e.t, err)
			if !ok {
				return len(out) >= want
			}
			out = append(out, d)
		}
	}, 20*time.Second, 20*time.Millisecond)
	return out
}

// closeConnections closes, from the broker's side, every connection whose
// name starts with prefix, as `rabbitmqctl close_all_connections` would but
// without disturbing anyone else's connections on a shared broker.
func closeConnections(t testing.TB, prefix string) int {
	t.Helper()
	out, err := exec.Command("rabbitmqctl", "list_connections", "pid", "client_properties", "--no-table-headers", "-q").CombinedOutput()
	if err != nil {
		testdb.Unavailable(t, "rabbitmqctl", fmt.Errorf("%w: %s", err, out))
	}
	n := 0
	for _, line := range strings.Split(string(out), "\n") {
		pid, props, ok := strings.Cut(line, "\t")
		if !ok || !strings.Contains(props, prefix) {
			continue
		}
		if out, err := exec.Command("rabbitmqctl", "close_connection", pid, "test: connection fault").CombinedOutput(); err != nil {
			t.Logf("close %s: %v: %s", pid, err, out)
			continue
		}
		n++
	}
	return n
}
