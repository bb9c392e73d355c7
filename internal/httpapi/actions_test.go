package httpapi_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"gorm.io/gorm"

	"github.com/notificationservice/notificationservice/internal/auth"
	"github.com/notificationservice/notificationservice/internal/outbox"
	"github.com/notificationservice/notificationservice/internal/testdb"
)

// The collections and events actions hang from are inserted directly: these
// tests are about the action routes only.
type collectionRow struct {
	ID          int64 `gorm:"primaryKey"`
	Name        string
	Status      string
	CreatedTime int64
	UpdatedTime int64
}

func (collectionRow) TableName() string { return "collections" }

type eventRow struct {
	ID           int64 `gorm:"primaryKey"`
	CollectionID int64
	Name         string
	Status       string
	CreatedTime  int64
	UpdatedTime  int64
}

func (eventRow) TableName() string { return "events" }

func seedCollection(t testing.TB, db *gorm.DB) int64 {
	t.Helper()
	r := collectionRow{Name: testdb.Name("c"), Status: "ACTIVE", CreatedTime: 1, UpdatedTime: 1}
	require.NoError(t, db.Create(&r).Error)
	return r.ID
}

func seedEvent(t testing.TB, db *gorm.DB, collectionID int64, name string) int64 {
	t.Helper()
	r := eventRow{CollectionID: collectionID, Name: name, Status: "ACTIVE", CreatedTime: 1, UpdatedTime: 1}
	require.NoError(t, db.Create(&r).Error)
	return r.ID
}

// actionFixture is a collection with two events, another collection with
// one, and an admin of the first.
type actionFixture struct {
	api            *testAPI
	coll, ev, ev2  int64
	other, otherEv int64
	admin          string
	base           string // /v1/collections/<coll>/actions
}

func newActionFixture(t *testing.T, api *testAPI) *actionFixture {
	f := &actionFixture{api: api}
	f.coll = seedCollection(t, api.DB)
	f.ev = seedEvent(t, api.DB, f.coll, "USER_INVITEUSER")
	f.ev2 = seedEvent(t, api.DB, f.coll, "USER_RESET")
	f.other = seedCollection(t, api.DB)
	f.otherEv = seedEvent(t, api.DB, f.other, "USER_INVITEUSER")
	f.admin = api.token(auth.Principal{UserID: "17", Roles: []string{auth.RoleAdmin}, Collections: []int64{f.coll}})
	f.base = fmt.Sprintf("/v1/collections/%d/actions", f.coll)
	return f
}

func (f *actionFixture) emailBody(name string) map[string]any {
	return map[string]any{
		"name":        name,
		"description": "Used to Send Reset Email",
		"eventId":     f.ev,
		"configName":  "SendEmailConfig",
		"template":    "d-1257a7b8169f4d84aa3393cb4437cbcf",
	}
}

// create posts body and returns the created action.
func (f *actionFixture) create(t *testing.T, body any) map[string]any {
	t.Helper()
	res := f.api.do(http.MethodPost, f.base, f.admin, body)
	require.Equal(t, http.StatusCreated, res.Code, "body: %s", res.Raw)
	return res.JSON["action"].(map[string]any)
}

func idOf(a map[string]any) int64 { return int64(a["id"].(float64)) }

func (f *actionFixture) url(id int64) string { return f.base + "/" + strconv.FormatInt(id, 10) }

// outboxTypes lists the detail types in the outbox, in order.
func outboxTypes(t *testing.T, db *gorm.DB) []string {
	t.Helper()
	var rows []outbox.Row
	require.NoError(t, db.Order("id").Find(&rows).Error)
	out := []string{}
	for _, r := range rows {
		out = append(out, r.DetailType)
	}
	return out
}

