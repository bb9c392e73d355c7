package channels

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/mail"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/sendgrid/rest"
	"github.com/sendgrid/sendgrid-go"
	sgmail "github.com/sendgrid/sendgrid-go/helpers/mail"

	"github.com/notificationservice/notificationservice/internal/apperr"
	"github.com/notificationservice/notificationservice/internal/config"
)

// SendGridName is the provider name deliveries record for SendGrid.
const SendGridName = "sendgrid"

// Custom args every personalization carries, so Event Webhook events can be
// matched to the delivery (SendGrid copies them into each event).
const (
	ArgNotificationID = "notification_id"
	ArgDeliveryID     = "delivery_id"
)

// sendGridMaxRecipients is SendGrid's limit on recipients (to + cc + bcc over
// all personalizations) in one mail/send request; it also bounds the
// personalizations.
const sendGridMaxRecipients = 1000

// SendGrid sends email through the SendGrid v3 mail/send API with the
// sendgrid-go client. The messages of one Send call (one action's recipients
// in one notification) go out in as few requests as the content allows: one
// personalization per message, custom_args carrying the notification and
// delivery ids.
type SendGrid struct {
	apiKey   string
	endpoint string // baseURL + /v3/mail/send
	from     Address
	timeout  time.Duration
	client   *rest.Client
	limiter  *Limiter
	breaker  *Breaker
	now      func() time.Time
	// reconcile: the account has the Email Activity API (Accepted).
	reconcile bool
}

// NewSendGrid returns the SendGrid channel for cfg; breaker settings come
// from the channels section.
func NewSendGrid(cfg config.SendGrid, breakerFailures int, breakerCooldown time.Duration, log *slog.Logger) *SendGrid {
	return &SendGrid{
		apiKey:   cfg.APIKey,
		endpoint: strings.TrimRight(cfg.BaseURL, "/"),
		from:     Address{Email: cfg.FromEmail, Name: cfg.FromName},
		timeout:  cfg.Timeout,
		// No http.Client.Timeout: each call's context bounds it, and a
		// client timeout replaces the transport's error with its own text,
		// losing the mark that the request had gone out (sentTransport).
		client:  &rest.Client{HTTPClient: &http.Client{Transport: newTransport(cfg.Timeout)}},
		limiter: NewLimiter(SendGridName, cfg.RatePerSecond, cfg.Burst),
		breaker: NewBreaker(SendGridName, breakerFailures, breakerCooldown, log),
		now:     time.Now,

		reconcile: cfg.Reconcile,
	}
}

// sendGridLookups is how many Email Activity requests Accepted has in
// flight: the API is rate limited per account, and recovery is not urgent.
const sendGridLookups = 4

// sendGridActivityLag bounds how long after an attempt's window SendGrid
// may still record events for its message (last_event_time moves on with
// every event).
const sendGridActivityLag = time.Hour

// Accepted asks SendGrid's Email Activity API which in-doubt deliveries it
// accepted (channels.Reconciler), one query per delivery by the custom_args
// every personalization carries (delivery_id, notification_id), over the
// attempt's window. The provider message id is the message's msg_id up to
// its first dot: the X-Message-Id mail/send would have answered. Without
// channels.sendgrid.reconcile (the API is a paid add-on) it returns
// ErrCannotReconcile. The activity feed lags the send by seconds to minutes
// (SendGrid's figure), so a message accepted just before a crash may not be
// found yet, and is sent again.
func (s *SendGrid) Accepted(ctx context.Context, deliveries []InDoubt) (map[int64]string, error) {
	if !s.reconcile {
		return nil, ErrCannotReconcile
	}
	out := map[int64]string{}
	var mu sync.Mutex
	errs := make([]error, len(deliveries))
	each(len(deliveries), sendGridLookups, func(i int) {
		id, err := s.activity(ctx, deliveries[i])
		if err != nil {
			errs[i] = err
			return
		}
		if id != "" {
			mu.Lock()
			out[deliveries[i].DeliveryID] = id
			mu.Unlock()
		}
	})
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return out, nil
}

