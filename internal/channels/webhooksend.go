package channels

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"

	"github.com/notificationservice/notificationservice/internal/channels/webhookout"
	"github.com/notificationservice/notificationservice/internal/outbox"
)

// WebhookName is the webhook channel's provider name, as deliveries record
// it.
const WebhookName = "webhook"

// WebhookEndpoint is a customer endpoint as the webhook channel needs it:
// where to POST, how to sign, and whether it may receive anything.
type WebhookEndpoint struct {
	ID         int64
	URL        string
	State      string   // the registry's words (ACTIVE, PENDING_VALIDATION, DISABLED), for the reasons
	Active     bool     // validated and not disabled: the only endpoints the channel POSTs to
	EventTypes []string // what it subscribed to; empty: everything
	Secrets    []string // the signing secrets at the time asked (two during a rotation overlap)
}

// WebhookEndpoints is the endpoint registry as the webhook channel sees it,
// declared here so the channel never imports the registry (app wires
// internal/webhooks to it).
type WebhookEndpoints interface {
	// Endpoints returns the endpoints of collectionID, only endpoint id
	// when id > 0, whatever their state, with the secrets that sign at
	// now; none when there are none. An error means the registry could
	// not be read (the delivery is retried).
	Endpoints(ctx context.Context, collectionID, id int64, now time.Time) ([]WebhookEndpoint, error)
	// Attempted adds one POST to the endpoint's attempt log (GET
	// …/webhooks/{id}/attempts). It must not fail the send: a log that
	// cannot be written is the registry's to report.
	Attempted(ctx context.Context, endpointID int64, eventID, eventType string, start time.Time, res webhookout.Result)
}

// webhookPoster sends one signed POST; *webhookout.Client is one.
type webhookPoster interface {
	Send(ctx context.Context, m webhookout.Message) webhookout.Result
}

// webhookConcurrency bounds the messages one Send posts at a time.
const webhookConcurrency = 8

// webhookReasonBytes caps how much of an endpoint's answer a reason quotes.
const webhookReasonBytes = 200

// Webhook is the channel of SendWebhookConfig actions: it POSTs each
// message as a signed NOTIFICATION_WEBHOOK event to the collection's ACTIVE
// endpoints (or the one the action names), through the SSRF-guarded
// client. It is never sandboxed: the endpoints are the customer's own,
// validated by a HEALTH_CHECK echo (docs/webhooks.md).
type Webhook struct {
	endpoints WebhookEndpoints
	client    webhookPoster
	timeout   time.Duration
	log       *slog.Logger
	now       func() time.Time
}

// NewWebhook returns the webhook channel: endpoints come from endpoints,
// POSTs go through client, each bounded by timeout (webhooks.timeout; 0:
// the client's own).
func NewWebhook(endpoints WebhookEndpoints, client *webhookout.Client, timeout time.Duration, log *slog.Logger) *Webhook {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Webhook{endpoints: endpoints, client: client, timeout: timeout, log: log, now: time.Now}
}

// Name implements Channel.
func (w *Webhook) Name() string { return WebhookName }

// WebhookEventID is the webhook-id (and event id) of delivery deliveryID:
// derived from the delivery, so every retry of it carries the same id and
// a receiver deduplicates.
func WebhookEventID(deliveryID int64) string {
	return outbox.EventIDPrefix + "delivery_" + strconv.FormatInt(deliveryID, 10)
}

// Send implements Channel: each message goes to its endpoints, up to
// webhookConcurrency messages at a time.
func (w *Webhook) Send(ctx context.Context, msgs []Message) []Result {
	out := make([]Result, len(msgs))
	each(len(msgs), webhookConcurrency, func(i int) { out[i] = w.sendOne(ctx, msgs[i]) })
	return out
}

// webhookNotification is the payload of a NOTIFICATION_WEBHOOK event.
type webhookNotification struct {
	ID         int64             `json:"id"`
	Name       string            `json:"name"`
	DeliveryID int64             `json:"deliveryId"`
	ActionID   int64             `json:"actionId"`
	Recipient  json.RawMessage   `json:"recipient"`
	Macros     map[string]string `json:"macros"`
	Body       string            `json:"body,omitempty"`
}

