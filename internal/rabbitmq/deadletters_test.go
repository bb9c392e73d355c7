package rabbitmq_test

import (
	"context"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/stretchr/testify/require"

	"github.com/notificationservice/notificationservice/internal/dispatch"
	"github.com/notificationservice/notificationservice/internal/rabbitmq"
)

// deadLetter puts a message on the dead-letter queue as the consumer would.
func (e *env) deadLetter(id, reason string, body []byte) {
	e.t.Helper()
	e.pubMu.Lock()
	defer e.pubMu.Unlock()
	dc, err := e.pub.PublishWithDeferredConfirmWithContext(context.Background(), e.cfg.DeadLetterExchange, e.cfg.Queue, false, false, amqp.Publishing{
		MessageId: id, DeliveryMode: amqp.Persistent, ContentType: "application/json", Body: body,
		Headers: amqp.Table{rabbitmq.HeaderReason: reason, rabbitmq.HeaderError: "because", rabbitmq.HeaderQueue: e.cfg.Queue,
			rabbitmq.HeaderDeadLetteredAt: int64(1709786405347), rabbitmq.HeaderIdempotencyKey: "key-" + id, "traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"},
	})
	require.NoError(e.t, err)
	require.True(e.t, dc.Wait())
}

func TestReadAndRedriveDeadLetters(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	e.deadLetter("s-1", dispatch.ProblemSchema, e.message(1))
	e.deadLetter("j-1", dispatch.ProblemNotJSON, []byte("nope"))
	e.deadLetter("s-2", dispatch.ProblemSchema, e.message(2))
	e.deadLetter("p-1", rabbitmq.ReasonProcessingFailed, e.message(3))
	depth := func(q string) func() int { return func() int { return e.inspectQueue(q).Messages } }
	require.Eventually(t, func() bool { return depth(e.cfg.DeadLetterQueue)() == 4 }, 10*time.Second, 10*time.Millisecond)

	// Reading takes nothing away.
	dls, err := rabbitmq.ReadDeadLetters(ctx, e.cfg, 10)
	require.NoError(t, err)
	require.Len(t, dls, 4)
	byID := map[string]rabbitmq.DeadLetter{}
	for _, d := range dls {
		byID[d.MessageID] = d
	}
	s1 := byID["s-1"]
	require.Equal(t, dispatch.ProblemSchema, s1.Reason)
	require.Equal(t, "because", s1.Error)
	require.Equal(t, e.cfg.Queue, s1.Queue)
	require.Equal(t, int64(1709786405347), s1.DeadLetteredAt.UnixMilli())
	require.Equal(t, rabbitmq.ReasonProcessingFailed, byID["p-1"].Reason)
	require.Eventually(t, func() bool { return depth(e.cfg.DeadLetterQueue)() == 4 }, 10*time.Second, 10*time.Millisecond)
	few, err := rabbitmq.ReadDeadLetters(ctx, e.cfg, 2)
	require.NoError(t, err)
	require.Len(t, few, 2)
	require.Eventually(t, func() bool { return depth(e.cfg.DeadLetterQueue)() == 4 }, 10*time.Second, 10*time.Millisecond)

	// Re-drive only the schema failures: they go back to the queue, the
	// others stay.
	moved, err := rabbitmq.Redrive(ctx, e.cfg, dispatch.ProblemSchema, 0)
	require.NoError(t, err)
	require.Equal(t, 2, moved)
	require.Eventually(t, func() bool {
		return depth(e.cfg.Queue)() == 2 && depth(e.cfg.DeadLetterQueue)() == 2
	}, 10*time.Second, 10*time.Millisecond)
	left, err := rabbitmq.ReadDeadLetters(ctx, e.cfg, 10)
	require.NoError(t, err)
	var reasons []string
	for _, d := range left {
		reasons = append(reasons, d.Reason)
	}
	require.ElementsMatch(t, []string{dispatch.ProblemNotJSON, rabbitmq.ReasonProcessingFailed}, reasons)

	// The re-driven copies keep body, id, key and trace, not the dead-letter headers.
	conn, err := amqp.Dial(e.cfg.URL)
	require.NoError(t, err)
	defer conn.Close()
	ch, err := conn.Channel()
	require.NoError(t, err)
	got := map[string]amqp.Delivery{}
	for range 2 {
		d, ok, err := ch.Get(e.cfg.Queue, true)
		require.NoError(t, err)
		require.True(t, ok)
		got[d.MessageId] = d
	}
	require.Len(t, got, 2)
	d := got["s-1"]
	require.Equal(t, e.message(1), d.Body)
	require.Equal(t, "key-s-1", d.Headers[rabbitmq.HeaderIdempotencyKey])
	require.Contains(t, d.Headers, "traceparent")
	require.NotContains(t, d.Headers, rabbitmq.HeaderReason)
	require.NotContains(t, d.Headers, rabbitmq.HeaderError)
	require.Contains(t, got, "s-2")

	// A limit moves at most that many; with the consumer running, a
	// re-driven message that is now fine is accepted.
	moved, err = rabbitmq.Redrive(ctx, e.cfg, "", 1)
	require.NoError(t, err)
	require.Equal(t, 1, moved)
	require.Eventually(t, func() bool { return depth(e.cfg.DeadLetterQueue)() == 1 }, 10*time.Second, 10*time.Millisecond)
	e.start(false)
	require.Eventually(t, func() bool { return e.count("SELECT COUNT(*) FROM notifications") >= 1 }, 20*time.Second, 10*time.Millisecond)

	// A message that fails again comes back with a new time and is not
	// re-driven a second time by the same run: the run ends.
	e.deadLetter("j-2", dispatch.ProblemNotJSON, []byte("still not json"))
	require.Eventually(t, func() bool { return depth(e.cfg.DeadLetterQueue)() == 2 }, 10*time.Second, 10*time.Millisecond)
	moved, err = rabbitmq.Redrive(ctx, e.cfg, dispatch.ProblemNotJSON, 0)
	require.NoError(t, err)
	require.GreaterOrEqual(t, moved, 1)
	require.LessOrEqual(t, moved, 2)
	require.Eventually(t, func() bool {
		dls, err := rabbitmq.ReadDeadLetters(ctx, e.cfg, 10)
		require.NoError(t, err)
		for _, d := range dls {
			if d.MessageID == "j-2" {
				return d.DeadLetteredAt.UnixMilli() != 1709786405347
			}
		}
		return false
	}, 20*time.Second, 20*time.Millisecond, "j-2 was re-driven once and dead-lettered again by the consumer")
}

