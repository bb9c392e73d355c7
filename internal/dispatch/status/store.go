// Package status reads what became of notifications and their deliveries
// (the REST API's notification and delivery routes) and records what the
// providers report about them afterwards (delivered, bounced, failed; the
// status webhooks).
package status

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"gorm.io/gorm"

	"github.com/notificationservice/notificationservice/internal/apperr"
	"github.com/notificationservice/notificationservice/internal/channels"
	"github.com/notificationservice/notificationservice/internal/dispatch"
	"github.com/notificationservice/notificationservice/internal/groupcommit"
	"github.com/notificationservice/notificationservice/internal/outbox"
	"github.com/notificationservice/notificationservice/internal/store"
)

// sandboxProvider is channels.SandboxName: the provider of deliveries whose
// sent messages are in sandbox_messages.
const sandboxProvider = channels.SandboxName

// Store reads notifications and deliveries, and lets provider webhooks
// update a delivery's status.
type Store struct {
	db      *gorm.DB
	now     func() time.Time
	sandbox SandboxRecords
	// suppressor, when set, takes the addresses reports suppress.
	suppressor Suppressor
	events     Events           // nil: reports record no lifecycle events (events.go)
	outbox     EnvelopeRecorder // Cancel's envelopes; nil: none
	// group, when set, coalesces concurrent MarkReports calls (group.go).
	group *groupcommit.Group[[]Report, []bool]
	obs   BatchObserver // nil: no one listens
}

// SandboxRecords is the sandbox channel's record of what it accepted
// (channels.SandboxRecords, the one owner of sandbox_messages): Get shows a
// sandbox delivery's messages. (The delivery workers' retention prune
// deletes them through its own delivery.SandboxRecords.)
type SandboxRecords interface {
	// Messages returns the records of each of deliveryIDs, oldest first.
	Messages(ctx context.Context, deliveryIDs []int64) (map[int64][]channels.SandboxMessage, error)
}

// New returns a Store on db.
func New(db *gorm.DB, now func() time.Time) *Store {
	if now == nil {
		now = time.Now
	}
	return &Store{db: db, now: now, sandbox: channels.NewSandboxRecords(db)}
}

// WithSandbox makes Get read the sandbox's records from r (the app passes
// the records it gives the dispatcher) and returns s. Without it they are
// read from the store's database.
func (s *Store) WithSandbox(r SandboxRecords) *Store {
	s.sandbox = r
	return s
}

// ErrNotFound is returned when a notification or delivery does not exist.
var ErrNotFound = errors.New("dispatch: not found")

// Get returns notification id of collectionID with its deliveries in id order.
func (s *Store) Get(ctx context.Context, collectionID, id int64) (*dispatch.NotificationRecord, error) {
	var n dispatch.NotificationRecord
	err := s.db.WithContext(ctx).Where("collection_id = ? AND id = ?", collectionID, id).Take(&n).Error
	if errors.Is(err, gorm.ErrRecordNotFound) {
		return nil, &apperr.Error{Kind: apperr.NotFound, Err: ErrNotFound,
			Message: fmt.Sprintf("notification %d does not exist in collection %d", id, collectionID)}
	}
	if err != nil {
		return nil, fmt.Errorf("dispatch: get notification: %w", err)
	}
	if err := s.db.WithContext(ctx).Where("notification_id = ?", id).Order("id").Find(&n.Deliveries).Error; err != nil {
		return nil, fmt.Errorf("dispatch: get deliveries: %w", err)
	}
	if n.Deliveries == nil {
		n.Deliveries = []*dispatch.Delivery{}
	}
	if err := s.attachSandboxMessages(ctx, n.Deliveries); err != nil {
		return nil, err
	}
	if err := s.attachDigests(ctx, n.Deliveries); err != nil {
		return nil, err
	}
	return &n, nil
}

// attachSandboxMessages adds what the sandbox recorded to the deliveries it
// sent, in one query, so a team testing templates sees the rendered
// messages in the notification's status.
func (s *Store) attachSandboxMessages(ctx context.Context, ds []*dispatch.Delivery) error {
	byID := map[int64]*dispatch.Delivery{}
	var ids []int64
	for _, d := range ds {
		if d.Provider == sandboxProvider {
			byID[d.ID] = d
			ids = append(ids, d.ID)
		}
	}
	if len(ids) == 0 {
		return nil
	}
	recorded, err := s.sandbox.Messages(ctx, ids)
	if err != nil {
		return fmt.Errorf("dispatch: get sandbox messages: %w", err)
	}
	for id, ms := range recorded {
		byID[id].SandboxMessages = ms
	}
	return nil
}

