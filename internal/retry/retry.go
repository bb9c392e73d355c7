// Package retry is the service's one retry policy: how long to wait after a
// failure, for loops that retry in process (the queue consumer's reconnect
// and commit, the workers' outcome writes, the cache listener) and for
// attempts persisted in a table (a delivery's or an outbox row's
// next_attempt_at, the coming webhooks).
//
// It wraps github.com/cenkalti/backoff/v5: the exponential schedule is its
// ExponentialBackOff and in-process loops run under its Retry. What is
// written here is only what the library does not do: the wait for attempt n
// of a persisted count (the library's schedule is a stateful iterator), the
// jitter's shape (the library's spreads both ways around the interval and so
// may exceed the cap), and a server's Retry-After as a floor under the
// schedule (the library's RetryAfter replaces the wait, in whole seconds,
// and loses the cause).
package retry

import (
	"context"
	"errors"
	"math"
	"math/rand/v2"
	"time"

	"github.com/cenkalti/backoff/v5"
)

// DefaultMaxRetryAfter caps a server's Retry-After when
// Policy.MaxRetryAfter is zero: a provider's wait is honoured, but a buggy
// or hostile one cannot park a retry for months.
const DefaultMaxRetryAfter = 24 * time.Hour

// multiplier is the schedule's growth per failure: the waits double.
const multiplier = 2

// Policy is a retry schedule: the wait after the first failure is Initial,
// each further failure doubles it up to Max, and jitter spreads it over
// [wait/2, wait]. The zero value of each bound means "none". A Policy is a
// value: copy it freely; it holds no state between calls.
type Policy struct {
	// Initial is the wait after the first failure; it must be positive.
	Initial time.Duration
	// Max caps every wait before jitter (and so after it); <= 0: no cap.
	Max time.Duration
	// NoJitter turns jitter off. It is on by default: retries of a burst of
	// failures should spread out, and "equal jitter" never retries sooner
	// than half the schedule, so a failing dependency is not hammered.
	NoJitter bool
	// MaxAttempts bounds the attempts Do makes in all; 0: no bound.
	// Persisted schedules count their own attempts against their own limit.
	MaxAttempts int
	// MaxElapsed makes Do give up rather than start a wait that would end
	// later than this after its first attempt; 0: no bound.
	MaxElapsed time.Duration
	// MaxRetryAfter caps a server's Retry-After (After, RetryAfter errors
	// in Do); 0: DefaultMaxRetryAfter.
	MaxRetryAfter time.Duration
	// Rand is the jitter's source of values in [0, 1]; nil: math/rand/v2.
	// Tests fix it (1 gives the schedule itself).
	Rand func() float64
}

// Delay is the wait after attempt n (1-based) fails, jittered: what a loop
// sleeps, or what a persisted attempt adds to now for its next_attempt_at.
func (p Policy) Delay(n int) time.Duration {
	if p.NoJitter {
		return p.schedule(n)
	}
	return p.DelayAt(n, p.random())
}

// DelayAt is Delay with the jitter's random value r in [0, 1] given:
// Initial·2^(n-1) capped at Max, then between half of it (r = 0) and all of
// it (r = 1). It is deterministic, so a test can bound every attempt.
func (p Policy) DelayAt(n int, r float64) time.Duration {
	return equalJitter(p.schedule(n), r)
}

// After is the wait after attempt n fails when the server asked for
// retryAfter (0: it did not): the schedule's Delay, or the server's wait
// (capped at MaxRetryAfter) when that is longer.
func (p Policy) After(n int, retryAfter time.Duration) time.Duration {
	return max(p.Delay(n), p.capRetryAfter(retryAfter))
}

// schedule is the un-jittered wait after attempt n. The library's
// ExponentialBackOff only iterates, and a persisted attempt count has no
// iterator to resume, so this replays a fresh one n times; it stops at the
// cap, after at most log2(Max/Initial) steps.
func (p Policy) schedule(n int) time.Duration {
	b := p.exponential()
	d := b.NextBackOff()
	for i := 1; i < n && d < b.MaxInterval; i++ {
		d = b.NextBackOff()
	}
	return d
}

