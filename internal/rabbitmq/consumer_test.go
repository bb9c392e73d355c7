package rabbitmq_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/stretchr/testify/require"

	"github.com/notificationservice/notificationservice/internal/config"
	"github.com/notificationservice/notificationservice/internal/dispatch"
	"github.com/notificationservice/notificationservice/internal/dispatch/intake"
	"github.com/notificationservice/notificationservice/internal/rabbitmq"
)

func TestHappyPathQueueToSandbox(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.start(true)
	e.publish(e.message(1), amqp.Publishing{MessageId: "m-1", CorrelationId: "order-42",
		Headers: amqp.Table{rabbitmq.HeaderCorrelationIDs: `{"customer_id": "c-7"}`}})

	require.Eventually(t, func() bool {
		return e.count("SELECT COUNT(*) FROM sandbox_messages") == 2
	}, 20*time.Second, 20*time.Millisecond)
	var n dispatch.NotificationRecord
	require.NoError(t, e.db.Take(&n).Error)
	require.Equal(t, intake.SourceQueue, n.Source)
	require.Equal(t, "m-1", n.IdempotencyKey)
	require.Equal(t, "order-42", n.Correlation["correlationId"])
	require.Equal(t, "c-7", n.Correlation["customer_id"])
	require.Equal(t, dispatch.NotificationAccepted, n.Status)

	msgs := e.sandbox.Messages()
	require.Len(t, msgs, 2)
	byChannel := map[string]string{}
	for _, m := range msgs {
		byChannel[m.Channel] = m.HTML + m.Body
		require.Equal(t, n.ID, m.NotificationID)
	}
	require.Equal(t, "<b>U1</b>", byChannel["email"])
	require.Equal(t, "Hi U1", byChannel["sms"])
	require.Eventually(t, func() bool {
		return e.count("SELECT COUNT(*) FROM deliveries WHERE status = 'sent'") == 2
	}, 10*time.Second, 20*time.Millisecond)
	require.EqualValues(t, 1, e.consumer.Stats().Accepted)
}

func TestRepeatedKeysCreateNothingNew(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.start(false)
	e.publish(e.message(1), amqp.Publishing{MessageId: "same"})
	e.publish(e.message(1), amqp.Publishing{MessageId: "same"})
	e.publish(e.message(2), amqp.Publishing{MessageId: "x-1", Headers: amqp.Table{rabbitmq.HeaderIdempotencyKey: "key-2"}})
	e.publish(e.message(2), amqp.Publishing{MessageId: "x-2", Headers: amqp.Table{rabbitmq.HeaderIdempotencyKey: "key-2"}})
	require.Eventually(t, func() bool {
		s := e.consumer.Stats()
		return s.Accepted+s.Replayed == 4
	}, 20*time.Second, 20*time.Millisecond)
	require.EqualValues(t, 2, e.count("SELECT COUNT(*) FROM notifications"))
	require.EqualValues(t, 2, e.consumer.Stats().Replayed)
	require.EqualValues(t, 1, e.count("SELECT COUNT(*) FROM notifications WHERE idempotency_key = 'key-2'"))
}

// flakyAck commits through the real intake, then breaks the connection
// before the consumer can ack, once: the broker redelivers a message whose
// notification is already committed.
type flakyAck struct {
	t      testing.TB
	intake rabbitmq.Intake
	name   func() string
	once   sync.Once
	calls  atomic.Int32
}

func (f *flakyAck) Submit(ctx context.Context, subs []intake.Submission) ([]intake.Outcome, error) {
	out, err := f.intake.Submit(ctx, subs)
	f.calls.Add(1)
	if err == nil {
		f.once.Do(func() { require.Positive(f.t, closeConnections(f.t, f.name())) })
	}
	return out, err
}

