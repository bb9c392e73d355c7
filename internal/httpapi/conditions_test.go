package httpapi_test

import (
	"cmp"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/notificationservice/notificationservice/internal/auth"
	"github.com/notificationservice/notificationservice/internal/dispatch"
)

// conditionCase is one notification through the API: an event (with an
// optional condition) firing one SMS action (with an optional condition),
// and the decision its one recipient's delivery must get.
type conditionCase struct {
	name       string
	eventCond  string
	actionCond any    // a string, or the old object form
	recipient  string // extra recipient fields, JSON
	data       string // the notification's data, JSON; "" for none
	reason     string // "" for pending
	detail     string // a substring of reasonDetail
}

var conditionCases = []conditionCase{
	{name: "locale true", actionCond: `recipient.locale startsWith "fr"`, recipient: `"locale": "fr_CA"`},
	{name: "locale false", actionCond: `recipient.locale startsWith "fr"`, recipient: `"locale": "en_US"`,
		reason: dispatch.ReasonConditionFalse, detail: `the action's condition is false: recipient.locale startsWith "fr"`},
	{name: "macro in list true", actionCond: `recipient.macros.PLAN in ["pro", "team"]`, recipient: `"macros": {"PLAN": "team"}`},
	{name: "macro in list false", actionCond: `recipient.macros.PLAN in ["pro", "team"]`, recipient: `"macros": {"PLAN": "free"}`,
		reason: dispatch.ReasonConditionFalse, detail: `recipient.macros.PLAN in ["pro", "team"]`},
	{name: "data true", actionCond: `notification.data.amount > 100`, data: `{"amount": 150}`},
	{name: "data false", actionCond: `notification.data.amount > 100`, data: `{"amount": 50}`,
		reason: dispatch.ReasonConditionFalse, detail: `notification.data.amount > 100`},
	{name: "data of the wrong type", actionCond: `notification.data.amount > 100`, data: `{"amount": "lots"}`,
		reason: dispatch.ReasonConditionError, detail: `the action's condition notification.data.amount > 100 failed: line 1, column`},
	{name: "data absent", actionCond: `notification.data.amount > 100`,
		reason: dispatch.ReasonConditionError, detail: "failed"},
	{name: "old object form true", actionCond: map[string]string{"macro": "PLAN", "equals": "pro"}, recipient: `"macros": {"PLAN": "pro"}`},
	{name: "old object form false", actionCond: map[string]string{"macro": "PLAN", "equals": "pro"}, recipient: `"macros": {"PLAN": "team"}`,
		reason: dispatch.ReasonConditionFalse, detail: `recipient.macros["PLAN"] == "pro"`},
	{name: "event true, action true", eventCond: `notification.name startsWith "E"`, actionCond: `recipient.id == "u1"`, recipient: `"id": "u1"`},
	{name: "event false is checked first", eventCond: `recipient.id == "nobody"`, actionCond: `notification.data.amount > 100`,
		data: `{"amount": "lots"}`, reason: dispatch.ReasonConditionFalse, detail: `the event's condition is false: recipient.id == "nobody"`},
	{name: "event true, action false", eventCond: `event.name == notification.name`, actionCond: `recipient.id == "u2"`, recipient: `"id": "u1"`,
		reason: dispatch.ReasonConditionFalse, detail: `the action's condition is false`},
	{name: "event error", eventCond: `notification.data.n + 1 > 2`, data: `{"n": "x"}`,
		reason: dispatch.ReasonConditionError, detail: "the event's condition notification.data.n + 1 > 2 failed"},
}

