package collections_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"gorm.io/gorm"

	"github.com/notificationservice/notificationservice/internal/apperr"
	"github.com/notificationservice/notificationservice/internal/auth"
	"github.com/notificationservice/notificationservice/internal/collections"
	"github.com/notificationservice/notificationservice/internal/outbox"
	"github.com/notificationservice/notificationservice/internal/testdb"
)

// clock is a settable test clock that moves 1 ms per reading, so created and
// updated times of successive writes differ.
type clock struct{ ms atomic.Int64 }

func (c *clock) now() time.Time { return time.UnixMilli(c.ms.Add(1)) }

type bundle struct {
	db     *gorm.DB
	svc    *collections.Service
	clock  *clock
	admin  auth.Principal
	wakeup *atomic.Int64
}

func setup(t *testing.T, db *gorm.DB) *bundle {
	t.Helper()
	b := &bundle{db: db, clock: &clock{}, wakeup: &atomic.Int64{}}
	b.clock.ms.Store(1709786367000)
	w := outbox.NewWriter(b.clock.now, func() { b.wakeup.Add(1) })
	b.svc = collections.New(db, w, b.clock.now)
	b.admin = auth.Principal{UserID: "1", Roles: []string{auth.RoleSuperAdmin}, Channel: "CSR"}
	return b
}

func (b *bundle) collection(t *testing.T, name string) collections.Collection {
	t.Helper()
	c, err := b.svc.CreateCollection(context.Background(), b.admin, collections.CollectionInput{Name: name})
	require.NoError(t, err)
	return c
}

func (b *bundle) event(t *testing.T, collectionID int64, name string) collections.Event {
	t.Helper()
	e, err := b.svc.CreateEvent(context.Background(), b.admin, collectionID, collections.Input{Name: name, Description: "d"})
	require.NoError(t, err)
	return e
}

// envelope is an outbox row with its detail decoded.
type envelope struct {
	DetailType   string
	CollectionID int64
	Detail       outbox.Detail
}

func (b *bundle) outbox(t *testing.T) []envelope {
	t.Helper()
	var rows []outbox.Row
	require.NoError(t, b.db.Order("id").Find(&rows).Error)
	out := make([]envelope, 0, len(rows))
	for _, r := range rows {
		var d outbox.Detail
		require.NoError(t, json.Unmarshal([]byte(r.Detail), &d))
		out = append(out, envelope{DetailType: r.DetailType, CollectionID: r.CollectionID, Detail: d})
	}
	return out
}

// addAction inserts an action row directly: this package reads the actions
// table, it does not own it.
func (b *bundle) addAction(t *testing.T, collectionID, eventID int64, name string) int64 {
	t.Helper()
	row := map[string]any{
		"collection_id": collectionID, "event_id": eventID, "name": name, "status": "ACTIVE",
		"config_name": "SendEmailConfig", "created_time": 1, "updated_time": 1,
	}
	require.NoError(t, b.db.Table("actions").Create(row).Error)
	var id int64
	require.NoError(t, b.db.Table("actions").Select("id").Where("event_id = ? AND name = ?", eventID, name).Scan(&id).Error)
	return id
}

func requireKind(t *testing.T, err error, kind apperr.Kind) *apperr.Error {
	t.Helper()
	require.Error(t, err)
	require.Equal(t, kind.String(), apperr.KindOf(err).String(), "error: %v", err)
	if kind == apperr.Internal {
		return &apperr.Error{Kind: kind, Err: err} // unclassified errors are Internal
	}
	e, ok := apperr.As(err)
	require.True(t, ok, "not an apperr error: %v", err)
	require.Equal(t, kind.String(), e.Kind.String(), "error: %v", err)
	require.Equal(t, kind, e.Kind, "error: %v", err)
	return e
}

func fields(e *apperr.Error) map[string]string {
	out := map[string]string{}
	for _, d := range e.Details {
		out[d.Field] = d.Reason
	}
	return out
}

