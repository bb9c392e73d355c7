package delivery

import (
	"fmt"
	"time"

	"github.com/notificationservice/notificationservice/internal/apperr"
	"github.com/notificationservice/notificationservice/internal/channels"
	"github.com/notificationservice/notificationservice/internal/dispatch"
	"github.com/notificationservice/notificationservice/internal/retry"
)

// ChannelRetry is a channel's own retry schedule, in place of
// dispatch.backoffBase, backoffMax and maxAttempts for its deliveries: the
// webhook channel retries a customer's endpoint over hours (webhooks.*),
// where a provider is retried over minutes.
type ChannelRetry struct {
	Policy retry.Policy
	// For is how long after the delivery was created it is retried; the
	// attempt that fails after that is its last.
	For time.Duration
}

// WithChannelRetry gives channel's deliveries schedule r and returns d.
// Call it before Run.
func (d *Dispatcher) WithChannelRetry(channel string, r ChannelRetry) *Dispatcher {
	if d.channelRetry == nil {
		d.channelRetry = map[string]ChannelRetry{}
	}
	d.channelRetry[channel] = r
	return d
}

// retry decides what a failed attempt of a delivery on channel leads to:
// failed (permanent error, or out of attempts or time) or pending again
// after a backoff.
func (d *Dispatcher) retry(o *outcome, channel string, e *channels.Error, now time.Time) {
	reason := apperr.Truncate(e.Reason, 1000)
	policy := d.retryPolicy()
	cr, own := d.channelRetry[channel]
	if own {
		policy = cr.Policy
	}
	switch {
	case e.Permanent:
		o.status, o.reason = dispatch.StatusFailed, reason
	case own && now.Sub(time.UnixMilli(o.createdTime)) >= cr.For:
		o.status, o.reason = dispatch.StatusFailed, fmt.Sprintf("gave up after %d attempts over %s: %s", o.attempts, cr.For, reason)
	case !own && o.attempts >= d.cfg.MaxAttempts:
		o.status, o.reason = dispatch.StatusFailed, fmt.Sprintf("gave up after %d attempts: %s", o.attempts, reason)
	default:
		wait := policy.After(o.attempts, e.RetryAfter)
		o.status = dispatch.StatusPending
		o.reason = fmt.Sprintf("attempt %d failed: %s", o.attempts, reason)
		o.nextAttemptAt = now.Add(wait).UnixMilli()
	}
}

// retryPolicy is the delivery schedule of dispatch.backoffBase and
// dispatch.backoffMax: base·2^(n-1) after attempt n, capped, with "equal
// jitter" (between half and all of it), so retries of a burst spread out
// but never come sooner than half the schedule; a provider's Retry-After is
// a floor under it (capped at retry.DefaultMaxRetryAfter).
func (d *Dispatcher) retryPolicy() retry.Policy {
	return retry.Policy{Initial: d.cfg.BackoffBase, Max: d.cfg.BackoffMax}
}

// Backoff is the wait after attempt n (1-based) fails under the delivery
// schedule with base and maxWait, r in [0,1) placing it between half and
// all of it (see retryPolicy).
func Backoff(n int, base, maxWait time.Duration, r float64) time.Duration {
	return retry.Policy{Initial: base, Max: maxWait}.DelayAt(n, r)
}
