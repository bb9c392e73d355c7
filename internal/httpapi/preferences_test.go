package httpapi_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/notificationservice/notificationservice/internal/actions"
	"github.com/notificationservice/notificationservice/internal/auth"
	"github.com/notificationservice/notificationservice/internal/config"
	"github.com/notificationservice/notificationservice/internal/preferences"
)

func prefsPath(cid int64, recipient string) string {
	return fmt.Sprintf("/v1/collections/%d/recipients/%s/preferences", cid, url.PathEscape(recipient))
}

// The preference routes: an unknown recipient has the empty document, PUT
// replaces and GET shows the same document, PATCH merges (null removes),
// address keys ignore case, bad channels and fields are 400s naming them,
// the producer's sender token may write, and every change is an envelope.
func TestPreferencesRoutes(t *testing.T) {
	t.Parallel()
	eachDialect(t, func(t *testing.T, api *testAPI) {
		cid := api.createCollection("prefs-" + t.Name())
		senderTok := api.token(auth.Principal{UserID: "backend", Roles: []string{auth.RoleSender}, Collections: []int64{cid}})
		viewer := api.token(auth.Principal{UserID: "5", Roles: []string{auth.RoleViewer}, Collections: []int64{cid}})

		res := api.do(http.MethodGet, prefsPath(cid, "user-1"), viewer, nil)
		require.Equal(t, http.StatusOK, res.Code, "body: %s", res.Raw)
		require.JSONEq(t, `{"channels": {}, "events": {}}`, string(res.Raw))

		doc := `{"channels": {"email": true, "sms": false}, "events": {"USER_INVITEUSER": {"enabled": false}, "ORDER_SHIPPED": {"channels": {"push": false}}}}`
		res = api.do(http.MethodPut, prefsPath(cid, "user-1"), senderTok, doc)
		require.Equal(t, http.StatusOK, res.Code, "body: %s", res.Raw)
		require.JSONEq(t, doc, string(res.Raw))
		res = api.do(http.MethodGet, prefsPath(cid, "user-1"), viewer, nil)
		require.JSONEq(t, doc, string(res.Raw))

		res = api.do(http.MethodPatch, prefsPath(cid, "user-1"), senderTok,
			`{"channels": {"sms": null, "push": false}, "events": {"ORDER_SHIPPED": null, "NEW_EVENT": {"channels": {"email": false}}}}`)
		require.Equal(t, http.StatusOK, res.Code, "body: %s", res.Raw)
		merged := `{"channels": {"email": true, "push": false}, "events": {"USER_INVITEUSER": {"enabled": false}, "NEW_EVENT": {"channels": {"email": false}}}}`
		require.JSONEq(t, merged, string(res.Raw))
		res = api.do(http.MethodGet, prefsPath(cid, "user-1"), viewer, nil)
		require.JSONEq(t, merged, string(res.Raw))

		// An address: URL-encoded, compared without case.
		res = api.do(http.MethodPut, prefsPath(cid, "Ann@Example.com"), api.superAdmin(), `{"channels": {"email": false}}`)
		require.Equal(t, http.StatusOK, res.Code, "body: %s", res.Raw)
		res = api.do(http.MethodGet, prefsPath(cid, "ann@example.com"), viewer, nil)
		require.JSONEq(t, `{"channels": {"email": false}, "events": {}}`, string(res.Raw))
		res = api.do(http.MethodPatch, prefsPath(cid, "+14155550100"), senderTok, `{"channels": {"sms": false}}`)
		require.Equal(t, http.StatusOK, res.Code, "body: %s", res.Raw)
		res = api.do(http.MethodGet, "/v1/collections/"+fmt.Sprint(cid)+"/recipients/%2B14155550100/preferences", viewer, nil)
		require.JSONEq(t, `{"channels": {"sms": false}, "events": {}}`, string(res.Raw))

		for _, tc := range []struct {
			name, method, body, field string
		}{
			{"unknown channel", http.MethodPut, `{"channels": {"fax": false}}`, "channels.fax"},
			{"unknown channel of an event", http.MethodPut, `{"events": {"E": {"channels": {"pager": false}}}}`, "events.E.channels.pager"},
			{"blank event", http.MethodPut, `{"events": {" ": {"enabled": false}}}`, "events. "},
			{"NUL in an event name", http.MethodPut, `{"events": {"E\u0000": {"enabled": false}}}`, "events.E\x00"},
			{"unknown field", http.MethodPut, `{"chanels": {}}`, "chanels"},
			{"wrong type", http.MethodPut, `{"channels": {"sms": "no"}}`, "channels"},
			{"patch to an unknown channel", http.MethodPatch, `{"channels": {"fax": false}}`, "channels.fax"},
			{"patch not an object", http.MethodPatch, `[1]`, "body"},
			{"empty", http.MethodPatch, ``, "body"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				res := api.do(tc.method, prefsPath(cid, "user-1"), senderTok, tc.body)
				require.Equal(t, http.StatusBadRequest, res.Code, "body: %s", res.Raw)
				require.Equal(t, "INVALID_ARGUMENT", res.JSON["status"])
				require.Contains(t, details(res), tc.field, "body: %s", res.Raw)
			})
		}
		res = api.do(http.MethodGet, prefsPath(cid, "user-1"), viewer, nil)
		require.JSONEq(t, merged, string(res.Raw), "refused changes change nothing")

		res = api.do(http.MethodGet, prefsPath(cid+1000, "user-1"), api.superAdmin(), nil)
		requireError(t, res, http.StatusNotFound, "NOT_FOUND", "NOPRGET0404")
		res = api.do(http.MethodPut, prefsPath(cid+1000, "user-1"), api.superAdmin(), `{}`)
		requireError(t, res, http.StatusNotFound, "NOT_FOUND", "NOPRPUT0404")

		// A sender may write but not read; a viewer may read but not write.
		res = api.do(http.MethodGet, prefsPath(cid, "user-1"), senderTok, nil)
		require.Equal(t, http.StatusForbidden, res.Code)
		res = api.do(http.MethodPatch, prefsPath(cid, "user-1"), viewer, `{}`)
		require.Equal(t, http.StatusForbidden, res.Code)

		// One envelope per change, with the document and its author.
		env := api.listEnvelopes("detailType=" + url.QueryEscape("notificationservice/preferences/update"))
		require.Len(t, env, 4)
		detail := env[1]["detail"].(map[string]any)
		require.Equal(t, "user-1", detail["id"])
		require.Equal(t, "backend", detail["userId"])
		payload := detail["payload"].(map[string]any)["preferences"].(map[string]any)
		require.Equal(t, "api", payload["source"])
		got, err := json.Marshal(payload["preferences"])
		require.NoError(t, err)
		require.JSONEq(t, merged, string(got))
		require.Equal(t, "ann@example.com", env[2]["detail"].(map[string]any)["id"])
	})
}

