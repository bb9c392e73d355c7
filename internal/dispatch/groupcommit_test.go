package dispatch_test

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/require"
	"gorm.io/gorm"

	"github.com/notificationservice/notificationservice/internal/actions"
	"github.com/notificationservice/notificationservice/internal/apperr"
	"github.com/notificationservice/notificationservice/internal/auth"
	"github.com/notificationservice/notificationservice/internal/dispatch"
	"github.com/notificationservice/notificationservice/internal/dispatch/delivery"
	"github.com/notificationservice/notificationservice/internal/dispatch/intake"
	"github.com/notificationservice/notificationservice/internal/outbox"
	"github.com/notificationservice/notificationservice/internal/testdb"
)

// countingLocal counts the intake's transactions that stored deliveries:
// each reserves hand-off room once.
type countingLocal struct {
	*delivery.Dispatcher
	reserves atomic.Int64
}

func (c *countingLocal) Reserve(n int) int {
	c.reserves.Add(1)
	return c.Dispatcher.Reserve(n)
}

// groupIntake is b's intake with group commit (a wait of an hour: a batch
// goes when most have joined) and a horizon for sendAt of a day.
func groupIntake(b *bundle, most int) (*intake.Intake, *countingLocal) {
	local := &countingLocal{Dispatcher: b.disp}
	return intake.New(b.db, actions.NewRules(b.db), outbox.NewWriter(nil, nil), nil, local,
		intake.WithGroupCommit(time.Hour, most, 4), intake.WithMaxScheduleAhead(24*time.Hour)), local
}

type sendResult struct {
	out intake.Outcome
	err error
}

// sendAll sends each body under its key, concurrently, with ctxs[i] (nil:
// a live one), and returns the results in order.
func sendAll(t *testing.T, in *intake.Intake, b *bundle, keys, bodies []string, ctxs ...context.Context) []sendResult {
	t.Helper()
	res := make([]sendResult, len(keys))
	var wg sync.WaitGroup
	for i := range keys {
		ctx := context.Background()
		if i < len(ctxs) && ctxs[i] != nil {
			ctx = ctxs[i]
		}
		wg.Go(func() {
			out, err := in.Send(ctx, request(t, b.collectionID, bodies[i]), keys[i], nil, dispatch.Producer{}, auth.Principal{UserID: "u1"})
			res[i] = sendResult{out, err}
		})
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("sends still waiting: the batch was not taken")
	}
	return res
}

func oneTo(email string, extra string) string {
	return `{"collectionId": CID, "notification": [{"name": "USER_INVITEUSER"` + extra + `, "recipients": [{"email": "` + email + `", "macros": {"FNAME": "X"}}]}]}`
}

// Concurrent Sends share one transaction; each is answered with its own
// notification, stored under its own key.
func TestGroupCommitSharesOneTransaction(t *testing.T) {
	t.Parallel()
	testdb.Dialects(t, func(t *testing.T, db *gorm.DB) {
		b := setup(t, db)
		in, local := groupIntake(b, 5)
		var keys, bodies []string
		for i := range 5 {
			keys = append(keys, "gc-"+strconv.Itoa(i))
			bodies = append(bodies, oneTo("u"+strconv.Itoa(i)+"@example.com", ""))
		}
		res := sendAll(t, in, b, keys, bodies)
		require.EqualValues(t, 1, local.reserves.Load(), "5 sends, 1 transaction")
		ids := map[int64]bool{}
		for i, r := range res {
			require.NoError(t, r.err, "send %d", i)
			require.Len(t, r.out.Notifications, 1)
			id := r.out.Notifications[0].ID
			ids[id] = true
			require.Equal(t, "u"+strconv.Itoa(i)+"@example.com", deliveries(t, b, id, "email")[0].Recipient.Email)
		}
		require.Len(t, ids, 5, "each its own notification")

		// Each key is its own: a resend replays that send's result alone.
		again := sendAll(t, b.intake, b, keys[2:3], bodies[2:3])
		require.NoError(t, again[0].err)
		require.True(t, again[0].out.Replayed)
		require.Equal(t, res[2].out.Notifications, again[0].out.Notifications)
	})
}

