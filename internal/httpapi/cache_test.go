package httpapi_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/notificationservice/notificationservice/internal/app"
	"github.com/notificationservice/notificationservice/internal/auth"
)

// The action cache across instances (docs/api.md, "Caching and
// consistency"): every instance caches action reads and rules; a change made
// through one instance reaches the others' caches through PostgreSQL
// LISTEN/NOTIFY.

// another builds a second instance of the service on a's database and
// schema, as a second replica behind a load balancer would be.
func (a *testAPI) another(t testing.TB) *testAPI {
	t.Helper()
	b, err := app.New(context.Background(), a.cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	require.NoError(t, err)
	t.Cleanup(b.Close)
	return &testAPI{t: t, App: b, DB: b.DB, cfg: a.cfg}
}

// serve runs the instance's components (the invalidation listener among
// them) until the test ends, and waits until its cache is live.
func (a *testAPI) serve(t testing.TB) {
	t.Helper()
	runComponents(t, a)
	require.Eventually(t, a.App.Invalidation.Live, 10*time.Second, 5*time.Millisecond, "invalidation listener never connected")
}

// cacheFixture is an action with its collection and event, an admin and a
// sender of the collection.
type cacheFixture struct {
	coll, event, action int64
	admin, sender       string
	path                string // the action's path
}

func newCacheFixture(t *testing.T, api *testAPI) *cacheFixture {
	t.Helper()
	f := &cacheFixture{}
	f.coll = seedCollection(t, api.DB)
	f.event = seedEvent(t, api.DB, f.coll, "USER_INVITEUSER")
	f.admin = api.token(auth.Principal{Roles: []string{auth.RoleAdmin}, Collections: []int64{f.coll}})
	f.sender = api.token(auth.Principal{Roles: []string{auth.RoleSender}, Collections: []int64{f.coll}})
	res := api.do(http.MethodPost, fmt.Sprintf("/v1/collections/%d/actions", f.coll), f.admin, createBody(f.event, "Send Reset Email"))
	require.Equal(t, http.StatusCreated, res.Code, "body: %s", res.Raw)
	f.action = int64(res.JSON["action"].(map[string]any)["id"].(float64))
	f.path = fmt.Sprintf("/v1/collections/%d/actions/%d", f.coll, f.action)
	return f
}

// description GETs the action and returns its description and ETag.
func (f *cacheFixture) description(t *testing.T, api *testAPI) (string, string) {
	t.Helper()
	res := api.do(http.MethodGet, f.path, f.admin, nil)
	require.Equal(t, http.StatusOK, res.Code, "body: %s", res.Raw)
	return res.JSON["action"].(map[string]any)["description"].(string), res.Header.Get("ETag")
}

// sneak changes the action in the database behind every instance's back,
// as a change whose notification was lost would.
func (f *cacheFixture) sneak(t *testing.T, api *testAPI, set string) {
	t.Helper()
	require.NoError(t, api.DB.Exec("UPDATE actions SET "+set+" WHERE id = ?", f.action).Error)
}

// send posts one USER_INVITEUSER notification and returns its status and
// planned deliveries.
func (f *cacheFixture) send(t *testing.T, api *testAPI) (string, float64) {
	t.Helper()
	res := api.do(http.MethodPost, fmt.Sprintf("/v1/collections/%d/notifications", f.coll), f.sender,
		`{"notification": [{"name": "USER_INVITEUSER", "recipients": [{"email": "a@example.com"}]}]}`)
	require.Equal(t, http.StatusAccepted, res.Code, "body: %s", res.Raw)
	summary := res.JSON["notifications"].([]any)[0].(map[string]any)
	return summary["status"].(string), summary["deliveries"].(float64)
}

func TestActionCacheAcrossInstances(t *testing.T) {
	t.Parallel()
	a := newAPI(t, "postgres")
	b := a.another(t)
	a.serve(t)
	b.serve(t)
	f := newCacheFixture(t, a)
	eventually := func(cond func() bool, msg string) {
		t.Helper()
		require.Eventually(t, cond, 5*time.Second, 5*time.Millisecond, msg)
	}

	// heard waits until B has had n notifications, so that the echo of a
	// change does not evict an entry the test is about to count on.
	heard := func(n uint64) {
		t.Helper()
		eventually(func() bool { return b.App.Invalidation.Received() >= n }, "B never heard the change")
	}

	// B caches what it read: a change nobody announced stays invisible there.
	heard(1) // the create
	desc, etag := f.description(t, b)
	require.Equal(t, `"1"`, etag)
	f.sneak(t, a, "description = 'sneaked'")
	d, _ := f.description(t, b)
	require.Equal(t, desc, d, "B serves from its cache")

	// A change through A reaches B's cache.
	res := a.do(http.MethodPatch, f.path, f.admin, map[string]any{"description": "patched on A"}, "If-Match", `"1"`)
	require.Equal(t, http.StatusOK, res.Code, "body: %s", res.Raw)
	require.Equal(t, `"2"`, res.Header.Get("ETag"))
	d, etag = f.description(t, a)
	require.Equal(t, "patched on A", d, "A reads its own write at once")
	require.Equal(t, `"2"`, etag)
	eventually(func() bool {
		d, etag := f.description(t, b)
		return d == "patched on A" && etag == `"2"`
	}, "B never saw the change made on A")

	// A stale If-Match is refused even where the cache is stale: writes
	// check the database. The version moves on without a notification, so
	// B's cache still shows "2".
	heard(2)
	f.description(t, b)
	f.sneak(t, a, "version = 3")
	_, etag = f.description(t, b)
	require.Equal(t, `"2"`, etag, "B's cache is stale on purpose")
	res = b.do(http.MethodPatch, f.path, f.admin, map[string]any{"description": "patched on B"}, "If-Match", `"2"`)
	requireError(t, res, http.StatusPreconditionFailed, "FAILED_PRECONDITION", "NOACUPD0412")
	res = b.do(http.MethodDelete, f.path, f.admin, nil, "If-Match", `"2"`)
	requireError(t, res, http.StatusPreconditionFailed, "FAILED_PRECONDITION", "NOACDEL0412")

	// B's listener connection dies: B empties its cache, reads from the
	// database until it is back, and then caches again.
	pid := b.App.Invalidation.PID()
	require.NotZero(t, pid)
	var appName string
	require.NoError(t, a.DB.Raw("SELECT application_name FROM pg_stat_activity WHERE pid = ?", pid).Scan(&appName).Error)
	require.Equal(t, "notificationservice-invalidate", appName, "operators find the listener by it (docs/api.md)")
	var killed bool
	require.NoError(t, a.DB.Raw("SELECT pg_terminate_backend(?)", pid).Scan(&killed).Error)
	require.True(t, killed)
	eventually(func() bool {
		_, etag := f.description(t, b)
		return etag == `"3"`
	}, "B kept serving a stale entry after losing its listener")
	eventually(func() bool {
		return b.App.Invalidation.Live() && b.App.Invalidation.PID() != pid
	}, "B's listener never reconnected")

	// Rules: B resolves the event to the action; deactivating the event on
	// A stops B from planning deliveries for it.
	status, deliveries := f.send(t, b)
	require.Equal(t, "accepted", status)
	require.EqualValues(t, 1, deliveries)
	res = a.do(http.MethodPatch, fmt.Sprintf("/v1/collections/%d/events/%d", f.coll, f.event), f.admin, map[string]any{"status": "INACTIVE"})
	require.Equal(t, http.StatusOK, res.Code, "body: %s", res.Raw)
	eventually(func() bool {
		status, _ := f.send(t, b)
		return status == "rejected"
	}, "B kept resolving an event deactivated on A")

	// Delete on A evicts on B.
	res = a.do(http.MethodDelete, f.path, f.admin, nil, "If-Match", `"3"`)
	require.Equal(t, http.StatusOK, res.Code, "body: %s", res.Raw)
	eventually(func() bool {
		return b.do(http.MethodGet, f.path, f.admin, nil).Code == http.StatusNotFound
	}, "B kept serving a deleted action")
}

// On SQLite there is one instance and no listener: the writer's eviction
// after commit is what keeps the cache current.
func TestActionCacheSQLite(t *testing.T) {
	t.Parallel()
	api := newAPI(t, "sqlite")
	f := newCacheFixture(t, api)
	require.True(t, api.App.Invalidation.Live())

	desc, _ := f.description(t, api)
	f.sneak(t, api, "description = 'sneaked'")
	d, _ := f.description(t, api)
	require.Equal(t, desc, d, "served from the cache")

	res := api.do(http.MethodPatch, f.path, f.admin, map[string]any{"name": "renamed"}, "If-Match", `"1"`)
	require.Equal(t, http.StatusOK, res.Code, "body: %s", res.Raw)
	d, etag := f.description(t, api)
	require.Equal(t, "sneaked", d, "the patch evicted the entry")
	require.Equal(t, `"2"`, etag)

	f.sneak(t, api, "version = 3")
	res = api.do(http.MethodPatch, f.path, f.admin, map[string]any{"name": "again"}, "If-Match", `"2"`)
	requireError(t, res, http.StatusPreconditionFailed, "FAILED_PRECONDITION", "NOACUPD0412")

	status, deliveries := f.send(t, api)
	require.Equal(t, "accepted", status)
	require.EqualValues(t, 1, deliveries)
	res = api.do(http.MethodPatch, fmt.Sprintf("/v1/collections/%d/events/%d", f.coll, f.event), f.admin, map[string]any{"status": "INACTIVE"})
	require.Equal(t, http.StatusOK, res.Code, "body: %s", res.Raw)
	status, _ = f.send(t, api)
	require.Equal(t, "rejected", status, "the event change evicted the cached rule")

	res = api.do(http.MethodDelete, f.path, f.admin, nil, "If-Match", `"3"`)
	require.Equal(t, http.StatusOK, res.Code, "body: %s", res.Raw)
	require.Equal(t, http.StatusNotFound, api.do(http.MethodGet, f.path, f.admin, nil).Code)
}
