package status_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"

	"github.com/notificationservice/notificationservice/internal/dispatch"
	"github.com/notificationservice/notificationservice/internal/dispatch/status"
	"github.com/notificationservice/notificationservice/internal/testdb"
)

// statementCounter is a gorm logger that counts the statements run.
type statementCounter struct {
	logger.Interface
	n atomic.Int64
}

func (c *statementCounter) Trace(context.Context, time.Time, func() (string, int64), error) {
	c.n.Add(1)
}

// insertDeliveries inserts one delivery per status, in order, and returns
// their ids.
func insertDeliveries(t testing.TB, db *gorm.DB, statuses ...string) []int64 {
	t.Helper()
	now := time.Now().UnixMilli()
	var nid int64
	require.NoError(t, db.Raw(`INSERT INTO notifications (collection_id, name, source, recipients, status, created_time)
VALUES (1, 'USER_INVITEUSER', 'api', '[]', 'accepted', ?) RETURNING id`, now).Scan(&nid).Error)
	ids := make([]int64, len(statuses))
	for i, st := range statuses {
		require.NoError(t, db.Raw(`INSERT INTO deliveries (notification_id, collection_id, action_id, recipient_index, channel, status,
attempts, provider, provider_message_id, created_time, updated_time) VALUES (?, 1, 1, ?, 'email', ?, 1, 'sendgrid', 'batch', ?, ?) RETURNING id`,
			nid, i, st, now, now).Scan(&ids[i]).Error)
	}
	return ids
}

// TestMarkReportsAppliesABatchInOneStatement: a batch of reports has the
// outcome of applying them one by one, in order (a delivery in sent or
// delivered takes reports up to its first bounce or failure, which is
// final; any other delivery takes none), and costs one statement.
func TestMarkReportsAppliesABatchInOneStatement(t *testing.T) {
	t.Parallel()
	testdb.Dialects(t, func(t *testing.T, db *gorm.DB) {
		t.Parallel()
		ids := insertDeliveries(t, db, "sent", "delivered", "sending", "bounced", "sent", "pending", "sent")
		sent, delivered, sending, bounced, twice, pending, failing := ids[0], ids[1], ids[2], ids[3], ids[4], ids[5], ids[6]
		const unknown = int64(1 << 40)
		r := func(id int64, st, reason string) status.Report {
			return status.Report{DeliveryID: id, Status: st, Reason: reason}
		}
		reports := []status.Report{
			r(sent, dispatch.StatusDelivered, ""),
			r(twice, dispatch.StatusDelivered, "first"),
			r(sending, dispatch.StatusDelivered, ""), // not yet recorded as sent
			r(sent, dispatch.StatusBounced, "bounce: 550 user unknown"),
			r(delivered, dispatch.StatusFailed, "dropped: spam content"),
			r(sent, dispatch.StatusDelivered, "late"), // after a bounce: final
			r(bounced, dispatch.StatusDelivered, ""),
			r(unknown, dispatch.StatusDelivered, ""),
			r(twice, dispatch.StatusDelivered, "second"),
			r(pending, dispatch.StatusFailed, "x"),
			r(failing, dispatch.StatusFailed, "failed first"),
			r(failing, dispatch.StatusBounced, "then bounced"),
		}
		counter := &statementCounter{Interface: logger.Discard}
		store := status.New(db.Session(&gorm.Session{Logger: counter}), nil)
		applied, err := store.MarkReports(context.Background(), reports)
		require.NoError(t, err)
		require.Equal(t, []bool{true, true, false, true, true, false, false, false, true, false, true, false}, applied)
		require.EqualValues(t, 1, counter.n.Load(), "one statement for the batch")

		for _, want := range []struct {
			id             int64
			status, reason string
		}{
			{sent, "bounced", "bounce: 550 user unknown"},
			{delivered, "failed", "dropped: spam content"},
			{sending, "sending", ""},
			{bounced, "bounced", ""},
			{twice, "delivered", "second"},
			{pending, "pending", ""},
			{failing, "failed", "failed first"},
		} {
			var got struct{ Status, Reason string }
			require.NoError(t, db.Raw("SELECT status, reason FROM deliveries WHERE id = ?", want.id).Scan(&got).Error)
			require.Equal(t, want.status, got.Status, "delivery %d", want.id)
			require.Equal(t, want.reason, got.Reason, "delivery %d", want.id)
		}

		// Nothing to do is no statement; a status no provider reports is refused.
		applied, err = store.MarkReports(context.Background(), nil)
		require.NoError(t, err)
		require.Empty(t, applied)
		require.EqualValues(t, 1, counter.n.Load())
		_, err = store.MarkReports(context.Background(), []status.Report{r(sent, dispatch.StatusPending, "")})
		require.Error(t, err)
	})
}

// BenchmarkMarkReports is the statement of a SendGrid batch of 1,000
// delivered reports alone, deliveries reset to sent between iterations.
func BenchmarkMarkReports(b *testing.B) {
	for _, dialect := range []string{"sqlite", "postgres"} {
		b.Run(dialect, func(b *testing.B) {
			var db *gorm.DB
			if dialect == "sqlite" {
				db, _ = testdb.SQLite(b)
			} else {
				db, _ = testdb.Postgres(b)
			}
			benchMarkReports(b, db)
		})
	}
}

func benchMarkReports(b *testing.B, db *gorm.DB) {
	statuses := make([]string, 1000)
	for i := range statuses {
		statuses[i] = dispatch.StatusSent
	}
	ids := insertDeliveries(b, db, statuses...)
	reports := make([]status.Report, len(ids))
	for i, id := range ids {
		reports[i] = status.Report{DeliveryID: id, Status: dispatch.StatusDelivered}
	}
	store := status.New(db, nil)
	for b.Loop() {
		b.StopTimer()
		require.NoError(b, db.Exec(`UPDATE deliveries SET status = 'sent'`).Error)
		b.StartTimer()
		if _, err := store.MarkReports(context.Background(), reports); err != nil {
			b.Fatal(err)
		}
	}
}