// webhookID is m's webhook-id: its delivery's (WebhookEventID), or, for
// a message that is no delivery (a test-send), one of its own, so that no
// two test-sends look like one to a receiver that deduplicates.
func webhookID(m Message) string {
	if m.DeliveryID == 0 {
		return outbox.EventIDPrefix + "test_" + uuid.NewString()
	}
	return WebhookEventID(m.DeliveryID)
}

// WebhookEvent is the event m becomes with id id, sent at at.
func WebhookEvent(m Message, id string, at time.Time) ([]byte, error) {
	rc := m.Recipient
	if len(rc) == 0 {
		rc = json.RawMessage("{}")
	}
	mac := m.Macros
	if mac == nil {
		mac = map[string]string{}
	}
	payload, err := json.Marshal(webhookNotification{
		ID: m.NotificationID, Name: m.Notification, DeliveryID: m.DeliveryID, ActionID: m.ActionID,
		Recipient: rc, Macros: mac, Body: m.Body,
	})
	if err != nil {
		return nil, err
	}
	return outbox.TypedEvent{
		ID: id, Type: outbox.TypeNotificationWebhook, Timestamp: at,
		CompanyID: strconv.FormatInt(m.CollectionID, 10), PayloadKey: "notification", Payload: payload,
	}.MarshalJSON()
}

func (w *Webhook) sendOne(ctx context.Context, m Message) Result {
	if err := ctx.Err(); err != nil {
		return Result{Err: Retryable(WebhookName, "not sent: "+err.Error(), 0, err)}
	}
	now := w.now()
	eps, err := w.endpoints.Endpoints(ctx, m.CollectionID, m.WebhookID, now)
	if err != nil {
		return Result{Err: Retryable(WebhookName, "the webhook endpoints could not be read", 0, err)}
	}
	targets, refusal := w.targets(m, eps)
	if refusal != "" {
		return Result{Err: Permanent(WebhookName, refusal, nil)}
	}
	id := webhookID(m)
	body, err := WebhookEvent(m, id, now)
	if err != nil {
		return Result{Err: Permanent(WebhookName, "the event does not encode: "+err.Error(), err)}
	}
	// Every target gets the same webhook-id: a retry after a partial
	// failure posts to all of them again, and those that had it
	// deduplicate on the id.
	var failures []*Error
	var delivered []string
	for _, ep := range targets {
		if e := w.post(ctx, ep, id, body); e != nil {
			failures = append(failures, e)
			continue
		}
		delivered = append(delivered, strconv.FormatInt(ep.ID, 10))
	}
	if len(failures) == 0 {
		return Result{ProviderMessageID: id}
	}
	return Result{Err: combine(failures, delivered)}
}

// targets returns the ACTIVE endpoints m goes to, or the reason there are
// none, which fails the delivery for good: a retry would meet the same
// registry, and the reason says what to change.
func (w *Webhook) targets(m Message, eps []WebhookEndpoint) ([]WebhookEndpoint, string) {
	if m.WebhookID > 0 {
		if len(eps) == 0 {
			return nil, fmt.Sprintf("webhook %d does not exist in collection %d", m.WebhookID, m.CollectionID)
		}
		if !eps[0].Active {
			return nil, fmt.Sprintf("webhook %d is %s: only ACTIVE endpoints receive notifications (validate it with POST /v1/collections/%d/webhooks/%d/validate)",
				m.WebhookID, eps[0].State, m.CollectionID, m.WebhookID)
		}
		return eps[:1], ""
	}
	var out []WebhookEndpoint
	var idle []string
	for _, ep := range eps {
		if len(ep.EventTypes) > 0 && !slices.Contains(ep.EventTypes, outbox.TypeNotificationWebhook) {
			continue
		}
		if !ep.Active {
			idle = append(idle, fmt.Sprintf("%d is %s", ep.ID, ep.State))
			continue
		}
		out = append(out, ep)
	}
	if len(out) > 0 {
		return out, ""
	}
	if len(idle) > 0 {
		return nil, fmt.Sprintf("collection %d has no ACTIVE webhook endpoint for %s (webhook %s): only ACTIVE endpoints receive notifications",
			m.CollectionID, outbox.TypeNotificationWebhook, strings.Join(idle, ", webhook "))
	}
	return nil, fmt.Sprintf("collection %d has no webhook endpoint taking %s events", m.CollectionID, outbox.TypeNotificationWebhook)
}

