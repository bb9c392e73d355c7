package channels

import "time"

// SetClock replaces the SendGrid channel's clock, its rate limiter's
// included, so pacing can be tested without waiting.
func (s *SendGrid) SetClock(now func() time.Time) {
	s.now = now
	s.limiter.now = now
}
