package channels_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"net/http"
	"net/url"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/notificationservice/notificationservice/internal/channels"
)

// sendGridSigner plays SendGrid: it signs timestamp+body with its private key.
type sendGridSigner struct {
	key       *ecdsa.PrivateKey
	PublicKey string // base64 DER, as the SendGrid console shows it
}

func newSendGridSigner(t *testing.T) *sendGridSigner {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	der, err := x509.MarshalPKIXPublicKey(&k.PublicKey)
	require.NoError(t, err)
	return &sendGridSigner{key: k, PublicKey: base64.StdEncoding.EncodeToString(der)}
}

func (s *sendGridSigner) sign(t *testing.T, body []byte, ts time.Time) (signature, timestamp string) {
	t.Helper()
	timestamp = strconv.FormatInt(ts.Unix(), 10)
	h := sha256.Sum256(append([]byte(timestamp), body...))
	sig, err := ecdsa.SignASN1(rand.Reader, s.key, h[:])
	require.NoError(t, err)
	return base64.StdEncoding.EncodeToString(sig), timestamp
}

const sendGridEvents = `[
 {"email":"ann@example.test","timestamp":1709786405,"event":"processed","sg_message_id":"abc.filter1","delivery_id":"101","notification_id":"900"},
 {"email":"ann@example.test","timestamp":1709786406,"event":"delivered","sg_message_id":"abc.filter1","response":"250 OK","delivery_id":"101","notification_id":"900"},
 {"email":"bob@example.test","timestamp":1709786407,"event":"bounce","type":"bounce","status":"5.1.1","reason":"550 5.1.1 user unknown","sg_message_id":"abc.filter2","delivery_id":102},
 {"email":"cy@example.test","timestamp":1709786408,"event":"bounce","type":"blocked","status":"4.0.0","reason":"blocked by policy","sg_message_id":"abc.filter3","delivery_id":"103"},
 {"email":"dee@example.test","timestamp":1709786409,"event":"dropped","reason":"Bounced Address","sg_message_id":"abc.filter4","delivery_id":"104"},
 {"email":"eve@example.test","timestamp":1709786410,"event":"open","sg_message_id":"abc.filter5","delivery_id":"105"},
 {"email":"someone@example.test","timestamp":1709786411,"event":"delivered","sg_message_id":"zzz.filter9"}
]`

func TestSendGridWebhookVerify(t *testing.T) {
	t.Parallel()
	signer := newSendGridSigner(t)
	w, err := channels.NewSendGridWebhook(signer.PublicKey, 10*time.Minute)
	require.NoError(t, err)
	require.True(t, w.Configured())
	body := []byte(sendGridEvents)

	sig, ts := signer.sign(t, body, time.Now())
	require.NoError(t, w.Verify(body, sig, ts))

	require.ErrorIs(t, w.Verify(body, "", ts), channels.ErrUnsigned)
	require.ErrorIs(t, w.Verify(body, sig, ""), channels.ErrUnsigned)
	tampered := append([]byte(nil), body...)
	tampered[10] ^= 1
	require.ErrorIs(t, w.Verify(tampered, sig, ts), channels.ErrBadSignature)
	require.ErrorIs(t, w.Verify(body, sig, strconv.FormatInt(time.Now().Unix()+1, 10)), channels.ErrBadSignature, "the timestamp is signed too")
	require.ErrorIs(t, w.Verify(body, "bm90IGEgc2lnbmF0dXJl", ts), channels.ErrBadSignature)

	oldSig, oldTS := signer.sign(t, body, time.Now().Add(-time.Hour))
	require.ErrorIs(t, w.Verify(body, oldSig, oldTS), channels.ErrBadSignature, "a replayed old request")

	other := newSendGridSigner(t)
	otherSig, otherTS := other.sign(t, body, time.Now())
	require.ErrorIs(t, w.Verify(body, otherSig, otherTS), channels.ErrBadSignature, "signed with another key")

	unconfigured, err := channels.NewSendGridWebhook("", time.Minute)
	require.NoError(t, err)
	require.False(t, unconfigured.Configured())
	require.ErrorIs(t, unconfigured.Verify(body, sig, ts), channels.ErrBadSignature)

	// The request form reads SendGrid's own header names (as SendGrid
	// documents them, not through the SDK's constants).
	h := http.Header{}
	h.Set("X-Twilio-Email-Event-Webhook-Signature", sig)
	h.Set("X-Twilio-Email-Event-Webhook-Timestamp", ts)
	require.NoError(t, w.VerifyRequest(h, body))
	require.ErrorIs(t, w.VerifyRequest(h, tampered), channels.ErrBadSignature)
	h.Del("X-Twilio-Email-Event-Webhook-Timestamp")
	require.ErrorIs(t, w.VerifyRequest(h, body), channels.ErrUnsigned)
	require.Equal(t, "X-Twilio-Email-Event-Webhook-Signature", channels.SendGridSignatureHeader)

	_, err = channels.NewSendGridWebhook("bm90IGEga2V5", time.Minute)
	require.Error(t, err)
}

