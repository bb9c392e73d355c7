package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/google/uuid"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/notificationservice/notificationservice/internal/config"
	"github.com/notificationservice/notificationservice/internal/rabbitmq"
)

// publish puts one NotificationQueue message (docs/queue.md) on the queue,
// the way a producing service should: persistent, with a message id, and
// only reported done once the broker confirmed it.
//
//	notificationservice publish [-amqp URL] [-message-id ID] [-file F | JSON | stdin]
func publish(cfg config.Config, args []string, stdin io.Reader, out, errOut io.Writer) error {
	fs := flag.NewFlagSet("publish", flag.ContinueOnError)
	fs.SetOutput(errOut)
	amqpURL := fs.String("amqp", cfg.AMQP.URL, "broker URL (default: amqp.url)")
	messageID := fs.String("message-id", "", "message_id, the dedupe key (default: a new UUID, so each run is a new notification)")
	file := fs.String("file", "", "read the message from this file (default: the JSON argument, else stdin)")
	timeout := fs.Duration("timeout", 30*time.Second, "give up waiting for the broker after this long")
	fs.Usage = func() {
		fmt.Fprintln(errOut, "usage: notificationservice publish [-amqp URL] [-message-id ID] [-file F | JSON | < F]")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	body, err := messageBody(*file, fs.Args(), stdin)
	if err != nil {
		return err
	}
	if *messageID == "" {
		*messageID = uuid.NewString()
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	amqpCfg := cfg.AMQP
	amqpCfg.URL = *amqpURL
	where, err := rabbitmq.Publish(ctx, amqpCfg, amqp.Publishing{
		ContentType: "application/json", MessageId: *messageID, Timestamp: time.Now(), AppId: "notificationservice-publish", Body: body,
	})
	if err != nil {
		return err
	}
	exchange := where.Exchange
	if exchange == "" {
		exchange = "(default)"
	}
	fmt.Fprintf(out, "published message %s (%d bytes, persistent, confirmed by the broker) to exchange %s, routing key %s, queue %s at %s\n",
		*messageID, len(body), exchange, where.RoutingKey, where.Queue, redactURL(*amqpURL))
	return nil
}

// messageBody reads the message from file, the one JSON argument, or stdin,
// and checks it is a JSON object: anything else would only be dead-lettered
// as not_json or schema by the consumer.
func messageBody(file string, args []string, stdin io.Reader) ([]byte, error) {
	var (
		body []byte
		err  error
	)
	switch {
	case len(args) > 1:
		return nil, errors.New("publish: give one JSON message (quote it), -file F, or the message on stdin")
	case file != "" && len(args) == 1:
		return nil, errors.New("publish: give -file or a JSON argument, not both")
	case file != "":
		body, err = os.ReadFile(file)
	case len(args) == 1:
		body = []byte(args[0])
	default:
		body, err = io.ReadAll(stdin)
	}
	if err != nil {
		return nil, fmt.Errorf("publish: read message: %w", err)
	}
	body = bytes.TrimSpace(body)
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(body, &obj); err != nil {
		return nil, fmt.Errorf("publish: the message must be a JSON object (docs/queue.md): %w", err)
	}
	return body, nil
}

// redactURL drops the password from a broker URL before it is printed.
func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparsable URL)"
	}
	return u.Redacted()
}
