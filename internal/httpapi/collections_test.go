package httpapi_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/notificationservice/notificationservice/internal/auth"
	"github.com/notificationservice/notificationservice/internal/config"
	"github.com/notificationservice/notificationservice/internal/outbox"
)

// createCollection creates a collection as a super admin and returns its id.
func (a *testAPI) createCollection(name string) int64 {
	a.t.Helper()
	res := a.do(http.MethodPost, "/v1/collections", a.superAdmin(), map[string]any{"name": name})
	require.Equal(a.t, http.StatusCreated, res.Code, "body: %s", res.Raw)
	return jsonID(a.t, res, "collection")
}

// createEvent creates an event as a super admin and returns its id.
func (a *testAPI) createEvent(collectionID int64, name string) int64 {
	a.t.Helper()
	res := a.do(http.MethodPost, eventsPath(collectionID), a.superAdmin(), map[string]any{"name": name})
	require.Equal(a.t, http.StatusCreated, res.Code, "body: %s", res.Raw)
	return jsonID(a.t, res, "event")
}

// addAction inserts an action row directly, so these tests do not depend on
// the actions routes.
func (a *testAPI) addAction(collectionID, eventID int64, name string) int64 {
	a.t.Helper()
	require.NoError(a.t, a.DB.Table("actions").Create(map[string]any{
		"collection_id": collectionID, "event_id": eventID, "name": name, "status": "ACTIVE",
		"config_name": "SendEmailConfig", "created_time": 1, "updated_time": 1,
	}).Error)
	var id int64
	require.NoError(a.t, a.DB.Table("actions").Select("id").Where("event_id = ? AND name = ?", eventID, name).Scan(&id).Error)
	return id
}

// envelopes returns the outbox rows' detail types and details, oldest first.
func (a *testAPI) envelopes() ([]string, []outbox.Detail) {
	a.t.Helper()
	var rows []outbox.Row
	require.NoError(a.t, a.DB.Order("id").Find(&rows).Error)
	types := make([]string, 0, len(rows))
	details := make([]outbox.Detail, 0, len(rows))
	for _, r := range rows {
		var d outbox.Detail
		require.NoError(a.t, json.Unmarshal([]byte(r.Detail), &d))
		types = append(types, r.DetailType)
		details = append(details, d)
	}
	return types, details
}

func collectionPath(id int64) string { return fmt.Sprintf("/v1/collections/%d", id) }
func eventsPath(collectionID int64) string {
	return fmt.Sprintf("/v1/collections/%d/events", collectionID)
}
func eventPath(collectionID, id int64) string {
	return fmt.Sprintf("/v1/collections/%d/events/%d", collectionID, id)
}

// entity returns the object under key in a success body.
func entity(t testing.TB, res response, key string) map[string]any {
	t.Helper()
	m, ok := res.JSON[key].(map[string]any)
	require.True(t, ok, "no %q object in %s", key, res.Raw)
	return m
}

func jsonID(t testing.TB, res response, key string) int64 {
	t.Helper()
	id, ok := entity(t, res, key)["id"].(float64)
	require.True(t, ok, "%s.id is not a number: %s", key, res.Raw)
	return int64(id)
}

func keys(m map[string]any) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}

