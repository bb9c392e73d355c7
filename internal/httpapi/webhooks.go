package httpapi

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/notificationservice/notificationservice/internal/apperr"
	"github.com/notificationservice/notificationservice/internal/auth"
	"github.com/notificationservice/notificationservice/internal/channels"
	"github.com/notificationservice/notificationservice/internal/dispatch/status"
)

// DeliveryReports records provider reports on deliveries; status.Store
// implements it. MarkReports applies a whole batch in one statement and
// says which reports applied (a report that did not is for a delivery not
// in sent or delivered); MarkByProviderID returns a NOT_FOUND apperr when
// no sent delivery matches.
type DeliveryReports interface {
	MarkReports(ctx context.Context, reports []status.Report) ([]bool, error)
	MarkByProviderID(ctx context.Context, provider, providerMessageID, status, reason string) (int64, error)
}

// Webhooks is what the provider status routes need. A nil verifier (or one
// without its key) refuses every request to its route.
type Webhooks struct {
	SendGrid *channels.SendGridWebhook
	Twilio   *channels.TwilioWebhook
	Reports  DeliveryReports
	Now      func() time.Time
}

// TwilioSignatureHeader carries Twilio's request signature.
const TwilioSignatureHeader = "X-Twilio-Signature"

// reportRetryWindow is how long after a provider's event a report for a
// delivery not (yet) recorded as sent asks the provider to send it again:
// the event may have overtaken the worker's status commit. Older unmatched
// reports, and those without an event time (Twilio's, which Twilio does not
// retry anyway), are acknowledged and dropped, so a provider does not retry
// one for a message that is not ours, or already final, for a day.
const reportRetryWindow = 10 * time.Minute

// webhooks registers the provider status routes. They take no token: each
// handler verifies the provider's signature before anything else, and an
// unsigned (401) or wrongly signed (403) request changes nothing.
func (r *router) webhooks() {
	r.handle(http.MethodPost, "/webhooks/sendgrid/events", "NOWHUPD", public, r.s.sendGridEvents)
	r.handle(http.MethodPost, "/webhooks/twilio/status", "NOWHUPD", public, r.s.twilioStatus)
}

func (s *Server) sendGridEvents(c *gin.Context, _ auth.Principal) error {
	body, err := io.ReadAll(c.Request.Body)
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return apperr.Invalid("request body is too large",
				apperr.Detail{Field: "body", Reason: fmt.Sprintf("must be at most %d bytes (http.maxBodyBytes)", tooBig.Limit)})
		}
		return apperr.Invalid("request body could not be read", apperr.Detail{Field: "body", Reason: err.Error()})
	}
	if err := s.Webhooks.SendGrid.VerifyRequest(c.Request.Header, body); err != nil {
		return signatureError(err, channels.SendGridSignatureHeader)
	}
	events, err := channels.ParseSendGridEvents(body)
	if err != nil {
		return apperr.Invalid("request body is not an Event Webhook batch", apperr.Detail{Field: "body", Reason: err.Error()})
	}
	return s.applyReports(c, events)
}

func (s *Server) twilioStatus(c *gin.Context, _ auth.Principal) error {
	if err := c.Request.ParseForm(); err != nil {
		return apperr.Invalid("request body is not a form", apperr.Detail{Field: "body", Reason: err.Error()})
	}
	form := c.Request.PostForm
	signed := s.Webhooks.Twilio.SignedURL(requestURL(c.Request))
	if err := s.Webhooks.Twilio.Verify(signed, form, c.GetHeader(TwilioSignatureHeader)); err != nil {
		return signatureError(err, TwilioSignatureHeader)
	}
	return s.applyReports(c, []channels.StatusEvent{channels.ParseTwilioStatus(form, c.Request.URL.Query())})
}

// WebhookResult is the body of a webhook response.
type WebhookResult struct {
	ResponseCode    string `json:"responseCode"`
	ResponseMessage string `json:"responseMessage"`
	Updated         int    `json:"updated"`   // reports recorded: deliveries moved to delivered, bounced or failed, and opens and clicks of sent ones
	Ignored         int    `json:"ignored"`   // events that change nothing (a spam report still suppresses), or not for our messages
	Unmatched       int    `json:"unmatched"` // reports for deliveries not in sent/delivered, dropped
}

