package outbox_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"gorm.io/gorm"

	"github.com/notificationservice/notificationservice/internal/apperr"
	"github.com/notificationservice/notificationservice/internal/auth"
	"github.com/notificationservice/notificationservice/internal/outbox"
	"github.com/notificationservice/notificationservice/internal/store"
	"github.com/notificationservice/notificationservice/internal/testdb"
)

// t0 is the feed tests' first event time; event i is recorded at t0 + i s.
var t0 = time.Date(2024, 3, 7, 4, 40, 0, 0, time.UTC)

// recordAt records change(i) for each i at t0 + i seconds, in collection
// coll, and returns the envelope ids in id order.
func recordAt(t *testing.T, db *gorm.DB, coll int64, is ...int) []string {
	t.Helper()
	var ids []string
	for _, i := range is {
		w := outbox.NewWriter(func() time.Time { return t0.Add(time.Duration(i) * time.Second) }, nil)
		c := change(i)
		c.CollectionID = coll
		ids = append(ids, record(t, db, w, c)...)
	}
	return ids
}

func newFeed(db *gorm.DB) *outbox.Feed {
	return outbox.NewFeed(db, "notificationservice", "000000000000", "us-east-1", nil)
}

// unprocessed is the envelope ids the consumer's feed shows, in order.
func unprocessed(t *testing.T, f *outbox.Feed, p auth.Principal, consumer string) []string {
	t.Helper()
	evs, err := f.Read(context.Background(), p, outbox.FeedQuery{Consumer: consumer, Limit: outbox.FeedMaxLimit})
	require.NoError(t, err)
	ids := []string{}
	for _, e := range evs {
		ids = append(ids, e.ID)
	}
	return ids
}

func ack(t *testing.T, f *outbox.Feed, p auth.Principal, consumer, id string) outbox.AckResult {
	t.Helper()
	res, err := f.Ack(context.Background(), p, consumer, id)
	require.NoError(t, err)
	require.Equal(t, id, res.EnvelopeID)
	return res
}

// Two consumers read the same envelopes and acknowledge them independently;
// an ack answers the time of the consumer's earliest unprocessed event.
func TestFeedConsumersAckIndependently(t *testing.T) {
	t.Parallel()
	testdb.Dialects(t, func(t *testing.T, db *gorm.DB) {
		f := newFeed(db)
		ids := recordAt(t, db, 7, 0, 1, 2, 3)
		require.Equal(t, ids, unprocessed(t, f, actor, "billing"))
		require.Equal(t, ids, unprocessed(t, f, actor, "crm"))

		res := ack(t, f, actor, "billing", ids[1]) // out of order
		require.Equal(t, "2024-03-07T04:40:00Z", *res.EarliestUnprocessed)
		res = ack(t, f, actor, "billing", ids[0])
		require.Equal(t, "2024-03-07T04:40:02Z", *res.EarliestUnprocessed)
		require.Equal(t, ids[2:], unprocessed(t, f, actor, "billing"))
		require.Equal(t, ids, unprocessed(t, f, actor, "crm"), "billing's acks are not crm's")

		res = ack(t, f, actor, "crm", ids[3])
		require.Equal(t, "2024-03-07T04:40:00Z", *res.EarliestUnprocessed)
		require.Equal(t, ids[:3], unprocessed(t, f, actor, "crm"))
		require.Equal(t, ids[2:], unprocessed(t, f, actor, "billing"))

		ack(t, f, actor, "billing", ids[2])
		ack(t, f, actor, "billing", ids[2]) // repeating an ack is harmless
		res = ack(t, f, actor, "billing", ids[3])
		require.Nil(t, res.EarliestUnprocessed, "nothing left")
		require.Empty(t, unprocessed(t, f, actor, "billing"))

		more := recordAt(t, db, 7, 4)
		require.Equal(t, more, unprocessed(t, f, actor, "billing"), "a new envelope appears after everything acked")

		_, err := f.Ack(context.Background(), actor, "billing", "00000000-0000-4000-8000-00000000dead")
		require.ErrorContains(t, err, "does not exist")
	})
}

