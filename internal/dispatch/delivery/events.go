package delivery

import (
	"context"
	"fmt"
	"time"

	"gorm.io/gorm"

	"github.com/notificationservice/notificationservice/internal/dispatch"
	"github.com/notificationservice/notificationservice/internal/outbox"
)

// Events is dispatch.Events: what the workers' outcomes (DELIVERY_SENT,
// _FAILED, _SKIPPED…) are recorded through.
type Events = dispatch.Events

// WithEvents makes the workers record the lifecycle events of the outcomes
// they write through ev, and returns d. Call it before Run.
func (d *Dispatcher) WithEvents(ev Events) *Dispatcher {
	d.events = ev
	return d
}

// wantsEvents reports whether any of outs is a change some endpoint wants.
// For a collection without endpoints this is one map lookup per outcome,
// and the outcomes are written by the one statement as before.
func (d *Dispatcher) wantsEvents(ctx context.Context, outs []outcome) bool {
	if d.events == nil {
		return false
	}
	for _, o := range outs {
		if t := dispatch.EventType(o.status); t != "" && o.collectionID != 0 && d.events.Wants(ctx, d.db, o.collectionID, t) {
			return true
		}
	}
	return false
}

// changedRow is a delivery as the record statement left it.
type changedRow = dispatch.ChangedDelivery

// changedColumns are what the record statement returns for the events.
const changedColumns = " RETURNING " + dispatch.ChangedColumns

// recordWithEvents runs the record statement q in a transaction with the
// events of the rows it changed (the fence decides which did: a row
// claimed again keeps its status and has no event), so each event exists
// if and only if its status change committed. It returns how many rows
// took their outcome.
func (d *Dispatcher) recordWithEvents(ctx context.Context, q string, args []any, now int64) (int64, error) {
	var n int64
	recorded := false
	err := d.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		var rows []changedRow
		// Find, not Scan: gorm's Scan renders the statement with its
		// parameters inlined (the outcomes' arrays or JSON document), for
		// a trace it then discards, on every call.
		if err := tx.Raw(q+changedColumns, args...).Find(&rows).Error; err != nil {
			return err
		}
		n = int64(len(rows))
		evs, err := d.eventsOf(ctx, tx, rows, time.UnixMilli(now))
		if err != nil || len(evs) == 0 {
			return err
		}
		recorded = true
		return d.events.Record(ctx, tx, evs)
	})
	if err != nil {
		return 0, fmt.Errorf("with lifecycle events: %w", err)
	}
	if recorded {
		d.events.Committed()
	}
	return n, nil
}

// eventsOf returns the wanted events of rows.
func (d *Dispatcher) eventsOf(ctx context.Context, tx *gorm.DB, rows []changedRow, at time.Time) ([]outbox.TypedEvent, error) {
	var evs []outbox.TypedEvent
	for _, r := range rows {
		t := dispatch.EventType(r.Status)
		if t == "" || !d.events.Wants(ctx, tx, r.CollectionID, t) {
			continue
		}
		ev, err := outbox.DeliveryEvent(t, r.Change(), at, "")
		if err != nil {
			return nil, err
		}
		evs = append(evs, ev)
	}
	return evs, nil
}
