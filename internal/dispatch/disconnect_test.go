package dispatch_test

import (
	"context"
	"database/sql"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"gorm.io/gorm"

	"github.com/notificationservice/notificationservice/internal/actions"
	"github.com/notificationservice/notificationservice/internal/dispatch"
	"github.com/notificationservice/notificationservice/internal/dispatch/intake"
	"github.com/notificationservice/notificationservice/internal/outbox"
	"github.com/notificationservice/notificationservice/internal/testdb"
)

// A REST client that goes away while its send is in the intake's
// transaction (here: its ctx is canceled right after the deliveries are
// inserted) does not undo the batch: it is committed and its hand-off
// reaches the worker, rather than the commit's outcome becoming unknown
// with the deliveries claimed for this instance and left in sending.
func TestClientDisconnectDoesNotCancelTheCommit(t *testing.T) {
	t.Parallel()
	testdb.Dialects(t, func(t *testing.T, db *gorm.DB) {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		// Registered before the workers run: gorm's callbacks are not
		// safe to change while the database is in use.
		require.NoError(t, db.Callback().Row().After("gorm:row").Register("test:disconnect", func(tx *gorm.DB) {
			if strings.Contains(tx.Statement.SQL.String(), "INSERT INTO deliveries") {
				cancel()
			}
		}))
		h := runHandoff(t, db, 4, newGated(true))

		out, err := h.intake.Submit(ctx, []intake.Submission{{Source: intake.SourceAPI, Key: "gone-1",
			Request: request(t, h.collectionID, `{"collectionId": CID, "notification": [{"name": "USER_INVITEUSER",
			  "recipients": [{"email": "a@example.com", "macros": {"FNAME": "A"}}]}]}`)}})
		require.ErrorIs(t, ctx.Err(), context.Canceled, "the callback ran")
		require.NoError(t, err)
		id := out[0].Notifications[0].ID
		require.Eventually(t, func() bool {
			ds := h.email(t, id)
			return len(ds) == 1 && ds[0].Status == dispatch.StatusSent
		}, 10*time.Second, 10*time.Millisecond)
		require.Equal(t, h.intakeClock.Load(), claimedAt(t, db, h.email(t, id)[0].ID), "handed off, not claimed")
	})
}

// lostReply is a connection pool whose transactions commit but report an
// error, as when the connection drops after the database committed and
// before its reply arrived.
type lostReply struct {
	*sql.DB
}

func (p lostReply) BeginTx(ctx context.Context, opts *sql.TxOptions) (gorm.ConnPool, error) {
	tx, err := p.DB.BeginTx(ctx, opts)
	if err != nil {
		return nil, err
	}
	return &lostCommit{tx}, nil
}

type lostCommit struct{ *sql.Tx }

func (c *lostCommit) Commit() error {
	if err := c.Tx.Commit(); err != nil {
		return err
	}
	return errors.New("read tcp: connection reset by peer")
}

func (c *lostCommit) Rollback() error { return c.Tx.Rollback() }

// When the COMMIT reports an error, the intake cannot know whether the
// rows are stored: the deliveries it inserted claimed for the local workers
// go back to pending (if they were stored) and a worker claims them at
// once, rather than waiting in sending for their lease (an hour here) to
// expire. The caller gets the error; the key makes its retry a replay.
func TestUnknownCommitOutcomeReturnsTheHandOffs(t *testing.T) {
	t.Parallel()
	testdb.Dialects(t, func(t *testing.T, db *gorm.DB) {
		h := runHandoff(t, db, 4, newGated(true))
		sqlDB, err := db.DB()
		require.NoError(t, err)
		lossy := db.Session(&gorm.Session{Context: context.Background()}) // its own Statement
		lossy.Statement.ConnPool = lostReply{sqlDB}
		in := intake.New(lossy, actions.NewRules(db), outbox.NewWriter(nil, nil),
			func() time.Time { return time.UnixMilli(h.intakeClock.Load()) }, h.disp)

		sub := intake.Submission{Source: intake.SourceAPI, Key: "lost-1",
			Request: request(t, h.collectionID, `{"collectionId": CID, "notification": [{"name": "USER_INVITEUSER",
			  "recipients": [{"email": "a@example.com", "macros": {"FNAME": "A"}}, {"email": "b@example.com", "macros": {"FNAME": "B"}}]}]}`)}
		_, err = in.Submit(context.Background(), []intake.Submission{sub})
		require.ErrorContains(t, err, "connection reset")

		// The retry through a sound connection replays the stored result.
		out, err := h.intake.Submit(context.Background(), []intake.Submission{sub})
		require.NoError(t, err)
		require.True(t, out[0].Replayed, "the first commit was stored")
		id := out[0].Notifications[0].ID
		require.Eventually(t, func() bool {
			ds := h.email(t, id)
			return len(ds) == 2 && ds[0].Status == dispatch.StatusSent && ds[1].Status == dispatch.StatusSent
		}, 10*time.Second, 10*time.Millisecond, "sent well before the lease expires")
		for _, d := range h.email(t, id) {
			require.Equal(t, 1, h.ch.count(d.ID), "delivery %d sent once", d.ID)
		}
		// Nothing of the hand-off is left reserved: the workers' room is whole.
		require.Equal(t, 4, h.disp.Reserve(4))
		h.disp.Release(4)
	})
}