func TestCollectionRoutes(t *testing.T) {
	t.Parallel()
	eachDialect(t, func(t *testing.T, api *testAPI) {
		su := api.superAdmin()

		res := api.do(http.MethodPost, "/v1/collections", su, map[string]any{"name": "Shop", "description": "the shop"})
		require.Equal(t, http.StatusCreated, res.Code, "body: %s", res.Raw)
		require.Equal(t, `"1"`, res.Header.Get("ETag"))
		col := entity(t, res, "collection")
		require.ElementsMatch(t, []string{"id", "name", "description", "status", "defaultFromEmail", "defaultFromName", "timezone", "quietHours", "tenant", "createdTime", "updatedTime"}, keys(col))
		require.Equal(t, "Shop", col["name"])
		require.Equal(t, "ACTIVE", col["status"])
		require.Greater(t, col["createdTime"].(float64), 1.7e12, "epoch milliseconds")
		id := int64(col["id"].(float64))
		require.Equal(t, collectionPath(id), res.Header.Get("Location"))

		res = api.do(http.MethodGet, collectionPath(id), su, nil)
		require.Equal(t, http.StatusOK, res.Code, "body: %s", res.Raw)
		require.Equal(t, `"1"`, res.Header.Get("ETag"))
		require.Equal(t, col, entity(t, res, "collection"))

		res = api.do(http.MethodGet, "/v1/collections", su, nil)
		require.Equal(t, http.StatusOK, res.Code, "body: %s", res.Raw)
		require.Equal(t, []any{col}, res.JSON["collections"])
		require.Equal(t, "", res.JSON["nextCursor"])

		res = api.do(http.MethodPatch, collectionPath(id), su, map[string]any{"status": "INACTIVE"}, "If-Match", `"1"`)
		require.Equal(t, http.StatusOK, res.Code, "body: %s", res.Raw)
		require.Equal(t, `"2"`, res.Header.Get("ETag"))
		require.Equal(t, "INACTIVE", entity(t, res, "collection")["status"])
		require.Equal(t, "the shop", entity(t, res, "collection")["description"])

		res = api.do(http.MethodPatch, collectionPath(id), su, map[string]any{"status": "ACTIVE"}, "If-Match", `"1"`)
		requireError(t, res, http.StatusPreconditionFailed, "FAILED_PRECONDITION", "NOCOUPD0412")
		res = api.do(http.MethodDelete, collectionPath(id), su, nil, "If-Match", `"1"`)
		requireError(t, res, http.StatusPreconditionFailed, "FAILED_PRECONDITION", "NOCODEL0412")

		eid := api.createEvent(id, "USER_INVITEUSER")
		res = api.do(http.MethodDelete, collectionPath(id), su, nil)
		requireError(t, res, http.StatusConflict, "FAILED_PRECONDITION", "NOCODEL0409")
		require.Contains(t, details(res)[fmt.Sprintf("events/%d", eid)], "USER_INVITEUSER")

		res = api.do(http.MethodDelete, eventPath(id, eid), su, nil)
		require.Equal(t, http.StatusOK, res.Code, "body: %s", res.Raw)
		res = api.do(http.MethodDelete, collectionPath(id), su, nil, "If-Match", `"2"`)
		require.Equal(t, http.StatusOK, res.Code, "body: %s", res.Raw)
		require.Equal(t, "NOCODEL0000", res.JSON["responseCode"])
		require.Equal(t, "Collection is deleted successfully", res.JSON["responseMessage"])
		_, err := strconv.ParseInt(res.JSON["timeStamp"].(string), 10, 64)
		require.NoError(t, err, "timeStamp is epoch ms as a string")

		res = api.do(http.MethodGet, collectionPath(id), su, nil)
		requireError(t, res, http.StatusNotFound, "NOT_FOUND", "NOCOGET0404")

		types, _ := api.envelopes()
		require.Equal(t, []string{
			outbox.CollectionCreate, outbox.CollectionUpdate, outbox.EventCreate, outbox.EventDelete, outbox.CollectionDelete,
		}, types)
	})
}

