package intake

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strconv"

	"github.com/notificationservice/notificationservice/internal/dispatch"
	"github.com/notificationservice/notificationservice/internal/jsonenc"

	"github.com/notificationservice/notificationservice/internal/store"
	"gorm.io/gorm"
)

// queryDoc runs q, whose one parameter is a JSON array of rows (see
// store.JSONRows), with the document doc, and calls scan on each row it
// returns.
func queryDoc(ctx context.Context, tx *gorm.DB, q, doc string, scan func(*sql.Rows) error) error {
	return query(ctx, tx, q, []any{doc}, scan)
}

// query runs q with args and calls scan on each row it returns.
func query(ctx context.Context, tx *gorm.DB, q string, args []any, scan func(*sql.Rows) error) error {
	r, err := tx.WithContext(ctx).Raw(q, args...).Rows()
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

// notificationRowBytes is about what a notification row takes besides its
// variable strings.
const notificationRowBytes = 480

// jsonColumns is n's correlation ids and data as their columns hold them.
func jsonColumns(n *dispatch.NotificationRecord) (corr, data string, err error) {
	c, err := n.Correlation.Value()
	if err != nil {
		return "", "", err
	}
	d, err := n.Data.Value()
	if err != nil {
		return "", "", err
	}
	return c.(string), d.(string), nil
}

// appendNotificationRow appends p's notification as a row of the
// notifications document, the columns of notificationColumns, its
// recipients as p encoded them. Written by hand, as appendDeliveryRow.
func appendNotificationRow(dst []byte, p *planned) ([]byte, error) {
	n := p.note
	corr, data, err := jsonColumns(n)
	if err != nil {
		return nil, err
	}
	str := func(name, v string) {
		dst = append(dst, name...)
		dst = jsonenc.AppendString(dst, v)
	}
	num := func(name string, v int64) {
		dst = append(dst, name...)
		dst = strconv.AppendInt(dst, v, 10)
	}
	num(`{"collection_id":`, n.CollectionID)
	str(`,"name":`, n.Name)
	str(`,"source":`, n.Source)
	str(`,"intake_scope":`, n.IntakeScope)
	str(`,"idempotency_key":`, n.IdempotencyKey)
	num(`,"ordinal":`, int64(n.Ordinal))
	str(`,"request_hash":`, n.RequestHash)
	str(`,"correlation":`, corr)
	dst = append(dst, `,"recipients":`...)
	dst = append(dst, p.recipients...)
	str(`,"status":`, n.Status)
	str(`,"reason":`, n.Reason)
	num(`,"event_id":`, n.EventID)
	num(`,"delivery_count":`, int64(n.DeliveryCount))
	num(`,"skipped_count":`, int64(n.SkippedCount))
	str(`,"created_by":`, n.CreatedBy)
	num(`,"created_time":`, n.CreatedTime)
	str(`,"trace_parent":`, n.TraceParent)
	str(`,"data":`, data)
	str(`,"tenant":`, n.Tenant)
	str(`,"team":`, n.Team)
	str(`,"service":`, n.Service)
	str(`,"entity_id":`, n.EntityID)
	return append(dst, '}'), nil
}

// notificationArrays is the notifications of ps as one array per column of
// notificationColumns, in its order, for store.UnnestRows.
func notificationArrays(ps []*planned) ([]any, error) {
	n := len(ps)
	ints := func() store.Int64s { return make(store.Int64s, n) }
	texts := func() store.Texts { return make(store.Texts, n) }
	collection, ordinal, event, deliveries, skipped, created := ints(), ints(), ints(), ints(), ints(), ints()
	name, source, scope, key, hash, corr, rcpts, status := texts(), texts(), texts(), texts(), texts(), texts(), texts(), texts()
	reason, by, trace, data, tenant, team, service, entity := texts(), texts(), texts(), texts(), texts(), texts(), texts(), texts()
	for i, p := range ps {
		nr := p.note
		c, d, err := jsonColumns(nr)
		if err != nil {
			return nil, err
		}
		collection[i], ordinal[i], event[i], created[i] = nr.CollectionID, int64(nr.Ordinal), nr.EventID, nr.CreatedTime
		deliveries[i], skipped[i] = int64(nr.DeliveryCount), int64(nr.SkippedCount)
		name[i], source[i], scope[i], key[i], hash[i] = nr.Name, nr.Source, nr.IntakeScope, nr.IdempotencyKey, nr.RequestHash
		corr[i], rcpts[i], status[i], reason[i], by[i] = c, p.recipients, nr.Status, nr.Reason, nr.CreatedBy
		trace[i], data[i], tenant[i], team[i], service[i], entity[i] = nr.TraceParent, d, nr.Tenant, nr.Team, nr.Service, nr.EntityID
	}
	return []any{collection, name, source, scope, key, ordinal, hash, corr, rcpts, status, reason, event, deliveries, skipped, by,
		created, trace, data, tenant, team, service, entity}, nil
}

// insertNotes inserts the notifications of ps with one statement per chunk,
// the INSERT … SELECT followed by suffix, and calls scan on each row the
// statement returns.
func (in *Intake) insertNotes(ctx context.Context, tx *gorm.DB, ps []*planned, suffix string, scan func(*sql.Rows) error) error {
	sel, from := store.BatchRows(in.pg, notificationColumns)
	q := "INSERT INTO notifications (" + store.ColumnList(notificationColumns) + ") SELECT " + sel + " FROM " + from + suffix
	if in.pg {
		for lo := 0; lo < len(ps); lo += 1000 {
			args, err := notificationArrays(ps[lo:min(lo+1000, len(ps))])
			if err != nil {
				return err
			}
			if err := query(ctx, tx, q, args, scan); err != nil {
				return err
			}
		}
		return nil
	}
	var doc []byte
	for lo := 0; lo < len(ps); lo += 1000 {
		hi := min(lo+1000, len(ps))
		size := 2
		for _, p := range ps[lo:hi] {
			size += notificationRowBytes + len(p.recipients) + len(p.note.Reason)
		}
		doc = slices.Grow(doc[:0], size)
		doc = append(doc, '[')
		for i, p := range ps[lo:hi] {
			if i > 0 {
				doc = append(doc, ',')
			}
			var err error
			if doc, err = appendNotificationRow(doc, p); err != nil {
				return err
			}
		}
		doc = append(doc, ']')
		if err := queryDoc(ctx, tx, q, string(doc), scan); err != nil {
			return err
		}
	}
	return nil
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
	dst = jsonenc.AppendString(dst, d.Channel)
	dst = append(dst, `,"address":`...)
	dst = jsonenc.AppendString(dst, d.Address)
	dst = append(dst, `,"recipient":`...)
	dst = append(dst, rcpt...)
	dst = append(dst, `,"status":`...)
	dst = jsonenc.AppendString(dst, d.Status)
	dst = append(dst, `,"reason":`...)
	dst = jsonenc.AppendString(dst, d.Reason)
	dst = append(dst, `,"reason_detail":`...)
	dst = jsonenc.AppendString(dst, d.ReasonDetail)
	dst = append(dst, `,"attempts":`...)
	dst = strconv.AppendInt(dst, int64(d.Attempts), 10)
	dst = append(dst, `,"next_attempt_at":`...)
	dst = strconv.AppendInt(dst, d.NextAttemptAt, 10)
	dst = append(dst, `,"claimed_at":`...)
	dst = strconv.AppendInt(dst, d.ClaimedAt, 10)
	dst = append(dst, `,"lease_owner":`...)
	dst = jsonenc.AppendString(dst, d.LeaseOwner)
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
	sel, from := store.BatchRows(in.pg, deliveryColumns)
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
	if in.pg {
		for lo := 0; lo < len(ds); lo += 1000 {
			hi := min(lo+1000, len(ds))
			if err := query(ctx, tx, q, deliveryArrays(ds[lo:hi], rcpts[lo:hi]), scan); err != nil {
				return fmt.Errorf("insert deliveries: %w", err)
			}
		}
		return checkIDs(ds)
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
	return checkIDs(ds)
}

// checkIDs says which delivery the insert returned no id for.
func checkIDs(ds []*dispatch.Delivery) error {
	for _, d := range ds {
		if d.ID == 0 {
			return fmt.Errorf("insert deliveries: no id returned for notification %d action %d recipient %d", d.NotificationID, d.ActionID, d.RecipientIndex)
		}
	}
	return nil
}

// deliveryArrays is ds as one array per column of deliveryColumns, in its
// order, for store.UnnestRows.
func deliveryArrays(ds []*dispatch.Delivery, rcpts []string) []any {
	n := len(ds)
	ints := func() store.Int64s { return make(store.Int64s, n) }
	texts := func() store.Texts { return make(store.Texts, n) }
	note, collection, action, index, attempts := ints(), ints(), ints(), ints(), ints()
	next, claimed, leaseUntil, created, updated := ints(), ints(), ints(), ints(), ints()
	channel, address, rcpt, status, reason, detail, owner := texts(), texts(), texts(), texts(), texts(), texts(), texts()
	for i, d := range ds {
		note[i], collection[i], action[i], index[i], attempts[i] = d.NotificationID, d.CollectionID, d.ActionID, int64(d.RecipientIndex), int64(d.Attempts)
		next[i], claimed[i], leaseUntil[i], created[i], updated[i] = d.NextAttemptAt, d.ClaimedAt, d.LeaseUntil, d.CreatedTime, d.UpdatedTime
		channel[i], address[i], rcpt[i], status[i] = d.Channel, d.Address, rcpts[i], d.Status
		reason[i], detail[i], owner[i] = d.Reason, d.ReasonDetail, d.LeaseOwner
	}
	return []any{note, collection, action, index, channel, address, rcpt, status, reason, detail, attempts,
		next, claimed, owner, leaseUntil, created, updated}
}
