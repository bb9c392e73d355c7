package httpapi_test

import (
	"context"
	"fmt"
	"net/http"
	"regexp"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/notificationservice/notificationservice/internal/actions"
	"github.com/notificationservice/notificationservice/internal/auth"
	"github.com/notificationservice/notificationservice/internal/channels"
	"github.com/notificationservice/notificationservice/internal/config"
)

func testSendPath(cid, aid int64) string {
	return fmt.Sprintf("/v1/collections/%d/actions/%d/test-send", cid, aid)
}

// TestTestSendSandbox: a test-send renders the action as the workers do
// (locale variant, HTML escaping, the collection's default sender) and sends
// it through the sandbox at once, leaving no notification, delivery or
// sandbox_messages row. A provider's refusal and a render that would fail
// the delivery are 200 failed; no address on the channel is 400; a viewer
// may not test-send.
func TestTestSendSandbox(t *testing.T) {
	t.Parallel()
	eachDialect(t, func(t *testing.T, api *testAPI) {
		cid, aid := seedAction(t, api, actions.ConfigEmail, "", actions.Config{
			Content: actions.Content{Subject: "Hello {{FNAME}}", HTML: "<p>Hi {{FNAME}}</p>"},
			Locales: map[string]actions.Content{"fr": {Subject: "Bonjour {{FNAME}}"}},
		})
		require.NoError(t, api.DB.Exec("UPDATE collections SET default_from_email = ?, default_from_name = ? WHERE id = ?",
			"team@tenant.example", "Team", cid).Error)
		editor := api.token(auth.Principal{Roles: []string{auth.RoleAdmin}, Collections: []int64{cid}})

		res := api.do(http.MethodPost, testSendPath(cid, aid), editor, map[string]any{
			"email": "ann@example.com", "locale": "fr_CA", "macros": map[string]string{"FNAME": "<Ann>"}})
		require.Equal(t, http.StatusOK, res.Code, "body: %s", res.Raw)
		out := res.JSON["testSend"].(map[string]any)
		require.Equal(t, "sent", out["status"], "body: %s", res.Raw)
		require.Equal(t, "email", out["channel"])
		require.Equal(t, "sandbox", out["provider"])
		require.NotEmpty(t, out["providerMessageId"])

		msgs := api.App.Sandbox.Messages()
		require.Len(t, msgs, 1)
		require.Equal(t, "Bonjour <Ann>", msgs[0].Subject)
		require.Equal(t, "<p>Hi &lt;Ann&gt;</p>", msgs[0].HTML)
		require.Equal(t, channels.Address{Email: "team@tenant.example", Name: "Team"}, msgs[0].From, "the collection's default sender")
		require.Equal(t, []channels.Address{{Email: "ann@example.com"}}, msgs[0].To)
		for _, table := range []string{"notifications", "deliveries", "sandbox_messages"} {
			var n int64
			require.NoError(t, api.DB.Table(table).Count(&n).Error)
			require.Zero(t, n, "a test-send writes no %s row", table)
		}

		// A missing macro under the fail policy: what the delivery would
		// fail with, and nothing reaches the provider.
		res = api.do(http.MethodPost, testSendPath(cid, aid), editor, map[string]any{"email": "ann@example.com"})
		require.Equal(t, http.StatusOK, res.Code, "body: %s", res.Raw)
		out = res.JSON["testSend"].(map[string]any)
		require.Equal(t, "failed", out["status"])
		require.Equal(t, `render: subject: macros: missing macro "FNAME"`, out["reason"])
		require.NotContains(t, out, "provider")
		require.Len(t, api.App.Sandbox.Messages(), 1)

		res = api.do(http.MethodPost, testSendPath(cid, aid), editor, map[string]any{"phone": "+15551234567"})
		requireError(t, res, http.StatusBadRequest, "INVALID_ARGUMENT", "NOTSCRT0400")
		require.Contains(t, details(res), "email")

		viewer := api.token(auth.Principal{Roles: []string{auth.RoleViewer}, Collections: []int64{cid}})
		res = api.do(http.MethodPost, testSendPath(cid, aid), viewer, map[string]any{"email": "ann@example.com"})
		requireError(t, res, http.StatusForbidden, "PERMISSION_DENIED", "NOTSCRT0403")
		res = api.do(http.MethodPost, testSendPath(cid, aid+1000), editor, map[string]any{"email": "ann@example.com"})
		requireError(t, res, http.StatusNotFound, "NOT_FOUND", "NOTSCRT0404")

		// The sandbox refuses a phone number no provider would take: a
		// permanent error, the test's answer.
		cid, aid = seedAction(t, api, actions.ConfigSMS, "", actions.Config{Content: actions.Content{Body: "Code {{CODE}}"}})
		res = api.do(http.MethodPost, testSendPath(cid, aid), api.superAdmin(), map[string]any{"phone": "not a phone", "macros": map[string]any{"CODE": 42}})
		require.Equal(t, http.StatusOK, res.Code, "body: %s", res.Raw)
		out = res.JSON["testSend"].(map[string]any)
		require.Equal(t, "failed", out["status"], "body: %s", res.Raw)
		require.Equal(t, "sandbox", out["provider"])
		require.Contains(t, out["reason"], "sandbox: permanent error")
		require.Len(t, api.App.Sandbox.Messages(), 1, "the refused message was not sent")

		res = api.do(http.MethodPost, testSendPath(cid, aid), api.superAdmin(), map[string]any{"email": "ann@example.com"})
		requireError(t, res, http.StatusBadRequest, "INVALID_ARGUMENT", "NOTSCRT0400")
		require.Contains(t, details(res), "phone")
	})
}

