package outbox

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"time"

	"gorm.io/gorm"

	"github.com/notificationservice/notificationservice/internal/apperr"
)

// DetailTypes lists every detail type the service publishes.
func DetailTypes() []string {
	return []string{
		CollectionCreate, CollectionUpdate, CollectionDelete,
		EventCreate, EventUpdate, EventDelete,
		ActionCreate, ActionUpdate, ActionDelete,
		NotificationsSend, NotificationsCancel,
		WebhookCreate, WebhookUpdate, WebhookDelete,
		SuppressionCreate, SuppressionDelete,
		PreferencesUpdate,
	}
}

// State is where an envelope is in its life.
type State string

// The states an envelope can be in.
const (
	StatePending   State = "pending"   // waiting for the relay (new, retrying, or replayed)
	StatePublished State = "published" // the sink accepted it
	StateParked    State = "parked"    // the sink can never accept it; see lastError
)

// Envelope is an outbox row as the replay API shows it.
type Envelope struct {
	ID              int64           `json:"id"` // the outbox sequence number: the relay's publishing order
	EnvelopeID      string          `json:"envelopeId"`
	DetailType      string          `json:"detailType"`
	CollectionID    int64           `json:"collectionId"`
	State           State           `json:"state"`
	CreatedTime     int64           `json:"createdTime"`
	PublishedTime   *int64          `json:"publishedTime"`
	ParkedTime      *int64          `json:"parkedTime"`
	Attempts        int             `json:"attempts"`
	NextAttemptTime int64           `json:"nextAttemptTime"`
	LastError       string          `json:"lastError"`
	Detail          json.RawMessage `json:"detail"`
}

func envelopeOf(r Row) Envelope {
	st := StatePending
	switch {
	case r.ParkedAt != nil:
		st = StateParked
	case r.PublishedAt != nil:
		st = StatePublished
	}
	detail := json.RawMessage(r.Detail)
	if !json.Valid(detail) {
		// A row written by hand can hold anything; show it, as a string.
		detail, _ = json.Marshal(r.Detail)
	}
	return Envelope{
		ID: r.ID, EnvelopeID: r.EnvelopeID, DetailType: r.DetailType, CollectionID: r.CollectionID, State: st,
		CreatedTime: r.CreatedAt, PublishedTime: r.PublishedAt, ParkedTime: r.ParkedAt, Attempts: r.Attempts,
		NextAttemptTime: r.NextAttemptAt, LastError: r.LastError, Detail: detail,
	}
}

// Filter selects envelopes. Zero fields match everything; Since and Until
// bound createdTime (epoch ms) as [Since, Until).
type Filter struct {
	Since        int64
	Until        int64
	DetailType   string
	CollectionID int64
	State        State
}

func (f Filter) validate() error {
	var fs apperr.Fields
	if f.Since < 0 {
		fs.Add("since", "must be epoch milliseconds or an RFC 3339 time")
	}
	if f.Until < 0 {
		fs.Add("until", "must be epoch milliseconds or an RFC 3339 time")
	}
	if f.Since > 0 && f.Until > 0 && f.Until <= f.Since {
		fs.Add("until", "must be after since")
	}
	if f.DetailType != "" && !slices.Contains(DetailTypes(), f.DetailType) {
		fs.Add("detailType", fmt.Sprintf("must be one of %v", DetailTypes()))
	}
	if f.CollectionID < 0 {
		fs.Add("collectionId", "must be a positive integer")
	}
	switch f.State {
	case "", StatePending, StatePublished, StateParked:
	default:
		fs.Add("state", "must be one of [pending published parked]")
	}
	return fs.Err()
}

func (f Filter) apply(q *gorm.DB) *gorm.DB {
	if f.Since > 0 {
		q = q.Where("created_at >= ?", f.Since)
	}
	if f.Until > 0 {
		q = q.Where("created_at < ?", f.Until)
	}
	if f.DetailType != "" {
		q = q.Where("detail_type = ?", f.DetailType)
	}
	if f.CollectionID > 0 {
		q = q.Where("collection_id = ?", f.CollectionID)
	}
	switch f.State {
	case StatePending:
		q = q.Where("published_at IS NULL AND parked_at IS NULL")
	case StatePublished:
		q = q.Where("published_at IS NOT NULL AND parked_at IS NULL")
	case StateParked:
		q = q.Where("parked_at IS NOT NULL")
	}
	return q
}

// Store answers the replay API: it lists envelopes, counts them, and makes
// envelopes pending again so the relay publishes them once more.
type Store struct {
	db     *gorm.DB
	notify func()
}

// NewStore returns a Store on db. notify (the relay's Notify, or nil) is
// called after a replay so the relay starts at once.
func NewStore(db *gorm.DB, notify func()) *Store {
	return &Store{db: db, notify: notify}
}