func TestCreateActionRoute(t *testing.T) {
	t.Parallel()
	eachDialect(t, func(t *testing.T, api *testAPI) {
		f := newActionFixture(t, api)

		res := api.do(http.MethodPost, f.base, f.admin, f.emailBody("Send Reset Email"))
		require.Equal(t, http.StatusCreated, res.Code, "body: %s", res.Raw)
		require.Equal(t, `"1"`, res.Header.Get("ETag"))
		a := res.JSON["action"].(map[string]any)
		id := idOf(a)
		require.Equal(t, f.url(id), res.Header.Get("Location"))
		// Exactly the catalogue's fields, with its JSON types, plus config.
		keys := []string{}
		for k := range a {
			keys = append(keys, k)
		}
		require.ElementsMatch(t, []string{"id", "collectionId", "name", "status", "description", "eventId", "configName",
			"template", "config", "updatedTime", "createdTime"}, keys)
		require.Equal(t, float64(f.coll), a["collectionId"])
		require.Equal(t, float64(f.ev), a["eventId"])
		require.Equal(t, "ACTIVE", a["status"])
		require.Equal(t, map[string]any{}, a["config"])
		require.IsType(t, float64(0), a["createdTime"])
		require.Equal(t, a["createdTime"], a["updatedTime"])
		require.Regexp(t, `^"action":\{"id":\d+,"collectionId":\d+,"name":`, string(res.Raw[1:]), "the catalogue's field order")

		// The envelope carries the same action and the caller.
		var row outbox.Row
		require.NoError(t, api.DB.Order("id desc").First(&row).Error)
		require.Equal(t, outbox.ActionCreate, row.DetailType)
		var d outbox.Detail
		require.NoError(t, json.Unmarshal([]byte(row.Detail), &d))
		require.Equal(t, strconv.FormatInt(id, 10), d.ID)
		require.Equal(t, "17", d.UserID)
		require.JSONEq(t, string(res.Raw), string(d.Payload))

		// A super admin acting for someone else is recorded as such.
		res = api.do(http.MethodPost, f.base, api.superAdmin(), f.emailBody("On behalf"), "X-Act-On-Behalf-Of-User", "42")
		require.Equal(t, http.StatusCreated, res.Code, "body: %s", res.Raw)
		row = outbox.Row{} // First would otherwise look up row's own id again
		require.NoError(t, api.DB.Order("id desc").First(&row).Error)
		require.NoError(t, json.Unmarshal([]byte(row.Detail), &d))
		require.Equal(t, int64(42), d.ActOnBehalfOfUser)

		// Inline SMS content and a full config are accepted and returned.
		sms := map[string]any{"name": "Text", "eventId": f.ev2, "configName": "SendSmsConfig", "status": "INACTIVE",
			"config": map[string]any{"body": "Hi {{FNAME}}", "from": "+14155550100", "missingMacro": "blank",
				"locales":   map[string]any{"fr_CA": map[string]any{"body": "Allo {{FNAME}}"}},
				"condition": map[string]any{"macro": "TIER", "equals": "gold"}}}
		got := f.create(t, sms)
		// The old object form of condition is stored and returned as its
		// expression (docs/rules.md).
		sms["config"].(map[string]any)["condition"] = `recipient.macros["TIER"] == "gold"`
		require.Equal(t, sms["config"], got["config"])
		require.Equal(t, "INACTIVE", got["status"])
	})
}