func TestEventRoutes(t *testing.T) {
	t.Parallel()
	eachDialect(t, func(t *testing.T, api *testAPI) {
		cid := api.createCollection("Shop")
		admin := api.token(auth.Principal{UserID: "9", Roles: []string{auth.RoleAdmin}, Collections: []int64{cid}})

		res := api.do(http.MethodPost, eventsPath(cid), admin, map[string]any{
			"name": "ExternalEvents1709786366982", "description": "Events description",
		}, "X-Request-ID", "req-1")
		require.Equal(t, http.StatusCreated, res.Code, "body: %s", res.Raw)
		require.Equal(t, `"1"`, res.Header.Get("ETag"))
		ev := entity(t, res, "event")
		// The catalogue's event payload, key for key and in its order.
		id := int64(ev["id"].(float64))
		created := int64(ev["createdTime"].(float64))
		require.Equal(t, eventPath(cid, id), res.Header.Get("Location"))
		require.Equal(t, fmt.Sprintf(`{"event":{"id":%d,"collectionId":%d,"name":"ExternalEvents1709786366982","description":"Events description","status":"ACTIVE","updatedTime":%d,"createdTime":%d}}`,
			id, cid, created, created), string(res.Raw))

		res = api.do(http.MethodPost, eventsPath(cid), admin, map[string]any{"name": "ExternalEvents1709786366982"})
		requireError(t, res, http.StatusConflict, "ALREADY_EXISTS", "NOEVCRT0409")
		require.Contains(t, details(res), "name")

		res = api.do(http.MethodGet, eventPath(cid, id), admin, nil)
		require.Equal(t, http.StatusOK, res.Code, "body: %s", res.Raw)
		require.Equal(t, `"1"`, res.Header.Get("ETag"))
		require.Equal(t, ev, entity(t, res, "event"))

		res = api.do(http.MethodGet, eventsPath(cid), admin, nil)
		require.Equal(t, http.StatusOK, res.Code, "body: %s", res.Raw)
		require.Equal(t, []any{ev}, res.JSON["events"])

		res = api.do(http.MethodPatch, eventPath(cid, id), admin, map[string]any{"name": "USER_INVITEUSER", "status": "INACTIVE"}, "If-Match", `"1"`)
		require.Equal(t, http.StatusOK, res.Code, "body: %s", res.Raw)
		require.Equal(t, `"2"`, res.Header.Get("ETag"))
		up := entity(t, res, "event")
		require.Equal(t, "USER_INVITEUSER", up["name"])
		require.Equal(t, "INACTIVE", up["status"])
		require.Equal(t, ev["createdTime"], up["createdTime"])

		res = api.do(http.MethodPatch, eventPath(cid, id), admin, map[string]any{"status": "ACTIVE"}, "If-Match", `"1"`)
		requireError(t, res, http.StatusPreconditionFailed, "FAILED_PRECONDITION", "NOEVUPD0412")
		require.Equal(t, `the current version is "2"`, details(res)["If-Match"])
		res = api.do(http.MethodDelete, eventPath(cid, id), admin, nil, "If-Match", `W/"1"`)
		requireError(t, res, http.StatusPreconditionFailed, "FAILED_PRECONDITION", "NOEVDEL0412")

		aid := api.addAction(cid, id, "Send Reset Email")
		res = api.do(http.MethodDelete, eventPath(cid, id), admin, nil, "If-Match", `"2"`)
		requireError(t, res, http.StatusConflict, "FAILED_PRECONDITION", "NOEVDEL0409")
		require.Equal(t, map[string]string{fmt.Sprintf("actions/%d", aid): `"Send Reset Email" still depends on it`}, details(res))

		require.NoError(t, api.DB.Exec("DELETE FROM actions WHERE id = ?", aid).Error)
		res = api.do(http.MethodDelete, eventPath(cid, id), admin, nil, "If-Match", `"2"`)
		require.Equal(t, http.StatusOK, res.Code, "body: %s", res.Raw)
		require.Equal(t, "NOEVDEL0000", res.JSON["responseCode"])
		require.Equal(t, "Event is deleted successfully", res.JSON["responseMessage"])
		deleted := res
		res = api.do(http.MethodGet, eventPath(cid, id), admin, nil)
		requireError(t, res, http.StatusNotFound, "NOT_FOUND", "NOEVGET0404")

		types, details := api.envelopes()
		require.Equal(t, []string{outbox.CollectionCreate, outbox.EventCreate, outbox.EventUpdate, outbox.EventDelete}, types)
		for _, d := range details[1:] {
			require.Equal(t, "9", d.UserID, "the admin who made the change")
			require.Equal(t, []string{auth.RoleAdmin}, d.Roles)
			require.Equal(t, strconv.FormatInt(cid, 10), d.CollectionID)
			require.Equal(t, strconv.FormatInt(id, 10), d.ID)
		}
		require.JSONEq(t, fmt.Sprintf(`{"responseCode":"NOEVDEL0000","responseMessage":"Event is deleted successfully","timeStamp":%q}`,
			deleted.JSON["timeStamp"]), string(details[3].Payload), "the envelope carries the response's delete payload")
	})
}

