package status

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	"gorm.io/gorm"

	"github.com/notificationservice/notificationservice/internal/apperr"
	"github.com/notificationservice/notificationservice/internal/channels"
	"github.com/notificationservice/notificationservice/internal/dispatch"
	"github.com/notificationservice/notificationservice/internal/outbox"
	"github.com/notificationservice/notificationservice/internal/store"
)

// Report is one provider report on a delivery: delivered, bounced or
// failed, with the provider's reason, or an engagement (opened, clicked),
// which changes no status and is only an event for the customer webhooks.
// Suppress, when set, is the suppression-list source the report implies
// for Address (an email delivery's; other channels', and an email report
// without one, use the delivery's address); a report may suppress without
// changing the delivery (Status "": a spam report on a delivered message).
type Report struct {
	DeliveryID int64
	Status     string
	Reason     string
	Suppress   string
	Address    string
	Provider   string
	// Time is when the provider saw it (zero when it does not say); it
	// tells a delivery's opens and clicks apart.
	Time time.Time
}

// Suppressor puts addresses on their collection's suppression list
// (internal/suppressions, wired in app). It must be idempotent: an entry
// already there is kept, so a batch the provider sends again adds nothing.
type Suppressor interface {
	Suppress(ctx context.Context, entries []dispatch.Suppression) (int, error)
}

// WithSuppressor makes MarkReports put the addresses of the reports that
// imply it on the suppression list through sup, and returns s.
func (s *Store) WithSuppressor(sup Suppressor) *Store {
	s.suppressor = sup
	return s
}

// reportColumns are the columns of the JSON rows MarkReports passes.
var reportColumns = store.Columns("id bigint", "status text", "reason text")

type reportRow struct {
	ID     int64  `json:"id"`
	Status string `json:"status"`
	Reason string `json:"reason"`
}

// MarkReports records reports as if MarkByID were called on each in order,
// and says which of them applied, in one statement whatever their number
// (plus, when some imply a suppression, one read and the list's write, done
// first and whatever the delivery's state, so a batch that failed is
// suppressed when the provider sends it again):
// a SendGrid batch carries up to thousands of events, and one UPDATE per
// event made a batch of 1,000 take 5.3 s on PostgreSQL, past the point where
// SendGrid gives up and sends the whole batch again.
//
// The order rules make the outcome of a delivery's reports computable before
// the statement: a delivery in sent or delivered takes its reports in order
// up to and including the first bounced or failed one, which is final, and
// refuses the rest; a delivery in any other state (or none) refuses them
// all. So the statement writes each delivery's last applicable report, if
// the delivery is in sent or delivered when it runs, and returns the ids it
// wrote. A report that did not apply is the NOT_FOUND of MarkByID. An
// engagement applies when its delivery is in sent or delivered (or unknown),
// and writes nothing.
//
// With Events, every applied report that an endpoint of the delivery's
// collection wants becomes its lifecycle event, in the same transaction:
// a delivery that went delivered then bounced in one batch has both events.
//
// With WithGroupCommit, concurrent calls share one such statement and one
// commit (group.go); each still gets its own reports' results.
func (s *Store) MarkReports(ctx context.Context, reports []Report) ([]bool, error) {
	if err := checkReports(reports); err != nil {
		return nil, err
	}
	if s.group == nil || len(reports) == 0 {
		return s.markReports(ctx, reports)
	}
	return s.group.Do(ctx, reports)
}

// checkReports refuses a report whose status MarkReports does not know, so
// that one caller's mistake never fails the others' reports it is batched
// with.
func checkReports(reports []Report) error {
	for _, r := range reports {
		if r.Status == "" && r.Suppress != "" || slices.Contains(engagementStatuses, r.Status) || slices.Contains(webhookStatuses, r.Status) {
			continue
		}
		return fmt.Errorf("dispatch: mark: status %q is not one of %v or %v", r.Status, webhookStatuses, engagementStatuses)
	}
	return nil
}

// markReports is MarkReports of reports checkReports accepted, alone.
func (s *Store) markReports(ctx context.Context, reports []Report) ([]bool, error) {
	applied := make([]bool, len(reports))
	// final is, per delivery, the index of the report its row ends with:
	// the first bounced or failed one, else the last.
	final := map[int64]int{}
	var engaged []int64
	for i, r := range reports {
		if r.Status == "" && r.Suppress != "" {
			continue // suppresses only
		}
		if slices.Contains(engagementStatuses, r.Status) {
			engaged = append(engaged, r.DeliveryID)
			continue
		}
		if f, ok := final[r.DeliveryID]; !ok || reports[f].Status == dispatch.StatusDelivered {
			final[r.DeliveryID] = i
		}
	}
	if err := s.suppress(ctx, reports); err != nil {
		return nil, err
	}
	err := s.write(ctx, func(db *gorm.DB) ([]outbox.TypedEvent, error) {
		// Engagements are read before the statement: an open reported with
		// the bounce that follows it applies to the delivery as it was.
		seen, err := s.engagedRows(ctx, db, engaged)
		if err != nil {
			return nil, err
		}
		changed, err := s.markFinal(ctx, db, reports, final)
		if err != nil {
			return nil, err
		}
		var evs []outbox.TypedEvent
		for i, r := range reports {
			row, ok := changed[r.DeliveryID]
			if slices.Contains(engagementStatuses, r.Status) {
				row, ok = seen[r.DeliveryID]
				applied[i] = ok
			} else {
				applied[i] = ok && i <= final[r.DeliveryID]
				row.Status, row.Reason = r.Status, apperr.Truncate(r.Reason, 1000)
			}
			if !applied[i] {
				continue
			}
			if evs, err = s.appendEvent(ctx, db, evs, row, r); err != nil {
				return nil, err
			}
		}
		return evs, nil
	})
	if err != nil {
		return nil, err
	}
	return applied, nil
}