func TestCreateActionRouteRefusals(t *testing.T) {
	t.Parallel()
	eachDialect(t, func(t *testing.T, api *testAPI) {
		f := newActionFixture(t, api)
		f.create(t, f.emailBody("Taken"))
		before := outboxTypes(t, api.DB)

		with := func(mutate func(b map[string]any)) map[string]any {
			b := f.emailBody(testdb.Name("a"))
			mutate(b)
			return b
		}
		cases := []struct {
			name   string
			body   any
			fields []string
		}{
			{"missing and invalid fields", with(func(b map[string]any) {
				delete(b, "name")
				b["configName"] = "SendFaxConfig"
				b["status"] = "ON"
			}), []string{"name", "configName", "status"}},
			{"bad SendGrid template", with(func(b map[string]any) { b["template"] = "d-123" }), []string{"template"}},
			{"eventId of another collection", with(func(b map[string]any) { b["eventId"] = f.otherEv }), []string{"eventId"}},
			{"eventId missing", with(func(b map[string]any) { delete(b, "eventId") }), []string{"eventId"}},
			{"eventId of the wrong type", with(func(b map[string]any) { b["eventId"] = "42" }), []string{"eventId"}},
			{"unknown field", with(func(b map[string]any) { b["colour"] = "red" }), []string{"colour"}},
			{"unknown config field", with(func(b map[string]any) { b["config"] = map[string]any{"colour": "red"} }), []string{"config.colour"}},
			{"config of the wrong type", with(func(b map[string]any) { b["config"] = []int{1} }), []string{"config"}},
			{"config field of the wrong type", with(func(b map[string]any) { b["config"] = map[string]any{"subject": 5} }), []string{"config.subject"}},
			{"email without content", with(func(b map[string]any) {
				b["template"] = ""
				b["config"] = map[string]any{"fromEmail": "bob"}
			}), []string{"config.subject", "config.html", "config.fromEmail"}},
			{"sms without body", map[string]any{"name": "s", "eventId": f.ev, "configName": "SendSmsConfig",
				"config": map[string]any{"from": "0044"}}, []string{"config.body", "config.from"}},
			{"bad locale and condition", with(func(b map[string]any) {
				b["config"] = map[string]any{"locales": map[string]any{"fr-CA": map[string]any{}}, "condition": "recipient.nope",
					"missingMacro": "drop"}
			}), []string{"config.locales.fr-CA", "config.condition", "config.missingMacro"}},
			// The old object form is checked as it is decoded, so its
			// problem comes alone.
			{"old condition without a macro", with(func(b map[string]any) {
				b["config"] = map[string]any{"subject": "s", "text": "t", "condition": map[string]any{"equals": "x"}}
			}), []string{"config.condition"}},
			{"malformed JSON", `{"name": `, []string{"body"}},
			{"empty body", "", []string{"body"}},
		}
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				res := api.do(http.MethodPost, f.base, f.admin, tc.body)
				requireError(t, res, http.StatusBadRequest, "INVALID_ARGUMENT", "NOACCRT0400")
				got := details(res)
				for _, field := range tc.fields {
					require.Contains(t, got, field, "body: %s", res.Raw)
					require.NotEmpty(t, got[field])
				}
				require.Len(t, got, len(tc.fields), "body: %s", res.Raw)
			})
		}

		res := api.do(http.MethodPost, f.base, f.admin, f.emailBody("Taken"))
		requireError(t, res, http.StatusConflict, "ALREADY_EXISTS", "NOACCRT0409")
		require.Contains(t, details(res), "name")

		res = api.do(http.MethodPost, "/v1/collections/987654/actions", api.superAdmin(), f.emailBody("x"))
		requireError(t, res, http.StatusNotFound, "NOT_FOUND", "NOACCRT0404")

		big := f.emailBody("big")
		big["description"] = strings.Repeat("x", int(api.cfg.HTTP.MaxBodyBytes))
		res = api.do(http.MethodPost, f.base, f.admin, big)
		requireError(t, res, http.StatusBadRequest, "INVALID_ARGUMENT", "NOACCRT0400")

		require.Equal(t, before, outboxTypes(t, api.DB), "refused requests write no envelope")
	})
}

