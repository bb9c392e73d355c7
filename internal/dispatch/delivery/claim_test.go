package delivery

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"gorm.io/gorm"

	"github.com/notificationservice/notificationservice/internal/config"
	"github.com/notificationservice/notificationservice/internal/store"
	"github.com/notificationservice/notificationservice/internal/testdb"
)

// waiting inserts future scheduled deliveries (due from now+1 day) and due
// pending ones of one notification, as the intake stores them, and
// refreshes the planner's statistics.
func waiting(t testing.TB, db *gorm.DB, now int64, scheduled, pending int) {
	t.Helper()
	require.NoError(t, db.Exec(`INSERT INTO notifications (collection_id, name, source, recipients, status, reason, event_id, created_time)
VALUES (1, 'N', 'queue', '[]', 'accepted', '', 0, ?)`, now).Error)
	var nid int64
	require.NoError(t, db.Raw(`SELECT MAX(id) FROM notifications`).Scan(&nid).Error)
	series := "generate_series(1, ?) AS s(g)"
	if !store.IsPostgres(db) {
		series = "(WITH RECURSIVE s(g) AS (SELECT 1 UNION ALL SELECT g + 1 FROM s WHERE g < ?) SELECT g FROM s) AS s"
	}
	ins := func(action int, status string, at string, n int) {
		if n == 0 {
			return
		}
		require.NoError(t, db.Exec(`INSERT INTO deliveries (notification_id, collection_id, action_id, recipient_index, channel, status, reason,
  next_attempt_at, created_time, updated_time)
SELECT ?, 1, ?, g, 'email', ?, '', `+at+`, ?, ? FROM `+series, nid, action, status, now, now, now, n).Error)
	}
	ins(1, "scheduled", "CAST(? AS BIGINT) + 86400000 + g", scheduled)
	ins(2, "pending", "CAST(? AS BIGINT) - g", pending)
	require.NoError(t, db.Exec("ANALYZE deliveries").Error)
}

// explain returns the plan of the claim statement at now.
func explain(t testing.TB, d *Dispatcher, now int64) string {
	t.Helper()
	q, args := d.claimSQL(now, now+10_000)
	return explainSQL(t, d, q, args...)
}

// explainSQL returns the plan of q with args.
func explainSQL(t testing.TB, d *Dispatcher, q string, args ...any) string {
	t.Helper()
	return testdb.Plan(t, d.db, q, args...)
}

// The claim finds due rows through the partial index over pending and
// scheduled (00020), on both dialects, whatever number of future rows wait:
// it never scans the table or sorts the backlog.
func TestClaimReadsTheWaitingIndex(t *testing.T) {
	t.Parallel()
	testdb.Dialects(t, func(t *testing.T, db *gorm.DB) {
		now := time.Now().UnixMilli()
		waiting(t, db, now, 20_000, 100)
		d := New(db, nil, config.Default().Dispatch, Senders{}, nil, nil)
		plan := explain(t, d, now)
		require.Contains(t, plan, "deliveries_waiting_idx", plan)
		require.NotContains(t, strings.ToUpper(plan), "TEMP B-TREE", "the claim must not sort: %s", plan)

		rows, err := d.claim(context.Background(), now)
		require.NoError(t, err)
		require.Len(t, rows, d.cfg.ClaimBatch)
		for _, r := range rows {
			require.EqualValues(t, 2, r.ActionID, "only due rows: the pending ones")
		}
	})
}

// The recovery's sweep finds expired leases through the partial index over
// sending rows even when the statistics were taken while most rows were
// sending and they have left it since, as under load between two ANALYZEs
// (a sweep every lease/4). Ordered by id, it was planned as a walk of the
// whole primary key (PostgreSQL), filtering every row.
func TestRecoverySweepReadsTheLeaseIndex(t *testing.T) {
	t.Parallel()
	testdb.Dialects(t, func(t *testing.T, db *gorm.DB) {
		now := time.Now().UnixMilli()
		waiting(t, db, now, 0, 20_000)
		require.NoError(t, db.Exec("UPDATE deliveries SET status = 'sending', lease_until = ? - id", now).Error)
		require.NoError(t, db.Exec("ANALYZE deliveries").Error)
		require.NoError(t, db.Exec("UPDATE deliveries SET status = 'sent'").Error)
		d := New(db, nil, config.Default().Dispatch, Senders{}, nil, nil)
		plan := explainSQL(t, d, staleSQL, now, 1000)
		require.Contains(t, plan, "deliveries_lease_idx", plan)
		require.NotContains(t, strings.ToUpper(plan), "TEMP B-TREE", "the sweep must not sort: %s", plan)
		require.NotContains(t, plan, "Sort", "the sweep must not sort: %s", plan)
	})
}

// BenchmarkClaimWithScheduledBacklog times the claim's pick (claimPick:
// claimBatch due rows, FOR UPDATE SKIP LOCKED, in a transaction rolled back,
// so every iteration picks the same rows and leaves no row version behind)
// on PostgreSQL: on a table of 5,000 due deliveries, then with 1,000,000
// scheduled deliveries due tomorrow added, then with them deleted again:
// docs/benchmarks.md, "Issue 16". The UPDATE around the pick touches the
// picked rows only, by primary key, whatever else the table holds.
func BenchmarkClaimWithScheduledBacklog(b *testing.B) {
	db, _ := testdb.Postgres(b)
	now := time.Now().UnixMilli()
	d := New(db, nil, config.Default().Dispatch, Senders{}, nil, nil)
	run := func(b *testing.B) {
		ctx := context.Background()
		for b.Loop() {
			tx := db.WithContext(ctx).Begin()
			var ids []int64
			require.NoError(b, tx.Raw(claimPick+" FOR UPDATE SKIP LOCKED", now, d.cfg.ClaimBatch).Scan(&ids).Error)
			require.NoError(b, tx.Rollback().Error)
			require.Len(b, ids, d.cfg.ClaimBatch)
		}
	}
	waiting(b, db, now, 0, 5_000)
	require.NoError(b, db.Exec("VACUUM ANALYZE deliveries").Error)
	b.Run("scheduled=0", run)
	waiting(b, db, now, 1_000_000, 0)
	require.NoError(b, db.Exec("VACUUM ANALYZE deliveries").Error)
	b.Logf("plan with the backlog:\n%s", explain(b, d, now))
	b.Run("scheduled=1000000", run)
	require.NoError(b, db.Exec("DELETE FROM deliveries WHERE status = 'scheduled'").Error)
	require.NoError(b, db.Exec("VACUUM ANALYZE deliveries").Error)
	b.Run("scheduled=0-again", run)
}
