package intake

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"slices"

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
		r, err := tx.WithContext(ctx).Raw(q, string(doc)).Rows()
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
		if err := errors.Join(r.Err(), r.Close()); err != nil {
			return err
		}
	}
	return nil
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

type deliveryRow struct {
	NotificationID int64           `json:"notification_id"`
	CollectionID   int64           `json:"collection_id"`
	ActionID       int64           `json:"action_id"`
	RecipientIndex int             `json:"recipient_index"`
	Channel        string          `json:"channel"`
	Address        string          `json:"address"`
	Recipient      json.RawMessage `json:"recipient"` // planned.each, as it is
	Status         string          `json:"status"`
	Reason         string          `json:"reason"`
	ReasonDetail   string          `json:"reason_detail"`
	Attempts       int             `json:"attempts"`
	NextAttemptAt  int64           `json:"next_attempt_at"`
	ClaimedAt      int64           `json:"claimed_at"`
	LeaseOwner     string          `json:"lease_owner"`
	LeaseUntil     int64           `json:"lease_until"`
	CreatedTime    int64           `json:"created_time"`
	UpdatedTime    int64           `json:"updated_time"`
}

// insertDeliveries inserts ds, whose recipients are rcpts (JSON, as
// stored), and sets their ids.
func (in *Intake) insertDeliveries(ctx context.Context, tx *gorm.DB, ds []*dispatch.Delivery, rcpts []string) error {
	rows := make([]deliveryRow, len(ds))
	type planKey struct {
		notificationID, actionID int64
		recipientIndex           int
	}
	byKey := make(map[planKey]*dispatch.Delivery, len(ds))
	for i, d := range ds {
		rows[i] = deliveryRow{d.NotificationID, d.CollectionID, d.ActionID, d.RecipientIndex, d.Channel, d.Address, json.RawMessage(rcpts[i]),
			d.Status, d.Reason, d.ReasonDetail, d.Attempts, d.NextAttemptAt, d.ClaimedAt, d.LeaseOwner, d.LeaseUntil, d.CreatedTime, d.UpdatedTime}
		byKey[planKey{d.NotificationID, d.ActionID, d.RecipientIndex}] = d
	}
	sel, from := store.JSONRows(in.pg, deliveryColumns)
	q := "INSERT INTO deliveries (" + store.ColumnList(deliveryColumns) + ") SELECT " + sel + " FROM " + from +
		" RETURNING id, notification_id, action_id, recipient_index"
	if err := insertJSON(ctx, tx, q, rows, func(r *sql.Rows) error {
		var id int64
		var k planKey
		if err := r.Scan(&id, &k.notificationID, &k.actionID, &k.recipientIndex); err != nil {
			return err
		}
		if d := byKey[k]; d != nil {
			d.ID = id
		}
		return nil
	}); err != nil {
		return fmt.Errorf("insert deliveries: %w", err)
	}
	for _, d := range ds {
		if d.ID == 0 {
			return fmt.Errorf("insert deliveries: no id returned for notification %d action %d recipient %d", d.NotificationID, d.ActionID, d.RecipientIndex)
		}
	}
	return nil
}
