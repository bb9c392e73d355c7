package channels_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/notificationservice/notificationservice/internal/channels"
	"github.com/notificationservice/notificationservice/internal/testdb"
)

func TestSandboxRecordsEverySend(t *testing.T) {
	t.Parallel()
	db, _ := testdb.Postgres(t)
	sb := channels.NewSandbox(db, nil, nil)
	ctx := context.Background()
	msg := channels.Message{DeliveryID: 7, NotificationID: 3, Channel: "email", Subject: "Hi Ann", To: []channels.Address{{Email: "a@example.com"}}}

	// Many concurrent Sends share inserts; each still gets its own result.
	var wg sync.WaitGroup
	results := make([][]channels.Result, 50)
	for i := range results {
		wg.Go(func() {
			m := msg
			m.DeliveryID = int64(100 + i)
			results[i] = sb.Send(ctx, []channels.Message{m, m})
		})
	}
	wg.Wait()
	for _, rs := range results {
		require.Len(t, rs, 2)
		for _, r := range rs {
			require.NoError(t, r.Err)
			require.NotEmpty(t, r.ProviderMessageID)
		}
	}
	var n int64
	require.NoError(t, db.Raw("SELECT COUNT(*) FROM sandbox_messages").Scan(&n).Error)
	require.EqualValues(t, 100, n)

	// What would have been sent is recorded exactly, and a second send of
	// the same delivery shows as a second row.
	first := sb.Send(ctx, []channels.Message{msg})
	second := sb.Send(ctx, []channels.Message{msg})
	require.NotEqual(t, first[0].ProviderMessageID, second[0].ProviderMessageID)
	var rows []struct {
		ProviderMessageID string
		Message           string
	}
	require.NoError(t, db.Raw("SELECT provider_message_id, message FROM sandbox_messages WHERE delivery_id = 7 ORDER BY id").Scan(&rows).Error)
	require.Len(t, rows, 2)
	var got channels.Message
	require.NoError(t, json.Unmarshal([]byte(rows[0].Message), &got))
	require.Equal(t, msg, got)

	acc, err := sb.Accepted(ctx, inDoubt(7, 100, 9999))
	require.NoError(t, err)
	require.Equal(t, second[0].ProviderMessageID, acc[7])
	require.Contains(t, acc, int64(100))
	require.NotContains(t, acc, int64(9999))

	// A delivery's record is its row: memory keeps only what has none, a
	// test send (no delivery), unless the sandbox is told to keep all.
	require.Empty(t, sb.Messages(), "the deliveries' messages are rows, not copies in memory")
	test := channels.Message{Channel: "email", Subject: "Test", To: []channels.Address{{Email: "t@example.com"}}}
	require.NoError(t, sb.Send(ctx, []channels.Message{test})[0].Err)
	require.Equal(t, []channels.Message{test}, sb.Messages())
	var testRows int64
	require.NoError(t, db.Raw("SELECT COUNT(*) FROM sandbox_messages WHERE delivery_id = 0").Scan(&testRows).Error)
	require.Zero(t, testRows, "a test send has no row")

	all := channels.NewSandbox(db, nil, nil, channels.SandboxKeepAll())
	require.NoError(t, all.Send(ctx, []channels.Message{msg})[0].Err)
	require.Equal(t, []channels.Message{msg}, all.Messages())
}

// A record whose outcome the sandbox cannot know is reported as possibly
// accepted (channels.MaybeAccepted), as a provider call whose answer was
// lost, so the workers leave it to recovery instead of sending it again:
// the caller stopped waiting while the INSERT was still under way (it
// commits later), or the session died mid-INSERT (PostgreSQL killed; it
// may or may not have committed). A refusal the server reported is
// certain: retryable, as before. The INSERT is held up by a lock on the
// table, taken by another transaction.
func TestSandboxReportsARecordWhoseOutcomeIsUnknownAsMaybeAccepted(t *testing.T) {
	t.Parallel()
	db, _ := testdb.Postgres(t)
	sb := channels.NewSandbox(db, nil, nil)
	ctx := context.Background()
	msg := func(id int64) channels.Message {
		return channels.Message{DeliveryID: id, NotificationID: 3, Channel: "email", Subject: "Hi", To: []channels.Address{{Email: "a@example.com"}}}
	}
	errOf := func(t *testing.T, rs []channels.Result) *channels.Error {
		t.Helper()
		require.Len(t, rs, 1)
		var e *channels.Error
		require.True(t, errors.As(rs[0].Err, &e), "%v", rs[0].Err)
		return e
	}
	// lock holds the table from a transaction of its own until unlock; pid
	// is that transaction's backend, whose waiters are this test's INSERTs
	// (the other tests of the package share the database, in schemas of
	// their own).
	lock := func(t *testing.T) (unlock func(), pid int64) {
		t.Helper()
		tx := db.Begin()
		require.NoError(t, tx.Error)
		require.NoError(t, tx.Exec("LOCK TABLE sandbox_messages IN ACCESS EXCLUSIVE MODE").Error)
		require.NoError(t, tx.Raw("SELECT pg_backend_pid()").Scan(&pid).Error)
		return func() { require.NoError(t, tx.Commit().Error) }, pid
	}
	recorded := func(id int64) bool {
		acc, err := sb.Accepted(ctx, inDoubt(id))
		require.NoError(t, err)
		_, ok := acc[id]
		return ok
	}

	t.Run("the caller stops waiting", func(t *testing.T) {
		unlock, _ := lock(t)
		wctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
		e := errOf(t, sb.Send(wctx, []channels.Message{msg(1)}))
		cancel()
		require.True(t, e.MaybeAccepted, "%v", e)
		require.False(t, e.Permanent)
		unlock()
		require.Eventually(t, func() bool { return recorded(1) }, 10*time.Second, 20*time.Millisecond,
			"the record the caller gave up on is written after all: sending it again would show it twice")
	})

	t.Run("the session dies mid-insert", func(t *testing.T) {
		unlock, holder := lock(t)
		defer unlock()
		go func() {
			// The sandbox's INSERT, waiting for the lock, is terminated:
			// only a session the lock holds up, not another test's INSERT
			// (a match on the query's text killed one, 5 Dec).
			for range 500 {
				var n int64
				_ = db.Raw(`SELECT COUNT(pg_terminate_backend(pid)) FROM pg_stat_activity
WHERE ? = ANY(pg_blocking_pids(pid)) AND query LIKE 'INSERT INTO sandbox_messages%'`, holder).Scan(&n).Error
				if n > 0 {
					return
				}
				time.Sleep(20 * time.Millisecond)
			}
		}()
		e := errOf(t, sb.Send(ctx, []channels.Message{msg(2)}))
		require.True(t, e.MaybeAccepted, "%v", e)
	})

	t.Run("the server refuses the insert", func(t *testing.T) {
		require.NoError(t, db.Exec("ALTER TABLE sandbox_messages ADD CONSTRAINT no_99 CHECK (delivery_id <> 99)").Error)
		e := errOf(t, sb.Send(ctx, []channels.Message{msg(99)}))
		require.False(t, e.MaybeAccepted, "a refusal is certain: nothing was recorded")
		require.False(t, e.Permanent, "retryable, as every record failure")
		require.False(t, recorded(99))
	})
}

