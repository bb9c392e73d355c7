// Package webhooks owns the customer webhook endpoints of a collection: the
// registry (CRUD, signing secrets encrypted at rest, rotation), the
// HEALTH_CHECK validation that moves an endpoint from PENDING_VALIDATION to
// ACTIVE, and the sender that turns committed outbox envelopes into signed
// typed events for every matching ACTIVE endpoint, with retries and the
// attempt log. It owns the webhooks, webhook_messages and webhook_attempts
// tables; every mutation of an endpoint records its envelope through the
// outbox in the same transaction. The HTTP side (SSRF guard, signing) is
// internal/channels/webhookout.
package webhooks

import (
	"encoding/json"
	"slices"
	"strings"

	"github.com/notificationservice/notificationservice/internal/apperr"
	"github.com/notificationservice/notificationservice/internal/channels/webhookout"
	"github.com/notificationservice/notificationservice/internal/outbox"
)

// States an endpoint may be in.
const (
	// StatePendingValidation: registered (or its URL changed) and not yet
	// answered a HEALTH_CHECK with the echo; it receives nothing else.
	StatePendingValidation = "PENDING_VALIDATION"
	// StateActive: validated; it receives its events.
	StateActive = "ACTIVE"
	// StateDisabled: every delivery failed for webhooks.disableAfter; it
	// receives nothing until POST …/validate succeeds.
	StateDisabled = "DISABLED"
)

// Limits on fields.
const (
	MaxURLLen         = 2048
	MaxDescriptionLen = 1024
)

// Validation is the outcome of the latest HEALTH_CHECK.
type Validation struct {
	Time       int64  `json:"time"` // epoch ms
	OK         bool   `json:"ok"`
	StatusCode int    `json:"statusCode"` // 0 when no answer arrived
	Error      string `json:"error"`      // why it failed: status code, timeout, wrong echo; "" when ok
}

// Endpoint is one registered webhook endpoint, as the API shows it. The
// secrets never leave the package in it (json:"-"); the create and
// rotate answers carry the new secret beside it.
type Endpoint struct {
	ID             int64       `json:"id" gorm:"primaryKey"`
	CollectionID   int64       `json:"collectionId"`
	URL            string      `json:"url"`
	Description    string      `json:"description"`
	EventTypes     []string    `json:"eventTypes" gorm:"serializer:json"`
	State          string      `json:"state"`
	LastValidation *Validation `json:"lastValidation" gorm:"serializer:json"`
	CreatedTime    int64       `json:"createdTime"`
	UpdatedTime    int64       `json:"updatedTime"`

	Secret              string `json:"-"` // ciphertext
	PreviousSecret      string `json:"-"` // ciphertext, "" when none
	PreviousSecretUntil int64  `json:"-"` // epoch ms the previous secret stops signing
	FailingSince        int64  `json:"-"` // epoch ms of the first failure of the current run; 0 when none
	Version             int64  `json:"-"`
	CreatedBy           string `json:"-"`
	UpdatedBy           string `json:"-"`
}

// TableName is the endpoints table.
func (Endpoint) TableName() string { return "webhooks" }

// wants reports whether the endpoint subscribes to eventType (no types: all).
func (e Endpoint) wants(eventType string) bool {
	return len(e.EventTypes) == 0 || slices.Contains(e.EventTypes, eventType)
}

// WithSecret is the create and rotate answer: the endpoint and its new
// secret, shown this once.
type WithSecret struct {
	Webhook Endpoint `json:"webhook"`
	Secret  string   `json:"secret"`
}

// Input is the body that registers an endpoint.
type Input struct {
	URL         string   `json:"url"`
	Description string   `json:"description"`
	EventTypes  []string `json:"eventTypes"`
}

// Patch changes the fields it sets. A new URL sends the endpoint back to
// PENDING_VALIDATION and validates it.
type Patch struct {
	URL         *string   `json:"url"`
	Description *string   `json:"description"`
	EventTypes  *[]string `json:"eventTypes"`
}

// Empty reports whether the patch changes nothing.
func (p Patch) Empty() bool { return p.URL == nil && p.Description == nil && p.EventTypes == nil }

// Deleted is the body of a DELETE answer and the webhook/delete payload, in
// the catalogue's delete shape.
type Deleted = outbox.Deleted

// Delete payload code and message.
const (
	DeletedCode    = "NOHKDEL0000"
	DeletedMessage = "Webhook is deleted successfully"
)

// Attempt is one POST to an endpoint (GET …/attempts).
type Attempt struct {
	ID         int64  `json:"id" gorm:"primaryKey"`
	EndpointID int64  `json:"-"`
	EventID    string `json:"eventId"`
	EventType  string `json:"eventType"`
	Time       int64  `json:"time"` // epoch ms the POST started
	StatusCode int    `json:"statusCode"`
	LatencyMs  int64  `json:"latencyMs"`
	Error      string `json:"error"`
}

// TableName is the attempts table.
func (Attempt) TableName() string { return "webhook_attempts" }

// Page asks for at most Limit rows after id After.
type Page struct {
	Limit int
	After int64
}

func checkURL(f *apperr.Fields, raw string, allowPrivate bool) {
	if strings.TrimSpace(raw) == "" {
		f.Add("url", "is required")
		return
	}
	if len(raw) > MaxURLLen {
		f.MaxLen("url", raw, MaxURLLen)
		return
	}
	if err := webhookout.CheckURL(raw, allowPrivate); err != nil {
		f.Add("url", err.Error())
	}
}

func checkEventTypes(f *apperr.Fields, types []string) {
	for i, t := range types {
		if et, ok := outbox.LookupEventType(t); !ok || et.Name == outbox.TypeHealthCheck {
			f.Add("eventTypes["+itoa(i)+"]", "is not a subscribable event type (docs/webhooks.md lists them)")
		}
	}
}

func (in Input) validate(allowPrivate bool) error {
	var f apperr.Fields
	checkURL(&f, in.URL, allowPrivate)
	f.MaxLen("description", in.Description, MaxDescriptionLen)
	checkEventTypes(&f, in.EventTypes)
	return f.Err()
}

func (p Patch) validate(allowPrivate bool) error {
	if p.Empty() {
		return apperr.Invalid("the patch changes nothing",
			apperr.Detail{Field: "body", Reason: "must set at least one of url, description, eventTypes"})
	}
	var f apperr.Fields
	if p.URL != nil {
		checkURL(&f, *p.URL, allowPrivate)
	}
	if p.Description != nil {
		f.MaxLen("description", *p.Description, MaxDescriptionLen)
	}
	if p.EventTypes != nil {
		checkEventTypes(&f, *p.EventTypes)
	}
	return f.Err()
}

func itoa(i int) string {
	b, _ := json.Marshal(i)
	return string(b)
}
