package channels

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptrace"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sony/gobreaker/v2"
	"golang.org/x/time/rate"
)

// Limiter paces sends with one token bucket per key (a provider's sender:
// a Twilio number or Messaging Service, or the SendGrid account), so the
// service never provokes a 429 it could have avoided.
type Limiter struct {
	provider string
	limit    rate.Limit
	burst    int
	now      func() time.Time

	mu    sync.Mutex
	byKey map[string]*rate.Limiter
}

// NewLimiter returns a Limiter allowing perSecond sends per key with the
// given burst. perSecond <= 0 means unlimited.
func NewLimiter(provider string, perSecond float64, burst int) *Limiter {
	limit := rate.Limit(perSecond)
	if perSecond <= 0 {
		limit = rate.Inf
	}
	return &Limiter{provider: provider, limit: limit, burst: max(burst, 1), now: time.Now, byKey: map[string]*rate.Limiter{}}
}

func (l *Limiter) bucket(key string) *rate.Limiter {
	l.mu.Lock()
	defer l.mu.Unlock()
	b, ok := l.byKey[key]
	if !ok {
		b = rate.NewLimiter(l.limit, l.burst)
		l.byKey[key] = b
	}
	return b
}

// Wait blocks until key may send one more message. When the wait would
// outlast ctx's deadline it does not wait: it returns a retryable *Error
// whose RetryAfter is the wait, so the delivery is rescheduled instead of
// holding a worker.
func (l *Limiter) Wait(ctx context.Context, key string) error {
	if l.limit == rate.Inf {
		return nil
	}
	now := l.now()
	r := l.bucket(key).ReserveN(now, 1)
	delay := r.DelayFrom(now)
	if delay == 0 {
		return nil
	}
	if dl, ok := ctx.Deadline(); ok && now.Add(delay).After(dl) {
		r.CancelAt(now)
		return Retryable(l.provider, fmt.Sprintf("rate limit for %q: next slot in %s, after this attempt's deadline", key, delay.Round(time.Millisecond)), delay, nil)
	}
	t := time.NewTimer(delay)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		r.Cancel()
		return Retryable(l.provider, "cancelled while waiting for the rate limit", 0, ctx.Err())
	}
}

// Breaker is a circuit breaker per provider (sony/gobreaker): after a run of
// retryable failures it opens and fails sends at once, without calling the
// provider, until the cooldown passes and a probe succeeds. Permanent errors
// (a bad address) say nothing about the provider's health and do not count.
type Breaker struct {
	provider string
	cooldown time.Duration
	cb       *gobreaker.TwoStepCircuitBreaker[struct{}]

	mu       sync.Mutex
	openedAt time.Time
}

// NewBreaker returns a Breaker that opens after failures consecutive
// retryable failures and probes again after cooldown.
func NewBreaker(provider string, failures int, cooldown time.Duration, log *slog.Logger) *Breaker {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	b := &Breaker{provider: provider, cooldown: cooldown}
	b.cb = gobreaker.NewTwoStepCircuitBreaker[struct{}](gobreaker.Settings{
		Name:        provider,
		MaxRequests: 1,
		Timeout:     cooldown,
		ReadyToTrip: func(c gobreaker.Counts) bool { return c.ConsecutiveFailures >= uint32(max(failures, 1)) },
		IsSuccessful: func(err error) bool {
			var e *Error
			return err == nil || (errors.As(err, &e) && e.Permanent)
		},
		// Our own cancellation (shutdown, the attempt's deadline spent in
		// the rate limiter) is not the provider's fault.
		IsExcluded: func(err error) bool { return errors.Is(err, context.Canceled) },
		OnStateChange: func(name string, from, to gobreaker.State) {
			if to == gobreaker.StateOpen {
				b.mu.Lock()
				b.openedAt = time.Now()
				b.mu.Unlock()
				log.Warn("provider circuit opened", "provider", name, "from", from.String(), "cooldown", cooldown)
				return
			}
			log.Info("provider circuit changed", "provider", name, "from", from.String(), "to", to.String())
		},
	})
	return b
}

// Allow asks to make one provider call. It returns done, to be called with
// the call's classified error (nil on success), or a retryable *Error when
// the circuit is open, with RetryAfter the rest of the cooldown.
func (b *Breaker) Allow() (done func(error), err error) {
	done, err = b.cb.Allow()
	if err == nil {
		return done, nil
	}
	b.mu.Lock()
	wait := b.cooldown - time.Since(b.openedAt)
	b.mu.Unlock()
	if wait <= 0 || errors.Is(err, gobreaker.ErrTooManyRequests) {
		wait = time.Second // half-open with its probe in flight
	}
	return nil, Retryable(b.provider, "circuit open: the provider failed repeatedly; not calling it until the cooldown passes", wait, err)
}

// State is "closed", "open" or "half-open".
func (b *Breaker) State() string { return b.cb.State().String() }

// newTransport is the HTTP transport every provider client shares: bounded
// dial, TLS and header waits (the whole call is bounded by its context),
// and enough idle connections for concurrent sends to one host. It marks
// the failures of a send that had gone out whole (sentTransport).
func newTransport(timeout time.Duration) http.RoundTripper {
	return sentTransport{next: &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           (&net.Dialer{Timeout: min(timeout, 5*time.Second), KeepAlive: 30 * time.Second}).DialContext,
		ForceAttemptHTTP2:     true,
		TLSHandshakeTimeout:   min(timeout, 5*time.Second),
		ResponseHeaderTimeout: timeout,
		MaxIdleConns:          256,
		MaxIdleConnsPerHost:   64,
		IdleConnTimeout:       90 * time.Second,
	}}
}

