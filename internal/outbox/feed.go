package outbox

import (
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"

	"gorm.io/gorm"
	"gorm.io/gorm/clause"

	"github.com/notificationservice/notificationservice/internal/apperr"
	"github.com/notificationservice/notificationservice/internal/auth"
	"github.com/notificationservice/notificationservice/internal/store"
)

// The event feed (seed 003) is the outbox table's second reader beside the
// relay: named consumers that cannot read EventBridge pull the same
// envelopes, in id order, acknowledge them one by one, and reset to a time
// after an outage. Each consumer's processed set is a low-water mark plus
// the ids acknowledged above it (outbox_feed_consumers, outbox_feed_acks), so
// a consumer that acknowledges in order keeps O(1) rows.

// Feed limits.
const (
	FeedDefaultLimit = 100
	FeedMaxLimit     = 1000
)

// consumerName is what a consumer may be called: it names a row, appears in
// logs and metrics, and travels in a query string.
var consumerName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

// consumerReason explains consumerName in a 400.
const consumerReason = "is required: 1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit"

// Category is the entity segment of a detail type:
// notificationservice/action/create is in category "action".
func Category(detailType string) string {
	c, _, _ := strings.Cut(strings.TrimPrefix(detailType, DetailTypePrefix), "/")
	return c
}

// Categories lists the feed's categories, one per entity that publishes
// envelopes, in DetailTypes order.
func Categories() []string {
	var out []string
	for _, dt := range DetailTypes() {
		if c := Category(dt); !slices.Contains(out, c) {
			out = append(out, c)
		}
	}
	return out
}

// Event is an envelope as EventBridge delivers it to a target (and as the
// log sink writes it): id is the envelopeId, stable across retries.
type Event struct {
	Version    string          `json:"version"`
	ID         string          `json:"id"`
	DetailType string          `json:"detail-type"`
	Source     string          `json:"source"`
	Account    string          `json:"account"`
	Time       string          `json:"time"`
	Region     string          `json:"region"`
	Resources  []string        `json:"resources"`
	Detail     json.RawMessage `json:"detail"`
}

// FeedEvent is an Event with its outbox sequence number, which pages the
// feed and is not shown.
type FeedEvent struct {
	Seq int64 `json:"-"`
	Event
}

// FeedPage is one page of the feed: GET /v1/feed.
type FeedPage struct {
	Events []FeedEvent `json:"events"`
	// NextCursor reads on past this page without acknowledging it; empty
	// on the last page.
	NextCursor string `json:"nextCursor"`
}

// AckResult answers an acknowledgement.
type AckResult struct {
	EnvelopeID string `json:"envelopeId"`
	// EarliestUnprocessed is the time (RFC 3339, UTC) of the consumer's first
	// unprocessed event in commit order, nil when none is left: record it,
	// and after a crash reset to it to process again what the crash lost.
	EarliestUnprocessed *string `json:"earliestUnprocessed"`
}

// ResetResult answers a reset.
type ResetResult struct {
	Consumer string `json:"consumer"`
	Since    string `json:"since"` // RFC 3339, UTC
	Reset    int64  `json:"reset"` // processed events made unprocessed again
}

// FeedQuery is one page request.
type FeedQuery struct {
	Consumer string
	Category string // "" = the consumer's category (all, unless it was created with one)
	After    int64  // a page cursor: the Seq of the previous page's last event
	Limit    int
}

// feedConsumer is one outbox_feed_consumers row (migrations/*/00011_feed.sql).
type feedConsumer struct {
	Name         string `gorm:"column:name;primaryKey"`
	Category     string `gorm:"column:category"`
	AckedThrough int64  `gorm:"column:acked_through"`
	SettledID    int64  `gorm:"column:settled_id"`
	ProbeID      int64  `gorm:"column:probe_id"`
	ProbeXID     int64  `gorm:"column:probe_xid"`
	CreatedAt    int64  `gorm:"column:created_at;autoCreateTime:false"`
	UpdatedAt    int64  `gorm:"column:updated_at;autoUpdateTime:false"`
}

func (feedConsumer) TableName() string { return "outbox_feed_consumers" }

// notAcked keeps the outbox rows the consumer (the argument) has not
// acknowledged above its low-water mark.
const notAcked = "NOT EXISTS (SELECT 1 FROM outbox_feed_acks a WHERE a.consumer = ? AND a.outbox_id = outbox.id)"

