package outbox

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"gorm.io/gorm"

	"github.com/notificationservice/notificationservice/internal/store"
)

// Detail types of the customer webhook endpoints (internal/webhooks).
const (
	WebhookCreate = DetailTypePrefix + "webhook/create"
	WebhookUpdate = DetailTypePrefix + "webhook/update"
	WebhookDelete = DetailTypePrefix + "webhook/delete"
)

// Detail types of a collection's suppression list (internal/suppressions):
// both carry {"suppression": …}, the delete the entry it lifted.
const (
	SuppressionCreate = DetailTypePrefix + "suppression/create"
	SuppressionDelete = DetailTypePrefix + "suppression/delete"
)

// PreferencesUpdate is the detail type of a change to a recipient's
// preferences (internal/preferences): a PUT, a PATCH or a one-click
// unsubscribe. detail.id is the recipient key.
const PreferencesUpdate = DetailTypePrefix + "preferences/update"

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
	// TypeNotificationWebhook is a notification sent to an endpoint by an
	// action of configName SendWebhookConfig (the webhook channel): it is
	// the notification itself, not news about one.
	TypeNotificationWebhook = "NOTIFICATION_WEBHOOK"
	// TypeNotificationCanceled: a notification's waiting deliveries were
	// canceled (POST .../notifications/{id}/cancel).
	TypeNotificationCanceled = "NOTIFICATION_CANCELED"

	TypeCollectionCreated  = "COLLECTION_CREATED"
	TypeCollectionUpdated  = "COLLECTION_UPDATED"
	TypeCollectionDeleted  = "COLLECTION_DELETED"
	TypeEventCreated       = "EVENT_CREATED"
	TypeEventUpdated       = "EVENT_UPDATED"
	TypeEventDeleted       = "EVENT_DELETED"
	TypeActionCreated      = "ACTION_CREATED"
	TypeActionUpdated      = "ACTION_UPDATED"
	TypeActionDeleted      = "ACTION_DELETED"
	TypeWebhookCreated     = "WEBHOOK_CREATED"
	TypeWebhookUpdated     = "WEBHOOK_UPDATED"
	TypeWebhookDeleted     = "WEBHOOK_DELETED"
	TypeSuppressionCreated = "SUPPRESSION_CREATED"
	TypeSuppressionDeleted = "SUPPRESSION_DELETED"
	TypePreferencesUpdated = "PREFERENCES_UPDATED"
)

