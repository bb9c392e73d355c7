package rabbitmq_test

import (
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/stretchr/testify/require"

	"github.com/notificationservice/notificationservice/internal/dispatch"
	"github.com/notificationservice/notificationservice/internal/rabbitmq"
)

// The producer headers of seed 004 as AMQP headers: kept on the
// notification; a bad one, or a tenant that is not the collection's,
// dead-letters the message with its reason. A message with none of them is
// accepted as before.
func TestProducerHeadersOnTheQueue(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	require.NoError(t, e.db.Exec("UPDATE collections SET tenant = 'dodici' WHERE id = ?", e.collectionID).Error)
	e.publish(e.message(1), amqp.Publishing{MessageId: "with-headers", Headers: amqp.Table{
		"tenant": "dodici", "team": "team-inventory", "service": "inventory-manager",
		"entity-id":       "000816c3-e9b2-440b-8d27-dfaa4cae00ef",
		"correlation-ids": `{"order_id": "order-1", "customer_id": "customer-7"}`,
	}})
	e.publish(e.message(2), amqp.Publishing{MessageId: "other-tenant", Headers: amqp.Table{"tenant": "other"}})
	e.publish(e.message(3), amqp.Publishing{MessageId: "bad-correlation", Headers: amqp.Table{"correlation-ids": `{"order_id": 7}`}})
	e.publish(e.message(4), amqp.Publishing{MessageId: "bad-entity", Headers: amqp.Table{"entity-id": "e\x00"}})
	e.publish(e.message(5), amqp.Publishing{MessageId: "no-headers"})
	e.start(false)

	dead := e.deadLetters(3)
	require.Len(t, dead, 3)
	why := map[string]amqp.Delivery{}
	for _, d := range dead {
		why[d.MessageId] = d
	}
	require.Equal(t, rabbitmq.ReasonTenantMismatch, why["other-tenant"].Headers[rabbitmq.HeaderReason])
	require.Contains(t, why["other-tenant"].Headers[rabbitmq.HeaderError], "another tenant")
	require.Equal(t, dispatch.ProblemHeader, why["bad-correlation"].Headers[rabbitmq.HeaderReason])
	require.Contains(t, why["bad-correlation"].Headers[rabbitmq.HeaderError], "correlation-ids")
	require.Equal(t, dispatch.ProblemHeader, why["bad-entity"].Headers[rabbitmq.HeaderReason])
	require.Contains(t, why["bad-entity"].Headers[rabbitmq.HeaderError], "entity-id")

	require.Eventually(t, func() bool { return e.count("SELECT COUNT(*) FROM notifications") == 2 }, 10*time.Second, 20*time.Millisecond)
	var n dispatch.NotificationRecord
	require.NoError(t, e.db.Where("idempotency_key = ?", "with-headers").Take(&n).Error)
	require.Equal(t, "dodici", n.Tenant)
	require.Equal(t, "team-inventory", n.Team)
	require.Equal(t, "inventory-manager", n.Service)
	require.Equal(t, "000816c3-e9b2-440b-8d27-dfaa4cae00ef", n.EntityID)
	require.Equal(t, "order-1", n.Correlation["order_id"])
	require.Equal(t, "customer-7", n.Correlation["customer_id"])
	require.Equal(t, "with-headers", n.Correlation["messageId"])
	require.EqualValues(t, 1, e.count("SELECT COUNT(*) FROM notifications WHERE idempotency_key = 'no-headers' AND tenant = ''"))

	s := e.consumer.Stats()
	require.EqualValues(t, 1, s.DeadLettered[rabbitmq.ReasonTenantMismatch])
	require.EqualValues(t, 2, s.DeadLettered[dispatch.ProblemHeader])
}