// Every documented example, the old object form, and the event's condition
// (checked before the action's) decide each delivery of a notification sent
// through the REST API, on both dialects; the reason and the expression are
// on the delivery.
func TestConditionsDecideDeliveriesThroughTheAPI(t *testing.T) {
	t.Parallel()
	eachDialect(t, func(t *testing.T, api *testAPI) {
		admin := api.superAdmin()
		res := api.do(http.MethodPost, "/v1/collections", admin, map[string]any{"name": "conditions"})
		require.Equal(t, http.StatusCreated, res.Code, "body: %s", res.Raw)
		cid := int64(res.JSON["collection"].(map[string]any)["id"].(float64))
		base := fmt.Sprintf("/v1/collections/%d", cid)

		for i, tc := range conditionCases {
			t.Run(tc.name, func(t *testing.T) {
				name := fmt.Sprintf("E%d", i)
				ev := map[string]any{"name": name}
				if tc.eventCond != "" {
					ev["condition"] = tc.eventCond
				}
				res := api.do(http.MethodPost, base+"/events", admin, ev)
				require.Equal(t, http.StatusCreated, res.Code, "body: %s", res.Raw)
				event := res.JSON["event"].(map[string]any)
				require.Equal(t, ev["condition"], event["condition"])
				config := map[string]any{"body": "hi"}
				if tc.actionCond != nil {
					config["condition"] = tc.actionCond
				}
				res = api.do(http.MethodPost, base+"/actions", admin, map[string]any{"name": "sms", "eventId": event["id"],
					"configName": "SendSmsConfig", "config": config})
				require.Equal(t, http.StatusCreated, res.Code, "body: %s", res.Raw)
				if obj, ok := tc.actionCond.(map[string]string); ok { // stored and shown as its expression
					require.Equal(t, fmt.Sprintf("recipient.macros[%q] == %q", obj["macro"], obj["equals"]),
						res.JSON["action"].(map[string]any)["config"].(map[string]any)["condition"])
				}

				rc := `{"phone": "+14155550100"`
				if tc.recipient != "" {
					rc += ", " + tc.recipient
				}
				n := fmt.Sprintf(`{"name": %q, "recipients": [%s}]`, name, rc)
				if tc.data != "" {
					n += `, "data": ` + tc.data
				}
				res = api.do(http.MethodPost, base+"/notifications", admin, `{"notification": [`+n+`}]}`,
					"Idempotency-Key", fmt.Sprintf("cond-%d", i))
				require.Equal(t, http.StatusAccepted, res.Code, "body: %s", res.Raw)
				nid := int64(res.JSON["notificationIds"].([]any)[0].(float64))

				res = api.do(http.MethodGet, fmt.Sprintf("%s/notifications/%d", base, nid), admin, nil)
				require.Equal(t, http.StatusOK, res.Code, "body: %s", res.Raw)
				note := res.JSON["notification"].(map[string]any)
				if tc.data != "" {
					require.JSONEq(t, tc.data, mustJSON(t, note["data"]), "the data is stored and returned")
				} else {
					require.NotContains(t, note, "data")
				}
				d := note["deliveries"].([]any)[0].(map[string]any)
				if tc.reason == "" {
					require.Equal(t, dispatch.StatusPending, d["status"], "delivery: %v", d)
					return
				}
				require.Equal(t, dispatch.StatusSkipped, d["status"], "delivery: %v", d)
				require.Equal(t, tc.reason, d["reason"], "delivery: %v", d)
				require.Contains(t, d["reasonDetail"], tc.detail)
			})
		}

		// app wires planning's decisions into /metrics.
		count := func(reason string) float64 {
			families, err := api.App.Metrics.Registry().Gather()
			require.NoError(t, err)
			for _, f := range families {
				if f.GetName() != "notify_planning_decisions_total" {
					continue
				}
				for _, m := range f.GetMetric() {
					if m.GetLabel()[0].GetValue() == reason {
						return m.GetCounter().GetValue()
					}
				}
			}
			return -1
		}
		want := map[string]float64{}
		for _, tc := range conditionCases {
			want[cmp.Or(tc.reason, "planned")]++
		}
		for reason, n := range want {
			require.Equal(t, n, count(reason), reason)
		}
	})
}