// seedPrefsCollection is a collection with the ACTIVE event USER_INVITEUSER
// firing an email action (whose text shows {{unsubscribeUrl}}) and an SMS
// action, straight in the database.
func seedPrefsCollection(t *testing.T, api *testAPI) (cid, eventID int64) {
	t.Helper()
	cid, emailID := seedInvite(t, api)
	require.NoError(t, api.DB.Raw(`SELECT event_id FROM actions WHERE id = ?`, emailID).Scan(&eventID).Error)
	require.NoError(t, api.DB.Model(&actions.Action{ID: emailID}).Update("config",
		actions.Config{Content: actions.Content{Subject: "Hi {{FNAME}}", Text: "Welcome {{FNAME}}. Unsubscribe: {{unsubscribeUrl}}"}}).Error)
	now := time.Now().UnixMilli()
	require.NoError(t, api.DB.Create(&actions.Action{CollectionID: cid, EventID: eventID, Name: "sms", Status: actions.StatusActive,
		ConfigName: actions.ConfigSMS, Config: actions.Config{Content: actions.Content{Body: "Hi {{FNAME}}"}},
		CreatedTime: now, UpdatedTime: now}).Error)
	return cid, eventID
}

type deliveryRow struct {
	RecipientIndex                        int
	Channel, Status, Reason, ReasonDetail string
}

func deliveriesOf(t *testing.T, api *testAPI, cid int64) []deliveryRow {
	t.Helper()
	var rows []deliveryRow
	require.NoError(t, api.DB.Raw(`SELECT recipient_index, channel, status, reason, reason_detail FROM deliveries
		WHERE collection_id = ? ORDER BY notification_id, recipient_index, channel`, cid).Scan(&rows).Error)
	return rows
}

