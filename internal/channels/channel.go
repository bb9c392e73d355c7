// Package channels defines how a rendered delivery reaches a provider: the
// Channel interface, the error classes every provider reports in, and the
// providers themselves (sandbox, SendGrid, Twilio, FCM, and the customer
// webhook endpoints).
package channels

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/notificationservice/notificationservice/internal/message"
)

// Address is an email recipient or sender (declared in package message,
// beside Message).
type Address = message.Address

// Message is one delivery, rendered and ready for a provider. It is declared
// in package message so that package render can produce it without
// importing channels, and channels can send it without importing the action
// model render reads (docs/architecture.md).
type Message = message.Message

// Result is the outcome of sending one Message. Err nil means the provider
// accepted it; otherwise Err is (or wraps) an *Error saying whether to retry.
type Result struct {
	ProviderMessageID string
	Err               error
}

// The channels a Message goes out on, declared once in package message (the
// leaf actions may import too): the values of Message.Channel, which
// deliveries record and Select keys its providers by.
const (
	ChannelEmail = message.Email
	ChannelSMS   = message.SMS
	ChannelPush  = message.Push
	// ChannelWebhook is not chosen by Select: the webhook channel
	// (NewWebhook) always posts, sandbox or not (docs/webhooks.md).
	ChannelWebhook = message.Webhook
)

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
	// Suppress is the suppression-list source the failure implies (Twilio
	// 21610, the recipient replied STOP: SuppressTwilioStop), "" for none:
	// the delivery workers then put the address on the list.
	Suppress string
	// MaybeAccepted says the provider may have accepted the message: the
	// request reached it and its answer was lost (the connection broke, or
	// the wait ended, mid-call). Sending it again could send it twice, so
	// the workers leave the delivery in doubt, to recovery, which asks the
	// provider (Reconciler) or applies the action's config.inDoubt
	// (docs/queue.md).
	MaybeAccepted bool
	Err           error
}

func (e *Error) Error() string {
	kind := "retryable"
	switch {
	case e.Permanent:
		kind = "permanent"
	case e.MaybeAccepted:
		kind = "in-doubt"
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

// MaybeAccepted builds the error of a call whose answer was lost: the
// provider may have accepted the message (Error.MaybeAccepted).
func MaybeAccepted(provider, reason string, err error) *Error {
	return &Error{Provider: provider, MaybeAccepted: true, Reason: reason, Err: err}
}

// Classify returns err as an *Error; an unclassified error counts as retryable.
func Classify(provider string, err error) *Error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	return Retryable(provider, err.Error(), 0, err)
}

// InDoubt is a delivery whose last attempt may have reached the provider:
// its worker stopped (crash, lost lease) between the provider call and the
// record of its outcome.
type InDoubt struct {
	DeliveryID     int64
	NotificationID int64
	// Address is where the attempt went: an email address, a phone number
	// (as the recipient gave it; providers normalise it as Send does) or a
	// push token.
	Address string
	// Sender is the email From address, the SMS From number or Twilio
	// Messaging Service SID; "" when it could not be worked out.
	Sender string
	// Body is the rendered SMS or push body (the email subject for email),
	// when the delivery could be rendered again; "" otherwise. A provider
	// that can search by content matches on it.
	Body string
	// Since and Until bound when the attempt reached the provider, if it
	// did: from its claim to its lease's expiry (or the recovery, if later).
	Since, Until time.Time
}

// Reconciler is a Channel whose provider can be asked which in-doubt
// deliveries it accepted. Recovery asks before sending them again, so a crash
// between the provider's accept and the outcome's record does not send
// twice.
//
// Accepted returns the provider message id of each delivery the provider
// has accepted, keyed by delivery id; a delivery it leaves out was not
// accepted and is sent again. An error means the provider could not be
// asked, for any of them (ErrCannotReconcile when the lookup is switched
// off): the action's inDoubt policy decides.
type Reconciler interface {
	Accepted(ctx context.Context, deliveries []InDoubt) (map[int64]string, error)
}

// ExactReconciler is a Reconciler that may answer exactly: one that
// writes each message it accepts to the service's own database before Send
// returns, in a statement that either commits or leaves Send failing, so
// that after a crash Accepted names each message it accepted and no other.
// A crash then leaves nothing of it in doubt, and the workers do not hold
// its sends to dispatch.recordBatch, the bound on what a crash can leave
// in doubt with a provider that is asked by a search (Twilio, SendGrid) or
// not at all. ReconcilesExactly reports whether this one does (the sandbox
// does only when it records to the database).
type ExactReconciler interface {
	Reconciler
	ReconcilesExactly() bool
}

// ReconcilesExactly reports whether ch is an ExactReconciler that answers
// exactly.
func ReconcilesExactly(ch Channel) bool {
	e, ok := ch.(ExactReconciler)
	return ok && e.ReconcilesExactly()
}

// ErrCannotReconcile is Accepted's error when the provider has a lookup but
// this account or configuration cannot use it (SendGrid without
// channels.sendgrid.reconcile).
var ErrCannotReconcile = errors.New("channels: the provider cannot be asked what it accepted")

// Middleware decorates a Channel (metrics, tracing, logging): it returns a
// Channel that sends through the one it is given. Build one with Wrap, so
// the decorated channel keeps every capability of the one it wraps.
type Middleware func(Channel) Channel

// Chain returns ch decorated by mws, the first outermost: Chain(ch, a, b)
// is a(b(ch)), so a sees each Send first and its result last, as in
// Watermill's router and Gin.
func Chain(ch Channel, mws ...Middleware) Channel {
	for i := len(mws) - 1; i >= 0; i-- {
		ch = mws[i](ch)
	}
	return ch
}

// SendFunc is a Channel's Send.
type SendFunc func(ctx context.Context, msgs []Message) []Result

// Wrap returns a Channel that sends through send and is otherwise inner: the
// same Name, and each optional capability (Reconciler) exactly when inner
// has it, so no decorator hides a capability recovery needs or invents one
// the provider lacks. A capability added beside Reconciler is kept here,
// once, for every middleware.
func Wrap(inner Channel, send SendFunc) Channel {
	w := wrapped{inner: inner, send: send}
	if e, ok := inner.(ExactReconciler); ok {
		return exactReconciling{wrapped: w, ExactReconciler: e}
	}
	if r, ok := inner.(Reconciler); ok {
		return reconciling{wrapped: w, Reconciler: r}
	}
	return w
}

type wrapped struct {
	inner Channel
	send  SendFunc
}

func (w wrapped) Name() string { return w.inner.Name() }

func (w wrapped) Send(ctx context.Context, msgs []Message) []Result { return w.send(ctx, msgs) }

// Unwrap returns the channel w decorates.
func (w wrapped) Unwrap() Channel { return w.inner }

// reconciling is a wrapped Reconciler: Accepted asks the wrapped channel.
type reconciling struct {
	wrapped
	Reconciler
}

// exactReconciling is a wrapped ExactReconciler: Accepted and
// ReconcilesExactly ask the wrapped channel.
type exactReconciling struct {
	wrapped
	ExactReconciler
}
