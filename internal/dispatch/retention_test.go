package dispatch_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"gorm.io/gorm"

	"github.com/notificationservice/notificationservice/internal/actions"
	"github.com/notificationservice/notificationservice/internal/channels"
	"github.com/notificationservice/notificationservice/internal/dispatch/delivery"
	"github.com/notificationservice/notificationservice/internal/dispatch/intake"
	"github.com/notificationservice/notificationservice/internal/outbox"
	"github.com/notificationservice/notificationservice/internal/testdb"
)

// Prune deletes what is older than dispatch.retention and finished, with
// everything that hangs off it, and keeps the rest: a young notification,
// an old one with a delivery still to send, and the keys they use.
func TestPruneDeletesFinishedNotificationsPastRetention(t *testing.T) {
	t.Parallel()
	testdb.Dialects(t, func(t *testing.T, db *gorm.DB) {
		b := setup(t, db)
		ctx := context.Background()
		now := time.Now()
		at := now.Add(-31 * 24 * time.Hour) // the intake's clock: past the 30-day retention
		in := intake.New(db, actions.NewRules(db), outbox.NewWriter(nil, nil), func() time.Time { return at }, nil)
		submit := func(key, email string) int64 {
			out, err := in.Submit(ctx, []intake.Submission{{Source: intake.SourceQueue, Key: key,
				Request: request(t, b.collectionID, `{"collectionId": CID, "notification": [{"name": "USER_INVITEUSER", "recipients": [{"email": "`+email+`", "macros": {"FNAME": "A"}}]}]}`)}})
			require.NoError(t, err)
			return out[0].Notifications[0].ID
		}
		old := submit("old", "a@example.com")
		cfg := testConfig()
		cfg.Retention = 30 * 24 * time.Hour
		sandbox := channels.NewSandbox(db, discard(), nil)
		disp := delivery.New(db, map[string]channels.Channel{"email": sandbox, "sms": sandbox}, cfg, delivery.Senders{}, discard(),
			func() time.Time { return now })
		runUntilIdle(t, disp)
		// The same age, but its email delivery is still pending (a retry).
		live := submit("live", "b@example.com")
		young := b.submitNow(t, "young")

		n, err := disp.Prune(ctx)
		require.NoError(t, err)
		require.Equal(t, delivery.Pruned{Notifications: 1, Deliveries: 2, SandboxMessages: 1}, n, "email sent, sms skipped")

		count := func(q string, args ...any) int64 { return countRows(t, db, q, args...) }
		require.Zero(t, count("SELECT COUNT(*) FROM notifications WHERE id = ?", old))
		require.Zero(t, count("SELECT COUNT(*) FROM deliveries WHERE notification_id = ?", old))
		require.Zero(t, count("SELECT COUNT(*) FROM sandbox_messages WHERE notification_id = ?", old))
		require.Zero(t, count("SELECT COUNT(*) FROM notifications WHERE idempotency_key = 'old'"), "the key went with its notification")
		for _, id := range []int64{live, young} {
			require.Equal(t, int64(1), count("SELECT COUNT(*) FROM notifications WHERE id = ?", id))
			require.NotZero(t, count("SELECT COUNT(*) FROM deliveries WHERE notification_id = ?", id))
		}
		require.Equal(t, int64(2), count("SELECT COUNT(*) FROM notifications WHERE idempotency_key IN ('live', 'young')"))

		// Nothing more to do; and retention 0 keeps everything.
		n, err = disp.Prune(ctx)
		require.NoError(t, err)
		require.Zero(t, n)
		cfg.Retention = 0
		keep := delivery.New(db, nil, cfg, delivery.Senders{}, discard(), func() time.Time { return now.Add(1000 * 24 * time.Hour) })
		n, err = keep.Prune(ctx)
		require.NoError(t, err)
		require.Zero(t, n)
	})
}

func (b *bundle) submitNow(t *testing.T, key string) int64 {
	t.Helper()
	out, err := b.intake.Submit(context.Background(), []intake.Submission{{Source: intake.SourceQueue, Key: key,
		Request: request(t, b.collectionID, `{"collectionId": CID, "notification": [{"name": "USER_INVITEUSER", "recipients": [{"email": "c@example.com", "macros": {"FNAME": "C"}}]}]}`)}})
	require.NoError(t, err)
	return out[0].Notifications[0].ID
}

// A keyed request's notifications go together: while one of them has a
// delivery to send, none is pruned, so a redelivery never finds part of
// the request (and creates the rest again).
func TestPruneKeepsAKeyedRequestWhole(t *testing.T) {
	t.Parallel()
	testdb.Dialects(t, func(t *testing.T, db *gorm.DB) {
		b := setup(t, db)
		ctx := context.Background()
		now := time.Now()
		in := intake.New(db, actions.NewRules(db), nil, func() time.Time { return now.Add(-31 * 24 * time.Hour) }, nil)
		out, err := in.Submit(ctx, []intake.Submission{{Source: intake.SourceQueue, Key: "k", Request: request(t, b.collectionID, threeNames)}})
		require.NoError(t, err)
		last := out[0].Notifications[2].ID
		cfg := testConfig()
		cfg.Retention = 30 * 24 * time.Hour
		disp := delivery.New(db, map[string]channels.Channel{"email": b.sandbox, "sms": b.sandbox}, cfg, delivery.Senders{}, discard(),
			func() time.Time { return now })
		runUntilIdle(t, disp)
		// The last notification's email is due again (a retry).
		require.NoError(t, db.Exec("UPDATE deliveries SET status = 'pending' WHERE notification_id = ? AND action_id = ?", last, b.email).Error)
		n, err := disp.Prune(ctx)
		require.NoError(t, err)
		require.Zero(t, n.Notifications, "the first two are finished, but their request is not")

		require.NoError(t, db.Exec("UPDATE deliveries SET status = 'failed' WHERE notification_id = ?", last).Error)
		n, err = disp.Prune(ctx)
		require.NoError(t, err)
		require.EqualValues(t, 3, n.Notifications)
	})
}

// runUntilIdle runs disp's batches until none is due.
func runUntilIdle(t *testing.T, disp *delivery.Dispatcher) {
	t.Helper()
	for {
		n, err := disp.RunOnce(context.Background())
		require.NoError(t, err)
		if n == 0 {
			return
		}
	}
}

// countRows runs a SELECT COUNT(*) query.
func countRows(t *testing.T, db *gorm.DB, q string, args ...any) int64 {
	t.Helper()
	var n int64
	require.NoError(t, db.Raw(q, args...).Scan(&n).Error)
	return n
}