// activity returns the message id SendGrid's Email Activity shows for d,
// "" when it shows none.
func (s *SendGrid) activity(ctx context.Context, d InDoubt) (string, error) {
	q := fmt.Sprintf(`unique_args['%s']="%d"`, ArgDeliveryID, d.DeliveryID)
	if d.NotificationID != 0 {
		q += fmt.Sprintf(` AND unique_args['%s']="%d"`, ArgNotificationID, d.NotificationID)
	}
	if !d.Since.IsZero() {
		q += fmt.Sprintf(` AND last_event_time BETWEEN TIMESTAMP "%s" AND TIMESTAMP "%s"`,
			d.Since.Add(-time.Minute).UTC().Format(time.RFC3339), d.Until.Add(sendGridActivityLag).UTC().Format(time.RFC3339))
	}
	req := sendgrid.GetRequest(s.apiKey, "/v3/messages", s.endpoint)
	req.Method = rest.Get
	req.QueryParams = map[string]string{"query": q, "limit": "10"}
	cctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	resp, err := s.client.SendWithContext(cctx, req)
	if err != nil {
		return "", fmt.Errorf("sendgrid: email activity: %w", transportError(SendGridName, err))
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		e, _ := s.classify(resp)
		return "", fmt.Errorf("sendgrid: email activity: %w", e)
	}
	var body struct {
		Messages []struct {
			MsgID string `json:"msg_id"`
		} `json:"messages"`
	}
	if err := json.Unmarshal([]byte(resp.Body), &body); err != nil {
		return "", fmt.Errorf("sendgrid: email activity: unreadable answer: %w", err)
	}
	for _, m := range body.Messages {
		if m.MsgID != "" {
			id, _, _ := strings.Cut(m.MsgID, ".")
			return id, nil
		}
	}
	return "", nil
}

// Name is the provider name.
func (s *SendGrid) Name() string { return SendGridName }

// Breaker exposes the circuit breaker (for readiness and tests).
func (s *SendGrid) Breaker() *Breaker { return s.breaker }

// sgBatch is the messages that can share one request: same sender and the
// same template or the same rendered bodies.
type sgBatch struct {
	key     string
	from    Address
	msg     Message // the first: template id, html, text
	indexes []int
	rcpts   int
}

// Send delivers msgs, batching those that share sender and content.
func (s *SendGrid) Send(ctx context.Context, msgs []Message) []Result {
	out := make([]Result, len(msgs))
	var batches []*sgBatch
	byKey := map[string]*sgBatch{}
	for i, m := range msgs {
		from := m.From
		if from.Email == "" {
			from = s.from
		}
		if err := validateEmail(m, from); err != nil {
			out[i].Err = err
			continue
		}
		n := len(m.To) + len(m.Cc) + len(m.Bcc)
		key := strings.Join([]string{from.Email, from.Name, m.TemplateID, m.HTML, m.Text}, "\x00")
		b := byKey[key]
		if b == nil || b.rcpts+n > sendGridMaxRecipients {
			b = &sgBatch{key: key, from: from, msg: m}
			byKey[key] = b
			batches = append(batches, b)
		}
		b.indexes = append(b.indexes, i)
		b.rcpts += n
	}
	for _, b := range batches {
		s.sendBatch(ctx, msgs, b, out)
	}
	return out
}

