package dispatch_test

import (
	"context"
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/notificationservice/notificationservice/internal/actions"
	"github.com/notificationservice/notificationservice/internal/channels"
	"github.com/notificationservice/notificationservice/internal/dispatch"
	"github.com/notificationservice/notificationservice/internal/dispatch/delivery"
	"github.com/notificationservice/notificationservice/internal/dispatch/intake"
	"github.com/notificationservice/notificationservice/internal/outbox"
	"github.com/notificationservice/notificationservice/internal/testdb"
)

// waitingInSenders reports whether a worker is blocked handing a group to
// its pool of send goroutines, all of them busy.
func waitingInSenders() bool {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	for g := range strings.SplitSeq(string(buf), "\n\n") {
		if strings.Contains(g, "[chan send") && strings.Contains(g, "delivery.(*senders).do(") {
			return true
		}
	}
	return false
}

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
	disp := delivery.New(db, map[string]channels.Channel{"email": ch, "sms": ch}, cfg,
		delivery.Senders{Email: channels.Address{Email: "noreply@example.com"}}, discard(), nil)
	b.intake = intake.New(db, actions.NewRules(db), outbox.NewWriter(nil, nil), nil, disp)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = disp.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	t.Cleanup(ch.open) // first: a failed test must not leave Run in Send

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
	require.Equal(t, 2, len(ch.entered), "calls the second worker started: its pool's two")
	require.False(t, waitingInReserve(), "the bound (5) is not what holds it back: 3 sends are in flight")

	ch.open()
	for _, id := range ids {
		require.Eventually(t, func() bool { return deliveries(t, b, id, "email")[0].Status == dispatch.StatusSent },
			10*time.Second, 5*time.Millisecond)
	}
}
