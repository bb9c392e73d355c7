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
	"os"
	"strings"
	"sync"
	"time"

	firebase "firebase.google.com/go/v4"
	"firebase.google.com/go/v4/errorutils"
	"firebase.google.com/go/v4/messaging"
	"golang.org/x/oauth2"
	"golang.org/x/oauth2/google"
	"google.golang.org/api/option"

	"github.com/notificationservice/notificationservice/internal/apperr"
	"github.com/notificationservice/notificationservice/internal/config"
	"github.com/notificationservice/notificationservice/internal/macros"
)

// FCMName is the provider name deliveries record for push.
const FCMName = "fcm"

// fcmScope is the OAuth scope of the FCM HTTP v1 API.
const fcmScope = "https://www.googleapis.com/auth/firebase.messaging"

// Push sends push notifications through FCM HTTP v1 with the
// firebase-admin-go messaging client: the device token is the recipient's
// pushId; title, body and data come from the action; APNs options make the
// same message right for iOS devices.
//
// The messaging client retries 503s and network errors by itself, up to
// four times with backoff; the dispatch workers own retries, so each call
// runs under an attempt guard that lets exactly one HTTP request out and
// reports its outcome.
type Push struct {
	client          *messaging.Client
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
	hc := &http.Client{Transport: &oauth2.Transport{Source: ts, Base: &attemptGuard{next: newTransport(cfg.Timeout)}}}
	app, err := firebase.NewApp(ctx, &firebase.Config{ProjectID: projectID},
		option.WithHTTPClient(hc),
		option.WithEndpoint(strings.TrimRight(cfg.BaseURL, "/")+"/v1"))
	if err != nil {
		return nil, fmt.Errorf("channels: fcm: %w", err)
	}
	mc, err := app.Messaging(ctx)
	if err != nil {
		return nil, fmt.Errorf("channels: fcm messaging: %w", err)
	}
	return &Push{
		client:          mc,
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

// Message builds the FCM message for m: a notification when there is a
// title or body (an alert on iOS, priority 10), a background data message
// otherwise (content-available, priority 5).
func (p *Push) Message(m Message) *messaging.Message {
	msg := &messaging.Message{Token: m.PushToken, Data: m.Data}
	aps := &messaging.Aps{}
	headers := map[string]string{}
	if m.Title != "" || m.Body != "" {
		msg.Notification = &messaging.Notification{Title: m.Title, Body: m.Body}
		msg.Android = &messaging.AndroidConfig{Priority: "high"}
		aps.Sound = "default"
		headers["apns-push-type"] = "alert"
		headers["apns-priority"] = "10"
	} else {
		msg.Android = &messaging.AndroidConfig{Priority: "normal"}
		aps.ContentAvailable = true
		headers["apns-push-type"] = "background"
		headers["apns-priority"] = "5"
	}
	msg.APNS = &messaging.APNSConfig{Headers: headers, Payload: &messaging.APNSPayload{Aps: aps}}
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
	actx, stop := context.WithCancel(cctx)
	defer stop()
	at := &attempt{stop: stop}
	id, err := p.client.Send(context.WithValue(actx, attemptKey{}, at), p.Message(m))
	if err != nil {
		e := p.classify(err, at)
		done(e)
		return Result{Err: e}
	}
	done(nil)
	return Result{ProviderMessageID: id}
}

// classify turns the outcome of one attempt into an *Error. When the guard
// stopped the SDK's own retry, the attempt's record is the truth; otherwise
// the SDK's FirebaseError carries the response.
func (p *Push) classify(err error, at *attempt) *Error {
	at.mu.Lock()
	status, header, body, terr := at.status, at.header, at.body, at.err
	at.mu.Unlock()
	var re *oauth2.RetrieveError
	if errors.As(err, &re) || errors.As(terr, &re) {
		if re.Response != nil && retryableStatus(re.Response.StatusCode) {
			return Retryable(FCMName, "OAuth token endpoint: "+re.Error(), retryAfter(re.Response.Header, p.now()), err)
		}
		// The service account's token was refused: no retry fixes the key.
		return Permanent(FCMName, "authentication: the OAuth token was refused: "+re.Error(), err)
	}
	if terr != nil {
		return transportError(FCMName, terr)
	}
	if resp := errorutils.HTTPResponse(err); resp != nil {
		status, header = resp.StatusCode, resp.Header
	}
	if status == 0 {
		return transportError(FCMName, err)
	}
	code := fcmErrorCode(err, body)
	reason := fmt.Sprintf("HTTP %d", status)
	if code != "" {
		reason += " " + code
	}
	if msg := fcmErrorMessage(err, body); msg != "" {
		reason += ": " + msg
	}
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

// fcmErrorCode is the FCM error code (UNREGISTERED, QUOTA_EXCEEDED, ...).
func fcmErrorCode(err error, body []byte) string {
	for code, is := range map[string]func(error) bool{
		"UNREGISTERED":           messaging.IsUnregistered,
		"INVALID_ARGUMENT":       messaging.IsInvalidArgument,
		"SENDER_ID_MISMATCH":     messaging.IsSenderIDMismatch,
		"QUOTA_EXCEEDED":         messaging.IsQuotaExceeded,
		"UNAVAILABLE":            messaging.IsUnavailable,
		"INTERNAL":               messaging.IsInternal,
		"THIRD_PARTY_AUTH_ERROR": messaging.IsThirdPartyAuthError,
	} {
		if is(err) {
			return code
		}
	}
	var fe fcmErrorBody
	if json.Unmarshal(body, &fe) == nil {
		for _, d := range fe.Error.Details {
			if d.ErrorCode != "" {
				return d.ErrorCode
			}
		}
		return fe.Error.Status
	}
	return ""
}

func fcmErrorMessage(err error, body []byte) string {
	var fe fcmErrorBody
	if len(body) > 0 && json.Unmarshal(body, &fe) == nil && fe.Error.Message != "" {
		return fe.Error.Message
	}
	if errorutils.HTTPResponse(err) != nil {
		return err.Error()
	}
	return ""
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

// attemptKey carries an *attempt in a request context.
type attemptKey struct{}

// attempt records the one HTTP request of a Send call.
type attempt struct {
	stop context.CancelFunc

	mu     sync.Mutex
	sent   bool
	status int
	header http.Header
	body   []byte
	err    error
}

// attemptGuard lets one request per attempt reach the provider. When the
// response is one the SDK would retry on its own (a transport error or a
// 503), it records the outcome and cancels the attempt's context, so the
// SDK's retry wait returns at once instead of sending again.
type attemptGuard struct {
	next http.RoundTripper
}

func (g *attemptGuard) RoundTrip(req *http.Request) (*http.Response, error) {
	at, _ := req.Context().Value(attemptKey{}).(*attempt)
	if at == nil {
		return g.next.RoundTrip(req)
	}
	at.mu.Lock()
	if at.sent {
		at.mu.Unlock()
		return nil, errors.New("channels: fcm: second attempt refused; the dispatcher retries")
	}
	at.sent = true
	at.mu.Unlock()

	resp, err := g.next.RoundTrip(req)
	at.mu.Lock()
	defer at.mu.Unlock()
	if err != nil {
		at.err = err
		at.stop()
		return nil, err
	}
	at.status, at.header = resp.StatusCode, resp.Header.Clone()
	if resp.StatusCode >= 400 {
		// Keep the error body for classification; the SDK reads this copy.
		b, rerr := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		_ = resp.Body.Close()
		if rerr != nil {
			at.err = rerr
			at.stop()
			return nil, rerr
		}
		at.body = b
		resp.Body = io.NopCloser(bytes.NewReader(b))
		if resp.StatusCode == http.StatusServiceUnavailable {
			at.stop()
		}
	}
	return resp, nil
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
