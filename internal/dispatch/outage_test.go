package dispatch_test

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/require"
	"gorm.io/gorm"

	"github.com/notificationservice/notificationservice/internal/channels"
	"github.com/notificationservice/notificationservice/internal/dispatch/intake"
	"github.com/notificationservice/notificationservice/internal/testdb"
)

// armingChannel passes sends to the sandbox and says when one went out.
type armingChannel struct {
	*channels.Sandbox
	sent atomic.Bool
}

func (a *armingChannel) Send(ctx context.Context, msgs []channels.Message) []channels.Result {
	res := a.Sandbox.Send(ctx, msgs)
	a.sent.Store(true)
	return res
}

// The database is full (53100) just when a worker records what it sent: the
// worker holds the outcomes and records them once the database takes them,
// so the deliveries end sent, each sent once, rather than left in sending
// for recovery to send again (or fail, at the last attempt).
func TestWorkerHoldsOutcomesThroughAnOutage(t *testing.T) {
	t.Parallel()
	db, _ := testdb.SQLite(t)
	arm := &armingChannel{}
	b := setup(t, db, arm)
	arm.Sandbox = b.sandbox

	var injected atomic.Int32
	testdb.InjectError(t, db, func(stmt *gorm.Statement) error {
		if !arm.sent.Load() || !strings.Contains(stmt.SQL.String(), "UPDATE deliveries") || injected.Load() >= 4 {
			return nil
		}
		injected.Add(1)
		return &pgconn.PgError{Severity: "ERROR", Code: "53100", Message: "could not extend file: No space left on device"}
	})

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- b.disp.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })

	_, err := b.intake.Submit(ctx, []intake.Submission{{Source: intake.SourceQueue, Key: "full-1",
		Request: request(t, b.collectionID, twoRecipients)}})
	require.NoError(t, err)

	count := func(q string) int64 {
		var n int64
		require.NoError(t, db.Raw(q).Scan(&n).Error)
		return n
	}
	require.Eventually(t, func() bool {
		return injected.Load() >= 4 && count("SELECT COUNT(*) FROM deliveries WHERE status = 'sent'") == 3
	}, 20*time.Second, 20*time.Millisecond, "the outcomes were never recorded")
	require.Zero(t, count("SELECT COUNT(*) FROM deliveries WHERE status IN ('failed', 'sending', 'pending')"))
	require.EqualValues(t, 3, count("SELECT COUNT(*) FROM sandbox_messages"), "each sent once")
}
