package main

import (
	"context"
	"encoding/json"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/stretchr/testify/require"

	"github.com/notificationservice/notificationservice/internal/config"
	"github.com/notificationservice/notificationservice/internal/rabbitmq"
	"github.com/notificationservice/notificationservice/internal/testdb"
)

// dlq list shows what is in the dead-letter queue without taking it; dlq
// redrive moves the chosen messages back to NotificationQueue.
func TestDLQCommands(t *testing.T) {
	conn, err := amqp.Dial("amqp://guest:guest@127.0.0.1:5672/")
	if err != nil {
		testdb.Unavailable(t, "RabbitMQ", err)
	}
	defer conn.Close()
	prefix := testdb.Name("cli_")
	cfg := config.Default().AMQP
	cfg.Exchange, cfg.Queue, cfg.RoutingKey = prefix+".ex", prefix+".q", prefix+".q"
	cfg.DeadLetterExchange, cfg.DeadLetterQueue = prefix+".dlx", prefix+".dlq"
	for k, v := range map[string]string{"NOTIFY_AMQP_EXCHANGE": cfg.Exchange, "NOTIFY_AMQP_QUEUE": cfg.Queue, "NOTIFY_AMQP_ROUTING_KEY": cfg.RoutingKey,
		"NOTIFY_AMQP_DEAD_LETTER_EXCHANGE": cfg.DeadLetterExchange, "NOTIFY_AMQP_DEAD_LETTER_QUEUE": cfg.DeadLetterQueue} {
		t.Setenv(k, v)
	}
	ch, err := conn.Channel()
	require.NoError(t, err)
	ch, err = rabbitmq.Declare(ch, cfg, slog.New(slog.DiscardHandler), conn.Channel)
	require.NoError(t, err)
	t.Cleanup(func() {
		_, _ = ch.QueueDelete(cfg.Queue, false, false, false)
		_, _ = ch.QueueDelete(cfg.DeadLetterQueue, false, false, false)
		_ = ch.ExchangeDelete(cfg.Exchange, false, false)
		_ = ch.ExchangeDelete(cfg.DeadLetterExchange, false, false)
	})
	require.NoError(t, ch.Confirm(false))
	for id, reason := range map[string]string{"a": "schema", "b": "not_json"} {
		dc, err := ch.PublishWithDeferredConfirmWithContext(context.Background(), cfg.DeadLetterExchange, cfg.Queue, false, false, amqp.Publishing{
			MessageId: id, Body: []byte(`{"to": "jane@example.com"}`), Headers: amqp.Table{rabbitmq.HeaderReason: reason},
		})
		require.NoError(t, err)
		require.True(t, dc.Wait())
	}
	depth := func(q string) int {
		got, err := ch.QueueDeclarePassive(q, true, false, false, false, nil)
		require.NoError(t, err)
		return got.Messages
	}
	require.Eventually(t, func() bool { return depth(cfg.DeadLetterQueue) == 2 }, 10*time.Second, 10*time.Millisecond)

	db := filepath.Join(t.TempDir(), "x.db")
	out, err := runCmd(t, db, "dlq", "list")
	require.NoError(t, err)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	require.Len(t, lines, 2)
	reasons := map[string]string{}
	for _, l := range lines {
		var m map[string]any
		require.NoError(t, json.Unmarshal([]byte(l), &m))
		reasons[m["messageId"].(string)] = m["reason"].(string)
		require.NotContains(t, m, "body", "bodies hold addresses: only with -body")
	}
	require.Equal(t, map[string]string{"a": "schema", "b": "not_json"}, reasons)
	require.Eventually(t, func() bool { return depth(cfg.DeadLetterQueue) == 2 }, 10*time.Second, 10*time.Millisecond, "list takes nothing away")

	out, err = runCmd(t, db, "dlq", "redrive", "-reason", "schema")
	require.NoError(t, err)
	require.Contains(t, out, "moved 1 message(s)")
	require.Eventually(t, func() bool { return depth(cfg.Queue) == 1 && depth(cfg.DeadLetterQueue) == 1 }, 10*time.Second, 10*time.Millisecond)

	_, err = runCmd(t, db, "dlq", "purge")
	require.ErrorContains(t, err, `unknown dlq command "purge"`)
}
