package httpapi_test

import (
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/notificationservice/notificationservice/internal/apperr"
	"github.com/notificationservice/notificationservice/internal/auth"
)

// inputFixture is a collection with an event and an email action, so every
// route has something to address.
type inputFixture struct {
	coll, event, action int64
	root                string
}

func newInputFixture(t *testing.T, api *testAPI) inputFixture {
	t.Helper()
	f := inputFixture{root: api.superAdmin()}
	f.coll = api.createCollection("input-" + t.Name())
	f.event = api.createEvent(f.coll, "USER_INVITEUSER")
	res := api.do(http.MethodPost, fmt.Sprintf("/v1/collections/%d/actions", f.coll), f.root, map[string]any{
		"name": "Invite", "eventId": f.event, "configName": "SendEmailConfig",
		"config": map[string]any{"subject": "Hi {{FNAME}}", "text": "Hi"},
	})
	require.Equal(t, http.StatusCreated, res.Code, "body: %s", res.Raw)
	f.action = jsonID(t, res, "action")
	return f
}

// TestNULInBodiesIsRefused sends a NUL in a string of every JSON body the
// admin API reads, at the top and nested (action config, locales, macros,
// map keys): PostgreSQL cannot store it (500 before the fix), SQLite stored
// it. Both must answer 400 naming the field.
func TestNULInBodiesIsRefused(t *testing.T) {
	t.Parallel()
	eachDialect(t, func(t *testing.T, api *testAPI) {
		f := newInputFixture(t, api)
		coll := collectionPath(f.coll)
		action := fmt.Sprintf("%s/actions/%d", coll, f.action)
		for _, tc := range []struct {
			name, method, path, body, field string
		}{
			{"create collection", http.MethodPost, "/v1/collections", `{"name":"a\u0000b"}`, "name"},
			{"update collection", http.MethodPatch, coll, `{"description":"x\u0000"}`, "description"},
			{"collection sender", http.MethodPatch, coll, `{"defaultFromName":"\u0000"}`, "defaultFromName"},
			{"create event", http.MethodPost, eventsPath(f.coll), `{"name":"E\u0000"}`, "name"},
			{"update event", http.MethodPatch, eventPath(f.coll, f.event), `{"description":"\u0000"}`, "description"},
			{"action config", http.MethodPost, coll + "/actions",
				fmt.Sprintf(`{"name":"A","eventId":%d,"configName":"SendEmailConfig","config":{"subject":"a\u0000"}}`, f.event), "config.subject"},
			{"action locale", http.MethodPatch, action, `{"config":{"subject":"s","locales":{"fr":{"subject":"\u0000"}}}}`, "config.locales.fr.subject"},
			{"action locale key", http.MethodPatch, action, `{"config":{"subject":"s","locales":{"f\u0000":{"subject":"x"}}}}`, "config.locales.f\x00"},
			{"action template", http.MethodPatch, action, `{"template":"d-\u0000"}`, "template"},
			{"preview macro", http.MethodPost, action + "/preview", `{"macros":{"FNAME":"\u0000"}}`, "macros.FNAME"},
			{"replay detailType", http.MethodPost, "/v1/envelopes/replay", `{"since":1,"detailType":"\u0000"}`, "detailType"},
			{"suppression reason", http.MethodPost, coll + "/suppressions", `{"address":"a@example.com","channel":"email","reason":"\u0000"}`, "reason"},
			{"suppression address", http.MethodPost, coll + "/suppressions", `{"address":"a\u0000@example.com","channel":"email"}`, "address"},
			{"send recipient", http.MethodPost, coll + "/notifications",
				`{"notification":[{"name":"USER_INVITEUSER","recipients":[{"email":"a@example.com","macros":{"FNAME":"\u0000"}}]}]}`,
				"notification[0].recipients[0]"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				res := api.do(tc.method, tc.path, f.root, tc.body)
				require.Equal(t, http.StatusBadRequest, res.Code, "body: %s", res.Raw)
				require.Equal(t, "INVALID_ARGUMENT", res.JSON["status"])
				require.Equal(t, apperr.TextReason, details(res)[tc.field], "body: %s", res.Raw)
			})
		}
		var n int64
		require.NoError(t, api.DB.Table("collections").Count(&n).Error)
		require.EqualValues(t, 1, n, "nothing was created")
	})
}

