// Package outbox records an EventBridge envelope for every mutation in the
// mutation's own transaction, and relays pending envelopes to a sink.
package outbox

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	"github.com/google/uuid"
	"go.opentelemetry.io/otel/trace"
	"gorm.io/gorm"

	"github.com/notificationservice/notificationservice/internal/auth"
	"github.com/notificationservice/notificationservice/internal/jsonenc"
	"github.com/notificationservice/notificationservice/internal/store"
)

// DetailTypePrefix starts every detail-type; the rest is <entity>/<op>.
const DetailTypePrefix = "notificationservice/"

// Detail types, as the event catalogue names them.
const (
	ActionCreate      = DetailTypePrefix + "action/create"
	ActionUpdate      = DetailTypePrefix + "action/update"
	ActionDelete      = DetailTypePrefix + "action/delete"
	EventCreate       = DetailTypePrefix + "event/create"
	EventUpdate       = DetailTypePrefix + "event/update"
	EventDelete       = DetailTypePrefix + "event/delete"
	CollectionCreate  = DetailTypePrefix + "collection/create"
	CollectionUpdate  = DetailTypePrefix + "collection/update"
	CollectionDelete  = DetailTypePrefix + "collection/delete"
	NotificationsSend = DetailTypePrefix + "notifications/send"
	// NotificationsCancel: a notification's unsent deliveries were
	// canceled (POST …/notifications/{id}/cancel); detail.id is its id.
	NotificationsCancel = DetailTypePrefix + "notifications/cancel"
)

// Change is one mutation to publish.
type Change struct {
	DetailType   string
	EntityID     string // detail.id: the entity id, or the notification name for a send
	CollectionID int64
	Payload      any // {"action": {...}}, or a delete payload
	Actor        auth.Principal
	// Href is the API path a consumer reads the entity from when the
	// envelope is too large to carry it (see ClaimCheck). Empty: derived
	// from DetailType, CollectionID and EntityID, which serves collections,
	// events and actions; a send sets its notification's path.
	Href string
	// Producer is set on a send: who sent the notification and what it is
	// about, carried in the detail beside the catalogue's fields.
	Producer *Producer
}

// Producer is the producer headers of a send (seed 004) as a
// notifications/send envelope's detail carries them: tenant, team,
// service, entityId ("" when not given) and the notification's
// correlation ids.
type Producer struct {
	Tenant      string            `json:"tenant"`
	Team        string            `json:"team"`
	Service     string            `json:"service"`
	EntityID    string            `json:"entityId"`
	Correlation map[string]string `json:"correlation"`
}

// Detail is the envelope's detail object, field for field as the event
// catalogue shows it, plus EnvelopeID: a stable unique id per envelope so a
// consumer can drop the duplicates that at-least-once delivery allows.
type Detail struct {
	ID                string          `json:"id"`
	Timestamp         int64           `json:"timestamp"`
	Payload           json.RawMessage `json:"payload"`
	CollectionID      string          `json:"collectionId"`
	EventType         string          `json:"eventType"`
	UserID            string          `json:"userId"`
	ActOnBehalfOfUser int64           `json:"actOnBehalfOfUser"`
	Roles             []string        `json:"roles"`
	Channel           string          `json:"channel"`
	EnvelopeID        string          `json:"envelopeId"`
	// TraceParent is the W3C traceparent of the request that made the
	// change, so a consumer can join its trace; left out when there was
	// none (docs/observability.md).
	TraceParent string `json:"traceparent,omitempty"`
	// TraceID and SpanContext say the same as TraceParent in the fields of
	// the AsyncAPI event metadata (seed 002), for consumers that read trace
	// ids rather than parse traceparent; set exactly when TraceParent is.
	TraceID     string       `json:"traceId,omitempty"`
	SpanContext *SpanContext `json:"spanContext,omitempty"`
	// ClaimCheck is set, and Payload cut down to the entity's identifying
	// fields, when the whole detail would not fit EventBridge's 256 KB entry
	// limit: the consumer fetches the entity from ClaimCheck.Href.
	ClaimCheck *ClaimCheck `json:"claimCheck,omitempty"`
	// Producer's fields are inlined in a send's detail and absent from
	// every other envelope (a nil embedded pointer writes nothing).
	*Producer
}

// SpanContext is the W3C trace context of the request or message that made
// the change: the span the envelope's consumer continues.
type SpanContext struct {
	TraceID    string `json:"traceId"`              // 32 lowercase hex digits
	SpanID     string `json:"spanId"`               // 16 lowercase hex digits
	TraceFlags string `json:"traceFlags"`           // 2 hex digits; 01 = sampled
	TraceState string `json:"traceState,omitempty"` // the W3C tracestate, when the caller sent one
}

