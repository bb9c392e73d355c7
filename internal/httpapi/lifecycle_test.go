package httpapi_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"flag"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"

	"github.com/notificationservice/notificationservice/internal/actions"
	"github.com/notificationservice/notificationservice/internal/config"
	"github.com/notificationservice/notificationservice/internal/dispatch"
	"github.com/notificationservice/notificationservice/internal/dispatch/intake"
)

var updateGolden = flag.Bool("update", false, "rewrite the golden files under testdata/")

// received returns the bodies rcv got, decoded, and checks each signature
// with the standard-webhooks library.
func (r *echoReceiver) received(t *testing.T, secret string) []map[string]any {
	t.Helper()
	wh, err := standardwebhooks.NewWebhook(secret)
	require.NoError(t, err)
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]map[string]any, len(r.bodies))
	for i, b := range r.bodies {
		require.NoError(t, wh.Verify(b, r.events[i].Header), "signature of %s", b)
		require.Equal(t, r.events[i].Header.Get("webhook-id"), mustDecode(t, b)["id"], "webhook-id is the event id")
		out[i] = mustDecode(t, b)
		out[i]["_raw"] = b
	}
	return out
}

func mustDecode(t *testing.T, b []byte) map[string]any {
	t.Helper()
	var m map[string]any
	require.NoError(t, json.Unmarshal(b, &m))
	return m
}

func types(evs []map[string]any) []string {
	out := make([]string, len(evs))
	for i, e := range evs {
		out[i] = e["type"].(string)
	}
	return out
}

// drain runs the webhook sender until it has nothing left to send.
func drainWebhooks(t *testing.T, api *testAPI) {
	t.Helper()
	for range 20 {
		n, err := api.App.WebhookSender.Cycle(context.Background())
		require.NoError(t, err)
		if n == 0 {
			return
		}
	}
}

func registerWebhook(t *testing.T, api *testAPI, coll int64, url string, types ...string) string {
	t.Helper()
	body := map[string]any{"url": url}
	if types != nil {
		body["eventTypes"] = types
	}
	res := api.do(http.MethodPost, fmt.Sprintf("/v1/collections/%d/webhooks", coll), api.superAdmin(), body)
	require.Equal(t, http.StatusCreated, res.Code, "body: %s", res.Raw)
	require.Equal(t, "ACTIVE", res.JSON["webhook"].(map[string]any)["state"])
	return res.JSON["secret"].(string)
}

// goldenIDs are the values requireGolden replaces: they differ per run.
var goldenIDs = []struct {
	re   *regexp.Regexp
	with string
}{
	{regexp.MustCompile(`"(id|notificationId|collectionId|actionId|time)":\d+`), `"$1":0`},
	{regexp.MustCompile(`"timestamp":"\d{4}-\d\d-\d\dT[^"]+"`), `"timestamp":"<RFC 3339>"`},
	{regexp.MustCompile(`"companyId":"\d+"`), `"companyId":"<collection id>"`},
	{regexp.MustCompile(`"providerMessageId":"[^"]+"`), `"providerMessageId":"<provider message id>"`},
	{regexp.MustCompile(`"id":"evt_(dlv|ntf)_\d+_([a-z]+)(_\d+)?"`), `"id":"evt_${1}_0_$2"`},
}

// requireGolden compares the body of event ev (as posted, field order
// included), with its ids and times replaced, to
// testdata/lifecycle/<type>.json.
func requireGolden(t *testing.T, ev map[string]any, body []byte) {
	t.Helper()
	for _, g := range goldenIDs {
		body = g.re.ReplaceAll(body, []byte(g.with))
	}
	var out bytes.Buffer
	require.NoError(t, json.Indent(&out, body, "", "  "))
	out.WriteByte('\n')
	got := out.Bytes()
	path := filepath.Join("testdata", "lifecycle", ev["type"].(string)+".json")
	if *updateGolden {
		require.NoError(t, os.MkdirAll(filepath.Dir(path), 0o755))
		require.NoError(t, os.WriteFile(path, got, 0o644))
	}
	want, err := os.ReadFile(path)
	require.NoError(t, err, "run with -update to write %s", path)
	require.Equal(t, string(want), string(got), "golden %s", path)
}

