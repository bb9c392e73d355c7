package channels

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/hmac"
	"crypto/sha1"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/sendgrid/sendgrid-go/helpers/eventwebhook"
	"github.com/twilio/twilio-go/client"

	"github.com/notificationservice/notificationservice/internal/config"
)

// Statuses a provider report moves a delivery to. A bounce or block is
// "bounced" (the address or its server refused it); a drop or a carrier
// failure is "failed". The reason keeps the provider's own words either way.
const (
	ReportDelivered = "delivered"
	ReportBounced   = "bounced"
	ReportFailed    = "failed"
	// ReportOpened and ReportClicked are engagements: the recipient opened
	// the message or clicked a link in it. They change no status; the
	// customer webhooks receive them as DELIVERY_OPENED and DELIVERY_CLICKED.
	ReportOpened  = "opened"
	ReportClicked = "clicked"
)

// Signature failures. ErrUnsigned is a request without the signature
// headers (401); ErrBadSignature one whose signature or timestamp does not
// verify (403). Neither changes anything.
var (
	ErrUnsigned     = errors.New("channels: webhook request is not signed")
	ErrBadSignature = errors.New("channels: webhook signature does not verify")
)

// StatusEvent is a provider's report on one message.
type StatusEvent struct {
	Provider          string
	DeliveryID        int64  // from custom_args or the callback URL; 0 when the message is not ours
	ProviderMessageID string // Twilio's MessageSid, SendGrid's sg_message_id
	Event             string // the provider's own word: delivered, bounce, undelivered...
	Status            string // a Report* value; "" when the event changes nothing
	Reason            string
	Time              time.Time // when the provider saw the event; zero when it does not say
	// Suppress is the suppression-list source the event implies (a hard
	// bounce, a spam report, a STOP: Suppress*), "" for none; Address is
	// the recipient address it names (SendGrid's email, Twilio's To).
	Suppress string
	Address  string
}

// Suppression sources a report or a send error implies: the values of
// StatusEvent.Suppress and Error.Suppress, and internal/suppressions'
// source codes. Soft bounces (blocked, deferred) and drops imply none: the
// address may work tomorrow.
const (
	SuppressSendGridBounce     = "sendgrid_bounce"
	SuppressSendGridSpamReport = "sendgrid_spamreport"
	SuppressTwilioStop         = "twilio_stop"
)

// TwilioUnsubscribed is Twilio's error 21610: the recipient replied STOP
// to the sender, and Twilio refuses every message to it until they reply
// START.
const TwilioUnsubscribed = 21610

// SendGridWebhook verifies SendGrid's signed Event Webhook: an ECDSA
// signature over the timestamp header followed by the raw body.
type SendGridWebhook struct {
	key     *ecdsa.PublicKey
	maxSkew time.Duration
	now     func() time.Time
}

// NewSendGridWebhook returns a verifier for the base64 public key SendGrid
// shows. An empty key gives a verifier that refuses every request.
func NewSendGridWebhook(publicKey string, maxSkew time.Duration) (*SendGridWebhook, error) {
	w := &SendGridWebhook{maxSkew: maxSkew, now: time.Now}
	if publicKey == "" {
		return w, nil
	}
	k, err := config.ECDSAPublicKey(publicKey)
	if err != nil {
		return nil, fmt.Errorf("channels: sendgrid webhook key: %w", err)
	}
	w.key = k
	return w, nil
}

// Configured reports whether a verification key is set.
func (w *SendGridWebhook) Configured() bool { return w != nil && w.key != nil }

// SendGridSignatureHeader carries the Event Webhook's signature; the
// timestamp it signs comes in SendGrid's timestamp header.
const SendGridSignatureHeader = eventwebhook.VerificationHTTPHeader

// VerifyRequest checks a webhook request, its header and raw body, as
// Verify does; the header names are SendGrid's business, not the caller's.
func (w *SendGridWebhook) VerifyRequest(header http.Header, body []byte) error {
	return w.Verify(body, header.Get(eventwebhook.VerificationHTTPHeader), header.Get(eventwebhook.TimestampHTTPHeader))
}