// TestBadTextInParamsIsRefused sends NUL and invalid UTF-8 in a query
// parameter on every /v1 route of the route table (so a route added later
// is covered), and in the one string path parameter. GET
// /v1/collections?name=%00, which any token may send, was a 500 on
// PostgreSQL.
func TestBadTextInParamsIsRefused(t *testing.T) {
	t.Parallel()
	eachDialect(t, func(t *testing.T, api *testAPI) {
		f := newInputFixture(t, api)
		viewer := api.token(auth.Principal{UserID: "5", Roles: []string{auth.RoleViewer}, Collections: []int64{f.coll}})
		res := api.do(http.MethodGet, "/v1/collections?name=%00", viewer, nil)
		requireError(t, res, http.StatusBadRequest, "INVALID_ARGUMENT", "NOCOLST0400")
		require.Equal(t, apperr.TextReason, details(res)["name"])

		for _, rt := range api.App.HTTP.Routes() {
			if !strings.HasPrefix(rt.Path, "/v1/") {
				continue
			}
			path := strings.NewReplacer(":collectionId", fmt.Sprint(f.coll), ":eventId", fmt.Sprint(f.event),
				":actionId", fmt.Sprint(f.action), ":notificationId", "1", ":envelopeId", "e1").Replace(rt.Path)
			for _, q := range []struct{ query, field string }{
				{"name=%00", "name"}, {"name=%FF", "name"}, {"status=ok&n%00me=x", "n\x00me"},
			} {
				t.Run(rt.Method+" "+rt.Path+"?"+q.query, func(t *testing.T) {
					res := api.do(rt.Method, path+"?"+q.query, f.root, nil)
					require.Equal(t, http.StatusBadRequest, res.Code, "body: %s", res.Raw)
					require.Equal(t, "INVALID_ARGUMENT", res.JSON["status"])
					require.Equal(t, apperr.TextReason, details(res)[q.field], "body: %s", res.Raw)
				})
			}
		}
		for _, p := range []string{"/v1/envelopes/a%00b", "/v1/envelopes/%FF"} {
			res := api.do(http.MethodGet, p, f.root, nil)
			requireError(t, res, http.StatusBadRequest, "INVALID_ARGUMENT", "NOOBGET0400")
			require.Equal(t, apperr.TextReason, details(res)["envelopeId"])
		}
		for _, m := range []string{http.MethodGet, http.MethodDelete} {
			for _, p := range []string{"a%00b", "%FF"} {
				res := api.do(m, collectionPath(f.coll)+"/suppressions/"+p, f.root, nil)
				require.Equal(t, http.StatusBadRequest, res.Code, "body: %s", res.Raw)
				require.Equal(t, apperr.TextReason, details(res)["address"], "body: %s", res.Raw)
			}
		}
		res = api.do(http.MethodGet, "/v1/collections?name=%zz", f.root, nil)
		requireError(t, res, http.StatusBadRequest, "INVALID_ARGUMENT", "NOCOLST0400")
		require.Contains(t, details(res), "query", "a malformed query is refused, not half-read")
	})
}

// TestListRoutesRefuseUnknownQuery sends a misspelt filter to every list
// route of the route table: each must refuse it with 400 naming it, rather
// than list everything.
func TestListRoutesRefuseUnknownQuery(t *testing.T) {
	t.Parallel()
	api := newAPI(t, "sqlite")
	f := newInputFixture(t, api)
	notLists := []string{"/v1/envelopes/stats", "/v1/collections/:collectionId/recipients/:recipientId/preferences"}
	hook := addWebhook(t, api, f.coll)
	var lists []string
	for _, rt := range api.App.HTTP.Routes() {
		if rt.Method != http.MethodGet || !strings.HasPrefix(rt.Path, "/v1/") || strings.Contains(rt.Path[strings.LastIndex(rt.Path, "/"):], ":") ||
			slices.Contains(notLists, rt.Path) {
			continue
		}
		lists = append(lists, rt.Path)
		path := strings.NewReplacer(":collectionId", fmt.Sprint(f.coll), ":webhookId", fmt.Sprint(hook)).Replace(rt.Path) + "?"
		if rt.Path == "/v1/feed" {
			path += "consumer=probe&" // the feed's one required parameter
		}
		t.Run(rt.Path, func(t *testing.T) {
			res := api.do(http.MethodGet, path+"stauts=sent&limit=5", f.root, nil)
			require.Equal(t, http.StatusBadRequest, res.Code, "body: %s", res.Raw)
			require.Equal(t, "INVALID_ARGUMENT", res.JSON["status"])
			require.Contains(t, details(res), "stauts", "body: %s", res.Raw)
			require.NotContains(t, details(res), "limit")
			res = api.do(http.MethodGet, path+"limit=5", f.root, nil)
			require.Equal(t, http.StatusOK, res.Code, "body: %s", res.Raw)
		})
	}
	for _, want := range []string{"/v1/collections", "/v1/collections/:collectionId/events", "/v1/collections/:collectionId/actions",
		"/v1/collections/:collectionId/notifications", "/v1/collections/:collectionId/deliveries", "/v1/envelopes"} {
		require.Contains(t, lists, want)
	}
}

