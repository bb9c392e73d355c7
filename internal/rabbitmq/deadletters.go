package rabbitmq

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/notificationservice/notificationservice/internal/config"
)

// DeadLetter is one message in the dead-letter queue, as an operator reads
// it (docs/runbook.md).
type DeadLetter struct {
	MessageID      string
	Reason         string // x-notify-reason, or the broker's x-death reason (delivery_limit, …)
	Error          string // x-notify-error
	Queue          string // the queue it came from
	DeadLetteredAt time.Time
	Redelivered    bool // read before and returned (by an earlier list)
	Headers        amqp.Table
	Body           []byte
}

// ReadDeadLetters returns up to n messages from the head of the dead-letter
// queue without removing them: they are held unacked while read and all
// returned to the queue when the channel closes.
func ReadDeadLetters(ctx context.Context, cfg config.AMQP, n int) ([]DeadLetter, error) {
	var out []DeadLetter
	err := withChannel(cfg, func(ch *amqp.Channel) error {
		for len(out) < n {
			if err := ctx.Err(); err != nil {
				return err
			}
			d, ok, err := ch.Get(cfg.DeadLetterQueue, false)
			if err != nil {
				return fmt.Errorf("rabbitmq: get %s: %w", cfg.DeadLetterQueue, err)
			}
			if !ok {
				break
			}
			out = append(out, deadLetterOf(&d))
		}
		return nil // closing the channel returns every message read
	})
	return out, err
}

// Redrive moves messages from the dead-letter queue back to the service's
// exchange and routing key (amqp.exchange, amqp.routingKey; the default
// exchange and amqp.queue when no exchange is configured), at most limit of
// them (0: no limit), only those whose reason is reason when reason is not
// empty, and only those dead-lettered before it started: a re-driven
// message that fails again comes back to the dead-letter queue with a new
// time and is left there, so a run always ends. Each is published persistent with its body,
// properties and headers (less the dead-letter ones, which a new failure
// writes afresh), the broker's confirm is awaited, and only then is the
// dead-lettered copy acked: a failure leaves it in the dead-letter queue,
// never lost. Messages it skips stay where they are. Their idempotency keys
// make re-driving a message that was in fact accepted harmless; a message
// dead-lettered as idempotency_conflict conflicts again unless its producer
// sends it with a new key. It returns how many it moved.
func Redrive(ctx context.Context, cfg config.AMQP, reason string, limit int) (int, error) {
	moved := 0
	err := withChannel(cfg, func(ch *amqp.Channel) error {
		cc, err := confirming(ch)
		if err != nil {
			return err
		}
		exchange, key := cfg.Exchange, cfg.RoutingKey
		if exchange == "" {
			key = cfg.Queue
		}
		started := time.Now()
		// Each message is looked at once: skipped ones are held unacked
		// (so Get moves on) and returned when the channel closes.
		for limit <= 0 || moved < limit {
			if err := ctx.Err(); err != nil {
				return err
			}
			d, ok, err := ch.Get(cfg.DeadLetterQueue, false)
			if err != nil {
				return fmt.Errorf("rabbitmq: get %s: %w", cfg.DeadLetterQueue, err)
			}
			if !ok {
				break
			}
			dl := deadLetterOf(&d)
			if (reason != "" && dl.Reason != reason) || dl.DeadLetteredAt.After(started) {
				continue
			}
			headers := amqp.Table{}
			for k, v := range d.Headers {
				if k == "x-death" || k == "x-first-death-exchange" || k == "x-first-death-queue" || k == "x-first-death-reason" ||
					strings.HasPrefix(k, "x-notify-") {
					continue
				}
				headers[k] = v
			}
			// A copy the broker returns (nothing bound to the exchange) or
			// nacks is an error, and the dead-lettered one is not acked.
			if err := cc.publish(ctx, exchange, key, amqp.Publishing{
				Headers: headers, ContentType: d.ContentType, ContentEncoding: d.ContentEncoding, DeliveryMode: amqp.Persistent,
				CorrelationId: d.CorrelationId, MessageId: d.MessageId, Timestamp: d.Timestamp, Type: d.Type, AppId: d.AppId,
				Body: d.Body,
			}); err != nil {
				return fmt.Errorf("rabbitmq: re-publish %q: %w", d.MessageId, err)
			}
			if err := d.Ack(false); err != nil {
				return fmt.Errorf("rabbitmq: ack %q in %s (it was re-published; the copy left behind is a duplicate its key makes harmless): %w",
					d.MessageId, cfg.DeadLetterQueue, err)
			}
			moved++
		}
		return nil
	})
	return moved, err
}

func withChannel(cfg config.AMQP, fn func(ch *amqp.Channel) error) error {
	conn, err := amqp.DialConfig(cfg.URL, amqp.Config{
		Heartbeat: 10 * time.Second, Locale: "en_US", Dial: amqp.DefaultDial(10 * time.Second),
		Properties: amqp.Table{"connection_name": "notificationservice-dlq"},
	})
	if err != nil {
		return fmt.Errorf("rabbitmq: dial: %w", err)
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		return fmt.Errorf("rabbitmq: open channel: %w", err)
	}
	// Closing returns whatever is still unacked to the queue.
	return errors.Join(fn(ch), ignoreClosed(ch.Close()))
}

func ignoreClosed(err error) error {
	if errors.Is(err, amqp.ErrClosed) {
		return nil
	}
	return err
}

func deadLetterOf(d *amqp.Delivery) DeadLetter {
	dl := DeadLetter{
		MessageID:   d.MessageId,
		Reason:      headerString(d.Headers[HeaderReason]),
		Error:       headerString(d.Headers[HeaderError]),
		Queue:       headerString(d.Headers[HeaderQueue]),
		Redelivered: d.Redelivered,
		Headers:     d.Headers,
		Body:        d.Body,
	}
	if ms, err := strconv.ParseInt(headerString(d.Headers[HeaderDeadLetteredAt]), 10, 64); err == nil {
		dl.DeadLetteredAt = time.UnixMilli(ms)
	}
	// Dead-lettered by the broker (x-delivery-limit): its x-death header.
	if deaths, ok := d.Headers["x-death"].([]any); ok && len(deaths) > 0 {
		if death, ok := deaths[0].(amqp.Table); ok {
			if dl.Reason == "" {
				dl.Reason = headerString(death["reason"])
			}
			if dl.Queue == "" {
				dl.Queue = headerString(death["queue"])
			}
			if t, ok := death["time"].(time.Time); ok && dl.DeadLetteredAt.IsZero() {
				dl.DeadLetteredAt = t
			}
		}
	}
	return dl
}