// exponential is the library's schedule without its jitter (which spreads
// both ways around the interval and may exceed MaxInterval).
func (p Policy) exponential() *backoff.ExponentialBackOff {
	maxWait := p.Max
	if maxWait <= 0 {
		maxWait = math.MaxInt64
	}
	b := &backoff.ExponentialBackOff{
		InitialInterval:     min(p.Initial, maxWait),
		RandomizationFactor: 0,
		Multiplier:          multiplier,
		MaxInterval:         maxWait,
	}
	b.Reset()
	return b
}

func (p Policy) random() float64 {
	if p.Rand != nil {
		return p.Rand()
	}
	return rand.Float64()
}

func (p Policy) capRetryAfter(d time.Duration) time.Duration {
	limit := p.MaxRetryAfter
	if limit <= 0 {
		limit = DefaultMaxRetryAfter
	}
	return min(max(d, 0), limit)
}

// equalJitter is d spread over [d/2, d] by r in [0, 1].
func equalJitter(d time.Duration, r float64) time.Duration {
	r = min(max(r, 0), 1)
	half := d / 2
	return half + time.Duration(r*float64(d-half))
}

// BackOff is the policy's schedule as a stateful backoff.BackOff, for a loop
// that keeps its own failure count across successes (it calls Reset after a
// session that ran well, so the next reconnect starts fast). Not safe for
// concurrent use.
type BackOff struct {
	p     Policy
	exp   *backoff.ExponentialBackOff
	floor time.Duration // a server's Retry-After for the next wait
}

// NewBackOff returns the policy's schedule, reset.
func (p Policy) NewBackOff() *BackOff {
	return &BackOff{p: p, exp: p.exponential()}
}

// NextBackOff returns the next wait: the schedule's, jittered, or a pending
// Retry-After when longer. It never returns backoff.Stop: giving up is Do's
// MaxAttempts and MaxElapsed.
func (b *BackOff) NextBackOff() time.Duration {
	d := b.exp.NextBackOff()
	if !b.p.NoJitter {
		d = equalJitter(d, b.p.random())
	}
	d = max(d, b.floor)
	b.floor = 0
	return d
}

// Reset starts the schedule over at Initial.
func (b *BackOff) Reset() {
	b.exp.Reset()
	b.floor = 0
}

var _ backoff.BackOff = (*BackOff)(nil)

// Permanent marks err as not worth retrying: Do returns err (unwrapped) at
// once.
func Permanent(err error) error { return backoff.Permanent(err) }

// RetryAfter marks err as retryable no sooner than d (a server's
// Retry-After): Do waits at least d, capped at MaxRetryAfter, and the
// schedule carries on. The error still wraps err.
func RetryAfter(err error, d time.Duration) error {
	if err == nil {
		return nil
	}
	return &retryAfterError{err: err, wait: d}
}

type retryAfterError struct {
	err  error
	wait time.Duration
}

func (e *retryAfterError) Error() string { return e.err.Error() }
func (e *retryAfterError) Unwrap() error { return e.err }

// Notify is told of each failure Do will retry, with the wait before the
// next attempt (for logging).
type Notify func(err error, wait time.Duration)

// Do runs op until it succeeds, returns a Permanent error, or the policy's
// MaxAttempts or MaxElapsed is reached (then it returns op's last error),
// or ctx ends (then it returns context.Cause(ctx)), waiting Delay between
// attempts. notify may be nil.
func (p Policy) Do(ctx context.Context, op func() error, notify Notify) error {
	return p.DoWith(ctx, p.NewBackOff(), op, notify)
}

// DoWith is Do on b, a schedule op may Reset (see BackOff).
func (p Policy) DoWith(ctx context.Context, b *BackOff, op func() error, notify Notify) error {
	opts := []backoff.RetryOption{
		backoff.WithBackOff(b),
		// Always set: the library's default gives up after 15 minutes.
		backoff.WithMaxElapsedTime(max(p.MaxElapsed, 0)),
		backoff.WithMaxTries(uint(max(p.MaxAttempts, 0))),
	}
	if notify != nil {
		opts = append(opts, backoff.WithNotify(backoff.Notify(notify)))
	}
	_, err := backoff.Retry(ctx, func() (struct{}, error) {
		err := op()
		// The library computes the next wait after op returns: leave the
		// floor where its NextBackOff finds it.
		if ra, ok := errors.AsType[*retryAfterError](err); ok {
			b.floor = p.capRetryAfter(ra.wait)
		}
		return struct{}{}, err
	}, opts...)
	return err
}
