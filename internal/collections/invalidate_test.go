package collections_test

import (
	"context"
	"errors"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
	"gorm.io/gorm"

	"github.com/notificationservice/notificationservice/internal/apperr"
	"github.com/notificationservice/notificationservice/internal/collections"
	"github.com/notificationservice/notificationservice/internal/invalidate"
	"github.com/notificationservice/notificationservice/internal/testdb"
)

// invalidations records what the service announces: "publish <key>" inside
// a transaction, "committed <key>" after it. fail makes Publish fail.
type invalidations struct {
	mu   sync.Mutex
	log  []string
	fail bool
}

func (r *invalidations) Publish(_ context.Context, tx *gorm.DB, k invalidate.Key) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.fail {
		return errors.New("publish failed")
	}
	// Publish must run in the mutation's transaction (a row it wrote is
	// visible only there until commit); SkipDefaultTransaction makes a bare
	// handle's statements autocommit, so a nil ConnPool check is not enough.
	if _, ok := tx.Statement.ConnPool.(gorm.TxCommitter); !ok {
		return errors.New("publish outside a transaction")
	}
	r.log = append(r.log, "publish "+k.String())
	return nil
}

func (r *invalidations) Committed(k invalidate.Key) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.log = append(r.log, "committed "+k.String())
}

func status(s string) *string { return &s }

func (r *invalidations) take() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := r.log
	r.log = nil
	return out
}

// Every collection and event mutation changes what the collection's
// notification names resolve to (actions.Rules, which caches), so each
// announces the collection in its transaction and evicts it after commit.
func TestMutationsAnnounceTheirCollection(t *testing.T) {
	t.Parallel()
	testdb.Dialects(t, func(t *testing.T, db *gorm.DB) {
		t.Parallel()
		ctx := context.Background()
		b := setup(t, db)
		inv := &invalidations{}
		b.svc.WithInvalidator(inv)

		c := b.collection(t, "shop")
		require.Empty(t, inv.take(), "a new collection has nothing cached")
		want := []string{"publish " + invalidate.Collection(c.ID).String(), "committed " + invalidate.Collection(c.ID).String()}

		e := b.event(t, c.ID, "USER_INVITEUSER")
		require.Equal(t, want, inv.take(), "create event")
		_, err := b.svc.UpdateEvent(ctx, b.admin, c.ID, e.ID, collections.Patch{Status: status("INACTIVE")}, 0)
		require.NoError(t, err)
		require.Equal(t, want, inv.take(), "update event")
		_, err = b.svc.UpdateCollection(ctx, b.admin, c.ID, collections.CollectionPatch{Status: status("INACTIVE")}, 0)
		require.NoError(t, err)
		require.Equal(t, want, inv.take(), "update collection")

		// A mutation that fails announces nothing.
		_, err = b.svc.UpdateEvent(ctx, b.admin, c.ID, e.ID, collections.Patch{Status: status("ACTIVE")}, 99)
		requireKind(t, err, apperr.PreconditionFailed)
		require.Empty(t, inv.take())

		// The announcement is part of the transaction: when it fails, the
		// change does not happen.
		inv.fail = true
		_, err = b.svc.UpdateEvent(ctx, b.admin, c.ID, e.ID, collections.Patch{Status: status("ACTIVE")}, 0)
		require.Error(t, err)
		got, err := b.svc.GetEvent(ctx, b.admin, c.ID, e.ID)
		require.NoError(t, err)
		require.Equal(t, "INACTIVE", got.Status, "rolled back with its announcement")
		inv.fail = false
		require.Empty(t, inv.take())

		_, err = b.svc.DeleteEvent(ctx, b.admin, c.ID, e.ID, 0)
		require.NoError(t, err)
		require.Equal(t, want, inv.take(), "delete event")
		_, err = b.svc.DeleteCollection(ctx, b.admin, c.ID, 0)
		require.NoError(t, err)
		require.Equal(t, want, inv.take(), "delete collection")
	})
}