// EventType is one entry of the typed-event catalogue.
type EventType struct {
	Name     string `json:"name"`
	Code     int    `json:"code"`
	Category string `json:"category"`
	// DetailType is the envelope the event is made from; "" for an event no
	// envelope carries: HEALTH_CHECK, NOTIFICATION_WEBHOOK (which the webhook
	// channel sends itself), and the delivery lifecycle, which the workers
	// and the status reports write straight into the webhooks' queue
	// (DeliveryEvent; why not envelopes: docs/webhooks.md).
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
	{TypeNotificationWebhook, 108, CategoryDelivery, ""},
	{TypeNotificationCanceled, 109, CategoryDelivery, NotificationsCancel},

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
	{TypeSuppressionCreated, 212, CategoryConfiguration, SuppressionCreate},
	{TypeSuppressionDeleted, 213, CategoryConfiguration, SuppressionDelete},
	{TypePreferencesUpdated, 214, CategoryConfiguration, PreferencesUpdate},
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
			if d.Producer != nil {
				if ev.Payload, err = withProducer(inner, d.Producer); err != nil {
					return TypedEvent{}, false, fmt.Errorf("outbox: typed event from envelope %s: %w", r.EnvelopeID, err)
				}
			}
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

// withProducer appends the producer fields of a send's detail to its
// notification object, after the fields it has, so the webhook event for
// the notification says who sent it and what it is about as the envelope
// does.
func withProducer(obj json.RawMessage, p *Producer) (json.RawMessage, error) {
	fields, err := json.Marshal(p)
	if err != nil {
		return nil, err
	}
	obj = bytes.TrimSpace(obj)
	if len(obj) < 2 || obj[0] != '{' || obj[len(obj)-1] != '}' {
		return nil, fmt.Errorf("notification payload is not an object")
	}
	body := bytes.TrimSpace(obj[1 : len(obj)-1])
	out := make([]byte, 0, len(obj)+len(fields))
	out = append(out, '{')
	out = append(out, body...)
	if len(body) > 0 {
		out = append(out, ',')
	}
	out = append(out, fields[1:]...) // fields without its opening brace
	return out, nil
}

// DeliveryChange is the payload ("delivery") of a delivery lifecycle event
// (DELIVERY_*): the delivery as it stands after the change.
type DeliveryChange struct {
	ID                int64  `json:"id"`
	NotificationID    int64  `json:"notificationId"`
	CollectionID      int64  `json:"collectionId"`
	ActionID          int64  `json:"actionId"`
	Channel           string `json:"channel"`
	Address           string `json:"address"`
	Status            string `json:"status"`
	Reason            string `json:"reason"`
	ReasonDetail      string `json:"reasonDetail"`
	Provider          string `json:"provider"`
	ProviderMessageID string `json:"providerMessageId"`
	Time              int64  `json:"time"` // epoch ms of the change (the event's timestamp)
}

// DeliveryEvent is the typed event of delivery c becoming eventType at
// at. Its id names the delivery and the type, so the same change recorded
// twice (a provider repeating a report) is one event, and each receiver's
// webhook-id dedupes it; occurrence, for the events a delivery may have
// several of (opens, clicks), tells them apart ("" for the others).
func DeliveryEvent(eventType string, c DeliveryChange, at time.Time, occurrence string) (TypedEvent, error) {
	c.Time = at.UnixMilli()
	payload, err := json.Marshal(c)
	if err != nil {
		return TypedEvent{}, err
	}
	id := EventIDPrefix + "dlv_" + strconv.FormatInt(c.ID, 10) + "_" + strings.ToLower(strings.TrimPrefix(eventType, "DELIVERY_"))
	if occurrence != "" {
		id += "_" + occurrence
	}
	return TypedEvent{ID: id, Type: eventType, Timestamp: at, CompanyID: strconv.FormatInt(c.CollectionID, 10),
		PayloadKey: "delivery", Payload: payload}, nil
}

// AcceptedNotification is the payload ("notification") of the
// NOTIFICATION_ACCEPTED event of a queue send: the name and recipients the
// notifications/send envelope of an API send carries, plus the
// notification's id and source, which its delivery events refer to.
type AcceptedNotification struct {
	ID         int64  `json:"id"`
	Name       string `json:"name"`
	Source     string `json:"source"`
	Recipients any    `json:"recipients"`
}

// NotificationAcceptedEvent is the NOTIFICATION_ACCEPTED event of a
// notification accepted without an envelope (a queue send). Its id names
// the notification, so it is stable.
func NotificationAcceptedEvent(collectionID int64, n AcceptedNotification, at time.Time) (TypedEvent, error) {
	payload, err := json.Marshal(n)
	if err != nil {
		return TypedEvent{}, err
	}
	return TypedEvent{ID: EventIDPrefix + "ntf_" + strconv.FormatInt(n.ID, 10) + "_accepted", Type: TypeNotificationAccepted,
		Timestamp: at, CompanyID: strconv.FormatInt(collectionID, 10), PayloadKey: "notification", Payload: payload}, nil
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
	var err error
	if tx.Dialector.Name() == "postgres" {
		// One statement text whatever the count: the ids are one array
		// parameter (store.Int64s), where gorm expands a slice into a list.
		err = tx.WithContext(ctx).Exec(`UPDATE outbox SET fanned_out_at = ? WHERE id = ANY(?::bigint[])`, now, store.Int64s(ids)).Error
	} else {
		err = tx.WithContext(ctx).Exec(`UPDATE outbox SET fanned_out_at = ? WHERE id IN ?`, now, ids).Error
	}
	if err != nil {
		return fmt.Errorf("outbox: mark fanned out: %w", err)
	}
	return nil
}
