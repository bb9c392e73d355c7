package httpapi_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/notificationservice/notificationservice/internal/actions"
	"github.com/notificationservice/notificationservice/internal/auth"
	"github.com/notificationservice/notificationservice/internal/config"
	"github.com/notificationservice/notificationservice/internal/testdb"
)

// seedInvite creates a collection with the ACTIVE event USER_INVITEUSER
// firing an email action, straight in the database.
func seedInvite(t *testing.T, api *testAPI) (collectionID, actionID int64) {
	t.Helper()
	now := time.Now().UnixMilli()
	db := api.DB
	require.NoError(t, db.Raw(`INSERT INTO collections (name, status, created_time, updated_time) VALUES (?, 'ACTIVE', ?, ?) RETURNING id`,
		testdb.Name("c"), now, now).Scan(&collectionID).Error)
	var eventID int64
	require.NoError(t, db.Raw(`INSERT INTO events (collection_id, name, status, created_time, updated_time) VALUES (?, 'USER_INVITEUSER', 'ACTIVE', ?, ?) RETURNING id`,
		collectionID, now, now).Scan(&eventID).Error)
	a := actions.Action{CollectionID: collectionID, EventID: eventID, Name: "invite", Status: actions.StatusActive, ConfigName: actions.ConfigEmail,
		Config: actions.Config{Content: actions.Content{Subject: "Hi {{FNAME}}", Text: "Welcome {{FNAME}}"}}, CreatedTime: now, UpdatedTime: now}
	require.NoError(t, db.Create(&a).Error)
	return collectionID, a.ID
}

const sendBody = `{"notification": [{"name": "USER_INVITEUSER", "recipients": [
  {"email": "externalevents1709786394020@gmail.com", "pushId": "hj7sdf67sqc9", "phone": "409-685-4167", "locale": "en_US", "macros": {"FNAME": "John"}},
  {"phone": "409-685-4167"}]}]}`