// NotificationFilter selects notifications of a collection: a keyset page
// (id > After, at most Limit, in id order) and optional filters.
type NotificationFilter struct {
	Name        string
	Status      string
	CreatedFrom int64 // epoch ms, inclusive; 0 for none
	CreatedTo   int64 // epoch ms, exclusive; 0 for none
	// EntityID matches the producer's entity-id header exactly;
	// CorrelationID matches any value of the notification's correlation
	// ids (order_id, customer_id, x-correlation-id, …).
	EntityID      string
	CorrelationID string
	After         int64
	Limit         int
}

// List returns a page of a collection's notifications without their
// recipients (Get has them).
func (s *Store) List(ctx context.Context, collectionID int64, f NotificationFilter) ([]dispatch.NotificationRecord, error) {
	q := s.db.WithContext(ctx).Omit("recipients").Where("collection_id = ? AND id > ?", collectionID, f.After)
	if f.Name != "" {
		q = q.Where("name = ?", f.Name)
	}
	if f.Status != "" {
		q = q.Where("status = ?", f.Status)
	}
	if f.CreatedFrom > 0 {
		q = q.Where("created_time >= ?", f.CreatedFrom)
	}
	if f.CreatedTo > 0 {
		q = q.Where("created_time < ?", f.CreatedTo)
	}
	if f.EntityID != "" {
		q = q.Where("entity_id = ?", f.EntityID)
	}
	if f.CorrelationID != "" {
		// correlation is a JSON object in a text column: match any of its
		// values, whatever the key. The collection and the other filters
		// narrow the rows first; there is no index on the values.
		if store.IsPostgres(s.db) {
			q = q.Where("EXISTS (SELECT 1 FROM jsonb_each_text(notifications.correlation::jsonb) AS c WHERE c.value = ?)", f.CorrelationID)
		} else {
			q = q.Where("EXISTS (SELECT 1 FROM json_each(notifications.correlation) AS c WHERE c.value = ?)", f.CorrelationID)
		}
	}
	out := []dispatch.NotificationRecord{}
	if err := q.Order("id").Limit(f.Limit).Find(&out).Error; err != nil {
		return nil, fmt.Errorf("dispatch: list notifications: %w", err)
	}
	return out, nil
}

// DeliveryFilter selects deliveries of a collection: a keyset page and
// optional filters.
type DeliveryFilter struct {
	Status         string
	Channel        string
	NotificationID int64
	After          int64
	Limit          int
}

// ListDeliveries returns a page of a collection's deliveries.
func (s *Store) ListDeliveries(ctx context.Context, collectionID int64, f DeliveryFilter) ([]dispatch.Delivery, error) {
	q := s.db.WithContext(ctx).Where("collection_id = ? AND id > ?", collectionID, f.After)
	if f.Status != "" {
		q = q.Where("status = ?", f.Status)
	}
	if f.Channel != "" {
		q = q.Where("channel = ?", f.Channel)
	}
	if f.NotificationID > 0 {
		q = q.Where("notification_id = ?", f.NotificationID)
	}
	out := []dispatch.Delivery{}
	if err := q.Order("id").Limit(f.Limit).Find(&out).Error; err != nil {
		return nil, fmt.Errorf("dispatch: list deliveries: %w", err)
	}
	return out, nil
}

// Webhook statuses: what a provider may report about a delivery it accepted.
var webhookStatuses = []string{dispatch.StatusDelivered, dispatch.StatusBounced, dispatch.StatusFailed}

// webhookFrom lists the statuses a provider report may change: only
// deliveries the provider accepted (sent) or already reported on, or whose
// last attempt was in doubt and left unknown (the report shows the provider
// got it). A report never resurrects a skipped delivery or races a send in
// flight, and a bounce or failure may follow delivered, not the other way
// round.
const webhookFrom = "status IN ('sent', 'delivered', 'unknown')"

