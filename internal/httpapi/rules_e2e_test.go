package httpapi_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"slices"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/stretchr/testify/require"

	"github.com/notificationservice/notificationservice/internal/app"
	"github.com/notificationservice/notificationservice/internal/channels"
	"github.com/notificationservice/notificationservice/internal/config"
	"github.com/notificationservice/notificationservice/internal/dispatch"
	"github.com/notificationservice/notificationservice/internal/testdb"
)

// rulesE2E is the service as it runs (app.New and Serve: HTTP, workers and,
// on PostgreSQL, the NotificationQueue consumer on a queue of the test's
// own), the SendGrid key that signs its event webhooks, and how a message
// reaches it.
type rulesE2E struct {
	api   *servedAPI
	hooks *webhookFixture
	// send delivers one message of notification entries (a JSON array) for
	// collection cid: through the queue on PostgreSQL, through the REST send
	// on SQLite (the queue consumer's intake runs on PostgreSQL only).
	send func(t *testing.T, cid int64, entries string)
}

func newRulesE2E(t *testing.T, dialect string) *rulesE2E {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	der, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	require.NoError(t, err)
	signing := func(c *config.Config) { c.Channels.SendGrid.WebhookPublicKey = base64.StdEncoding.EncodeToString(der) }
	e := &rulesE2E{}
	if dialect != "postgres" {
		e.api = serveAPI(t, dialect, io.Discard, keepSent, signing)
		e.send = func(t *testing.T, cid int64, entries string) {
			res := e.api.do(http.MethodPost, fmt.Sprintf("/v1/collections/%d/notifications", cid), e.api.superAdmin(),
				`{"notification": `+entries+`}`, "Idempotency-Key", testdb.Name("rules-e2e"))
			require.Equal(t, http.StatusAccepted, res.Code, "body: %s", res.Raw)
		}
		e.hooks = &webhookFixture{api: e.api.testAPI, sgKey: key}
		return e
	}

	conn, err := amqp.Dial("amqp://guest:guest@127.0.0.1:5672/")
	if err != nil {
		testdb.Unavailable(t, "RabbitMQ", err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	prefix := testdb.Name("rules_")
	e.api = serveAPI(t, dialect, io.Discard, keepSent, signing, func(c *config.Config) {
		c.Log.Level = "error"
		c.AMQP.Enabled = true
		c.AMQP.URL = "amqp://guest:guest@127.0.0.1:5672/"
		c.AMQP.Exchange, c.AMQP.Queue, c.AMQP.RoutingKey = prefix+".ex", prefix+".q", prefix+".q"
		c.AMQP.DeadLetterExchange, c.AMQP.DeadLetterQueue = prefix+".dlx", prefix+".dlq"
		c.AMQP.Consumers = 1
	})
	t.Cleanup(func() {
		ch, err := conn.Channel()
		if err != nil {
			return
		}
		_, _ = ch.QueueDelete(prefix+".q", false, false, false)
		_, _ = ch.QueueDelete(prefix+".dlq", false, false, false)
		_ = ch.ExchangeDelete(prefix+".ex", false, false)
		_ = ch.ExchangeDelete(prefix+".dlx", false, false)
	})
	require.Eventually(t, func() bool {
		checks, _ := e.api.do(http.MethodGet, "/readyz", "", nil).JSON["checks"].(map[string]any)
		return checks["rabbitmq"] == "ok"
	}, 30*time.Second, 20*time.Millisecond, "the consumer never came up")
	pub, err := conn.Channel()
	require.NoError(t, err)
	require.NoError(t, pub.Confirm(false))
	e.send = func(t *testing.T, cid int64, entries string) {
		dc, err := pub.PublishWithDeferredConfirmWithContext(context.Background(), prefix+".ex", prefix+".q", true, false, amqp.Publishing{
			MessageId: testdb.Name("rules-e2e"), ContentType: "application/json", DeliveryMode: amqp.Persistent,
			Body: fmt.Appendf(nil, `{"collectionId": %d, "notification": %s}`, cid, entries),
		})
		require.NoError(t, err)
		require.True(t, dc.Wait(), "the broker confirms the message")
	}
	e.hooks = &webhookFixture{api: e.api.testAPI, sgKey: key}
	return e
}

// settled waits (bounded, polling the status API) until the collection has
// want deliveries and none of them is still on its way, and returns them.
func (e *rulesE2E) settled(t *testing.T, cid int64, want int) []map[string]any {
	t.Helper()
	var ds []map[string]any
	require.Eventually(t, func() bool {
		res := e.api.do(http.MethodGet, fmt.Sprintf("/v1/collections/%d/deliveries?limit=100", cid), e.api.superAdmin(), nil)
		if res.Code != http.StatusOK {
			return false
		}
		ds = ds[:0]
		for _, d := range res.JSON["deliveries"].([]any) {
			d := d.(map[string]any)
			if d["status"] == dispatch.StatusPending || d["status"] == "sending" {
				return false
			}
			ds = append(ds, d)
		}
		return len(ds) == want
	}, 30*time.Second, 20*time.Millisecond, "deliveries never settled: %v", ds)
	return ds
}

// TestRulesEndToEnd is issue 15's show case, set up through the REST API as
// a user would, on both dialects: one message, five recipients, each decided
// by another rule. A message names its event per entry and `required` is
// the event's, so the message carries two entries: NEWSLETTER (not
// required; its action has a condition) for four recipients, and
// PASSWORD_RESET (required) for the fifth, who has opted out of email. One
// entry could not show both "opted out of the event: skipped" and "opted
// out but the event is required: sent".
func TestRulesEndToEnd(t *testing.T) {
	t.Parallel()
	for _, dialect := range []string{"postgres", "sqlite"} {
		t.Run(dialect, func(t *testing.T) {
			t.Parallel()
			e := newRulesE2E(t, dialect)
			api, su := e.api, e.api.superAdmin()

			res := api.do(http.MethodPost, "/v1/collections", su, map[string]any{"name": "rules-e2e"})
			require.Equal(t, http.StatusCreated, res.Code, "body: %s", res.Raw)
			cid := int64(res.JSON["collection"].(map[string]any)["id"].(float64))
			base := fmt.Sprintf("/v1/collections/%d", cid)
			event := func(body map[string]any) any {
				res := api.do(http.MethodPost, base+"/events", su, body)
				require.Equal(t, http.StatusCreated, res.Code, "body: %s", res.Raw)
				return res.JSON["event"].(map[string]any)["id"]
			}
			action := func(eventID any, config map[string]any) {
				res := api.do(http.MethodPost, base+"/actions", su, map[string]any{"name": "email", "eventId": eventID,
					"configName": "SendEmailConfig", "config": config})
				require.Equal(t, http.StatusCreated, res.Code, "body: %s", res.Raw)
			}
			const condition = `recipient.macros.PLAN in ["pro", "team"]`
			action(event(map[string]any{"name": "NEWSLETTER"}), map[string]any{
				"subject": "News for {{FNAME}}", "text": "Hello {{FNAME}}", "condition": condition})
			action(event(map[string]any{"name": "PASSWORD_RESET", "required": true}), map[string]any{
				"subject": "Reset your password, {{FNAME}}", "text": "Reset it here"})

			for recipient, doc := range map[string]string{
				"u-event":    `{"events": {"NEWSLETTER": {"enabled": false}}}`,
				"u-required": `{"channels": {"email": false}}`,
			} {
				res := api.do(http.MethodPut, prefsPath(cid, recipient), su, doc)
				require.Equal(t, http.StatusOK, res.Code, "body: %s", res.Raw)
			}

			// An earlier newsletter to bounce@ goes out; SendGrid then reports
			// its hard bounce through the signed event webhook.
			e.send(t, cid, `[{"name": "NEWSLETTER", "recipients": [{"email": "bounce@example.test", "macros": {"FNAME": "Bo", "PLAN": "pro"}}]}]`)
			first := e.settled(t, cid, 1)[0]
			require.Equal(t, dispatch.StatusSent, first["status"], "delivery: %v", first)
			body := fmt.Sprintf(`[{"email":"bounce@example.test","timestamp":%d,"event":"bounce","type":"bounce","status":"5.1.1","reason":"550 5.1.1 user unknown","sg_message_id":"m1","delivery_id":"%d"}]`,
				time.Now().Unix(), int64(first["id"].(float64)))
			res = e.hooks.sendGrid(t, body, e.hooks.sign(t, body, time.Now())...)
			require.Equal(t, http.StatusOK, res.Code, "body: %s", res.Raw)
			res = api.do(http.MethodGet, base+"/suppressions", su, nil)
			require.Equal(t, http.StatusOK, res.Code, "body: %s", res.Raw)
			require.Len(t, res.JSON["suppressions"].([]any), 1, "body: %s", res.Raw)

			e.send(t, cid, `[
			  {"name": "NEWSLETTER", "recipients": [
			    {"id": "u-cond", "email": "free@example.test", "macros": {"FNAME": "Fay", "PLAN": "free"}},
			    {"id": "u-event", "email": "event@example.test", "macros": {"FNAME": "Eve", "PLAN": "pro"}},
			    {"email": "bounce@example.test", "macros": {"FNAME": "Bo", "PLAN": "pro"}},
			    {"id": "u-pass", "email": "pass@example.test", "macros": {"FNAME": "Pat", "PLAN": "team"}}]},
			  {"name": "PASSWORD_RESET", "recipients": [
			    {"id": "u-required", "email": "required@example.test", "macros": {"FNAME": "Rae"}}]}]`)
			e.settled(t, cid, 6)

			// The status API: each delivery of the message with its reason,
			// and the sandbox's record of what was sent.
			res = api.do(http.MethodGet, base+"/notifications?limit=100", su, nil)
			require.Equal(t, http.StatusOK, res.Code, "body: %s", res.Raw)
			type outcome struct{ status, reason, detail, subject string }
			got := map[string]outcome{}
			for _, n := range res.JSON["notifications"].([]any) {
				nid := int64(n.(map[string]any)["id"].(float64))
				res := api.do(http.MethodGet, fmt.Sprintf("%s/notifications/%d", base, nid), su, nil)
				require.Equal(t, http.StatusOK, res.Code, "body: %s", res.Raw)
				for _, d := range res.JSON["notification"].(map[string]any)["deliveries"].([]any) {
					d := d.(map[string]any)
					if int64(d["id"].(float64)) == int64(first["id"].(float64)) {
						continue
					}
					o := outcome{status: d["status"].(string), reason: d["reason"].(string)}
					o.detail, _ = d["reasonDetail"].(string)
					if recorded, ok := d["sandboxMessages"].([]any); ok {
						require.Len(t, recorded, 1)
						o.subject = recorded[0].(map[string]any)["message"].(map[string]any)["subject"].(string)
					}
					got[d["address"].(string)] = o
				}
			}
			require.Equal(t, map[string]outcome{
				"free@example.test":     {dispatch.StatusSkipped, dispatch.ReasonConditionFalse, "the action's condition is false: " + condition, ""},
				"event@example.test":    {dispatch.StatusSkipped, dispatch.ReasonOptedOut, "events.NEWSLETTER.enabled=false", ""},
				"bounce@example.test":   {dispatch.StatusSkipped, dispatch.ReasonSuppressed, got["bounce@example.test"].detail, ""},
				"pass@example.test":     {dispatch.StatusSent, "", "", "News for Pat"},
				"required@example.test": {dispatch.StatusSent, "", "", "Reset your password, Rae"},
			}, got)
			require.Contains(t, got["bounce@example.test"].detail, "bounce@example.test is suppressed")
			require.Contains(t, got["bounce@example.test"].detail, "sendgrid_bounce")

			// Exactly the right sends reached the (sandbox) provider: the
			// earlier newsletter, then the two that pass.
			var sent []string
			for _, m := range api.App.Sandbox.Messages() {
				for _, to := range m.To {
					sent = append(sent, to.Email)
				}
			}
			slices.Sort(sent[1:])
			require.Equal(t, []string{"bounce@example.test", "pass@example.test", "required@example.test"}, sent)
		})
	}
}

// A required event's emails carry no one-click unsubscribe (opt-outs do not
// apply to it): the sandbox records no List-Unsubscribe headers and
// {{unsubscribeUrl}} renders empty, while a non-required event's email
// carries both. Marking the event not required gives its next email the
// link (the cached action drops with the event's change).
func TestRequiredEventEmailsCarryNoUnsubscribeLink(t *testing.T) {
	t.Parallel()
	eachDialect(t, func(t *testing.T, api *testAPI) {
		su := api.superAdmin()
		res := api.do(http.MethodPost, "/v1/collections", su, map[string]any{"name": "required-unsub"})
		require.Equal(t, http.StatusCreated, res.Code, "body: %s", res.Raw)
		cid := int64(res.JSON["collection"].(map[string]any)["id"].(float64))
		base := fmt.Sprintf("/v1/collections/%d", cid)
		eventIDs := map[string]any{}
		for name, required := range map[string]bool{"NEWSLETTER": false, "PASSWORD_RESET": true} {
			res := api.do(http.MethodPost, base+"/events", su, map[string]any{"name": name, "required": required})
			require.Equal(t, http.StatusCreated, res.Code, "body: %s", res.Raw)
			eventIDs[name] = res.JSON["event"].(map[string]any)["id"]
			res = api.do(http.MethodPost, base+"/actions", su, map[string]any{"name": "email", "eventId": eventIDs[name],
				"configName": "SendEmailConfig", "config": map[string]any{"subject": name, "text": "Unsubscribe: [{{unsubscribeUrl}}]"}})
			require.Equal(t, http.StatusCreated, res.Code, "body: %s", res.Raw)
		}
		// send sends name to one recipient and returns what the sandbox
		// recorded for it.
		send := func(name, email string) map[string]any {
			res := api.do(http.MethodPost, base+"/notifications", su,
				fmt.Sprintf(`{"notification": [{"name": %q, "recipients": [{"email": %q}]}]}`, name, email))
			require.Equal(t, http.StatusAccepted, res.Code, "body: %s", res.Raw)
			nid := int64(res.JSON["notificationIds"].([]any)[0].(float64))
			runOnce(t, api)
			res = api.do(http.MethodGet, fmt.Sprintf("%s/notifications/%d", base, nid), su, nil)
			require.Equal(t, http.StatusOK, res.Code, "body: %s", res.Raw)
			d := res.JSON["notification"].(map[string]any)["deliveries"].([]any)[0].(map[string]any)
			require.Equal(t, dispatch.StatusSent, d["status"], "delivery: %v", d)
			return d["sandboxMessages"].([]any)[0].(map[string]any)["message"].(map[string]any)
		}
		requireLink := func(msg map[string]any) {
			t.Helper()
			headers, _ := msg["headers"].(map[string]any)
			require.Equal(t, "List-Unsubscribe=One-Click", headers["List-Unsubscribe-Post"], "message: %v", msg)
			require.Regexp(t, `^<http://127\.0\.0\.1:8080/unsubscribe/[A-Za-z0-9._-]+>$`, headers["List-Unsubscribe"])
			require.Regexp(t, `^Unsubscribe: \[http://127\.0\.0\.1:8080/unsubscribe/[A-Za-z0-9._-]+\]$`, msg["text"])
		}

		requireLink(send("NEWSLETTER", "ann@example.test"))
		msg := send("PASSWORD_RESET", "ann@example.test")
		require.NotContains(t, msg, "headers", "no List-Unsubscribe on a required event's email: %v", msg)
		require.Equal(t, "Unsubscribe: []", msg["text"])

		res = api.do(http.MethodPatch, fmt.Sprintf("%s/events/%v", base, eventIDs["PASSWORD_RESET"]), su, map[string]any{"required": false})
		require.Equal(t, http.StatusOK, res.Code, "body: %s", res.Raw)
		requireLink(send("PASSWORD_RESET", "bob@example.test"))
	})
}

// keepSent has the sandbox keep the workers' messages in memory too, where
// these tests read what reached the provider.
var keepSent = []app.Option{app.WithSandboxOptions(channels.SandboxKeepAll())}
