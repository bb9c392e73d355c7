package httpapi_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/notificationservice/notificationservice/internal/channels"
	"github.com/notificationservice/notificationservice/internal/config"
)

const (
	whTwilioToken = "0123456789abcdef0123456789abcdef"
	whCallbackURL = "https://notify.example.com/v1/webhooks/twilio/status"
)

// webhookFixture is the service with both webhooks configured and four
// deliveries: two SendGrid emails and one Twilio SMS in sent, one SMS still
// pending (its send not recorded yet).
type webhookFixture struct {
	api                           *testAPI
	sgKey                         *ecdsa.PrivateKey
	email1, email2, sms, smsStill int64
}

func newWebhookFixture(t testing.TB, dialect string, mutate ...func(*config.Config)) *webhookFixture {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	der, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	require.NoError(t, err)
	api := newAPI(t, dialect, func(c *config.Config) {
		c.Channels.SendGrid.WebhookPublicKey = base64.StdEncoding.EncodeToString(der)
		c.Channels.Twilio.AuthToken = whTwilioToken
		c.Channels.Twilio.StatusCallbackURL = whCallbackURL
		for _, m := range mutate {
			m(c)
		}
	})
	f := &webhookFixture{api: api, sgKey: key}
	now := time.Now().UnixMilli()
	var nid int64
	require.NoError(t, api.DB.Raw(`INSERT INTO notifications (collection_id, name, source, recipients, status, created_time)
VALUES (1, 'USER_INVITEUSER', 'api', '[]', 'accepted', ?) RETURNING id`, now).Scan(&nid).Error)
	insert := func(idx int, channel, status, provider, pmid string) int64 {
		var id int64
		require.NoError(t, api.DB.Raw(`INSERT INTO deliveries (notification_id, collection_id, action_id, recipient_index, channel, status,
attempts, provider, provider_message_id, created_time, updated_time) VALUES (?, 1, 1, ?, ?, ?, 1, ?, ?, ?, ?) RETURNING id`,
			nid, idx, channel, status, provider, pmid, now, now).Scan(&id).Error)
		return id
	}
	f.email1 = insert(0, "email", "sent", "sendgrid", "batch-1")
	f.email2 = insert(1, "email", "sent", "sendgrid", "batch-1")
	f.sms = insert(2, "sms", "sent", "twilio", "SM1")
	f.smsStill = insert(3, "sms", "sending", "", "")
	return f
}

func (f *webhookFixture) status(t *testing.T, id int64) (status, reason string) {
	t.Helper()
	row := struct{ Status, Reason string }{}
	require.NoError(t, f.api.DB.Raw("SELECT status, reason FROM deliveries WHERE id = ?", id).Scan(&row).Error)
	return row.Status, row.Reason
}

// sendGrid posts body signed as SendGrid signs it (signedBody, when not nil,
// is what the signature covers).
func (f *webhookFixture) sendGrid(t testing.TB, body string, headers ...string) response {
	t.Helper()
	return f.api.do(http.MethodPost, "/v1/webhooks/sendgrid/events", "", body, headers...)
}

func (f *webhookFixture) sign(t testing.TB, body string, at time.Time) []string {
	t.Helper()
	ts := strconv.FormatInt(at.Unix(), 10)
	h := sha256.Sum256([]byte(ts + body))
	sig, err := ecdsa.SignASN1(rand.Reader, f.sgKey, h[:])
	require.NoError(t, err)
	return []string{"X-Twilio-Email-Event-Webhook-Signature", base64.StdEncoding.EncodeToString(sig),
		"X-Twilio-Email-Event-Webhook-Timestamp", ts}
}

func (f *webhookFixture) twilio(t *testing.T, query string, form url.Values, signature string) response {
	t.Helper()
	path := "/v1/webhooks/twilio/status"
	if query != "" {
		path += "?" + query
	}
	return f.api.do(http.MethodPost, path, "", form.Encode(),
		"Content-Type", "application/x-www-form-urlencoded", "X-Twilio-Signature", signature)
}

func webhookDialects(t *testing.T, fn func(t *testing.T, f *webhookFixture)) {
	for _, d := range []string{"sqlite", "postgres"} {
		t.Run(d, func(t *testing.T) {
			t.Parallel()
			fn(t, newWebhookFixture(t, d))
		})
	}
}

