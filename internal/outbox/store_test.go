package outbox_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"gorm.io/gorm"

	"github.com/notificationservice/notificationservice/internal/apperr"
	"github.com/notificationservice/notificationservice/internal/outbox"
	"github.com/notificationservice/notificationservice/internal/outbox/eventbridgetest"
	"github.com/notificationservice/notificationservice/internal/testdb"
)

func TestStoreListsAndFilters(t *testing.T) {
	t.Parallel()
	testdb.Dialects(t, func(t *testing.T, db *gorm.DB) {
		t.Parallel()
		ctx := context.Background()
		clock := time.UnixMilli(1_700_000_000_000)
		w := outbox.NewWriter(func() time.Time { return clock }, nil)
		var ids []string
		for i := range 6 {
			c := change(i)
			if i%2 == 1 {
				c.DetailType, c.CollectionID = outbox.ActionCreate, 8
			}
			ids = append(ids, record(t, db, w, c)...)
			clock = clock.Add(time.Second)
		}
		require.NoError(t, db.Model(&outbox.Row{}).Where("envelope_id = ?", ids[0]).Update("published_at", 1).Error)
		require.NoError(t, db.Model(&outbox.Row{}).Where("envelope_id = ?", ids[1]).Updates(map[string]any{
			"parked_at": 2, "last_error": "MalformedDetail"}).Error)
		s := outbox.NewStore(db, nil)

		list := func(f outbox.Filter, after int64, limit int) []string {
			t.Helper()
			es, err := s.List(ctx, f, after, limit)
			require.NoError(t, err)
			var out []string
			for _, e := range es {
				out = append(out, e.EnvelopeID)
			}
			return out
		}
		require.Equal(t, ids, list(outbox.Filter{}, 0, 50))
		require.Equal(t, []string{ids[1], ids[3], ids[5]}, list(outbox.Filter{DetailType: outbox.ActionCreate}, 0, 50))
		require.Equal(t, []string{ids[0], ids[2], ids[4]}, list(outbox.Filter{CollectionID: 7}, 0, 50))
		since := 1_700_000_000_000 + 2000
		require.Equal(t, ids[2:4], list(outbox.Filter{Since: int64(since), Until: int64(since + 2000)}, 0, 50))
		require.Equal(t, ids[2:], list(outbox.Filter{State: outbox.StatePending}, 0, 50))
		require.Equal(t, ids[:1], list(outbox.Filter{State: outbox.StatePublished}, 0, 50))
		require.Equal(t, ids[1:2], list(outbox.Filter{State: outbox.StateParked}, 0, 50))

		// Keyset pages: the cursor is the last id.
		page, err := s.List(ctx, outbox.Filter{}, 0, 4)
		require.NoError(t, err)
		require.Len(t, page, 4)
		require.Equal(t, ids[4:], list(outbox.Filter{}, page[3].ID, 4))

		e, err := s.Get(ctx, ids[1])
		require.NoError(t, err)
		require.Equal(t, outbox.StateParked, e.State)
		require.Equal(t, "MalformedDetail", e.LastError)
		require.Equal(t, outbox.ActionCreate, e.DetailType)
		require.JSONEq(t, allRows(t, db)[1].Detail, string(e.Detail))
		_, err = s.Get(ctx, "no-such-envelope")
		require.Equal(t, apperr.NotFound, apperr.KindOf(err))

		st, err := s.Stats(ctx)
		require.NoError(t, err)
		require.Equal(t, int64(4), st.Pending)
		require.Equal(t, int64(1), st.Parked)
		require.NotNil(t, st.OldestPendingTime)
		require.Equal(t, int64(since), *st.OldestPendingTime)

		for _, bad := range []outbox.Filter{
			{DetailType: "notificationservice/thing/create"},
			{State: "lost"},
			{Since: 10, Until: 5},
		} {
			_, err := s.List(ctx, bad, 0, 10)
			require.Equal(t, apperr.InvalidArgument, apperr.KindOf(err), "%+v", bad)
		}
	})
}

// TestReplayPublishesAgainWithTheSameEnvelopeIDs: a replay since a time
// makes published and parked rows from then on pending; the relay sends
// them again, in their original order, with their original envelopeId, so a
// consumer can tell a repeat from a new change.
func TestReplayPublishesAgainWithTheSameEnvelopeIDs(t *testing.T) {
	t.Parallel()
	testdb.Dialects(t, func(t *testing.T, db *gorm.DB) {
		t.Parallel()
		ctx := context.Background()
		fake := eventbridgetest.New(t)
		cfg := testConfig()
		cfg.Concurrency = 1
		relay := outbox.NewRelay(db, newSink(t, fake, time.Second), cfg, discard())
		clock := time.UnixMilli(1_700_000_000_000)
		w := outbox.NewWriter(func() time.Time { return clock }, relay.Notify)
		var ids []string
		for i := range 5 {
			ids = append(ids, record(t, db, w, change(i))...)
			clock = clock.Add(time.Minute)
		}
		require.NoError(t, db.Model(&outbox.Row{}).Where("envelope_id = ?", ids[4]).Updates(map[string]any{
			"parked_at": 1, "last_error": "AccessDeniedException"}).Error) // fixed since; replay must retry it
		start(t, relay)
		allPublished(t, db, ids[:4])

		res, err := outbox.NewStore(db, relay.Notify).Replay(ctx, outbox.Filter{Since: 1_700_000_000_000 + 2*60_000})
		require.NoError(t, err)
		require.Equal(t, int64(3), res.Replayed)
		allPublished(t, db, ids)
		require.Eventually(t, func() bool { return fake.Count(ids[2]) == 2 && fake.Count(ids[3]) == 2 }, wait, tick)
		require.Equal(t, 1, fake.Count(ids[0]))
		require.Equal(t, 1, fake.Count(ids[1]))
		require.Equal(t, 1, fake.Count(ids[4]), "the parked one is published by the replay")

		var order []string
		for _, e := range fake.Accepted()[4:] {
			order = append(order, e.EnvelopeID())
		}
		require.Equal(t, ids[2:], order, "the replay goes out in the original order")
		require.Equal(t, allRows(t, db)[2].Detail, fake.Accepted()[4].Detail, "the same bytes: same envelopeId and timestamp")
	})
}
