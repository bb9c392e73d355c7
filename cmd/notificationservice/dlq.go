package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os/signal"
	"syscall"
	"time"

	"github.com/notificationservice/notificationservice/internal/config"
	"github.com/notificationservice/notificationservice/internal/rabbitmq"
)

// dlq reads the dead-letter queue and re-drives messages from it
// (docs/runbook.md):
//
//	notificationservice dlq list [-n 20] [-body]
//	notificationservice dlq redrive [-reason R] [-limit N]
func dlq(cfg config.Config, args []string, out, errOut io.Writer) error {
	if len(args) == 0 {
		return errors.New("usage: dlq list|redrive [flags]")
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	fs := flag.NewFlagSet("dlq "+args[0], flag.ContinueOnError)
	fs.SetOutput(errOut)
	switch args[0] {
	case "list":
		n := fs.Int("n", 20, "messages to show, from the head of the queue")
		body := fs.Bool("body", false, "print each message's body (it holds recipients' addresses)")
		if err := fs.Parse(args[1:]); err != nil {
			return err
		}
		dls, err := rabbitmq.ReadDeadLetters(ctx, cfg.AMQP, *n)
		if err != nil {
			return err
		}
		enc := json.NewEncoder(out)
		for _, d := range dls {
			line := map[string]any{
				"messageId": d.MessageID, "reason": d.Reason, "error": d.Error, "queue": d.Queue,
				"bytes": len(d.Body), "headers": d.Headers,
			}
			if !d.DeadLetteredAt.IsZero() {
				line["deadLetteredAt"] = d.DeadLetteredAt.UTC().Format(time.RFC3339Nano)
			}
			if *body {
				line["body"] = string(d.Body)
			}
			if err := enc.Encode(line); err != nil {
				return err
			}
		}
		fmt.Fprintf(errOut, "%d message(s) shown from %s; none removed\n", len(dls), cfg.AMQP.DeadLetterQueue)
		return nil
	case "redrive":
		reason := fs.String("reason", "", "only messages dead-lettered for this reason (schema, not_json, processing_failed, delivery_limit, …)")
		limit := fs.Int("limit", 0, "move at most this many (0: every one dead-lettered before the command started)")
		if err := fs.Parse(args[1:]); err != nil {
			return err
		}
		moved, err := rabbitmq.Redrive(ctx, cfg.AMQP, *reason, *limit)
		fmt.Fprintf(out, "moved %d message(s) from %s back to %s\n", moved, cfg.AMQP.DeadLetterQueue, cfg.AMQP.Queue)
		return err
	default:
		return fmt.Errorf("unknown dlq command %q (want list or redrive)", args[0])
	}
}