// TestTestSendProvider: with SendGrid configured (against a local fake), a
// refusal (400) is 200 failed with SendGrid's reason, and an outage (503)
// is 503 UNAVAILABLE.
func TestTestSendProvider(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		status int
		body   string
		check  func(t *testing.T, res response)
	}{
		{"refused", http.StatusBadRequest, `{"errors":[{"message":"Does not contain a valid address.","field":"personalizations.0.to.0.email"}]}`,
			func(t *testing.T, res response) {
				require.Equal(t, http.StatusOK, res.Code, "body: %s", res.Raw)
				out := res.JSON["testSend"].(map[string]any)
				require.Equal(t, "failed", out["status"])
				require.Equal(t, "sendgrid", out["provider"])
				require.Contains(t, out["reason"], "sendgrid: permanent error")
				require.Contains(t, out["reason"], "Does not contain a valid address.")
			}},
		{"unavailable", http.StatusServiceUnavailable, `{"errors":[{"message":"down"}]}`,
			func(t *testing.T, res response) {
				requireError(t, res, http.StatusServiceUnavailable, "UNAVAILABLE", "NOTSCRT0503")
			}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			sendgrid := fakeProvider(t, tc.status, tc.body)
			api := newAPI(t, "sqlite", func(c *config.Config) {
				c.Channels.SendGrid.APIKey = "SG.test"
				c.Channels.SendGrid.BaseURL = sendgrid.URL
				c.Channels.SendGrid.FromEmail = "noreply@example.com"
			})
			cid, aid := seedAction(t, api, actions.ConfigEmail, "", actions.Config{Content: actions.Content{Subject: "s", Text: "t"}})
			res := api.do(http.MethodPost, testSendPath(cid, aid), api.superAdmin(), map[string]any{"email": "x@example.com"})
			tc.check(t, res)
		})
	}
}

