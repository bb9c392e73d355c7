package httpapi_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/notificationservice/notificationservice/internal/config"
	"github.com/notificationservice/notificationservice/internal/outbox"
)

const inviteBody = `{"notification": [{"name": "USER_INVITEUSER", "recipients": [{"email": "a@example.com"}]}]}`

// The producer headers of seed 004's example.
var seedHeaders = []string{
	"tenant", "dodici", "team", "team-inventory", "service", "inventory-manager",
	"entity-id", "000816c3-e9b2-440b-8d27-dfaa4cae00ef",
	"correlation-ids", `{ "order_id": "order-1", "customer_id": "customer-7" }`,
}

// A send without an Idempotency-Key is a 400 naming the header, unless
// http.requireIdempotencyKey is off; the queue is not affected (rabbitmq's
// tests send keyless messages).
func TestSendRequiresIdempotencyKey(t *testing.T) {
	t.Parallel()
	for _, d := range []string{"sqlite", "postgres"} {
		t.Run(d, func(t *testing.T) {
			t.Parallel()
			api := newAPI(t, d)
			cid, _ := seedInvite(t, api)
			path := fmt.Sprintf("/v1/collections/%d/notifications", cid)
			for _, key := range []string{"", "   "} {
				res := api.do(http.MethodPost, path, api.superAdmin(), inviteBody, "Idempotency-Key", key)
				requireError(t, res, http.StatusBadRequest, "INVALID_ARGUMENT", "NONTSND0400")
				require.Contains(t, details(res), "Idempotency-Key", "body: %s", res.Raw)
			}
			var notes int64
			require.NoError(t, api.DB.Raw("SELECT COUNT(*) FROM notifications").Scan(&notes).Error)
			require.Zero(t, notes)

			relaxed := newAPI(t, d, func(c *config.Config) { c.HTTP.RequireIdempotencyKey = false })
			cid, _ = seedInvite(t, relaxed)
			path = fmt.Sprintf("/v1/collections/%d/notifications", cid)
			for range 2 {
				res := relaxed.do(http.MethodPost, path, relaxed.superAdmin(), inviteBody, "Idempotency-Key", "")
				require.Equal(t, http.StatusAccepted, res.Code, "body: %s", res.Raw)
			}
			require.NoError(t, relaxed.DB.Raw("SELECT COUNT(*) FROM notifications").Scan(&notes).Error)
			require.EqualValues(t, 2, notes, "without a key, no dedupe")
		})
	}
}

