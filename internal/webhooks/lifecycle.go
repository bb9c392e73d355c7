package webhooks

import (
	"context"
	"fmt"
	"strconv"
	"sync/atomic"
	"time"

	"gorm.io/gorm"
	"gorm.io/gorm/clause"

	"github.com/notificationservice/notificationservice/internal/invalidate"
	"github.com/notificationservice/notificationservice/internal/outbox"
)

// The delivery lifecycle events (DELIVERY_*, and NOTIFICATION_ACCEPTED for
// queue sends) do not pass through the outbox: the delivery workers, the
// intake and the provider status reports write them into webhook_messages
// themselves, in the transaction of the status change, and only for
// collections with an ACTIVE endpoint wanting the type. A status change of
// a collection without endpoints (the common case) costs one lookup in the
// subscriber snapshot below, and no row (docs/webhooks.md says why).

// staleAfter bounds how long the snapshot is trusted while the invalidation
// bus cannot promise to deliver every change (its PostgreSQL listener is
// down): it is read again at most this often, so an endpoint validated on
// another instance meanwhile misses at most this much of its events.
const staleAfter = time.Second

// snapshot is every ACTIVE endpoint's subscription, by collection.
type snapshot struct {
	byCollection map[int64][]Endpoint
	loaded       time.Time
}

// subscribers answers "does collection C have an ACTIVE endpoint wanting
// type T?" from memory. It is an invalidate.Subscriber: an endpoint
// mutation (here or, on PostgreSQL, on another instance) drops the
// snapshot, and the next question reads the webhooks table again (a few
// rows: endpoints are configuration).
type subscribers struct {
	db   *gorm.DB
	now  func() time.Time
	snap atomic.Pointer[snapshot]
	live atomic.Bool
	gen  atomic.Uint64
}

func newSubscribers(db *gorm.DB, now func() time.Time) *subscribers {
	s := &subscribers{db: db, now: now}
	s.live.Store(true) // until a bus says otherwise (SQLite: always)
	return s
}

// Evict drops the snapshot (any endpoint key: the snapshot is one piece).
func (s *subscribers) Evict(k invalidate.Key) {
	if k.Kind != invalidate.KindWebhooks {
		return
	}
	s.drop()
}

// Reset drops the snapshot; while not live it is trusted for staleAfter only.
func (s *subscribers) Reset(live bool) {
	s.live.Store(live)
	s.drop()
}

func (s *subscribers) drop() {
	s.gen.Add(1)
	s.snap.Store(nil)
}

// any reports whether any collection has an ACTIVE endpoint, or true when
// the table cannot be read.
func (s *subscribers) any(ctx context.Context) bool {
	snap, err := s.current(ctx, s.db)
	return err != nil || len(snap.byCollection) > 0
}

// current is the snapshot, read again through db when dropped or stale.
func (s *subscribers) current(ctx context.Context, db *gorm.DB) (*snapshot, error) {
	snap := s.snap.Load()
	if snap == nil || (!s.live.Load() && s.now().Sub(snap.loaded) > staleAfter) {
		return s.reload(ctx, db)
	}
	return snap, nil
}

// wants reports whether collectionID has an ACTIVE endpoint subscribed to
// eventType. When the table cannot be read it answers true: the caller then
// records in the transaction, which reads the endpoints again and fails
// with the database, rather than lose an event.
func (s *subscribers) wants(ctx context.Context, db *gorm.DB, collectionID int64, eventType string) bool {
	snap, err := s.current(ctx, db)
	if err != nil {
		return true
	}
	for _, e := range snap.byCollection[collectionID] {
		if e.wants(eventType) {
			return true
		}
	}
	return false
}