// Feed serves the event feed.
type Feed struct {
	db                      *gorm.DB
	postgres                bool
	source, account, region string
	now                     func() time.Time
}

// NewFeed returns a Feed on db. source, account and region fill the fields
// EventBridge adds to a delivered event (outbox.source, outbox.account,
// outbox.region), so a feed event is the event EventBridge would deliver.
func NewFeed(db *gorm.DB, source, account, region string, now func() time.Time) *Feed {
	if now == nil {
		now = time.Now
	}
	return &Feed{db: db, postgres: store.IsPostgres(db), source: source, account: account, region: region, now: now}
}

// scope is what one consumer, with the caller's token, sees of the outbox.
type scope struct {
	all         bool    // a super admin: every collection
	collections []int64 // else the collections the token may read
	detailTypes []string
}

func scopeOf(p auth.Principal, category string) scope {
	s := scope{all: p.SuperAdmin()}
	if !s.all {
		for _, id := range p.Collections {
			if p.CanRead(id) {
				s.collections = append(s.collections, id)
			}
		}
	}
	if category != "" {
		for _, dt := range DetailTypes() {
			if Category(dt) == category {
				s.detailTypes = append(s.detailTypes, dt)
			}
		}
	}
	return s
}

func (s scope) apply(q *gorm.DB) *gorm.DB {
	if !s.all {
		if len(s.collections) == 0 {
			return q.Where("1 = 0")
		}
		q = q.Where("collection_id IN ?", s.collections)
	}
	if len(s.detailTypes) > 0 {
		q = q.Where("detail_type IN ?", s.detailTypes)
	}
	return q
}

func validConsumer(name string) error {
	if !consumerName.MatchString(name) {
		return apperr.Invalid("consumer is missing or invalid", apperr.Detail{Field: "consumer", Reason: consumerReason})
	}
	return nil
}

// consumer returns the consumer's row, creating it (reading category) on
// first use, locked for the rest of tx on PostgreSQL.
func (f *Feed) consumer(ctx context.Context, tx *gorm.DB, name, category string) (feedConsumer, error) {
	now := f.now().UnixMilli()
	c := feedConsumer{Name: name, Category: category, CreatedAt: now, UpdatedAt: now}
	if err := tx.WithContext(ctx).Clauses(clause.OnConflict{DoNothing: true}).Create(&c).Error; err != nil {
		return c, fmt.Errorf("outbox: feed consumer: %w", err)
	}
	q := tx.WithContext(ctx)
	if f.postgres {
		q = q.Clauses(clause.Locking{Strength: "UPDATE"})
	}
	if err := q.Where("name = ?", name).Take(&c).Error; err != nil {
		return c, fmt.Errorf("outbox: feed consumer: %w", err)
	}
	return c, nil
}

