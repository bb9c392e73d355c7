package outbox

import "time"

// SetJitter replaces the backoff jitter (tests use the identity, so delays
// are exact lower bounds).
func (r *Relay) SetJitter(f func(time.Duration) time.Duration) { r.jitter = f }

// SetPruneEvery sets how often Run prunes.
func (r *Relay) SetPruneEvery(d time.Duration) { r.pruneEvery = d }