// Verify checks the signature and timestamp headers against body. A
// timestamp further than maxSkew from now is refused, so a captured request
// cannot be replayed later.
func (w *SendGridWebhook) Verify(body []byte, signature, timestamp string) error {
	if signature == "" || timestamp == "" {
		return ErrUnsigned
	}
	if w.key == nil {
		return fmt.Errorf("%w: channels.sendgrid.webhookPublicKey is not configured", ErrBadSignature)
	}
	secs, err := strconv.ParseInt(timestamp, 10, 64)
	if err != nil {
		return fmt.Errorf("%w: timestamp %q is not epoch seconds", ErrBadSignature, timestamp)
	}
	if skew := w.now().Sub(time.Unix(secs, 0)).Abs(); skew > w.maxSkew {
		return fmt.Errorf("%w: timestamp is %s away from now", ErrBadSignature, skew.Round(time.Second))
	}
	ok, err := eventwebhook.VerifySignature(w.key, body, signature, timestamp)
	if err != nil || !ok {
		return ErrBadSignature
	}
	return nil
}

// sendGridEvent is one entry of the Event Webhook's JSON array. Custom args
// arrive as top-level fields.
type sendGridEvent struct {
	Event        string          `json:"event"`
	Email        string          `json:"email"`
	Timestamp    int64           `json:"timestamp"`
	SGMessageID  string          `json:"sg_message_id"`
	Reason       string          `json:"reason"`
	Status       string          `json:"status"`
	Type         string          `json:"type"`
	Response     string          `json:"response"`
	DeliveryID   json.RawMessage `json:"delivery_id"`
	Notification json.RawMessage `json:"notification_id"`
}

// ParseSendGridEvents reads an Event Webhook body. delivered marks the
// delivery delivered; bounce (including blocked) marks it bounced and dropped failed,
// with SendGrid's reason; open and click are engagements (ReportOpened,
// ReportClicked); processed, deferred and the rest change nothing (Status "").
// A hard bounce (event bounce, type bounce or none; not blocked) and a
// spamreport also suppress the event's address.
func ParseSendGridEvents(body []byte) ([]StatusEvent, error) {
	var raw []sendGridEvent
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(&raw); err != nil {
		return nil, fmt.Errorf("channels: sendgrid events: %w", err)
	}
	out := make([]StatusEvent, 0, len(raw))
	for _, e := range raw {
		ev := StatusEvent{
			Provider:          SendGridName,
			DeliveryID:        rawID(e.DeliveryID),
			ProviderMessageID: e.SGMessageID,
			Event:             e.Event,
			Time:              time.Unix(e.Timestamp, 0),
		}
		switch e.Event {
		case "delivered":
			ev.Status = ReportDelivered
		case "open":
			ev.Status = ReportOpened
		case "click":
			ev.Status = ReportClicked
		case "bounce", "blocked", "dropped":
			ev.Status = ReportFailed
			if e.Event != "dropped" {
				ev.Status = ReportBounced
			}
			kind := e.Event
			if e.Type != "" && e.Type != e.Event {
				kind += " (" + e.Type + ")"
			}
			ev.Reason = strings.TrimSpace(strings.Join(nonEmpty(kind+":", e.Status, e.Reason), " "))
			if e.Event == "bounce" && (e.Type == "" || e.Type == "bounce") {
				ev.Suppress, ev.Address = SuppressSendGridBounce, e.Email
			}
		case "spamreport":
			ev.Suppress, ev.Address, ev.Reason = SuppressSendGridSpamReport, e.Email, "spamreport: the recipient marked the message as spam"
		}
		out = append(out, ev)
	}
	return out, nil
}

// rawID reads a custom arg that may be a JSON string or number.
func rawID(b json.RawMessage) int64 {
	s := strings.Trim(string(b), `"`)
	id, err := strconv.ParseInt(s, 10, 64)
	if err != nil || id < 0 {
		return 0
	}
	return id
}

func nonEmpty(ss ...string) []string {
	var out []string
	for _, s := range ss {
		if s != "" {
			out = append(out, s)
		}
	}
	return out
}

// TwilioWebhook verifies Twilio status callbacks (X-Twilio-Signature, an
// HMAC of the URL Twilio called and the POST parameters, keyed by the auth
// token) with twilio-go's request validator.
type TwilioWebhook struct {
	validator *client.RequestValidator
	public    *url.URL // the configured callback URL; nil: use the request's own
}

