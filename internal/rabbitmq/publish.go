package rabbitmq

import (
	"context"
	"errors"
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
		cc, err := confirming(ch)
		if err != nil {
			return err
		}
		msg.DeliveryMode = amqp.Persistent
		var returned *returnedError
		switch err := cc.publish(ctx, exchange, key, msg); {
		case errors.As(err, &returned):
			return fmt.Errorf("rabbitmq: publish: %w (nothing is bound to exchange %q with key %q)", err, exchange, key)
		case errors.Is(err, errNacked):
			return fmt.Errorf("rabbitmq: publish: %w (queue %s full or unavailable)", err, cfg.Queue)
		case err != nil:
			return fmt.Errorf("rabbitmq: publish: %w", err)
		}
		return nil
	})
	return where, err
}

// confirmChannel is a channel in confirm mode whose publishes are
// mandatory, with the broker's returns of them. Every publish that must not
// be lost goes through its publish: Publish, the consumer's dead letters
// and Redrive. A mandatory publish the broker cannot route (no queue bound,
// or a node that has just restarted and does not route yet) is confirmed
// all the same and then dropped, so the return, not the confirm, is what
// says it was not taken.
type confirmChannel struct {
	*amqp.Channel
	returns <-chan amqp.Return
}

func confirming(ch *amqp.Channel) (confirmChannel, error) {
	if err := ch.Confirm(false); err != nil {
		return confirmChannel{}, fmt.Errorf("rabbitmq: confirm mode: %w", err)
	}
	return confirmChannel{Channel: ch, returns: ch.NotifyReturn(make(chan amqp.Return, 4))}, nil
}

// errNacked is a publish the broker nacked.
var errNacked = errors.New("nacked by the broker")

// returnedError is a mandatory publish the broker returned: it routed it
// to no queue.
type returnedError struct {
	Code uint16
	Text string
}

func (e *returnedError) Error() string {
	return fmt.Sprintf("returned by the broker: %d %s", e.Code, e.Text)
}

// publish publishes msg mandatory and waits for the broker's confirm. It
// fails with a *returnedError when the broker returned it and with
// errNacked when the broker nacked it; only a nil error means the broker
// holds the message.
func (c confirmChannel) publish(ctx context.Context, exchange, key string, msg amqp.Publishing) error {
	// A return left by an earlier publish whose confirm was not waited for
	// is not this one's.
	for drained := false; !drained; {
		select {
		case _, open := <-c.returns:
			drained = !open // closed with the channel: the publish below fails
		default:
			drained = true
		}
	}
	dc, err := c.PublishWithDeferredConfirmWithContext(ctx, exchange, key, true, false, msg)
	if err != nil {
		return err
	}
	ok, err := dc.WaitContext(ctx)
	if err != nil {
		return fmt.Errorf("waiting for the broker's confirm: %w", err)
	}
	// The broker sends basic.return before the confirm of the same
	// message, and the client hands it over before it reads the confirm.
	select {
	case r, open := <-c.returns:
		if !open {
			return errors.New("channel closed")
		}
		return &returnedError{Code: r.ReplyCode, Text: r.ReplyText}
	default:
	}
	if !ok {
		return errNacked
	}
	return nil
}