func TestEventLifecycleAndEnvelopes(t *testing.T) {
	t.Parallel()
	testdb.Dialects(t, func(t *testing.T, db *gorm.DB) {
		b := setup(t, db)
		ctx := context.Background()
		actor := b.admin
		actor.OnBehalfOf = 42

		col, err := b.svc.CreateCollection(ctx, actor, collections.CollectionInput{Name: "Shop", Description: "the shop"})
		require.NoError(t, err)
		require.Positive(t, col.ID)
		require.Equal(t, collections.StatusActive, col.Status, "status defaults to ACTIVE")
		require.EqualValues(t, 1, col.Version)

		ev, err := b.svc.CreateEvent(ctx, actor, col.ID, collections.Input{Name: "USER_INVITEUSER", Description: "Events description"})
		require.NoError(t, err)
		require.Equal(t, col.ID, ev.CollectionID)
		require.Equal(t, collections.StatusActive, ev.Status)
		require.Equal(t, ev.CreatedTime, ev.UpdatedTime)

		got, err := b.svc.GetEvent(ctx, actor, col.ID, ev.ID)
		require.NoError(t, err)
		require.Equal(t, ev, got)

		inactive := collections.StatusInactive
		desc := "changed"
		up, err := b.svc.UpdateEvent(ctx, actor, col.ID, ev.ID, collections.Patch{Status: &inactive, Description: &desc}, ev.Version)
		require.NoError(t, err)
		require.Equal(t, collections.StatusInactive, up.Status)
		require.Equal(t, "changed", up.Description)
		require.Equal(t, "USER_INVITEUSER", up.Name, "fields the patch leaves out stay")
		require.EqualValues(t, 2, up.Version)
		require.Equal(t, ev.CreatedTime, up.CreatedTime)
		require.Greater(t, up.UpdatedTime, ev.UpdatedTime)

		var by struct{ CreatedBy, UpdatedBy string }
		require.NoError(t, db.Table("events").Select("created_by, updated_by").Where("id = ?", ev.ID).Scan(&by).Error)
		require.Equal(t, "1", by.CreatedBy)

		d, err := b.svc.DeleteEvent(ctx, actor, col.ID, ev.ID, up.Version)
		require.NoError(t, err)
		require.Equal(t, collections.Deleted{ResponseCode: "NOEVDEL0000", ResponseMessage: "Event is deleted successfully", TimeStamp: d.TimeStamp}, d)
		_, err = strconv.ParseInt(d.TimeStamp, 10, 64)
		require.NoError(t, err)
		_, err = b.svc.GetEvent(ctx, actor, col.ID, ev.ID)
		requireKind(t, err, apperr.NotFound)

		dc, err := b.svc.DeleteCollection(ctx, actor, col.ID, 0)
		require.NoError(t, err)
		require.Equal(t, "NOCODEL0000", dc.ResponseCode)
		require.Equal(t, "Collection is deleted successfully", dc.ResponseMessage)

		envs := b.outbox(t)
		types := make([]string, len(envs))
		for i, e := range envs {
			types[i] = e.DetailType
			require.Equal(t, col.ID, e.CollectionID)
			require.Equal(t, strconv.FormatInt(col.ID, 10), e.Detail.CollectionID)
			require.Equal(t, "1", e.Detail.UserID)
			require.EqualValues(t, 42, e.Detail.ActOnBehalfOfUser)
			require.Equal(t, []string{auth.RoleSuperAdmin}, e.Detail.Roles)
			require.Equal(t, "CSR", e.Detail.Channel)
		}
		require.Equal(t, []string{
			outbox.CollectionCreate, outbox.EventCreate, outbox.EventUpdate, outbox.EventDelete, outbox.CollectionDelete,
		}, types)
		require.EqualValues(t, len(envs), b.wakeup.Load(), "Committed after each mutation")

		// Payloads: the entity under its type key, in the catalogue's shape.
		require.Equal(t, strconv.FormatInt(ev.ID, 10), envs[1].Detail.ID)
		require.JSONEq(t, fmt.Sprintf(`{"event":{"id":%d,"collectionId":%d,"name":"USER_INVITEUSER",
			"description":"Events description","status":"ACTIVE","updatedTime":%d,"createdTime":%d}}`,
			ev.ID, col.ID, ev.UpdatedTime, ev.CreatedTime), string(envs[1].Detail.Payload))
		require.JSONEq(t, fmt.Sprintf(`{"event":{"id":%d,"collectionId":%d,"name":"USER_INVITEUSER",
			"description":"changed","status":"INACTIVE","updatedTime":%d,"createdTime":%d}}`,
			ev.ID, col.ID, up.UpdatedTime, up.CreatedTime), string(envs[2].Detail.Payload))
		require.JSONEq(t, fmt.Sprintf(`{"responseCode":"NOEVDEL0000","responseMessage":"Event is deleted successfully","timeStamp":%q}`,
			d.TimeStamp), string(envs[3].Detail.Payload))
		require.Equal(t, strconv.FormatInt(ev.ID, 10), envs[3].Detail.ID)
		require.JSONEq(t, fmt.Sprintf(`{"collection":{"id":%d,"name":"Shop","description":"the shop","status":"ACTIVE","defaultFromEmail":"","defaultFromName":"","timezone":"UTC","quietHours":null,"tenant":"","createdTime":%d,"updatedTime":%d}}`,
			col.ID, col.CreatedTime, col.UpdatedTime), string(envs[0].Detail.Payload))
	})
}