// applyReports records each event: those naming a delivery id in one
// statement for the whole batch, Twilio's by message SID one by one (Twilio
// posts one event per request). Reports for deliveries not yet recorded as
// sent, if recent, make the response 503 so the provider sends the batch
// again (recording the same status twice is harmless).
func (s *Server) applyReports(c *gin.Context, events []channels.StatusEvent) error {
	ctx := c.Request.Context()
	now := time.Now
	if s.Webhooks.Now != nil {
		now = s.Webhooks.Now
	}
	var (
		res     WebhookResult
		pending int
		reports []status.Report
		byID    []int // the event of each report
		matched = make([]bool, len(events))
		ours    = make([]bool, len(events))
	)
	// A report that only suppresses (a spam report) changes no delivery:
	// it counts as ignored once recorded.
	suppressOnly := func(ev channels.StatusEvent) bool { return ev.Status == "" && ev.Suppress != "" }
	for i, ev := range events {
		switch {
		case ev.Status == "" && (ev.Suppress == "" || ev.DeliveryID <= 0):
		case ev.DeliveryID > 0:
			ours[i] = true
			reports = append(reports, status.Report{DeliveryID: ev.DeliveryID, Status: ev.Status, Reason: ev.Reason,
				Suppress: ev.Suppress, Address: ev.Address, Provider: ev.Provider, Time: ev.Time})
			byID = append(byID, i)
		case ev.Provider == channels.TwilioName && ev.ProviderMessageID != "" && apperr.ValidText(ev.ProviderMessageID) &&
			ev.Status != channels.ReportOpened && ev.Status != channels.ReportClicked:
			// A Twilio SID names one message. (SendGrid's id is shared by a
			// batched request, so SendGrid events need their delivery_id.) An
			// id that is not text cannot be one we stored, and PostgreSQL
			// would refuse it in the query: ignored.
			ours[i] = true
			_, err := s.Webhooks.Reports.MarkByProviderID(ctx, ev.Provider, ev.ProviderMessageID, ev.Status, ev.Reason)
			if e, ok := apperr.As(err); ok && e.Kind == apperr.NotFound {
				continue
			}
			if err != nil {
				return fmt.Errorf("httpapi: record %s report: %w", ev.Provider, err)
			}
			matched[i] = true
		}
	}
	if len(reports) > 0 {
		applied, err := s.Webhooks.Reports.MarkReports(ctx, reports)
		if err != nil {
			return fmt.Errorf("httpapi: record %d %s reports: %w", len(reports), events[byID[0]].Provider, err)
		}
		for j, ok := range applied {
			matched[byID[j]] = ok
		}
	}
	for i, ev := range events {
		switch {
		case !ours[i] || suppressOnly(ev):
			res.Ignored++
		case matched[i]:
			res.Updated++
		case !ev.Time.IsZero() && now().Sub(ev.Time) < reportRetryWindow:
			pending++
		default:
			res.Unmatched++
		}
	}
	if pending > 0 {
		c.Header("Retry-After", "30")
		return apperr.New(apperr.Unavailable, "%d reports are for deliveries not yet recorded as sent; send them again", pending)
	}
	res.ResponseCode = ResponseCode(state(c).code, http.StatusOK)
	res.ResponseMessage = "reports recorded"
	c.JSON(http.StatusOK, res)
	return nil
}

func signatureError(err error, header string) error {
	if errors.Is(err, channels.ErrUnsigned) {
		return &apperr.Error{Kind: apperr.Unauthenticated, Err: err, Message: "the request is not signed",
			Details: []apperr.Detail{{Field: header, Reason: "is required"}}}
	}
	return &apperr.Error{Kind: apperr.PermissionDenied, Err: err, Message: "the request signature does not verify",
		Details: []apperr.Detail{{Field: header, Reason: err.Error()}}}
}

// requestURL is the URL the client called, as far as this server can tell:
// a proxy's X-Forwarded-Proto and X-Forwarded-Host win over the connection.
func requestURL(r *http.Request) *url.URL {
	u := *r.URL
	u.Scheme = "http"
	if r.TLS != nil {
		u.Scheme = "https"
	}
	if p := r.Header.Get("X-Forwarded-Proto"); p == "http" || p == "https" {
		u.Scheme = p
	}
	u.Host = r.Host
	if h := r.Header.Get("X-Forwarded-Host"); h != "" {
		u.Host = h
	}
	return &u
}