// Read returns up to q.Limit envelopes the consumer has not acknowledged,
// of the collections p may read, in id order, after q.After.
func (f *Feed) Read(ctx context.Context, p auth.Principal, q FeedQuery) ([]FeedEvent, error) {
	var fields apperr.Fields
	if !consumerName.MatchString(q.Consumer) {
		fields.Add("consumer", consumerReason)
	}
	if q.Category != "" && !slices.Contains(Categories(), q.Category) {
		fields.Add("category", fmt.Sprintf("must be one of %v", Categories()))
	}
	if q.Limit < 1 || q.Limit > FeedMaxLimit+1 { // +1: the caller's look-ahead row
		fields.Add("limit", fmt.Sprintf("must be an integer from 1 to %d", FeedMaxLimit))
	}
	if err := fields.Err(); err != nil {
		return nil, err
	}
	var rows []Row
	err := f.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		c, err := f.consumer(ctx, tx, q.Consumer, q.Category)
		if err != nil {
			return err
		}
		if q.Category != "" && q.Category != c.Category {
			reads := "every category"
			if c.Category != "" {
				reads = "category " + c.Category
			}
			return apperr.Invalid("consumer "+q.Consumer+" reads "+reads,
				apperr.Detail{Field: "category", Reason: "a consumer reads one category, fixed when it is first used; name another consumer for another category, or leave category out"})
		}
		after := max(c.AckedThrough, q.After)
		sel := scopeOf(p, c.Category).apply(tx.Model(&Row{}).Where("id > ?", after)).Where(notAcked, c.Name)
		if err := sel.Order("id").Limit(q.Limit).Find(&rows).Error; err != nil {
			return fmt.Errorf("outbox: feed read: %w", err)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	out := make([]FeedEvent, len(rows))
	for i, r := range rows {
		out[i] = FeedEvent{Seq: r.ID, Event: f.event(r)}
	}
	return out, nil
}

// event is r as EventBridge would deliver it.
func (f *Feed) event(r Row) Event {
	e := EntryFromRow(r, f.source, "")
	return Event{
		Version: "0", ID: r.EnvelopeID, DetailType: r.DetailType, Source: f.source, Account: f.account,
		Time: e.Time.Format(time.RFC3339), Region: f.region, Resources: []string{}, Detail: envelopeOf(r).Detail,
	}
}

// Ack marks the envelope processed for the consumer and returns the time of
// its earliest unprocessed event. An envelope p may not read is NOT_FOUND,
// as one that does not exist (or was pruned) is.
func (f *Feed) Ack(ctx context.Context, p auth.Principal, consumer, envelopeID string) (AckResult, error) {
	if err := validConsumer(consumer); err != nil {
		return AckResult{}, err
	}
	out := AckResult{EnvelopeID: envelopeID}
	err := f.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		var rows []Row
		if err := scopeOf(p, "").apply(tx.Model(&Row{}).Select("id").Where("envelope_id = ?", envelopeID)).Limit(1).Find(&rows).Error; err != nil {
			return fmt.Errorf("outbox: feed ack: %w", err)
		}
		if len(rows) == 0 {
			return apperr.New(apperr.NotFound, "envelope %s does not exist, is not in a collection the caller may read, or was pruned after outbox.retention", envelopeID)
		}
		c, err := f.consumer(ctx, tx, consumer, "")
		if err != nil {
			return err
		}
		if rows[0].ID > c.AckedThrough {
			ack := map[string]any{"consumer": c.Name, "outbox_id": rows[0].ID}
			if err := tx.Table("outbox_feed_acks").Clauses(clause.OnConflict{DoNothing: true}).Create(ack).Error; err != nil {
				return fmt.Errorf("outbox: feed ack: %w", err)
			}
		}
		sc := scopeOf(p, c.Category)
		if err := f.compact(ctx, tx, &c, sc); err != nil {
			return err
		}
		var first []Row
		err = sc.apply(tx.Model(&Row{}).Select("created_at").Where("id > ?", c.AckedThrough)).Where(notAcked, c.Name).
			Order("id").Limit(1).Find(&first).Error
		if err != nil {
			return fmt.Errorf("outbox: feed ack: %w", err)
		}
		if len(first) == 1 {
			t := time.UnixMilli(first[0].CreatedAt).UTC().Format(time.RFC3339Nano)
			out.EarliestUnprocessed = &t
		}
		return nil
	})
	return out, err
}

// compact moves the consumer's low-water mark over every event it has
// processed (or may not see), up to the settled bound, and forgets the acks
// below it: one row update and one delete, whatever the backlog.
func (f *Feed) compact(ctx context.Context, tx *gorm.DB, c *feedConsumer, sc scope) error {
	if err := f.settle(ctx, tx, c); err != nil {
		return err
	}
	var first *int64
	err := sc.apply(tx.WithContext(ctx).Model(&Row{}).Select("MIN(id)").Where("id > ? AND id <= ?", c.AckedThrough, c.SettledID)).
		Where(notAcked, c.Name).Scan(&first).Error
	if err != nil {
		return fmt.Errorf("outbox: feed compact: %w", err)
	}
	mark := c.SettledID
	if first != nil {
		mark = *first - 1
	}
	if mark > c.AckedThrough {
		c.AckedThrough = mark
		if err := tx.Exec("DELETE FROM outbox_feed_acks WHERE consumer = ? AND outbox_id <= ?", c.Name, mark).Error; err != nil {
			return fmt.Errorf("outbox: feed compact: %w", err)
		}
	}
	c.UpdatedAt = f.now().UnixMilli()
	if err := tx.Save(c).Error; err != nil {
		return fmt.Errorf("outbox: feed compact: %w", err)
	}
	return nil
}

