// Package rabbitmq connects the service to RabbitMQ: it declares the
// NotificationQueue topology, consumes messages in batches with manual
// acks, hands them to the dispatch intake, dead-letters poison with its
// reason, and reconnects with backoff when the connection or a channel
// drops.
package rabbitmq

import (
	"errors"
	"fmt"
	"log/slog"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/notificationservice/notificationservice/internal/config"
)

// QueueArgs are the arguments NotificationQueue is declared with: a quorum
// queue (replicated, and it counts deliveries) that dead-letters to the DLX
// after DeliveryLimit deliveries, at-least-once (the broker keeps a
// dead-lettered message until the dead-letter queue confirms it; that
// strategy needs reject-publish overflow).
func QueueArgs(cfg config.AMQP) amqp.Table {
	return amqp.Table{
		"x-queue-type":           "quorum",
		"x-dead-letter-exchange": cfg.DeadLetterExchange,
		"x-delivery-limit":       int64(cfg.DeliveryLimit),
		"x-dead-letter-strategy": "at-least-once",
		"x-overflow":             "reject-publish",
	}
}

// Declare declares the topology on ch: the durable direct exchange and the
// queue bound to it with the routing key, and the dead-letter exchange
// (fanout) with its quorum queue. Declaring is idempotent. If the queue
// already exists with other arguments (406 PRECONDITION_FAILED), Declare
// logs that and uses the queue as it is, opening a new channel through
// reopen since the broker closes the failed one.
func Declare(ch *amqp.Channel, cfg config.AMQP, log *slog.Logger, reopen func() (*amqp.Channel, error)) (*amqp.Channel, error) {
	if err := ch.ExchangeDeclare(cfg.DeadLetterExchange, amqp.ExchangeFanout, true, false, false, false, nil); err != nil {
		return ch, fmt.Errorf("rabbitmq: declare exchange %q: %w", cfg.DeadLetterExchange, err)
	}
	if _, err := ch.QueueDeclare(cfg.DeadLetterQueue, true, false, false, false, amqp.Table{"x-queue-type": "quorum"}); err != nil {
		return ch, fmt.Errorf("rabbitmq: declare queue %q: %w", cfg.DeadLetterQueue, err)
	}
	if err := ch.QueueBind(cfg.DeadLetterQueue, "", cfg.DeadLetterExchange, false, nil); err != nil {
		return ch, fmt.Errorf("rabbitmq: bind %q: %w", cfg.DeadLetterQueue, err)
	}
	if cfg.Exchange != "" {
		if err := ch.ExchangeDeclare(cfg.Exchange, amqp.ExchangeDirect, true, false, false, false, nil); err != nil {
			return ch, fmt.Errorf("rabbitmq: declare exchange %q: %w", cfg.Exchange, err)
		}
	}
	if _, err := ch.QueueDeclare(cfg.Queue, true, false, false, false, QueueArgs(cfg)); err != nil {
		var aerr *amqp.Error
		if !errors.As(err, &aerr) || aerr.Code != amqp.PreconditionFailed || reopen == nil {
			return ch, fmt.Errorf("rabbitmq: declare queue %q: %w", cfg.Queue, err)
		}
		log.Error("rabbitmq: queue exists with other arguments; using it as declared (its dead-lettering and delivery limit may differ from this service's)",
			"queue", cfg.Queue, "error", aerr.Reason)
		if ch, err = reopen(); err != nil {
			return nil, fmt.Errorf("rabbitmq: reopen channel: %w", err)
		}
		if _, err := ch.QueueDeclarePassive(cfg.Queue, true, false, false, false, nil); err != nil {
			return ch, fmt.Errorf("rabbitmq: queue %q: %w", cfg.Queue, err)
		}
	}
	if cfg.Exchange != "" {
		if err := ch.QueueBind(cfg.Queue, cfg.RoutingKey, cfg.Exchange, false, nil); err != nil {
			return ch, fmt.Errorf("rabbitmq: bind %q: %w", cfg.Queue, err)
		}
	}
	return ch, nil
}