// TestWrongMethodIs405 asks a route for a method it does not take: 405 with
// Allow and the documented error body, not 400.
func TestWrongMethodIs405(t *testing.T) {
	t.Parallel()
	api := newAPI(t, "sqlite")
	for path, allow := range map[string][]string{
		"/v1/collections":   {http.MethodGet, http.MethodPost},
		"/v1/collections/1": {http.MethodGet, http.MethodPatch, http.MethodDelete},
		"/v1/envelopes":     {http.MethodGet},
	} {
		res := api.do(http.MethodPut, path, api.superAdmin(), nil)
		requireError(t, res, http.StatusMethodNotAllowed, "METHOD_NOT_ALLOWED", "NOGEN0405")
		got := strings.Split(res.Header.Get("Allow"), ", ")
		require.ElementsMatch(t, allow, got, "Allow on %s", path)
	}
}

// TestReplaySinceZero replays from the beginning with since 0, which the
// schema allows; since stays required, and until 0 (before the epoch) is
// still refused.
func TestReplaySinceZero(t *testing.T) {
	t.Parallel()
	api := newAPI(t, "sqlite")
	newInputFixture(t, api) // three changes, three envelopes
	root := api.superAdmin()
	res := api.do(http.MethodPost, "/v1/envelopes/replay", root, `{"since": 0}`)
	require.Equal(t, http.StatusAccepted, res.Code, "body: %s", res.Raw)
	require.EqualValues(t, 3, res.JSON["replay"].(map[string]any)["replayed"])
	res = api.do(http.MethodPost, "/v1/envelopes/replay", root, `{"since": "1970-01-01T00:00:00Z"}`)
	require.Equal(t, http.StatusAccepted, res.Code, "body: %s", res.Raw)

	for body, field := range map[string]string{
		`{}`:                       "since",
		`{"since": null}`:          "since",
		`{"since": -1}`:            "since",
		`{"since": 0, "until": 0}`: "until",
	} {
		res := api.do(http.MethodPost, "/v1/envelopes/replay", root, body)
		requireError(t, res, http.StatusBadRequest, "INVALID_ARGUMENT", "NOOBRPL0400")
		require.Contains(t, details(res), field, "%s: %s", body, res.Raw)
	}
	res = api.do(http.MethodGet, "/v1/envelopes?since=0", root, nil)
	require.Equal(t, http.StatusOK, res.Code, "body: %s", res.Raw)
	require.Len(t, res.JSON["envelopes"], 3)
}

// TestInvalidIdempotencyKeyIs400 sends keys HTTP allows but a text column
// cannot hold: a 500 on PostgreSQL (and a stored key on SQLite) before.
func TestInvalidIdempotencyKeyIs400(t *testing.T) {
	t.Parallel()
	eachDialect(t, func(t *testing.T, api *testAPI) {
		f := newInputFixture(t, api)
		body := `{"notification":[{"name":"USER_INVITEUSER","recipients":[{"email":"a@example.com"}]}]}`
		path := collectionPath(f.coll) + "/notifications"
		for _, key := range []string{"k\xff", "caf\xc3", "a\x00b"} {
			res := api.do(http.MethodPost, path, f.root, body, "Idempotency-Key", key)
			requireError(t, res, http.StatusBadRequest, "INVALID_ARGUMENT", "NONTSND0400")
			require.Equal(t, apperr.TextReason, details(res)["Idempotency-Key"], "key %q", key)
		}
		res := api.do(http.MethodPost, path, f.root, body, "Idempotency-Key", "café-1")
		require.Equal(t, http.StatusAccepted, res.Code, "a UTF-8 key is fine: %s", res.Raw)
		var n int64
		require.NoError(t, api.DB.Table("notifications").Count(&n).Error)
		require.EqualValues(t, 1, n)
	})
}