// reload reads the table through db, the caller's handle: inside a status
// change's transaction, that transaction, whose connection the caller
// holds. Neither a connection of its own nor a lock shared with other
// callers: a reload that waited for a pool connection (or for another
// caller's reload) while every connection was held by callers waiting on
// it hung them all, the provider callbacks with more requests at once than
// database.maxOpenConns (TestConcurrentCallbacksDoNotExhaustThePool).
// Callers that find the snapshot gone at the same moment each read it, a
// few rows (endpoints are configuration).
func (s *subscribers) reload(ctx context.Context, db *gorm.DB) (*snapshot, error) {
	gen := s.gen.Load()
	var eps []Endpoint
	if err := db.WithContext(ctx).Select("id", "collection_id", "event_types").
		Where("state = ?", StateActive).Find(&eps).Error; err != nil {
		return nil, fmt.Errorf("webhooks: read subscriptions: %w", err)
	}
	snap := &snapshot{byCollection: map[int64][]Endpoint{}, loaded: s.now()}
	for _, e := range eps {
		snap.byCollection[e.CollectionID] = append(snap.byCollection[e.CollectionID], e)
	}
	// An eviction while the table was read may have been missed by it: use
	// what was read for this answer, but keep nothing.
	if s.gen.Load() == gen {
		s.snap.Store(snap)
	}
	return snap, nil
}

// Wants reports, from memory, whether collectionID has an ACTIVE endpoint
// subscribed to eventType: the delivery workers, the intake and the status
// reports ask it for every status change, and record an event only when it
// says yes. A read of the endpoints it needs goes through db, the caller's
// (dispatch.Events).
func (x *Sender) Wants(ctx context.Context, db *gorm.DB, collectionID int64, eventType string) bool {
	return x.s.subs.wants(ctx, db, collectionID, eventType)
}

// Record writes evs (each for the collection its CompanyID names) as
// webhook messages for every ACTIVE endpoint of that collection subscribed
// to its type, in tx: the caller's transaction, the one that changed the
// status, so an event exists if and only if its change committed. Endpoints
// are read in tx, not from the snapshot, so a message never names an
// endpoint deleted since. An event already recorded for an endpoint (the
// same id) is not recorded again.
func (x *Sender) Record(ctx context.Context, tx *gorm.DB, evs []outbox.TypedEvent) error {
	if len(evs) == 0 {
		return nil
	}
	ids := make([]int64, 0, 1)
	seen := map[int64]bool{}
	for _, ev := range evs {
		id, err := strconv.ParseInt(ev.CompanyID, 10, 64)
		if err != nil {
			return fmt.Errorf("webhooks: event %s: collection %q: %w", ev.ID, ev.CompanyID, err)
		}
		if !seen[id] {
			seen[id] = true
			ids = append(ids, id)
		}
	}
	var eps []Endpoint
	if err := tx.WithContext(ctx).Select("id", "collection_id", "event_types").
		Where("collection_id IN ? AND state = ?", ids, StateActive).Find(&eps).Error; err != nil {
		return fmt.Errorf("webhooks: endpoints of %v: %w", ids, err)
	}
	now := x.s.now().UnixMilli()
	var ms []message
	for _, ev := range evs {
		var body []byte
		for _, ep := range eps {
			if strconv.FormatInt(ep.CollectionID, 10) != ev.CompanyID || !ep.wants(ev.Type) {
				continue
			}
			if body == nil {
				var err error
				if body, err = ev.MarshalJSON(); err != nil {
					return err
				}
			}
			ms = append(ms, message{EndpointID: ep.ID, EventID: ev.ID, EventType: ev.Type, Body: string(body),
				Status: messagePending, NextAttemptAt: now, CreatedAt: now})
		}
	}
	if len(ms) == 0 {
		return nil
	}
	if err := tx.WithContext(ctx).Clauses(clause.OnConflict{DoNothing: true}).CreateInBatches(&ms, 500).Error; err != nil {
		return fmt.Errorf("webhooks: insert %d lifecycle messages: %w", len(ms), err)
	}
	return nil
}

// Committed wakes the sender after a transaction that recorded events
// committed.
func (x *Sender) Committed() { x.Notify() }