func TestCollectionRoutesRecordOnBehalfOf(t *testing.T) {
	t.Parallel()
	api := newAPI(t, "sqlite")
	res := api.do(http.MethodPost, "/v1/collections", api.superAdmin(), map[string]any{"name": "Shop"}, "X-Act-On-Behalf-Of-User", "77")
	require.Equal(t, http.StatusCreated, res.Code, "body: %s", res.Raw)
	_, details := api.envelopes()
	require.Len(t, details, 1)
	require.EqualValues(t, 77, details[0].ActOnBehalfOfUser)
	require.Equal(t, "1", details[0].UserID)
	require.Equal(t, "CSR", details[0].Channel)
}

func TestCollectionRoutesValidation(t *testing.T) {
	t.Parallel()
	api := newAPI(t, "sqlite")
	su := api.superAdmin()
	cid := api.createCollection("Shop")
	eid := api.createEvent(cid, "E")
	long := strings.Repeat("n", 129)

	cases := []struct {
		method, path string
		body         any
		headers      []string
		code         string
		fields       []string
	}{
		{http.MethodPost, "/v1/collections", map[string]any{"description": "no name"}, nil, "NOCOCRT0400", []string{"name"}},
		{http.MethodPost, "/v1/collections", map[string]any{"name": long, "status": "ON"}, nil, "NOCOCRT0400", []string{"name", "status"}},
		{http.MethodGet, "/v1/collections?limit=0", nil, nil, "NOCOLST0400", []string{"limit"}},
		{http.MethodGet, "/v1/collections?cursor=nope", nil, nil, "NOCOLST0400", []string{"cursor"}},
		{http.MethodGet, "/v1/collections?status=on", nil, nil, "NOCOLST0400", []string{"status"}},
		{http.MethodGet, "/v1/collections?stauts=ACTIVE", nil, nil, "NOCOLST0400", []string{"stauts"}},
		{http.MethodGet, eventsPath(cid) + "?eventName=E", nil, nil, "NOEVLST0400", []string{"eventName"}},
		{http.MethodGet, "/v1/collections/abc", nil, nil, "NOCOGET0400", []string{"collectionId"}},
		{http.MethodPatch, collectionPath(cid), map[string]any{}, nil, "NOCOUPD0400", []string{"body"}},
		{http.MethodPatch, collectionPath(cid), map[string]any{"name": ""}, nil, "NOCOUPD0400", []string{"name"}},
		{http.MethodPatch, collectionPath(cid), map[string]any{"status": "ACTIVE"}, []string{"If-Match", "yesterday"}, "NOCOUPD0400", []string{"If-Match"}},
		{http.MethodDelete, collectionPath(cid), nil, []string{"If-Match", `"0"`}, "NOCODEL0400", []string{"If-Match"}},
		{http.MethodPost, eventsPath(cid), map[string]any{"name": "X", "description": strings.Repeat("d", 1025)}, nil, "NOEVCRT0400", []string{"description"}},
		{http.MethodPost, eventsPath(cid), map[string]any{"name": " X "}, nil, "NOEVCRT0400", []string{"name"}},
		{http.MethodGet, eventsPath(cid) + "?limit=501", nil, nil, "NOEVLST0400", []string{"limit"}},
		{http.MethodGet, eventsPath(cid) + "?status=DELETED", nil, nil, "NOEVLST0400", []string{"status"}},
		{http.MethodGet, eventsPath(cid) + "/-3", nil, nil, "NOEVGET0400", []string{"eventId"}},
		{http.MethodPatch, eventPath(cid, eid), map[string]any{}, nil, "NOEVUPD0400", []string{"body"}},
		{http.MethodPatch, eventPath(cid, eid), map[string]any{"status": "GONE", "description": strings.Repeat("d", 1025)}, nil, "NOEVUPD0400", []string{"status", "description"}},
		{http.MethodDelete, eventPath(cid, eid), nil, []string{"If-Match", "*x"}, "NOEVDEL0400", []string{"If-Match"}},
	}
	for _, tc := range cases {
		t.Run(tc.method+" "+tc.path, func(t *testing.T) {
			res := api.do(tc.method, tc.path, su, tc.body, tc.headers...)
			requireError(t, res, http.StatusBadRequest, "INVALID_ARGUMENT", tc.code)
			for _, f := range tc.fields {
				require.Contains(t, details(res), f, "body: %s", res.Raw)
			}
			require.Len(t, details(res), len(tc.fields), "body: %s", res.Raw)
		})
	}
	types, _ := api.envelopes()
	require.Len(t, types, 2, "no envelope for a refused request")
}