func TestParseSendGridEvents(t *testing.T) {
	t.Parallel()
	evs, err := channels.ParseSendGridEvents([]byte(sendGridEvents))
	require.NoError(t, err)
	require.Len(t, evs, 7)
	type got struct {
		id            int64
		event, status string
		reason, msgID string
	}
	var gots []got
	for _, e := range evs {
		require.Equal(t, "sendgrid", e.Provider)
		gots = append(gots, got{e.DeliveryID, e.Event, e.Status, e.Reason, e.ProviderMessageID})
	}
	require.Equal(t, []got{
		{101, "processed", "", "", "abc.filter1"},
		{101, "delivered", "delivered", "", "abc.filter1"},
		{102, "bounce", "bounced", "bounce: 5.1.1 550 5.1.1 user unknown", "abc.filter2"},
		{103, "bounce", "bounced", "bounce (blocked): 4.0.0 blocked by policy", "abc.filter3"},
		{104, "dropped", "failed", "dropped: Bounced Address", "abc.filter4"},
		{105, "open", "opened", "", "abc.filter5"},
		{0, "delivered", "delivered", "", "zzz.filter9"},
	}, gots)
	require.Equal(t, time.Unix(1709786406, 0), evs[1].Time)
	// Only the hard bounce suppresses: a block may clear, a drop names no
	// refusal by the recipient's server.
	for i, e := range evs {
		if i == 2 {
			require.Equal(t, channels.SuppressSendGridBounce, e.Suppress)
			require.NotEmpty(t, e.Address)
			continue
		}
		require.Empty(t, e.Suppress, e.Event)
	}

	// A spam report changes no delivery but suppresses its address.
	evs, err = channels.ParseSendGridEvents([]byte(`[{"email":"a@example.com","timestamp":1709786406,"event":"spamreport","delivery_id":"7"}]`))
	require.NoError(t, err)
	require.Empty(t, evs[0].Status)
	require.Equal(t, channels.SuppressSendGridSpamReport, evs[0].Suppress)
	require.Equal(t, "a@example.com", evs[0].Address)

	_, err = channels.ParseSendGridEvents([]byte(`{"not":"an array"}`))
	require.Error(t, err)
}

func TestTwilioWebhookVerify(t *testing.T) {
	t.Parallel()
	// The signer agrees with the vector in twilio-go's own validator tests.
	vector := url.Values{"Digits": {"1234"}, "CallSid": {"CA1234567890ABCDE"}, "To": {"+18005551212"},
		"Caller": {"+14158675309"}, "From": {"+14158675309"}, "ReasonConferenceEnded": {"test"}, "Reason": {"Participant"}}
	require.Equal(t, "vOEb5UThFn24KEfnOFLQY2AE5FY=", channels.TwilioSignature("12345", "https://mycompany.com/myapp.php?foo=1&bar=2", vector))

	w := channels.NewTwilioWebhook(testAuthToken, "https://notify.example.com/v1/webhooks/twilio/status")
	require.True(t, w.Configured())
	arrived, err := url.Parse("http://10.0.0.5:8080/v1/webhooks/twilio/status?deliveryId=12")
	require.NoError(t, err)
	signed := w.SignedURL(arrived)
	require.Equal(t, "https://notify.example.com/v1/webhooks/twilio/status?deliveryId=12", signed, "the public URL, with the query Twilio called")

	form := url.Values{"MessageSid": {"SM1"}, "MessageStatus": {"delivered"}, "AccountSid": {testAccountSID}}
	sig := channels.TwilioSignature(testAuthToken, signed, form)
	require.NoError(t, w.Verify(signed, form, sig))
	require.ErrorIs(t, w.Verify(signed, form, ""), channels.ErrUnsigned)
	require.ErrorIs(t, w.Verify(signed, url.Values{"MessageSid": {"SM1"}, "MessageStatus": {"failed"}}, sig), channels.ErrBadSignature)
	require.ErrorIs(t, w.Verify("https://notify.example.com/v1/webhooks/twilio/status?deliveryId=13", form, sig), channels.ErrBadSignature)
	require.ErrorIs(t, w.Verify(signed, form, channels.TwilioSignature("another-token", signed, form)), channels.ErrBadSignature)
	require.ErrorIs(t, channels.NewTwilioWebhook("", "").Verify(signed, form, sig), channels.ErrBadSignature)

	// Without a configured callback URL the request's own URL is what was signed.
	require.Equal(t, arrived.String(), channels.NewTwilioWebhook(testAuthToken, "").SignedURL(arrived))
}

func TestParseTwilioStatus(t *testing.T) {
	t.Parallel()
	q := url.Values{"deliveryId": {"12"}}
	ev := channels.ParseTwilioStatus(url.Values{"MessageSid": {"SM1"}, "MessageStatus": {"delivered"}}, q)
	require.Equal(t, channels.StatusEvent{Provider: "twilio", DeliveryID: 12, ProviderMessageID: "SM1", Event: "delivered", Status: "delivered"}, ev)

	ev = channels.ParseTwilioStatus(url.Values{"MessageSid": {"SM2"}, "MessageStatus": {"undelivered"}, "ErrorCode": {"30003"}}, nil)
	require.Equal(t, int64(0), ev.DeliveryID)
	require.Equal(t, "failed", ev.Status)
	require.Equal(t, "undelivered: error 30003", ev.Reason)
	require.Empty(t, ev.Suppress)

	// 21610: the recipient replied STOP; the number is suppressed.
	ev = channels.ParseTwilioStatus(url.Values{"MessageSid": {"SM2"}, "MessageStatus": {"failed"}, "ErrorCode": {"21610"}, "To": {"+14155550100"}}, q)
	require.Equal(t, "failed", ev.Status)
	require.Equal(t, channels.SuppressTwilioStop, ev.Suppress)
	require.Equal(t, "+14155550100", ev.Address)

	for _, s := range []string{"queued", "sending", "sent", "accepted"} {
		require.Empty(t, channels.ParseTwilioStatus(url.Values{"MessageSid": {"SM3"}, "MessageStatus": {s}}, q).Status, s)
	}
	require.Equal(t, "delivered", channels.ParseTwilioStatus(url.Values{"SmsSid": {"SM4"}, "SmsStatus": {"read"}}, q).Status)
}
