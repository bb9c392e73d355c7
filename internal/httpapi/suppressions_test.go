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
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"gorm.io/gorm"

	"github.com/notificationservice/notificationservice/internal/actions"
	"github.com/notificationservice/notificationservice/internal/auth"
	"github.com/notificationservice/notificationservice/internal/channels"
	"github.com/notificationservice/notificationservice/internal/config"
	"github.com/notificationservice/notificationservice/internal/testdb"
)

func suppressionsPath(cid int64) string { return fmt.Sprintf("/v1/collections/%d/suppressions", cid) }

func TestSuppressionRoutes(t *testing.T) {
	t.Parallel()
	eachDialect(t, func(t *testing.T, api *testAPI) {
		cid, _ := seedInvite(t, api)
		editor := api.token(auth.Principal{UserID: "7", Roles: []string{auth.RoleAdmin}, Collections: []int64{cid}})
		viewer := api.token(auth.Principal{UserID: "8", Roles: []string{auth.RoleViewer}, Collections: []int64{cid}})
		base := suppressionsPath(cid)

		res := api.do(http.MethodPost, base, editor, map[string]any{"address": "Jane@Example.com", "channel": "email", "reason": "asked"})
		require.Equal(t, http.StatusCreated, res.Code, "body: %s", res.Raw)
		s := res.JSON["suppression"].(map[string]any)
		require.Equal(t, "jane@example.com", s["address"])
		require.Equal(t, "api", s["source"])
		require.Equal(t, "7", s["createdBy"])
		require.Equal(t, fmt.Sprintf("/v1/collections/%d/suppressions/jane@example.com?channel=email", cid), res.Header.Get("Location"))

		// A duplicate is 409; bad input is 400 naming each field.
		res = api.do(http.MethodPost, base, editor, map[string]any{"address": "JANE@example.com", "channel": "email"})
		requireError(t, res, http.StatusConflict, "ALREADY_EXISTS", "NOSPCRT0409")
		res = api.do(http.MethodPost, base, editor, map[string]any{"address": "409-685-4167", "channel": "fax"})
		requireError(t, res, http.StatusBadRequest, "INVALID_ARGUMENT", "NOSPCRT0400")
		require.Contains(t, details(res), "channel")
		res = api.do(http.MethodPost, base, editor, map[string]any{"address": "409-685-4167", "channel": "sms"})
		requireError(t, res, http.StatusBadRequest, "INVALID_ARGUMENT", "NOSPCRT0400")
		require.Contains(t, details(res)["address"], "E.164")
		res = api.do(http.MethodPost, base, editor, map[string]any{"address": "a@example.com", "channel": "email", "who": "me"})
		requireError(t, res, http.StatusBadRequest, "INVALID_ARGUMENT", "NOSPCRT0400")

		// The same phone on two channels; the URL-encoded + reaches the handler.
		for _, ch := range []string{"sms", "push"} {
			res = api.do(http.MethodPost, base, editor, map[string]any{"address": "+14155550100", "channel": ch})
			require.Equal(t, http.StatusCreated, res.Code, "body: %s", res.Raw)
		}
		res = api.do(http.MethodGet, base+"/%2B14155550100", viewer, nil)
		require.Equal(t, http.StatusOK, res.Code, "body: %s", res.Raw)
		require.Len(t, res.JSON["suppressions"], 2)
		res = api.do(http.MethodGet, base+"/%2B14155550100?channel=sms", viewer, nil)
		require.Equal(t, http.StatusOK, res.Code, "body: %s", res.Raw)
		require.Len(t, res.JSON["suppressions"], 1)
		res = api.do(http.MethodGet, base+"/jane%40EXAMPLE.com", viewer, nil)
		require.Equal(t, http.StatusOK, res.Code, "body: %s", res.Raw)
		require.Equal(t, "asked", res.JSON["suppressions"].([]any)[0].(map[string]any)["reason"])
		res = api.do(http.MethodGet, base+"/nobody%40example.com", viewer, nil)
		requireError(t, res, http.StatusNotFound, "NOT_FOUND", "NOSPGET0404")
		res = api.do(http.MethodGet, base+"/%2B14155550100?channel=fax", viewer, nil)
		requireError(t, res, http.StatusBadRequest, "INVALID_ARGUMENT", "NOSPGET0400")
		require.Contains(t, details(res), "channel")

		// The list pages and filters like every list.
		res = api.do(http.MethodGet, base+"?limit=2", viewer, nil)
		require.Equal(t, http.StatusOK, res.Code, "body: %s", res.Raw)
		require.Len(t, res.JSON["suppressions"], 2)
		cursor := res.JSON["nextCursor"].(string)
		require.NotEmpty(t, cursor)
		res = api.do(http.MethodGet, base+"?limit=2&cursor="+url.QueryEscape(cursor), viewer, nil)
		require.Equal(t, http.StatusOK, res.Code, "body: %s", res.Raw)
		require.Len(t, res.JSON["suppressions"], 1)
		require.Empty(t, res.JSON["nextCursor"])
		res = api.do(http.MethodGet, base+"?channel=push", viewer, nil)
		require.Len(t, res.JSON["suppressions"], 1)

		// The viewer may read, not lift.
		res = api.do(http.MethodDelete, base+"/%2B14155550100?channel=sms", viewer, nil)
		requireError(t, res, http.StatusForbidden, "PERMISSION_DENIED", "NOSPDEL0403")
		res = api.do(http.MethodDelete, base+"/%2B14155550100?channel=sms", editor, nil)
		require.Equal(t, http.StatusOK, res.Code, "body: %s", res.Raw)
		require.Equal(t, "NOSPDEL0000", res.JSON["responseCode"])
		require.Len(t, res.JSON["suppressions"], 1)
		res = api.do(http.MethodDelete, base+"/%2B14155550100", editor, nil)
		require.Equal(t, http.StatusOK, res.Code, "body: %s", res.Raw)
		require.Equal(t, "push", res.JSON["suppressions"].([]any)[0].(map[string]any)["channel"])
		res = api.do(http.MethodDelete, base+"/%2B14155550100", editor, nil)
		requireError(t, res, http.StatusNotFound, "NOT_FOUND", "NOSPDEL0404")

		var envelopes []string
		require.NoError(t, api.DB.Raw(`SELECT detail_type FROM outbox WHERE detail_type LIKE '%suppression%' ORDER BY id`).Scan(&envelopes).Error)
		require.Equal(t, []string{"notificationservice/suppression/create", "notificationservice/suppression/create",
			"notificationservice/suppression/create", "notificationservice/suppression/delete", "notificationservice/suppression/delete"}, envelopes)
	})
}

