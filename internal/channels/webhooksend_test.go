package channels_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"

	"github.com/notificationservice/notificationservice/internal/channels"
	"github.com/notificationservice/notificationservice/internal/channels/channeltest"
	"github.com/notificationservice/notificationservice/internal/channels/webhookout"
)

// conformanceWebhookSecret signs the webhook row's events; it must show in
// no error and no log.
const conformanceWebhookSecret = "whsec_Y29uZm9ybWFuY2Utd2ViaG9vay1zaWduaW5nLXNlY3JldA=="

// fakeEndpoints is a registry of endpoints for the webhook channel, keyed
// by id; every endpoint belongs to collection 1.
type fakeEndpoints struct {
	mu       sync.Mutex
	eps      []channels.WebhookEndpoint
	attempts []webhookout.Result
}

func (f *fakeEndpoints) Endpoints(_ context.Context, collectionID, id int64, _ time.Time) ([]channels.WebhookEndpoint, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []channels.WebhookEndpoint
	for _, ep := range f.eps {
		if collectionID == 1 && (id == 0 || ep.ID == id) {
			out = append(out, ep)
		}
	}
	return out, nil
}

func (f *fakeEndpoints) Attempted(_ context.Context, _ int64, _, _ string, _ time.Time, res webhookout.Result) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.attempts = append(f.attempts, res)
}

// webhookMsg is a message of a SendWebhookConfig action of collection 1.
func webhookMsg(i int, webhookID int64) channels.Message {
	return channels.Message{
		DeliveryID: int64(i), NotificationID: int64(100 + i), CollectionID: 1, ActionID: 7, Channel: channels.ChannelWebhook,
		WebhookID: webhookID, Notification: "USER_INVITEUSER", Recipient: json.RawMessage(fmt.Sprintf(`{"id":"u%d"}`, i)),
		Macros: map[string]string{"FNAME": fmt.Sprint("user ", i)}, Body: fmt.Sprintf("hello user %d", i),
	}
}

// webhookRow is the webhook channel against a receiver that verifies every
// signature with the standard-webhooks library, as a customer's would.
func webhookRow() channeltest.Row {
	return channeltest.Row{
		Name: "webhook", Provider: channels.WebhookName,
		Features: channeltest.Features{Remote: true, Secrets: true, Lacks: map[channeltest.Feature]string{
			channeltest.Pacing:    "an endpoint is the customer's own server: it answers 429 with Retry-After when it wants less, which the workers honour",
			channeltest.Reconcile: "an endpoint has no API listing what it received; the stable webhook-id lets it drop a resend",
			channeltest.InDoubt:   "a lost answer is sent again: every attempt carries the message's webhook-id, by which a receiver drops a repeat (Standard Webhooks)",
		}},
		Setup: func(t *testing.T, o channeltest.Options) channeltest.Fixture {
			wh, err := standardwebhooks.NewWebhook(conformanceWebhookSecret)
			require.NoError(t, err)
			f := newConformanceFake(t, o, func(w http.ResponseWriter, r *http.Request, body []byte, n int) string {
				if err := wh.Verify(body, r.Header); err != nil {
					w.WriteHeader(http.StatusUnauthorized)
					t.Errorf("signature does not verify: %v", err)
					return ""
				}
				w.WriteHeader(http.StatusNoContent)
				return ""
			}, func(status int, reason string) func(w http.ResponseWriter, r *http.Request, body []byte, n int) {
				return func(w http.ResponseWriter, r *http.Request, body []byte, n int) {
					w.WriteHeader(status)
					_, _ = w.Write([]byte(reason))
				}
			})
			eps := &fakeEndpoints{eps: []channels.WebhookEndpoint{
				{ID: 1, URL: f.URL, State: "ACTIVE", Active: true, Secrets: []string{conformanceWebhookSecret}},
			}}
			client := webhookout.New(webhookout.Config{Timeout: o.Timeout, AllowPrivateNetworks: true})
			ch := channels.NewWebhook(eps, client, o.Timeout, o.Log)
			return channeltest.Fixture{Channel: ch, Calls: f.count, Close: f.Close,
				Secrets: []string{conformanceWebhookSecret, conformanceWebhookSecret[len("whsec_"):]}}
		},
		Message: func(i int) channels.Message { return webhookMsg(i, 0) },
		// An endpoint the collection does not have: refused without a call.
		Invalid: func(i int) channels.Message { return webhookMsg(i, 99) },
	}
}