func TestSandboxWithoutDatabaseKeepsTheLastMessages(t *testing.T) {
	t.Parallel()
	sb := channels.NewSandbox(nil, nil, nil)
	for i := range 1200 {
		r := sb.Send(context.Background(), []channels.Message{{DeliveryID: int64(i)}})
		require.NoError(t, r[0].Err)
	}
	msgs := sb.Messages()
	require.Len(t, msgs, 1000)
	require.EqualValues(t, 200, msgs[0].DeliveryID)
	acc, err := sb.Accepted(context.Background(), inDoubt(5, 1199))
	require.NoError(t, err)
	require.Equal(t, []int64{1199}, keys(acc))
}

func keys(m map[int64]string) []int64 {
	var out []int64
	for k := range m {
		out = append(out, k)
	}
	return out
}

func inDoubt(ids ...int64) []channels.InDoubt {
	out := make([]channels.InDoubt, len(ids))
	for i, id := range ids {
		out[i].DeliveryID = id
	}
	return out
}

// The message column holds exactly what json.Marshal makes of the Message
// (HTML escaped, map keys sorted, a webhook's raw recipient compacted), for
// every row of a Send larger than one statement's chunk, and every row
// has an id of its own.
func TestSandboxRecordsTheMessageAsJSONMarshalEncodesIt(t *testing.T) {
	t.Parallel()
	db, _ := testdb.Postgres(t)
	sb := channels.NewSandbox(db, nil, nil)
	msgs := make([]channels.Message, 1003)
	for i := range msgs {
		msgs[i] = channels.Message{DeliveryID: int64(i + 1), NotificationID: 9, CollectionID: 2, ActionID: 3, Channel: "webhook",
			Subject: "<b>Ann & Bob</b> café \u2028 😀", Headers: map[string]string{"Z": "1", "A": "2"},
			Data: map[string]string{"k": "v\"q\\"}, Recipient: json.RawMessage(`{ "email" : "ann@example.com" }`),
			Macros: map[string]string{"FNAME": "Ann"}, Body: fmt.Sprint("body ", i)}
	}
	res := sb.Send(context.Background(), msgs)
	ids := map[string]bool{}
	for _, r := range res {
		require.NoError(t, r.Err)
		require.Regexp(t, `^sbx-\d+-[0-9a-f]{12}$`, r.ProviderMessageID)
		ids[r.ProviderMessageID] = true
	}
	require.Len(t, ids, len(msgs))
	var rows []struct {
		DeliveryID        int64
		NotificationID    int64
		Channel           string
		ProviderMessageID string
		Message           string
	}
	require.NoError(t, db.Raw("SELECT delivery_id, notification_id, channel, provider_message_id, message FROM sandbox_messages ORDER BY delivery_id").
		Scan(&rows).Error)
	require.Len(t, rows, len(msgs))
	for i, row := range rows {
		want, err := json.Marshal(msgs[i])
		require.NoError(t, err)
		require.Equal(t, string(want), row.Message)
		require.Equal(t, msgs[i].DeliveryID, row.DeliveryID)
		require.EqualValues(t, 9, row.NotificationID)
		require.Equal(t, "webhook", row.Channel)
		require.Equal(t, res[i].ProviderMessageID, row.ProviderMessageID)
	}
}

// The sandbox reconciles exactly only when it records to the database (a
// crash forgets what it keeps in memory), and not when it is bounded
// (dispatch.boundSandbox): the workers then hold its sends to the in-doubt
// bound, as a real provider's. It answers recovery either way.
func TestSandboxReconcilesExactlyOnlyWithItsRecords(t *testing.T) {
	t.Parallel()
	db, _ := testdb.Postgres(t)
	require.True(t, channels.ReconcilesExactly(channels.NewSandbox(db, nil, nil)))
	require.False(t, channels.ReconcilesExactly(channels.NewSandbox(nil, nil, nil)))
	bounded := channels.NewSandbox(db, nil, nil, channels.SandboxBounded())
	require.False(t, channels.ReconcilesExactly(bounded))
	_, ok := channels.Channel(bounded).(channels.Reconciler)
	require.True(t, ok, "a bounded sandbox still answers recovery")
}