// TestPreviewTestSendAndWorkerAgree: for every channel, the preview route,
// a test-send and a real send through the workers produce the same message
// for the same action and recipient: one render path.
func TestPreviewTestSendAndWorkerAgree(t *testing.T) {
	t.Parallel()
	api := newAPI(t, "sqlite")
	admin := api.superAdmin()
	recipient := map[string]any{"email": "ann@example.com", "phone": "+15551234567", "pushId": "device-token-1",
		"locale": "fr_CA", "macros": map[string]string{"FNAME": "<Zoé & co>", "ID": "7"}}
	for _, tc := range []struct {
		configName string
		config     actions.Config
	}{
		{actions.ConfigEmail, actions.Config{
			Content: actions.Content{Subject: "Hello {{FNAME}}", HTML: "<p>{{FNAME}}</p>", Body: "plain {{FNAME}}"},
			Locales: map[string]actions.Content{"fr": {Subject: "Bonjour {{FNAME}}"}}}},
		{actions.ConfigSMS, actions.Config{MissingMacro: actions.MissingKeep,
			Content: actions.Content{Text: "Hi {{FNAME}} {{NOPE}}"}, Locales: map[string]actions.Content{"fr_CA": {Text: "Allô {{FNAME}} {{NOPE}}"}}}},
		{actions.ConfigPush, actions.Config{
			Content: actions.Content{Title: "{{FNAME}}", Body: "hi", Data: map[string]string{"link": "app://{{ID}}"}}}},
	} {
		t.Run(tc.configName, func(t *testing.T) {
			cid, aid := seedAction(t, api, tc.configName, "", tc.config)

			res := api.do(http.MethodPost, previewPath(cid, aid), admin, map[string]any{"locale": recipient["locale"], "macros": recipient["macros"]})
			require.Equal(t, http.StatusOK, res.Code, "body: %s", res.Raw)
			preview := res.JSON["preview"].(map[string]any)["content"].(map[string]any)

			before := len(api.App.Sandbox.Messages())
			res = api.do(http.MethodPost, testSendPath(cid, aid), admin, recipient)
			require.Equal(t, http.StatusOK, res.Code, "body: %s", res.Raw)
			require.Equal(t, "sent", res.JSON["testSend"].(map[string]any)["status"], "body: %s", res.Raw)
			res = api.do(http.MethodPost, fmt.Sprintf("/v1/collections/%d/notifications", cid), admin,
				map[string]any{"notification": []any{map[string]any{"name": "USER_INVITEUSER", "recipients": []any{recipient}}}})
			require.Equal(t, http.StatusAccepted, res.Code, "body: %s", res.Raw)
			_, err := api.App.Dispatcher.RunOnce(context.Background())
			require.NoError(t, err)
			msgs := api.App.Sandbox.Messages()[before:]
			require.Len(t, msgs, 2, "the test-send and the delivery")
			test, sent := msgs[0], msgs[1]
			require.NotZero(t, sent.DeliveryID)
			sent.DeliveryID, sent.NotificationID = 0, 0
			// The unsubscribe links carry a token stamped with the second
			// it was issued: the two messages may straddle one. Compare the
			// links without their tokens.
			require.Equal(t, untokened(sent.Headers), untokened(test.Headers))
			sent.Headers, test.Headers = nil, nil
			require.Equal(t, sent, test, "the test-send sends what the workers send")

			// The preview shows the same content.
			shown := map[string]any{}
			for k, v := range map[string]string{"subject": sent.Subject, "html": sent.HTML, "text": sent.Text, "title": sent.Title, "body": sent.Body} {
				if v != "" {
					shown[k] = v
				}
			}
			if sent.Data != nil {
				data := map[string]any{}
				for k, v := range sent.Data {
					data[k] = v
				}
				shown["data"] = data
			}
			require.Equal(t, shown, preview, "the preview shows what the workers send")
			require.NotEmpty(t, shown)
		})
	}
}

// untokened returns headers with every /unsubscribe/<token> cut to
// /unsubscribe/.
func untokened(h map[string]string) map[string]string {
	if h == nil {
		return nil
	}
	out := make(map[string]string, len(h))
	for k, v := range h {
		out[k] = unsubscribeToken.ReplaceAllString(v, "/unsubscribe/")
	}
	return out
}

var unsubscribeToken = regexp.MustCompile(`/unsubscribe/[^>,\s]+`)