func TestGetAndListActionRoutes(t *testing.T) {
	t.Parallel()
	eachDialect(t, func(t *testing.T, api *testAPI) {
		f := newActionFixture(t, api)
		a1 := f.create(t, f.emailBody("a1"))
		a2 := f.create(t, map[string]any{"name": "a2", "eventId": f.ev, "configName": "SendSmsConfig", "status": "INACTIVE",
			"config": map[string]any{"body": "x"}})
		a3 := f.create(t, map[string]any{"name": "a3", "eventId": f.ev2, "configName": "SendPushConfig",
			"config": map[string]any{"title": "x"}})
		otherAdmin := api.token(auth.Principal{Roles: []string{auth.RoleAdmin}, Collections: []int64{f.other}})
		res := api.do(http.MethodPost, fmt.Sprintf("/v1/collections/%d/actions", f.other), otherAdmin,
			map[string]any{"name": "elsewhere", "eventId": f.otherEv, "configName": "SendPushConfig", "config": map[string]any{"body": "x"}})
		require.Equal(t, http.StatusCreated, res.Code, "body: %s", res.Raw)
		elsewhere := idOf(res.JSON["action"].(map[string]any))

		viewer := api.token(auth.Principal{Roles: []string{auth.RoleViewer}, Collections: []int64{f.coll}})
		res = api.do(http.MethodGet, f.url(idOf(a1)), viewer, nil)
		require.Equal(t, http.StatusOK, res.Code, "body: %s", res.Raw)
		require.Equal(t, `"1"`, res.Header.Get("ETag"))
		require.Equal(t, a1, res.JSON["action"])

		res = api.do(http.MethodGet, f.url(987654), viewer, nil)
		requireError(t, res, http.StatusNotFound, "NOT_FOUND", "NOACGET0404")
		res = api.do(http.MethodGet, f.url(elsewhere), viewer, nil)
		requireError(t, res, http.StatusNotFound, "NOT_FOUND", "NOACGET0404") // another collection's action
		res = api.do(http.MethodGet, f.base+"/abc", viewer, nil)
		requireError(t, res, http.StatusBadRequest, "INVALID_ARGUMENT", "NOACGET0400")
		require.Contains(t, details(res), "actionId")

		ids := func(res response) []int64 {
			t.Helper()
			require.Equal(t, http.StatusOK, res.Code, "body: %s", res.Raw)
			out := []int64{}
			for _, a := range res.JSON["actions"].([]any) {
				out = append(out, idOf(a.(map[string]any)))
			}
			return out
		}
		list := func(query string) []int64 {
			t.Helper()
			return ids(api.do(http.MethodGet, f.base+"?"+query, viewer, nil))
		}
		all := []int64{idOf(a1), idOf(a2), idOf(a3)}
		require.Equal(t, all, list(""))
		require.Equal(t, []int64{idOf(a3)}, list(fmt.Sprintf("eventId=%d", f.ev2)))
		require.Equal(t, []int64{idOf(a2)}, list("status=INACTIVE"))
		require.Equal(t, []int64{idOf(a1)}, list("configName=SendEmailConfig"))
		require.Equal(t, []int64{idOf(a2)}, list(fmt.Sprintf("eventId=%d&status=INACTIVE&configName=SendSmsConfig", f.ev)))
		require.Equal(t, []int64{}, list(fmt.Sprintf("eventId=%d", f.otherEv)))

		// Pages of two: the cursor walks every action once; the last page says so.
		var paged []int64
		query := "limit=2"
		pages := 0
		for {
			res := api.do(http.MethodGet, f.base+"?"+query, viewer, nil)
			paged = append(paged, ids(res)...)
			pages++
			next := res.JSON["nextCursor"].(string)
			if next == "" {
				break
			}
			query = "limit=2&cursor=" + url.QueryEscape(next)
		}
		require.Equal(t, all, paged)
		require.Equal(t, 2, pages)
		res = api.do(http.MethodGet, f.base+"?limit=3", viewer, nil)
		require.Equal(t, all, ids(res))
		require.Equal(t, "", res.JSON["nextCursor"], "a full last page is not followed by an empty one")

		for query, field := range map[string]string{
			"status=ON":                "status",
			"configName=SendFaxConfig": "configName",
			"eventId=abc":              "eventId",
			"limit=0":                  "limit",
			"limit=501":                "limit",
			"cursor=%21%21":            "cursor",
			"event_id=1":               "event_id",
		} {
			res := api.do(http.MethodGet, f.base+"?"+query, viewer, nil)
			requireError(t, res, http.StatusBadRequest, "INVALID_ARGUMENT", "NOACLST0400")
			require.Contains(t, details(res), field, "query %s: %s", query, res.Raw)
		}

		res = api.do(http.MethodGet, "/v1/collections/987654/actions", api.superAdmin(), nil)
		requireError(t, res, http.StatusNotFound, "NOT_FOUND", "NOACLST0404")
		empty := seedCollection(t, api.DB)
		res = api.do(http.MethodGet, fmt.Sprintf("/v1/collections/%d/actions", empty), api.superAdmin(), nil)
		require.Equal(t, http.StatusOK, res.Code)
		require.JSONEq(t, `{"actions": [], "nextCursor": ""}`, string(res.Raw))
	})
}

