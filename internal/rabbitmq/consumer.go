package rabbitmq

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/url"
	"os"
	"sync"
	"sync/atomic"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/notificationservice/notificationservice/internal/apperr"
	"github.com/notificationservice/notificationservice/internal/config"
	"github.com/notificationservice/notificationservice/internal/dispatch"
	"github.com/notificationservice/notificationservice/internal/dispatch/intake"
	"github.com/notificationservice/notificationservice/internal/retry"
	"github.com/notificationservice/notificationservice/internal/store"
)

// Headers the consumer reads on a message.
const (
	HeaderIdempotencyKey = "idempotency-key"             // dedupe key; else the message_id property
	HeaderCorrelationIDs = dispatch.HeaderCorrelationIDs // JSON object of correlation ids, as the event gateway sends them
	HeaderCorrelationID  = "x-correlation-id"
	HeaderTraceID        = "traceId"
)

// Headers the consumer sets on a message it dead-letters.
const (
	HeaderReason         = "x-notify-reason"           // not_json | schema | too_large | invalid_key | invalid_header | tenant_mismatch | idempotency_conflict | processing_failed
	HeaderError          = "x-notify-error"            // the detail, for a human
	HeaderQueue          = "x-notify-queue"            // the queue it came from
	HeaderDeadLetteredAt = "x-notify-dead-lettered-at" // epoch ms
)

// Dead-letter reasons the consumer adds to the dispatch.Problem codes.
const (
	// ReasonInvalidKey is a message whose idempotency-key header or
	// message_id is not valid UTF-8 or holds NUL: the key cannot be stored,
	// so no retry could ever commit the message.
	ReasonInvalidKey          = "invalid_key"
	ReasonIdempotencyConflict = "idempotency_conflict"
	ReasonProcessingFailed    = "processing_failed"
	// ReasonTenantMismatch is a message whose tenant header names another
	// tenant than its collection's: the producer's fault, which no retry
	// mends (the REST send answers 403).
	ReasonTenantMismatch = "tenant_mismatch"
)

// DeadLetterReasons lists every reason the consumer dead-letters a message
// with (x-notify-reason), so /metrics can report each at zero from the start.
func DeadLetterReasons() []string {
	return []string{dispatch.ProblemNotJSON, dispatch.ProblemSchema, dispatch.ProblemTooLarge, dispatch.ProblemHeader, ReasonInvalidKey,
		ReasonIdempotencyConflict, ReasonTenantMismatch, ReasonProcessingFailed}
}

// Intake accepts a batch of submissions in one transaction (intake.Intake).
type Intake interface {
	Submit(ctx context.Context, subs []intake.Submission) ([]intake.Outcome, error)
}

// Outage records unavailability errors and successful commits
// (store.Outage implements it, for /readyz).
type Outage interface {
	Observe(err error) bool
	Recovered()
}

// Observer receives the consumer's counts as they happen (metrics.Metrics
// implements it, for /metrics).
type Observer interface {
	MessageConsumed()
	MessagesAcked(n int)
	MessageDeadLettered(reason string)
}

type noObserver struct{}

func (noObserver) MessageConsumed()           {}
func (noObserver) MessagesAcked(int)          {}
func (noObserver) MessageDeadLettered(string) {}

// Stats are the consumer's counters since start.
type Stats struct {
	Received     int64            // messages taken off the queue
	Accepted     int64            // messages committed as new notifications
	Replayed     int64            // redeliveries or repeated keys: acked, nothing created
	DeadLettered map[string]int64 // by reason
	Reconnects   int64            // sessions after the first
	Connected    bool
}

// Consumer consumes NotificationQueue. Each of amqp.consumers goroutines has
// its own channel with amqp.prefetch unacked messages; it gathers up to
// amqp.batchSize messages (waiting at most amqp.batchWait for more),
// dead-letters the poison ones, commits the rest through Intake in one
// transaction and only then acks the batch. A failed commit is retried with
// the messages held, so a database outage (down, full, read-only, busy:
// store.IsUnavailable) neither loses, requeues nor dead-letters them.
type Consumer struct {
	cfg    config.AMQP
	intake Intake
	ping   func(ctx context.Context) error
	log    *slog.Logger
	now    func() time.Time

	// Name is the connection name the broker shows (and the consumer tags'
	// prefix); New sets notificationservice-<host>-<pid>. Set it before Run.
	Name string
	// Observer gets the counts as they happen; New sets one that drops them.
	// Set it before Run.
	Observer Observer
	// Tracer starts a span per message (continuing the traceparent header)
	// and per batch transaction; New sets a no-op one. Set it before Run.
	Tracer trace.Tracer
	// Outage, when set, hears the result of every commit, so /readyz
	// reports a database that answers pings but cannot commit
	// (store.Outage). Set it before Run.
	Outage Outage

	connected   atomic.Bool
	consuming   atomic.Int32
	received    atomic.Int64
	accepted    atomic.Int64
	replayed    atomic.Int64
	reconnects  atomic.Int64
	mu          sync.Mutex
	lastErr     error
	deadLetters map[string]int64
}