// NewTwilioWebhook returns a verifier. callbackURL is the public URL given
// to Twilio (channels.twilio.statusCallbackURL); signatures are checked
// against it, not against the Host the request arrived with, which a proxy
// may have changed. An empty authToken refuses every request.
func NewTwilioWebhook(authToken, callbackURL string) *TwilioWebhook {
	w := &TwilioWebhook{}
	if authToken != "" {
		v := client.NewRequestValidator(authToken)
		w.validator = &v
	}
	if u, err := url.Parse(callbackURL); err == nil && callbackURL != "" {
		w.public = u
	}
	return w
}

// Configured reports whether an auth token is set.
func (w *TwilioWebhook) Configured() bool { return w != nil && w.validator != nil }

// SignedURL is the URL Twilio signed: the configured callback URL's scheme,
// host and path with the query the request arrived with; requestURL when no
// callback URL is configured.
func (w *TwilioWebhook) SignedURL(requestURL *url.URL) string {
	if w.public == nil {
		return requestURL.String()
	}
	u := *w.public
	u.RawQuery = requestURL.RawQuery
	return u.String()
}

// Verify checks signature for a POST to signedURL with form parameters.
func (w *TwilioWebhook) Verify(signedURL string, form url.Values, signature string) error {
	if signature == "" {
		return ErrUnsigned
	}
	if w.validator == nil {
		return fmt.Errorf("%w: channels.twilio.authToken is not configured", ErrBadSignature)
	}
	params := make(map[string]string, len(form))
	for k, v := range form {
		if len(v) > 0 {
			params[k] = v[0]
		}
	}
	if !w.validator.Validate(signedURL, params, signature) {
		return ErrBadSignature
	}
	return nil
}

// ParseTwilioStatus reads a status callback: delivered and read mark the
// delivery delivered; undelivered and failed mark it failed with Twilio's
// error code; queued, sent and the rest change nothing (Status ""). Error
// 21610 (the recipient replied STOP) also suppresses the To number.
func ParseTwilioStatus(form, query url.Values) StatusEvent {
	ev := StatusEvent{
		Provider:          TwilioName,
		ProviderMessageID: form.Get("MessageSid"),
		Event:             form.Get("MessageStatus"),
	}
	if ev.ProviderMessageID == "" {
		ev.ProviderMessageID = form.Get("SmsSid")
	}
	if ev.Event == "" {
		ev.Event = form.Get("SmsStatus")
	}
	if id, err := strconv.ParseInt(query.Get(CallbackDeliveryParam), 10, 64); err == nil && id > 0 {
		ev.DeliveryID = id
	}
	switch ev.Event {
	case "delivered", "read":
		ev.Status = ReportDelivered
	case "undelivered", "failed":
		ev.Status = ReportFailed
		ev.Reason = ev.Event
		if code := form.Get("ErrorCode"); code != "" {
			ev.Reason += ": error " + code
			if msg := form.Get("ErrorMessage"); msg != "" {
				ev.Reason += " " + msg
			}
		}
		if form.Get("ErrorCode") == strconv.Itoa(TwilioUnsubscribed) {
			ev.Suppress, ev.Address = SuppressTwilioStop, form.Get("To")
		}
	}
	return ev
}

// TwilioSignature computes the X-Twilio-Signature Twilio would send, for
// tests and tools that play Twilio.
func TwilioSignature(authToken, signedURL string, form url.Values) string {
	// twilio-go exposes validation only; this is its documented algorithm:
	// base64(HMAC-SHA1(token, URL + each sorted key and its value)).
	keys := make([]string, 0, len(form))
	for k := range form {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	b.WriteString(signedURL)
	for _, k := range keys {
		b.WriteString(k)
		b.WriteString(form.Get(k))
	}
	return hmacSHA1Base64(authToken, b.String())
}

func hmacSHA1Base64(key, msg string) string {
	m := hmac.New(sha1.New, []byte(key))
	m.Write([]byte(msg))
	return base64.StdEncoding.EncodeToString(m.Sum(nil))
}