// The producer headers of a send are validated, kept on the notification,
// searchable in its list, written into its send envelope and carried by the
// NOTIFICATION_ACCEPTED webhook event; the collection's tenant refuses a
// send that names another.
func TestProducerHeaders(t *testing.T) {
	t.Parallel()
	for _, d := range []string{"sqlite", "postgres"} {
		t.Run(d, func(t *testing.T) {
			t.Parallel()
			api := newAPI(t, d, func(c *config.Config) { c.Webhooks.AllowPrivateNetworks = true })
			root := api.superAdmin()
			res := api.do(http.MethodPost, "/v1/collections", root, map[string]any{"name": "producer-" + d, "tenant": "dodici"})
			require.Equal(t, http.StatusCreated, res.Code, "body: %s", res.Raw)
			require.Equal(t, "dodici", res.JSON["collection"].(map[string]any)["tenant"])
			coll := jsonID(t, res, "collection")
			api.addAction(coll, api.createEvent(coll, "USER_INVITEUSER"), "invite")
			rcv := newEchoReceiver(t)
			res = api.do(http.MethodPost, fmt.Sprintf("/v1/collections/%d/webhooks", coll), root,
				map[string]any{"url": rcv.URL, "eventTypes": []string{"NOTIFICATION_ACCEPTED"}})
			require.Equal(t, http.StatusCreated, res.Code, "body: %s", res.Raw)
			path := fmt.Sprintf("/v1/collections/%d/notifications", coll)

			// Bad headers: a 400 naming each, nothing created.
			for _, bad := range []struct{ header, value string }{
				{"correlation-ids", `["order-1"]`},
				{"correlation-ids", `{"order_id": 42}`},
				{"correlation-ids", `{"order_id": "a\u0000b"}`},
				{"correlation-ids", "not json"},
				{"entity-id", strings.Repeat("e", 300)},
				{"tenant", "\xff"},
			} {
				res := api.do(http.MethodPost, path, root, inviteBody, bad.header, bad.value)
				requireError(t, res, http.StatusBadRequest, "INVALID_ARGUMENT", "NONTSND0400")
				require.Contains(t, details(res), bad.header, "%s: %q: %s", bad.header, bad.value, res.Raw)
			}

			// Another tenant: 403, nothing created.
			res = api.do(http.MethodPost, path, root, inviteBody, "tenant", "other")
			requireError(t, res, http.StatusForbidden, "PERMISSION_DENIED", "NONTSND0403")
			require.Contains(t, res.JSON["message"], "another tenant")
			var notes int64
			require.NoError(t, api.DB.Raw("SELECT COUNT(*) FROM notifications").Scan(&notes).Error)
			require.Zero(t, notes)

			res = api.do(http.MethodPost, path, root, inviteBody, seedHeaders...)
			require.Equal(t, http.StatusAccepted, res.Code, "body: %s", res.Raw)
			nid := int64(res.JSON["notificationIds"].([]any)[0].(float64))
			// A second notification with none of the headers, for the filters.
			res = api.do(http.MethodPost, path, root, inviteBody)
			require.Equal(t, http.StatusAccepted, res.Code, "body: %s", res.Raw)

			// On the notification.
			res = api.do(http.MethodGet, fmt.Sprintf("%s/%d", path, nid), root, nil)
			require.Equal(t, http.StatusOK, res.Code, "body: %s", res.Raw)
			n := res.JSON["notification"].(map[string]any)
			require.Equal(t, "dodici", n["tenant"])
			require.Equal(t, "team-inventory", n["team"])
			require.Equal(t, "inventory-manager", n["service"])
			require.Equal(t, "000816c3-e9b2-440b-8d27-dfaa4cae00ef", n["entityId"])
			corr := n["correlation"].(map[string]any)
			require.Equal(t, "order-1", corr["order_id"])
			require.Equal(t, "customer-7", corr["customer_id"])

			// In the list, by entity id and by any correlation id.
			list := func(query string) []int64 {
				t.Helper()
				res := api.do(http.MethodGet, path+"?"+query, root, nil)
				require.Equal(t, http.StatusOK, res.Code, "body: %s", res.Raw)
				ids := []int64{}
				for _, n := range res.JSON["notifications"].([]any) {
					m := n.(map[string]any)
					ids = append(ids, int64(m["id"].(float64)))
					if m["id"].(float64) == float64(nid) {
						require.Equal(t, "dodici", m["tenant"], "the list shows the headers too")
					}
				}
				return ids
			}
			require.Len(t, list(""), 2)
			require.Equal(t, []int64{nid}, list("entityId=000816c3-e9b2-440b-8d27-dfaa4cae00ef"))
			require.Empty(t, list("entityId=000816c3"))
			require.Equal(t, []int64{nid}, list("correlationId=order-1"))
			require.Equal(t, []int64{nid}, list("correlationId=customer-7"))
			require.Equal(t, []int64{nid}, list("entityId=000816c3-e9b2-440b-8d27-dfaa4cae00ef&correlationId=customer-7"))
			require.Empty(t, list("correlationId=order"))
			require.Empty(t, list("correlationId=order_id"), "values match, not keys")
			res = api.do(http.MethodGet, path+"?correlationId="+url.QueryEscape("\xff"), root, nil)
			requireError(t, res, http.StatusBadRequest, "INVALID_ARGUMENT", "NONTLST0400")

			// In the send envelope's detail.
			types, envs := api.envelopes()
			var send *outbox.Detail
			for i, dt := range types {
				if dt == outbox.NotificationsSend && send == nil {
					send = &envs[i]
				}
			}
			require.NotNil(t, send)
			require.NotNil(t, send.Producer)
			require.Equal(t, "dodici", send.Tenant)
			require.Equal(t, "team-inventory", send.Team)
			require.Equal(t, "inventory-manager", send.Service)
			require.Equal(t, "000816c3-e9b2-440b-8d27-dfaa4cae00ef", send.EntityID)
			require.Equal(t, "order-1", send.Correlation["order_id"])

			// In the webhook event for the notification.
			for range 50 {
				_, err := api.App.WebhookSender.Cycle(context.Background())
				require.NoError(t, err)
				rcv.mu.Lock()
				n := len(rcv.events)
				rcv.mu.Unlock()
				if n >= 2 {
					break
				}
			}
			rcv.mu.Lock()
			defer rcv.mu.Unlock()
			require.Len(t, rcv.bodies, 2)
			// Two events, one per send, in whatever order the fan-out
			// delivered them: the headerless one has the fields empty.
			got := map[string]map[string]any{}
			for _, body := range rcv.bodies {
				var ev struct {
					Type         string         `json:"type"`
					Notification map[string]any `json:"notification"`
				}
				require.NoError(t, json.Unmarshal(body, &ev))
				require.Equal(t, "NOTIFICATION_ACCEPTED", ev.Type)
				require.Equal(t, "USER_INVITEUSER", ev.Notification["name"])
				tenant, _ := ev.Notification["tenant"].(string)
				got[tenant] = ev.Notification
			}
			require.Contains(t, got, "")
			withHeaders := got["dodici"]
			require.NotNil(t, withHeaders, "events: %v", got)
			require.Equal(t, "team-inventory", withHeaders["team"])
			require.Equal(t, "inventory-manager", withHeaders["service"])
			require.Equal(t, "000816c3-e9b2-440b-8d27-dfaa4cae00ef", withHeaders["entityId"])
			require.Equal(t, "customer-7", withHeaders["correlation"].(map[string]any)["customer_id"])
		})
	}
}

