package dispatch_test

import (
	"context"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"gorm.io/gorm"

	"github.com/notificationservice/notificationservice/internal/dispatch"
	"github.com/notificationservice/notificationservice/internal/dispatch/intake"
	"github.com/notificationservice/notificationservice/internal/store"
	"github.com/notificationservice/notificationservice/internal/testdb"
)

// threeNames is one request with three notifications: two resolve, the
// middle one does not (and is recorded, rejected).
const threeNames = `{"collectionId": CID, "notification": [
  {"name": "USER_INVITEUSER", "recipients": [{"email": "a@example.com", "macros": {"FNAME": "Ann"}}]},
  {"name": "NO_SUCH_EVENT", "recipients": [{"email": "b@example.com"}]},
  {"name": "USER_INVITEUSER", "recipients": [{"email": "c@example.com", "macros": {"FNAME": "Cy"}}]}]}`

// A keyed request's notifications are its dedupe record together: a
// redelivery returns all of them in order, from another batch or from the
// same one, whatever else the batch holds.
func TestIntakeDedupesRequestsOfSeveralNotifications(t *testing.T) {
	t.Parallel()
	testdb.Dialects(t, func(t *testing.T, db *gorm.DB) {
		b := setup(t, db)
		ctx := context.Background()
		req := request(t, b.collectionID, threeNames)
		one := request(t, b.collectionID, twoRecipients)
		sub := func(key string, r dispatch.Request) intake.Submission {
			return intake.Submission{Source: intake.SourceQueue, Key: key, Request: r}
		}
		first, err := b.intake.Submit(ctx, []intake.Submission{sub("", one), sub("m1", req), sub("m1", req), sub("m2", one)})
		require.NoError(t, err)
		require.Len(t, first[1].Notifications, 3)
		names := []string{first[1].Notifications[0].Name, first[1].Notifications[1].Name, first[1].Notifications[2].Name}
		require.Equal(t, []string{"USER_INVITEUSER", "NO_SUCH_EVENT", "USER_INVITEUSER"}, names)
		require.Equal(t, dispatch.NotificationRejected, first[1].Notifications[1].Status)
		require.True(t, first[2].Replayed)
		require.Equal(t, first[1].Notifications, first[2].Notifications)
		require.False(t, first[3].Replayed)

		again, err := b.intake.Submit(ctx, []intake.Submission{sub("m2", one), sub("m1", req), sub("m1", one), sub("", one)})
		require.NoError(t, err)
		require.True(t, again[0].Replayed)
		require.Equal(t, first[3].Notifications, again[0].Notifications)
		require.True(t, again[1].Replayed)
		require.Equal(t, first[1].Notifications, again[1].Notifications, "all three, in order")
		require.True(t, again[2].Conflict, "the same key with another request")
		require.Empty(t, again[2].Notifications)
		require.False(t, again[3].Replayed, "no key, no dedupe")

		require.EqualValues(t, 1+3+1+1, countRows(t, db, "SELECT COUNT(*) FROM notifications"))
	})
}

// Instances that take the same message at once (a redelivery to another
// consumer while the first still holds it) create it once: the second
// insert of the key waits for the first transaction and then finds its rows.
func TestConcurrentSubmitsOfOneKeyCreateItOnce(t *testing.T) {
	t.Parallel()
	db, _ := testdb.Postgres(t)
	b := setup(t, db)
	ctx := context.Background()
	req := request(t, b.collectionID, threeNames)
	const n = 8
	outs := make([]intake.Outcome, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			out, err := b.intake.Submit(ctx, []intake.Submission{{Source: intake.SourceQueue, Key: "same", Request: req}})
			require.NoError(t, err)
			outs[i] = out[0]
		})
	}
	wg.Wait()
	fresh := 0
	for _, o := range outs {
		if !o.Replayed {
			fresh++
		}
		require.Len(t, o.Notifications, 3)
		require.Equal(t, outs[0].Notifications[0].ID, o.Notifications[0].ID)
	}
	require.Equal(t, 1, fresh)
	require.EqualValues(t, 3, countRows(t, db, "SELECT COUNT(*) FROM notifications"))
}

// Keys accepted before migration 00008, when they were rows of intake_keys,
// still dedupe after it: the migration moves each key onto its
// notifications.
func TestKeysAcceptedBeforeTheMoveStillDedupe(t *testing.T) {
	t.Parallel()
	testdb.Dialects(t, func(t *testing.T, db *gorm.DB) {
		ctx := context.Background()
		// Roll back every migration down to and including 00008.
		for version := int64(0); version != 8; {
			var err error
			version, err = store.MigrateDown(ctx, db)
			require.NoError(t, err)
			require.GreaterOrEqual(t, version, int64(8))
		}
		b := setup(t, db)
		req := request(t, b.collectionID, threeNames)
		// As the intake wrote them before: one key row, its notifications
		// linked to it.
		now := time.Now().UnixMilli()
		var keyID int64
		require.NoError(t, db.Raw(`INSERT INTO intake_keys (scope, key, request_hash, created_time) VALUES ('queue', 'old', ?, ?) RETURNING id`,
			req.Hash(), now).Scan(&keyID).Error)
		var ids []int64
		for _, name := range []string{"USER_INVITEUSER", "NO_SUCH_EVENT", "USER_INVITEUSER"} {
			var id int64
			require.NoError(t, db.Raw(`INSERT INTO notifications (collection_id, name, source, intake_id, idempotency_key, recipients, status, created_time)
VALUES (?, ?, 'queue', ?, 'old', '[]', 'accepted', ?) RETURNING id`, b.collectionID, name, keyID, now).Scan(&id).Error)
			ids = append(ids, id)
		}
		require.NoError(t, store.Migrate(ctx, db, slog.New(slog.NewTextHandler(io.Discard, nil))))

		out, err := b.intake.Submit(ctx, []intake.Submission{
			{Source: intake.SourceQueue, Key: "old", Request: req},
			{Source: intake.SourceQueue, Key: "old", Request: request(t, b.collectionID, twoRecipients)},
		})
		require.NoError(t, err)
		require.True(t, out[0].Replayed)
		require.Len(t, out[0].Notifications, 3)
		for i, id := range ids {
			require.Equal(t, id, out[0].Notifications[i].ID)
		}
		require.True(t, out[1].Conflict)
	})
}
