package delivery

import (
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/notificationservice/notificationservice/internal/apperr"
	"github.com/notificationservice/notificationservice/internal/channels"
	"github.com/notificationservice/notificationservice/internal/dispatch"
)

// retry decides what a failed attempt leads to: failed (permanent error, or
// out of attempts) or pending again after a backoff.
func (d *Dispatcher) retry(o *outcome, e *channels.Error, now time.Time) {
	reason := apperr.Truncate(e.Reason, 1000)
	switch {
	case e.Permanent:
		o.status, o.reason = dispatch.StatusFailed, reason
	case o.attempts >= d.cfg.MaxAttempts:
		o.status, o.reason = dispatch.StatusFailed, fmt.Sprintf("gave up after %d attempts: %s", o.attempts, reason)
	default:
		wait := Backoff(o.attempts, d.cfg.BackoffBase, d.cfg.BackoffMax, rand.Float64())
		wait = max(wait, e.RetryAfter)
		o.status = dispatch.StatusPending
		o.reason = fmt.Sprintf("attempt %d failed: %s", o.attempts, reason)
		o.nextAttemptAt = now.Add(wait).UnixMilli()
	}
}

// Backoff is the wait after attempt n (1-based) fails: base·2^(n-1), capped
// at maxWait, with "equal jitter" (between half and all of it; r in [0,1)),
// so retries of a burst spread out but never come sooner than half the
// schedule.
func Backoff(n int, base, maxWait time.Duration, r float64) time.Duration {
	d := base
	for i := 1; i < n && d < maxWait; i++ {
		d *= 2
	}
	d = min(d, maxWait)
	return d/2 + time.Duration(r*float64(d/2))
}
