package channels

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/twilio/twilio-go/client"
	twilioapi "github.com/twilio/twilio-go/rest/api/v2010"

	"github.com/notificationservice/notificationservice/internal/config"
	"github.com/notificationservice/notificationservice/internal/macros"
)

// TwilioName is the provider name deliveries record for Twilio.
const TwilioName = "twilio"

// CallbackDeliveryParam is the query parameter the status callback URL
// carries, so a callback finds its delivery even before the send's message
// SID is recorded.
const CallbackDeliveryParam = "deliveryId"

var e164 = regexp.MustCompile(`^\+[1-9][0-9]{1,14}$`)

// Twilio sends SMS through the Twilio Messages API with the twilio-go
// client, one request per message, paced per sender (From number or
// Messaging Service).
//
// twilio-go has no base-URL option and no context: each call gets its own
// SDK client whose transport sends to the configured base URL (an httptest
// fake in tests), carries the call's context (deadline, cancellation) and
// keeps the response headers, which the SDK drops, for Retry-After.
type Twilio struct {
	creds       *client.Credentials
	accountSID  string
	base        *url.URL // nil: the SDK's own host
	transport   http.RoundTripper
	from        string
	serviceSID  string
	callback    string
	countryCode string
	maxSegments int
	concurrency int
	timeout     time.Duration
	limiter     *Limiter
	breaker     *Breaker
	now         func() time.Time
}

// NewTwilio returns the Twilio channel for cfg.
func NewTwilio(cfg config.Twilio, breakerFailures int, breakerCooldown time.Duration, log *slog.Logger) (*Twilio, error) {
	t := &Twilio{
		creds:       client.NewCredentials(cfg.AccountSID, cfg.AuthToken),
		accountSID:  cfg.AccountSID,
		transport:   newTransport(cfg.Timeout),
		from:        cfg.From,
		serviceSID:  cfg.MessagingServiceSID,
		callback:    cfg.StatusCallbackURL,
		countryCode: strings.TrimPrefix(cfg.DefaultCountryCode, "+"),
		maxSegments: cfg.MaxSegments,
		concurrency: max(cfg.Concurrency, 1),
		timeout:     cfg.Timeout,
		limiter:     NewLimiter(TwilioName, cfg.RatePerSecond, cfg.Burst),
		breaker:     NewBreaker(TwilioName, breakerFailures, breakerCooldown, log),
		now:         time.Now,
	}
	if cfg.BaseURL != "" && cfg.BaseURL != "https://api.twilio.com" {
		u, err := url.Parse(cfg.BaseURL)
		if err != nil || u.Host == "" {
			return nil, fmt.Errorf("channels: twilio base URL %q: %v", cfg.BaseURL, err)
		}
		t.base = u
	}
	return t, nil
}

// Name is the provider name.
func (t *Twilio) Name() string { return TwilioName }

// Breaker exposes the circuit breaker (for readiness and tests).
func (t *Twilio) Breaker() *Breaker { return t.breaker }

// Send sends each message as one Twilio message, up to the configured
// concurrency at a time, each waiting for its sender's rate limit.
func (t *Twilio) Send(ctx context.Context, msgs []Message) []Result {
	out := make([]Result, len(msgs))
	each(len(msgs), t.concurrency, func(i int) { out[i] = t.sendOne(ctx, msgs[i]) })
	return out
}

func (t *Twilio) sendOne(ctx context.Context, m Message) Result {
	to, err := NormalizePhone(m.Phone, t.countryCode)
	if err != nil {
		return Result{Err: Permanent(TwilioName, err.Error(), err)}
	}
	from, service := m.SMSFrom, m.MessagingServiceSID
	if from == "" && service == "" {
		from, service = t.from, t.serviceSID
	}
	if from == "" && service == "" {
		return Result{Err: Permanent(TwilioName, "no sender: neither a From number nor a Messaging Service SID is configured", nil)}
	}
	if from != "" && service == "" && !e164.MatchString(from) {
		return Result{Err: Permanent(TwilioName, fmt.Sprintf("sender %q is not an E.164 number", from), nil)}
	}
	if _, err := macros.CheckSMS(m.Body, t.maxSegments); err != nil {
		return Result{Err: Permanent(TwilioName, err.Error(), err)}
	}
	sender := service
	if sender == "" {
		sender = from
	}
	if err := t.limiter.Wait(ctx, sender); err != nil {
		return Result{Err: err}
	}
	done, err := t.breaker.Allow()
	if err != nil {
		return Result{Err: err}
	}

	params := &twilioapi.CreateMessageParams{}
	params.SetTo(to)
	params.SetBody(m.Body)
	if service != "" {
		params.SetMessagingServiceSid(service)
	} else {
		params.SetFrom(from)
	}
	if t.callback != "" {
		params.SetStatusCallback(CallbackURL(t.callback, m.DeliveryID))
	}

	cctx, cancel := context.WithTimeout(ctx, t.timeout)
	defer cancel()
	api, call := t.api(cctx)
	resp, err := api.CreateMessage(params)
	if err != nil {
		e := t.classify(err, call)
		done(e)
		return Result{Err: e}
	}
	done(nil)
	var sid string
	if resp != nil && resp.Sid != nil {
		sid = *resp.Sid
	}
	return Result{ProviderMessageID: sid}
}