// New returns a Consumer. ping checks the database: with the error's class
// (store.IsUnavailable) it tells a message that cannot be committed
// (dead-lettered as processing_failed) from a database that is down, full
// or busy (the message is held and retried).
func New(cfg config.AMQP, intake Intake, ping func(ctx context.Context) error, log *slog.Logger) *Consumer {
	host, _ := os.Hostname()
	return &Consumer{
		cfg: cfg, intake: intake, ping: ping, log: log, now: time.Now,
		Name:        fmt.Sprintf("notificationservice-%s-%d", host, os.Getpid()),
		Observer:    noObserver{},
		Tracer:      noop.NewTracerProvider().Tracer(""),
		deadLetters: map[string]int64{},
	}
}

// Stats returns the counters.
func (c *Consumer) Stats() Stats {
	c.mu.Lock()
	defer c.mu.Unlock()
	dl := make(map[string]int64, len(c.deadLetters))
	for k, v := range c.deadLetters {
		dl[k] = v
	}
	return Stats{Received: c.received.Load(), Accepted: c.accepted.Load(), Replayed: c.replayed.Load(),
		DeadLettered: dl, Reconnects: c.reconnects.Load(), Connected: c.connected.Load()}
}

// Ready reports whether every consumer is connected and consuming; the
// error says why not (for /readyz).
func (c *Consumer) Ready(context.Context) error {
	if c.connected.Load() && int(c.consuming.Load()) == c.cfg.Consumers {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.lastErr != nil {
		return fmt.Errorf("not consuming %s: %w", c.cfg.Queue, c.lastErr)
	}
	return fmt.Errorf("not consuming %s yet", c.cfg.Queue)
}

// Run connects, consumes and reconnects with backoff until ctx ends. It
// returns nil on shutdown; it never gives up on a broker that is down: it
// says so in the log (once, then every five minutes) and in Ready.
func (c *Consumer) Run(ctx context.Context) error {
	// From rabbitmq.reconnectMin doubling to reconnectMax, jittered so the
	// instances a broker restart disconnected do not return in step, never
	// giving up (Do returns only when ctx ends).
	policy := retry.Policy{Initial: c.cfg.ReconnectMin, Max: c.cfg.ReconnectMax}
	backOff := policy.NewBackOff()
	var downSince, lastLog time.Time
	sessions := 0
	_ = policy.DoWith(ctx, backOff, func() error {
		if sessions > 0 {
			c.reconnects.Add(1)
		}
		sessions++
		started := time.Now()
		up, err := c.session(ctx)
		c.connected.Store(false)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		c.mu.Lock()
		c.lastErr = err
		c.mu.Unlock()
		if up {
			// It was consuming: a broker restart or a closed connection.
			// Say so at once and reconnect fast.
			downSince, lastLog = time.Time{}, time.Time{}
			if time.Since(started) > 5*time.Second {
				backOff.Reset()
			}
		}
		if downSince.IsZero() {
			downSince = time.Now()
		}
		if err == nil {
			err = errors.New("session ended") // reconnect all the same
		}
		return err
	}, func(err error, wait time.Duration) {
		if time.Since(lastLog) > 5*time.Minute {
			c.log.WarnContext(ctx, "rabbitmq: not connected; the API still serves, retrying in the background",
				"url", redact(c.cfg.URL), "queue", c.cfg.Queue, "error", err, "downFor", time.Since(downSince).Round(time.Second))
			lastLog = time.Now()
		} else {
			c.log.DebugContext(ctx, "rabbitmq: reconnect failed", "error", err, "retryIn", wait)
		}
	})
	return nil
}

// session runs one connection until it fails or ctx ends. up says whether
// it got as far as consuming.
func (c *Consumer) session(ctx context.Context) (up bool, err error) {
	conn, err := amqp.DialConfig(c.cfg.URL, amqp.Config{
		Heartbeat:  10 * time.Second,
		Locale:     "en_US",
		Dial:       amqp.DefaultDial(10 * time.Second),
		Properties: amqp.Table{"connection_name": c.Name},
	})
	if err != nil {
		return false, fmt.Errorf("dial: %w", err)
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		return false, fmt.Errorf("open channel: %w", err)
	}
	ch, err = Declare(ch, c.cfg, c.log, conn.Channel)
	if err != nil {
		return false, err
	}
	_ = ch.Close()

	closed := conn.NotifyClose(make(chan *amqp.Error, 1))
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errs := make(chan error, c.cfg.Consumers)
	for i := range c.cfg.Consumers {
		go func() { errs <- c.consume(sctx, conn, i) }()
	}
	c.connected.Store(true)
	c.mu.Lock()
	c.lastErr = nil
	c.mu.Unlock()
	c.log.InfoContext(ctx, "rabbitmq: consuming", "queue", c.cfg.Queue, "consumers", c.cfg.Consumers, "prefetch", c.cfg.Prefetch)

	var first error
	running := c.cfg.Consumers
	select {
	case <-ctx.Done():
	case e := <-closed:
		first = fmt.Errorf("connection closed: %w", e)
		if e == nil {
			first = errors.New("connection closed")
		}
	case first = <-errs:
		running--
		if first == nil {
			first = errors.New("consumer stopped")
		}
	}
	c.connected.Store(false)
	cancel() // the other consumers finish the batch they hold, then return
	for range running {
		if err := <-errs; first == nil {
			first = err
		}
	}
	return true, first
}

var errChannelClosed = errors.New("channel closed by the broker")

// consume runs one consumer channel until ctx ends or the channel fails.
func (c *Consumer) consume(ctx context.Context, conn *amqp.Connection, n int) error {
	ch, err := conn.Channel()
	if err != nil {
		return fmt.Errorf("open channel: %w", err)
	}
	defer ch.Close()
	if err := ch.Qos(c.cfg.Prefetch, 0, false); err != nil {
		return fmt.Errorf("qos: %w", err)
	}
	pub, err := conn.Channel()
	if err != nil {
		return fmt.Errorf("open publish channel: %w", err)
	}
	defer pub.Close()
	dl, err := confirming(pub)
	if err != nil {
		return err
	}
	tag := fmt.Sprintf("%s-%d", c.Name, n)
	deliveries, err := ch.Consume(c.cfg.Queue, tag, false, false, false, false, nil)
	if err != nil {
		return fmt.Errorf("consume %s: %w", c.cfg.Queue, err)
	}
	c.consuming.Add(1)
	defer c.consuming.Add(-1)
	chClosed := ch.NotifyClose(make(chan *amqp.Error, 1))
	for {
		batch, err := c.collect(ctx, deliveries)
		if len(batch) > 0 {
			if herr := c.handle(ctx, ch, dl, batch); herr != nil {
				return herr
			}
		}
		if err != nil {
			select {
			case e := <-chClosed:
				if e != nil {
					return fmt.Errorf("%w: %v", errChannelClosed, e)
				}
			default:
			}
			return err
		}
		if ctx.Err() != nil {
			// Stop deliveries; the ones prefetched but not handled go back
			// to the queue when the channel closes.
			_ = ch.Cancel(tag, false)
			return nil
		}
	}
}

// collect waits for one message, then gathers more until batchSize or
// batchWait. A message that ends a quiet spell (the consumer idle for
// longer than batchWait before it came) goes with no wait, as a REST send
// after a quiet spell does: at a low rate nothing would join it, and at
// 50 msg/s the wait was a third to a half of enqueue→sent (p50 9.2–9.8 ms
// with it, 5.7–6.7 without).
// Under a steady flow a message is waiting when the last batch is done,
// the wait stands and batches stay large: smaller ones meant more
// transactions of several round trips each, and a longer enqueue→sent
// (docs/benchmarks.md). It returns what it has when ctx ends, with a nil
// error.
func (c *Consumer) collect(ctx context.Context, deliveries <-chan amqp.Delivery) ([]amqp.Delivery, error) {
	var batch []amqp.Delivery
	quiet := false
	select {
	case d, ok := <-deliveries:
		if !ok {
			return nil, errChannelClosed
		}
		batch = append(batch, d)
	default:
		idle := time.Now()
		select {
		case <-ctx.Done():
			return nil, nil
		case d, ok := <-deliveries:
			if !ok {
				return nil, errChannelClosed
			}
			batch = append(batch, d)
		}
		quiet = time.Since(idle) > c.cfg.BatchWait
	}
	// Take what is already there without waiting.
	for len(batch) < c.cfg.BatchSize {
		select {
		case d, ok := <-deliveries:
			if !ok {
				return nil, errChannelClosed
			}
			batch = append(batch, d)
			continue
		default:
		}
		break
	}
	if quiet || len(batch) >= c.cfg.BatchSize || c.cfg.BatchWait <= 0 {
		return batch, nil
	}
	timer := time.NewTimer(c.cfg.BatchWait)
	defer timer.Stop()
	for len(batch) < c.cfg.BatchSize {
		select {
		case d, ok := <-deliveries:
			if !ok {
				return nil, errChannelClosed
			}
			batch = append(batch, d)
		case <-timer.C:
			return batch, nil
		case <-ctx.Done():
			return batch, nil
		}
	}
	return batch, nil
}

type poison struct {
	d            *amqp.Delivery
	reason, text string
}

// handle commits a batch and acks it. Nothing is acked unless every message
// in it is committed or safely in the dead-letter queue.
func (c *Consumer) handle(ctx context.Context, ch *amqp.Channel, pub confirmChannel, batch []amqp.Delivery) error {
	c.received.Add(int64(len(batch)))
	for range batch {
		c.Observer.MessageConsumed()
	}
	tr := c.traceMessages(ctx, batch)
	defer tr.end()
	// A batch in hand is finished even during shutdown, within a bound.
	hctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	var (
		bad  []poison
		subs []intake.Submission
		from []int
	)
	for i := range batch {
		d := &batch[i]
		req, err := dispatch.Parse(d.Body, c.cfg.MaxMessageBytes)
		if err != nil {
			var p *dispatch.Problem
			code := ReasonProcessingFailed
			if errors.As(err, &p) {
				code = p.Code
			}
			bad = append(bad, poison{d, code, err.Error()})
			continue
		}
		if key, field := rawKey(d); !apperr.ValidText(key) {
			bad = append(bad, poison{d, ReasonInvalidKey, field + " " + apperr.TextReason})
			continue
		}
		producer, ids, err := dispatch.ParseProducer(func(name string) string { return headerString(d.Headers[name]) })
		if err != nil {
			bad = append(bad, poison{d, dispatch.ProblemHeader, err.Error()})
			continue
		}
		subs = append(subs, intake.Submission{Source: intake.SourceQueue, Key: dedupeKey(d), Request: req, Correlation: correlation(d, ids),
			Producer: producer, TraceParent: tr.traceParent(d)})
		from = append(from, i)
	}
	if len(subs) > 0 {
		sctx, shctx, endCommit := tr.commit(ctx, hctx)
		outs, failed, err := c.submit(sctx, shctx, subs)
		endCommit()
		if err != nil {
			return err // shutdown or a lost broker: nothing acked, all redelivered
		}
		for j, o := range outs {
			d := &batch[from[j]]
			switch {
			case failed[j] != nil:
				bad = append(bad, poison{d, ReasonProcessingFailed, failed[j].Error()})
			case o.Refused != nil:
				bad = append(bad, poison{d, ReasonTenantMismatch, o.Refused.Error()})
			case o.Problem != nil: // a sendAt beyond dispatch.maxScheduleAhead
				bad = append(bad, poison{d, o.Problem.Code, o.Problem.Error()})
			case o.Conflict:
				bad = append(bad, poison{d, ReasonIdempotencyConflict,
					fmt.Sprintf("key %q was already used for a different message", dedupeKey(d))})
			case o.Replayed:
				c.replayed.Add(1)
				// Guarded as the accepted line is: the key is built and the
				// arguments boxed only when debug is on.
				if c.log.Enabled(ctx, slog.LevelDebug) {
					c.log.DebugContext(ctx, "rabbitmq: duplicate message acked; nothing created", "key", dedupeKey(d), "redelivered", d.Redelivered)
				}
			default:
				c.accepted.Add(1)
				if c.log.Enabled(ctx, slog.LevelDebug) {
					p := subs[j].Producer
					c.log.DebugContext(ctx, "rabbitmq: message accepted", "key", dedupeKey(d), "correlation", subs[j].Correlation,
						"tenant", p.Tenant, "team", p.Team, "service", p.Service, "entityId", p.EntityID, "notifications", o.Notifications)
				}
			}
		}
	}
	for _, p := range bad {
		if err := c.deadLetter(tr.context(hctx, p.d), pub, p); err != nil {
			return err
		}
	}
	if err := ch.Ack(batch[len(batch)-1].DeliveryTag, true); err != nil {
		// Committed but not acked: the broker redelivers and the keys make
		// the redelivery a no-op.
		return fmt.Errorf("ack: %w", err)
	}
	c.Observer.MessagesAcked(len(batch))
	return nil
}

// submit commits subs, retrying while the database is unavailable. If a
// whole batch keeps failing with errors that are not unavailability, it tries the
// messages one by one, and a message that fails alone is reported in
// failed (it is dead-lettered as processing_failed) rather than retried
// forever. It returns an error only when ctx ends first.
func (c *Consumer) submit(ctx, hctx context.Context, subs []intake.Submission) ([]intake.Outcome, []error, error) {
	failed := make([]error, len(subs))
	outs, err := c.trySubmit(ctx, hctx, subs, 3)
	if err == nil {
		return outs, failed, nil
	}
	if ctx.Err() != nil || len(subs) == 1 {
		if len(subs) == 1 && ctx.Err() == nil {
			failed[0] = err
			return make([]intake.Outcome, 1), failed, nil
		}
		return nil, nil, err
	}
	outs = make([]intake.Outcome, len(subs))
	for i := range subs {
		o, err := c.trySubmit(ctx, hctx, subs[i:i+1], 3)
		if err != nil {
			if ctx.Err() != nil {
				return nil, nil, err
			}
			failed[i] = err
			continue
		}
		outs[i] = o[0]
	}
	return outs, failed, nil
}

// trySubmit retries Submit with backoff. While the errors say the database
// is unavailable (store.IsUnavailable: down, full, read-only, shutting down,
// busy) or it does not answer a ping, it waits for it until ctx ends: an
// outage is never the message's fault. Any other error it gives up on after
// tries of them.
func (c *Consumer) trySubmit(ctx, hctx context.Context, subs []intake.Submission, tries int) ([]intake.Outcome, error) {
	// From 100 ms doubling to 5 s, without jitter (the messages are held
	// meanwhile); no bound of its own: op gives up, by tries, or not at all.
	policy := retry.Policy{Initial: 100 * time.Millisecond, Max: 5 * time.Second, NoJitter: true}
	var outs []intake.Outcome
	failures, blamed := 0, 0
	err := policy.Do(ctx, func() error {
		sctx := hctx
		if failures > 0 {
			sctx = ctx // after a failure, shutdown may interrupt
		}
		var err error
		outs, err = c.intake.Submit(sctx, subs)
		if err == nil {
			if c.Outage != nil {
				c.Outage.Recovered()
			}
			return nil
		}
		failures++
		if ctx.Err() != nil {
			return retry.Permanent(err)
		}
		// Only failures that are not an outage count towards tries: the
		// messages are blamed for what they meet with the database up.
		down := c.unavailable(ctx, err)
		if !down {
			blamed++
			if blamed >= tries {
				return retry.Permanent(err)
			}
		}
		if failures == 1 || failures%50 == 0 {
			c.log.WarnContext(ctx, "rabbitmq: commit failed; holding the messages and retrying", "messages", len(subs), "error", err, "databaseUnavailable", down, "failures", failures)
		}
		return err
	}, nil)
	if err != nil {
		return nil, err
	}
	return outs, nil
}

// unavailable reports whether err is an outage rather than the messages'
// fault: by its class first, then, for an error of no known class, by a
// ping. It tells c.Outage, so /readyz reports an outage a ping misses.
func (c *Consumer) unavailable(ctx context.Context, err error) bool {
	if c.Outage != nil && c.Outage.Observe(err) {
		return true
	}
	if store.IsUnavailable(err) {
		return true
	}
	return c.ping != nil && c.ping(ctx) != nil
}

// deadLetter publishes the message to the dead-letter exchange with its
// reason in headers and waits for the broker's confirm. Only then may the
// original be acked: a failure here returns an error and the batch is not
// acked, so the message is redelivered, never lost.
//
// The publish is mandatory. Without it a broker that cannot route the
// message (the dead-letter queue's binding deleted, or a node that has
// just restarted and does not route yet) confirms it and drops it, and the
// original would be acked: lost. A returned message is an error like a
// nack; the session ends, and the next one declares the topology again
// before the message comes back.
func (c *Consumer) deadLetter(ctx context.Context, pub confirmChannel, p poison) error {
	d := p.d
	headers := amqp.Table{}
	for k, v := range d.Headers {
		headers[k] = v
	}
	headers[HeaderReason] = p.reason
	headers[HeaderError] = apperr.Truncate(p.text, 1024)
	headers[HeaderQueue] = c.cfg.Queue
	headers[HeaderDeadLetteredAt] = c.now().UnixMilli()
	injectTrace(ctx, headers, p.reason)
	var returned *returnedError
	switch err := pub.publish(ctx, c.cfg.DeadLetterExchange, c.cfg.Queue, amqp.Publishing{
		Headers: headers, ContentType: d.ContentType, ContentEncoding: d.ContentEncoding, DeliveryMode: amqp.Persistent,
		CorrelationId: d.CorrelationId, MessageId: d.MessageId, Timestamp: d.Timestamp, Type: d.Type, AppId: d.AppId,
		UserId: "", Body: d.Body,
	}); {
	case errors.As(err, &returned):
		return fmt.Errorf("dead-letter publish %w: exchange %q routes nothing for %q; the message stays on %s",
			err, c.cfg.DeadLetterExchange, c.cfg.Queue, c.cfg.Queue)
	case err != nil:
		return fmt.Errorf("dead-letter publish: %w", err)
	}
	c.mu.Lock()
	c.deadLetters[p.reason]++
	c.mu.Unlock()
	c.Observer.MessageDeadLettered(p.reason)
	c.log.WarnContext(ctx, "rabbitmq: message dead-lettered", "reason", p.reason, "error", apperr.Truncate(p.text, 300),
		"messageId", d.MessageId, "correlation", correlation(d, nil), "tenant", apperr.Truncate(headerString(d.Headers[dispatch.HeaderTenant]), 128),
		"entityId", apperr.Truncate(headerString(d.Headers[dispatch.HeaderEntityID]), 255), "bytes", len(d.Body), "deadLetterQueue", c.cfg.DeadLetterQueue)
	return nil
}

// dedupeKey is the idempotency-key header, else the message_id property,
// cut to 255 bytes.
func dedupeKey(d *amqp.Delivery) string {
	key, _ := rawKey(d)
	return apperr.Truncate(key, 255)
}

// rawKey is the key dedupeKey cuts, and the name of where it came from.
func rawKey(d *amqp.Delivery) (key, field string) {
	if v, ok := d.Headers[HeaderIdempotencyKey]; ok {
		if s := headerString(v); s != "" {
			return s, HeaderIdempotencyKey
		}
	}
	return d.MessageId, "message_id"
}

// correlation gathers the correlation ids a message carries: ids (the
// correlation-ids header, validated by dispatch.ParseProducer), the
// correlation_id property and the x-correlation-id and traceId headers.
func correlation(d *amqp.Delivery, ids map[string]string) map[string]string {
	out := make(map[string]string, len(ids)+3)
	maps.Copy(out, ids)
	if v := headerString(d.Headers[HeaderCorrelationID]); v != "" {
		out["correlationId"] = apperr.Truncate(v, 256)
	}
	if d.CorrelationId != "" {
		out["correlationId"] = apperr.Truncate(d.CorrelationId, 256)
	}
	if v := headerString(d.Headers[HeaderTraceID]); v != "" {
		out["traceId"] = apperr.Truncate(v, 256)
	}
	if d.MessageId != "" {
		out["messageId"] = apperr.Truncate(d.MessageId, 256)
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

func headerString(v any) string {
	switch s := v.(type) {
	case string:
		return s
	case []byte:
		return string(s)
	case nil:
		return ""
	default:
		return fmt.Sprint(s)
	}
}

// redact hides the password in an AMQP URL for logs.
func redact(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparseable URL)"
	}
	if u.User != nil {
		u.User = url.User(u.User.Username())
	}
	return u.String()
}
