package channels

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/google"

	"github.com/notificationservice/notificationservice/internal/apperr"
	"github.com/notificationservice/notificationservice/internal/config"
	"github.com/notificationservice/notificationservice/internal/macros"
)

// FCMName is the provider name deliveries record for push.
const FCMName = "fcm"

// fcmScope is the OAuth scope of the FCM HTTP v1 API.
const fcmScope = "https://www.googleapis.com/auth/firebase.messaging"

// maxFCMResponse caps what is read of an FCM response: a success is a
// message name, an error a short JSON document.
const maxFCMResponse = 64 << 10

// Push sends push notifications through the FCM HTTP v1 API
// (projects.messages.send): the device token is the recipient's pushId;
// title, body and data come from the action; APNs options make the same
// message right for iOS devices.
//
// It is a small client of its own, on golang.org/x/oauth2/google for the
// service account's tokens, rather than the Firebase Admin SDK: the SDK is
// used for this one call but pulls Firestore, Storage, gRPC and deprecated
// modules into the binary (about a third of its size), and it retries 503s
// and network errors on its own, which the dispatch workers own (each Send
// here is exactly one HTTP request, whose outcome the worker records).
type Push struct {
	client          *http.Client
	endpoint        string // .../v1/projects/{project}/messages:send
	timeout         time.Duration
	maxPayloadBytes int
	concurrency     int
	limiter         *Limiter
	breaker         *Breaker
	now             func() time.Time
}

