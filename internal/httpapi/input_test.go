package httpapi_test

import (
	"fmt"
	"net/http"
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
		res = api.do(http.MethodGet, "/v1/collections?name=%zz", f.root, nil)
		requireError(t, res, http.StatusBadRequest, "INVALID_ARGUMENT", "NOCOLST0400")
		require.Contains(t, details(res), "query", "a malformed query is refused, not half-read")
	})
}
