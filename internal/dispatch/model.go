package dispatch

import (
	"database/sql/driver"
	"encoding/json"

	"github.com/notificationservice/notificationservice/internal/channels"
	"github.com/notificationservice/notificationservice/internal/outbox"
	"github.com/notificationservice/notificationservice/internal/store"
)

// Notification statuses. A notification is accepted when its name resolved
// (its deliveries carry the progress) and rejected when it could not be
// resolved: unknown collection, unknown or inactive event. Reason says why.
const (
	NotificationAccepted = "accepted"
	NotificationRejected = "rejected"
)

// Delivery statuses.
const (
	StatusPending   = "pending"   // due at NextAttemptAt
	StatusSending   = "sending"   // claimed by a worker; the provider call is in flight
	StatusSent      = "sent"      // the provider accepted it
	StatusDelivered = "delivered" // the provider reported delivery (webhook)
	StatusBounced   = "bounced"   // the provider reported a bounce or block (webhook); Reason has its words
	StatusFailed    = "failed"    // permanently failed, or out of attempts; Reason says why
	StatusSkipped   = "skipped"   // never sent: no address, condition not met; Reason says why
	// StatusScheduled waits for its due time (NextAttemptAt, shown as
	// dueTime) for a rule-engine reason: send_at, delay, quiet_hours,
	// digest (Reason*). The claim takes it when due, like pending.
	StatusScheduled = "scheduled"
	StatusCanceled  = "canceled" // a scheduled or pending delivery whose notification was canceled
	// StatusDigested is final: the delivery joined an open digest window
	// and is sent as an item of the window's delivery, which
	// DigestDeliveryID names.
	StatusDigested = "digested"
	// StatusUnknown is final: an attempt was in doubt (its worker stopped
	// mid-send), the provider could not be asked, and the action's
	// config.inDoubt is markUnknown, so it was not sent again.
	StatusUnknown = "unknown"
)

// Rule-engine reasons: the codes a delivery's Reason holds when a rule of
// the engine (docs/rules.md) skipped or held it, so clients can match on
// them; ReasonDetail carries the words. Other reasons (no address, a
// provider's error) stay prose.
const (
	ReasonConditionFalse = "condition_false" // skipped: a condition evaluated false; detail: the expression
	ReasonConditionError = "condition_error" // skipped: a condition failed at run time; detail: the error
	ReasonOptedOut       = "opted_out"       // skipped: a preference; detail: which one
	ReasonSuppressed     = "suppressed"      // skipped: the address is suppressed; detail: the suppression's reason
	ReasonThrottled      = "throttled"       // skipped: over the action's throttle
	ReasonSendAt         = "send_at"         // scheduled: the notification's sendAt
	ReasonDelay          = "delay"           // scheduled: the action's delay
	ReasonQuietHours     = "quiet_hours"     // scheduled: deferred to the end of quiet hours
	ReasonDigest         = "digest"          // scheduled: held in an open digest window
)

// EventType is the typed webhook event (docs/webhooks.md) a delivery
// entering status is: "" for the statuses no customer event follows (the
// waiting and in-flight ones, canceled and unknown).
func EventType(status string) string {
	switch status {
	case StatusSent:
		return outbox.TypeDeliverySent
	case StatusDelivered:
		return outbox.TypeDeliveryDelivered
	case StatusBounced:
		return outbox.TypeDeliveryBounced
	case StatusFailed:
		return outbox.TypeDeliveryFailed
	case StatusSkipped:
		return outbox.TypeDeliverySkipped
	}
	return ""
}

// DeliveryStatuses lists every delivery status, for validation.
var DeliveryStatuses = []string{StatusPending, StatusSending, StatusSent, StatusDelivered, StatusBounced, StatusFailed, StatusSkipped, StatusUnknown, StatusScheduled, StatusCanceled, StatusDigested}

