package channels

import "time"

// SetClock replaces the SendGrid channel's clock, its rate limiter's
// included, so pacing can be tested without waiting.
func (s *SendGrid) SetClock(now func() time.Time) {
	s.now = now
	s.limiter.now = now
}

// SetClock replaces the Twilio channel's clock, its rate limiter's included.
func (t *Twilio) SetClock(now func() time.Time) {
	t.now = now
	t.limiter.now = now
}

// SetClock replaces the push channel's clock, its rate limiter's included.
func (p *Push) SetClock(now func() time.Time) {
	p.now = now
	p.limiter.now = now
}

// SetWebhookClock replaces the webhook channel's clock.
func SetWebhookClock(w *Webhook, now func() time.Time) { w.now = now }