// The delivery lifecycle reaches the customer webhooks: a queue send is
// NOTIFICATION_ACCEPTED; its deliveries become DELIVERY_SKIPPED (no address,
// at planning), DELIVERY_SENT and DELIVERY_FAILED (the sandbox refuses the
// address as SendGrid would) from the workers; and SendGrid's signed event
// webhook makes DELIVERY_DELIVERED, DELIVERY_OPENED, DELIVERY_CLICKED and
// DELIVERY_BOUNCED.
// An endpoint subscribed to DELIVERY_BOUNCED alone gets only that, and a
// collection without endpoints gets no webhook message at all.
func TestDeliveryLifecycleEvents(t *testing.T) {
	t.Parallel()
	for _, d := range []string{"sqlite", "postgres"} {
		t.Run(d, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
			require.NoError(t, err)
			der, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
			require.NoError(t, err)
			api := newAPI(t, d, func(c *config.Config) {
				c.Webhooks.AllowPrivateNetworks = true
				c.Channels.SendGrid.WebhookPublicKey = base64.StdEncoding.EncodeToString(der)
			})
			wf := &webhookFixture{api: api, sgKey: key}
			// Two actions: one sends, one cannot render (no content), a
			// permanent failure.
			seed := func(name string) int64 {
				coll := api.createCollection(name)
				ev := api.createEvent(coll, "USER_INVITEUSER")
				require.NoError(t, api.DB.Create(&actions.Action{CollectionID: coll, EventID: ev, Name: "invite", Status: actions.StatusActive,
					ConfigName: actions.ConfigEmail, Config: actions.Config{Content: actions.Content{Subject: "Hi", Text: "Welcome"}},
					CreatedTime: 1, UpdatedTime: 1}).Error)
				api.addAction(coll, ev, "broken")
				return coll
			}
			coll, quiet := seed("lifecycle-"+d), seed("quiet-"+d)

			all, bounced := newEchoReceiver(t), newEchoReceiver(t)
			allSecret := registerWebhook(t, api, coll, all.URL)
			bouncedSecret := registerWebhook(t, api, coll, bounced.URL, "DELIVERY_BOUNCED")

			// The queue's path: the intake without an API caller, so no
			// notifications/send envelope.
			in := intake.New(api.DB, actions.NewRules(api.DB), nil, time.Now, nil, intake.WithEvents(api.App.WebhookSender))
			submit := func(coll int64, recipients ...dispatch.Recipient) {
				out, err := in.Submit(ctx, []intake.Submission{{Source: intake.SourceQueue, Request: dispatch.Request{
					CollectionID: dispatch.ID(coll),
					Notification: []dispatch.Notification{{Name: "USER_INVITEUSER", Recipients: recipients}},
				}}})
				require.NoError(t, err)
				require.Equal(t, "accepted", out[0].Notifications[0].Status)
			}
			var messages int64
			countMessages := func() int64 {
				var n int64
				require.NoError(t, api.DB.Raw("SELECT COUNT(*) FROM webhook_messages").Scan(&n).Error)
				return n
			}

			// A collection without endpoints: sent, skipped and failed, and
			// not one message.
			submit(quiet, dispatch.Recipient{Email: "q@example.com"}, dispatch.Recipient{Phone: "+15555550100"})
			_, err = api.App.Dispatcher.RunOnce(ctx)
			require.NoError(t, err)
			require.Zero(t, countMessages(), "a collection without endpoints writes no webhook message")

			submit(coll, dispatch.Recipient{Email: "a@example.com"}, dispatch.Recipient{Phone: "+15555550100"})
			_, err = api.App.Dispatcher.RunOnce(ctx)
			require.NoError(t, err)
			messages = countMessages()
			require.EqualValues(t, 5, messages, "accepted, skipped twice, sent, failed for the endpoint wanting all; none for the bounce-only one")

			var ds []struct {
				ID      int64
				Address string
				Status  string
				Reason  string
			}
			require.NoError(t, api.DB.Raw("SELECT id, address, status, reason FROM deliveries WHERE collection_id = ? ORDER BY id", coll).Scan(&ds).Error)
			byStatus, statusOf := map[string]int64{}, map[int64]string{}
			for _, dl := range ds {
				byStatus[dl.Status], statusOf[dl.ID] = dl.ID, dl.Status
			}
			require.Len(t, ds, 4)
			require.Len(t, byStatus, 3, "sent, failed, skipped: %+v", ds)
			sentID := byStatus["sent"]

			now := time.Now().Unix()
			post := func(body string) {
				t.Helper()
				res := wf.sendGrid(t, body, wf.sign(t, body, time.Now())...)
				require.Equal(t, http.StatusOK, res.Code, "body: %s", res.Raw)
			}
			delivered := fmt.Sprintf(`[{"email":"a@example.com","timestamp":%d,"event":"delivered","sg_message_id":"m1","delivery_id":"%d"}]`, now, sentID)
			post(delivered)
			// SendGrid sends the batch again: the same event, no new message.
			post(delivered)
			require.EqualValues(t, messages+1, countMessages())
			post(fmt.Sprintf(`[
 {"email":"a@example.com","timestamp":%d,"event":"open","sg_message_id":"m1","delivery_id":"%d"},
 {"email":"a@example.com","timestamp":%d,"event":"click","url":"https://example.com/x","sg_message_id":"m1","delivery_id":"%d"},
 {"email":"a@example.com","timestamp":%d,"event":"bounce","type":"bounce","status":"5.1.1","reason":"550 user unknown","sg_message_id":"m1","delivery_id":"%d"}]`,
				now+1, sentID, now+2, sentID, now+3, sentID))
			require.EqualValues(t, messages+4+1, countMessages(), "delivered, opened, clicked, bounced for one endpoint, bounced for the other")

			drainWebhooks(t, api)
			// The endpoint wanting all also gets the configuration events of
			// the setup (fanned out from the outbox): the 100–199 range only.
			got := slices.DeleteFunc(all.received(t, allSecret), func(ev map[string]any) bool {
				return !regexp.MustCompile(`^(NOTIFICATION|DELIVERY)_`).MatchString(ev["type"].(string))
			})
			require.Equal(t, []string{"NOTIFICATION_ACCEPTED", "DELIVERY_SKIPPED", "DELIVERY_SKIPPED", "DELIVERY_SENT", "DELIVERY_FAILED",
				"DELIVERY_DELIVERED", "DELIVERY_OPENED", "DELIVERY_CLICKED", "DELIVERY_BOUNCED"}, inCatalogueOrder(got))
			for _, ev := range got {
				require.Equal(t, fmt.Sprint(coll), ev["companyId"])
				if dl, ok := ev["delivery"].(map[string]any); ok {
					require.EqualValues(t, coll, dl["collectionId"])
				}
				requireGolden(t, ev, ev["_raw"].([]byte))
			}
			skipped := find(got, "DELIVERY_SKIPPED")["delivery"].(map[string]any)
			require.Equal(t, "recipient has no email address (neither tos nor email)", skipped["reason"])
			require.Equal(t, "skipped", statusOf[int64(skipped["id"].(float64))])
			failed := find(got, "DELIVERY_FAILED")["delivery"].(map[string]any)
			require.Contains(t, failed["reason"], "neither a template nor content")
			require.EqualValues(t, sentID, find(got, "DELIVERY_BOUNCED")["delivery"].(map[string]any)["id"])

			onlyBounced := bounced.received(t, bouncedSecret)
			require.Equal(t, []string{"DELIVERY_BOUNCED"}, types(onlyBounced))
			require.Equal(t, find(got, "DELIVERY_BOUNCED")["id"], onlyBounced[0]["id"], "one event, one id, for every endpoint")

			// The quiet collection gains an endpoint: the subscriber snapshot
			// is dropped with the change, and its next send has events.
			quietRcv := newEchoReceiver(t)
			registerWebhook(t, api, quiet, quietRcv.URL, "DELIVERY_SENT")
			before := countMessages()
			submit(quiet, dispatch.Recipient{Email: "q@example.com"})
			_, err = api.App.Dispatcher.RunOnce(ctx)
			require.NoError(t, err)
			require.EqualValues(t, before+1, countMessages(), "DELIVERY_SENT for the new endpoint")

			// Every POST is in the endpoint's attempt log.
			var attempts int64
			require.NoError(t, api.DB.Raw("SELECT COUNT(*) FROM webhook_attempts WHERE event_type LIKE 'DELIVERY_%'").Scan(&attempts).Error)
			require.EqualValues(t, 9, attempts, "each delivery event posted once")
		})
	}
}