func TestUpdateActionRoute(t *testing.T) {
	t.Parallel()
	eachDialect(t, func(t *testing.T, api *testAPI) {
		f := newActionFixture(t, api)
		a := f.create(t, f.emailBody("a"))
		f.create(t, f.emailBody("Taken"))
		u := f.url(idOf(a))

		res := api.do(http.MethodPatch, u, f.admin, map[string]any{"status": "INACTIVE"}, "If-Match", `"1"`)
		require.Equal(t, http.StatusOK, res.Code, "body: %s", res.Raw)
		require.Equal(t, `"2"`, res.Header.Get("ETag"))
		got := res.JSON["action"].(map[string]any)
		require.Equal(t, "INACTIVE", got["status"])
		require.Equal(t, a["name"], got["name"])
		require.Equal(t, a["createdTime"], got["createdTime"])

		// Switch the action to SMS: config replaces the old one whole.
		res = api.do(http.MethodPatch, u, f.admin, map[string]any{"configName": "SendSmsConfig", "template": "",
			"config": map[string]any{"body": "Hi"}, "eventId": f.ev2, "description": nil})
		require.Equal(t, http.StatusOK, res.Code, "body: %s", res.Raw)
		got = res.JSON["action"].(map[string]any)
		require.Equal(t, map[string]any{"body": "Hi"}, got["config"])
		require.Equal(t, float64(f.ev2), got["eventId"])
		require.Equal(t, a["description"], got["description"], "null leaves a field as it is")

		res = api.do(http.MethodPatch, u, f.admin, map[string]any{"name": "b"}, "If-Match", `"1"`)
		requireError(t, res, http.StatusPreconditionFailed, "FAILED_PRECONDITION", "NOACUPD0412")
		require.Equal(t, `the current ETag is "3"`, details(res)["If-Match"])
		res = api.do(http.MethodPatch, u, f.admin, map[string]any{"name": "b"}, "If-Match", "three")
		requireError(t, res, http.StatusBadRequest, "INVALID_ARGUMENT", "NOACUPD0400")
		require.Contains(t, details(res), "If-Match")

		for name, tc := range map[string]struct {
			body   any
			fields []string
		}{
			"empty patch":             {map[string]any{}, []string{"body"}},
			"merged action invalid":   {map[string]any{"configName": "SendEmailConfig"}, []string{"config.subject", "config.html"}},
			"bad fields":              {map[string]any{"name": "", "status": "x"}, []string{"name", "status"}},
			"eventId elsewhere":       {map[string]any{"eventId": f.otherEv}, []string{"eventId"}},
			"unknown field":           {map[string]any{"id": 5}, []string{"id"}},
			"unknown config field":    {map[string]any{"config": map[string]any{"body": "x", "sender": "y"}}, []string{"config.sender"}},
			"template on SMS":         {map[string]any{"template": "d-1257a7b8169f4d84aa3393cb4437cbcf"}, []string{"template"}},
			"wrong type":              {map[string]any{"eventId": true}, []string{"eventId"}},
			"config missing its body": {map[string]any{"config": map[string]any{}}, []string{"config.body"}},
		} {
			res := api.do(http.MethodPatch, u, f.admin, tc.body)
			requireError(t, res, http.StatusBadRequest, "INVALID_ARGUMENT", "NOACUPD0400")
			got := details(res)
			for _, field := range tc.fields {
				require.Contains(t, got, field, "%s: %s", name, res.Raw)
			}
			require.Len(t, got, len(tc.fields), "%s: %s", name, res.Raw)
		}

		// Renaming onto a taken name of the same event: move it back first.
		res = api.do(http.MethodPatch, u, f.admin, map[string]any{"eventId": f.ev, "name": "Taken", "configName": "SendEmailConfig",
			"template": "d-1257a7b8169f4d84aa3393cb4437cbcf", "config": map[string]any{}})
		requireError(t, res, http.StatusConflict, "ALREADY_EXISTS", "NOACUPD0409")
		require.Contains(t, details(res), "name")

		res = api.do(http.MethodPatch, f.url(987654), f.admin, map[string]any{"name": "x"})
		requireError(t, res, http.StatusNotFound, "NOT_FOUND", "NOACUPD0404")

		require.Equal(t, []string{outbox.ActionCreate, outbox.ActionCreate, outbox.ActionUpdate, outbox.ActionUpdate},
			outboxTypes(t, api.DB), "only the two successful updates wrote envelopes")
	})
}