// Through the REST send and the sandbox: opted-out deliveries are skipped
// opted_out with the preference as the detail, the others are sent, and
// every email the sandbox records carries the one-click unsubscribe headers
// and its text the same link.
func TestPreferencesSkipSendsAndTheSandboxRecordsUnsubscribeHeaders(t *testing.T) {
	t.Parallel()
	eachDialect(t, func(t *testing.T, api *testAPI) {
		cid, _ := seedPrefsCollection(t, api)
		su := api.superAdmin()
		for key, doc := range map[string]string{
			"user-1":           `{"events": {"USER_INVITEUSER": {"enabled": false}}}`,
			"bob@example.test": `{"channels": {"email": false}}`,
			"user-3":           `{"events": {"USER_INVITEUSER": {"channels": {"sms": false}}}}`,
			"user-4":           `{"events": {"ORDER_SHIPPED": {"enabled": false}}}`,
		} {
			res := api.do(http.MethodPut, prefsPath(cid, key), su, doc)
			require.Equal(t, http.StatusOK, res.Code, "body: %s", res.Raw)
		}
		body := `{"notification": [{"name": "USER_INVITEUSER", "recipients": [
		  {"id": "user-1", "email": "ann@example.test", "phone": "+14155550101", "macros": {"FNAME": "Ann"}},
		  {"id": "user-2", "email": "Bob@example.test", "phone": "+14155550102", "macros": {"FNAME": "Bob"}},
		  {"id": "user-3", "email": "cy@example.test", "phone": "+14155550103", "macros": {"FNAME": "Cy"}},
		  {"id": "user-4", "email": "dee@example.test", "phone": "+14155550104", "macros": {"FNAME": "Dee"}}]}]}`
		res := api.do(http.MethodPost, fmt.Sprintf("/v1/collections/%d/notifications", cid), su, body, "Idempotency-Key", "prefs-send-1")
		require.Equal(t, http.StatusAccepted, res.Code, "body: %s", res.Raw)
		_, err := api.App.Dispatcher.RunOnce(context.Background())
		require.NoError(t, err)

		require.Equal(t, []deliveryRow{
			{0, "email", "skipped", "opted_out", "events.USER_INVITEUSER.enabled=false"},
			{0, "sms", "skipped", "opted_out", "events.USER_INVITEUSER.enabled=false"},
			{1, "email", "skipped", "opted_out", "channels.email=false"},
			{1, "sms", "sent", "", ""},
			{2, "email", "sent", "", ""},
			{2, "sms", "skipped", "opted_out", "events.USER_INVITEUSER.channels.sms=false"},
			{3, "email", "sent", "", ""},
			{3, "sms", "sent", "", ""},
		}, deliveriesOf(t, api, cid))

		// The status API shows the reason and the recorded headers.
		var nid int64
		require.NoError(t, api.DB.Raw(`SELECT id FROM notifications WHERE collection_id = ?`, cid).Scan(&nid).Error)
		res = api.do(http.MethodGet, fmt.Sprintf("/v1/collections/%d/notifications/%d", cid, nid), su, nil)
		require.Equal(t, http.StatusOK, res.Code, "body: %s", res.Raw)
		var emails int
		for _, d := range res.JSON["notification"].(map[string]any)["deliveries"].([]any) {
			d := d.(map[string]any)
			if d["status"] == "skipped" {
				require.Equal(t, "opted_out", d["reason"])
				require.NotEmpty(t, d["reasonDetail"])
				continue
			}
			msg := d["sandboxMessages"].([]any)[0].(map[string]any)["message"].(map[string]any)
			if d["channel"] != "email" {
				require.NotContains(t, msg, "headers", "only emails carry List-Unsubscribe")
				continue
			}
			emails++
			headers := msg["headers"].(map[string]any)
			require.Equal(t, "List-Unsubscribe=One-Click", headers["List-Unsubscribe-Post"])
			link := regexp.MustCompile(`^<(http://127\.0\.0\.1:8080/unsubscribe/[A-Za-z0-9._-]+)>$`).FindStringSubmatch(headers["List-Unsubscribe"].(string))
			require.NotNil(t, link, "List-Unsubscribe: %s", headers["List-Unsubscribe"])
			require.Contains(t, msg["text"], "Unsubscribe: "+link[1], "{{unsubscribeUrl}} is the same link")
		}
		require.Equal(t, 2, emails)
	})
}

// sendGridFake is SendGrid's mail/send: it keeps every request body and
// accepts it.
type sendGridFake struct {
	*httptest.Server
	mu     sync.Mutex
	bodies []map[string]any
}