func TestSendNotificationRoute(t *testing.T) {
	t.Parallel()
	eachDialect(t, func(t *testing.T, api *testAPI) {
		cid, actionID := seedInvite(t, api)
		sender := api.token(auth.Principal{Roles: []string{auth.RoleSender}, Collections: []int64{cid}})
		path := fmt.Sprintf("/v1/collections/%d/notifications", cid)

		res := api.do(http.MethodPost, path, sender, sendBody, "Idempotency-Key", "k-1", "X-Correlation-ID", "order-9")
		require.Equal(t, http.StatusAccepted, res.Code, "body: %s", res.Raw)
		require.Equal(t, "NONTSND0000", res.JSON["responseCode"])
		require.Equal(t, false, res.JSON["replayed"])
		ids := res.JSON["notificationIds"].([]any)
		require.Len(t, ids, 1)
		nid := int64(ids[0].(float64))
		summary := res.JSON["notifications"].([]any)[0].(map[string]any)
		require.Equal(t, "accepted", summary["status"])
		require.EqualValues(t, 2, summary["deliveries"])
		require.EqualValues(t, 1, summary["skipped"])

		// Same key, same body (whitespace aside): the first result again.
		res = api.do(http.MethodPost, path, sender, strings.ReplaceAll(sendBody, "\n", " "), "Idempotency-Key", "k-1")
		require.Equal(t, http.StatusAccepted, res.Code, "body: %s", res.Raw)
		require.Equal(t, true, res.JSON["replayed"])
		require.Equal(t, "true", res.Header.Get("Idempotent-Replayed"))
		require.Equal(t, []any{float64(nid)}, res.JSON["notificationIds"])

		// Same key, other body: refused, nothing created.
		res = api.do(http.MethodPost, path, sender, strings.Replace(sendBody, "John", "Jane", 1), "Idempotency-Key", "k-1")
		requireError(t, res, http.StatusConflict, "FAILED_PRECONDITION", "NONTSND0409")
		require.Contains(t, details(res), "Idempotency-Key")
		var notes int64
		require.NoError(t, api.DB.Raw("SELECT COUNT(*) FROM notifications").Scan(&notes).Error)
		require.EqualValues(t, 1, notes)

		// The send envelope, as the event catalogue shows it.
		var detail string
		require.NoError(t, api.DB.Raw("SELECT detail FROM outbox WHERE detail_type = 'notificationservice/notifications/send'").Scan(&detail).Error)
		require.JSONEq(t, `{"notification": {"name": "USER_INVITEUSER", "recipients": [
		  {"email": "externalevents1709786394020@gmail.com", "pushId": "hj7sdf67sqc9", "phone": "409-685-4167", "locale": "en_US", "macros": {"FNAME": "John"}},
		  {"phone": "409-685-4167"}]}}`, mustJSON(t, jsonField(t, detail, "payload")))
		require.Equal(t, "USER_INVITEUSER", jsonField(t, detail, "id"))

		// Without a key every call is a new notification.
		res = api.do(http.MethodPost, path, sender, sendBody)
		require.Equal(t, http.StatusAccepted, res.Code)
		require.NotEqual(t, []any{float64(nid)}, res.JSON["notificationIds"])

		// The status routes show it, with its deliveries.
		viewer := api.token(auth.Principal{Roles: []string{auth.RoleViewer}, Collections: []int64{cid}})
		res = api.do(http.MethodGet, fmt.Sprintf("%s/%d", path, nid), viewer, nil)
		require.Equal(t, http.StatusOK, res.Code, "body: %s", res.Raw)
		n := res.JSON["notification"].(map[string]any)
		require.Equal(t, "api", n["source"])
		require.Equal(t, "k-1", n["idempotencyKey"])
		require.Equal(t, "order-9", n["correlation"].(map[string]any)["correlationId"])
		ds := n["deliveries"].([]any)
		require.Len(t, ds, 2)
		skipped := ds[1].(map[string]any)
		require.Equal(t, "skipped", skipped["status"])
		require.Equal(t, "recipient has no email address (neither tos nor email)", skipped["reason"])
		require.EqualValues(t, actionID, skipped["actionId"])

		// The workers send the pending one through the sandbox.
		_, err := api.App.Dispatcher.RunOnce(context.Background())
		require.NoError(t, err)
		res = api.do(http.MethodGet, fmt.Sprintf("/v1/collections/%d/deliveries?status=sent&channel=email", cid), viewer, nil)
		require.Equal(t, http.StatusOK, res.Code, "body: %s", res.Raw)
		sent := res.JSON["deliveries"].([]any)
		require.Len(t, sent, 2, "one per notification")
		require.Equal(t, "sandbox", sent[0].(map[string]any)["provider"])
		require.Len(t, api.App.Sandbox.Messages(), 2)
		require.Equal(t, "Hi John", api.App.Sandbox.Messages()[0].Subject)

		// The notification's status shows what the sandbox would have sent.
		res = api.do(http.MethodGet, fmt.Sprintf("%s/%d", path, nid), viewer, nil)
		require.Equal(t, http.StatusOK, res.Code, "body: %s", res.Raw)
		d0 := res.JSON["notification"].(map[string]any)["deliveries"].([]any)[0].(map[string]any)
		require.Equal(t, "sent", d0["status"])
		recorded := d0["sandboxMessages"].([]any)
		require.Len(t, recorded, 1)
		require.Equal(t, d0["providerMessageId"], recorded[0].(map[string]any)["providerMessageId"])
		msg := recorded[0].(map[string]any)["message"].(map[string]any)
		require.Equal(t, "Hi John", msg["subject"])
		require.Equal(t, "externalevents1709786394020@gmail.com", msg["to"].([]any)[0].(map[string]any)["email"])
		require.NotContains(t, res.JSON["notification"].(map[string]any)["deliveries"].([]any)[1], "sandboxMessages", "skipped: nothing sent")

		res = api.do(http.MethodGet, fmt.Sprintf("/v1/collections/%d/notifications/999999", cid), viewer, nil)
		requireError(t, res, http.StatusNotFound, "NOT_FOUND", "NONTGET0404")
		res = api.do(http.MethodGet, fmt.Sprintf("/v1/collections/%d/notifications/%d", cid+1000, nid), api.superAdmin(), nil)
		requireError(t, res, http.StatusNotFound, "NOT_FOUND", "NONTGET0404")
	})
}