func TestCollectionRoutesNotFound(t *testing.T) {
	t.Parallel()
	eachDialect(t, func(t *testing.T, api *testAPI) {
		su := api.superAdmin()
		shop := api.createCollection("Shop")
		blog := api.createCollection("Blog")
		eid := api.createEvent(shop, "E")
		patch := map[string]any{"description": "x"}
		cases := []struct {
			method, path string
			body         any
			code         string
		}{
			{http.MethodGet, collectionPath(9999), nil, "NOCOGET0404"},
			{http.MethodPatch, collectionPath(9999), patch, "NOCOUPD0404"},
			{http.MethodDelete, collectionPath(9999), nil, "NOCODEL0404"},
			{http.MethodPost, eventsPath(9999), map[string]any{"name": "E"}, "NOEVCRT0404"},
			{http.MethodGet, eventsPath(9999), nil, "NOEVLST0404"},
			// The event exists, in another collection.
			{http.MethodGet, eventPath(blog, eid), nil, "NOEVGET0404"},
			{http.MethodPatch, eventPath(blog, eid), patch, "NOEVUPD0404"},
			{http.MethodDelete, eventPath(blog, eid), nil, "NOEVDEL0404"},
			{http.MethodGet, eventPath(shop, 9999), nil, "NOEVGET0404"},
		}
		for _, tc := range cases {
			res := api.do(tc.method, tc.path, su, tc.body)
			requireError(t, res, http.StatusNotFound, "NOT_FOUND", tc.code)
		}
		res := api.do(http.MethodGet, eventPath(shop, eid), su, nil)
		require.Equal(t, http.StatusOK, res.Code, "untouched: %s", res.Raw)
		require.Equal(t, `"1"`, res.Header.Get("ETag"))
	})
}

func TestCollectionRoutesConflicts(t *testing.T) {
	t.Parallel()
	api := newAPI(t, "postgres")
	su := api.superAdmin()
	shop := api.createCollection("Shop")
	api.createCollection("Blog")
	api.createEvent(shop, "USER_INVITEUSER")
	other := api.createEvent(shop, "USER_RESET")

	res := api.do(http.MethodPost, "/v1/collections", su, map[string]any{"name": "Shop"})
	requireError(t, res, http.StatusConflict, "ALREADY_EXISTS", "NOCOCRT0409")
	require.Contains(t, details(res), "name")
	res = api.do(http.MethodPatch, collectionPath(shop), su, map[string]any{"name": "Blog"})
	requireError(t, res, http.StatusConflict, "ALREADY_EXISTS", "NOCOUPD0409")
	require.Contains(t, details(res), "name")
	res = api.do(http.MethodPatch, eventPath(shop, other), su, map[string]any{"name": "USER_INVITEUSER"})
	requireError(t, res, http.StatusConflict, "ALREADY_EXISTS", "NOEVUPD0409")
	require.Contains(t, details(res), "name")
	require.Contains(t, res.JSON["responseMessage"], "USER_INVITEUSER")
}