// A reset marks exactly the events at or after its time unprocessed again,
// for that consumer only; events before it stay processed, whether they
// were under the low-water mark or acked above it.
func TestFeedResetReplaysFromTheTime(t *testing.T) {
	t.Parallel()
	testdb.Dialects(t, func(t *testing.T, db *gorm.DB) {
		f := newFeed(db)
		ids := recordAt(t, db, 7, 0, 1, 2, 3, 4, 5)
		for _, consumer := range []string{"billing", "crm"} {
			for _, id := range ids[:5] {
				ack(t, f, actor, consumer, id)
			}
		}
		require.Equal(t, ids[5:], unprocessed(t, f, actor, "billing"))

		res, err := f.Reset(context.Background(), actor, "billing", t0.Add(2*time.Second).UnixMilli())
		require.NoError(t, err)
		require.Equal(t, outbox.ResetResult{Consumer: "billing", Since: "2024-03-07T04:40:02Z", Reset: 3}, res)
		require.Equal(t, ids[2:], unprocessed(t, f, actor, "billing"), "exactly the events at or after 04:40:02")
		require.Equal(t, ids[5:], unprocessed(t, f, actor, "crm"), "another consumer is not reset")

		// An event acked out of order before the time stays processed.
		ack(t, f, actor, "crm", ids[5])
		res, err = f.Reset(context.Background(), actor, "crm", t0.Add(5*time.Second).UnixMilli())
		require.NoError(t, err)
		require.Equal(t, int64(1), res.Reset)
		require.Equal(t, ids[5:], unprocessed(t, f, actor, "crm"))

		// Clocks of several instances: a later id may carry an earlier time.
		// Only the events at or after the time come back, whatever their ids.
		skewed := recordAt(t, db, 7, 12, 11)
		for _, id := range append(ids, skewed...) {
			ack(t, f, actor, "skew", id)
		}
		res, err = f.Reset(context.Background(), actor, "skew", t0.Add(12*time.Second).UnixMilli())
		require.NoError(t, err)
		require.Equal(t, int64(1), res.Reset)
		require.Equal(t, skewed[:1], unprocessed(t, f, actor, "skew"))

		res, err = f.Reset(context.Background(), actor, "crm", t0.Add(time.Hour).UnixMilli())
		require.NoError(t, err)
		require.Zero(t, res.Reset, "a reset after every event changes nothing")
		require.Equal(t, append(ids[5:], skewed...), unprocessed(t, f, actor, "crm"))
	})
}

// A consumer sees only the collections its token may read; a super admin
// sees all. Acking an envelope the token may not read is NOT_FOUND.
func TestFeedVisibilityFollowsTheToken(t *testing.T) {
	t.Parallel()
	testdb.Dialects(t, func(t *testing.T, db *gorm.DB) {
		f := newFeed(db)
		in7 := recordAt(t, db, 7, 0, 2)
		in8 := recordAt(t, db, 8, 1)
		viewer7 := auth.Principal{UserID: "2", Roles: []string{auth.RoleViewer}, Collections: []int64{7}}
		sender8 := auth.Principal{UserID: "3", Roles: []string{auth.RoleSender}, Collections: []int64{8}} // may send, not read

		require.Equal(t, in7, unprocessed(t, f, viewer7, "viewer"))
		require.Empty(t, unprocessed(t, f, sender8, "sender"))
		require.Len(t, unprocessed(t, f, actor, "admin"), 3)

		_, err := f.Ack(context.Background(), viewer7, "viewer", in8[0])
		require.ErrorContains(t, err, "does not exist")
		res := ack(t, f, viewer7, "viewer", in7[0])
		require.Equal(t, "2024-03-07T04:40:02Z", *res.EarliestUnprocessed, "the collection-8 event between is not the viewer's")
	})
}

// A category narrows a consumer to one entity's envelopes, and is fixed for
// the consumer; bad names, categories and limits are INVALID_ARGUMENT.
func TestFeedCategoryAndValidation(t *testing.T) {
	t.Parallel()
	db, _ := testdb.SQLite(t)
	f := newFeed(db)
	ids := recordAt(t, db, 7, 0)
	c := change(1)
	c.DetailType, c.Payload = outbox.CollectionCreate, map[string]any{"collection": map[string]any{"id": 7}}
	coll := record(t, db, outbox.NewWriter(nil, nil), c)
	ctx := context.Background()

	evs, err := f.Read(ctx, actor, outbox.FeedQuery{Consumer: "colls", Category: "collection", Limit: 10})
	require.NoError(t, err)
	require.Len(t, evs, 1)
	require.Equal(t, coll[0], evs[0].ID)
	require.Equal(t, "0", evs[0].Version)
	require.Equal(t, []string{"collection", "event", "action", "notifications", "webhook", "suppression", "preferences"}, outbox.Categories())
	evs, err = f.Read(ctx, actor, outbox.FeedQuery{Consumer: "colls", Limit: 10})
	require.NoError(t, err)
	require.Len(t, evs, 1, "no category: the consumer's own")
	// Acking the one collection event moves the mark over the event envelope
	// the consumer does not read.
	require.Nil(t, ack(t, f, actor, "colls", coll[0]).EarliestUnprocessed)
	require.Equal(t, append(ids, coll...), unprocessed(t, f, actor, "all"), "another consumer reads every category")

	for _, q := range []outbox.FeedQuery{
		{Consumer: "", Limit: 10},
		{Consumer: "has space", Limit: 10},
		{Consumer: "ok", Category: "nope", Limit: 10},
		{Consumer: "ok", Limit: 0},
		{Consumer: "colls", Category: "event", Limit: 10},
	} {
		_, err := f.Read(ctx, actor, q)
		require.Error(t, err, "%+v", q)
		require.Equal(t, "INVALID_ARGUMENT", kindOf(err), "%+v", q)
	}
	_, err = f.Reset(ctx, actor, "", 0)
	require.Error(t, err)
}