func TestSendRouteRefusals(t *testing.T) {
	t.Parallel()
	api := newAPI(t, "sqlite")
	cid, _ := seedInvite(t, api)
	path := fmt.Sprintf("/v1/collections/%d/notifications", cid)
	sender := api.token(auth.Principal{Roles: []string{auth.RoleSender}, Collections: []int64{cid}})
	viewer := api.token(auth.Principal{Roles: []string{auth.RoleViewer}, Collections: []int64{cid}})

	res := api.do(http.MethodPost, path, viewer, sendBody)
	requireError(t, res, http.StatusForbidden, "PERMISSION_DENIED", "NONTSND0403")

	for _, tc := range []struct{ name, body, field string }{
		{"not json", `{"notification": [`, "body"},
		{"unknown field", `{"notification": [{"name": "A", "recipients": [{}]}], "extra": 1}`, "extra"},
		{"wrong type", `{"notification": [{"name": 5, "recipients": [{}]}]}`, "notification.name"},
		{"no recipients", `{"notification": [{"name": "A", "recipients": []}]}`, "notification[0].recipients"},
		{"other collection", fmt.Sprintf(`{"collectionId": %d, "notification": [{"name": "A", "recipients": [{}]}]}`, cid+1), "collectionId"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res := api.do(http.MethodPost, path, sender, tc.body)
			requireError(t, res, http.StatusBadRequest, "INVALID_ARGUMENT", "NONTSND0400")
			require.Contains(t, details(res), tc.field)
		})
	}
	res = api.do(http.MethodPost, path, sender, sendBody, "Idempotency-Key", strings.Repeat("k", 256))
	requireError(t, res, http.StatusBadRequest, "INVALID_ARGUMENT", "NONTSND0400")

	// An unknown name is accepted and recorded as rejected, with its reason.
	res = api.do(http.MethodPost, path, sender, `{"notification": [{"name": "NOPE", "recipients": [{"email": "a@example.com"}]}]}`)
	require.Equal(t, http.StatusAccepted, res.Code, "body: %s", res.Raw)
	s := res.JSON["notifications"].([]any)[0].(map[string]any)
	require.Equal(t, "rejected", s["status"])
	require.Contains(t, s["reason"], `no ACTIVE event named "NOPE"`)
}

func TestListNotificationsAndDeliveries(t *testing.T) {
	t.Parallel()
	eachDialect(t, func(t *testing.T, api *testAPI) {
		cid, _ := seedInvite(t, api)
		admin := api.token(auth.Principal{Roles: []string{auth.RoleAdmin}, Collections: []int64{cid}})
		path := fmt.Sprintf("/v1/collections/%d/notifications", cid)
		for range 3 {
			res := api.do(http.MethodPost, path, admin, sendBody)
			require.Equal(t, http.StatusAccepted, res.Code)
		}
		res := api.do(http.MethodPost, path, admin, `{"notification": [{"name": "OTHER", "recipients": [{"email": "a@example.com"}]}]}`)
		require.Equal(t, http.StatusAccepted, res.Code)

		// Keyset pages of two.
		var seen []any
		cursor := ""
		for page := 0; page < 5; page++ {
			res := api.do(http.MethodGet, path+"?limit=2&cursor="+cursor, admin, nil)
			require.Equal(t, http.StatusOK, res.Code, "body: %s", res.Raw)
			for _, n := range res.JSON["notifications"].([]any) {
				require.NotContains(t, n.(map[string]any), "recipients", "lists leave recipients out")
				seen = append(seen, n.(map[string]any)["id"])
			}
			cursor, _ = res.JSON["nextCursor"].(string)
			if cursor == "" {
				break
			}
		}
		require.Len(t, seen, 4)

		res = api.do(http.MethodGet, path+"?name=OTHER", admin, nil)
		require.Len(t, res.JSON["notifications"], 1)
		res = api.do(http.MethodGet, path+"?status=rejected", admin, nil)
		require.Len(t, res.JSON["notifications"], 1)
		res = api.do(http.MethodGet, fmt.Sprintf("%s?from=%d", path, time.Now().Add(time.Hour).UnixMilli()), admin, nil)
		require.Empty(t, res.JSON["notifications"])
		res = api.do(http.MethodGet, fmt.Sprintf("%s?to=%d", path, time.Now().Add(time.Hour).UnixMilli()), admin, nil)
		require.Len(t, res.JSON["notifications"], 4)
		res = api.do(http.MethodGet, path+"?status=weird&from=yesterday", admin, nil)
		requireError(t, res, http.StatusBadRequest, "INVALID_ARGUMENT", "NONTLST0400")
		require.Contains(t, details(res), "status")
		require.Contains(t, details(res), "from")

		dpath := fmt.Sprintf("/v1/collections/%d/deliveries", cid)
		res = api.do(http.MethodGet, dpath+"?status=skipped", admin, nil)
		require.Equal(t, http.StatusOK, res.Code, "body: %s", res.Raw)
		require.Len(t, res.JSON["deliveries"], 3)
		res = api.do(http.MethodGet, dpath+"?status=pending&channel=email&limit=2", admin, nil)
		require.Len(t, res.JSON["deliveries"], 2)
		require.NotEmpty(t, res.JSON["nextCursor"])
		res = api.do(http.MethodGet, dpath+"?channel=fax", admin, nil)
		requireError(t, res, http.StatusBadRequest, "INVALID_ARGUMENT", "NODLLST0400")

		// Another collection's rows never show.
		other, _ := seedInvite(t, api)
		res = api.do(http.MethodGet, fmt.Sprintf("/v1/collections/%d/deliveries", other), api.superAdmin(), nil)
		require.Empty(t, res.JSON["deliveries"])
	})
}

