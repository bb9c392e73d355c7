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
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
	"github.com/stretchr/testify/require"

	"github.com/notificationservice/notificationservice/internal/config"
)

// hookReceiver is a customer endpoint: it echoes HEALTH_CHECKs when echo
// is set, answers the first failFirst NOTIFICATION_WEBHOOK events with 500,
// and keeps every request with what it answered.
type hookReceiver struct {
	*httptest.Server
	echo      bool
	failFirst int

	mu    sync.Mutex
	posts []hookPost
}

type hookPost struct {
	header http.Header
	body   []byte
	typ    string
	status int
}

func newHookReceiver(t *testing.T, echo bool, failFirst int) *hookReceiver {
	r := &hookReceiver{echo: echo, failFirst: failFirst}
	r.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		var ev struct {
			Type        string            `json:"type"`
			HealthCheck map[string]string `json:"healthCheck"`
		}
		_ = json.Unmarshal(body, &ev)
		r.mu.Lock()
		defer r.mu.Unlock()
		status := http.StatusOK
		if ev.Type == "NOTIFICATION_WEBHOOK" && r.failFirst > 0 {
			r.failFirst--
			status = http.StatusInternalServerError
		}
		r.posts = append(r.posts, hookPost{header: req.Header.Clone(), body: body, typ: ev.Type, status: status})
		w.WriteHeader(status)
		if ev.Type == "HEALTH_CHECK" && r.echo {
			_, _ = io.WriteString(w, ev.HealthCheck["validation"])
		}
	}))
	t.Cleanup(r.Close)
	return r
}

// of returns the posts of event type typ.
func (r *hookReceiver) of(typ string) []hookPost {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []hookPost
	for _, p := range r.posts {
		if p.typ == typ {
			out = append(out, p)
		}
	}
	return out
}