func TestRedeliveryOfACommittedMessageCreatesNothing(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.cfg.Consumers = 1
	flaky := &flakyAck{t: t, intake: e.intake}
	e.consumer = rabbitmq.New(e.cfg, flaky, nil, discard())
	e.consumer.Name = "nstest-flaky-" + e.cfg.Queue
	flaky.name = func() string { return e.consumer.Name }
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = e.consumer.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })

	e.publish(e.message(1), amqp.Publishing{MessageId: "only-once"})
	require.Eventually(t, func() bool { return e.consumer.Stats().Replayed == 1 }, 30*time.Second, 20*time.Millisecond,
		"the redelivered message is recognised")
	require.GreaterOrEqual(t, flaky.calls.Load(), int32(2))
	require.EqualValues(t, 1, e.count("SELECT COUNT(*) FROM notifications"))
	require.EqualValues(t, 2, e.count("SELECT COUNT(*) FROM deliveries"))
	require.GreaterOrEqual(t, e.consumer.Stats().Reconnects, int64(1))
}

// countingObserver records the consumer's counts.
type countingObserver struct {
	mu                sync.Mutex
	consumed, acked   int
	deadLetteredByWhy map[string]int
}

func (o *countingObserver) MessageConsumed() { o.mu.Lock(); o.consumed++; o.mu.Unlock() }
func (o *countingObserver) MessagesAcked(n int) {
	o.mu.Lock()
	o.acked += n
	o.mu.Unlock()
}
func (o *countingObserver) MessageDeadLettered(reason string) {
	o.mu.Lock()
	if o.deadLetteredByWhy == nil {
		o.deadLetteredByWhy = map[string]int{}
	}
	o.deadLetteredByWhy[reason]++
	o.mu.Unlock()
}

func TestPoisonGoesToTheDeadLetterQueueWithItsReason(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	obs := &countingObserver{}
	e.observer = obs
	e.start(false)
	big := bytes.Repeat([]byte("x"), 10<<20)
	e.publish([]byte("this is not json"), amqp.Publishing{MessageId: "p-1"})
	e.publish([]byte(`{"collectionId": "seven", "notification": [{"name": 1}]}`), amqp.Publishing{MessageId: "p-2"})
	e.publish(big, amqp.Publishing{MessageId: "p-3", Headers: amqp.Table{"x-trace": "kept"}})
	e.publish(e.message(1), amqp.Publishing{MessageId: "good"})
	e.publish(e.message(2), amqp.Publishing{MessageId: "good"}) // same key, other body

	dead := e.deadLetters(4)
	require.Len(t, dead, 4)
	reasons := map[string]amqp.Delivery{}
	for _, d := range dead {
		reasons[d.MessageId+"/"+d.Headers[rabbitmq.HeaderReason].(string)] = d
		require.Equal(t, e.cfg.Queue, d.Headers[rabbitmq.HeaderQueue])
		require.NotEmpty(t, d.Headers[rabbitmq.HeaderError])
	}
	require.Contains(t, reasons, "p-1/"+dispatch.ProblemNotJSON)
	require.Contains(t, reasons, "p-2/"+dispatch.ProblemSchema)
	require.Contains(t, reasons["p-2/"+dispatch.ProblemSchema].Headers[rabbitmq.HeaderError], "collectionId")
	tooBig := reasons["p-3/"+dispatch.ProblemTooLarge]
	require.Equal(t, big, tooBig.Body, "the whole message is kept")
	require.Equal(t, "kept", tooBig.Headers["x-trace"], "and its headers")
	require.Contains(t, reasons, "good/"+rabbitmq.ReasonIdempotencyConflict)
	require.Equal(t, []byte("this is not json"), reasons["p-1/"+dispatch.ProblemNotJSON].Body)

	require.EqualValues(t, 1, e.count("SELECT COUNT(*) FROM notifications"), "the good message is committed")
	s := e.consumer.Stats()
	require.EqualValues(t, 1, s.DeadLettered[dispatch.ProblemNotJSON])
	require.EqualValues(t, 1, s.DeadLettered[dispatch.ProblemSchema])
	require.EqualValues(t, 1, s.DeadLettered[dispatch.ProblemTooLarge])
	require.EqualValues(t, 1, s.DeadLettered[rabbitmq.ReasonIdempotencyConflict])

	// Nothing is left on the queue to loop.
	q := e.inspect()
	require.Zero(t, q.Messages)

	// The observer (metrics) saw the same.
	require.Eventually(t, func() bool { obs.mu.Lock(); defer obs.mu.Unlock(); return obs.acked == 5 }, 10*time.Second, 10*time.Millisecond)
	obs.mu.Lock()
	defer obs.mu.Unlock()
	require.Equal(t, 5, obs.consumed)
	require.Equal(t, map[string]int{dispatch.ProblemNotJSON: 1, dispatch.ProblemSchema: 1, dispatch.ProblemTooLarge: 1,
		rabbitmq.ReasonIdempotencyConflict: 1}, obs.deadLetteredByWhy)
}