func newSendGridFake(t *testing.T) *sendGridFake {
	f := &sendGridFake{}
	f.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		raw, _ := io.ReadAll(r.Body)
		var m map[string]any
		_ = json.Unmarshal(raw, &m)
		f.mu.Lock()
		f.bodies = append(f.bodies, m)
		n := len(f.bodies)
		f.mu.Unlock()
		w.Header().Set("X-Message-Id", fmt.Sprintf("sg-%d", n))
		w.WriteHeader(http.StatusAccepted)
	}))
	t.Cleanup(f.Close)
	return f
}

func (f *sendGridFake) requests() []map[string]any {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]map[string]any(nil), f.bodies...)
}

// The one-click unsubscribe flow with the real sendgrid-go client against a
// fake SendGrid: the headers are on the request (mailto too), a GET of the
// link changes nothing, a tampered or expired token is a 400 and changes
// nothing, the POST a mail provider sends opts the recipient out of the
// event, and the next send to them is skipped opted_out.
func TestOneClickUnsubscribeThroughSendGrid(t *testing.T) {
	t.Parallel()
	for _, dialect := range []string{"sqlite", "postgres"} {
		t.Run(dialect, func(t *testing.T) {
			t.Parallel()
			sg := newSendGridFake(t)
			api := newAPI(t, dialect, func(c *config.Config) {
				c.Channels.SendGrid.APIKey = "SG.test-key-0123456789abcdef.ghijklmnopqrstuvwxyz0123456789"
				c.Channels.SendGrid.BaseURL = sg.URL
				c.Channels.SendGrid.FromEmail = "noreply@example.com"
				c.Unsubscribe.BaseURL = "https://notify.example.com"
				c.Unsubscribe.Mailto = "unsubscribe@example.com"
			})
			cid, _ := seedInvite(t, api)
			su := api.superAdmin()
			send := func(key string) {
				t.Helper()
				res := api.do(http.MethodPost, fmt.Sprintf("/v1/collections/%d/notifications", cid), su,
					`{"notification": [{"name": "USER_INVITEUSER", "recipients": [{"email": "Jane.Doe@example.com", "macros": {"FNAME": "Jane"}}]}]}`,
					"Idempotency-Key", key)
				require.Equal(t, http.StatusAccepted, res.Code, "body: %s", res.Raw)
				_, err := api.App.Dispatcher.RunOnce(context.Background())
				require.NoError(t, err)
			}
			send("unsub-1")

			reqs := sg.requests()
			require.Len(t, reqs, 1)
			headers := reqs[0]["personalizations"].([]any)[0].(map[string]any)["headers"].(map[string]any)
			require.Equal(t, "List-Unsubscribe=One-Click", headers["List-Unsubscribe-Post"])
			m := regexp.MustCompile(`^<(https://notify\.example\.com(/unsubscribe/[A-Za-z0-9._-]+))>, <mailto:unsubscribe@example\.com\?subject=unsubscribe>$`).
				FindStringSubmatch(headers["List-Unsubscribe"].(string))
			require.NotNil(t, m, "List-Unsubscribe: %s", headers["List-Unsubscribe"])
			path := m[2]
			prefs := func() string {
				res := api.do(http.MethodGet, prefsPath(cid, "jane.doe@example.com"), su, nil)
				require.Equal(t, http.StatusOK, res.Code, "body: %s", res.Raw)
				return string(res.Raw)
			}

			// GET: the confirmation page, no change.
			res := api.do(http.MethodGet, path, "", nil)
			require.Equal(t, http.StatusOK, res.Code, "body: %s", res.Raw)
			require.Contains(t, res.Header.Get("Content-Type"), "text/html")
			require.Contains(t, string(res.Raw), `<form method="post">`)
			require.Contains(t, string(res.Raw), "USER_INVITEUSER")
			require.Equal(t, "no-store", res.Header.Get("Cache-Control"))
			require.JSONEq(t, `{"channels": {}, "events": {}}`, prefs())

			// Tampered (one character of the signature) and expired: 400, no change.
			tok := strings.TrimPrefix(path, "/unsubscribe/")
			last := tok[len(tok)-2]
			swap := byte('A')
			if last == 'A' {
				swap = 'B'
			}
			tampered := "/unsubscribe/" + tok[:len(tok)-2] + string(swap) + tok[len(tok)-1:]
			expiredLinks := preferences.NewLinks(config.Unsubscribe{TTL: time.Minute}, api.cfg.Auth, api.cfg.HTTP.Addr,
				func() time.Time { return time.Now().Add(-time.Hour) })
			expired, err := expiredLinks.Token(preferences.Target{CollectionID: cid, RecipientKey: "jane.doe@example.com", Channel: "email"})
			require.NoError(t, err)
			for _, bad := range []string{tampered, "/unsubscribe/" + expired, "/unsubscribe/not-a-token"} {
				for _, method := range []string{http.MethodGet, http.MethodPost} {
					res = api.do(method, bad, "", "List-Unsubscribe=One-Click", "Content-Type", "application/x-www-form-urlencoded")
					require.Equal(t, http.StatusBadRequest, res.Code, "%s %s: %s", method, bad, res.Raw)
					require.Equal(t, "INVALID_ARGUMENT", res.JSON["status"])
					require.Contains(t, res.JSON["responseMessage"], "invalid or has expired")
				}
			}
			require.JSONEq(t, `{"channels": {}, "events": {}}`, prefs())

			// POST, as a mail provider sends it: opted out of the event.
			res = api.do(http.MethodPost, path, "", "List-Unsubscribe=One-Click", "Content-Type", "application/x-www-form-urlencoded")
			require.Equal(t, http.StatusOK, res.Code, "body: %s", res.Raw)
			require.Contains(t, string(res.Raw), "unsubscribed")
			require.JSONEq(t, `{"channels": {}, "events": {"USER_INVITEUSER": {"enabled": false}}}`, prefs())
			env := api.listEnvelopes("detailType=" + url.QueryEscape("notificationservice/preferences/update"))
			require.Len(t, env, 1)
			require.Equal(t, "unsubscribe", env[0]["detail"].(map[string]any)["payload"].(map[string]any)["preferences"].(map[string]any)["source"])

			// The next send is skipped, and SendGrid is not called.
			send("unsub-2")
			rows := deliveriesOf(t, api, cid)
			require.Len(t, rows, 2)
			require.Equal(t, deliveryRow{0, "email", "skipped", "opted_out", "events.USER_INVITEUSER.enabled=false"}, rows[1])
			require.Len(t, sg.requests(), 1)
		})
	}
}