func TestCollectionUpdate(t *testing.T) {
	t.Parallel()
	testdb.Dialects(t, func(t *testing.T, db *gorm.DB) {
		b := setup(t, db)
		ctx := context.Background()
		col := b.collection(t, "Shop")
		name := "Store"
		up, err := b.svc.UpdateCollection(ctx, b.admin, col.ID, collections.CollectionPatch{Name: &name}, 0)
		require.NoError(t, err)
		require.Equal(t, "Store", up.Name)
		require.EqualValues(t, 2, up.Version)
		got, err := b.svc.GetCollection(ctx, b.admin, col.ID)
		require.NoError(t, err)
		require.Equal(t, up, got)
		envs := b.outbox(t)
		require.Len(t, envs, 2)
		require.Equal(t, outbox.CollectionUpdate, envs[1].DetailType)
		require.Contains(t, string(envs[1].Detail.Payload), `"name":"Store"`)
	})
}

func TestValidation(t *testing.T) {
	t.Parallel()
	testdb.Dialects(t, func(t *testing.T, db *gorm.DB) {
		b := setup(t, db)
		ctx := context.Background()
		col := b.collection(t, "Shop")
		before := len(b.outbox(t))

		long := strings.Repeat("x", collections.MaxNameLen+1)
		cases := []struct {
			name   string
			in     collections.Input
			fields []string
		}{
			{"missing name", collections.Input{}, []string{"name"}},
			{"blank name", collections.Input{Name: "  "}, []string{"name"}},
			{"padded name", collections.Input{Name: " X"}, []string{"name"}},
			{"long name", collections.Input{Name: long}, []string{"name"}},
			{"long description", collections.Input{Name: "X", Description: strings.Repeat("d", collections.MaxDescriptionLen+1)}, []string{"description"}},
			{"bad status", collections.Input{Name: "X", Status: "active"}, []string{"status"}},
			{"all at once", collections.Input{Status: "GONE", Description: strings.Repeat("d", 2000)}, []string{"name", "status", "description"}},
		}
		for _, tc := range cases {
			_, err := b.svc.CreateEvent(ctx, b.admin, col.ID, tc.in)
			e := requireKind(t, err, apperr.InvalidArgument)
			require.Len(t, e.Details, len(tc.fields), tc.name)
			for _, f := range tc.fields {
				require.Contains(t, fields(e), f, tc.name)
			}
			_, err = b.svc.CreateCollection(ctx, b.admin, collections.CollectionInput{Name: tc.in.Name, Description: tc.in.Description, Status: tc.in.Status})
			requireKind(t, err, apperr.InvalidArgument)
		}
		// Exactly 128 characters is fine.
		_, err := b.svc.CreateEvent(ctx, b.admin, col.ID, collections.Input{Name: strings.Repeat("é", collections.MaxNameLen)})
		require.NoError(t, err)
		before++

		ev := b.event(t, col.ID, "E")
		before++
		_, err = b.svc.UpdateEvent(ctx, b.admin, col.ID, ev.ID, collections.Patch{}, 0)
		e := requireKind(t, err, apperr.InvalidArgument)
		require.Contains(t, fields(e), "body")
		empty, bad := "", "DONE"
		_, err = b.svc.UpdateEvent(ctx, b.admin, col.ID, ev.ID, collections.Patch{Name: &empty, Status: &bad}, 0)
		e = requireKind(t, err, apperr.InvalidArgument)
		require.Contains(t, fields(e), "name")
		require.Contains(t, fields(e), "status")
		_, err = b.svc.UpdateCollection(ctx, b.admin, col.ID, collections.CollectionPatch{Status: &bad}, 0)
		requireKind(t, err, apperr.InvalidArgument)

		_, err = b.svc.ListEvents(ctx, b.admin, col.ID, collections.Filter{Status: "x"}, collections.Page{Limit: 10})
		e = requireKind(t, err, apperr.InvalidArgument)
		require.Contains(t, fields(e), "status")

		require.Len(t, b.outbox(t), before, "a refused mutation writes no envelope")
	})
}

