package outbox

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"gorm.io/gorm"
)

// Detail types of the customer webhook endpoints (internal/webhooks).
const (
	WebhookCreate = DetailTypePrefix + "webhook/create"
	WebhookUpdate = DetailTypePrefix + "webhook/update"
	WebhookDelete = DetailTypePrefix + "webhook/delete"
)

// Categories of the typed events a customer webhook receives. Each owns a
// range of codes, as seed 000's event service numbers its types, so a
// receiver can route a whole category on the code alone.
const (
	CategorySystem        = "system"        // 0–99
	CategoryDelivery      = "delivery"      // 100–199: notification and delivery lifecycle
	CategoryConfiguration = "configuration" // 200–299: collections, events, actions, webhooks
)

// Typed event names (the "type" of a webhook event).
const (
	TypeHealthCheck = "HEALTH_CHECK"

	TypeNotificationAccepted = "NOTIFICATION_ACCEPTED"
	TypeDeliverySent         = "DELIVERY_SENT"
	TypeDeliveryDelivered    = "DELIVERY_DELIVERED"
	TypeDeliveryOpened       = "DELIVERY_OPENED"
	TypeDeliveryClicked      = "DELIVERY_CLICKED"
	TypeDeliveryBounced      = "DELIVERY_BOUNCED"
	TypeDeliveryFailed       = "DELIVERY_FAILED"
	TypeDeliverySkipped      = "DELIVERY_SKIPPED"
	TypeNotificationCanceled = "NOTIFICATION_CANCELED"

	TypeCollectionCreated = "COLLECTION_CREATED"
	TypeCollectionUpdated = "COLLECTION_UPDATED"
	TypeCollectionDeleted = "COLLECTION_DELETED"
	TypeEventCreated      = "EVENT_CREATED"
	TypeEventUpdated      = "EVENT_UPDATED"
	TypeEventDeleted      = "EVENT_DELETED"
	TypeActionCreated     = "ACTION_CREATED"
	TypeActionUpdated     = "ACTION_UPDATED"
	TypeActionDeleted     = "ACTION_DELETED"
	TypeWebhookCreated    = "WEBHOOK_CREATED"
	TypeWebhookUpdated    = "WEBHOOK_UPDATED"
	TypeWebhookDeleted    = "WEBHOOK_DELETED"
)

// EventType is one entry of the typed-event catalogue.
type EventType struct {
	Name     string `json:"name"`
	Code     int    `json:"code"`
	Category string `json:"category"`
	// DetailType is the envelope the event is made from; "" for an event no
	// envelope carries (HEALTH_CHECK, and the delivery status changes that
	// are catalogued but not yet recorded as envelopes: docs/webhooks.md).
	DetailType string `json:"-"`
}

// eventTypes is the catalogue, in code order. Codes are part of the
// contract: never renumber, only append within a range.
var eventTypes = []EventType{
	{TypeHealthCheck, 1, CategorySystem, ""},

	{TypeNotificationAccepted, 100, CategoryDelivery, NotificationsSend},
	{TypeDeliverySent, 101, CategoryDelivery, ""},
	{TypeDeliveryDelivered, 102, CategoryDelivery, ""},
	{TypeDeliveryOpened, 103, CategoryDelivery, ""},
	{TypeDeliveryClicked, 104, CategoryDelivery, ""},
	{TypeDeliveryBounced, 105, CategoryDelivery, ""},
	{TypeDeliveryFailed, 106, CategoryDelivery, ""},
	{TypeDeliverySkipped, 107, CategoryDelivery, ""},
	{TypeNotificationCanceled, 108, CategoryDelivery, NotificationsCancel},

	{TypeCollectionCreated, 200, CategoryConfiguration, CollectionCreate},
	{TypeCollectionUpdated, 201, CategoryConfiguration, CollectionUpdate},
	{TypeCollectionDeleted, 202, CategoryConfiguration, CollectionDelete},
	{TypeEventCreated, 203, CategoryConfiguration, EventCreate},
	{TypeEventUpdated, 204, CategoryConfiguration, EventUpdate},
	{TypeEventDeleted, 205, CategoryConfiguration, EventDelete},
	{TypeActionCreated, 206, CategoryConfiguration, ActionCreate},
	{TypeActionUpdated, 207, CategoryConfiguration, ActionUpdate},
	{TypeActionDeleted, 208, CategoryConfiguration, ActionDelete},
	{TypeWebhookCreated, 209, CategoryConfiguration, WebhookCreate},
	{TypeWebhookUpdated, 210, CategoryConfiguration, WebhookUpdate},
	{TypeWebhookDeleted, 211, CategoryConfiguration, WebhookDelete},
}

// EventTypes returns the typed-event catalogue, in code order.
func EventTypes() []EventType { return append([]EventType(nil), eventTypes...) }

// LookupEventType returns the catalogue entry named name.
func LookupEventType(name string) (EventType, bool) {
	for _, t := range eventTypes {
		if t.Name == name {
			return t, true
		}
	}
	return EventType{}, false
}

// eventTypeOf returns the typed event an envelope of detailType becomes.
func eventTypeOf(detailType string) (EventType, bool) {
	for _, t := range eventTypes {
		if t.DetailType != "" && t.DetailType == detailType {
			return t, true
		}
	}
	return EventType{}, false
}

