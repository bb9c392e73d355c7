package outbox

import (
	"context"
	"time"
)

// NoJitter turns the backoff jitter off, so delays are exact lower bounds.
func (r *Relay) NoJitter() { r.retry.NoJitter = true }

// SetPruneEvery sets how often Run prunes.
func (r *Relay) SetPruneEvery(d time.Duration) { r.pruneEvery = d }

// SetNow replaces the relay's clock.
func (r *Relay) SetNow(now func() time.Time) { r.now = now }

// Cycle runs one claim-publish-record cycle and reports how many rows it
// claimed.
func (r *Relay) Cycle(ctx context.Context) (int, error) {
	res, err := r.cycle(ctx, false)
	return res.claimed, err
}

// Check is Entry's check: why EventBridge could never accept e, or nil.
func (e Entry) Check() error { return e.check() }