func TestUniqueNames(t *testing.T) {
	t.Parallel()
	testdb.Dialects(t, func(t *testing.T, db *gorm.DB) {
		b := setup(t, db)
		ctx := context.Background()
		shop := b.collection(t, "Shop")
		blog := b.collection(t, "Blog")
		_, err := b.svc.CreateCollection(ctx, b.admin, collections.CollectionInput{Name: "Shop"})
		e := requireKind(t, err, apperr.AlreadyExists)
		require.Contains(t, fields(e), "name")

		first := b.event(t, shop.ID, "USER_INVITEUSER")
		_, err = b.svc.CreateEvent(ctx, b.admin, shop.ID, collections.Input{Name: "USER_INVITEUSER"})
		e = requireKind(t, err, apperr.AlreadyExists)
		require.Contains(t, fields(e), "name")
		require.Contains(t, e.Message, "USER_INVITEUSER")

		// The same name in another collection is fine.
		b.event(t, blog.ID, "USER_INVITEUSER")

		second := b.event(t, shop.ID, "USER_RESET")
		taken := "USER_INVITEUSER"
		_, err = b.svc.UpdateEvent(ctx, b.admin, shop.ID, second.ID, collections.Patch{Name: &taken}, 0)
		e = requireKind(t, err, apperr.AlreadyExists)
		require.Contains(t, fields(e), "name")
		blogName := "Blog"
		_, err = b.svc.UpdateCollection(ctx, b.admin, shop.ID, collections.CollectionPatch{Name: &blogName}, 0)
		requireKind(t, err, apperr.AlreadyExists)

		// The losers changed nothing and recorded nothing.
		got, err := b.svc.GetEvent(ctx, b.admin, shop.ID, second.ID)
		require.NoError(t, err)
		require.Equal(t, second, got)
		require.NotEqual(t, first.ID, second.ID)
		require.Len(t, b.outbox(t), 5, "2 collections and 3 events, nothing for the conflicts")
	})
}