// How recovery resolved an in-doubt attempt (Delivery.Reconciled).
const (
	// ReconciledAccepted: the provider said it had accepted the attempt;
	// the delivery is sent with the provider's message id.
	ReconciledAccepted = "provider_accepted"
	// ReconciledNotFound: the provider said it had not; the delivery is
	// sent again (or failed when out of attempts).
	ReconciledNotFound = "provider_not_found"
	// ReconciledResent: the provider could not be asked and the action's
	// policy is resend: sent again, at least once.
	ReconciledResent = "resent"
	// ReconciledUnknown: the provider could not be asked and the delivery
	// was not sent again (config.inDoubt markUnknown, or out of attempts):
	// whether it reached the provider is unknown.
	ReconciledUnknown = "unknown"
)

// NotificationRecord is one stored notification: one named entry of an
// accepted request. Deliveries is filled only by Store.Get.
type NotificationRecord struct {
	ID             int64  `json:"id" gorm:"primaryKey"`
	CollectionID   int64  `json:"collectionId"`
	Name           string `json:"name"`
	Source         string `json:"source"`
	IdempotencyKey string `json:"idempotencyKey,omitempty"`
	// Tenant, Team, Service and EntityID are the producer headers of the
	// send (dispatch.Producer); "" when not given.
	Tenant        string      `json:"tenant"`
	Team          string      `json:"team"`
	Service       string      `json:"service"`
	EntityID      string      `json:"entityId"`
	Correlation   StringMap   `json:"correlation"`
	Recipients    Recipients  `json:"recipients,omitempty"`
	Data          Data        `json:"data,omitempty"`
	Status        string      `json:"status"`
	Reason        string      `json:"reason"`
	EventID       int64       `json:"eventId"`
	DeliveryCount int         `json:"deliveryCount"`
	SkippedCount  int         `json:"skippedCount"`
	CreatedBy     string      `json:"createdBy,omitempty"`
	CreatedTime   int64       `json:"createdTime"`
	Deliveries    []*Delivery `json:"deliveries,omitempty" gorm:"-"`

	// IntakeScope, Ordinal and RequestHash are the dedupe record of a
	// keyed request (IdempotencyKey): each of its notifications carries
	// the key's scope (queue, or api:<collectionId>) and its position in
	// the request, and the first the SHA-256 of the canonical request. The
	// unique (intake_scope, idempotency_key, ordinal) is what makes a
	// redelivered message or a repeated Idempotency-Key create nothing new.
	IntakeScope string `json:"-"`
	Ordinal     int    `json:"-"`
	RequestHash string `json:"-"`

	// TraceParent is the W3C traceparent of the message or request that
	// created the notification; the worker's provider call joins its trace.
	TraceParent string `json:"-"`
}

// TableName is the notifications table.
func (NotificationRecord) TableName() string { return "notifications" }

// Delivery is one (notification × recipient × action).
type Delivery struct {
	ID             int64     `json:"id" gorm:"primaryKey"`
	NotificationID int64     `json:"notificationId"`
	CollectionID   int64     `json:"collectionId"`
	ActionID       int64     `json:"actionId"`
	RecipientIndex int       `json:"recipientIndex"`
	Channel        string    `json:"channel"`
	Address        string    `json:"address"`
	Recipient      Recipient `json:"-" gorm:"serializer:json"`
	Status         string    `json:"status"`
	Reason         string    `json:"reason"`
	// ReasonDetail says, for a rule-engine Reason (Reason* codes), which
	// rule decided and why: the expression, the preference, the
	// suppression. Empty for the other reasons, whose Reason is prose.
	ReasonDetail      string  `json:"reasonDetail,omitempty"`
	Attempts          int     `json:"attempts"`
	NextAttemptAt     int64   `json:"nextAttemptTime"`
	ClaimedAt         int64   `json:"-"`
	LeaseOwner        string  `json:"-"` // the instance holding it while sending (delivery/lease.go)
	LeaseUntil        int64   `json:"-"` // when that lease expires, epoch ms
	Provider          string  `json:"provider"`
	ProviderMessageID *string `json:"providerMessageId"`
	SentTime          int64   `json:"sentTime"`
	// InDoubt counts the attempts whose outcome recovery had to work out
	// (the worker stopped between the provider call and its record), and
	// Reconciled says how the last was resolved (Reconciled*; "" when none).
	InDoubt     int    `json:"inDoubt"`
	Reconciled  string `json:"reconciled"`
	CreatedTime int64  `json:"createdTime"`
	UpdatedTime int64  `json:"updatedTime"`
	// DigestDeliveryID is, for a delivery of a digest action, the delivery
	// of its digest window (its own id on that delivery), which sends it
	// as an item; 0 for other actions. Digest is, on the window's own
	// delivery, what the window holds; Store.Get fills it.
	DigestDeliveryID int64   `json:"digestDeliveryId,omitempty"`
	Digest           *Digest `json:"digest,omitempty" gorm:"-"`
	// SandboxMessages are what the sandbox channel recorded for this
	// delivery (one per send), shown by Store.Get: exactly what a provider
	// would have been sent. Empty for real providers.
	SandboxMessages []SandboxMessage `json:"sandboxMessages,omitempty" gorm:"-"`
}