// sendOne sends USER_INVITEUSER to recipient (a JSON object) with a fresh
// Idempotency-Key and returns the notification id.
func sendOne(t *testing.T, api *testAPI, cid int64, recipient string) int64 {
	t.Helper()
	body := `{"notification": [{"name": "USER_INVITEUSER", "recipients": [` + recipient + `]}]}`
	res := api.do(http.MethodPost, fmt.Sprintf("/v1/collections/%d/notifications", cid), api.superAdmin(), body,
		"Idempotency-Key", testdb.Name("k"))
	require.Equal(t, http.StatusAccepted, res.Code, "body: %s", res.Raw)
	return int64(res.JSON["notificationIds"].([]any)[0].(float64))
}

type suppressedRow struct {
	ID                                    int64
	Status, Reason, ReasonDetail, Address string
}

// deliveryOf is the one delivery of notification nid.
func deliveryOf(t *testing.T, db *gorm.DB, nid int64) suppressedRow {
	t.Helper()
	var rows []suppressedRow
	require.NoError(t, db.Raw(`SELECT id, status, reason, reason_detail, address FROM deliveries WHERE notification_id = ?`, nid).Scan(&rows).Error)
	require.Len(t, rows, 1)
	return rows[0]
}

func runOnce(t *testing.T, api *testAPI) {
	t.Helper()
	_, err := api.App.Dispatcher.RunOnce(context.Background())
	require.NoError(t, err)
}

func sandboxCount(t *testing.T, db *gorm.DB) int64 {
	t.Helper()
	var n int64
	require.NoError(t, db.Raw(`SELECT COUNT(*) FROM sandbox_messages`).Scan(&n).Error)
	return n
}

// suppressionsAdded reads notify_suppressions_added_total{source}.
func suppressionsAdded(t *testing.T, api *testAPI, source string) float64 {
	t.Helper()
	mfs, err := api.App.Metrics.Registry().Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		if mf.GetName() != "notify_suppressions_added_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "source" && l.GetValue() == source {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	t.Fatalf("no notify_suppressions_added_total{source=%q}", source)
	return 0
}