// A poison message whose dead-letter publish the broker cannot route (the
// dead-letter queue's binding is gone) is not acked and dropped: the
// publish is mandatory, its return fails the batch, and the consumer's next
// session declares the binding again and dead-letters the message then.
func TestADeadLetterTheBrokerCannotRouteIsNotLost(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.start(false)
	require.NoError(t, e.pub.QueueUnbind(e.cfg.DeadLetterQueue, "", e.cfg.DeadLetterExchange, nil))

	e.publish([]byte("not json"), amqp.Publishing{MessageId: "unroutable-1", ContentType: "application/json"})
	got := e.deadLetters(1)
	require.Len(t, got, 1)
	require.Equal(t, "unroutable-1", got[0].MessageId)
	require.Equal(t, dispatch.ProblemNotJSON, got[0].Headers[rabbitmq.HeaderReason])
	require.Zero(t, e.inspect().Messages, "nothing left on the queue")
}

// A re-drive the broker cannot route (NotificationQueue's binding is gone)
// is an error, and the dead-lettered copy is not acked: without the
// return checked, the broker confirmed the re-published copy and dropped
// it, and the copy in the dead-letter queue was acked: lost.
func TestARedriveTheBrokerCannotRouteIsNotLost(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	e.deadLetter("r-1", dispatch.ProblemSchema, e.message(1))
	dlq := func() int { return e.inspectQueue(e.cfg.DeadLetterQueue).Messages }
	require.Eventually(t, func() bool { return dlq() == 1 }, 10*time.Second, 10*time.Millisecond)
	require.NoError(t, e.pub.QueueUnbind(e.cfg.Queue, e.cfg.RoutingKey, e.cfg.Exchange, nil))

	moved, err := rabbitmq.Redrive(ctx, e.cfg, "", 0)
	require.ErrorContains(t, err, "returned by the broker")
	require.Zero(t, moved)
	require.Eventually(t, func() bool { return dlq() == 1 }, 10*time.Second, 10*time.Millisecond, "still dead-lettered")
	require.Zero(t, e.inspectQueue(e.cfg.Queue).Messages)
}