// In one batch each request keeps its own outcome: a key reused with
// another body is FAILED_PRECONDITION, a sendAt beyond the horizon
// INVALID_ARGUMENT, a key seen before with the same body a replay, and the
// fresh send is accepted, all in one transaction.
func TestGroupCommitKeepsEachRequestsOutcome(t *testing.T) {
	t.Parallel()
	testdb.Dialects(t, func(t *testing.T, db *gorm.DB) {
		b := setup(t, db)
		in, local := groupIntake(b, 4)
		first := sendAll(t, b.intake, b, []string{"k-1"}, []string{oneTo("a@example.com", "")})
		require.NoError(t, first[0].err)
		res := sendAll(t, in, b,
			[]string{"k-1", "k-1x", "k-2", "k-3"},
			[]string{oneTo("b@example.com", ""), oneTo("a@example.com", ""), oneTo("c@example.com", `, "sendAt": "2099-01-01T00:00:00Z"`), oneTo("d@example.com", "")})
		require.EqualValues(t, 1, local.reserves.Load())

		var ae *apperr.Error
		require.ErrorAs(t, res[0].err, &ae)
		require.Equal(t, apperr.FailedPrecondition, ae.Kind)
		require.ErrorIs(t, res[0].err, intake.ErrKeyConflict)

		require.NoError(t, res[1].err)
		require.False(t, res[1].out.Replayed)

		require.ErrorAs(t, res[2].err, &ae)
		require.Equal(t, apperr.InvalidArgument, ae.Kind)

		require.NoError(t, res[3].err)
		require.False(t, res[3].out.Replayed)
		require.NotEqual(t, res[1].out.Notifications[0].ID, res[3].out.Notifications[0].ID)

		replay := sendAll(t, b.intake, b, []string{"k-1"}, []string{oneTo("a@example.com", "")})
		require.NoError(t, replay[0].err)
		require.True(t, replay[0].out.Replayed)
		require.Equal(t, first[0].out.Notifications, replay[0].out.Notifications)
	})
}

// A batch whose transaction fails (the database refuses the insert) fails
// every request in it with that error, and stores none of them.
func TestGroupCommitFailsEveryRequestOfAFailedBatch(t *testing.T) {
	t.Parallel()
	testdb.Dialects(t, func(t *testing.T, db *gorm.DB) {
		b := setup(t, db)
		in, _ := groupIntake(b, 3)
		failing := testdb.OutageOn(t, db, "INSERT INTO notifications")
		failing.Store(true)
		keys := []string{"f-1", "f-2", "f-3"}
		bodies := []string{oneTo("a@example.com", ""), oneTo("b@example.com", ""), oneTo("c@example.com", "")}
		for i, r := range sendAll(t, in, b, keys, bodies) {
			var pgErr *pgconn.PgError
			require.ErrorAs(t, r.err, &pgErr, "send %d", i)
			require.Equal(t, "57P01", pgErr.Code)
		}
		failing.Store(false)
		for i, r := range sendAll(t, in, b, keys, bodies) {
			require.NoError(t, r.err, "send %d", i)
			require.False(t, r.out.Replayed, "send %d: nothing was stored before", i)
		}
	})
}

// A batch of at most 1 goes at once (the wait is an hour), a lone request
// goes when the wait is over; a request
// whose client went away before its batch was taken is dropped from it:
// it stores nothing, so its key is free, and the others are accepted.
func TestGroupCommitFlushesWhenFullAndDropsGoneClients(t *testing.T) {
	t.Parallel()
	testdb.Dialects(t, func(t *testing.T, db *gorm.DB) {
		b := setup(t, db)
		single, _ := groupIntake(b, 1)
		res := sendAll(t, single, b, []string{"s-1"}, []string{oneTo("a@example.com", "")})
		require.NoError(t, res[0].err)

		// Alone on an idle server, a send waits out the bounded wait only.
		bounded := intake.New(b.db, actions.NewRules(b.db), outbox.NewWriter(nil, nil), nil, b.disp,
			intake.WithGroupCommit(10*time.Millisecond, 100, 4))
		res = sendAll(t, bounded, b, []string{"s-2"}, []string{oneTo("a@example.com", "")})
		require.NoError(t, res[0].err)

		in, local := groupIntake(b, 3)
		gone, cancel := context.WithCancel(context.Background())
		cancel()
		res = sendAll(t, in, b, []string{"d-1", "d-2", "d-3"},
			[]string{oneTo("a@example.com", ""), oneTo("b@example.com", ""), oneTo("c@example.com", "")}, gone)
		require.True(t, errors.Is(res[0].err, context.Canceled), "got %v", res[0].err)
		require.NoError(t, res[1].err)
		require.NoError(t, res[2].err)
		require.EqualValues(t, 1, local.reserves.Load())

		again := sendAll(t, single, b, []string{"d-1"}, []string{oneTo("z@example.com", "")})
		require.NoError(t, again[0].err, "the key was not taken")
		require.False(t, again[0].out.Replayed)
	})
}