func TestIfMatch(t *testing.T) {
	t.Parallel()
	testdb.Dialects(t, func(t *testing.T, db *gorm.DB) {
		b := setup(t, db)
		ctx := context.Background()
		col := b.collection(t, "Shop")
		ev := b.event(t, col.ID, "E")
		desc := "v2"
		up, err := b.svc.UpdateEvent(ctx, b.admin, col.ID, ev.ID, collections.Patch{Description: &desc}, ev.Version)
		require.NoError(t, err)
		require.EqualValues(t, 2, up.Version)

		// The first ETag is stale now: update and delete refuse it.
		stale := "v3"
		_, err = b.svc.UpdateEvent(ctx, b.admin, col.ID, ev.ID, collections.Patch{Description: &stale}, ev.Version)
		e := requireKind(t, err, apperr.PreconditionFailed)
		require.Contains(t, fields(e)["If-Match"], `"2"`)
		_, err = b.svc.DeleteEvent(ctx, b.admin, col.ID, ev.ID, ev.Version)
		requireKind(t, err, apperr.PreconditionFailed)
		_, err = b.svc.UpdateCollection(ctx, b.admin, col.ID, collections.CollectionPatch{Description: &stale}, 7)
		requireKind(t, err, apperr.PreconditionFailed)
		_, err = b.svc.DeleteCollection(ctx, b.admin, col.ID, 7)
		requireKind(t, err, apperr.PreconditionFailed)

		got, err := b.svc.GetEvent(ctx, b.admin, col.ID, ev.ID)
		require.NoError(t, err)
		require.Equal(t, up, got, "a stale write changes nothing")
		require.Len(t, b.outbox(t), 3, "create, create, update; nothing for the 412s")
	})
}

// TestIfMatchRace sends many updates with the same If-Match at once, over
// several rounds: the compare and the write are one statement, so exactly
// one wins each round (a read-then-compare lets several through).
func TestIfMatchRace(t *testing.T) {
	t.Parallel()
	testdb.Dialects(t, func(t *testing.T, db *gorm.DB) {
		b := setup(t, db)
		ctx := context.Background()
		col := b.collection(t, "Shop")
		const rounds, writers = 5, 12
		for round := range rounds {
			ev := b.event(t, col.ID, fmt.Sprintf("E%d", round))
			var wins, stale atomic.Int64
			var wg sync.WaitGroup
			start := make(chan struct{})
			for i := range writers {
				wg.Go(func() {
					desc := fmt.Sprintf("writer %d", i)
					<-start
					_, err := b.svc.UpdateEvent(ctx, b.admin, col.ID, ev.ID, collections.Patch{Description: &desc}, ev.Version)
					switch {
					case err == nil:
						wins.Add(1)
					case apperr.KindOf(err) == apperr.PreconditionFailed:
						stale.Add(1)
					default:
						t.Errorf("unexpected error: %v", err)
					}
				})
			}
			close(start)
			wg.Wait()
			require.EqualValues(t, 1, wins.Load(), "round %d", round)
			require.EqualValues(t, writers-1, stale.Load(), "round %d", round)
			got, err := b.svc.GetEvent(ctx, b.admin, col.ID, ev.ID)
			require.NoError(t, err)
			require.EqualValues(t, 2, got.Version)
		}
		require.Len(t, b.outbox(t), 1+2*rounds, "one create and one update per round")
	})
}

