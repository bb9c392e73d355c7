package httpapi_test

import (
	"fmt"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/notificationservice/notificationservice/internal/auth"
)

// The REST face of scheduled sends: a sendAt ahead is accepted and shown
// scheduled with its dueTime; one beyond dispatch.maxScheduleAhead or
// unreadable is a 400 naming notification[i].sendAt; the producer cancels
// it (counts, idempotent, 404 for an unknown notification).
func TestScheduledSendAndCancelRoutes(t *testing.T) {
	t.Parallel()
	eachDialect(t, func(t *testing.T, api *testAPI) {
		cid, _ := seedInvite(t, api)
		sender := api.token(auth.Principal{UserID: "9", Roles: []string{auth.RoleSender}, Collections: []int64{cid}})
		viewer := api.token(auth.Principal{UserID: "8", Roles: []string{auth.RoleViewer}, Collections: []int64{cid}})
		path := fmt.Sprintf("/v1/collections/%d/notifications", cid)
		body := func(sendAt string) string {
			return `{"notification": [{"name": "USER_INVITEUSER", "sendAt": ` + sendAt + `, "recipients": [{"email": "a@example.com", "macros": {"FNAME": "A"}}]}]}`
		}
		due := time.Now().Add(time.Hour).Truncate(time.Second)

		res := api.do(http.MethodPost, path, sender, body(`"`+due.Format(time.RFC3339)+`"`), "Idempotency-Key", "sched-1")
		require.Equal(t, http.StatusAccepted, res.Code, "body: %s", res.Raw)
		nid := int64(res.JSON["notificationIds"].([]any)[0].(float64))
		one := fmt.Sprintf("%s/%d", path, nid)
		res = api.do(http.MethodGet, one, viewer, nil)
		require.Equal(t, http.StatusOK, res.Code, "body: %s", res.Raw)
		d := res.JSON["notification"].(map[string]any)["deliveries"].([]any)[0].(map[string]any)
		require.Equal(t, "scheduled", d["status"])
		require.Equal(t, "send_at", d["reason"])
		require.EqualValues(t, due.UnixMilli(), d["dueTime"])

		for name, tc := range map[string]struct{ sendAt, reason string }{
			"beyond the horizon": {strconv.FormatInt(time.Now().Add(91*24*time.Hour).UnixMilli(), 10), "must be at most 2160h0m0s ahead"},
			"not a time":         {`"tomorrow"`, "must be an RFC 3339 time"},
		} {
			res = api.do(http.MethodPost, path, sender, body(tc.sendAt), "Idempotency-Key", "sched-"+name)
			requireError(t, res, http.StatusBadRequest, "INVALID_ARGUMENT", "NONTSND0400")
			require.Contains(t, details(res)["notification[0].sendAt"], tc.reason, "%s: %s", name, res.Raw)
		}

		res = api.do(http.MethodPost, one+"/cancel", sender, nil)
		require.Equal(t, http.StatusOK, res.Code, "body: %s", res.Raw)
		require.Equal(t, "NONTCNL0000", res.JSON["responseCode"])
		require.EqualValues(t, 1, res.JSON["canceled"])
		require.EqualValues(t, 0, res.JSON["inFlight"])
		d = res.JSON["notification"].(map[string]any)["deliveries"].([]any)[0].(map[string]any)
		require.Equal(t, "canceled", d["status"])
		require.NotContains(t, d, "dueTime", "a canceled delivery is due never")

		res = api.do(http.MethodPost, one+"/cancel", sender, nil)
		require.Equal(t, http.StatusOK, res.Code, "body: %s", res.Raw)
		require.EqualValues(t, 0, res.JSON["canceled"], "idempotent")

		res = api.do(http.MethodPost, fmt.Sprintf("%s/%d/cancel", path, nid+100), sender, nil)
		requireError(t, res, http.StatusNotFound, "NOT_FOUND", "NONTCNL0404")
	})
}

// config.delay is checked when the action is saved: either shape, or a 400
// naming it.
func TestActionDelayIsValidatedOnSave(t *testing.T) {
	t.Parallel()
	api := newAPI(t, "sqlite")
	cid, aid := seedInvite(t, api)
	admin := api.token(auth.Principal{UserID: "1", Roles: []string{auth.RoleAdmin}, Collections: []int64{cid}})
	path := fmt.Sprintf("/v1/collections/%d/actions/%d", cid, aid)
	config := func(delay string) string {
		return `{"config": {"subject": "Hi", "text": "Hi", "delay": ` + delay + `}}`
	}
	for _, ok := range []string{`"24h"`, `{"macro": "REMIND_AT"}`, `{"data": "remindAt"}`} {
		res := api.do(http.MethodPatch, path, admin, config(ok))
		require.Equal(t, http.StatusOK, res.Code, "%s: %s", ok, res.Raw)
	}
	for bad, field := range map[string]string{
		`"tomorrow"`: "config.delay", `"-5m"`: "config.delay", `"9000h"`: "config.delay", `5`: "config.delay",
		`{"macro": "x y"}`: "config.delay.macro", `{"macro": "A", "data": "b"}`: "config.delay", `{"other": "b"}`: "config.delay",
	} {
		res := api.do(http.MethodPatch, path, admin, config(bad))
		requireError(t, res, http.StatusBadRequest, "INVALID_ARGUMENT", "NOACUPD0400")
		require.Contains(t, details(res), field, "%s: %s", bad, res.Raw)
	}
}