// TraceParent is sc as a W3C traceparent header value.
func (sc SpanContext) TraceParent() string {
	return "00-" + sc.TraceID + "-" + sc.SpanID + "-" + sc.TraceFlags
}

// spanContextOf is the span context in ctx (a server or consumer span, or the
// remote parent a request or message carried), or nil when ctx has none.
func spanContextOf(ctx context.Context) *SpanContext {
	sc := trace.SpanContextFromContext(ctx)
	if !sc.IsValid() {
		return nil
	}
	return &SpanContext{
		TraceID:    sc.TraceID().String(),
		SpanID:     sc.SpanID().String(),
		TraceFlags: sc.TraceFlags().String(),
		TraceState: sc.TraceState().String(),
	}
}

// ClaimCheck points at the entity an envelope was too large to carry.
type ClaimCheck struct {
	Href   string `json:"href"`   // API path of the entity (GET it with a token that may read the collection)
	Reason string `json:"reason"` // ClaimCheckTooLarge
	Size   int    `json:"size"`   // bytes of the detail it replaces
}

// ClaimCheckTooLarge is ClaimCheck.Reason for an envelope over the limit.
const ClaimCheckTooLarge = "too_large"

// Deleted is the catalogue's delete payload (seed 001): the body of a
// DELETE answer and the payload of the matching delete envelope, the same
// shape for every entity, so every domain returns this one type.
type Deleted struct {
	ResponseCode    string `json:"responseCode"`
	ResponseMessage string `json:"responseMessage"`
	TimeStamp       string `json:"timeStamp"`
}

// NewDeleted is the delete payload with code and message, stamped at now
// (epoch milliseconds, as a string, as the catalogue shows it).
func NewDeleted(code, message string, now time.Time) Deleted {
	return Deleted{ResponseCode: code, ResponseMessage: message, TimeStamp: strconv.FormatInt(now.UnixMilli(), 10)}
}

// Row is one outbox table row.
type Row struct {
	ID            int64  `gorm:"primaryKey"`
	EnvelopeID    string `gorm:"column:envelope_id"`
	DetailType    string `gorm:"column:detail_type"`
	CollectionID  int64  `gorm:"column:collection_id"`
	Detail        string `gorm:"column:detail"`
	CreatedAt     int64  `gorm:"column:created_at;autoCreateTime:false"`
	PublishedAt   *int64 `gorm:"column:published_at"`
	ParkedAt      *int64 `gorm:"column:parked_at"`
	Attempts      int    `gorm:"column:attempts"`
	NextAttemptAt int64  `gorm:"column:next_attempt_at"`
	LastError     string `gorm:"column:last_error"`
}

// TableName is the outbox table.
func (Row) TableName() string { return "outbox" }

// Writer builds envelopes and inserts them into the outbox.
type Writer struct {
	now    func() time.Time
	notify func()
}

// NewWriter returns a Writer. notify, when not nil, is called after an
// envelope is written so a relay can wake; it must not block.
func NewWriter(now func() time.Time, notify func()) *Writer {
	if now == nil {
		now = time.Now
	}
	return &Writer{now: now, notify: notify}
}

// BuildDetail builds the envelope detail for c.
func BuildDetail(c Change, envelopeID string, now time.Time) (Detail, error) {
	payload, err := json.Marshal(c.Payload)
	if err != nil {
		return Detail{}, fmt.Errorf("outbox: marshal payload: %w", err)
	}
	roles := c.Actor.Roles
	if roles == nil {
		roles = []string{}
	}
	if p := c.Producer; p != nil && p.Correlation == nil {
		c.Producer = &Producer{Tenant: p.Tenant, Team: p.Team, Service: p.Service, EntityID: p.EntityID, Correlation: map[string]string{}}
	}
	return Detail{
		ID:                c.EntityID,
		Timestamp:         now.UnixMilli(),
		Payload:           payload,
		CollectionID:      strconv.FormatInt(c.CollectionID, 10),
		EventType:         c.DetailType,
		UserID:            c.Actor.UserID,
		ActOnBehalfOfUser: c.Actor.OnBehalfOf,
		Roles:             roles,
		Channel:           c.Actor.Channel,
		EnvelopeID:        envelopeID,
		Producer:          c.Producer,
	}, nil
}