func TestNotFound(t *testing.T) {
	t.Parallel()
	testdb.Dialects(t, func(t *testing.T, db *gorm.DB) {
		b := setup(t, db)
		ctx := context.Background()
		shop := b.collection(t, "Shop")
		blog := b.collection(t, "Blog")
		ev := b.event(t, shop.ID, "E")
		d := "x"
		patch := collections.Patch{Description: &d}

		// The event exists, but in another collection.
		_, err := b.svc.GetEvent(ctx, b.admin, blog.ID, ev.ID)
		requireKind(t, err, apperr.NotFound)
		_, err = b.svc.UpdateEvent(ctx, b.admin, blog.ID, ev.ID, patch, 0)
		requireKind(t, err, apperr.NotFound)
		_, err = b.svc.UpdateEvent(ctx, b.admin, blog.ID, ev.ID, patch, ev.Version)
		requireKind(t, err, apperr.NotFound)
		_, err = b.svc.DeleteEvent(ctx, b.admin, blog.ID, ev.ID, 0)
		requireKind(t, err, apperr.NotFound)

		// Missing altogether.
		_, err = b.svc.GetCollection(ctx, b.admin, 9999)
		requireKind(t, err, apperr.NotFound)
		_, err = b.svc.UpdateCollection(ctx, b.admin, 9999, collections.CollectionPatch{Description: patch.Description}, 0)
		requireKind(t, err, apperr.NotFound)
		_, err = b.svc.DeleteCollection(ctx, b.admin, 9999, 0)
		requireKind(t, err, apperr.NotFound)
		_, err = b.svc.CreateEvent(ctx, b.admin, 9999, collections.Input{Name: "E"})
		requireKind(t, err, apperr.NotFound)
		_, err = b.svc.ListEvents(ctx, b.admin, 9999, collections.Filter{}, collections.Page{Limit: 10})
		requireKind(t, err, apperr.NotFound)
		_, err = b.svc.GetEvent(ctx, b.admin, shop.ID, 9999)
		requireKind(t, err, apperr.NotFound)

		// An existing collection with no events is an empty page, not 404.
		list, err := b.svc.ListEvents(ctx, b.admin, blog.ID, collections.Filter{}, collections.Page{Limit: 10})
		require.NoError(t, err)
		require.Empty(t, list)
		require.NotNil(t, list, "an empty page is [], not null")
		require.Len(t, b.outbox(t), 3)
	})
}

func TestDeleteBlockedByDependents(t *testing.T) {
	t.Parallel()
	testdb.Dialects(t, func(t *testing.T, db *gorm.DB) {
		b := setup(t, db)
		ctx := context.Background()
		col := b.collection(t, "Shop")
		ev := b.event(t, col.ID, "USER_RESET")
		other := b.event(t, col.ID, "USER_INVITE")
		a1 := b.addAction(t, col.ID, ev.ID, "Send Reset Email")
		a2 := b.addAction(t, col.ID, ev.ID, "Send Reset SMS")
		b.addAction(t, col.ID, other.ID, "Invite")
		before := len(b.outbox(t))

		_, err := b.svc.DeleteEvent(ctx, b.admin, col.ID, ev.ID, 0)
		e := requireKind(t, err, apperr.FailedPrecondition)
		require.Equal(t, map[string]string{
			fmt.Sprintf("actions/%d", a1): `"Send Reset Email" still depends on it`,
			fmt.Sprintf("actions/%d", a2): `"Send Reset SMS" still depends on it`,
		}, fields(e), "names each action of this event, and only those")

		_, err = b.svc.DeleteCollection(ctx, b.admin, col.ID, 0)
		e = requireKind(t, err, apperr.FailedPrecondition)
		require.Len(t, e.Details, 2)
		require.Contains(t, fields(e)[fmt.Sprintf("events/%d", ev.ID)], "USER_RESET")
		require.Contains(t, fields(e)[fmt.Sprintf("events/%d", other.ID)], "USER_INVITE")

		_, err = b.svc.GetEvent(ctx, b.admin, col.ID, ev.ID)
		require.NoError(t, err, "the refused delete left the event")
		require.Len(t, b.outbox(t), before, "a refused delete writes no envelope")

		// Once its actions are gone the event goes.
		require.NoError(t, db.Exec("DELETE FROM actions WHERE event_id = ?", ev.ID).Error)
		_, err = b.svc.DeleteEvent(ctx, b.admin, col.ID, ev.ID, 0)
		require.NoError(t, err)
	})
}