// jsonField returns one field of a JSON object.
func jsonField(t *testing.T, doc, field string) any {
	t.Helper()
	var m map[string]any
	require.NoError(t, json.Unmarshal([]byte(doc), &m))
	return m[field]
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	require.NoError(t, err)
	return string(b)
}

// With the queue on but no broker, the API serves and /readyz says the
// consumer is down without failing readiness (the check is not critical).
func TestReadyzReportsTheQueueConsumer(t *testing.T) {
	t.Parallel()
	api := newAPI(t, "sqlite", func(c *config.Config) {
		c.AMQP.Enabled = true
		c.AMQP.URL = "amqp://guest:guest@127.0.0.1:1/"
	})
	res := api.do(http.MethodGet, "/readyz", "", nil)
	require.Equal(t, http.StatusOK, res.Code, "body: %s", res.Raw)
	require.Equal(t, "degraded", res.JSON["status"])
	require.Contains(t, res.JSON["checks"].(map[string]any)["rabbitmq"], "not consuming NotificationQueue")
	require.Equal(t, "ok", res.JSON["checks"].(map[string]any)["database"])
}

// Every bad parameter of a list is reported in one response, not one per try.
func TestNotificationListsReportEveryBadParameter(t *testing.T) {
	t.Parallel()
	api := newAPI(t, "sqlite")
	res := api.do(http.MethodGet, "/v1/collections/1/deliveries?limit=0&cursor=zz&notificationId=x&status=bogus&channel=fax", api.superAdmin(), nil)
	requireError(t, res, http.StatusBadRequest, "INVALID_ARGUMENT", "NODLLST0400")
	got := details(res)
	for _, field := range []string{"limit", "cursor", "notificationId", "status", "channel"} {
		require.Contains(t, got, field, "body: %s", res.Raw)
	}

	res = api.do(http.MethodGet, "/v1/collections/1/notifications?limit=9999&status=bogus", api.superAdmin(), nil)
	requireError(t, res, http.StatusBadRequest, "INVALID_ARGUMENT", "NONTLST0400")
	got = details(res)
	require.Contains(t, got, "limit", "body: %s", res.Raw)
	require.Contains(t, got, "status", "body: %s", res.Raw)
}

// A delivery shows whether an attempt was in doubt and how recovery
// resolved it, and the unknown status is a filter like the others.
func TestDeliveriesShowHowAnInDoubtAttemptWasResolved(t *testing.T) {
	t.Parallel()
	eachDialect(t, func(t *testing.T, api *testAPI) {
		cid, _ := seedInvite(t, api)
		admin := api.token(auth.Principal{Roles: []string{auth.RoleAdmin}, Collections: []int64{cid}})
		res := api.do(http.MethodPost, fmt.Sprintf("/v1/collections/%d/notifications", cid), admin, sendBody)
		require.Equal(t, http.StatusAccepted, res.Code, "body: %s", res.Raw)
		nid := int64(res.JSON["notifications"].([]any)[0].(map[string]any)["id"].(float64))
		var ids []int64
		require.NoError(t, api.DB.Raw("SELECT id FROM deliveries WHERE notification_id = ? AND status <> 'skipped' ORDER BY id", nid).Scan(&ids).Error)
		require.NotEmpty(t, ids)
		require.NoError(t, api.DB.Exec("UPDATE deliveries SET status = 'unknown', in_doubt = 1, reconciled = 'unknown' WHERE id = ?", ids[0]).Error)

		res = api.do(http.MethodGet, fmt.Sprintf("/v1/collections/%d/deliveries?status=unknown", cid), admin, nil)
		require.Equal(t, http.StatusOK, res.Code, "body: %s", res.Raw)
		ds := res.JSON["deliveries"].([]any)
		require.Len(t, ds, 1)
		d := ds[0].(map[string]any)
		require.EqualValues(t, ids[0], d["id"])
		require.Equal(t, "unknown", d["status"])
		require.EqualValues(t, 1, d["inDoubt"])
		require.Equal(t, "unknown", d["reconciled"])

		res = api.do(http.MethodGet, fmt.Sprintf("/v1/collections/%d/notifications/%d", cid, nid), admin, nil)
		require.Equal(t, http.StatusOK, res.Code, "body: %s", res.Raw)
		for _, v := range res.JSON["notification"].(map[string]any)["deliveries"].([]any) {
			d := v.(map[string]any)
			if int64(d["id"].(float64)) == ids[0] {
				require.Equal(t, "unknown", d["reconciled"])
				continue
			}
			require.EqualValues(t, 0, d["inDoubt"], "never in doubt")
			require.Equal(t, "", d["reconciled"])
		}
	})
}