// post sends body to ep once and classifies a failure: 4xx other than 408
// and 429 (and a 3xx, whose redirect is not followed, or a refused
// address) are permanent; 408, 429, 5xx, timeouts and transport failures
// are retryable, with the endpoint's Retry-After.
func (w *Webhook) post(ctx context.Context, ep WebhookEndpoint, id string, body []byte) *Error {
	cctx := ctx
	if w.timeout > 0 {
		var cancel context.CancelFunc
		cctx, cancel = context.WithTimeout(ctx, w.timeout)
		defer cancel()
	}
	start := w.now()
	res := w.client.Send(cctx, webhookout.Message{URL: ep.URL, ID: id, Timestamp: start, Body: body, Secrets: ep.Secrets})
	w.endpoints.Attempted(ctx, ep.ID, id, outbox.TypeNotificationWebhook, start, res)
	if res.OK() {
		return nil
	}
	where := fmt.Sprintf("webhook %d", ep.ID)
	switch {
	case ctx.Err() != nil:
		// The caller's context ended (shutdown, the send's deadline): not
		// the endpoint's fault.
		return Retryable(WebhookName, where+": not answered: "+ctx.Err().Error(), 0, errors.Join(ctx.Err(), res.Err))
	case errors.Is(res.Err, webhookout.ErrBlockedAddress):
		return Permanent(WebhookName, where+": "+res.Err.Error()+" (webhooks.allowPrivateNetworks is off)", res.Err)
	case res.StatusCode == 0:
		var ne net.Error
		if errors.Is(res.Err, context.DeadlineExceeded) || (errors.As(res.Err, &ne) && ne.Timeout()) {
			return Retryable(WebhookName, fmt.Sprintf("%s: timeout: no answer within %s", where, w.timeout), 0, res.Err)
		}
		return Retryable(WebhookName, where+": "+errText(res.Err), 0, res.Err)
	}
	reason := fmt.Sprintf("%s answered %d", where, res.StatusCode)
	if q := quote(res.Body); q != "" {
		reason += ": " + q
	}
	switch {
	case res.StatusCode == http.StatusRequestTimeout || res.StatusCode == http.StatusTooManyRequests || res.StatusCode >= 500:
		return Retryable(WebhookName, reason, res.RetryAfter, res.Err)
	case res.StatusCode >= 300 && res.StatusCode < 400:
		return Permanent(WebhookName, reason+" (redirects are not followed)", res.Err)
	}
	return Permanent(WebhookName, reason, res.Err)
}

// combine is the error of a message some of whose endpoints failed: any
// retryable failure makes it retryable (with the longest Retry-After), so
// the endpoints that failed get it again; only when every failure is
// permanent is it permanent.
func combine(failures []*Error, delivered []string) *Error {
	reasons := make([]string, 0, len(failures))
	errs := make([]error, 0, len(failures))
	permanent := true
	var after time.Duration
	for _, f := range failures {
		reasons = append(reasons, f.Reason)
		errs = append(errs, f)
		permanent = permanent && f.Permanent
		after = max(after, f.RetryAfter)
	}
	reason := strings.Join(reasons, "; ")
	if len(delivered) > 0 {
		reason += " (delivered to webhook " + strings.Join(delivered, ", ") + ")"
	}
	e := &Error{Provider: WebhookName, Permanent: permanent, RetryAfter: after, Reason: reason, Err: errors.Join(errs...)}
	if len(failures) == 1 {
		e.Err = failures[0].Err
	}
	return e
}

// quote is the start of an endpoint's answer, for a reason: valid UTF-8,
// one line, at most webhookReasonBytes.
func quote(b []byte) string {
	s := strings.Join(strings.Fields(strings.ToValidUTF8(string(b), "?")), " ")
	if len(s) <= webhookReasonBytes {
		return s
	}
	s = s[:webhookReasonBytes]
	for !utf8.ValidString(s) {
		s = s[:len(s)-1]
	}
	return s + "…"
}

func errText(err error) string {
	if err == nil {
		return "failed"
	}
	return err.Error()
}
