package main

import (
	"context"
	"encoding/json"
	"log/slog"
	"os"
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
	conn := dialTestBroker(t)
	cfg := testTopology(t)
	t.Run("commands", func(t *testing.T) { testDLQCommands(t, conn, cfg) })

	// The subtest's clean-up has run: it must have left nothing on the broker.
	requireGone(t, conn, cfg)
}

// dialTestBroker connects to the tests' RabbitMQ (NOTIFY_TEST_AMQP_URL or the
// local one); the connection closes after every other clean-up of t.
func dialTestBroker(t *testing.T) *amqp.Connection {
	t.Helper()
	conn, err := amqp.Dial(testAMQPURL())
	if err != nil {
		testdb.Unavailable(t, "RabbitMQ", err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}

func testAMQPURL() string {
	if u := os.Getenv("NOTIFY_TEST_AMQP_URL"); u != "" {
		return u
	}
	return "amqp://guest:guest@127.0.0.1:5672/"
}

// testTopology is the default topology under random names, set in the
// environment so the commands run by the test use it too.
func testTopology(t *testing.T) config.AMQP {
	t.Helper()
	prefix := testdb.Name("cli_")
	cfg := config.Default().AMQP
	cfg.URL = testAMQPURL()
	cfg.Exchange, cfg.Queue, cfg.RoutingKey = prefix+".ex", prefix+".q", prefix+".q"
	cfg.DeadLetterExchange, cfg.DeadLetterQueue = prefix+".dlx", prefix+".dlq"
	for k, v := range map[string]string{"NOTIFY_AMQP_URL": cfg.URL, "NOTIFY_AMQP_EXCHANGE": cfg.Exchange, "NOTIFY_AMQP_QUEUE": cfg.Queue,
		"NOTIFY_AMQP_ROUTING_KEY": cfg.RoutingKey, "NOTIFY_AMQP_DEAD_LETTER_EXCHANGE": cfg.DeadLetterExchange, "NOTIFY_AMQP_DEAD_LETTER_QUEUE": cfg.DeadLetterQueue} {
		t.Setenv(k, v)
	}
	return cfg
}

// declareTopology declares cfg's topology and deletes it when t ends, on a
// channel of its own: the test's channel may be closed by then (a failed
// passive declare closes it), and conn must still be open, which
// dialTestBroker's earlier-registered clean-up guarantees.
func declareTopology(t *testing.T, conn *amqp.Connection, cfg config.AMQP) *amqp.Channel {
	t.Helper()
	ch, err := conn.Channel()
	require.NoError(t, err)
	ch, err = rabbitmq.Declare(ch, cfg, slog.New(slog.DiscardHandler), conn.Channel)
	require.NoError(t, err)
	deleteTopology(t, conn, cfg)
	return ch
}

// deleteTopology deletes cfg's queues and exchanges when t ends.
func deleteTopology(t *testing.T, conn *amqp.Connection, cfg config.AMQP) {
	t.Helper()
	t.Cleanup(func() {
		del, err := conn.Channel()
		if err != nil {
			t.Errorf("clean-up: %v", err)
			return
		}
		defer del.Close()
		for _, q := range []string{cfg.Queue, cfg.DeadLetterQueue} {
			if _, err := del.QueueDelete(q, false, false, false); err != nil {
				t.Errorf("clean-up: delete queue %s: %v", q, err)
			}
		}
		for _, x := range []string{cfg.Exchange, cfg.DeadLetterExchange} {
			if err := del.ExchangeDelete(x, false, false); err != nil {
				t.Errorf("clean-up: delete exchange %s: %v", x, err)
			}
		}
	})
}

// requireGone checks with passive declares that cfg's queues and exchanges
// no longer exist (each failed passive declare closes its channel).
func requireGone(t *testing.T, conn *amqp.Connection, cfg config.AMQP) {
	t.Helper()
	notFound := func(what string, declare func(ch *amqp.Channel) error) {
		ch, err := conn.Channel()
		require.NoError(t, err)
		defer ch.Close()
		err = declare(ch)
		var ae *amqp.Error
		require.ErrorAs(t, err, &ae, "%s is still on the broker", what)
		require.Equal(t, amqp.NotFound, ae.Code, "%s: %v", what, err)
	}
	for _, q := range []string{cfg.Queue, cfg.DeadLetterQueue} {
		notFound("queue "+q, func(ch *amqp.Channel) error {
			_, err := ch.QueueDeclarePassive(q, true, false, false, false, rabbitmq.QueueArgs(cfg))
			return err
		})
	}
	for _, x := range []string{cfg.Exchange, cfg.DeadLetterExchange} {
		notFound("exchange "+x, func(ch *amqp.Channel) error {
			return ch.ExchangeDeclarePassive(x, "direct", true, false, false, false, nil)
		})
	}
}

func testDLQCommands(t *testing.T, conn *amqp.Connection, cfg config.AMQP) {
	ch := declareTopology(t, conn, cfg)
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
