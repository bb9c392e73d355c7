package rabbitmq_test

import (
	"fmt"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/stretchr/testify/require"

	"github.com/notificationservice/notificationservice/internal/actions"
	"github.com/notificationservice/notificationservice/internal/dispatch"
	"github.com/notificationservice/notificationservice/internal/dispatch/intake"
	"github.com/notificationservice/notificationservice/internal/rabbitmq"
)

// A queue message's sendAt schedules its deliveries; one beyond
// dispatch.maxScheduleAhead is dead-lettered (reason schema, the error
// naming the field) while the rest of its batch is committed.
func TestQueueSendAtSchedulesOrDeadLetters(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.intake = intake.New(e.db, actions.NewRules(e.db), nil, nil, e.disp, intake.WithMaxScheduleAhead(24*time.Hour))
	e.start(false)
	body := func(at time.Time) []byte {
		return fmt.Appendf(nil, `{"collectionId": %d, "notification": [{"name": "USER_INVITEUSER", "sendAt": %q,
  "recipients": [{"email": "a@example.com", "macros": {"FNAME": "A"}}]}]}`, e.collectionID, at.Format(time.RFC3339))
	}
	e.publish(body(time.Now().Add(48*time.Hour)), amqp.Publishing{MessageId: "far"})
	e.publish(body(time.Now().Add(time.Hour)), amqp.Publishing{MessageId: "near"})

	dead := e.deadLetters(1)
	require.Len(t, dead, 1)
	require.Equal(t, "far", dead[0].MessageId)
	require.Equal(t, dispatch.ProblemSchema, dead[0].Headers[rabbitmq.HeaderReason])
	require.Contains(t, dead[0].Headers[rabbitmq.HeaderError], "notification[0].sendAt")

	require.Eventually(t, func() bool {
		return e.count("SELECT COUNT(*) FROM deliveries WHERE status = 'scheduled' AND reason = 'send_at'") == 1
	}, 10*time.Second, 10*time.Millisecond, "the near one is committed, scheduled")
	require.EqualValues(t, 1, e.count("SELECT COUNT(*) FROM notifications"))
}