// sentTransport tells the failures of a send that reached the provider
// from those of one that did not. When a POST fails without an answer
// after net/http wrote it whole (httptrace's WroteRequest without an
// error), the provider may have accepted it: the error is wrapped in an
// answerLost, which transportError reports as in doubt. A refused
// connection, a DNS or TLS failure, or a write that broke part way left
// nothing the provider could accept, and stays retryable. Lookups (GET)
// are not marked: there is nothing to accept.
//
// Over HTTP/1.1 net/http ends its write before RoundTrip returns an error.
// Over HTTP/2 RoundTrip returns as soon as the context ends, while the
// stream's writer may still be in its last write (blocked on a full
// socket, say): that write can complete, END_STREAM and all, after
// RoundTrip returned, and the provider then has the whole request. So
// once the headers went out, a failed POST waits for the writer to say
// how its write ended (WroteRequest, which it always calls after its
// body), at most settle; a write still unsettled then is counted as
// whole, in doubt rather than sent twice. A stream reset before its last
// byte leaves the provider a part it cannot accept: retryable.
// Written here: no library classifies a lost answer by what was written.
type sentTransport struct {
	next   http.RoundTripper
	settle time.Duration // 0: writeSettle
}

// writeSettle bounds sentTransport's wait for an HTTP/2 writer to end
// after its request failed: long enough for a writer that was told to stop
// to return, far shorter than any provider timeout.
const writeSettle = time.Second

func (t sentTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Method != http.MethodPost {
		return t.next.RoundTrip(req)
	}
	var headers atomic.Bool
	wrote := make(chan error, 1)
	trace := &httptrace.ClientTrace{
		WroteHeaders: func() { headers.Store(true) },
		WroteRequest: func(i httptrace.WroteRequestInfo) {
			select {
			case wrote <- i.Err:
			default: // once per request; never block the writer
			}
		},
	}
	resp, err := t.next.RoundTrip(req.WithContext(httptrace.WithClientTrace(req.Context(), trace)))
	if err != nil && t.wentOutWhole(headers.Load(), wrote) {
		return resp, &answerLost{err: err}
	}
	return resp, err
}

// wentOutWhole reports whether a failed request's write ended with its
// last byte sent, waiting for the writer when the headers had gone out
// and it had not yet said (sentTransport).
func (t sentTransport) wentOutWhole(headers bool, wrote <-chan error) bool {
	select {
	case err := <-wrote:
		return err == nil
	default:
	}
	if !headers {
		return false // nothing of it left: a failed dial, DNS, TLS, or a cancel before the headers
	}
	settle := t.settle
	if settle <= 0 {
		settle = writeSettle
	}
	timer := time.NewTimer(settle)
	defer timer.Stop()
	select {
	case err := <-wrote:
		return err == nil
	case <-timer.C:
		return true
	}
}

// answerLost is the error of a request the provider got whole and never
// answered (sentTransport).
type answerLost struct{ err error }

func (e *answerLost) Error() string { return e.err.Error() }
func (e *answerLost) Unwrap() error { return e.err }

// Timeout keeps what url.Error.Timeout reports of the error it wraps.
func (e *answerLost) Timeout() bool {
	var ne net.Error
	return errors.As(e.err, &ne) && ne.Timeout()
}

// transportError classifies a failure to get any response. When the
// request had gone out whole (answerLost: a timeout waiting for the answer,
// a connection reset after the write, the caller's cancellation mid-call)
// the provider may have accepted it, and sending it again could deliver it
// twice: in doubt (MaybeAccepted), for recovery to ask the provider or
// apply the action's config.inDoubt. Any other failure (refused or reset
// before the write, DNS, TLS, a deadline before the call) sent nothing the
// provider could accept: retryable.
func transportError(provider string, err error) *Error {
	var ne net.Error
	var reason string
	switch {
	case errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout()):
		reason = "timeout: " + err.Error()
	case errors.Is(err, context.Canceled):
		reason = "cancelled: " + err.Error()
	default:
		reason = "transport: " + err.Error()
	}
	if lost := (*answerLost)(nil); errors.As(err, &lost) {
		return MaybeAccepted(provider, reason+" (after the request was sent: the provider may have accepted it)", err)
	}
	return Retryable(provider, reason, 0, err)
}

// retryAfter reads Retry-After (seconds or an HTTP date); 0 when absent.
func retryAfter(h http.Header, now time.Time) time.Duration {
	v := h.Get("Retry-After")
	if v == "" {
		return 0
	}
	if secs, err := strconv.ParseInt(v, 10, 64); err == nil {
		if secs < 0 {
			return 0
		}
		return time.Duration(secs) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}

// retryableStatus is an HTTP status worth retrying: the provider is busy
// (429), timed out (408) or failing (5xx).
func retryableStatus(code int) bool {
	return code == http.StatusTooManyRequests || code == http.StatusRequestTimeout || code >= 500
}

// each runs fn for every index of n with at most limit at a time, and waits.
func each(n, limit int, fn func(i int)) {
	if n == 1 || limit <= 1 {
		for i := range n {
			fn(i)
		}
		return
	}
	sem := make(chan struct{}, limit)
	var wg sync.WaitGroup
	for i := range n {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			fn(i)
		})
	}
	wg.Wait()
}
