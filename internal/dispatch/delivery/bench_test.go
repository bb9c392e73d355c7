package delivery

import (
	"context"
	"io"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"gorm.io/gorm"

	"github.com/notificationservice/notificationservice/internal/actions"
	"github.com/notificationservice/notificationservice/internal/channels"
	"github.com/notificationservice/notificationservice/internal/config"
	"github.com/notificationservice/notificationservice/internal/dispatch"
	"github.com/notificationservice/notificationservice/internal/testdb"
)

// fixedActions is an ActionSource of fixed actions (the app's is a cache):
// the benchmark measures the workers, not the actions' read.
type fixedActions map[int64]actions.Action

func (f fixedActions) ForSend(_ context.Context, refs []actions.Ref) ([]actions.Action, error) {
	out := make([]actions.Action, 0, len(refs))
	for _, r := range refs {
		if a, ok := f[r.ID]; ok {
			out = append(out, a)
		}
	}
	return out, nil
}

// benchDeliveries stores n/3 notifications of one recipient with an email,
// an SMS and a push delivery each (the drain's shape), pending and due, and
// returns how many deliveries it stored. The recipient is as
// internal/benchbin's harness sends it: the whole docs/queue.md model, with
// an address on every channel.
func benchDeliveries(b *testing.B, db *gorm.DB, n int) int {
	b.Helper()
	now := time.Now().UnixMilli()
	notes := (n + 2) / 3
	require.NoError(b, db.Exec(`INSERT INTO notifications (collection_id, name, source, recipients, status, reason, event_id, created_time)
SELECT 1, 'USER_INVITEUSER', 'queue', '[]', 'accepted', '', 1, ? FROM generate_series(1, ?)`, now, notes).Error)
	require.NoError(b, db.Exec(`INSERT INTO deliveries (notification_id, collection_id, action_id, recipient_index, channel, recipient, status, reason,
  next_attempt_at, created_time, updated_time)
SELECT n.id, 1, c.a, 0, c.ch, format('{"tos":[{"email":"to%s@example.com","name":"To %s"}],"email":"u%s@example.com",'
    || '"phone":"+1555%s","pushId":"push-%s","locale":"en_US","macros":{"FNAME":"U%s"}}', n.id, n.id, n.id, lpad(n.id::text, 7, '0'), n.id, n.id),
  'pending', '', ?, ?, ?
FROM notifications n CROSS JOIN (VALUES (1, 'email'), (2, 'sms'), (3, 'push')) AS c(a, ch)
ORDER BY n.id, c.a`, now-1, now, now).Error)
	require.NoError(b, db.Exec("ANALYZE deliveries").Error)
	return notes * 3
}

// BenchmarkDeliveryCycle runs the workers over b.N due deliveries (rounded
// up to a multiple of three: email, SMS and push of one recipient, the
// drain's shape) on the sandbox recording in PostgreSQL, from claim to
// outcome recorded: the delivery side of BenchmarkQueueDrain, without the
// intake. Its allocs/op are per delivery.
func BenchmarkDeliveryCycle(b *testing.B) {
	db, _ := testdb.Postgres(b)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	sb := channels.NewSandbox(db, log, nil)
	chans := map[string]channels.Channel{"email": sb, "sms": sb, "push": sb}
	cfg := config.Default().Dispatch
	cfg.PollInterval = 10 * time.Millisecond
	d := New(db, chans, cfg, Senders{Email: channels.Address{Email: "noreply@example.com"}}, log, nil).WithActions(fixedActions{
		1: {ID: 1, CollectionID: 1, EventID: 1, Status: actions.StatusActive, ConfigName: actions.ConfigEmail,
			Config: actions.Config{Content: actions.Content{Subject: "Hi {{FNAME}}", HTML: "<b>{{FNAME}}</b>"}}},
		2: {ID: 2, CollectionID: 1, EventID: 1, Status: actions.StatusActive, ConfigName: actions.ConfigSMS,
			Config: actions.Config{Content: actions.Content{Body: "Hi {{FNAME}}"}}},
		3: {ID: 3, CollectionID: 1, EventID: 1, Status: actions.StatusActive, ConfigName: actions.ConfigPush,
			Config: actions.Config{Content: actions.Content{Title: "Hi", Body: "Hi {{FNAME}}"}}},
	})
	n := benchDeliveries(b, db, b.N)
	var sent, failed atomic.Int64
	d.OnSent = func(*dispatch.Delivery) { sent.Add(1) }
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	b.ResetTimer()
	go func() { _ = d.Run(ctx); close(done) }()
	d.Wake()
	deadline := time.Now().Add(5 * time.Minute)
	for sent.Load() < int64(n) && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	b.StopTimer()
	cancel()
	<-done
	var notSent int64
	require.NoError(b, db.Raw(`SELECT COUNT(*) FROM deliveries WHERE status <> 'sent'`).Scan(&notSent).Error)
	require.Zero(b, notSent+failed.Load(), "every delivery sent")
	require.EqualValues(b, n, sent.Load())
}