// A signed SendGrid hard bounce or spam report puts the address on the
// collection's list; the next send to it is skipped as suppressed without
// reaching the channel; lifting it lets the next one go out. A soft bounce
// (blocked) suppresses nothing.
func TestSendGridReportsSuppress(t *testing.T) {
	t.Parallel()
	for _, dialect := range []string{"sqlite", "postgres"} {
		for _, tc := range []struct {
			name, event, source string
			suppresses          bool
		}{
			{"hard bounce", `"event":"bounce","type":"bounce","status":"5.1.1","reason":"550 5.1.1 user unknown"`, "sendgrid_bounce", true},
			{"spam report", `"event":"spamreport"`, "sendgrid_spamreport", true},
			{"blocked", `"event":"bounce","type":"blocked","status":"4.0.0","reason":"blocked by the receiver"`, "", false},
		} {
			t.Run(dialect+"/"+tc.name, func(t *testing.T) {
				t.Parallel()
				key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
				require.NoError(t, err)
				der, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
				require.NoError(t, err)
				api := newAPI(t, dialect, func(c *config.Config) {
					c.Channels.SendGrid.WebhookPublicKey = base64.StdEncoding.EncodeToString(der)
				})
				f := &webhookFixture{api: api, sgKey: key}
				cid, _ := seedInvite(t, api)
				const rcpt = `{"email": "Jane.Doe@Example.com", "macros": {"FNAME": "Jane"}}`

				first := deliveryOf(t, api.DB, sendOne(t, api, cid, rcpt))
				runOnce(t, api)
				require.Equal(t, "sent", deliveryOf(t, api.DB, first.ID).Status)
				require.EqualValues(t, 1, sandboxCount(t, api.DB))

				body := fmt.Sprintf(`[{"email":"jane.doe@example.com","timestamp":%d,%s,"sg_message_id":"m1","delivery_id":"%d"}]`,
					time.Now().Unix(), tc.event, first.ID)
				res := f.sendGrid(t, body, f.sign(t, body, time.Now())...)
				require.Equal(t, http.StatusOK, res.Code, "body: %s", res.Raw)

				res = api.do(http.MethodGet, suppressionsPath(cid), api.superAdmin(), nil)
				require.Equal(t, http.StatusOK, res.Code, "body: %s", res.Raw)
				list := res.JSON["suppressions"].([]any)
				if !tc.suppresses {
					require.Empty(t, list)
					next := sendOne(t, api, cid, rcpt)
					require.Equal(t, "pending", deliveryOf(t, api.DB, next).Status)
					return
				}
				require.Len(t, list, 1)
				s := list[0].(map[string]any)
				require.Equal(t, "jane.doe@example.com", s["address"])
				require.Equal(t, "email", s["channel"])
				require.Equal(t, tc.source, s["source"])
				require.Equal(t, "sendgrid", s["createdBy"])
				require.EqualValues(t, 1, suppressionsAdded(t, api, tc.source))

				// SendGrid sends the batch again (whatever the answer, as the
				// delivery is already final): nothing more.
				f.sendGrid(t, body, f.sign(t, body, time.Now())...)
				require.EqualValues(t, 1, suppressionsAdded(t, api, tc.source))

				// The next send is skipped, in any case of the address, and never reaches the channel.
				nid := sendOne(t, api, cid, `{"email": "JANE.DOE@example.com", "macros": {"FNAME": "Jane"}}`)
				d := deliveryOf(t, api.DB, nid)
				require.Equal(t, "skipped", d.Status)
				require.Equal(t, "suppressed", d.Reason)
				require.Contains(t, d.ReasonDetail, tc.source)
				runOnce(t, api)
				require.EqualValues(t, 1, sandboxCount(t, api.DB), "a suppressed recipient reaches no provider")
				res = api.do(http.MethodGet, fmt.Sprintf("/v1/collections/%d/notifications/%d", cid, nid), api.superAdmin(), nil)
				require.Equal(t, http.StatusOK, res.Code, "body: %s", res.Raw)
				got := res.JSON["notification"].(map[string]any)["deliveries"].([]any)[0].(map[string]any)
				require.Equal(t, "suppressed", got["reason"], "the status API says why")
				require.Contains(t, got["reasonDetail"], "JANE.DOE@example.com is suppressed")

				// Lifted: the next send goes out.
				res = api.do(http.MethodDelete, suppressionsPath(cid)+"/jane.doe%40example.com", api.superAdmin(), nil)
				require.Equal(t, http.StatusOK, res.Code, "body: %s", res.Raw)
				nid = sendOne(t, api, cid, rcpt)
				runOnce(t, api)
				require.Equal(t, "sent", deliveryOf(t, api.DB, nid).Status)
				require.EqualValues(t, 2, sandboxCount(t, api.DB))
			})
		}
	}
}

