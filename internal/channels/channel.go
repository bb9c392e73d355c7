// Package channels defines how a rendered delivery reaches a provider: the
// Channel interface, the error classes every provider reports in, and the
// providers themselves (sandbox, SendGrid, Twilio, FCM).
package channels

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Address is an email recipient or sender.
type Address struct {
	Email string `json:"email"`
	Name  string `json:"name,omitempty"`
}

// Message is one delivery, rendered and ready for a provider. Which fields
// are set depends on Channel.
type Message struct {
	DeliveryID     int64  `json:"deliveryId"`
	NotificationID int64  `json:"notificationId"`
	CollectionID   int64  `json:"collectionId"`
	ActionID       int64  `json:"actionId"`
	Channel        string `json:"channel"` // email | sms | push

	// Email. TemplateID set: SendGrid renders the dynamic template with
	// DynamicData; otherwise Subject/HTML/Text are already rendered.
	From        Address           `json:"from,omitempty"`
	To          []Address         `json:"to,omitempty"`
	Cc          []Address         `json:"cc,omitempty"`
	Bcc         []Address         `json:"bcc,omitempty"`
	Subject     string            `json:"subject,omitempty"`
	HTML        string            `json:"html,omitempty"`
	Text        string            `json:"text,omitempty"`
	TemplateID  string            `json:"templateId,omitempty"`
	DynamicData map[string]string `json:"dynamicData,omitempty"`

	// SMS.
	Phone               string `json:"phone,omitempty"`
	SMSFrom             string `json:"smsFrom,omitempty"`
	MessagingServiceSID string `json:"messagingServiceSid,omitempty"`

	// SMS and push body; push title, data and device token.
	Body      string            `json:"body,omitempty"`
	Title     string            `json:"title,omitempty"`
	Data      map[string]string `json:"data,omitempty"`
	PushToken string            `json:"pushToken,omitempty"`
}

// Result is the outcome of sending one Message. Err nil means the provider
// accepted it; otherwise Err is (or wraps) an *Error saying whether to retry.
type Result struct {
	ProviderMessageID string
	Err               error
}

// Channel sends messages through one provider.
//
// Send receives messages of one channel, in practice the recipients of one
// action in one notification, so providers that batch (SendGrid
// personalizations) can make one call. It returns exactly one Result per
// message, in order. It must honour ctx and must not retry on its own: the
// dispatch workers own retries, backoff and attempt counts.
type Channel interface {
	Name() string
	Send(ctx context.Context, msgs []Message) []Result
}

// Error is a classified provider failure.
type Error struct {
	Provider   string
	Permanent  bool          // retrying cannot help: bad address, unknown template, auth
	RetryAfter time.Duration // the provider's Retry-After, 0 when none
	Reason     string        // the provider's own words, recorded on the delivery
	Err        error
}

func (e *Error) Error() string {
	kind := "retryable"
	if e.Permanent {
		kind = "permanent"
	}
	return fmt.Sprintf("%s: %s error: %s", e.Provider, kind, e.Reason)
}

func (e *Error) Unwrap() error { return e.Err }

// Permanent builds a permanent error.
func Permanent(provider, reason string, err error) *Error {
	return &Error{Provider: provider, Permanent: true, Reason: reason, Err: err}
}

// Retryable builds a retryable error; retryAfter may be 0.
func Retryable(provider, reason string, retryAfter time.Duration, err error) *Error {
	return &Error{Provider: provider, RetryAfter: retryAfter, Reason: reason, Err: err}
}

// Classify returns err as an *Error; an unclassified error counts as retryable.
func Classify(provider string, err error) *Error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	return Retryable(provider, err.Error(), 0, err)
}
