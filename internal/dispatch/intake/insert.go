package intake

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"

	"github.com/notificationservice/notificationservice/internal/dispatch"

	"github.com/notificationservice/notificationservice/internal/store"
	"gorm.io/gorm"
)

// insertJSON runs q, whose one parameter is a JSON array of rows (see
// store.JSONRows), on rows in chunks of 1,000, and calls scan on each row it
// returns.
func insertJSON[T any](ctx context.Context, tx *gorm.DB, q string, rows []T, scan func(*sql.Rows) error) error {
	for chunk := range slices.Chunk(rows, 1000) {
		doc, err := json.Marshal(chunk)
		if err != nil {
			return err
		}
		if err := queryDoc(ctx, tx, q, string(doc), scan); err != nil {
			return err
		}
	}
	return nil
}

// queryDoc runs q with the rows document doc and calls scan on each row it
// returns.
func queryDoc(ctx context.Context, tx *gorm.DB, q, doc string, scan func(*sql.Rows) error) error {
	r, err := tx.WithContext(ctx).Raw(q, doc).Rows()
	if err != nil {
		return err
	}
	for r.Next() {
		if err := scan(r); err != nil {
			r.Close()
			return err
		}
	}
	// Close does not report an error that ended the iteration; Err does.
	return errors.Join(r.Err(), r.Close())
}

var notificationColumns = store.Columns(
	"collection_id bigint", "name text", "source text", "intake_scope text", "idempotency_key text",
	"ordinal integer", "request_hash text", "correlation text", "recipients json", "status text", "reason text",
	"event_id bigint", "delivery_count integer", "skipped_count integer", "created_by text",
	"created_time bigint", "trace_parent text", "data text", "tenant text", "team text", "service text", "entity_id text",
)

type notificationRow struct {
	CollectionID   int64           `json:"collection_id"`
	Name           string          `json:"name"`
	Source         string          `json:"source"`
	IntakeScope    string          `json:"intake_scope"`
	IdempotencyKey string          `json:"idempotency_key"`
	Ordinal        int             `json:"ordinal"`
	RequestHash    string          `json:"request_hash"`
	Correlation    any             `json:"correlation"`
	Recipients     json.RawMessage `json:"recipients"` // planned.recipients, as it is
	Status         string          `json:"status"`
	Reason         string          `json:"reason"`
	EventID        int64           `json:"event_id"`
	DeliveryCount  int             `json:"delivery_count"`
	SkippedCount   int             `json:"skipped_count"`
	CreatedBy      string          `json:"created_by"`
	CreatedTime    int64           `json:"created_time"`
	TraceParent    string          `json:"trace_parent"`
	Data           any             `json:"data"`
	Tenant         string          `json:"tenant"`
	Team           string          `json:"team"`
	Service        string          `json:"service"`
	EntityID       string          `json:"entity_id"`
}

// insertNotes inserts the notifications of ps with one statement per chunk,
// the INSERT … SELECT followed by suffix, and calls scan on each row the
// statement returns.
func (in *Intake) insertNotes(ctx context.Context, tx *gorm.DB, ps []*planned, suffix string, scan func(*sql.Rows) error) error {
	rows := make([]notificationRow, len(ps))
	for i, p := range ps {
		n := p.note
		corr, err := n.Correlation.Value()
		if err != nil {
			return err
		}
		rcpts := json.RawMessage(p.recipients)
		data, err := n.Data.Value()
		if err != nil {
			return err
		}
		rows[i] = notificationRow{n.CollectionID, n.Name, n.Source, n.IntakeScope, n.IdempotencyKey, n.Ordinal, n.RequestHash,
			corr, rcpts, n.Status, n.Reason, n.EventID, n.DeliveryCount, n.SkippedCount, n.CreatedBy, n.CreatedTime, n.TraceParent, data,
			n.Tenant, n.Team, n.Service, n.EntityID}
	}
	sel, from := store.JSONRows(in.pg, notificationColumns)
	q := "INSERT INTO notifications (" + store.ColumnList(notificationColumns) + ") SELECT " + sel + " FROM " + from + suffix
	return insertJSON(ctx, tx, q, rows, scan)
}

// insertNotifications inserts the notifications of ps, none of which can
// conflict, and sets their ids.
func (in *Intake) insertNotifications(ctx context.Context, tx *gorm.DB, ps []*planned) error {
	if len(ps) == 0 {
		return nil
	}
	notes := make([]*dispatch.NotificationRecord, len(ps))
	for i, p := range ps {
		notes[i] = p.note
	}
	at := 0
	if err := in.insertNotes(ctx, tx, ps, " RETURNING id, name", func(r *sql.Rows) error {
		var id int64
		var name string
		if err := r.Scan(&id, &name); err != nil {
			return err
		}
		// RETURNING comes back in the rows' order (gorm relies on the same
		// for VALUES); check it rather than trust it, so a surprise rolls
		// back loudly.
		if at >= len(notes) || notes[at].Name != name {
			return errors.New("RETURNING rows out of order")
		}
		notes[at].ID = id
		at++
		return nil
	}); err != nil {
		return fmt.Errorf("insert notifications: %w", err)
	}
	if at != len(notes) {
		return fmt.Errorf("insert notifications: %d ids for %d rows", at, len(notes))
	}
	return nil
}