// inspect returns the main queue's state.
func (e *env) inspect() amqp.Queue { return e.inspectQueue(e.cfg.Queue) }

// inspectQueue returns a queue's state.
func (e *env) inspectQueue(name string) amqp.Queue {
	e.t.Helper()
	conn, err := amqp.Dial(e.cfg.URL)
	require.NoError(e.t, err)
	defer conn.Close()
	ch, err := conn.Channel()
	require.NoError(e.t, err)
	q, err := ch.QueueDeclarePassive(name, true, false, false, false, nil)
	require.NoError(e.t, err)
	return q
}

// The topology's delivery limit dead-letters a message that keeps failing
// elsewhere (a consumer that crashes on it): the broker, not the service,
// moves it to the dead-letter queue.
func TestTopologyDeadLettersAfterTheDeliveryLimit(t *testing.T) {
	t.Parallel()
	cfg := testAMQP(t)
	cfg.DeliveryLimit = 2
	conn, err := amqp.Dial(cfg.URL)
	require.NoError(t, err)
	defer conn.Close()
	ch, err := conn.Channel()
	require.NoError(t, err)
	for range 2 { // declaring is idempotent
		ch, err = rabbitmq.Declare(ch, cfg, discard(), conn.Channel)
		require.NoError(t, err)
	}
	require.NoError(t, ch.PublishWithContext(context.Background(), cfg.Exchange, cfg.RoutingKey, true, false, amqp.Publishing{Body: []byte("{}"), MessageId: "loop"}))
	deliveries, err := ch.Consume(cfg.Queue, "", false, false, false, false, nil)
	require.NoError(t, err)
	for i := range cfg.DeliveryLimit + 1 {
		select {
		case d := <-deliveries:
			require.NoError(t, d.Nack(false, true))
		case <-time.After(10 * time.Second):
			require.GreaterOrEqual(t, i, cfg.DeliveryLimit, "delivered only %d times", i)
		}
	}
	e := &env{t: t, cfg: cfg}
	dead := e.deadLetters(1)
	require.Equal(t, "loop", dead[0].MessageId)
	deaths, _ := dead[0].Headers["x-death"].([]any)
	require.NotEmpty(t, deaths)
	require.Equal(t, "delivery_limit", deaths[0].(amqp.Table)["reason"])
}

// A queue created before the service, with other arguments, is used as it
// is rather than refused.
func TestExistingQueueWithOtherArgumentsIsUsed(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	conn, err := amqp.Dial(e.cfg.URL)
	require.NoError(t, err)
	defer conn.Close()
	ch, err := conn.Channel()
	require.NoError(t, err)
	_, err = ch.QueueDelete(e.cfg.Queue, false, false, false)
	require.NoError(t, err)
	_, err = ch.QueueDeclare(e.cfg.Queue, true, false, false, false, amqp.Table{"x-queue-type": "classic"})
	require.NoError(t, err)
	require.NoError(t, ch.QueueBind(e.cfg.Queue, e.cfg.RoutingKey, e.cfg.Exchange, false, nil))
	require.NoError(t, err)
	e.start(false)
	e.publish(e.message(1), amqp.Publishing{MessageId: "m"})
	require.Eventually(t, func() bool { return e.count("SELECT COUNT(*) FROM notifications") == 1 }, 20*time.Second, 20*time.Millisecond)
}

