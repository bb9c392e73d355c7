package main

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/notificationservice/notificationservice/internal/actions"
	"github.com/notificationservice/notificationservice/internal/dispatch"
)

// TestScheduledDeliveriesSurviveSIGKILL runs the real binary as the only
// worker of a database holding two scheduled notifications: the first comes
// due and is sent, the binary is SIGKILLed before the second is due, and the
// second comes due while no instance runs. A new process finds it, still
// scheduled, and sends it; each delivery is sent exactly once (one attempt,
// one sandbox record). The schedule is rows, not timers: nothing in memory
// is lost with the process.
func TestScheduledDeliveriesSurviveSIGKILL(t *testing.T) {
	cfg := actions.Config{Content: actions.Content{Subject: "Reminder", Text: "It is time"}}
	restartTest(t, "REMIND", cfg, func(t *testing.T, b *restartBundle) {
		a := b.start(t) // first: its start-up is not on the schedule's clock
		now := time.Now()
		first, second := now.Add(time.Second), now.Add(6*time.Second)
		ids := make([]int64, 2)
		for i, at := range []time.Time{first, second} {
			ids[i] = b.submit(t, fmt.Sprintf(`{"collectionId": %d, "notification": [{"name": "REMIND", "sendAt": %d,
  "recipients": [{"email": "r%d@example.com"}]}]}`, b.cid, at.UnixMilli(), i))
		}
		require.Equal(t, dispatch.StatusScheduled, b.status(t, ids[0]))

		require.Eventually(t, func() bool { return b.status(t, ids[0]) == dispatch.StatusSent }, 30*time.Second, 20*time.Millisecond,
			"the first is sent when due")
		sigkill(t, a)
		require.True(t, time.Now().Before(second), "the machine was too slow to kill the service before the second was due")
		require.Equal(t, dispatch.StatusScheduled, b.status(t, ids[1]), "not sent before its time, not lost with the process")

		_ = b.start(t)
		require.Eventually(t, func() bool { return b.status(t, ids[1]) == dispatch.StatusSent }, 30*time.Second, 20*time.Millisecond,
			"the second is sent by the next process")
		for _, id := range ids {
			var row struct {
				ID       int64
				Attempts int
				SentTime int64
			}
			require.NoError(t, b.db.Raw("SELECT id, attempts, sent_time FROM deliveries WHERE notification_id = ?", id).Scan(&row).Error)
			require.Equal(t, 1, row.Attempts, "sent once")
			var records int64
			require.NoError(t, b.db.Raw("SELECT COUNT(*) FROM sandbox_messages WHERE delivery_id = ?", row.ID).Scan(&records).Error)
			require.EqualValues(t, 1, records, "one message reached the provider")
		}
		var sentAt int64
		require.NoError(t, b.db.Raw("SELECT sent_time FROM deliveries WHERE notification_id = ?", ids[1]).Scan(&sentAt).Error)
		require.GreaterOrEqual(t, sentAt, second.UnixMilli(), "not before its time")
	})
}