var deliveryColumns = store.Columns(
	"notification_id bigint", "collection_id bigint", "action_id bigint", "recipient_index integer",
	"channel text", "address text", "recipient json", "status text", "reason text", "reason_detail text", "attempts integer",
	"next_attempt_at bigint", "claimed_at bigint", "lease_owner text", "lease_until bigint", "created_time bigint", "updated_time bigint",
)

// appendDeliveryRow appends d as a row of the deliveries document, its
// recipient rcpt as it is, the columns of deliveryColumns. It is written by
// hand: a batch has a row per recipient and action, and encoding/json's
// reflection (and its compaction of the recipient, already compact JSON)
// was most of the insert's CPU.
// deliveryRowBytes is about what a row takes besides its recipient,
// address and reasons: the names, numbers and short strings.
const deliveryRowBytes = 320

func appendDeliveryRow(dst []byte, d *dispatch.Delivery, rcpt string) []byte {
	dst = append(dst, `{"notification_id":`...)
	dst = strconv.AppendInt(dst, d.NotificationID, 10)
	dst = append(dst, `,"collection_id":`...)
	dst = strconv.AppendInt(dst, d.CollectionID, 10)
	dst = append(dst, `,"action_id":`...)
	dst = strconv.AppendInt(dst, d.ActionID, 10)
	dst = append(dst, `,"recipient_index":`...)
	dst = strconv.AppendInt(dst, int64(d.RecipientIndex), 10)
	dst = append(dst, `,"channel":`...)
	dst = store.AppendJSONString(dst, d.Channel)
	dst = append(dst, `,"address":`...)
	dst = store.AppendJSONString(dst, d.Address)
	dst = append(dst, `,"recipient":`...)
	dst = append(dst, rcpt...)
	dst = append(dst, `,"status":`...)
	dst = store.AppendJSONString(dst, d.Status)
	dst = append(dst, `,"reason":`...)
	dst = store.AppendJSONString(dst, d.Reason)
	dst = append(dst, `,"reason_detail":`...)
	dst = store.AppendJSONString(dst, d.ReasonDetail)
	dst = append(dst, `,"attempts":`...)
	dst = strconv.AppendInt(dst, int64(d.Attempts), 10)
	dst = append(dst, `,"next_attempt_at":`...)
	dst = strconv.AppendInt(dst, d.NextAttemptAt, 10)
	dst = append(dst, `,"claimed_at":`...)
	dst = strconv.AppendInt(dst, d.ClaimedAt, 10)
	dst = append(dst, `,"lease_owner":`...)
	dst = store.AppendJSONString(dst, d.LeaseOwner)
	dst = append(dst, `,"lease_until":`...)
	dst = strconv.AppendInt(dst, d.LeaseUntil, 10)
	dst = append(dst, `,"created_time":`...)
	dst = strconv.AppendInt(dst, d.CreatedTime, 10)
	dst = append(dst, `,"updated_time":`...)
	dst = strconv.AppendInt(dst, d.UpdatedTime, 10)
	return append(dst, '}')
}

// insertDeliveries inserts ds, whose recipients are rcpts (JSON, as
// stored), and sets their ids.
func (in *Intake) insertDeliveries(ctx context.Context, tx *gorm.DB, ds []*dispatch.Delivery, rcpts []string) error {
	type planKey struct {
		notificationID, actionID int64
		recipientIndex           int
	}
	byKey := make(map[planKey]*dispatch.Delivery, len(ds))
	for _, d := range ds {
		byKey[planKey{d.NotificationID, d.ActionID, d.RecipientIndex}] = d
	}
	sel, from := store.JSONRows(in.pg, deliveryColumns)
	q := "INSERT INTO deliveries (" + store.ColumnList(deliveryColumns) + ") SELECT " + sel + " FROM " + from +
		" RETURNING id, notification_id, action_id, recipient_index"
	scan := func(r *sql.Rows) error {
		var id int64
		var k planKey
		if err := r.Scan(&id, &k.notificationID, &k.actionID, &k.recipientIndex); err != nil {
			return err
		}
		if d := byKey[k]; d != nil {
			d.ID = id
		}
		return nil
	}
	var doc []byte
	for lo := 0; lo < len(ds); lo += 1000 {
		hi := min(lo+1000, len(ds))
		size := 2
		for i := lo; i < hi; i++ {
			size += deliveryRowBytes + len(rcpts[i]) + len(ds[i].Address) + len(ds[i].Reason) + len(ds[i].ReasonDetail)
		}
		doc = slices.Grow(doc[:0], size)
		doc = append(doc, '[')
		for i := lo; i < hi; i++ {
			if i > lo {
				doc = append(doc, ',')
			}
			doc = appendDeliveryRow(doc, ds[i], rcpts[i])
		}
		doc = append(doc, ']')
		if err := queryDoc(ctx, tx, q, string(doc), scan); err != nil {
			return fmt.Errorf("insert deliveries: %w", err)
		}
	}
	for _, d := range ds {
		if d.ID == 0 {
			return fmt.Errorf("insert deliveries: no id returned for notification %d action %d recipient %d", d.NotificationID, d.ActionID, d.RecipientIndex)
		}
	}
	return nil
}