func TestNoBrokerKeepsRetryingAndSaysSo(t *testing.T) {
	t.Parallel()
	cfg := config.Default().AMQP
	cfg.URL = "amqp://guest:guest@127.0.0.1:1/"
	cfg.ReconnectMin, cfg.ReconnectMax = 10*time.Millisecond, 50*time.Millisecond
	c := rabbitmq.New(cfg, nil, nil, discard())
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- c.Run(ctx) }()
	require.Eventually(t, func() bool { return c.Stats().Reconnects >= 3 }, 10*time.Second, 10*time.Millisecond)
	err := c.Ready(context.Background())
	require.ErrorContains(t, err, "not consuming NotificationQueue")
	require.ErrorContains(t, err, "connection refused")
	cancel()
	require.NoError(t, <-done)
}

// With the default backoff the consumer retries a broker that is down at
// least every five seconds, so it is consuming again within a few seconds
// of the broker's return however long the outage was (the fault suite saw a
// 30 s cap leave a restarted broker's queue unconsumed for 30 s). It reads
// the delays the consumer chose from its debug log: no timing involved.
func TestReconnectBackoffIsCappedAtFiveSeconds(t *testing.T) {
	t.Parallel()
	cfg := config.Default().AMQP
	cfg.URL = "amqp://guest:guest@127.0.0.1:1/"
	logs := &recordingHandler{}
	c := rabbitmq.New(cfg, nil, nil, slog.New(logs))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- c.Run(ctx) }()
	defer func() { cancel(); require.NoError(t, <-done) }()
	// 1, 2, 4, then the cap: 8 s uncapped. The first three sleeps take at
	// most 0.5+1+2+4 = 7.5 s.
	var delays []time.Duration
	require.Eventually(t, func() bool {
		delays = logs.durations("retryIn")
		return len(delays) >= 4
	}, 30*time.Second, 20*time.Millisecond)
	for _, d := range delays {
		require.LessOrEqual(t, d, 5*time.Second, "reconnect delays %v", delays)
	}
}

// recordingHandler keeps every record's attributes, at every level.
type recordingHandler struct {
	mu    sync.Mutex
	attrs []map[string]slog.Value
}

func (h *recordingHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h *recordingHandler) WithAttrs([]slog.Attr) slog.Handler       { return h }
func (h *recordingHandler) WithGroup(string) slog.Handler            { return h }
func (h *recordingHandler) Handle(_ context.Context, r slog.Record) error {
	m := map[string]slog.Value{}
	r.Attrs(func(a slog.Attr) bool { m[a.Key] = a.Value.Resolve(); return true })
	h.mu.Lock()
	h.attrs = append(h.attrs, m)
	h.mu.Unlock()
	return nil
}

// durations returns the values of attribute key, in order, of the records
// that have it.
func (h *recordingHandler) durations(key string) []time.Duration {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []time.Duration
	for _, m := range h.attrs {
		if v, ok := m[key]; ok && v.Kind() == slog.KindDuration {
			out = append(out, v.Duration())
		}
	}
	return out
}

func TestGracefulShutdownAcksWhatItCommitted(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.cfg.Prefetch = 50
	e.cfg.BatchSize = 10
	e.publishMany("g", 300)
	// A slow database, so the stop lands mid-stream whatever the machine's load.
	a := rabbitmq.New(e.cfg, slowIntake{e.intake, 20 * time.Millisecond}, nil, discard())
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- a.Run(ctx) }()
	require.Eventually(t, func() bool { return a.Stats().Accepted > 0 }, 20*time.Second, time.Millisecond)
	cancel()
	require.NoError(t, <-done)

	// Every committed message was acked, every other one is back on the queue.
	committed := e.count("SELECT COUNT(*) FROM notifications")
	require.Less(t, committed, int64(300), "stopped mid-stream")
	require.Eventually(t, func() bool { return int64(e.inspect().Messages) == 300-committed }, 10*time.Second, 20*time.Millisecond)

	e.start(false)
	require.Eventually(t, func() bool { return e.count("SELECT COUNT(*) FROM notifications") == 300 }, 30*time.Second, 20*time.Millisecond)
	require.EqualValues(t, 300, e.count("SELECT COUNT(DISTINCT idempotency_key) FROM notifications"))
	require.Zero(t, e.consumer.Stats().Replayed, "nothing committed was redelivered")
}

