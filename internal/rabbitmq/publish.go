package rabbitmq

import (
	"context"
	"fmt"
	"log/slog"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/notificationservice/notificationservice/internal/config"
)

// Published says where a message went.
type Published struct {
	Exchange   string // "" is the default exchange
	RoutingKey string
	Queue      string
}

// Publish puts one message on NotificationQueue as a producer should
// (docs/queue.md): it declares the topology first, so the message is kept
// even before the service has ever started, then publishes persistent and
// mandatory on a confirm channel and waits for the broker's ack. A message
// the broker returns (no queue bound) or nacks is an error, never a silent
// loss.
func Publish(ctx context.Context, cfg config.AMQP, msg amqp.Publishing) (Published, error) {
	exchange, key := cfg.Exchange, cfg.RoutingKey
	if exchange == "" {
		key = cfg.Queue
	}
	where := Published{Exchange: exchange, RoutingKey: key, Queue: cfg.Queue}
	err := withChannel(cfg, func(ch *amqp.Channel) error {
		// Declare logs only when the queue exists with other arguments, and
		// then carries on with it as it is; the caller hears of it through
		// Publish's result, not a log line, so the log is dropped.
		ch, err := Declare(ch, cfg, slog.New(slog.DiscardHandler), nil)
		if err != nil {
			return err
		}
		if err := ch.Confirm(false); err != nil {
			return fmt.Errorf("rabbitmq: confirm mode: %w", err)
		}
		// The broker sends basic.return before the ack of the same
		// message, and the client hands it over before it reads the ack.
		returned := ch.NotifyReturn(make(chan amqp.Return, 1))
		msg.DeliveryMode = amqp.Persistent
		dc, err := ch.PublishWithDeferredConfirmWithContext(ctx, exchange, key, true, false, msg)
		if err != nil {
			return fmt.Errorf("rabbitmq: publish: %w", err)
		}
		ok, err := dc.WaitContext(ctx)
		if err != nil {
			return fmt.Errorf("rabbitmq: publish: waiting for the broker's confirm: %w", err)
		}
		select {
		case r := <-returned:
			return fmt.Errorf("rabbitmq: publish: returned by the broker: %d %s (nothing is bound to exchange %q with key %q)",
				r.ReplyCode, r.ReplyText, exchange, key)
		default:
		}
		if !ok {
			return fmt.Errorf("rabbitmq: publish: nacked by the broker (queue %s full or unavailable)", cfg.Queue)
		}
		return nil
	})
	return where, err
}
