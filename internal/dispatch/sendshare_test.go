package dispatch_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/notificationservice/notificationservice/internal/dispatch"
	"github.com/notificationservice/notificationservice/internal/dispatch/intake"
	"github.com/notificationservice/notificationservice/internal/testdb"
)

// waitingInSenders reports whether a worker is blocked handing a group to
// its pool of send goroutines, all of them busy.
func waitingInSenders() bool { return blocked("[chan send", "delivery.(*senders).do(") }

// A worker sends at most its share of dispatch.recordBatch at once, even
// with room left in the bound: more send goroutines could not all be
// sending, and each would keep a send's stack. Here two workers share a
// bound of 5, so each sends 3 groups at once (two on its pool, the last
// itself). One worker is held in a provider call; the other takes six
// groups and starts two, where a pool of 63 started four (the bound's
// room) and then waited in the reservation.
func TestAWorkerSendsItsShareOfTheRecordBound(t *testing.T) {
	t.Parallel()
	db, _ := testdb.Postgres(t)
	b := setup(t, db)
	var slow []string
	for i := range 7 {
		slow = append(slow, fmt.Sprintf("u%d@example.com", i))
	}
	ch := newHolding(slow...)
	cfg := testConfig()
	cfg.Workers, cfg.RecordBatch = 2, 5
	runDispatcher(t, db, b, ch, cfg, nil)

	submit := func(from, to int) []int64 {
		t.Helper()
		var notes []string
		for i := from; i < to; i++ {
			notes = append(notes, fmt.Sprintf(`{"name": "USER_INVITEUSER", "recipients": [{"email": "u%d@example.com", "macros": {"FNAME": "U"}}]}`, i))
		}
		out, err := b.intake.Submit(context.Background(), []intake.Submission{{Source: intake.SourceQueue,
			Request: request(t, b.collectionID, `{"collectionId": CID, "notification": [`+strings.Join(notes, ",")+`]}`)}})
		require.NoError(t, err)
		var ids []int64
		for _, n := range out[0].Notifications {
			ids = append(ids, n.ID)
		}
		return ids
	}
	// One worker takes the first notification and is held in its call.
	ids := submit(0, 1)
	<-ch.entered
	// The other takes the six groups of the next six.
	ids = append(ids, submit(1, 7)...)
	require.Eventually(t, waitingInSenders, 10*time.Second, 5*time.Millisecond,
		"the second worker waits for a send goroutine, with room left in the bound")
	// Its pool's two goroutines are on their way into their calls.
	require.Eventually(t, func() bool { return len(ch.entered) == 2 }, 10*time.Second, 5*time.Millisecond)
	require.False(t, waitingInReserve(), "the bound (5) is not what holds it back: 3 sends are in flight")
	require.True(t, waitingInSenders())
	require.Equal(t, 2, len(ch.entered), "calls the second worker started: its pool's two")

	ch.open()
	for _, id := range ids {
		require.Eventually(t, func() bool { return deliveries(t, b, id, "email")[0].Status == dispatch.StatusSent },
			10*time.Second, 5*time.Millisecond)
	}
}