// markFinal writes each delivery's final report (final: delivery id →
// index in reports) in one statement and returns the rows it changed.
func (s *Store) markFinal(ctx context.Context, db *gorm.DB, reports []Report, final map[int64]int) (map[int64]changedRow, error) {
	if len(final) == 0 {
		return nil, nil
	}
	rows := make([]reportRow, 0, len(final))
	for id, f := range final {
		rows = append(rows, reportRow{ID: id, Status: reports[f].Status, Reason: apperr.Truncate(reports[f].Reason, 1000)})
	}
	// In id order, so concurrent batches lock rows in the same order.
	slices.SortFunc(rows, func(a, b reportRow) int { return cmp.Compare(a.ID, b.ID) })
	doc, err := json.Marshal(rows)
	if err != nil {
		return nil, err
	}
	sel, from := store.JSONRows(store.IsPostgres(db), reportColumns)
	// webhookFrom is "status IN (...)": qualified here, as v has a status too.
	q := `UPDATE deliveries SET status = v.status, reason = v.reason, updated_time = ?
FROM (SELECT ` + sel + ` FROM ` + from + `) AS v
WHERE deliveries.id = v.id AND deliveries.` + webhookFrom + changedColumns
	var matched []changedRow
	// Find, not Scan: gorm's Scan renders the statement with its JSON
	// parameter inlined, for a trace it then discards, on every call.
	if err := db.WithContext(ctx).Raw(q, s.now().UnixMilli(), string(doc)).Find(&matched).Error; err != nil {
		return nil, fmt.Errorf("dispatch: mark %d reports: %w", len(reports), err)
	}
	out := make(map[int64]changedRow, len(matched))
	for _, r := range matched {
		out[r.ID] = r
	}
	return out, nil
}

// engagedRows returns the deliveries of ids an open or click applies to.
func (s *Store) engagedRows(ctx context.Context, db *gorm.DB, ids []int64) (map[int64]changedRow, error) {
	if len(ids) == 0 {
		return nil, nil
	}
	var rows []changedRow
	if err := db.WithContext(ctx).Raw(`SELECT `+deliveryColumns+` FROM deliveries WHERE id IN ? AND `+webhookFrom, ids).
		Scan(&rows).Error; err != nil {
		return nil, fmt.Errorf("dispatch: engaged deliveries: %w", err)
	}
	out := make(map[int64]changedRow, len(rows))
	for _, r := range rows {
		out[r.ID] = r
	}
	return out, nil
}

// suppress puts the addresses of the reports that imply it on their
// delivery's collection's list: one read of the deliveries, one write.
func (s *Store) suppress(ctx context.Context, reports []Report) error {
	if s.suppressor == nil {
		return nil
	}
	var ids []int64
	for _, r := range reports {
		if r.Suppress != "" && r.DeliveryID > 0 {
			ids = append(ids, r.DeliveryID)
		}
	}
	if len(ids) == 0 {
		return nil
	}
	var rows []struct {
		ID           int64
		CollectionID int64
		Channel      string
		Address      string
	}
	if err := s.db.WithContext(ctx).Table("deliveries").Select("id, collection_id, channel, address").
		Where("id IN ?", ids).Scan(&rows).Error; err != nil {
		return fmt.Errorf("dispatch: suppress: read deliveries: %w", err)
	}
	byID := make(map[int64]int, len(rows))
	for i, r := range rows {
		byID[r.ID] = i
	}
	var entries []dispatch.Suppression
	for _, r := range reports {
		i, ok := byID[r.DeliveryID]
		if r.Suppress == "" || !ok {
			continue
		}
		d := rows[i]
		// An email delivery may go to several To addresses (its address
		// lists them): the event names the one that bounced. A phone is
		// kept as the recipient gave it, as planning looks it up, not in
		// the E.164 form Twilio reports it in.
		addr := d.Address
		if d.Channel == channels.ChannelEmail && r.Address != "" {
			addr = r.Address
		}
		if strings.Contains(addr, ",") {
			continue // several To addresses and the event names none: which one is unknown
		}
		entries = append(entries, dispatch.Suppression{
			CollectionID: d.CollectionID, Channel: d.Channel, Address: addr,
			Reason: r.Reason, Source: r.Suppress, Who: r.Provider,
		})
	}
	if len(entries) == 0 {
		return nil
	}
	if _, err := s.suppressor.Suppress(ctx, entries); err != nil {
		return fmt.Errorf("dispatch: suppress %d addresses: %w", len(entries), err)
	}
	return nil
}
