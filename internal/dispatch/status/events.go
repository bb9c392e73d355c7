package status

import (
	"context"
	"strconv"

	"gorm.io/gorm"

	"github.com/notificationservice/notificationservice/internal/dispatch"
	"github.com/notificationservice/notificationservice/internal/outbox"
)

// Engagement reports: a provider saw the recipient open the message or
// click a link in it (channels.ReportOpened, ReportClicked). They change no
// status; they are events for the customer webhooks only.
const (
	ReportOpened  = "opened"
	ReportClicked = "clicked"
)

var engagementStatuses = []string{ReportOpened, ReportClicked}

// engagementTypes are their lifecycle event types.
var engagementTypes = map[string]string{ReportOpened: outbox.TypeDeliveryOpened, ReportClicked: outbox.TypeDeliveryClicked}

// Events is dispatch.Events: what the provider reports (DELIVERY_DELIVERED,
// _BOUNCED, _FAILED, _OPENED, _CLICKED) are recorded through.
type Events = dispatch.Events

// WithEvents makes the reports record their lifecycle events through ev
// and returns s.
func (s *Store) WithEvents(ev Events) *Store {
	s.events = ev
	return s
}

// changedRow is a delivery as a report left it.
type changedRow = dispatch.ChangedDelivery

// deliveryColumns are changedRow's columns.
const deliveryColumns = dispatch.ChangedColumns

// changedColumns is the RETURNING clause of the report statements.
const changedColumns = " RETURNING " + deliveryColumns

// write runs fn, in a transaction with the events it returns when the store
// records events (else on the pool, as before), and wakes the webhook
// sender after a commit that recorded some.
func (s *Store) write(ctx context.Context, fn func(db *gorm.DB) ([]outbox.TypedEvent, error)) error {
	if s.events == nil {
		_, err := fn(s.db)
		return err
	}
	recorded := false
	err := s.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		evs, err := fn(tx)
		if err != nil || len(evs) == 0 {
			return err
		}
		recorded = true
		return s.events.Record(ctx, tx, evs)
	})
	if err == nil && recorded {
		s.events.Committed()
	}
	return err
}

// appendEvent appends the event of report r on row (as r left it) to evs,
// when an endpoint wants it.
func (s *Store) appendEvent(ctx context.Context, db *gorm.DB, evs []outbox.TypedEvent, row changedRow, r Report) ([]outbox.TypedEvent, error) {
	if s.events == nil {
		return evs, nil
	}
	t, occurrence := dispatch.EventType(r.Status), ""
	if et, ok := engagementTypes[r.Status]; ok {
		// A delivery is opened (clicked) as often as the provider says:
		// the provider's time tells each apart, and the same report
		// repeated is the same event.
		t, occurrence = et, strconv.FormatInt(s.now().UnixMilli(), 10)
		if !r.Time.IsZero() {
			occurrence = strconv.FormatInt(r.Time.Unix(), 10)
		}
	}
	if t == "" || !s.events.Wants(ctx, db, row.CollectionID, t) {
		return evs, nil
	}
	ev, err := outbox.DeliveryEvent(t, row.Change(), s.now(), occurrence)
	if err != nil {
		return nil, err
	}
	return append(evs, ev), nil
}
