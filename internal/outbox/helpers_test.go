package outbox_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"gorm.io/gorm"

	"github.com/notificationservice/notificationservice/internal/auth"
	"github.com/notificationservice/notificationservice/internal/config"
	"github.com/notificationservice/notificationservice/internal/outbox"
	"github.com/notificationservice/notificationservice/internal/outbox/eventbridgetest"
)

// wait is how long Eventually waits for the relay; generous for -race on a
// shared two-core machine, and only spent when a test is failing.
const wait = 20 * time.Second

const tick = 5 * time.Millisecond

var actor = auth.Principal{UserID: "1", Roles: []string{auth.RoleSuperAdmin}, Channel: "CSR"}

func discard() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// testConfig is the default outbox config with short delays.
func testConfig() config.Outbox {
	c := config.Default().Outbox
	c.PollInterval = 50 * time.Millisecond
	c.BackoffBase = 10 * time.Millisecond
	c.BackoffMax = 100 * time.Millisecond
	c.Timeout = 5 * time.Second
	return c
}

// newSink is the real aws-sdk-go-v2 EventBridge client pointed at fake.
func newSink(t testing.TB, fake *eventbridgetest.Server, timeout time.Duration) *outbox.EventBridge {
	t.Helper()
	s, err := outbox.NewEventBridge(context.Background(), outbox.EventBridgeConfig{
		Region: "us-east-1", Endpoint: fake.URL, Timeout: timeout, Credentials: eventbridgetest.Credentials(),
	})
	require.NoError(t, err)
	return s
}

// change is a small event/create change for entity i.
func change(i int) outbox.Change {
	return outbox.Change{
		DetailType: outbox.EventCreate, EntityID: fmt.Sprint(i), CollectionID: 7,
		Payload: map[string]any{"event": map[string]any{"id": i, "collectionId": 7, "name": fmt.Sprintf("E%d", i)}},
		Actor:   actor,
	}
}

// bigChange is a change whose detail is about size bytes.
func bigChange(i, size int) outbox.Change {
	c := change(i)
	c.Payload = map[string]any{"event": map[string]any{"id": i, "description": strings.Repeat("x", size)}}
	return c
}

// record commits each change in its own transaction, as a mutation would,
// and returns the envelope ids in commit (id) order.
func record(t testing.TB, db *gorm.DB, w *outbox.Writer, changes ...outbox.Change) []string {
	t.Helper()
	before := len(allRows(t, db))
	for _, c := range changes {
		require.NoError(t, db.Transaction(func(tx *gorm.DB) error { return w.Record(context.Background(), tx, c) }))
		w.Committed()
	}
	rows := allRows(t, db)
	ids := make([]string, 0, len(changes))
	for _, r := range rows[before:] {
		ids = append(ids, r.EnvelopeID)
	}
	return ids
}

// insertRow writes a row by hand (for details the Writer would never build).
func insertRow(t testing.TB, db *gorm.DB, envelopeID, detail string) {
	t.Helper()
	require.NoError(t, db.Create(&outbox.Row{
		EnvelopeID: envelopeID, DetailType: outbox.EventCreate, CollectionID: 7, Detail: detail,
		CreatedAt: time.Now().UnixMilli(),
	}).Error)
}

func allRows(t testing.TB, db *gorm.DB) []outbox.Row {
	t.Helper()
	var rows []outbox.Row
	require.NoError(t, db.Order("id").Find(&rows).Error)
	return rows
}

func rowByEnvelope(t testing.TB, db *gorm.DB, envelopeID string) outbox.Row {
	t.Helper()
	var r outbox.Row
	require.NoError(t, db.Where("envelope_id = ?", envelopeID).Take(&r).Error)
	return r
}

// start runs r until the returned stop is called (or the test ends) and
// fails the test if Run returns anything but the cancellation.
func start(t testing.TB, r *outbox.Relay) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	stopped := false
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		err := <-done
		if !errors.Is(err, context.Canceled) {
			t.Errorf("relay: %v", err)
		}
	}
	t.Cleanup(stop)
	return stop
}

// allAccepted waits until the fake accepted every id at least once.
func allAccepted(t testing.TB, fake *eventbridgetest.Server, ids []string) {
	t.Helper()
	require.Eventually(t, func() bool {
		counts := fake.Counts()
		for _, id := range ids {
			if counts[id] == 0 {
				return false
			}
		}
		return true
	}, wait, tick, "not every envelope reached the fake")
}

// allPublished waits until every id's row is marked published (the relay
// records that after the sink accepts).
func allPublished(t testing.TB, db *gorm.DB, ids []string) {
	t.Helper()
	require.Eventually(t, func() bool {
		var n int64
		require.NoError(t, db.Model(&outbox.Row{}).Where("envelope_id IN ? AND published_at IS NOT NULL", ids).Count(&n).Error)
		return n == int64(len(ids))
	}, wait, tick, "not every envelope is marked published")
}
