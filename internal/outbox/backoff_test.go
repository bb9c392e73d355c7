package outbox_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"gorm.io/gorm"

	"github.com/notificationservice/notificationservice/internal/outbox"
	"github.com/notificationservice/notificationservice/internal/testdb"
)

// failingSink fails every entry with a retryable entry error and counts the
// entries it saw.
type failingSink struct{ seen int }

func (s *failingSink) Put(_ context.Context, entries []outbox.Entry) ([]error, error) {
	errs := make([]error, len(entries))
	for i := range entries {
		errs[i] = &outbox.EntryError{Code: "ThrottlingException", Message: "Rate exceeded"}
	}
	s.seen += len(entries)
	return errs, nil
}

// TestRelayBacksOffAFailedEntry follows one entry the sink keeps failing, on
// the relay's injected clock: after the n-th failure its next attempt is
// outbox.backoffBase·2^(n-1) later (1 s, 2 s, 4 s), capped at
// outbox.backoffMax (5 s), and it is not claimed before then.
func TestRelayBacksOffAFailedEntry(t *testing.T) {
	t.Parallel()
	testdb.Dialects(t, func(t *testing.T, db *gorm.DB) {
		t.Parallel()
		ids := record(t, db, outbox.NewWriter(nil, nil), change(0))
		cfg := testConfig()
		cfg.BackoffBase, cfg.BackoffMax, cfg.MaxAttempts = time.Second, 5*time.Second, 10
		sink := &failingSink{}
		relay := outbox.NewRelay(db, sink, cfg, discard())
		relay.NoJitter()
		now := time.UnixMilli(time.Now().UnixMilli() + 1000) // after the row's creation
		relay.SetNow(func() time.Time { return now })
		ctx := context.Background()

		for n, want := range []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 5 * time.Second} {
			claimed, err := relay.Cycle(ctx)
			require.NoError(t, err)
			require.Equal(t, 1, claimed, "failure %d: the entry is due", n+1)
			row := rowByEnvelope(t, db, ids[0])
			require.Equal(t, n+1, row.Attempts)
			require.Nil(t, row.PublishedAt)
			require.Nil(t, row.ParkedAt)
			require.Contains(t, row.LastError, "ThrottlingException")
			require.Equal(t, now.Add(want).UnixMilli(), row.NextAttemptAt,
				"after %d failures the next attempt is %s later", n+1, want)

			// Just before it falls due the entry is left alone.
			now = now.Add(want - time.Millisecond)
			claimed, err = relay.Cycle(ctx)
			require.NoError(t, err)
			require.Zero(t, claimed, "failure %d: claimed before its next attempt time", n+1)
			now = now.Add(time.Millisecond)
		}
		require.Equal(t, 4, sink.seen)
	})
}