func TestCollectionRoutesForbidden(t *testing.T) {
	t.Parallel()
	api := newAPI(t, "sqlite")
	cid := api.createCollection("Shop")
	eid := api.createEvent(cid, "E")
	admin := api.token(auth.Principal{Roles: []string{auth.RoleAdmin}, Collections: []int64{cid}})
	viewer := api.token(auth.Principal{Roles: []string{auth.RoleViewer}, Collections: []int64{cid}})

	res := api.do(http.MethodPost, "/v1/collections", admin, map[string]any{"name": "Mine"})
	requireError(t, res, http.StatusForbidden, "PERMISSION_DENIED", "NOCOCRT0403")
	res = api.do(http.MethodPatch, collectionPath(cid), viewer, map[string]any{"name": "X"})
	requireError(t, res, http.StatusForbidden, "PERMISSION_DENIED", "NOCOUPD0403")
	res = api.do(http.MethodPost, eventsPath(cid), viewer, map[string]any{"name": "X"})
	requireError(t, res, http.StatusForbidden, "PERMISSION_DENIED", "NOEVCRT0403")
	res = api.do(http.MethodDelete, eventPath(cid, eid), viewer, nil)
	requireError(t, res, http.StatusForbidden, "PERMISSION_DENIED", "NOEVDEL0403")

	// A viewer reads, and an admin manages, its own collection.
	res = api.do(http.MethodGet, eventPath(cid, eid), viewer, nil)
	require.Equal(t, http.StatusOK, res.Code, "body: %s", res.Raw)
	res = api.do(http.MethodPatch, eventPath(cid, eid), admin, map[string]any{"description": "mine"})
	require.Equal(t, http.StatusOK, res.Code, "body: %s", res.Raw)
}

