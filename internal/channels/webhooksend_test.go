package channels_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
	"github.com/stretchr/testify/require"

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
			return channeltest.Fixture{Channel: ch, Calls: f.count,
				Secrets: []string{conformanceWebhookSecret, conformanceWebhookSecret[len("whsec_"):]}}
		},
		Message: func(i int) channels.Message { return webhookMsg(i, 0) },
		// An endpoint the collection does not have: refused without a call.
		Invalid: func(i int) channels.Message { return webhookMsg(i, 99) },
	}
}
