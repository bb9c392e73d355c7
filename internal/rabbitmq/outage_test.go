package rabbitmq_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/stretchr/testify/require"
	"gorm.io/gorm"

	"github.com/notificationservice/notificationservice/internal/rabbitmq"
	"github.com/notificationservice/notificationservice/internal/store"
	"github.com/notificationservice/notificationservice/internal/testdb"
)

// A database that answers pings but cannot commit (here PostgreSQL's own
// error for a full disk, 53100, on every statement for a while) is an
// outage: the consumer holds its messages and retries, dead-letters none of
// them, readiness reports the error while the ping succeeds, and every
// message commits once the database recovers.
func TestDiskFullHoldsMessagesWhilePingSucceeds(t *testing.T) {
	t.Parallel()
	for _, code := range []string{"53100", "57P01", "08006"} {
		t.Run(code, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			e.cfg.Consumers = 1 // one batch, so the old split-and-blame path would run

			// Seven failed commits: the batch three times, then the first
			// message alone three times, and the second once. A consumer
			// that blamed the messages would have dead-lettered one by then.
			var down atomic.Bool
			var injected atomic.Int32
			down.Store(true)
			testdb.InjectError(t, e.db, func(*gorm.Statement) error {
				if !down.Load() {
					return nil
				}
				if injected.Add(1) >= 7 {
					down.Store(false)
				}
				return &pgconn.PgError{Severity: "ERROR", Code: code, Message: "injected outage"}
			})
			sqlDB, err := e.db.DB()
			require.NoError(t, err)
			outage := store.NewOutage(time.Minute, nil)
			e.consumer = rabbitmq.New(e.cfg, e.intake, sqlDB.PingContext, discard())
			e.consumer.Outage = outage

			for i := range 5 {
				e.publish(e.message(i), amqp.Publishing{MessageId: fmt.Sprint("full-", i)})
			}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan struct{})
			go func() { _ = e.consumer.Run(ctx); close(done) }()
			t.Cleanup(func() { cancel(); <-done })

			require.Eventually(t, func() bool { return outage.Check(ctx) != nil }, 20*time.Second, 5*time.Millisecond,
				"readiness never heard of the outage")
			require.NoError(t, sqlDB.PingContext(ctx), "the ping succeeds throughout")

			require.Eventually(t, func() bool { return !down.Load() }, 60*time.Second, 20*time.Millisecond)
			require.Eventually(t, func() bool { return e.count("SELECT COUNT(*) FROM notifications") == 5 }, 30*time.Second, 20*time.Millisecond)
			require.Eventually(t, func() bool { return outage.Check(ctx) == nil }, 10*time.Second, 5*time.Millisecond,
				"a successful commit clears the outage")
			require.Empty(t, e.consumer.Stats().DeadLettered)
			require.Zero(t, e.inspectQueue(e.cfg.DeadLetterQueue).Messages)
			require.Zero(t, e.inspectQueue(e.cfg.Queue).Messages, "all acked")
		})
	}
}