// MarkByID records a provider report (delivered or failed, with the
// provider's reason) on delivery id. It returns ErrNotFound (NOT_FOUND)
// when no delivery in sent or delivered has that id.
func (s *Store) MarkByID(ctx context.Context, id int64, status, reason string) error {
	applied, err := s.MarkReports(ctx, []Report{{DeliveryID: id, Status: status, Reason: reason}})
	if err != nil {
		return err
	}
	if !applied[0] {
		return &apperr.Error{Kind: apperr.NotFound, Err: ErrNotFound, Message: fmt.Sprintf("no sent delivery %d", id)}
	}
	return nil
}

// byMessageIDWhere selects the deliveries a report names by the provider's
// own message id. Only Twilio's callbacks do (a MessageSid names one
// message; SendGrid's events carry our delivery id, and the other channels
// send no reports), so migration 00023 indexes Twilio's rows only: an index
// over every delivery took an entry from each accepted send that no lookup
// wanted. The provider is in the SQL as a literal because neither
// PostgreSQL nor SQLite may use a partial index for "provider = ?", whose
// value is known only when it runs.
const byMessageIDWhere = "provider = '" + channels.TwilioName + "' AND provider_message_id = ?"

// MarkByProviderID records a provider report on every delivery that
// provider accepted under providerMessageID, and returns how many it
// updated. Only Twilio reports by its message id (byMessageIDWhere); any
// other provider is an error. No match is ErrNotFound (NOT_FOUND): the
// webhook may arrive for a message this service did not send, or before the
// send is recorded; the caller decides whether to retry.
func (s *Store) MarkByProviderID(ctx context.Context, provider, providerMessageID, status, reason string) (int64, error) {
	if !slices.Contains(webhookStatuses, status) {
		return 0, fmt.Errorf("dispatch: mark: status %q is not one of %v", status, webhookStatuses)
	}
	if provider != channels.TwilioName {
		return 0, fmt.Errorf("dispatch: mark: %s reports do not name deliveries by message id (only %s's do)", provider, channels.TwilioName)
	}
	var n int64
	err := s.write(ctx, func(db *gorm.DB) ([]outbox.TypedEvent, error) {
		var rows []changedRow
		err := db.WithContext(ctx).Raw(`UPDATE deliveries SET status = ?, reason = ?, updated_time = ?
WHERE `+byMessageIDWhere+` AND `+webhookFrom+changedColumns,
			status, apperr.Truncate(reason, 1000), s.now().UnixMilli(), providerMessageID).Scan(&rows).Error
		if err != nil {
			return nil, fmt.Errorf("dispatch: mark %s message %q: %w", provider, providerMessageID, err)
		}
		n = int64(len(rows))
		var evs []outbox.TypedEvent
		for _, row := range rows {
			if evs, err = s.appendEvent(ctx, db, evs, row, Report{DeliveryID: row.ID, Status: status, Reason: reason}); err != nil {
				return nil, err
			}
		}
		return evs, nil
	})
	if err != nil {
		return 0, err
	}
	if n == 0 {
		return 0, &apperr.Error{Kind: apperr.NotFound, Err: ErrNotFound,
			Message: fmt.Sprintf("no sent delivery has %s message id %q", provider, providerMessageID)}
	}
	return n, nil
}

// attachDigests adds, to each delivery that is a digest window's own, the
// deliveries (and so the notifications) its window holds, in one query.
func (s *Store) attachDigests(ctx context.Context, ds []*dispatch.Delivery) error {
	byID := map[int64]*dispatch.Delivery{}
	var ids []int64
	for _, d := range ds {
		if d.DigestDeliveryID != 0 && d.DigestDeliveryID == d.ID {
			byID[d.ID] = d
			ids = append(ids, d.ID)
		}
	}
	if len(ids) == 0 {
		return nil
	}
	var rows []struct {
		ID, NotificationID, DigestDeliveryID int64
	}
	if err := s.db.WithContext(ctx).Raw(`SELECT id, notification_id, digest_delivery_id FROM deliveries
WHERE digest_delivery_id IN ? ORDER BY id`, ids).Scan(&rows).Error; err != nil {
		return fmt.Errorf("dispatch: get digests: %w", err)
	}
	for _, r := range rows {
		d := byID[r.DigestDeliveryID]
		if d.Digest == nil {
			d.Digest = &dispatch.Digest{}
			if d.Status == dispatch.StatusScheduled {
				d.Digest.ClosesAt = d.NextAttemptAt
			}
		}
		d.Digest.Items = append(d.Digest.Items, dispatch.DigestItem{DeliveryID: r.ID, NotificationID: r.NotificationID})
		d.Digest.Count++
	}
	return nil
}