// A consumer that acknowledges in order keeps no ack rows: the low-water
// mark carries them (SQLite, where every visible id is at once final).
func TestFeedInOrderAcksKeepNoRows(t *testing.T) {
	t.Parallel()
	db, _ := testdb.SQLite(t)
	f := newFeed(db)
	ids := recordAt(t, db, 7, 0, 1, 2, 3, 4, 5, 6, 7)
	for _, id := range ids {
		ack(t, f, actor, "billing", id)
		require.Zero(t, ackRows(t, db), "after acking %s", id)
	}
	ack(t, f, actor, "crm", ids[3])
	ack(t, f, actor, "crm", ids[5])
	require.Equal(t, int64(2), ackRows(t, db), "out-of-order acks are kept above the mark")
	for _, id := range ids[:3] {
		ack(t, f, actor, "crm", id)
	}
	require.Equal(t, int64(1), ackRows(t, db), "the mark swallows the acks it reaches")
}

func ackRows(t *testing.T, db *gorm.DB) int64 {
	t.Helper()
	var n int64
	require.NoError(t, db.Table("outbox_feed_acks").Count(&n).Error)
	return n
}

// On PostgreSQL an id is taken at insert, not at commit: a transaction can
// commit id 1 after id 2 is visible and acknowledged. The consumer must still
// get id 1: the mark may not pass an id whose transaction may be in flight.
func TestFeedLateCommitIsNotSkipped(t *testing.T) {
	t.Parallel()
	db, _ := testdb.Postgres(t)
	require.True(t, store.IsPostgres(db))
	f := newFeed(db)
	ctx := context.Background()
	w := outbox.NewWriter(func() time.Time { return t0 }, nil)

	late := db.Begin()
	require.NoError(t, late.Error)
	defer late.Rollback()
	require.NoError(t, w.Record(ctx, late, change(1))) // takes the lower id, commits later
	early := recordAt(t, db, 7, 2)

	require.Equal(t, early, unprocessed(t, f, actor, "billing"))
	ack(t, f, actor, "billing", early[0])
	ack(t, f, actor, "billing", early[0]) // a second call settles what the first probed, if it may
	require.NoError(t, late.Commit().Error)

	got := unprocessed(t, f, actor, "billing")
	require.Len(t, got, 1, "the late-committed envelope is still unprocessed")
	require.NotEqual(t, early[0], got[0])
}

func kindOf(err error) string {
	if e, ok := apperr.As(err); ok {
		return e.Kind.String()
	}
	return ""
}

// TestGoldenFeedPage pins a feed page byte for byte: each event is the
// envelope as EventBridge delivers it (the log sink's shape), detail as
// stored, envelopeId included.
func TestGoldenFeedPage(t *testing.T) {
	t.Parallel()
	db, _ := testdb.SQLite(t)
	cases := goldenCases()
	for i, tc := range []goldenCase{cases[0], cases[6]} {
		envelopeID := fmt.Sprintf("00000000-0000-4000-8000-%012d", i+1)
		detail, err := outbox.EncodeDetail(tc.change, envelopeID, time.UnixMilli(tc.at), nil)
		require.NoError(t, err)
		require.NoError(t, db.Create(&outbox.Row{EnvelopeID: envelopeID, DetailType: tc.change.DetailType,
			CollectionID: tc.change.CollectionID, Detail: detail, CreatedAt: tc.at}).Error)
	}
	evs, err := newFeed(db).Read(context.Background(), seedActor, outbox.FeedQuery{Consumer: "golden", Limit: 10})
	require.NoError(t, err)
	requireGolden(t, "feed_page", outbox.FeedPage{Events: evs, NextCursor: ""})
}