// MarshalJSON adds dueTime to the delivery's fields: when a delivery that
// waits (scheduled or pending) is due, epoch ms. It is nextAttemptTime for
// those two statuses and absent for the others, whose nextAttemptTime is
// history.
func (d Delivery) MarshalJSON() ([]byte, error) {
	type fields Delivery // without this method
	var due int64
	if d.Status == StatusScheduled || d.Status == StatusPending {
		due = d.NextAttemptAt
	}
	return json.Marshal(struct {
		fields
		DueTime int64 `json:"dueTime,omitempty"`
	}{fields(d), due})
}

// Digest is what a digest window holds (docs/rules.md, Digest): Count
// deliveries, Items, in arrival order, its own first. ClosesAt is when the
// window's delivery is due while it waits (scheduled), 0 once sent.
type Digest struct {
	Count    int          `json:"count"`
	ClosesAt int64        `json:"closesAt,omitempty"`
	Items    []DigestItem `json:"items"`
}

// DigestItem is one delivery a digest window holds.
type DigestItem struct {
	DeliveryID     int64 `json:"deliveryId"`
	NotificationID int64 `json:"notificationId"`
}

// SandboxMessage is one message the sandbox channel accepted for a delivery:
// the rendered channels.Message as it recorded it.
type SandboxMessage = channels.SandboxMessage

// TableName is the deliveries table.
func (Delivery) TableName() string { return "deliveries" }

// StringMap is a string map stored as JSON text.
type StringMap map[string]string

// Value stores the map as JSON.
func (m StringMap) Value() (driver.Value, error) { return jsonValue(m, "{}") }

// Scan reads the map from JSON.
func (m *StringMap) Scan(src any) error { return jsonScan(src, m) }

// Recipients is a recipient list stored as JSON text.
type Recipients []Recipient

// Value stores the list as JSON.
func (r Recipients) Value() (driver.Value, error) { return jsonValue(r, "[]") }

// Scan reads the list from JSON.
func (r *Recipients) Scan(src any) error { return jsonScan(src, r) }

func jsonValue(v any, empty string) (driver.Value, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	if string(b) == "null" {
		return empty, nil
	}
	return string(b), nil
}

func jsonScan(src any, dst any) error { return store.ScanJSON(src, dst) }

// Suppression is an address a provider said must not be sent to again (a
// hard bounce, a spam report, a STOP), as the status webhooks and the
// delivery workers hand it to the suppression list (internal/suppressions,
// through interfaces they declare, wired in app). Source is the list's
// source code (sendgrid_bounce, sendgrid_spamreport, twilio_stop), Who the
// provider.
type Suppression struct {
	CollectionID int64
	Channel      string
	Address      string
	Reason       string
	Source       string
	Who          string
}