// List returns up to limit envelopes matching f with id > after, in id
// (publishing) order.
func (s *Store) List(ctx context.Context, f Filter, after int64, limit int) ([]Envelope, error) {
	if err := f.validate(); err != nil {
		return nil, err
	}
	var rows []Row
	q := f.apply(s.db.WithContext(ctx).Model(&Row{}).Where("id > ?", after))
	if err := q.Order("id").Limit(limit).Find(&rows).Error; err != nil {
		return nil, fmt.Errorf("outbox: list: %w", err)
	}
	out := make([]Envelope, len(rows))
	for i, r := range rows {
		out[i] = envelopeOf(r)
	}
	return out, nil
}

// Get returns the envelope with envelopeID.
func (s *Store) Get(ctx context.Context, envelopeID string) (Envelope, error) {
	var rows []Row
	if err := s.db.WithContext(ctx).Where("envelope_id = ?", envelopeID).Limit(1).Find(&rows).Error; err != nil {
		return Envelope{}, fmt.Errorf("outbox: get: %w", err)
	}
	if len(rows) == 0 {
		return Envelope{}, apperr.New(apperr.NotFound, "envelope %s does not exist (or was pruned after outbox.retention)", envelopeID)
	}
	return envelopeOf(rows[0]), nil
}

// ReplayResult says what a replay did.
type ReplayResult struct {
	Replayed int64 `json:"replayed"` // envelopes made pending again
	Since    int64 `json:"since"`
	Until    int64 `json:"until,omitempty"`
}

// Replay makes every envelope created at or after f.Since (and before
// f.Until, when set; of f.DetailType and f.CollectionID, when set) pending
// again, parked ones included, and wakes the relay. The relay then publishes
// them again in their original order with their original envelopeId and
// time: the rows are the same rows, not copies. A consumer that already
// has an envelopeId drops the repeat; one recovering from an outage gets
// what it missed. Published rows older than outbox.retention are gone and
// cannot be replayed. f.Since 0 is the beginning: the API requires since,
// so a caller that gets everything asked for it.
func (s *Store) Replay(ctx context.Context, f Filter) (ReplayResult, error) {
	if f.State != "" {
		return ReplayResult{}, apperr.Invalid("a replay cannot filter by state",
			apperr.Detail{Field: "state", Reason: "is not supported: a replay takes every envelope in the range"})
	}
	if err := f.validate(); err != nil {
		return ReplayResult{}, err
	}
	// Since 0 and no other filter is every row, which gorm refuses to
	// update unless told the whole table is meant.
	q := f.apply(s.db.WithContext(ctx).Session(&gorm.Session{AllowGlobalUpdate: true}).Model(&Row{}))
	res := q.Updates(map[string]any{
		"published_at":    nil,
		"parked_at":       nil,
		"attempts":        0,
		"next_attempt_at": 0,
		"last_error":      "",
	})
	if res.Error != nil {
		return ReplayResult{}, fmt.Errorf("outbox: replay: %w", res.Error)
	}
	if s.notify != nil && res.RowsAffected > 0 {
		s.notify()
	}
	return ReplayResult{Replayed: res.RowsAffected, Since: f.Since, Until: f.Until}, nil
}

// Stats is how many envelopes wait and how many are parked. Both counts use
// partial indexes, so they stay cheap however many published rows the
// retention keeps.
type Stats struct {
	Pending int64 `json:"pending"`
	Parked  int64 `json:"parked"`
	// OldestPendingTime is the createdTime of the oldest pending envelope, so
	// an operator sees how far behind the relay is; null when none is pending.
	OldestPendingTime *int64 `json:"oldestPendingTime"`
}

// Stats counts pending and parked envelopes.
func (s *Store) Stats(ctx context.Context) (Stats, error) {
	var out Stats
	db := s.db.WithContext(ctx)
	err := db.Raw(`SELECT COUNT(*) AS pending, MIN(created_at) AS oldest_pending_time
FROM outbox WHERE published_at IS NULL AND parked_at IS NULL`).Scan(&out).Error
	if err == nil {
		err = db.Raw(`SELECT COUNT(*) FROM outbox WHERE parked_at IS NOT NULL`).Scan(&out.Parked).Error
	}
	if err != nil {
		return Stats{}, fmt.Errorf("outbox: stats: %w", err)
	}
	return out, nil
}

// ParseTime reads a time given as epoch milliseconds or as RFC 3339, the two
// forms the replay API accepts.
func ParseTime(s string) (int64, error) {
	if ms, err := strconv.ParseInt(s, 10, 64); err == nil {
		return ms, nil
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return 0, err
	}
	return t.UnixMilli(), nil
}