func (s *SendGrid) sendBatch(ctx context.Context, msgs []Message, b *sgBatch, out []Result) {
	fail := func(err error) {
		for _, i := range b.indexes {
			out[i].Err = err
		}
	}
	if err := s.limiter.Wait(ctx, b.from.Email); err != nil {
		fail(err)
		return
	}
	done, err := s.breaker.Allow()
	if err != nil {
		fail(err)
		return
	}
	body := s.request(msgs, b)
	req := sendgrid.GetRequest(s.apiKey, "/v3/mail/send", s.endpoint)
	req.Method = rest.Post
	req.Body = body
	cctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	resp, err := s.client.SendWithContext(cctx, req)
	if err != nil {
		e := transportError(SendGridName, err)
		done(e)
		fail(e)
		return
	}
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		done(nil)
		id := header(resp.Headers, "X-Message-Id")
		for _, i := range b.indexes {
			out[i].ProviderMessageID = id
		}
		return
	}
	e, perMessage := s.classify(resp)
	done(e)
	if perMessage == nil {
		fail(e)
		return
	}
	// SendGrid named the personalizations it rejected; nothing was sent, so
	// the others are retried at once without them.
	for j, i := range b.indexes {
		if reason, bad := perMessage[j]; bad {
			out[i].Err = Permanent(SendGridName, reason, e)
		} else {
			out[i].Err = Retryable(SendGridName, "not sent: another recipient in the same request was rejected ("+e.Reason+")", 0, e)
		}
	}
}

// request builds the mail/send body for batch b.
func (s *SendGrid) request(msgs []Message, b *sgBatch) []byte {
	m := sgmail.NewV3Mail()
	m.SetFrom(sgmail.NewEmail(b.from.Name, b.from.Email))
	if b.msg.TemplateID != "" {
		m.SetTemplateID(b.msg.TemplateID)
	} else {
		// SendGrid wants text/plain before text/html.
		if b.msg.Text != "" {
			m.AddContent(sgmail.NewContent("text/plain", b.msg.Text))
		}
		if b.msg.HTML != "" {
			m.AddContent(sgmail.NewContent("text/html", b.msg.HTML))
		}
	}
	for _, i := range b.indexes {
		msg := msgs[i]
		p := sgmail.NewPersonalization()
		seen := map[string]bool{}
		add := func(list []Address) []*sgmail.Email {
			var es []*sgmail.Email
			for _, a := range list {
				k := strings.ToLower(a.Email)
				if seen[k] { // SendGrid rejects an address twice in one personalization
					continue
				}
				seen[k] = true
				es = append(es, sgmail.NewEmail(a.Name, a.Email))
			}
			return es
		}
		p.AddTos(add(msg.To)...)
		if cc := add(msg.Cc); len(cc) > 0 {
			p.AddCCs(cc...)
		}
		if bcc := add(msg.Bcc); len(bcc) > 0 {
			p.AddBCCs(bcc...)
		}
		p.Subject = msg.Subject
		// Per personalization: each recipient's List-Unsubscribe names
		// their own link, while the batch shares the content.
		for k, v := range msg.Headers {
			p.SetHeader(k, v)
		}
		p.SetCustomArg(ArgNotificationID, strconv.FormatInt(msg.NotificationID, 10))
		p.SetCustomArg(ArgDeliveryID, strconv.FormatInt(msg.DeliveryID, 10))
		if msg.TemplateID != "" {
			for k, v := range msg.DynamicData {
				p.SetDynamicTemplateData(k, v)
			}
		}
		m.AddPersonalizations(p)
	}
	return sgmail.GetRequestBody(m)
}

// sgErrors is SendGrid's error body.
type sgErrors struct {
	Errors []struct {
		Message string `json:"message"`
		Field   string `json:"field"`
	} `json:"errors"`
}