// inCatalogueOrder returns the events' types in catalogue order:
// the sender posts concurrently, so arrival order is not it.
func inCatalogueOrder(evs []map[string]any) []string {
	order := []string{"NOTIFICATION_ACCEPTED", "DELIVERY_SKIPPED", "DELIVERY_SENT", "DELIVERY_FAILED",
		"DELIVERY_DELIVERED", "DELIVERY_OPENED", "DELIVERY_CLICKED", "DELIVERY_BOUNCED"}
	out := types(evs)
	slices.SortFunc(out, func(a, b string) int { return slices.Index(order, a) - slices.Index(order, b) })
	return out
}

func find(evs []map[string]any, typ string) map[string]any {
	for _, e := range evs {
		if e["type"] == typ {
			return e
		}
	}
	return nil
}

// On PostgreSQL an endpoint change on one instance drops the subscriber
// snapshot of the others (the invalidation bus), so their workers start
// recording the events a new endpoint wants.
func TestLifecycleSubscribersAcrossInstances(t *testing.T) {
	t.Parallel()
	a := newAPI(t, "postgres", func(c *config.Config) { c.Webhooks.AllowPrivateNetworks = true })
	b := a.another(t)
	a.serve(t)
	b.serve(t)
	ctx := context.Background()
	coll := a.createCollection("across")
	require.False(t, b.App.WebhookSender.Wants(ctx, b.App.DB, coll, "DELIVERY_SENT"), "no endpoint yet (and the snapshot is loaded)")
	rcv := newEchoReceiver(t)
	registerWebhook(t, a, coll, rcv.URL, "DELIVERY_SENT")
	require.Eventually(t, func() bool { return b.App.WebhookSender.Wants(ctx, b.App.DB, coll, "DELIVERY_SENT") }, 10*time.Second, 5*time.Millisecond)
	require.False(t, b.App.WebhookSender.Wants(ctx, b.App.DB, coll, "DELIVERY_BOUNCED"), "the endpoint wants DELIVERY_SENT only")
}