func TestDeleteActionRoute(t *testing.T) {
	t.Parallel()
	eachDialect(t, func(t *testing.T, api *testAPI) {
		f := newActionFixture(t, api)
		a := f.create(t, f.emailBody("a"))
		u := f.url(idOf(a))

		res := api.do(http.MethodDelete, u, f.admin, nil, "If-Match", `"7"`)
		requireError(t, res, http.StatusPreconditionFailed, "FAILED_PRECONDITION", "NOACDEL0412")
		res = api.do(http.MethodDelete, u, f.admin, nil, "If-Match", "W/x")
		requireError(t, res, http.StatusBadRequest, "INVALID_ARGUMENT", "NOACDEL0400")
		res = api.do(http.MethodDelete, fmt.Sprintf("/v1/collections/%d/actions/%d", f.other, idOf(a)), api.superAdmin(), nil)
		requireError(t, res, http.StatusNotFound, "NOT_FOUND", "NOACDEL0404") // not in that collection

		res = api.do(http.MethodDelete, u, f.admin, nil, "If-Match", `"1"`)
		require.Equal(t, http.StatusOK, res.Code, "body: %s", res.Raw)
		require.Len(t, res.JSON, 3)
		require.Equal(t, "NOACDEL0000", res.JSON["responseCode"])
		require.Equal(t, "Action is deleted successfully", res.JSON["responseMessage"])
		require.Regexp(t, regexp.MustCompile(`^\d{13}$`), res.JSON["timeStamp"])

		var row outbox.Row
		require.NoError(t, api.DB.Order("id desc").First(&row).Error)
		require.Equal(t, outbox.ActionDelete, row.DetailType)
		var d outbox.Detail
		require.NoError(t, json.Unmarshal([]byte(row.Detail), &d))
		require.Equal(t, strconv.FormatInt(idOf(a), 10), d.ID)
		require.JSONEq(t, string(res.Raw), string(d.Payload))

		res = api.do(http.MethodDelete, u, f.admin, nil)
		requireError(t, res, http.StatusNotFound, "NOT_FOUND", "NOACDEL0404")
		res = api.do(http.MethodGet, u, f.admin, nil)
		requireError(t, res, http.StatusNotFound, "NOT_FOUND", "NOACGET0404")
		require.Equal(t, []string{outbox.ActionCreate, outbox.ActionDelete}, outboxTypes(t, api.DB))
	})
}
