package metrics

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"gorm.io/gorm"

	"github.com/notificationservice/notificationservice/internal/config"
	"github.com/notificationservice/notificationservice/internal/testdb"
)

// The active statuses are read at every reading and the final ones, a scan
// of the whole table, at metrics.finalStatusTTL; a failed scan leaves the
// final statuses out (not at 0) and is not retried before its TTL.
func TestFinalStatusesAreReadAtTheirOwnTTL(t *testing.T) {
	t.Parallel()
	testdb.Dialects(t, func(t *testing.T, db *gorm.DB) {
		t.Parallel()
		now := time.Now()
		ms := now.UnixMilli()
		scans, broken := 0, false
		testdb.InjectError(t, db, func(stmt *gorm.Statement) error {
			if !strings.Contains(stmt.SQL.String(), "NOT IN ('pending', 'scheduled', 'sending')") {
				return nil
			}
			scans++
			if broken {
				return errors.New("statement timeout")
			}
			return nil
		})
		insert := deliveryRows(t, db, ms)
		del := func(channel, status string) { t.Helper(); insert(channel, status, 0) }
		del("email", "sent")
		del("email", "pending")
		del("sms", "sending")

		m := New()
		c := newDBCollector(db, config.Metrics{DBTimeout: 5 * time.Second, DBCacheTTL: 5 * time.Second, FinalStatusTTL: time.Minute},
			nil, func() time.Time { return now })
		require.NoError(t, m.Register(c))
		deliveries := func(channel, status string) (float64, bool) {
			t.Helper()
			return find(t, m, "notify_deliveries", "channel", channel, "status", status)
		}
		require.Equal(t, 1.0, gauge(t, m, "notify_deliveries", "channel", "email", "status", "sent"))
		require.Equal(t, 1.0, gauge(t, m, "notify_deliveries", "channel", "email", "status", "pending"))
		require.Equal(t, 1.0, gauge(t, m, "notify_deliveries", "channel", "sms", "status", "sending"))
		require.Equal(t, 1, scans)

		// Past dbCacheTTL, within finalStatusTTL: the active statuses are
		// read again, the final ones reused.
		del("email", "sent")
		del("email", "pending")
		del("sms", "failed")
		now = now.Add(10 * time.Second)
		require.Equal(t, 2.0, gauge(t, m, "notify_deliveries", "channel", "email", "status", "pending"))
		require.Equal(t, 1.0, gauge(t, m, "notify_deliveries", "channel", "email", "status", "sent"))
		require.Equal(t, 0.0, gauge(t, m, "notify_deliveries", "channel", "sms", "status", "failed"))
		require.Equal(t, 1, scans)

		// Past finalStatusTTL: scanned again.
		now = now.Add(time.Minute)
		require.Equal(t, 2.0, gauge(t, m, "notify_deliveries", "channel", "email", "status", "sent"))
		require.Equal(t, 1.0, gauge(t, m, "notify_deliveries", "channel", "sms", "status", "failed"))
		require.Equal(t, 2, scans)

		// A scan that fails: that reading is down; the next ones report the
		// active statuses and leave the final ones out, without scanning
		// again until the TTL has passed.
		broken = true
		now = now.Add(time.Minute)
		require.Equal(t, 0.0, gauge(t, m, "notify_metrics_db_up"))
		now = now.Add(10 * time.Second)
		require.Equal(t, 1.0, gauge(t, m, "notify_metrics_db_up"))
		require.Equal(t, 2.0, gauge(t, m, "notify_deliveries", "channel", "email", "status", "pending"))
		require.Equal(t, 0.0, gauge(t, m, "notify_deliveries", "channel", "push", "status", "scheduled"))
		_, found := deliveries("email", "sent")
		require.False(t, found, "a final status whose reading failed is left out, not reported stale or at 0")
		_, found = deliveries("push", "failed")
		require.False(t, found)
		require.Equal(t, 3, scans)
		broken = false
		now = now.Add(time.Minute)
		require.Equal(t, 2.0, gauge(t, m, "notify_deliveries", "channel", "email", "status", "sent"))
		require.Equal(t, 4, scans)
	})
}

// On PostgreSQL the active statuses are counted through the partial
// indexes that hold them, never by a scan of the table: that is what keeps
// a reading's cost with the backlog as the table grows.
func TestActiveStatusesAreCountedThroughTheirIndexes(t *testing.T) {
	t.Parallel()
	db, _ := testdb.Postgres(t)
	var text string
	require.NoError(t, db.Transaction(func(tx *gorm.DB) error {
		// Whatever the table's size, the partial indexes can answer the
		// query: the plan uses them when a scan is priced out. A generic
		// plan, as a prepared statement gets after five runs, cannot prove
		// an index's predicate from a parameter in place of a status.
		for _, set := range []string{"SET LOCAL enable_seqscan = off", "SET LOCAL plan_cache_mode = force_generic_plan"} {
			if err := tx.Exec(set).Error; err != nil {
				return err
			}
		}
		text = testdb.Plan(t, tx, activeSQL)
		return nil
	}))
	require.NotContains(t, text, "Seq Scan", text)
	require.Contains(t, text, "deliveries_waiting_idx", text)
	require.Contains(t, text, "deliveries_lease_idx", text)
}

// The connection pool's statistics are on /metrics beside the backlog
// gauges: a statement that waited for a free connection counts in
// go_sql_wait_count_total, which is how a pool too small for the workers
// and the API together shows.
func TestPoolStatisticsShowAWaitForAConnection(t *testing.T) {
	t.Parallel()
	testdb.Dialects(t, func(t *testing.T, db *gorm.DB) {
		t.Parallel()
		m := New()
		// The backlog gauges' own reads wait for the held connection too:
		// a short dbTimeout lets a scrape give up on them quickly.
		require.NoError(t, m.RegisterDB(db, config.Metrics{DBTimeout: 10 * time.Millisecond, DBCacheTTL: 5 * time.Second, FinalStatusTTL: time.Minute}, slog.New(slog.DiscardHandler)))
		sqlDB, err := db.DB()
		require.NoError(t, err)
		sqlDB.SetMaxOpenConns(1)
		ctx := context.Background()
		held, err := sqlDB.Conn(ctx)
		require.NoError(t, err)
		require.Equal(t, 1.0, gauge(t, m, "go_sql_in_use_connections", "db_name", PoolName))
		require.Equal(t, 1.0, gauge(t, m, "go_sql_max_open_connections", "db_name", PoolName))
		waits := gauge(t, m, "go_sql_wait_count_total", "db_name", PoolName)
		waited := gauge(t, m, "go_sql_wait_duration_seconds_total", "db_name", PoolName)

		// The one connection is held: the next statement waits until its
		// deadline, and the wait is counted.
		waitCtx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
		defer cancel()
		require.ErrorIs(t, db.WithContext(waitCtx).Exec("SELECT 1").Error, context.DeadlineExceeded)
		require.Greater(t, gauge(t, m, "go_sql_wait_count_total", "db_name", PoolName), waits)
		// database/sql starts its clock after the deadline's, so the wait
		// it counts can fall a hair short of the 50ms: most of it is enough.
		require.GreaterOrEqual(t, gauge(t, m, "go_sql_wait_duration_seconds_total", "db_name", PoolName)-waited, 0.04)
		require.NoError(t, held.Close())
	})
}