// twilioFake plays Twilio's Messages API: it refuses with error 21610 (the
// recipient replied STOP) while stop is set, else accepts; it counts calls.
type twilioFake struct {
	srv   *httptest.Server
	stop  atomic.Bool
	calls atomic.Int64
}

func newTwilioFake(t *testing.T) *twilioFake {
	f := &twilioFake{}
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		f.calls.Add(1)
		w.Header().Set("Content-Type", "application/json")
		if f.stop.Load() {
			w.WriteHeader(http.StatusBadRequest)
			_, _ = io.WriteString(w, `{"code": 21610, "message": "Attempt to send to unsubscribed recipient", "more_info": "https://www.twilio.com/docs/errors/21610", "status": 400}`)
			return
		}
		w.WriteHeader(http.StatusCreated)
		_, _ = fmt.Fprintf(w, `{"sid": "SM%032d", "status": "queued"}`, f.calls.Load())
	}))
	t.Cleanup(f.srv.Close)
	return f
}

// Twilio's 21610 on a send (through the real twilio-go client) fails the
// delivery and suppresses the phone as the recipient gave it; the next send
// is skipped without a Twilio call; lifting it lets the next one go out. A
// status callback with ErrorCode 21610 suppresses too.
func TestTwilioStopSuppresses(t *testing.T) {
	t.Parallel()
	const token = "0123456789abcdef0123456789abcdef"
	const callback = "https://notify.example.com/v1/webhooks/twilio/status"
	for _, dialect := range []string{"sqlite", "postgres"} {
		t.Run(dialect, func(t *testing.T) {
			t.Parallel()
			tw := newTwilioFake(t)
			tw.stop.Store(true)
			api := newAPI(t, dialect, func(c *config.Config) {
				c.Channels.Twilio.AccountSID = "AC0123456789abcdef0123456789abcdef"
				c.Channels.Twilio.AuthToken = token
				c.Channels.Twilio.BaseURL = tw.srv.URL
				c.Channels.Twilio.From = "+15005550006"
				c.Channels.Twilio.DefaultCountryCode = "1"
				c.Channels.Twilio.StatusCallbackURL = callback
				c.Channels.Twilio.RatePerSecond = 0
			})
			cid := seedSMS(t, api)
			const rcpt = `{"phone": "409-685-4167", "macros": {"FNAME": "Jo"}}`

			nid := sendOne(t, api, cid, rcpt)
			runOnce(t, api)
			d := deliveryOf(t, api.DB, nid)
			require.Equal(t, "failed", d.Status)
			require.Contains(t, d.Reason, "21610")
			require.EqualValues(t, 1, tw.calls.Load())

			res := api.do(http.MethodGet, suppressionsPath(cid)+"/409-685-4167?channel=sms", api.superAdmin(), nil)
			require.Equal(t, http.StatusOK, res.Code, "body: %s", res.Raw)
			s := res.JSON["suppressions"].([]any)[0].(map[string]any)
			require.Equal(t, "twilio_stop", s["source"])
			require.Equal(t, "twilio", s["createdBy"])
			require.Contains(t, s["reason"], "21610")
			require.EqualValues(t, 1, suppressionsAdded(t, api, "twilio_stop"))

			nid = sendOne(t, api, cid, rcpt)
			d = deliveryOf(t, api.DB, nid)
			require.Equal(t, "skipped", d.Status)
			require.Equal(t, "suppressed", d.Reason)
			require.Contains(t, d.ReasonDetail, "twilio_stop")
			runOnce(t, api)
			require.EqualValues(t, 1, tw.calls.Load(), "no Twilio call for a suppressed number")

			res = api.do(http.MethodDelete, suppressionsPath(cid)+"/409-685-4167", api.superAdmin(), nil)
			require.Equal(t, http.StatusOK, res.Code, "body: %s", res.Raw)
			tw.stop.Store(false)
			nid = sendOne(t, api, cid, rcpt)
			runOnce(t, api)
			d = deliveryOf(t, api.DB, nid)
			require.Equal(t, "sent", d.Status, d.Reason)
			require.EqualValues(t, 2, tw.calls.Load())

			// Later Twilio reports that message undelivered with 21610 (the
			// recipient replied STOP meanwhile): suppressed again.
			form := url.Values{"MessageSid": {"SM1"}, "MessageStatus": {"undelivered"}, "ErrorCode": {"21610"}, "To": {"+14096854167"}}
			query := channels.CallbackDeliveryParam + "=" + fmt.Sprint(d.ID)
			f := &webhookFixture{api: api}
			res = f.twilio(t, query, form, channels.TwilioSignature(token, callback+"?"+query, form))
			require.Equal(t, http.StatusOK, res.Code, "body: %s", res.Raw)
			res = api.do(http.MethodGet, suppressionsPath(cid)+"/409-685-4167?channel=sms", api.superAdmin(), nil)
			require.Equal(t, http.StatusOK, res.Code, "the delivery's address, as the recipient gave it: %s", res.Raw)
			require.EqualValues(t, 2, suppressionsAdded(t, api, "twilio_stop"))
		})
	}
}