// Every lifecycle event's golden body is documented in docs/asyncapi.yaml:
// a message on the customerWebhook channel whose example has the golden's
// shape (the same fields, of the same JSON types).
func TestAsyncAPIDocumentsLifecycleEvents(t *testing.T) {
	t.Parallel()
	raw, err := os.ReadFile(filepath.Join("..", "..", "docs", "asyncapi.yaml"))
	require.NoError(t, err)
	var doc struct {
		Channels map[string]struct {
			Messages map[string]struct {
				Ref string `yaml:"$ref"`
			} `yaml:"messages"`
		} `yaml:"channels"`
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
	examples := map[string][]map[string]any{} // type → example payloads on the channel
	for _, m := range doc.Channels["customerWebhook"].Messages {
		msg := doc.Components.Messages[strings.TrimPrefix(m.Ref, "#/components/messages/")]
		for _, ex := range msg.Examples {
			typ, _ := ex.Payload["type"].(string)
			examples[typ] = append(examples[typ], ex.Payload)
		}
	}
	goldens, err := filepath.Glob(filepath.Join("testdata", "lifecycle", "*.json"))
	require.NoError(t, err)
	require.Len(t, goldens, 8, "NOTIFICATION_ACCEPTED and the seven DELIVERY_* types")
	for _, path := range goldens {
		typ := strings.TrimSuffix(filepath.Base(path), ".json")
		b, err := os.ReadFile(path)
		require.NoError(t, err)
		want := jsonShape(mustDecode(t, b))
		found := false
		for _, ex := range examples[typ] {
			// YAML reads numbers as int; JSON as float64: compare shapes.
			exJSON, err := json.Marshal(ex)
			require.NoError(t, err)
			if reflect.DeepEqual(want, jsonShape(mustDecode(t, exJSON))) {
				found = true
			}
		}
		require.True(t, found, "docs/asyncapi.yaml has no customerWebhook example of %s shaped like %s", typ, path)
	}
}

// jsonShape replaces every leaf with its JSON type.
func jsonShape(v any) any {
	switch x := v.(type) {
	case map[string]any:
		out := map[string]any{}
		for k, e := range x {
			out[k] = jsonShape(e)
		}
		return out
	case []any:
		if len(x) == 0 {
			return []any{}
		}
		return []any{jsonShape(x[0])}
	case string:
		return "string"
	case bool:
		return "boolean"
	case nil:
		return "null"
	default:
		return "number"
	}
}