// NewPush returns the push channel for cfg. ts supplies OAuth tokens; nil
// reads the service-account key at cfg.CredentialsFile.
func NewPush(ctx context.Context, cfg config.FCM, ts oauth2.TokenSource, breakerFailures int, breakerCooldown time.Duration, log *slog.Logger) (*Push, error) {
	projectID := cfg.ProjectID
	if ts == nil {
		key, err := os.ReadFile(cfg.CredentialsFile)
		if err != nil {
			return nil, fmt.Errorf("channels: fcm credentials: %w", err)
		}
		// Only a service-account key: a key of another type (an external
		// account's credential_source, say) would make the service read files
		// or call URLs the key names.
		creds, err := google.CredentialsFromJSONWithType(ctx, key, google.ServiceAccount, fcmScope)
		if err != nil {
			return nil, fmt.Errorf("channels: fcm credentials %s: %w", cfg.CredentialsFile, err)
		}
		ts = creds.TokenSource
		if projectID == "" {
			projectID = creds.ProjectID
		}
	}
	if projectID == "" {
		return nil, errors.New("channels: fcm: no project id (set channels.fcm.projectID)")
	}
	// The token source fetches through its own client (the key's token_uri);
	// messages go through this one, with no redirects followed: FCM answers
	// a send directly.
	hc := &http.Client{
		Transport:     &oauth2.Transport{Source: oauth2.ReuseTokenSource(nil, ts), Base: newTransport(cfg.Timeout)},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	return &Push{
		client:          hc,
		endpoint:        strings.TrimRight(cfg.BaseURL, "/") + "/v1/projects/" + url.PathEscape(projectID) + "/messages:send",
		timeout:         cfg.Timeout,
		maxPayloadBytes: cfg.MaxPayloadBytes,
		concurrency:     max(cfg.Concurrency, 1),
		limiter:         NewLimiter(FCMName, cfg.RatePerSecond, cfg.Burst),
		breaker:         NewBreaker(FCMName, breakerFailures, breakerCooldown, log),
		now:             time.Now,
	}, nil
}

// Name is the provider name.
func (p *Push) Name() string { return FCMName }

// Breaker exposes the circuit breaker (for readiness and tests).
func (p *Push) Breaker() *Breaker { return p.breaker }

// Send sends each message to its device, up to the configured concurrency.
func (p *Push) Send(ctx context.Context, msgs []Message) []Result {
	out := make([]Result, len(msgs))
	each(len(msgs), p.concurrency, func(i int) { out[i] = p.sendOne(ctx, msgs[i]) })
	return out
}

// The FCM HTTP v1 message, the fields this service sets, in the order and
// with the names of the API's JSON (https://firebase.google.com/docs/
// reference/fcm/rest/v1/projects.messages): the golden files of the
// request bodies are unchanged from the Admin SDK's.
type (
	fcmRequest struct {
		Message fcmMessage `json:"message"`
	}
	fcmMessage struct {
		Data         map[string]string `json:"data,omitempty"`
		Notification *fcmNotification  `json:"notification,omitempty"`
		Android      *fcmAndroid       `json:"android,omitempty"`
		APNS         *fcmAPNS          `json:"apns,omitempty"`
		Token        string            `json:"token,omitempty"`
	}
	fcmNotification struct {
		Title string `json:"title,omitempty"`
		Body  string `json:"body,omitempty"`
	}
	fcmAndroid struct {
		Priority string `json:"priority,omitempty"`
	}
	fcmAPNS struct {
		Headers map[string]string `json:"headers,omitempty"`
		Payload fcmAPNSPayload    `json:"payload"`
	}
	fcmAPNSPayload struct {
		Aps fcmAps `json:"aps"`
	}
	fcmAps struct {
		Sound            string `json:"sound,omitempty"`
		ContentAvailable int    `json:"content-available,omitempty"`
	}
)

// fcmMessageFor builds the FCM message for m: a notification when there is a
// title or body (an alert on iOS, priority 10), a background data message
// otherwise (content-available, priority 5).
func fcmMessageFor(m Message) fcmMessage {
	msg := fcmMessage{Token: m.PushToken, Data: m.Data}
	if m.Title != "" || m.Body != "" {
		msg.Notification = &fcmNotification{Title: m.Title, Body: m.Body}
		msg.Android = &fcmAndroid{Priority: "high"}
		msg.APNS = &fcmAPNS{Headers: map[string]string{"apns-push-type": "alert", "apns-priority": "10"},
			Payload: fcmAPNSPayload{Aps: fcmAps{Sound: "default"}}}
		return msg
	}
	msg.Android = &fcmAndroid{Priority: "normal"}
	msg.APNS = &fcmAPNS{Headers: map[string]string{"apns-push-type": "background", "apns-priority": "5"},
		Payload: fcmAPNSPayload{Aps: fcmAps{ContentAvailable: 1}}}
	return msg
}

func (p *Push) sendOne(ctx context.Context, m Message) Result {
	if err := pushTokenError(FCMName, m.PushToken); err != nil {
		return Result{Err: err}
	}
	if _, err := macros.CheckPush(m.Title, m.Body, m.Data, p.maxPayloadBytes); err != nil {
		return Result{Err: Permanent(FCMName, err.Error(), err)}
	}
	if err := p.limiter.Wait(ctx, ""); err != nil {
		return Result{Err: err}
	}
	done, err := p.breaker.Allow()
	if err != nil {
		return Result{Err: err}
	}
	cctx, cancel := context.WithTimeout(ctx, p.timeout)
	defer cancel()
	id, e := p.post(cctx, m)
	if e != nil {
		done(e)
		return Result{Err: e}
	}
	done(nil)
	return Result{ProviderMessageID: id}
}

// post makes the one request of an attempt and classifies its outcome.
func (p *Push) post(ctx context.Context, m Message) (string, *Error) {
	body, err := json.Marshal(fcmRequest{Message: fcmMessageFor(m)})
	if err != nil {
		return "", Permanent(FCMName, "encoding the message: "+err.Error(), err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, p.endpoint, bytes.NewReader(body))
	if err != nil {
		return "", Permanent(FCMName, "building the request: "+err.Error(), err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := p.client.Do(req)
	if err != nil {
		return "", p.requestError(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxFCMResponse))
	if err != nil && resp.StatusCode/100 == 2 {
		// FCM took the message, and its name was lost with the body.
		return "", MaybeAccepted(FCMName, fmt.Sprintf("HTTP %d, then the answer broke off: %v", resp.StatusCode, err), err)
	}
	if err != nil {
		// The status is FCM's answer; what was read of the body may still
		// name the error.
		return "", p.classify(resp.StatusCode, resp.Header, b)
	}
	if resp.StatusCode/100 == 2 {
		var ok struct {
			Name string `json:"name"`
		}
		if err := json.Unmarshal(b, &ok); err != nil || ok.Name == "" {
			// FCM took the request; resending could notify the device twice.
			return "", Permanent(FCMName, fmt.Sprintf("HTTP %d with an unreadable answer (no message name); not resent", resp.StatusCode), err)
		}
		return ok.Name, nil
	}
	return "", p.classify(resp.StatusCode, resp.Header, b)
}

// requestError classifies a request that got no response: the OAuth token
// endpoint's refusal (no retry fixes a refused key, unless the token
// endpoint itself was unavailable), or a transport error.
func (p *Push) requestError(err error) *Error {
	var re *oauth2.RetrieveError
	if errors.As(err, &re) {
		if re.Response != nil && retryableStatus(re.Response.StatusCode) {
			return Retryable(FCMName, "OAuth token endpoint: "+re.Error(), retryAfter(re.Response.Header, p.now()), err)
		}
		return Permanent(FCMName, "authentication: the OAuth token was refused: "+re.Error(), err)
	}
	return transportError(FCMName, err)
}

// classify turns an FCM error response into an *Error, by the FCM error
// code (details[].errorCode, else the status) and the HTTP status.
func (p *Push) classify(status int, header http.Header, body []byte) *Error {
	var fe fcmErrorBody
	_ = json.Unmarshal(body, &fe) // an unreadable body leaves the HTTP status to decide
	code := fe.Error.Status
	for _, d := range fe.Error.Details {
		if d.ErrorCode != "" {
			code = d.ErrorCode
			break
		}
	}
	reason := fmt.Sprintf("HTTP %d", status)
	if code != "" {
		reason += " " + code
	}
	if fe.Error.Message != "" {
		reason += ": " + fe.Error.Message
	}
	err := errors.New(reason)
	switch {
	case code == "UNREGISTERED":
		return Permanent(FCMName, "device token is no longer registered: "+reason, err)
	case code == "INVALID_ARGUMENT" || code == "SENDER_ID_MISMATCH":
		return Permanent(FCMName, reason, err)
	case code == "THIRD_PARTY_AUTH_ERROR" || status == http.StatusUnauthorized || status == http.StatusForbidden:
		return Permanent(FCMName, "authentication or permission: "+reason, err)
	case code == "QUOTA_EXCEEDED" || code == "UNAVAILABLE" || code == "INTERNAL" || retryableStatus(status):
		return Retryable(FCMName, reason, retryAfter(header, p.now()), err)
	default:
		return Permanent(FCMName, reason, err)
	}
}

type fcmErrorBody struct {
	Error struct {
		Status  string `json:"status"`
		Message string `json:"message"`
		Details []struct {
			ErrorCode string `json:"errorCode"`
		} `json:"details"`
	} `json:"error"`
}

// maxPushToken bounds a device token; FCM's are about 160 bytes, APNs' 64.
const maxPushToken = 4096

// pushTokenError refuses a device token no push service would take: empty,
// longer than maxPushToken, or with a byte outside the token alphabet (FCM
// registration tokens are letters, digits, '-', '_' and ':'; '.' is allowed
// for other issuers). FCM would refuse it with INVALID_ARGUMENT; checking
// first spares the call, and the sandbox applies the same check.
func pushTokenError(provider, token string) error {
	if strings.TrimSpace(token) == "" {
		return Permanent(provider, "no device token (pushId)", nil)
	}
	if len(token) > maxPushToken {
		return Permanent(provider, fmt.Sprintf("device token (pushId) of %d bytes; at most %d", len(token), maxPushToken), nil)
	}
	for i := 0; i < len(token); i++ {
		switch c := token[i]; {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '-', c == '_', c == ':', c == '.':
		default:
			return Permanent(provider, fmt.Sprintf("device token (pushId) %q is not a valid registration token", apperr.Truncate(token, 40)), nil)
		}
	}
	return nil
}