func TestSendGridWebhookRoute(t *testing.T) {
	t.Parallel()
	webhookDialects(t, func(t *testing.T, f *webhookFixture) {
		now := time.Now().Unix()
		body := fmt.Sprintf(`[
 {"email":"a@example.test","timestamp":%d,"event":"processed","sg_message_id":"batch-1.f1","delivery_id":"%d"},
 {"email":"a@example.test","timestamp":%d,"event":"delivered","sg_message_id":"batch-1.f1","delivery_id":"%d","notification_id":"1"},
 {"email":"b@example.test","timestamp":%d,"event":"bounce","type":"bounce","status":"5.1.1","reason":"550 user unknown","sg_message_id":"batch-1.f2","delivery_id":"%d"},
 {"email":"c@example.test","timestamp":%d,"event":"delivered","sg_message_id":"other.f9"}]`,
			now, f.email1, now, f.email1, now, f.email2, now)

		// Unsigned, wrongly signed, tampered, or replayed: refused, nothing changes.
		res := f.sendGrid(t, body)
		requireError(t, res, http.StatusUnauthorized, "UNAUTHENTICATED", "NOWHUPD0401")
		other := f.sign(t, body+" ", time.Now())
		res = f.sendGrid(t, body, other...)
		requireError(t, res, http.StatusForbidden, "PERMISSION_DENIED", "NOWHUPD0403")
		res = f.sendGrid(t, body, f.sign(t, body, time.Now().Add(-time.Hour))...)
		requireError(t, res, http.StatusForbidden, "PERMISSION_DENIED", "NOWHUPD0403")
		for _, id := range []int64{f.email1, f.email2} {
			s, _ := f.status(t, id)
			require.Equal(t, "sent", s)
		}

		res = f.sendGrid(t, body, f.sign(t, body, time.Now())...)
		require.Equal(t, http.StatusOK, res.Code, "body: %s", res.Raw)
		require.Equal(t, "NOWHUPD0000", res.JSON["responseCode"])
		require.EqualValues(t, 2, res.JSON["updated"])
		require.EqualValues(t, 2, res.JSON["ignored"], "processed changes nothing; an event without our delivery_id is not ours")
		s, _ := f.status(t, f.email1)
		require.Equal(t, "delivered", s)
		s, reason := f.status(t, f.email2)
		require.Equal(t, "bounced", s)
		require.Equal(t, "bounce: 5.1.1 550 user unknown", reason)
	})
}

// A report that overtakes the worker's status commit asks SendGrid to send
// the batch again; an old one is acknowledged and dropped.
func TestSendGridWebhookUnmatched(t *testing.T) {
	t.Parallel()
	f := newWebhookFixture(t, "sqlite")
	recent := fmt.Sprintf(`[{"event":"delivered","timestamp":%d,"delivery_id":"%d"}]`, time.Now().Unix(), f.smsStill)
	res := f.sendGrid(t, recent, f.sign(t, recent, time.Now())...)
	requireError(t, res, http.StatusServiceUnavailable, "UNAVAILABLE", "NOWHUPD0503")
	require.Equal(t, "30", res.Header.Get("Retry-After"))

	old := fmt.Sprintf(`[{"event":"delivered","timestamp":%d,"delivery_id":"%d"}]`, time.Now().Add(-time.Hour).Unix(), f.smsStill)
	res = f.sendGrid(t, old, f.sign(t, old, time.Now())...)
	require.Equal(t, http.StatusOK, res.Code, "body: %s", res.Raw)
	require.EqualValues(t, 1, res.JSON["unmatched"])
	s, _ := f.status(t, f.smsStill)
	require.Equal(t, "sending", s)

	res = f.sendGrid(t, `{"not": "a batch"}`, f.sign(t, `{"not": "a batch"}`, time.Now())...)
	requireError(t, res, http.StatusBadRequest, "INVALID_ARGUMENT", "NOWHUPD0400")
}