// An action SendWebhookConfig sends each recipient of a send as one signed
// NOTIFICATION_WEBHOOK event to the collection's ACTIVE endpoint, through
// the delivery pipeline: a 500 is retried with the same webhook-id, so the
// receiver gets each exactly once; an endpoint still PENDING_VALIDATION gets
// no traffic, and the action naming it fails its deliveries saying why.
func TestWebhookChannelSendsThroughThePipeline(t *testing.T) {
	t.Parallel()
	for _, d := range []string{"sqlite", "postgres"} {
		t.Run(d, func(t *testing.T) {
			t.Parallel()
			api := newAPI(t, d, func(c *config.Config) {
				c.Webhooks.AllowPrivateNetworks = true
				// The webhook channel's own schedule (webhooks.*), not
				// dispatch.*: with dispatch's an hour, a retry within the
				// test shows the webhook schedule is the one used.
				c.Dispatch.BackoffBase, c.Dispatch.BackoffMax = time.Hour, time.Hour
				c.Webhooks.BackoffBase, c.Webhooks.BackoffMax = time.Millisecond, 2*time.Millisecond
			})
			coll := api.createCollection("whchannel-" + d)
			ev := api.createEvent(coll, "USER_INVITEUSER")
			hooks := fmt.Sprintf("/v1/collections/%d/webhooks", coll)

			good := newHookReceiver(t, true, 1)
			res := api.do(http.MethodPost, hooks, api.superAdmin(), map[string]any{"url": good.URL})
			require.Equal(t, http.StatusCreated, res.Code, "body: %s", res.Raw)
			require.Equal(t, "ACTIVE", res.JSON["webhook"].(map[string]any)["state"])
			secret := res.JSON["secret"].(string)

			mute := newHookReceiver(t, false, 0)
			res = api.do(http.MethodPost, hooks, api.superAdmin(), map[string]any{"url": mute.URL})
			require.Equal(t, http.StatusCreated, res.Code, "body: %s", res.Raw)
			require.Equal(t, "PENDING_VALIDATION", res.JSON["webhook"].(map[string]any)["state"])
			muteID := int64(res.JSON["webhook"].(map[string]any)["id"].(float64))

			actions := fmt.Sprintf("/v1/collections/%d/actions", coll)
			res = api.do(http.MethodPost, actions, api.superAdmin(), map[string]any{
				"name": "to every endpoint", "eventId": ev, "configName": "SendWebhookConfig",
				"config": map[string]any{"body": "Hello {{FNAME}}"},
			})
			require.Equal(t, http.StatusCreated, res.Code, "body: %s", res.Raw)
			allAction := int64(res.JSON["action"].(map[string]any)["id"].(float64))
			res = api.do(http.MethodPost, actions, api.superAdmin(), map[string]any{
				"name": "to the pending one", "eventId": ev, "configName": "SendWebhookConfig",
				"config": map[string]any{"webhookId": muteID},
			})
			require.Equal(t, http.StatusCreated, res.Code, "body: %s", res.Raw)
			pendingAction := int64(res.JSON["action"].(map[string]any)["id"].(float64))

			res = api.do(http.MethodPost, fmt.Sprintf("/v1/collections/%d/notifications", coll), api.superAdmin(), map[string]any{
				"notification": []map[string]any{{"name": "USER_INVITEUSER", "recipients": []map[string]any{
					{"id": "u1", "email": "ann@example.com", "macros": map[string]string{"FNAME": "Ann"}},
					{"id": "u2", "phone": "+14155550100", "macros": map[string]string{"FNAME": "Bob"}},
				}}},
			}, "Idempotency-Key", "whchannel-"+d)
			require.Equal(t, http.StatusAccepted, res.Code, "body: %s", res.Raw)

			// Until both deliveries got a 2xx: the first POST fails with 500
			// and its delivery is retried after the (shortened) backoff.
			deadline := time.Now().Add(20 * time.Second)
			for {
				_, err := api.App.Dispatcher.RunOnce(context.Background())
				require.NoError(t, err)
				ok := 0
				for _, p := range good.of("NOTIFICATION_WEBHOOK") {
					if p.status == http.StatusOK {
						ok++
					}
				}
				if ok >= 2 {
					break
				}
				require.True(t, time.Now().Before(deadline), "the receiver never got both events: %d", ok)
				time.Sleep(5 * time.Millisecond)
			}
			_, err := api.App.Dispatcher.RunOnce(context.Background())
			require.NoError(t, err)

			wh, err := standardwebhooks.NewWebhook(secret)
			require.NoError(t, err)
			posts := good.of("NOTIFICATION_WEBHOOK")
			require.Len(t, posts, 3, "two events, one of them twice (500, then 200)")
			okByID := map[string]int{}
			failedIDs := []string{}
			events := map[string]map[string]any{} // by FNAME
			for _, p := range posts {
				require.NoError(t, wh.Verify(p.body, p.header), "signed with the endpoint's secret")
				id := p.header.Get("webhook-id")
				if p.status != http.StatusOK {
					failedIDs = append(failedIDs, id)
					continue
				}
				okByID[id]++
				var e map[string]any
				require.NoError(t, json.Unmarshal(p.body, &e))
				require.Equal(t, id, e["id"], "the event id is the webhook-id")
				require.Equal(t, "NOTIFICATION_WEBHOOK", e["type"])
				require.Equal(t, fmt.Sprint(coll), e["companyId"])
				n := e["notification"].(map[string]any)
				require.Equal(t, "USER_INVITEUSER", n["name"])
				require.EqualValues(t, allAction, n["actionId"])
				macros := n["macros"].(map[string]any)
				events[macros["FNAME"].(string)] = n
			}
			require.Len(t, okByID, 2, "one webhook-id per recipient")
			for id, k := range okByID {
				require.Equal(t, 1, k, "exactly once per webhook-id: %s", id)
			}
			require.Len(t, failedIDs, 1)
			require.Contains(t, okByID, failedIDs[0], "the retry carried the failed attempt's webhook-id")

			require.Equal(t, "Hello Ann", events["Ann"]["body"], "the body template, rendered with the recipient's macros")
			require.Equal(t, map[string]any{"id": "u1", "email": "ann@example.com"}, events["Ann"]["recipient"], "the recipient, without its macros")
			require.Equal(t, "Hello Bob", events["Bob"]["body"])
			require.Equal(t, map[string]any{"id": "u2", "phone": "+14155550100"}, events["Bob"]["recipient"])

			require.Empty(t, mute.of("NOTIFICATION_WEBHOOK"), "a PENDING_VALIDATION endpoint gets nothing")

			// The status API shows every delivery: the two sent to every
			// endpoint (one after a retry), the two for the pending
			// endpoint failed with the reason.
			res = api.do(http.MethodGet, fmt.Sprintf("/v1/collections/%d/deliveries?channel=webhook", coll), api.superAdmin(), nil)
			require.Equal(t, http.StatusOK, res.Code, "body: %s", res.Raw)
			ds := res.JSON["deliveries"].([]any)
			require.Len(t, ds, 4, "one per recipient × action")
			attempts := 0
			for _, x := range ds {
				dl := x.(map[string]any)
				switch int64(dl["actionId"].(float64)) {
				case allAction:
					require.Equal(t, "sent", dl["status"], "%v", dl)
					require.Equal(t, "webhook:*", dl["address"])
					require.Equal(t, "webhook", dl["provider"])
					require.Contains(t, okByID, dl["providerMessageId"])
					attempts += int(dl["attempts"].(float64))
				case pendingAction:
					require.Equal(t, "failed", dl["status"], "%v", dl)
					require.Equal(t, fmt.Sprintf("webhook:%d", muteID), dl["address"])
					require.Contains(t, dl["reason"], "PENDING_VALIDATION")
					require.Contains(t, dl["reason"], "only ACTIVE endpoints receive notifications")
				}
			}
			require.Equal(t, 3, attempts, "the failed POST was attempted twice")
		})
	}
}