// A collection's tenant is created, read, changed and cleared through the
// API; a collection without one stores a send's tenant and checks nothing.
func TestCollectionTenant(t *testing.T) {
	t.Parallel()
	eachDialect(t, func(t *testing.T, api *testAPI) {
		root := api.superAdmin()
		coll := api.createCollection("tenantless")
		res := api.do(http.MethodGet, collectionPath(coll), root, nil)
		require.Equal(t, "", res.JSON["collection"].(map[string]any)["tenant"])
		api.addAction(coll, api.createEvent(coll, "USER_INVITEUSER"), "invite")
		path := fmt.Sprintf("/v1/collections/%d/notifications", coll)
		res = api.do(http.MethodPost, path, root, inviteBody, "tenant", "anyone")
		require.Equal(t, http.StatusAccepted, res.Code, "body: %s", res.Raw)
		nid := int64(res.JSON["notificationIds"].([]any)[0].(float64))
		res = api.do(http.MethodGet, fmt.Sprintf("%s/%d", path, nid), root, nil)
		require.Equal(t, "anyone", res.JSON["notification"].(map[string]any)["tenant"])

		// PATCH sets it: the next send from another tenant is refused (the
		// resolver's cache hears of the change).
		res = api.do(http.MethodPatch, collectionPath(coll), root, map[string]any{"tenant": "dodici"})
		require.Equal(t, http.StatusOK, res.Code, "body: %s", res.Raw)
		require.Equal(t, "dodici", res.JSON["collection"].(map[string]any)["tenant"])
		res = api.do(http.MethodPost, path, root, inviteBody, "tenant", "anyone")
		requireError(t, res, http.StatusForbidden, "PERMISSION_DENIED", "NONTSND0403")
		require.Contains(t, details(res), "tenant")
		res = api.do(http.MethodPost, path, root, inviteBody, "tenant", "dodici")
		require.Equal(t, http.StatusAccepted, res.Code, "body: %s", res.Raw)
		res = api.do(http.MethodPost, path, root, inviteBody)
		require.Equal(t, http.StatusAccepted, res.Code, "no tenant header: not checked; body: %s", res.Raw)

		types, envs := api.envelopes()
		last := -1
		for i, dt := range types {
			if dt == outbox.CollectionUpdate {
				last = i
			}
		}
		require.GreaterOrEqual(t, last, 0)
		var payload struct {
			Collection map[string]any `json:"collection"`
		}
		require.NoError(t, json.Unmarshal(envs[last].Payload, &payload))
		require.Equal(t, "dodici", payload.Collection["tenant"], "the update envelope carries the tenant")

		res = api.do(http.MethodPatch, collectionPath(coll), root, map[string]any{"tenant": ""})
		require.Equal(t, http.StatusOK, res.Code, "body: %s", res.Raw)
		res = api.do(http.MethodPost, path, root, inviteBody, "tenant", "anyone")
		require.Equal(t, http.StatusAccepted, res.Code, "cleared: not checked; body: %s", res.Raw)

		for _, bad := range []string{" dodici", strings.Repeat("t", 129), "a\u0000b"} {
			res = api.do(http.MethodPost, "/v1/collections", root, map[string]any{"name": "bad-tenant", "tenant": bad})
			requireError(t, res, http.StatusBadRequest, "INVALID_ARGUMENT", "NOCOCRT0400")
			require.Contains(t, details(res), "tenant")
		}
	})
}

// The access log line of a send carries its producer headers.
func TestSendAccessLogCarriesTheProducer(t *testing.T) {
	t.Parallel()
	var logs syncBuffer
	api := serveAPI(t, "sqlite", &logs, nil)
	cid, _ := seedInvite(t, api.testAPI)
	res := api.do(http.MethodPost, fmt.Sprintf("/v1/collections/%d/notifications", cid), api.superAdmin(), inviteBody, seedHeaders...)
	require.Equal(t, http.StatusAccepted, res.Code, "body: %s", res.Raw)
	var line map[string]any
	for l := range strings.SplitSeq(logs.String(), "\n") {
		if strings.Contains(l, `"msg":"http request"`) && strings.Contains(l, "/notifications") {
			require.NoError(t, json.Unmarshal([]byte(l), &line))
		}
	}
	require.NotNil(t, line, "no access log line for the send:\n%s", logs.String())
	require.Equal(t, "dodici", line["tenant"])
	require.Equal(t, "team-inventory", line["team"])
	require.Equal(t, "inventory-manager", line["service"])
	require.Equal(t, "000816c3-e9b2-440b-8d27-dfaa4cae00ef", line["entityId"])
}