// settle advances c.SettledID, the id below which no envelope can still
// appear. Ids are taken when a row is inserted, not when it commits: on
// PostgreSQL a transaction may still commit id 5 after id 6 is visible,
// so the low-water mark must not pass 5 while that transaction may be in
// flight, or the consumer would never see it. A probe records the highest
// visible id and the snapshot's xmax; once the oldest running transaction
// (xmin) is past that xmax, every transaction that could hold a lower id has
// ended, and the probe's id is settled. SQLite has one writer at a time, so
// every id up to the highest visible one is final.
func (f *Feed) settle(ctx context.Context, tx *gorm.DB, c *feedConsumer) error {
	db := tx.WithContext(ctx)
	if !f.postgres {
		var maxID int64
		if err := db.Raw("SELECT COALESCE(MAX(id), 0) FROM outbox").Scan(&maxID).Error; err != nil {
			return fmt.Errorf("outbox: feed settle: %w", err)
		}
		c.SettledID = max(c.SettledID, maxID)
		return nil
	}
	if c.ProbeXID > 0 {
		var xmin int64
		if err := db.Raw("SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint").Scan(&xmin).Error; err != nil {
			return fmt.Errorf("outbox: feed settle: %w", err)
		}
		if xmin < c.ProbeXID {
			return nil // a transaction older than the probe may still commit below it
		}
		c.SettledID = max(c.SettledID, c.ProbeID)
	}
	var probe struct {
		ID  int64
		XID int64
	}
	err := db.Raw("SELECT COALESCE(MAX(id), 0) AS id, pg_snapshot_xmax(pg_current_snapshot())::text::bigint AS xid FROM outbox").
		Scan(&probe).Error
	if err != nil {
		return fmt.Errorf("outbox: feed settle: %w", err)
	}
	c.ProbeID, c.ProbeXID = probe.ID, probe.XID
	return nil
}

// Reset marks every event created at or after since (epoch ms) unprocessed
// again for the consumer, exactly those: events before since that it had
// processed stay processed.
func (f *Feed) Reset(ctx context.Context, p auth.Principal, consumer string, since int64) (ResetResult, error) {
	if err := validConsumer(consumer); err != nil {
		return ResetResult{}, err
	}
	out := ResetResult{Consumer: consumer, Since: time.UnixMilli(since).UTC().Format(time.RFC3339Nano)}
	err := f.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		c, err := f.consumer(ctx, tx, consumer, "")
		if err != nil {
			return err
		}
		err = scopeOf(p, c.Category).apply(tx.Model(&Row{}).Where("created_at >= ?", since)).
			Where("id <= ? OR NOT "+notAcked, c.AckedThrough, c.Name).Count(&out.Reset).Error
		if err != nil {
			return fmt.Errorf("outbox: feed reset: %w", err)
		}
		var first *int64
		if err := tx.Model(&Row{}).Select("MIN(id)").Where("created_at >= ? AND id <= ?", since, c.AckedThrough).Scan(&first).Error; err != nil {
			return fmt.Errorf("outbox: feed reset: %w", err)
		}
		if first != nil {
			// Lower the mark below the first event to redo, and keep
			// processed, as explicit acks, the older events it uncovers
			// (created_at is not strictly in id order across instances).
			mark := *first - 1
			err := tx.Exec(`INSERT INTO outbox_feed_acks (consumer, outbox_id)
SELECT ?, id FROM outbox WHERE id > ? AND id <= ? AND created_at < ? ON CONFLICT DO NOTHING`, c.Name, mark, c.AckedThrough, since).Error
			if err != nil {
				return fmt.Errorf("outbox: feed reset: %w", err)
			}
			c.AckedThrough = mark
		}
		err = tx.Exec(`DELETE FROM outbox_feed_acks WHERE consumer = ?
AND EXISTS (SELECT 1 FROM outbox o WHERE o.id = outbox_feed_acks.outbox_id AND o.created_at >= ?)`, c.Name, since).Error
		if err != nil {
			return fmt.Errorf("outbox: feed reset: %w", err)
		}
		c.UpdatedAt = f.now().UnixMilli()
		if err := tx.Save(&c).Error; err != nil {
			return fmt.Errorf("outbox: feed reset: %w", err)
		}
		return nil
	})
	return out, err
}