func TestListPagination(t *testing.T) {
	t.Parallel()
	testdb.Dialects(t, func(t *testing.T, db *gorm.DB) {
		b := setup(t, db)
		ctx := context.Background()
		col := b.collection(t, "Shop")
		other := b.collection(t, "Blog")
		b.event(t, other.ID, "ELSEWHERE")
		var want []int64
		for i := range 7 {
			in := collections.Input{Name: fmt.Sprintf("E%d", i)}
			if i%2 == 1 {
				in.Status = collections.StatusInactive
			}
			e, err := b.svc.CreateEvent(ctx, b.admin, col.ID, in)
			require.NoError(t, err)
			want = append(want, e.ID)
		}

		queries := countQueries(t, db)
		var got []int64
		pages := 0
		pg := collections.Page{Limit: 3}
		for {
			list, err := b.svc.ListEvents(ctx, b.admin, col.ID, collections.Filter{}, pg)
			require.NoError(t, err)
			pages++
			for _, e := range list {
				got = append(got, e.ID)
				require.Equal(t, col.ID, e.CollectionID)
			}
			if pages == 1 {
				// A row added behind the cursor does not shift later pages.
				b.event(t, col.ID, "LATE")
			}
			if len(list) < pg.Limit {
				break
			}
			pg.After = list[len(list)-1].ID
		}
		require.Len(t, got, 8)
		require.Equal(t, want, got[:7], "id order, nothing skipped or repeated")
		require.Equal(t, 3, pages)
		// One query per page (plus one insert), never one per row.
		require.EqualValues(t, 3+1, queries.Load())

		inactive, err := b.svc.ListEvents(ctx, b.admin, col.ID, collections.Filter{Status: collections.StatusInactive}, collections.Page{Limit: 50})
		require.NoError(t, err)
		require.Len(t, inactive, 3)
		for _, e := range inactive {
			require.Equal(t, collections.StatusInactive, e.Status)
		}
		byName, err := b.svc.ListEvents(ctx, b.admin, col.ID, collections.Filter{Name: "E4"}, collections.Page{Limit: 50})
		require.NoError(t, err)
		require.Len(t, byName, 1)
		require.Equal(t, want[4], byName[0].ID)
	})
}

// countQueries counts the SELECTs run on db from now on.
func countQueries(t *testing.T, db *gorm.DB) *atomic.Int64 {
	t.Helper()
	var n atomic.Int64
	require.NoError(t, db.Callback().Query().After("gorm:query").Register("test:count", func(*gorm.DB) { n.Add(1) }))
	require.NoError(t, db.Callback().Raw().After("gorm:raw").Register("test:count_raw", func(*gorm.DB) { n.Add(1) }))
	return &n
}

func TestListCollectionsShowsOnlyTheCallers(t *testing.T) {
	t.Parallel()
	testdb.Dialects(t, func(t *testing.T, db *gorm.DB) {
		b := setup(t, db)
		ctx := context.Background()
		var ids []int64
		for i := range 4 {
			ids = append(ids, b.collection(t, fmt.Sprintf("C%d", i)).ID)
		}
		names := func(p auth.Principal, f collections.Filter, pg collections.Page) []int64 {
			list, err := b.svc.ListCollections(ctx, p, f, pg)
			require.NoError(t, err)
			out := []int64{}
			for _, c := range list {
				out = append(out, c.ID)
			}
			return out
		}
		all := collections.Page{Limit: 50}
		require.Equal(t, ids, names(b.admin, collections.Filter{}, all))
		require.Equal(t, ids[2:], names(b.admin, collections.Filter{}, collections.Page{Limit: 50, After: ids[1]}))
		require.Equal(t, ids[:2], names(b.admin, collections.Filter{}, collections.Page{Limit: 2}))
		require.Equal(t, []int64{ids[3]}, names(b.admin, collections.Filter{Name: "C3"}, all))

		viewer := auth.Principal{UserID: "5", Roles: []string{auth.RoleViewer}, Collections: []int64{ids[1], ids[3], 999}}
		require.Equal(t, []int64{ids[1], ids[3]}, names(viewer, collections.Filter{}, all))
		sender := auth.Principal{UserID: "6", Roles: []string{auth.RoleSender}, Collections: []int64{ids[1]}}
		require.Empty(t, names(sender, collections.Filter{}, all), "a sender may not read collections")
		require.Empty(t, names(auth.Principal{UserID: "7"}, collections.Filter{}, all))
	})
}