func TestListRoutesPaginate(t *testing.T) {
	t.Parallel()
	eachDialect(t, func(t *testing.T, api *testAPI) {
		su := api.superAdmin()
		cid := api.createCollection("Shop")
		var want []float64
		for i := range 5 {
			body := map[string]any{"name": fmt.Sprintf("E%d", i)}
			if i%2 == 0 {
				body["status"] = "INACTIVE"
			}
			res := api.do(http.MethodPost, eventsPath(cid), su, body)
			require.Equal(t, http.StatusCreated, res.Code, "body: %s", res.Raw)
			want = append(want, entity(t, res, "event")["id"].(float64))
		}

		var got []float64
		path := eventsPath(cid) + "?limit=2"
		pages := 1
		for ; ; pages++ {
			require.LessOrEqual(t, pages, 5, "pagination does not end")
			res := api.do(http.MethodGet, path, su, nil)
			require.Equal(t, http.StatusOK, res.Code, "body: %s", res.Raw)
			for _, e := range res.JSON["events"].([]any) {
				got = append(got, e.(map[string]any)["id"].(float64))
			}
			next := res.JSON["nextCursor"].(string)
			if next == "" {
				break
			}
			path = eventsPath(cid) + "?limit=2&cursor=" + url.QueryEscape(next)
		}
		require.Equal(t, want, got)
		require.Equal(t, 3, pages, "5 rows at 2 a page: the third page is the last and says so")

		// A page that ends exactly at the last row still says it is the last.
		res := api.do(http.MethodGet, eventsPath(cid)+"?limit=5", su, nil)
		require.Len(t, res.JSON["events"], 5)
		require.Equal(t, "", res.JSON["nextCursor"])

		res = api.do(http.MethodGet, eventsPath(cid)+"?status=INACTIVE", su, nil)
		require.Equal(t, http.StatusOK, res.Code, "body: %s", res.Raw)
		require.Len(t, res.JSON["events"], 3)
		res = api.do(http.MethodGet, eventsPath(cid)+"?name=E3", su, nil)
		require.Equal(t, http.StatusOK, res.Code, "body: %s", res.Raw)
		require.Len(t, res.JSON["events"], 1)
		require.Equal(t, want[3], res.JSON["events"].([]any)[0].(map[string]any)["id"])

		// A non-super-admin lists only the collections in its token.
		other := api.createCollection("Blog")
		api.createCollection("Hidden")
		viewer := api.token(auth.Principal{Roles: []string{auth.RoleViewer}, Collections: []int64{cid, other}})
		res = api.do(http.MethodGet, "/v1/collections?limit=1", viewer, nil)
		require.Equal(t, http.StatusOK, res.Code, "body: %s", res.Raw)
		require.Len(t, res.JSON["collections"], 1)
		next := res.JSON["nextCursor"].(string)
		require.NotEmpty(t, next)
		res = api.do(http.MethodGet, "/v1/collections?limit=5&cursor="+url.QueryEscape(next), viewer, nil)
		require.Equal(t, http.StatusOK, res.Code, "body: %s", res.Raw)
		list := res.JSON["collections"].([]any)
		require.Len(t, list, 1)
		require.Equal(t, "Blog", list[0].(map[string]any)["name"])
		require.Equal(t, "", res.JSON["nextCursor"])
		res = api.do(http.MethodGet, "/v1/collections", api.superAdmin(), nil)
		require.Len(t, res.JSON["collections"], 3)
	})
}

// TestBadBodies sends every kind of broken body to every route that takes
// one: each is 400 INVALID_ARGUMENT with a detail, never a 500.
func TestBadBodies(t *testing.T) {
	t.Parallel()
	api := newAPI(t, "sqlite", func(c *config.Config) { c.HTTP.MaxBodyBytes = 256 })
	cid := api.createCollection("Shop")
	eid := api.createEvent(cid, "E")
	routes := []struct{ method, path, prefix string }{
		{http.MethodPost, "/v1/collections", "NOCOCRT"},
		{http.MethodPatch, collectionPath(cid), "NOCOUPD"},
		{http.MethodPost, eventsPath(cid), "NOEVCRT"},
		{http.MethodPatch, eventPath(cid, eid), "NOEVUPD"},
	}
	bodies := []struct {
		name, body, field string
	}{
		{"malformed", `{"name": "x"`, "body"},
		{"not json", `name=x`, "body"},
		{"unknown field", `{"name": "x", "colour": "red"}`, "colour"},
		{"wrong type", `{"name": 5}`, "name"},
		{"wrong type status", `{"name": "x", "status": true}`, "status"},
		{"array", `[{"name": "x"}]`, "body"},
		{"trailing data", `{"name": "x"} {}`, "body"},
		{"empty", ``, "body"},
		{"oversized", `{"name": "x", "description": "` + strings.Repeat("d", 300) + `"}`, "body"},
	}
	for _, rt := range routes {
		for _, b := range bodies {
			t.Run(rt.method+" "+rt.path+" "+b.name, func(t *testing.T) {
				res := api.do(rt.method, rt.path, api.superAdmin(), b.body)
				requireError(t, res, http.StatusBadRequest, "INVALID_ARGUMENT", rt.prefix+"0400")
				require.Contains(t, details(res), b.field, "body: %s", res.Raw)
			})
		}
	}
	types, _ := api.envelopes()
	require.Len(t, types, 2, "no envelope for a refused request")
}
