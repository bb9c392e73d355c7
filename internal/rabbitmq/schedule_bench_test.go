package rabbitmq_test

import (
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/stretchr/testify/require"

	"github.com/notificationservice/notificationservice/internal/actions"
	"github.com/notificationservice/notificationservice/internal/channels"
	"github.com/notificationservice/notificationservice/internal/config"
	"github.com/notificationservice/notificationservice/internal/dispatch"
	"github.com/notificationservice/notificationservice/internal/dispatch/delivery"
	"github.com/notificationservice/notificationservice/internal/dispatch/intake"
)

const (
	backlogRows     = 1_000_000
	backlogMessages = 20_000
	backlogRounds   = 2
)

// BenchmarkQueueDrainWithScheduledBacklog is issue 16's figure in
// docs/benchmarks.md: in one run, on the local broker and PostgreSQL, the
// QueueDrain rate for deliveries due now (20,000 messages pre-loaded, one
// email each, drained into the in-memory sandbox) on an empty deliveries
// table, and on one that holds 1,000,000 scheduled deliveries due tomorrow.
// The empty and the backlog drain alternate, twice, each on a fresh
// database and queue, so the machine's drift hits both.
//
// The intake's hand-off is off (no local workers given to it): every
// delivery goes through the claim, the statement a backlog of future rows
// could slow, and the rows are inserted into the index the backlog fills.
func BenchmarkQueueDrainWithScheduledBacklog(b *testing.B) {
	for range b.N {
		var empty, backlog []float64
		for range backlogRounds {
			empty = append(empty, drainWithBacklog(b, 0))
			backlog = append(backlog, drainWithBacklog(b, backlogRows))
		}
		e, k := mean(empty), mean(backlog)
		b.ReportMetric(e, "empty_deliveries/s")
		b.ReportMetric(k, "backlog_deliveries/s")
		b.ReportMetric(100*k/e, "%_of_empty")
		b.Logf("empty table %.0f deliveries/s %v; %d scheduled rows %.0f deliveries/s %v; %.1f%% of empty",
			e, empty, backlogRows, k, backlog, 100*k/e)
	}
}

func mean(xs []float64) float64 {
	s := 0.0
	for _, x := range xs {
		s += x
	}
	return s / float64(len(xs))
}

// drainWithBacklog returns deliveries/s for backlogMessages pre-loaded
// messages, with rows future scheduled deliveries in the table first.
func drainWithBacklog(b *testing.B, rows int) float64 {
	e := newEnv(b)
	e.sandbox = channels.NewSandbox(nil, nil, nil)
	chans := map[string]channels.Channel{"email": e.sandbox, "sms": e.sandbox, "push": e.sandbox}
	rules := actions.NewRules(e.db).WithCache(e.actionCache())
	e.disp = delivery.New(e.db, chans, config.Default().Dispatch, delivery.Senders{}, discard(), nil).WithActions(rules)
	e.intake = intake.New(e.db, rules, nil, nil, nil)
	require.NoError(b, e.db.Exec("UPDATE actions SET status = 'INACTIVE' WHERE config_name <> 'SendEmailConfig'").Error)
	e.cfg.Prefetch, e.cfg.BatchSize = 1000, 250
	if rows > 0 {
		insertBacklog(b, e, rows)
	}
	// Both cases start settled (statistics, visibility map, the WAL
	// checkpointed), so the backlog's insert is not what is compared.
	require.NoError(b, e.db.Exec("VACUUM ANALYZE deliveries").Error)
	require.NoError(b, e.db.Exec("CHECKPOINT").Error)
	message := func(i int) []byte {
		return fmt.Appendf(nil, `{"collectionId": %d, "notification": [{"name": "USER_INVITEUSER", "recipients": [{"email": "u%d@example.com", "macros": {"FNAME": "U%d"}}]}]}`,
			e.collectionID, i, i)
	}
	conn, err := amqp.Dial(e.cfg.URL)
	require.NoError(b, err)
	defer conn.Close()
	preload(b, conn, e.cfg.Exchange, e.cfg.RoutingKey, backlogMessages, message)

	var sent atomic.Int64
	e.disp.OnSent = func(*dispatch.Delivery) { sent.Add(1) }
	start := time.Now()
	e.start(true)
	require.Eventually(b, func() bool { return sent.Load() >= backlogMessages }, 15*time.Minute, 5*time.Millisecond)
	rate := float64(backlogMessages) / time.Since(start).Seconds()
	if rows > 0 {
		var waiting int64
		require.NoError(b, e.db.Raw("SELECT COUNT(*) FROM deliveries WHERE status = 'scheduled'").Scan(&waiting).Error)
		require.EqualValues(b, rows, waiting, "the backlog is untouched: none of it was due")
	}
	return rate
}

// insertBacklog adds rows scheduled deliveries due from tomorrow on, as
// the intake stores a sendAt (one notification holds them all: PostgreSQL
// has no foreign key to check per row, 00007).
func insertBacklog(b *testing.B, e *env, rows int) {
	now := time.Now().UnixMilli()
	var nid, aid int64
	require.NoError(b, e.db.Raw(`SELECT id FROM actions WHERE collection_id = ? AND config_name = 'SendEmailConfig'`, e.collectionID).Scan(&aid).Error)
	require.NoError(b, e.db.Raw(`INSERT INTO notifications (collection_id, name, source, recipients, status, reason, event_id, created_time)
VALUES (?, 'USER_INVITEUSER', 'queue', '[]', 'accepted', '', 0, ?) RETURNING id`, e.collectionID, now).Scan(&nid).Error)
	require.NoError(b, e.db.Exec(`INSERT INTO deliveries (notification_id, collection_id, action_id, recipient_index, channel, address,
  recipient, status, reason, reason_detail, next_attempt_at, created_time, updated_time)
SELECT ?, ?, ?, g, 'email', 'f' || g || '@example.com', '{"email":"f@example.com"}', 'scheduled', 'send_at', '', ?::bigint + g, ?, ?
FROM generate_series(1, ?) AS g`, nid, e.collectionID, aid, now+24*3600*1000, now, now, rows).Error)
}
