package delivery

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"gorm.io/gorm"

	"github.com/notificationservice/notificationservice/internal/config"
	"github.com/notificationservice/notificationservice/internal/dispatch"
	"github.com/notificationservice/notificationservice/internal/testdb"
)

// A deferral gives the claim's attempt back, so the row's (attempts,
// owner) become what they were, and this instance's next claim makes them
// the claim's again. A retry of the deferral's write (its commit went
// through, the answer was lost) must then change nothing: it would put the
// new claim's delivery back in the queue while it is being sent.
func TestUncountedWriteIsNotRepeatedOnTheNextClaim(t *testing.T) {
	t.Parallel()
	testdb.Dialects(t, func(t *testing.T, db *gorm.DB) {
		ctx := context.Background()
		d, ms, nid := fenceSetup(t, db)
		require.NoError(t, db.Exec(`INSERT INTO deliveries (notification_id, collection_id, action_id, recipient_index, channel, recipient, status, attempts, next_attempt_at, created_time, updated_time)
VALUES (?, 1, 1, 0, 'email', '{}', 'pending', 0, ?, ?, ?)`, nid, ms, ms, ms).Error)

		claimed, err := d.claim(ctx, ms)
		require.NoError(t, err)
		require.Len(t, claimed, 1)
		deferral := outcome{id: claimed[0].ID, attempts: claimed[0].Attempts, status: dispatch.StatusScheduled,
			reason: dispatch.ReasonQuietHours, nextAttemptAt: ms + 60_000, uncount: true}
		n, err := d.recordCount(ctx, []outcome{deferral})
		require.NoError(t, err)
		require.EqualValues(t, 1, n)

		again, err := d.claim(ctx, ms+60_000)
		require.NoError(t, err)
		require.Len(t, again, 1)
		require.Equal(t, claimed[0].Attempts, again[0].Attempts, "the same (attempts, owner) as the first claim")
		n, err = d.recordCount(ctx, []outcome{deferral})
		require.NoError(t, err)
		require.Zero(t, n, "the repeated write found the row claimed again and left it")
		var status string
		require.NoError(t, db.Raw(`SELECT status FROM deliveries WHERE id = ?`, claimed[0].ID).Scan(&status).Error)
		require.Equal(t, dispatch.StatusSending, status)
	})
}

// The record's status fence: an outcome lands on a row still sending or
// pending (Recover put it back, nobody claimed it again); on a row canceled
// meanwhile only a send the provider accepted lands, because it was sent;
// a row that already has its outcome keeps it. PostgreSQL and SQLite
// spell the fence differently (recordSQL), so both are run.
func TestRecordStatusFence(t *testing.T) {
	t.Parallel()
	testdb.Dialects(t, func(t *testing.T, db *gorm.DB) {
		ctx := context.Background()
		d, ms, nid := fenceSetup(t, db)
		row := func(index int, status string) int64 {
			t.Helper()
			require.NoError(t, db.Exec(`INSERT INTO deliveries (notification_id, collection_id, action_id, recipient_index, channel, recipient, status, attempts, lease_owner, created_time, updated_time)
VALUES (?, 1, 1, ?, 'email', '{}', ?, 1, ?, ?, ?)`, nid, index, status, d.owner, ms, ms).Error)
			var id int64
			require.NoError(t, db.Raw(`SELECT MAX(id) FROM deliveries`).Scan(&id).Error)
			return id
		}
		for i, tc := range []struct {
			from, outcome, want string
		}{
			{dispatch.StatusSending, dispatch.StatusSent, dispatch.StatusSent},
			{dispatch.StatusSending, dispatch.StatusPending, dispatch.StatusPending},
			{dispatch.StatusPending, dispatch.StatusSent, dispatch.StatusSent},
			{dispatch.StatusCanceled, dispatch.StatusSent, dispatch.StatusSent},
			{dispatch.StatusCanceled, dispatch.StatusFailed, dispatch.StatusCanceled},
			{dispatch.StatusCanceled, dispatch.StatusPending, dispatch.StatusCanceled},
			{dispatch.StatusSent, dispatch.StatusFailed, dispatch.StatusSent},
			{dispatch.StatusFailed, dispatch.StatusSent, dispatch.StatusFailed},
		} {
			id := row(i, tc.from)
			_, err := d.recordCount(ctx, []outcome{{id: id, attempts: 1, status: tc.outcome, sentTime: ms}})
			require.NoError(t, err)
			var got string
			require.NoError(t, db.Raw(`SELECT status FROM deliveries WHERE id = ?`, id).Scan(&got).Error)
			require.Equal(t, tc.want, got, "%s, then the outcome %s", tc.from, tc.outcome)
		}
	})
}

// fenceSetup returns a Dispatcher on db with a fixed clock, that clock in
// ms, and a notification for the test's deliveries.
func fenceSetup(t *testing.T, db *gorm.DB) (*Dispatcher, int64, int64) {
	t.Helper()
	now := time.UnixMilli(1_780_000_000_000)
	d := New(db, nil, config.Default().Dispatch, Senders{}, slog.New(slog.DiscardHandler), func() time.Time { return now })
	ms := now.UnixMilli()
	require.NoError(t, db.Exec(`INSERT INTO notifications (collection_id, name, source, recipients, status, created_time) VALUES (1, 'N', 'api', '[]', 'accepted', ?)`, ms).Error)
	var nid int64
	require.NoError(t, db.Raw(`SELECT MAX(id) FROM notifications`).Scan(&nid).Error)
	return d, ms, nid
}
