package webhooks_test

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/notificationservice/notificationservice/internal/config"
	"github.com/notificationservice/notificationservice/internal/outbox"
	"github.com/notificationservice/notificationservice/internal/testdb"
	"github.com/notificationservice/notificationservice/internal/webhooks"
)

// The relay's claim marks the rows it publishes fanned out while no
// endpoint is ACTIVE, so the fan-out has no UPDATE of its own to make; once
// one is, it leaves them to the fan-out, which gives the endpoint its
// events.
func TestRelayMarksRowsFannedOutWhenNoEndpointIsActive(t *testing.T) {
	t.Parallel()
	db, _ := testdb.Postgres(t)
	b := setup(t, db, testConfig(true))
	cfg := config.Default().Outbox
	cfg.PollInterval = 10 * time.Millisecond
	relay := outbox.NewRelay(db, outbox.NewLogSink(slog.New(slog.DiscardHandler), cfg.Account, cfg.Region), cfg, testLogger(t),
		outbox.WithFanoutShortcut(webhooks.NoActiveEndpoint))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- relay.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })

	type row struct {
		ID          int64
		PublishedAt *int64
		FannedOutAt *int64
	}
	// sends records n sends and returns their rows once published.
	sends := func(prefix string, n int) []row {
		var after int64
		require.NoError(t, db.Table("outbox").Select("COALESCE(MAX(id), 0)").Scan(&after).Error)
		for i := range n {
			b.send(t, prefix+itoa(int64(i)))
		}
		var rows []row
		require.Eventually(t, func() bool {
			rows = nil
			require.NoError(t, db.Table("outbox").Select("id, published_at, fanned_out_at").
				Where("id > ? AND detail_type = ?", after, outbox.NotificationsSend).Order("id").Scan(&rows).Error)
			for _, r := range rows {
				if r.PublishedAt == nil {
					return false
				}
			}
			return len(rows) == n
		}, 10*time.Second, 10*time.Millisecond)
		return rows
	}

	for _, r := range sends("quiet", 3) {
		require.NotNil(t, r.FannedOutAt, "row %d: published with no endpoint ACTIVE, so fanned out in the same UPDATE", r.ID)
		require.Equal(t, *r.PublishedAt, *r.FannedOutAt)
	}

	rcv := newReceiver(t, true, 0)
	ep := b.create(t, rcv.URL, outbox.TypeNotificationAccepted)
	require.Equal(t, webhooks.StateActive, ep.Webhook.State)
	for _, r := range sends("heard", 2) {
		require.Nil(t, r.FannedOutAt, "row %d: an endpoint is ACTIVE: the fan-out's to handle", r.ID)
	}
	b.drain(t)
	var got int64
	require.NoError(t, db.Table("webhook_messages").Where("endpoint_id = ? AND event_type = ?", ep.Webhook.ID, outbox.TypeNotificationAccepted).
		Count(&got).Error)
	require.EqualValues(t, 2, got, "the endpoint gets the sends after its activation, not the ones before")
}

// While no endpoint is ACTIVE the sender does not answer a wake for new
// envelopes (the relay marks them); once one is, a wake runs the fan-out
// at once, not at the next poll.
func TestSenderSkipsWakesWhileNoEndpointIsActive(t *testing.T) {
	t.Parallel()
	db, _ := testdb.Postgres(t)
	cfg := testConfig(true)
	cfg.PollInterval = time.Hour // every cycle below is a wake's
	b := setup(t, db, cfg)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- b.sender.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })

	unfanned := func() (n int64) {
		require.NoError(t, db.Table("outbox").Where("fanned_out_at IS NULL").Count(&n).Error)
		return n
	}
	time.Sleep(100 * time.Millisecond) // Run's first cycle
	b.send(t, "quiet")
	b.clock.add(webhooks.RelayFirst) // old enough for the fan-out to mark, had it run
	b.sender.Notify()
	time.Sleep(300 * time.Millisecond) // a cycle, had the wake run one, takes milliseconds
	require.EqualValues(t, 1, unfanned(), "a wake with no endpoint ACTIVE runs no cycle")

	rcv := newReceiver(t, true, 0)
	ep := b.create(t, rcv.URL, outbox.TypeNotificationAccepted)
	require.Equal(t, webhooks.StateActive, ep.Webhook.State)
	b.send(t, "heard")
	b.sender.Notify()
	require.Eventually(t, func() bool {
		var n int64
		require.NoError(t, db.Table("webhook_messages").Where("endpoint_id = ? AND event_type = ?", ep.Webhook.ID, outbox.TypeNotificationAccepted).
			Count(&n).Error)
		return n > 0
	}, 5*time.Second, 10*time.Millisecond, "with an endpoint ACTIVE a wake runs the fan-out")
}