// newWebhookChannel is the webhook channel over eps against a receiver
// answering respond, with a fixed clock.
func newWebhookChannel(t *testing.T, eps *fakeEndpoints, respond func(w http.ResponseWriter, r *http.Request, body []byte, n int)) (*channels.Webhook, *fake) {
	t.Helper()
	f := newFake(t, respond)
	for i := range eps.eps {
		if eps.eps[i].URL == "" {
			eps.eps[i].URL = f.URL + fmt.Sprintf("/hook/%d", eps.eps[i].ID)
		}
		eps.eps[i].Secrets = []string{conformanceWebhookSecret}
	}
	ch := channels.NewWebhook(eps, webhookout.New(webhookout.Config{Timeout: 5 * time.Second, AllowPrivateNetworks: true}), 5*time.Second, nil)
	channels.SetWebhookClock(ch, func() time.Time { return time.Date(2026, 12, 3, 19, 0, 0, 0, time.UTC) })
	return ch, f
}

// The event a receiver gets, byte for byte: the typed-event shape with the
// notification's name, the recipient, the macros and the rendered body.
func TestWebhookEventGolden(t *testing.T) {
	t.Parallel()
	eps := &fakeEndpoints{eps: []channels.WebhookEndpoint{{ID: 1, State: "ACTIVE", Active: true}}}
	ch, f := newWebhookChannel(t, eps, func(w http.ResponseWriter, r *http.Request, body []byte, n int) {})
	res := ch.Send(context.Background(), []channels.Message{webhookMsg(3, 0)})
	require.NoError(t, res[0].Err)
	require.Equal(t, "evt_delivery_3", res[0].ProviderMessageID)
	reqs := f.requests()
	require.Len(t, reqs, 1)
	require.Equal(t, "evt_delivery_3", reqs[0].Header.Get("webhook-id"))
	golden(t, "webhook/notification.json", reqs[0].Body)
	require.Len(t, eps.attempts, 1, "the attempt is logged for the endpoint")
}