// seedSMS is a collection whose USER_INVITEUSER has one SMS action.
func seedSMS(t *testing.T, api *testAPI) int64 {
	t.Helper()
	cid, emailAction := seedInvite(t, api)
	var eventID int64
	require.NoError(t, api.DB.Raw(`SELECT event_id FROM actions WHERE id = ?`, emailAction).Scan(&eventID).Error)
	require.NoError(t, api.DB.Exec(`DELETE FROM actions WHERE id = ?`, emailAction).Error)
	now := time.Now().UnixMilli()
	require.NoError(t, api.DB.Create(&actions.Action{CollectionID: cid, EventID: eventID, Name: "sms", Status: actions.StatusActive,
		ConfigName: actions.ConfigSMS, Config: actions.Config{Content: actions.Content{Body: "Hi {{FNAME}}"}},
		CreatedTime: now, UpdatedTime: now}).Error)
	return cid
}

// Planning reads the suppression list once per batch, whatever the number
// of recipients: one statement on the suppressions table per send.
func TestSuppressionLookupIsOneQueryPerBatch(t *testing.T) {
	t.Parallel()
	eachDialect(t, func(t *testing.T, api *testAPI) {
		cid, _ := seedInvite(t, api)
		res := api.do(http.MethodPost, suppressionsPath(cid), api.superAdmin(), map[string]any{"address": "r7@example.com", "channel": "email"})
		require.Equal(t, http.StatusCreated, res.Code, "body: %s", res.Raw)
		// The first batch after an addition also asks whether the collection
		// has any entries (rulescache_test.go); the count is of a batch after it.
		require.Equal(t, "", sendTo(t, api, cid, "r1@example.com"))
		var statements atomic.Int64
		testdb.InjectError(t, api.DB, func(stmt *gorm.Statement) error {
			if strings.Contains(stmt.SQL.String(), "suppressions") || stmt.Table == "suppressions" {
				statements.Add(1)
			}
			return nil
		})
		var rs []string
		for i := range 50 {
			rs = append(rs, fmt.Sprintf(`{"email": "r%d@example.com", "phone": "+1415555%04d", "macros": {"FNAME": "x"}}`, i, i))
		}
		body := `{"notification": [{"name": "USER_INVITEUSER", "recipients": [` + strings.Join(rs, ",") + `]},
 {"name": "USER_INVITEUSER", "recipients": [` + strings.Join(rs[:10], ",") + `]}]}`
		res = api.do(http.MethodPost, fmt.Sprintf("/v1/collections/%d/notifications", cid), api.superAdmin(), body, "Idempotency-Key", testdb.Name("k"))
		require.Equal(t, http.StatusAccepted, res.Code, "body: %s", res.Raw)
		require.EqualValues(t, 1, statements.Load())
		var skipped int64
		require.NoError(t, api.DB.Raw(`SELECT COUNT(*) FROM deliveries WHERE reason = 'suppressed'`).Scan(&skipped).Error)
		require.EqualValues(t, 2, skipped, "r7 in both notifications")
	})
}