// slowIntake delays every commit.
type slowIntake struct {
	rabbitmq.Intake
	delay time.Duration
}

func (s slowIntake) Submit(ctx context.Context, subs []intake.Submission) ([]intake.Outcome, error) {
	time.Sleep(s.delay) // simulates database latency; not synchronisation
	return s.Intake.Submit(ctx, subs)
}

// failingIntake fails Submit while fail says so, counting calls.
type failingIntake struct {
	rabbitmq.Intake
	fail  func(subs []intake.Submission, call int32) bool
	calls atomic.Int32
}

func (f *failingIntake) Submit(ctx context.Context, subs []intake.Submission) ([]intake.Outcome, error) {
	if f.fail(subs, f.calls.Add(1)) {
		return nil, errors.New("database says no")
	}
	return f.Intake.Submit(ctx, subs)
}

// While the database is down the consumer holds its messages and retries:
// nothing is acked, requeued or dead-lettered, and all of them commit once it
// is back.
func TestDatabaseOutageHoldsTheBatch(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	var down atomic.Bool
	down.Store(true)
	in := &failingIntake{Intake: e.intake, fail: func(_ []intake.Submission, call int32) bool {
		if call >= 6 {
			down.Store(false)
		}
		return down.Load()
	}}
	ping := func(context.Context) error {
		if down.Load() {
			return errors.New("connection refused")
		}
		return nil
	}
	e.consumer = rabbitmq.New(e.cfg, in, ping, discard())
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = e.consumer.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	for i := range 5 {
		e.publish(e.message(i), amqp.Publishing{MessageId: fmt.Sprint("o-", i)})
	}
	require.Eventually(t, func() bool { return e.count("SELECT COUNT(*) FROM notifications") == 5 }, 30*time.Second, 20*time.Millisecond)
	require.GreaterOrEqual(t, in.calls.Load(), int32(6), "it retried")
	require.Empty(t, e.consumer.Stats().DeadLettered)
	require.Zero(t, e.inspectQueue(e.cfg.DeadLetterQueue).Messages)
}

// A message the database refuses while it is up (here: always) is
// dead-lettered as processing_failed after a few tries alone; the rest of its
// batch commits.
func TestMessageTheDatabaseRefusesIsDeadLettered(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.cfg.Consumers = 1
	in := &failingIntake{Intake: e.intake, fail: func(subs []intake.Submission, _ int32) bool {
		for _, s := range subs {
			if s.Key == "bad" {
				return true
			}
		}
		return false
	}}
	e.consumer = rabbitmq.New(e.cfg, in, func(context.Context) error { return nil }, discard())
	// Publish first so the three land in one batch.
	e.publish(e.message(1), amqp.Publishing{MessageId: "good-1"})
	e.publish(e.message(2), amqp.Publishing{MessageId: "bad"})
	e.publish(e.message(3), amqp.Publishing{MessageId: "good-2"})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = e.consumer.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })

	dead := e.deadLetters(1)
	require.Equal(t, "bad", dead[0].MessageId)
	require.Equal(t, rabbitmq.ReasonProcessingFailed, dead[0].Headers[rabbitmq.HeaderReason])
	require.Contains(t, dead[0].Headers[rabbitmq.HeaderError], "database says no")
	require.Eventually(t, func() bool { return e.count("SELECT COUNT(*) FROM notifications") == 2 }, 10*time.Second, 20*time.Millisecond)
	require.EqualValues(t, 2, e.count("SELECT COUNT(*) FROM notifications WHERE idempotency_key IN ('good-1', 'good-2')"))
}