// Which endpoints a message goes to, and what a delivery becomes when none
// may receive it or an endpoint refuses: each case's error class and words.
func TestWebhookChannelTargetsAndClasses(t *testing.T) {
	t.Parallel()
	answer := func(status int, header ...string) func(w http.ResponseWriter, r *http.Request, body []byte, n int) {
		return func(w http.ResponseWriter, r *http.Request, body []byte, n int) {
			for i := 0; i+1 < len(header); i += 2 {
				w.Header().Set(header[i], header[i+1])
			}
			w.WriteHeader(status)
			_, _ = w.Write([]byte("endpoint says no"))
		}
	}
	active := func(id int64) channels.WebhookEndpoint {
		return channels.WebhookEndpoint{ID: id, State: "ACTIVE", Active: true}
	}
	for _, tc := range []struct {
		name       string
		eps        []channels.WebhookEndpoint
		webhookID  int64
		respond    func(w http.ResponseWriter, r *http.Request, body []byte, n int)
		calls      int
		permanent  bool // when failing
		ok         bool
		reason     string
		retryAfter time.Duration
	}{
		{name: "named endpoint pending", eps: []channels.WebhookEndpoint{{ID: 5, State: "PENDING_VALIDATION"}}, webhookID: 5,
			permanent: true, reason: "webhook 5 is PENDING_VALIDATION: only ACTIVE endpoints receive notifications"},
		{name: "named endpoint disabled", eps: []channels.WebhookEndpoint{{ID: 5, State: "DISABLED"}}, webhookID: 5,
			permanent: true, reason: "webhook 5 is DISABLED"},
		{name: "named endpoint gone", webhookID: 5, permanent: true, reason: "webhook 5 does not exist in collection 1"},
		{name: "no active endpoint", eps: []channels.WebhookEndpoint{{ID: 1, State: "PENDING_VALIDATION"}, {ID: 2, State: "DISABLED"}},
			permanent: true, reason: "collection 1 has no ACTIVE webhook endpoint for NOTIFICATION_WEBHOOK (webhook 1 is PENDING_VALIDATION, webhook 2 is DISABLED)"},
		{name: "no endpoint", permanent: true, reason: "collection 1 has no webhook endpoint taking NOTIFICATION_WEBHOOK events"},
		{name: "only active ones that subscribe", eps: []channels.WebhookEndpoint{
			active(1), {ID: 2, State: "ACTIVE", Active: true, EventTypes: []string{"DELIVERY_FAILED"}}, {ID: 3, State: "PENDING_VALIDATION"},
			{ID: 4, State: "ACTIVE", Active: true, EventTypes: []string{"NOTIFICATION_WEBHOOK"}}},
			respond: answer(http.StatusOK), calls: 2, ok: true},
		{name: "redirect", eps: []channels.WebhookEndpoint{active(1)}, respond: answer(http.StatusFound, "Location", "http://169.254.169.254/"),
			calls: 1, permanent: true, reason: "webhook 1 answered 302: endpoint says no (redirects are not followed)"},
		{name: "bad request", eps: []channels.WebhookEndpoint{active(1)}, respond: answer(http.StatusGone),
			calls: 1, permanent: true, reason: "webhook 1 answered 410: endpoint says no"},
		{name: "request timeout", eps: []channels.WebhookEndpoint{active(1)}, respond: answer(http.StatusRequestTimeout),
			calls: 1, reason: "webhook 1 answered 408"},
		{name: "unavailable with Retry-After", eps: []channels.WebhookEndpoint{active(1)}, respond: answer(http.StatusServiceUnavailable, "Retry-After", "120"),
			calls: 1, reason: "webhook 1 answered 503", retryAfter: 2 * time.Minute},
		{name: "one of two fails", eps: []channels.WebhookEndpoint{active(1), active(2)},
			respond: func(w http.ResponseWriter, r *http.Request, body []byte, n int) {
				if r.URL.Path == "/hook/2" {
					w.WriteHeader(http.StatusInternalServerError)
				}
			},
			calls: 2, reason: "webhook 2 answered 500 (delivered to webhook 1)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			respond := tc.respond
			if respond == nil {
				respond = answer(http.StatusOK)
			}
			ch, f := newWebhookChannel(t, &fakeEndpoints{eps: tc.eps}, respond)
			res := ch.Send(context.Background(), []channels.Message{webhookMsg(1, tc.webhookID)})
			require.Len(t, res, 1)
			require.Equal(t, tc.calls, f.count(), "POSTs made")
			if tc.ok {
				require.NoError(t, res[0].Err)
				return
			}
			e := channels.Classify(channels.WebhookName, res[0].Err)
			require.Equal(t, tc.permanent, e.Permanent, "%v", e)
			require.Contains(t, e.Reason, tc.reason)
			require.Equal(t, tc.retryAfter, e.RetryAfter)
		})
	}
}

// docs/asyncapi.yaml's NOTIFICATION_WEBHOOK example is the golden event,
// value for value, so the document shows what a receiver gets.
func TestWebhookEventIsDocumented(t *testing.T) {
	t.Parallel()
	raw, err := os.ReadFile(filepath.Join("..", "..", "docs", "asyncapi.yaml"))
	require.NoError(t, err)
	var doc struct {
		Components struct {
			Messages map[string]struct {
				Name     string `yaml:"name"`
				Examples []struct {
					Payload map[string]any `yaml:"payload"`
				} `yaml:"examples"`
			} `yaml:"messages"`
		} `yaml:"components"`
	}
	require.NoError(t, yaml.Unmarshal(raw, &doc))
	msg, ok := doc.Components.Messages["notificationWebhook"]
	require.True(t, ok, "docs/asyncapi.yaml has no notificationWebhook message")
	require.Equal(t, "NOTIFICATION_WEBHOOK", msg.Name)
	require.NotEmpty(t, msg.Examples)
	example, err := json.Marshal(msg.Examples[0].Payload)
	require.NoError(t, err)
	golden, err := os.ReadFile(filepath.Join("testdata", "webhook", "notification.json"))
	require.NoError(t, err)
	require.JSONEq(t, string(golden), string(example))
}