// Record inserts the envelope for c using tx, which must be the transaction
// that makes the change: the change and its envelope commit or roll back together.
func (w *Writer) Record(ctx context.Context, tx *gorm.DB, c Change) error {
	now := w.now()
	id := uuid.NewString()
	body, err := EncodeDetail(c, id, now, spanContextOf(ctx))
	if err != nil {
		return err
	}
	row := Row{
		EnvelopeID:   id,
		DetailType:   c.DetailType,
		CollectionID: c.CollectionID,
		Detail:       string(body),
		CreatedAt:    now.UnixMilli(),
	}
	if err := tx.WithContext(ctx).Create(&row).Error; err != nil {
		return fmt.Errorf("outbox: insert: %w", err)
	}
	return nil
}

// outboxColumns are the columns RecordAll writes; the others take their
// defaults, the values Record's gorm Create writes (NULL, 0, empty text).
var outboxColumns = store.Columns("envelope_id text", "detail_type text", "collection_id bigint", "detail json", "created_at bigint")

// RecordAll inserts the envelopes for cs using tx, as Record does, with one
// statement whose text is the same whatever len(cs) (store.JSONRows): a
// batch of sends records its envelopes in one round trip, not one each.
func (w *Writer) RecordAll(ctx context.Context, tx *gorm.DB, cs []Change) error {
	if len(cs) == 0 {
		return nil
	}
	now := w.now()
	sc := spanContextOf(ctx)
	details := make([]string, len(cs))
	ids := make([]string, len(cs))
	for i, c := range cs {
		ids[i] = uuid.NewString()
		body, err := EncodeDetail(c, ids[i], now, sc)
		if err != nil {
			return err
		}
		details[i] = body
	}
	pg := store.IsPostgres(tx)
	sel, from := store.BatchRows(pg, outboxColumns)
	q := "INSERT INTO outbox (" + store.ColumnList(outboxColumns) + ") SELECT " + sel + " FROM " + from
	if pg {
		// One array per column (store.UnnestRows): PostgreSQL stores each
		// detail as the text it is, where the JSON document had it parse
		// every detail to find where it ended.
		for lo := 0; lo < len(cs); lo += 1000 {
			hi := min(lo+1000, len(cs))
			types, collections, created := make(store.Texts, hi-lo), make(store.Int64s, hi-lo), make(store.Int64s, hi-lo)
			for i := lo; i < hi; i++ {
				types[i-lo], collections[i-lo], created[i-lo] = cs[i].DetailType, cs[i].CollectionID, now.UnixMilli()
			}
			args := []any{store.Texts(ids[lo:hi]), types, collections, store.Texts(details[lo:hi]), created}
			if err := tx.WithContext(ctx).Exec(q, args...).Error; err != nil {
				return fmt.Errorf("outbox: insert: %w", err)
			}
		}
		return nil
	}
	// The rows document is written by hand: the detail goes in as it is (a
	// json column: PostgreSQL's json and SQLite's JSON keep compact text
	// byte for byte), not escaped into a string, nor re-scanned as
	// encoding/json does a json.RawMessage. The envelopes of one
	// transaction carry no order the relay must keep among themselves
	// (they are concurrent changes); both databases read the array in
	// order anyway.
	var doc []byte
	for lo := 0; lo < len(cs); lo += 1000 {
		hi := min(lo+1000, len(cs))
		doc = append(doc[:0], '[')
		for i := lo; i < hi; i++ {
			if i > lo {
				doc = append(doc, ',')
			}
			doc = append(doc, `{"envelope_id":`...)
			doc = jsonenc.AppendString(doc, ids[i])
			doc = append(doc, `,"detail_type":`...)
			doc = jsonenc.AppendString(doc, cs[i].DetailType)
			doc = append(doc, `,"collection_id":`...)
			doc = strconv.AppendInt(doc, cs[i].CollectionID, 10)
			doc = append(doc, `,"created_at":`...)
			doc = strconv.AppendInt(doc, now.UnixMilli(), 10)
			doc = append(doc, `,"detail":`...)
			doc = append(doc, details[i]...)
			doc = append(doc, '}')
		}
		doc = append(doc, ']')
		if err := tx.WithContext(ctx).Exec(q, string(doc)).Error; err != nil {
			return fmt.Errorf("outbox: insert: %w", err)
		}
	}
	return nil
}

// Committed tells a waiting relay that new envelopes may be pending. Call it
// after the transaction that recorded them commits.
func (w *Writer) Committed() {
	if w.notify != nil {
		w.notify()
	}
}