// A condition that does not compile, or is not a bool, is refused when its
// action or event is saved: 400 naming the field, the error and its line
// and column. Nothing is stored.
func TestBadConditionsAreRefusedWithTheirPosition(t *testing.T) {
	t.Parallel()
	eachDialect(t, func(t *testing.T, api *testAPI) {
		admin := api.superAdmin()
		res := api.do(http.MethodPost, "/v1/collections", admin, map[string]any{"name": "bad-conditions"})
		require.Equal(t, http.StatusCreated, res.Code, "body: %s", res.Raw)
		cid := int64(res.JSON["collection"].(map[string]any)["id"].(float64))
		base := fmt.Sprintf("/v1/collections/%d", cid)

		res = api.do(http.MethodPost, base+"/events", admin, map[string]any{"name": "BAD", "condition": "recipient.locale startsWith"})
		requireError(t, res, http.StatusBadRequest, "INVALID_ARGUMENT", "NOEVCRT0400")
		require.Contains(t, details(res)["condition"], "line 1, column 27: unexpected token EOF")

		res = api.do(http.MethodPost, base+"/events", admin, map[string]any{"name": "GOOD", "required": true})
		require.Equal(t, http.StatusCreated, res.Code, "body: %s", res.Raw)
		event := res.JSON["event"].(map[string]any)
		require.Equal(t, true, event["required"])
		evPath := fmt.Sprintf("%s/events/%d", base, int64(event["id"].(float64)))

		res = api.do(http.MethodPatch, evPath, admin, map[string]any{"condition": "true &&\n recipient.nope"})
		requireError(t, res, http.StatusBadRequest, "INVALID_ARGUMENT", "NOEVUPD0400")
		require.Contains(t, details(res)["condition"], "line 2, column 12")
		require.Contains(t, details(res)["condition"], "has no field nope")

		res = api.do(http.MethodPatch, evPath, admin, map[string]any{"condition": `recipient.locale == "fr"`, "required": false})
		require.Equal(t, http.StatusOK, res.Code, "body: %s", res.Raw)
		require.Equal(t, `recipient.locale == "fr"`, res.JSON["event"].(map[string]any)["condition"])
		require.NotContains(t, res.JSON["event"], "required")

		for _, tc := range []struct {
			cond   any
			reason string
		}{
			{`recipient.macros.PLAN`, "expected bool"},
			{`recipient.locale startsWith "fr" &&`, "line 1, column"},
			{map[string]string{"equals": "pro"}, "needs a macro name"},
			{42, "must be a string"},
		} {
			res = api.do(http.MethodPost, base+"/actions", admin, map[string]any{"name": "sms", "eventId": event["id"],
				"configName": "SendSmsConfig", "config": map[string]any{"body": "hi", "condition": tc.cond}})
			requireError(t, res, http.StatusBadRequest, "INVALID_ARGUMENT", "NOACCRT0400")
			require.Contains(t, details(res)["config.condition"], tc.reason, "%v", tc.cond)
		}
		var n int64
		require.NoError(t, api.DB.Raw("SELECT COUNT(*) FROM actions").Scan(&n).Error)
		require.Zero(t, n)
	})
}

// The data object is validated as an object and capped; a replayed key
// with other data conflicts.
func TestNotificationData(t *testing.T) {
	t.Parallel()
	eachDialect(t, func(t *testing.T, api *testAPI) {
		cid, _ := seedInvite(t, api)
		sender := api.token(auth.Principal{Roles: []string{auth.RoleSender}, Collections: []int64{cid}})
		path := fmt.Sprintf("/v1/collections/%d/notifications", cid)
		body := func(data string) string {
			return `{"notification": [{"name": "USER_INVITEUSER", "recipients": [{"email": "a@example.com"}], "data": ` + data + `}]}`
		}
		for _, bad := range []string{`"text"`, `[1, 2]`, `42`, `{"big": "` + strings.Repeat("x", dispatch.MaxDataLen) + `"}`} {
			res := api.do(http.MethodPost, path, sender, body(bad), "Idempotency-Key", "data-bad")
			requireError(t, res, http.StatusBadRequest, "INVALID_ARGUMENT", "NONTSND0400")
			require.Contains(t, strings.Join(fieldNames(details(res)), ","), "data", "body: %s", res.Raw)
		}
		res := api.do(http.MethodPost, path, sender, body(`{"amount": 1}`), "Idempotency-Key", "data-1")
		require.Equal(t, http.StatusAccepted, res.Code, "body: %s", res.Raw)
		res = api.do(http.MethodPost, path, sender, body(`{"amount": 1}`), "Idempotency-Key", "data-1")
		require.Equal(t, http.StatusAccepted, res.Code, "body: %s", res.Raw)
		require.Equal(t, true, res.JSON["replayed"])
		res = api.do(http.MethodPost, path, sender, body(`{"amount": 2}`), "Idempotency-Key", "data-1")
		requireError(t, res, http.StatusConflict, "FAILED_PRECONDITION", "NONTSND0409")
	})
}

func fieldNames(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}