// TestServiceRecordsTheCaller: the caller a mutation takes is its author, in
// the row and in the envelope. Whether the caller may act is the HTTP edge's
// question, not the service's: the permission assertions this test made
// (viewer may not change, stranger may not read, only a super admin creates
// a collection) moved to httpapi's TestRoutePermissions, which asserts them
// for every route and every role.
func TestServiceRecordsTheCaller(t *testing.T) {
	t.Parallel()
	db, _ := testdb.SQLite(t)
	b := setup(t, db)
	ctx := context.Background()
	col := b.collection(t, "Shop")
	ev := b.event(t, col.ID, "E")
	d := "x"
	admin := auth.Principal{UserID: "2", Roles: []string{auth.RoleAdmin}, Collections: []int64{col.ID}}
	viewer := auth.Principal{UserID: "3", Roles: []string{auth.RoleViewer}, Collections: []int64{col.ID}}

	_, err := b.svc.GetEvent(ctx, viewer, col.ID, ev.ID)
	require.NoError(t, err)
	up, err := b.svc.UpdateEvent(ctx, admin, col.ID, ev.ID, collections.Patch{Description: &d}, 0)
	require.NoError(t, err)
	var updatedBy string
	require.NoError(t, db.Table("events").Select("updated_by").Where("id = ?", up.ID).Scan(&updatedBy).Error)
	require.Equal(t, "2", updatedBy)
	envs := b.outbox(t)
	require.Equal(t, "2", envs[len(envs)-1].Detail.UserID)
	require.Equal(t, []string{auth.RoleAdmin}, envs[len(envs)-1].Detail.Roles)
}

// TestEnvelopeFailureRollsBack breaks the outbox table: the mutation must
// not commit without its envelope.
func TestEnvelopeFailureRollsBack(t *testing.T) {
	t.Parallel()
	testdb.Dialects(t, func(t *testing.T, db *gorm.DB) {
		b := setup(t, db)
		ctx := context.Background()
		col := b.collection(t, "Shop")
		ev := b.event(t, col.ID, "E")
		wakeups := b.wakeup.Load()
		require.NoError(t, db.Exec("DROP TABLE outbox").Error)

		_, err := b.svc.CreateEvent(ctx, b.admin, col.ID, collections.Input{Name: "F"})
		requireKind(t, err, apperr.Internal)
		d := "changed"
		_, err = b.svc.UpdateEvent(ctx, b.admin, col.ID, ev.ID, collections.Patch{Description: &d}, 0)
		requireKind(t, err, apperr.Internal)
		_, err = b.svc.DeleteEvent(ctx, b.admin, col.ID, ev.ID, 0)
		requireKind(t, err, apperr.Internal)
		_, err = b.svc.CreateCollection(ctx, b.admin, collections.CollectionInput{Name: "Blog"})
		requireKind(t, err, apperr.Internal)

		list, err := b.svc.ListEvents(ctx, b.admin, col.ID, collections.Filter{}, collections.Page{Limit: 10})
		require.NoError(t, err)
		require.Equal(t, []collections.Event{ev}, list, "nothing created, changed or deleted")
		cols, err := b.svc.ListCollections(ctx, b.admin, collections.Filter{}, collections.Page{Limit: 10})
		require.NoError(t, err)
		require.Len(t, cols, 1)
		require.Equal(t, wakeups, b.wakeup.Load(), "no Committed for a rolled-back change")
	})
}