// A SendWebhookConfig action's config is checked on save: an endpoint of
// another collection (or none), a negative id, and the email fields are
// each a 400 naming the field.
func TestWebhookActionConfigIsValidated(t *testing.T) {
	t.Parallel()
	api := newAPI(t, "sqlite")
	coll := api.createCollection("whchannel-validate")
	other := api.createCollection("whchannel-other")
	ev := api.createEvent(coll, "USER_INVITEUSER")
	foreign := addWebhook(t, api, other)
	own := addWebhook(t, api, coll)
	actions := fmt.Sprintf("/v1/collections/%d/actions", coll)
	for _, tc := range []struct {
		name   string
		config map[string]any
		field  string
	}{
		{"another collection's endpoint", map[string]any{"webhookId": foreign}, "config.webhookId"},
		{"no such endpoint", map[string]any{"webhookId": 987654}, "config.webhookId"},
		{"negative id", map[string]any{"webhookId": -1}, "config.webhookId"},
		{"email fields", map[string]any{"subject": "Hi"}, "config.subject"},
		{"a body that does not parse", map[string]any{"body": "Hello {{#if}}"}, "config.body"},
	} {
		res := api.do(http.MethodPost, actions, api.superAdmin(), map[string]any{
			"name": tc.name, "eventId": ev, "configName": "SendWebhookConfig", "config": tc.config,
		})
		requireError(t, res, http.StatusBadRequest, "INVALID_ARGUMENT", "NOACCRT0400")
		require.Contains(t, details(res), tc.field, "%s: %s", tc.name, res.Raw)
	}
	res := api.do(http.MethodPost, actions, api.superAdmin(), map[string]any{
		"name": "email with a webhook", "eventId": ev, "configName": "SendEmailConfig",
		"config": map[string]any{"subject": "s", "text": "t", "webhookId": own},
	})
	requireError(t, res, http.StatusBadRequest, "INVALID_ARGUMENT", "NOACCRT0400")
	require.Contains(t, details(res), "config.webhookId")

	res = api.do(http.MethodPost, actions, api.superAdmin(), map[string]any{
		"name": "own endpoint", "eventId": ev, "configName": "SendWebhookConfig", "config": map[string]any{"webhookId": own},
	})
	require.Equal(t, http.StatusCreated, res.Code, "body: %s", res.Raw)
	require.EqualValues(t, own, res.JSON["action"].(map[string]any)["config"].(map[string]any)["webhookId"])
}

// A test-send of a SendWebhookConfig action POSTs for real, under a
// webhook-id of its own each time, so a receiver that deduplicates sees
// two test-sends as two.
func TestWebhookActionTestSend(t *testing.T) {
	t.Parallel()
	api := newAPI(t, "sqlite", func(c *config.Config) { c.Webhooks.AllowPrivateNetworks = true })
	coll := api.createCollection("whchannel-testsend")
	ev := api.createEvent(coll, "USER_INVITEUSER")
	rcv := newHookReceiver(t, true, 0)
	res := api.do(http.MethodPost, fmt.Sprintf("/v1/collections/%d/webhooks", coll), api.superAdmin(), map[string]any{"url": rcv.URL})
	require.Equal(t, http.StatusCreated, res.Code, "body: %s", res.Raw)
	res = api.do(http.MethodPost, fmt.Sprintf("/v1/collections/%d/actions", coll), api.superAdmin(), map[string]any{
		"name": "hook", "eventId": ev, "configName": "SendWebhookConfig", "config": map[string]any{"body": "Hi {{FNAME}}"},
	})
	require.Equal(t, http.StatusCreated, res.Code, "body: %s", res.Raw)
	aid := int64(res.JSON["action"].(map[string]any)["id"].(float64))
	path := fmt.Sprintf("/v1/collections/%d/actions/%d/test-send", coll, aid)
	for range 2 {
		res = api.do(http.MethodPost, path, api.superAdmin(), map[string]any{"macros": map[string]string{"FNAME": "Ann"}})
		require.Equal(t, http.StatusOK, res.Code, "body: %s", res.Raw)
		ts := res.JSON["testSend"].(map[string]any)
		require.Equal(t, "sent", ts["status"], "%v", ts)
		require.Equal(t, "webhook", ts["provider"])
	}
	posts := rcv.of("NOTIFICATION_WEBHOOK")
	require.Len(t, posts, 2)
	require.NotEqual(t, posts[0].header.Get("webhook-id"), posts[1].header.Get("webhook-id"))
	require.Regexp(t, `^evt_test_`, posts[0].header.Get("webhook-id"))
	var e map[string]any
	require.NoError(t, json.Unmarshal(posts[0].body, &e))
	require.Equal(t, "Hi Ann", e["notification"].(map[string]any)["body"])
}