// api is a twilio-go client for one call under ctx (see Twilio).
func (t *Twilio) api(ctx context.Context) (*twilioapi.ApiService, *twilioCall) {
	call := &twilioCall{ctx: ctx, base: t.base, next: t.transport}
	sdk := &client.Client{
		Credentials: t.creds,
		HTTPClient: &http.Client{
			Transport:     call,
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
	}
	sdk.SetAccountSid(t.accountSID)
	return twilioapi.NewApiServiceWithClient(sdk), call
}

// twilioClockSlack widens an in-doubt attempt's window on both sides for
// the clocks of this host and Twilio's.
const twilioClockSlack = time.Minute

// twilioListLimit bounds the messages read per lookup: the messages to one
// number from one sender in an attempt's window of a few minutes.
const twilioListLimit = 200

// Accepted asks Twilio which in-doubt deliveries it accepted
// (channels.Reconciler): the Messages list filtered by recipient, sender
// (a From number; a Messaging Service is matched on the results) and sent
// date within the attempts' window, matched on the body. Twilio keeps no
// field of ours on a message (the status callback URL is not listed), so
// deliveries to one number with the same sender and body are matched to the
// messages found in order, oldest first, at most one message each: two
// in-doubt deliveries and one message found means one was accepted. A
// message Twilio accepted but had not yet sent has no sent date and is not
// found by the filter; the delivery is then sent again.
func (t *Twilio) Accepted(ctx context.Context, deliveries []InDoubt) (map[int64]string, error) {
	type group struct {
		to, sender, body string
		since, until     time.Time
		ids              []int64
	}
	var groups []*group
	byKey := map[string]*group{}
	for _, d := range deliveries {
		to, err := NormalizePhone(d.Address, t.countryCode)
		if err != nil {
			continue // Send refuses it without calling Twilio
		}
		sender := d.Sender
		if sender == "" { // as Send: the Messaging Service over the number
			sender = t.from
			if t.serviceSID != "" {
				sender = t.serviceSID
			}
		}
		key := to + "\x00" + sender + "\x00" + d.Body
		g := byKey[key]
		if g == nil {
			g = &group{to: to, sender: sender, body: d.Body, since: d.Since, until: d.Until}
			byKey[key] = g
			groups = append(groups, g)
		}
		g.ids = append(g.ids, d.DeliveryID)
		if d.Since.Before(g.since) {
			g.since = d.Since
		}
		if d.Until.After(g.until) {
			g.until = d.Until
		}
	}
	out := map[int64]string{}
	var mu sync.Mutex
	errs := make([]error, len(groups))
	each(len(groups), t.concurrency, func(i int) {
		g := groups[i]
		sids, err := t.find(ctx, g.to, g.sender, g.body, g.since.Add(-twilioClockSlack), g.until.Add(twilioClockSlack))
		if err != nil {
			errs[i] = err
			return
		}
		slices.Sort(g.ids)
		mu.Lock()
		defer mu.Unlock()
		for j, id := range g.ids {
			if j < len(sids) {
				out[id] = sids[j]
			}
		}
	})
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return out, nil
}

// find returns the SIDs of the messages to `to` from sender (a number or a
// Messaging Service SID) with body ("" matches any) created from since to
// until, oldest first.
func (t *Twilio) find(ctx context.Context, to, sender, body string, since, until time.Time) ([]string, error) {
	params := &twilioapi.ListMessageParams{}
	params.SetTo(to)
	service := strings.HasPrefix(sender, "MG")
	if sender != "" && !service {
		params.SetFrom(sender)
	}
	params.SetDateSentAfter(since.UTC())
	params.SetDateSentBefore(until.UTC())
	params.SetPageSize(twilioListLimit)
	params.SetLimit(twilioListLimit)
	cctx, cancel := context.WithTimeout(ctx, t.timeout)
	defer cancel()
	api, call := t.api(cctx)
	msgs, err := api.ListMessage(params)
	if err != nil {
		return nil, fmt.Errorf("twilio: list messages: %w", t.classify(err, call))
	}
	type found struct {
		sid     string
		created time.Time
	}
	var hits []found
	for _, m := range msgs {
		if m.Sid == nil || (body != "" && (m.Body == nil || *m.Body != body)) {
			continue
		}
		if service && (m.MessagingServiceSid == nil || *m.MessagingServiceSid != sender) {
			continue
		}
		var created time.Time
		if m.DateCreated != nil {
			if c, err := time.Parse(time.RFC1123Z, *m.DateCreated); err == nil {
				created = c
				if c.Before(since) || c.After(until) {
					continue
				}
			}
		}
		hits = append(hits, found{*m.Sid, created})
	}
	slices.SortStableFunc(hits, func(a, b found) int { return a.created.Compare(b.created) })
	sids := make([]string, len(hits))
	for i, h := range hits {
		sids[i] = h.sid
	}
	return sids, nil
}

// classify turns a twilio-go error into an *Error. Twilio's error codes
// (https://www.twilio.com/docs/api/errors) are kept in the reason.
func (t *Twilio) classify(err error, call *twilioCall) *Error {
	var re *client.TwilioRestError
	if !errors.As(err, &re) {
		if call.status == 0 {
			return transportError(TwilioName, err)
		}
		// A response the SDK could not decode (an HTML 502 from a proxy).
		re = &client.TwilioRestError{Status: call.status, Message: err.Error()}
	}
	status := re.Status
	if status == 0 {
		status = call.status
	}
	reason := fmt.Sprintf("HTTP %d", status)
	if re.Code != 0 {
		reason += " code " + strconv.Itoa(re.Code)
	}
	if re.Message != "" {
		reason += ": " + re.Message
	}
	switch {
	case retryableStatus(status) || re.Code == 20429:
		return Retryable(TwilioName, reason, retryAfter(call.header, t.now()), err)
	case status == http.StatusUnauthorized || status == http.StatusForbidden || re.Code == 20003:
		return Permanent(TwilioName, "authentication or permission: "+reason, err)
	case re.Code == TwilioUnsubscribed:
		// The recipient replied STOP: every later message would fail the
		// same way, so the number goes on the suppression list.
		e := Permanent(TwilioName, reason, err)
		e.Suppress = SuppressTwilioStop
		return e
	default:
		// 400/404: invalid To (21211), a From the account does not own
		// (21606), body too long (21617)...
		return Permanent(TwilioName, reason, err)
	}
}

// twilioCall is one Twilio request's transport: it sends to base (when set)
// under the call's context and remembers the response status and headers.
type twilioCall struct {
	ctx    context.Context
	base   *url.URL
	next   http.RoundTripper
	status int
	header http.Header
}

func (c *twilioCall) RoundTrip(req *http.Request) (*http.Response, error) {
	r := req.Clone(c.ctx)
	if c.base != nil {
		r.URL.Scheme = c.base.Scheme
		r.URL.Host = c.base.Host
		r.URL.Path = strings.TrimRight(c.base.Path, "/") + r.URL.Path
		r.Host = ""
	}
	resp, err := c.next.RoundTrip(r)
	if resp != nil {
		c.status, c.header = resp.StatusCode, resp.Header.Clone()
	}
	return resp, err
}

// CallbackURL is base with the delivery id added to its query.
func CallbackURL(base string, deliveryID int64) string {
	u, err := url.Parse(base)
	if err != nil {
		return base
	}
	q := u.Query()
	q.Set(CallbackDeliveryParam, strconv.FormatInt(deliveryID, 10))
	u.RawQuery = q.Encode()
	return u.String()
}

// NormalizePhone returns phone as E.164. Spaces, dashes, dots and brackets
// are dropped and a leading 00 becomes +. A number without + gets
// countryCode (after dropping one national trunk 0); with no countryCode it
// is refused.
func NormalizePhone(phone, countryCode string) (string, error) {
	s := strings.Map(func(r rune) rune {
		switch r {
		case ' ', '-', '.', '(', ')', '\t':
			return -1
		}
		return r
	}, phone)
	if rest, ok := strings.CutPrefix(s, "00"); ok {
		s = "+" + rest
	}
	if !strings.HasPrefix(s, "+") && s != "" {
		if countryCode == "" {
			return "", fmt.Errorf("invalid phone %q: not E.164 (+ and country code) and channels.twilio.defaultCountryCode is not set", phone)
		}
		s = "+" + countryCode + strings.TrimPrefix(s, "0")
	}
	if !e164.MatchString(s) {
		return "", fmt.Errorf("invalid phone %q: not an E.164 number", phone)
	}
	return s, nil
}