// The preview shows the unsubscribe headers (with a sample link) and
// {{unsubscribeUrl}}; a test-send carries a working link, as a send does.
func TestPreviewAndTestSendShowUnsubscribeHeaders(t *testing.T) {
	t.Parallel()
	api := newAPI(t, "sqlite")
	cid, _ := seedPrefsCollection(t, api)
	var emailID int64
	require.NoError(t, api.DB.Raw(`SELECT id FROM actions WHERE collection_id = ? AND config_name = 'SendEmailConfig'`, cid).Scan(&emailID).Error)
	su := api.superAdmin()

	res := api.do(http.MethodPost, fmt.Sprintf("/v1/collections/%d/actions/%d/preview", cid, emailID), su, `{"macros": {"FNAME": "Ann"}}`)
	require.Equal(t, http.StatusOK, res.Code, "body: %s", res.Raw)
	p := res.JSON["preview"].(map[string]any)
	require.Equal(t, map[string]any{"List-Unsubscribe": "<http://127.0.0.1:8080/unsubscribe/sample-token>",
		"List-Unsubscribe-Post": "List-Unsubscribe=One-Click"}, p["headers"])
	require.Contains(t, p["content"].(map[string]any)["text"], "Unsubscribe: http://127.0.0.1:8080/unsubscribe/sample-token")

	res = api.do(http.MethodPost, fmt.Sprintf("/v1/collections/%d/actions/%d/test-send", cid, emailID), su,
		`{"email": "ann@example.test", "macros": {"FNAME": "Ann"}}`)
	require.Equal(t, http.StatusOK, res.Code, "body: %s", res.Raw)
	msgs := api.App.Sandbox.Messages()
	require.Len(t, msgs, 1)
	link := strings.Trim(msgs[0].Headers["List-Unsubscribe"], "<>")
	require.True(t, strings.HasPrefix(link, "http://127.0.0.1:8080/unsubscribe/"), link)
	res = api.do(http.MethodGet, strings.TrimPrefix(link, "http://127.0.0.1:8080"), "", nil)
	require.Equal(t, http.StatusOK, res.Code, "the test email's link works: %s", res.Raw)
}