// The broker cancels the consumer when its queue is deleted: the consumer
// notices, reconnects, declares the topology again and consumes.
func TestConsumerComesBackAfterTheBrokerCancelsIt(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.start(false)
	e.publish(e.message(1), amqp.Publishing{MessageId: "before"})
	require.Eventually(t, func() bool { return e.count("SELECT COUNT(*) FROM notifications") == 1 }, 20*time.Second, 20*time.Millisecond)

	conn, err := amqp.Dial(e.cfg.URL)
	require.NoError(t, err)
	defer conn.Close()
	ch, err := conn.Channel()
	require.NoError(t, err)
	_, err = ch.QueueDelete(e.cfg.Queue, false, false, false)
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		return e.consumer.Stats().Reconnects >= 1 && e.consumer.Ready(context.Background()) == nil
	}, 20*time.Second, 20*time.Millisecond)

	e.publish(e.message(2), amqp.Publishing{MessageId: "after"})
	require.Eventually(t, func() bool { return e.count("SELECT COUNT(*) FROM notifications") == 2 }, 20*time.Second, 20*time.Millisecond)
}

// TestInvalidKeyIsDeadLetteredAtOnce publishes messages whose key (the
// message_id, or the idempotency-key header) is not storable text. The
// database refuses such a key on every try, so before the check a message
// went through the retry loop and ended as processing_failed; now it is
// dead-lettered as invalid_key (not stored under a repaired key, which
// could merge two messages).
func TestInvalidKeyIsDeadLetteredAtOnce(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.publish(e.message(1), amqp.Publishing{MessageId: "bad-\xff"})
	e.publish(e.message(2), amqp.Publishing{MessageId: "fine", Headers: amqp.Table{rabbitmq.HeaderIdempotencyKey: "k\x00"}})
	e.publish(e.message(3), amqp.Publishing{MessageId: "caf\xc3"}) // a character cut in two
	e.publish(e.message(4), amqp.Publishing{MessageId: "café-ok"})
	e.start(false)

	dead := e.deadLetters(3)
	require.Len(t, dead, 3)
	for _, d := range dead {
		require.Equal(t, rabbitmq.ReasonInvalidKey, d.Headers[rabbitmq.HeaderReason], "message %q", d.MessageId)
		require.Contains(t, d.Headers[rabbitmq.HeaderError], "must be valid UTF-8")
	}
	require.Eventually(t, func() bool { return e.count("SELECT COUNT(*) FROM notifications") == 1 }, 10*time.Second, 20*time.Millisecond)
	require.EqualValues(t, 1, e.count("SELECT COUNT(*) FROM notifications WHERE idempotency_key = 'café-ok'"))
	require.EqualValues(t, 3, e.consumer.Stats().DeadLettered[rabbitmq.ReasonInvalidKey])
}

// TestAMessageAfterAQuietSpellGoesWithoutTheBatchWait: a message that comes
// to a consumer idle for longer than amqp.batchWait is committed at once; one
// that comes right after a batch (messages flowing) still waits for more to
// join it. The wait is long (4 s) so that either outcome is far from the
// time a commit takes.
func TestAMessageAfterAQuietSpellGoesWithoutTheBatchWait(t *testing.T) {
	t.Parallel()
	const wait = 4 * time.Second
	e := newEnv(t, func(c *config.AMQP) { c.BatchWait, c.Consumers = wait, 1 })
	e.start(false)
	time.Sleep(wait + wait/8) // the consumer idle for longer than the wait
	notes := func() int64 { return e.count("SELECT COUNT(*) FROM notifications") }

	e.publish(e.message(1), amqp.Publishing{MessageId: "quiet-1"})
	published := time.Now()
	require.Eventually(t, func() bool { return notes() == 1 }, wait-time.Second, 10*time.Millisecond,
		"a message after a quiet spell waited for a batch")
	t.Logf("committed %v after its publish", time.Since(published))

	e.publish(e.message(2), amqp.Publishing{MessageId: "flowing-2"})
	require.Never(t, func() bool { return notes() == 2 }, time.Second, 50*time.Millisecond,
		"a message right after a batch did not wait for others to join it")
	require.Eventually(t, func() bool { return notes() == 2 }, 2*wait, 20*time.Millisecond)
}