func TestTwilioStatusRoute(t *testing.T) {
	t.Parallel()
	webhookDialects(t, func(t *testing.T, f *webhookFixture) {
		form := url.Values{"MessageSid": {"SM1"}, "MessageStatus": {"undelivered"}, "ErrorCode": {"30003"},
			"AccountSid": {"AC0123456789abcdef0123456789abcdef"}, "To": {"+14155550100"}}
		query := "deliveryId=" + strconv.FormatInt(f.sms, 10)
		signed := whCallbackURL + "?" + query

		res := f.twilio(t, query, form, "")
		requireError(t, res, http.StatusUnauthorized, "UNAUTHENTICATED", "NOWHUPD0401")
		res = f.twilio(t, query, form, channels.TwilioSignature("wrong-token", signed, form))
		requireError(t, res, http.StatusForbidden, "PERMISSION_DENIED", "NOWHUPD0403")
		// Signed for the URL the request arrived at, not the public one Twilio was given.
		res = f.twilio(t, query, form, channels.TwilioSignature(whTwilioToken, "http://example.com/v1/webhooks/twilio/status?"+query, form))
		requireError(t, res, http.StatusForbidden, "PERMISSION_DENIED", "NOWHUPD0403")
		s, _ := f.status(t, f.sms)
		require.Equal(t, "sent", s)

		res = f.twilio(t, query, form, channels.TwilioSignature(whTwilioToken, signed, form))
		require.Equal(t, http.StatusOK, res.Code, "body: %s", res.Raw)
		require.EqualValues(t, 1, res.JSON["updated"])
		s, reason := f.status(t, f.sms)
		require.Equal(t, "failed", s)
		require.Equal(t, "undelivered: error 30003", reason)

		// A report on a delivery already final changes nothing.
		form = url.Values{"MessageSid": {"SM1"}, "MessageStatus": {"delivered"}}
		res = f.twilio(t, "", form, channels.TwilioSignature(whTwilioToken, whCallbackURL, form))
		require.Equal(t, http.StatusOK, res.Code, "body: %s", res.Raw)
		require.EqualValues(t, 1, res.JSON["unmatched"])
		s, _ = f.status(t, f.sms)
		require.Equal(t, "failed", s, "a failure is not overturned by a later delivered")

		// The SID alone finds the delivery when the URL carries no deliveryId.
		var sms2 int64
		require.NoError(t, f.api.DB.Raw("UPDATE deliveries SET status = 'sent', provider = 'twilio', provider_message_id = 'SM2' WHERE id = ? RETURNING id", f.smsStill).Scan(&sms2).Error)
		form = url.Values{"MessageSid": {"SM2"}, "MessageStatus": {"delivered"}}
		res = f.twilio(t, "", form, channels.TwilioSignature(whTwilioToken, whCallbackURL, form))
		require.Equal(t, http.StatusOK, res.Code, "body: %s", res.Raw)
		require.EqualValues(t, 1, res.JSON["updated"])
		s, _ = f.status(t, f.smsStill)
		require.Equal(t, "delivered", s)

		form = url.Values{"MessageSid": {"SM9"}, "MessageStatus": {"sent"}}
		res = f.twilio(t, "", form, channels.TwilioSignature(whTwilioToken, whCallbackURL, form))
		require.Equal(t, http.StatusOK, res.Code, "body: %s", res.Raw)
		require.EqualValues(t, 1, res.JSON["ignored"])

		// A SID that is not text cannot be ours (and PostgreSQL would refuse
		// it in the query): ignored, not a 500.
		form = url.Values{"MessageSid": {"SM\xff\x00"}, "MessageStatus": {"delivered"}}
		res = f.twilio(t, "", form, channels.TwilioSignature(whTwilioToken, whCallbackURL, form))
		require.Equal(t, http.StatusOK, res.Code, "body: %s", res.Raw)
		require.EqualValues(t, 1, res.JSON["ignored"])
	})
}

// With no keys configured the routes exist but refuse everything.
func TestWebhooksUnconfigured(t *testing.T) {
	t.Parallel()
	api := newAPI(t, "sqlite")
	body := `[{"event":"delivered","delivery_id":"1"}]`
	res := api.do(http.MethodPost, "/v1/webhooks/sendgrid/events", "", body,
		"X-Twilio-Email-Event-Webhook-Signature", "c2ln", "X-Twilio-Email-Event-Webhook-Timestamp", strconv.FormatInt(time.Now().Unix(), 10))
	requireError(t, res, http.StatusForbidden, "PERMISSION_DENIED", "NOWHUPD0403")
	require.Contains(t, details(res)["X-Twilio-Email-Event-Webhook-Signature"], "webhookPublicKey is not configured")
	form := url.Values{"MessageSid": {"SM1"}, "MessageStatus": {"delivered"}}
	res = api.do(http.MethodPost, "/v1/webhooks/twilio/status", "", form.Encode(),
		"Content-Type", "application/x-www-form-urlencoded", "X-Twilio-Signature", "c2ln")
	requireError(t, res, http.StatusForbidden, "PERMISSION_DENIED", "NOWHUPD0403")
}
