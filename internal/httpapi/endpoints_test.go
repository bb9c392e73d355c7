package httpapi_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
	"github.com/stretchr/testify/require"

	"github.com/notificationservice/notificationservice/internal/config"
)

// echoReceiver is a real endpoint that echoes HEALTH_CHECKs and keeps every
// other event it gets, with its headers.
type echoReceiver struct {
	*httptest.Server
	mu     sync.Mutex
	events []*http.Request
	bodies [][]byte
}

func newEchoReceiver(t *testing.T) *echoReceiver {
	r := &echoReceiver{}
	r.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		var ev struct {
			Type        string            `json:"type"`
			HealthCheck map[string]string `json:"healthCheck"`
		}
		_ = json.Unmarshal(body, &ev)
		if ev.Type == "HEALTH_CHECK" {
			_, _ = io.WriteString(w, ev.HealthCheck["validation"])
			return
		}
		r.mu.Lock()
		r.events, r.bodies = append(r.events, req), append(r.bodies, body)
		r.mu.Unlock()
	}))
	t.Cleanup(r.Close)
	return r
}

// The REST walk of docs/webhooks.md: register an endpoint (validated at
// once, secret shown), read it back without the secret, send a
// notification, and receive the signed NOTIFICATION_ACCEPTED event.
func TestWebhookEndpointRoutes(t *testing.T) {
	t.Parallel()
	for _, d := range []string{"sqlite", "postgres"} {
		t.Run(d, func(t *testing.T) {
			t.Parallel()
			api := newAPI(t, d, func(c *config.Config) { c.Webhooks.AllowPrivateNetworks = true })
			coll := api.createCollection("webhooks-" + d)
			ev := api.createEvent(coll, "USER_INVITEUSER")
			api.addAction(coll, ev, "invite")
			rcv := newEchoReceiver(t)
			base := fmt.Sprintf("/v1/collections/%d/webhooks", coll)

			res := api.do(http.MethodPost, base, api.superAdmin(), map[string]any{"url": rcv.URL, "eventTypes": []string{"NOTIFICATION_ACCEPTED"}})
			require.Equal(t, http.StatusCreated, res.Code, "body: %s", res.Raw)
			secret := res.JSON["secret"].(string)
			require.Regexp(t, `^whsec_`, secret)
			hook := res.JSON["webhook"].(map[string]any)
			require.Equal(t, "ACTIVE", hook["state"])
			require.Equal(t, true, hook["lastValidation"].(map[string]any)["ok"])
			keys := []string{}
			for k := range hook {
				keys = append(keys, k)
			}
			require.ElementsMatch(t, []string{"id", "collectionId", "url", "description", "eventTypes", "state", "lastValidation", "createdTime", "updatedTime"}, keys)
			one := fmt.Sprintf("%s/%d", base, int64(hook["id"].(float64)))

			for _, path := range []string{one, base, one + "/attempts"} {
				got := api.do(http.MethodGet, path, api.superAdmin(), nil)
				require.Equal(t, http.StatusOK, got.Code, "body: %s", got.Raw)
				require.NotContains(t, string(got.Raw), "secret", path)
				require.NotContains(t, string(got.Raw), "whsec_", path)
			}
			val := api.do(http.MethodPost, one+"/validate", api.superAdmin(), nil)
			require.Equal(t, http.StatusOK, val.Code, "body: %s", val.Raw)
			require.NotContains(t, string(val.Raw), "whsec_")

			bad := api.do(http.MethodPost, base, api.superAdmin(), map[string]any{"url": "ftp://x"})
			require.Equal(t, http.StatusBadRequest, bad.Code)
			require.Equal(t, "url", bad.JSON["details"].([]any)[0].(map[string]any)["field"])

			sent := api.do(http.MethodPost, fmt.Sprintf("/v1/collections/%d/notifications", coll), api.superAdmin(),
				`{"notification": [{"name": "USER_INVITEUSER", "recipients": [{"email": "a@example.com"}]}]}`, "Idempotency-Key", "k-"+d)
			require.Equal(t, http.StatusAccepted, sent.Code, "body: %s", sent.Raw)
			for range 50 {
				_, err := api.App.WebhookSender.Cycle(context.Background())
				require.NoError(t, err)
				rcv.mu.Lock()
				n := len(rcv.events)
				rcv.mu.Unlock()
				if n > 0 {
					break
				}
			}
			rcv.mu.Lock()
			defer rcv.mu.Unlock()
			require.Len(t, rcv.events, 1)
			wh, err := standardwebhooks.NewWebhook(secret)
			require.NoError(t, err)
			require.NoError(t, wh.Verify(rcv.bodies[0], rcv.events[0].Header))
			var got map[string]any
			require.NoError(t, json.Unmarshal(rcv.bodies[0], &got))
			require.Equal(t, "NOTIFICATION_ACCEPTED", got["type"])
			require.Equal(t, fmt.Sprint(coll), got["companyId"])

			del := api.do(http.MethodDelete, one, api.superAdmin(), nil)
			require.Equal(t, http.StatusOK, del.Code, "body: %s", del.Raw)
			require.Equal(t, "NOHKDEL0000", del.JSON["responseCode"])
		})
	}
}

// Without webhooks.allowPrivateNetworks a loopback URL is a 400.
func TestWebhookLoopbackRefused(t *testing.T) {
	t.Parallel()
	api := newAPI(t, "sqlite")
	coll := api.createCollection("webhooks-private")
	res := api.do(http.MethodPost, fmt.Sprintf("/v1/collections/%d/webhooks", coll), api.superAdmin(), map[string]any{"url": "http://127.0.0.1:9/x"})
	require.Equal(t, http.StatusBadRequest, res.Code, "body: %s", res.Raw)
	require.Contains(t, string(res.Raw), "webhooks.allowPrivateNetworks")
}

// addWebhook inserts an endpoint row directly (no HEALTH_CHECK, no network),
// for tests that only need one to address.
func addWebhook(t *testing.T, api *testAPI, collectionID int64) int64 {
	t.Helper()
	require.NoError(t, api.DB.Table("webhooks").Create(map[string]any{
		"collection_id": collectionID, "url": "https://hooks.example.com/x", "state": "PENDING_VALIDATION",
		"secret": "unreadable", "created_time": 1, "updated_time": 1,
	}).Error)
	var id int64
	require.NoError(t, api.DB.Raw("SELECT MAX(id) FROM webhooks").Scan(&id).Error)
	return id
}