// classify turns a non-2xx response into an error. When every error names a
// personalization (field "personalizations.N..."), perMessage maps the
// batch positions SendGrid rejected to their reasons.
func (s *SendGrid) classify(resp *rest.Response) (*Error, map[int]string) {
	var body sgErrors
	_ = json.Unmarshal([]byte(resp.Body), &body)
	var msgs []string
	perMessage := map[int]string{}
	allNamed := len(body.Errors) > 0
	for _, e := range body.Errors {
		msg := e.Message
		if e.Field != "" && e.Field != "null" {
			msg = e.Field + ": " + msg
		}
		msgs = append(msgs, msg)
		n, ok := personalizationIndex(e.Field)
		if !ok {
			allNamed = false
			continue
		}
		if perMessage[n] != "" {
			perMessage[n] += "; "
		}
		perMessage[n] += msg
	}
	reason := fmt.Sprintf("HTTP %d", resp.StatusCode)
	if len(msgs) > 0 {
		reason += ": " + strings.Join(msgs, "; ")
	} else if t := strings.TrimSpace(resp.Body); t != "" {
		reason += ": " + apperr.Truncate(t, 300)
	}
	h := http.Header(resp.Headers)
	switch {
	case retryableStatus(resp.StatusCode):
		wait := retryAfter(h, s.now())
		if wait == 0 && resp.StatusCode == http.StatusTooManyRequests {
			// SendGrid's 429 carries X-RateLimit-Reset (epoch seconds).
			if reset, err := strconv.ParseInt(h.Get("X-RateLimit-Reset"), 10, 64); err == nil {
				wait = max(time.Until(time.Unix(reset, 0)), 0)
			}
		}
		return Retryable(SendGridName, reason, wait, nil), nil
	case resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden:
		return Permanent(SendGridName, "authentication or permission: "+reason, nil), nil
	default:
		e := Permanent(SendGridName, reason, nil)
		if allNamed && resp.StatusCode == http.StatusBadRequest {
			return e, perMessage
		}
		return e, nil
	}
}

// personalizationIndex parses "personalizations.3.to.0.email" → 3.
func personalizationIndex(field string) (int, bool) {
	rest, ok := strings.CutPrefix(field, "personalizations.")
	if !ok {
		return 0, false
	}
	num, _, _ := strings.Cut(rest, ".")
	n, err := strconv.Atoi(num)
	return n, err == nil && n >= 0
}

// validateEmail checks what SendGrid would reject for this message alone, so
// one bad address fails its own delivery, not the whole batch.
func validateEmail(m Message, from Address) error {
	if from.Email == "" {
		return Permanent(SendGridName, "no sender: the action has no fromEmail, its collection no defaultFromEmail, and channels.sendgrid.fromEmail is empty", nil)
	}
	if err := emailAddressError(SendGridName, m, from); err != nil {
		return err
	}
	if n := len(m.To) + len(m.Cc) + len(m.Bcc); n > sendGridMaxRecipients {
		return Permanent(SendGridName, fmt.Sprintf("%d recipients in one message; SendGrid allows %d", n, sendGridMaxRecipients), nil)
	}
	if m.TemplateID == "" && m.HTML == "" && m.Text == "" {
		return Permanent(SendGridName, "no content: neither a dynamic template nor a rendered body", nil)
	}
	if m.TemplateID == "" && m.Subject == "" {
		return Permanent(SendGridName, "no subject", nil)
	}
	return nil
}

// emailAddressError checks the addresses of m as SendGrid does: a sender
// (when from has one) and at least one recipient, each a bare address. The
// sandbox applies the same check, as provider.
func emailAddressError(provider string, m Message, from Address) error {
	if from.Email != "" {
		if _, err := mail.ParseAddress(from.Email); err != nil {
			return Permanent(provider, fmt.Sprintf("invalid sender address %q", from.Email), err)
		}
	}
	if len(m.To) == 0 {
		return Permanent(provider, "no recipient: the message has no to address", nil)
	}
	for _, list := range [][]Address{m.To, m.Cc, m.Bcc} {
		for _, a := range list {
			if _, err := mail.ParseAddress(a.Email); err != nil || strings.ContainsAny(a.Email, "<> ") {
				return Permanent(provider, fmt.Sprintf("invalid recipient address %q", a.Email), err)
			}
		}
	}
	return nil
}

func header(h map[string][]string, name string) string {
	return http.Header(h).Get(name)
}