// EventIDPrefix starts every typed event id ("evt_…", as in seed 000).
const EventIDPrefix = "evt_"

// TypedEvent is one event as a customer webhook receives it: the seed's
// id, type, timestamp and companyId (here the collection id), plus the
// payload under one key named after what it is about ("notification",
// "collection", "healthCheck", …).
type TypedEvent struct {
	ID         string
	Type       string
	Timestamp  time.Time
	CompanyID  string
	PayloadKey string
	Payload    json.RawMessage
	// ClaimCheck is the envelope's, when it was too large to carry the entity.
	ClaimCheck *ClaimCheck
}

// MarshalJSON writes the seed's field order: id, type, timestamp,
// companyId, then the payload (and claimCheck when set).
func (e TypedEvent) MarshalJSON() ([]byte, error) {
	var b strings.Builder
	field := func(k string, v any) error {
		raw, err := json.Marshal(v)
		if err != nil {
			return err
		}
		if b.Len() > 1 {
			b.WriteByte(',')
		}
		kb, _ := json.Marshal(k)
		b.Write(kb)
		b.WriteByte(':')
		b.Write(raw)
		return nil
	}
	b.WriteByte('{')
	for _, f := range []struct {
		k string
		v any
	}{
		{"id", e.ID}, {"type", e.Type}, {"timestamp", e.Timestamp.UTC().Format(time.RFC3339Nano)},
		{"companyId", e.CompanyID}, {e.PayloadKey, e.Payload},
	} {
		if err := field(f.k, f.v); err != nil {
			return nil, err
		}
	}
	if e.ClaimCheck != nil {
		if err := field("claimCheck", e.ClaimCheck); err != nil {
			return nil, err
		}
	}
	b.WriteByte('}')
	return []byte(b.String()), nil
}

// TypedEventFromRow maps an outbox row to the typed event webhooks receive.
// ok is false for an envelope no typed event is catalogued for. The event id
// is derived from the envelope id, so it is the same on every fan-out of the
// row and on every retry (the Standard Webhooks webhook-id).
func TypedEventFromRow(r Row) (TypedEvent, bool, error) {
	t, ok := eventTypeOf(r.DetailType)
	if !ok {
		return TypedEvent{}, false, nil
	}
	var d Detail
	if err := json.Unmarshal([]byte(r.Detail), &d); err != nil {
		return TypedEvent{}, false, fmt.Errorf("outbox: typed event from envelope %s: %w", r.EnvelopeID, err)
	}
	entity := strings.SplitN(strings.TrimPrefix(r.DetailType, DetailTypePrefix), "/", 2)[0]
	if entity == "notifications" {
		entity = "notification"
	}
	ev := TypedEvent{
		ID: EventIDPrefix + r.EnvelopeID, Type: t.Name, Timestamp: time.UnixMilli(r.CreatedAt),
		CompanyID: strconv.FormatInt(r.CollectionID, 10), PayloadKey: entity, ClaimCheck: d.ClaimCheck,
	}
	// Create, update and send payloads are {"<entity>": {...}}: the event
	// carries that object. A delete's payload is the catalogue's
	// {responseCode, …}: the event says which entity went, as seed 000's
	// PET_DELETED does ({"id", "deleted": true}).
	var wrapped map[string]json.RawMessage
	if err := json.Unmarshal(d.Payload, &wrapped); err == nil {
		if inner, ok := wrapped[entity]; ok {
			ev.Payload = inner
			return ev, true, nil
		}
	}
	deleted, err := json.Marshal(struct {
		ID      string `json:"id"`
		Deleted bool   `json:"deleted"`
	}{d.ID, true})
	if err != nil {
		return TypedEvent{}, false, err
	}
	ev.Payload = deleted
	return ev, true, nil
}

// ClaimFanout returns up to limit outbox rows the webhook fan-out has not
// handled yet, in id order, locked in tx (SKIP LOCKED on PostgreSQL, so
// instances share the work). It is the outbox's second reader beside the
// relay: a row is handed out until MarkFannedOut commits in the same tx,
// so a crash between the two hands it out again, never loses it.
func ClaimFanout(ctx context.Context, tx *gorm.DB, limit int) ([]Row, error) {
	sql := `SELECT id, envelope_id, detail_type, collection_id, detail, created_at
FROM outbox WHERE fanned_out_at IS NULL ORDER BY id LIMIT ?`
	if tx.Dialector.Name() == "postgres" {
		sql += ` FOR UPDATE SKIP LOCKED`
	}
	var rows []Row
	if err := tx.WithContext(ctx).Raw(sql, limit).Scan(&rows).Error; err != nil {
		return nil, fmt.Errorf("outbox: claim for fan-out: %w", err)
	}
	return rows, nil
}

// MarkFannedOut records that the fan-out handled rows ids, in tx.
func MarkFannedOut(ctx context.Context, tx *gorm.DB, ids []int64, now int64) error {
	if len(ids) == 0 {
		return nil
	}
	err := tx.WithContext(ctx).Exec(`UPDATE outbox SET fanned_out_at = ? WHERE id IN ?`, now, ids).Error
	if err != nil {
		return fmt.Errorf("outbox: mark fanned out: %w", err)
	}
	return nil
}
