package suppressions

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"time"

	"gorm.io/gorm"
	"gorm.io/gorm/clause"

	"github.com/notificationservice/notificationservice/internal/apperr"
	"github.com/notificationservice/notificationservice/internal/auth"
	"github.com/notificationservice/notificationservice/internal/invalidate"
	"github.com/notificationservice/notificationservice/internal/message"
	"github.com/notificationservice/notificationservice/internal/outbox"
	"github.com/notificationservice/notificationservice/internal/store"
)

// Service is the suppression list. As every domain service, it trusts the
// HTTP edge to have authorized the caller for the collection, and takes the
// caller only to record it as the author of a change.
type Service struct {
	db     *gorm.DB
	outbox *outbox.Writer
	now    func() time.Time
	inv    Invalidator        // nil: no cache reads the list
	absent *invalidate.Absent // nil: Find reads every collection

	// OnAdded, when set, is called after each commit that added entries,
	// once per source with how many (the app counts them in
	// notify_suppressions_added_total). Set it before use.
	OnAdded func(source string, n int)
}

// New returns the list on db, recording its changes with w. now is its
// clock (time.Now when nil).
func New(db *gorm.DB, w *outbox.Writer, now func() time.Time) *Service {
	if now == nil {
		now = time.Now
	}
	return &Service{db: db, outbox: w, now: now}
}

// Invalidator announces an addition to a collection's list to the caches
// that read it (invalidate.Bus): Publish inside the adding transaction,
// Committed after it.
type Invalidator interface {
	Publish(ctx context.Context, tx *gorm.DB, k invalidate.Key) error
	Committed(k invalidate.Key)
}

// WithCache has every addition announce itself on inv, and Find skip the
// collections absent knows to have an empty list (its kind is
// invalidate.KindSuppressions and it subscribes to inv's bus): the intake
// asks Find for every batch, and most collections suppress nobody.
func (s *Service) WithCache(inv Invalidator, absent *invalidate.Absent) *Service {
	s.inv, s.absent = inv, absent
	return s
}

// Create adds in to the list of collection collectionID, as an admin's
// entry (source api). An address already on the list for that channel is
// ALREADY_EXISTS (409): the existing entry keeps its reason and author, so
// a client that wants a different reason lifts the entry first.
func (s *Service) Create(ctx context.Context, p auth.Principal, collectionID int64, in Input) (Suppression, error) {
	in, err := in.validate()
	if err != nil {
		return Suppression{}, err
	}
	e := Suppression{
		CollectionID: collectionID, Address: in.Address, Channel: in.Channel, Reason: in.Reason,
		Source: SourceAPI, CreatedBy: p.UserID, CreatedTime: s.now().UnixMilli(),
	}
	err = s.inTx(ctx, func(tx *gorm.DB) error {
		var n int64
		if err := tx.WithContext(ctx).Table("collections").Where("id = ?", collectionID).Count(&n).Error; err != nil {
			return fmt.Errorf("suppressions: find collection %d: %w", collectionID, err)
		}
		if n == 0 {
			return apperr.New(apperr.NotFound, "collection %d does not exist", collectionID)
		}
		added, err := s.insert(ctx, tx, &e)
		if err != nil {
			return err
		}
		if !added {
			return apperr.New(apperr.AlreadyExists, "%s address %q is already suppressed in collection %d", e.Channel, e.Address, collectionID)
		}
		return s.record(ctx, tx, p, outbox.SuppressionCreate, e)
	})
	if err != nil {
		return Suppression{}, err
	}
	s.committed(collectionID)
	s.added(map[string]int{SourceAPI: 1})
	return e, nil
}

// Suppress adds automatic entries (a provider's bounce, spam report or
// STOP) in one transaction, each with its envelope, and returns how many
// were new. An address already on the list is left as it is, so a report
// the provider sends twice adds nothing the second time; entries with no
// address or an unknown source are ignored. Safe to retry.
func (s *Service) Suppress(ctx context.Context, entries []Entry) (int, error) {
	rows := make([]Suppression, 0, len(entries))
	now := s.now().UnixMilli()
	for _, en := range entries {
		addr := Normalize(en.Channel, en.Address)
		if addr == "" || en.CollectionID <= 0 || !apperr.ValidText(addr) || !apperr.ValidText(en.Reason) || !validSource(en.Source) {
			continue
		}
		rows = append(rows, Suppression{
			CollectionID: en.CollectionID, Address: apperr.Truncate(addr, MaxAddressLen), Channel: en.Channel,
			Reason: apperr.Truncate(en.Reason, MaxReasonLen), Source: en.Source, CreatedBy: en.Who, CreatedTime: now,
		})
	}
	if len(rows) == 0 {
		return 0, nil
	}
	bySource := map[string]int{}
	err := s.inTx(ctx, func(tx *gorm.DB) error {
		clear(bySource)
		cids := make([]int64, 0, len(rows))
		for _, r := range rows {
			cids = append(cids, r.CollectionID)
		}
		var live []int64
		if err := tx.WithContext(ctx).Table("collections").Where("id IN ?", cids).Pluck("id", &live).Error; err != nil {
			return fmt.Errorf("suppressions: find collections: %w", err)
		}
		for i := range rows {
			r := rows[i]
			if !slices.Contains(live, r.CollectionID) {
				continue // the collection is gone: nothing to suppress for
			}
			added, err := s.insert(ctx, tx, &r)
			if err != nil {
				return err
			}
			if !added {
				continue
			}
			bySource[r.Source]++
			if err := s.record(ctx, tx, auth.Principal{UserID: r.CreatedBy}, outbox.SuppressionCreate, r); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	for _, r := range rows {
		s.committed(r.CollectionID)
	}
	s.added(bySource)
	n := 0
	for _, k := range bySource {
		n += k
	}
	return n, nil
}

// insert adds e unless its (collection, channel, address) is on the list,
// and reports whether it did.
func (s *Service) insert(ctx context.Context, tx *gorm.DB, e *Suppression) (bool, error) {
	res := tx.WithContext(ctx).Clauses(clause.OnConflict{DoNothing: true}).Create(e)
	if res.Error != nil {
		return false, fmt.Errorf("suppressions: insert: %w", res.Error)
	}
	if res.RowsAffected > 0 && s.inv != nil {
		// PostgreSQL folds the same notification sent twice in one
		// transaction into one.
		if err := s.inv.Publish(ctx, tx, invalidate.Suppressions(e.CollectionID)); err != nil {
			return false, err
		}
	}
	return res.RowsAffected > 0, nil
}

// mayHave is rows without those of collections the cache knows to have an
// empty list; what it does not know it asks the database and learns.
func (s *Service) mayHave(ctx context.Context, rows []findRow) ([]findRow, error) {
	if s.absent == nil {
		return rows, nil
	}
	var cids []int64
	for _, r := range rows {
		if !slices.Contains(cids, r.CID) {
			cids = append(cids, r.CID)
		}
	}
	read, err := s.absent.MayHave(ctx, cids, func(ctx context.Context, cids []int64) (map[int64]bool, error) {
		return store.CollectionsWithRows(ctx, s.db, "suppressions", cids)
	})
	if err != nil {
		return nil, fmt.Errorf("suppressions: find: %w", err)
	}
	if len(read) == len(cids) {
		return rows, nil
	}
	kept := rows[:0]
	for _, r := range rows {
		if slices.Contains(read, r.CID) {
			kept = append(kept, r)
		}
	}
	return kept, nil
}

// committed tells this instance's caches, once an addition to
// collectionID's list committed and before its caller hears of it, so a
// send made next on this instance reads the entry.
func (s *Service) committed(collectionID int64) {
	if s.inv != nil {
		s.inv.Committed(invalidate.Suppressions(collectionID))
	}
}

// List returns one page of a collection's list in id order, only channel's
// entries when channel is not "".
func (s *Service) List(ctx context.Context, _ auth.Principal, collectionID int64, channel string, pg Page) ([]Suppression, error) {
	out := []Suppression{}
	q := s.db.WithContext(ctx).Where("collection_id = ? AND id > ?", collectionID, pg.After)
	if channel != "" {
		q = q.Where("channel = ?", channel)
	}
	if err := q.Order("id").Limit(pg.Limit).Find(&out).Error; err != nil {
		return nil, fmt.Errorf("suppressions: list: %w", err)
	}
	return out, nil
}

// Get returns the entries for address in a collection: one per channel it
// is suppressed on, only channel's when channel is not "". None is
// NOT_FOUND.
func (s *Service) Get(ctx context.Context, _ auth.Principal, collectionID int64, address, channel string) ([]Suppression, error) {
	return s.find(ctx, s.db, collectionID, address, channel)
}

// Delete lifts address from a collection's list: on channel only when
// channel is not "", else on every channel it is suppressed on. Each lifted
// entry records a delete envelope. None is NOT_FOUND.
func (s *Service) Delete(ctx context.Context, p auth.Principal, collectionID int64, address, channel string) (Deleted, error) {
	d := outbox.NewDeleted(DeletedCode, DeletedMessage, s.now())
	var lifted []Suppression
	err := s.inTx(ctx, func(tx *gorm.DB) error {
		found, err := s.find(ctx, tx, collectionID, address, channel)
		if err != nil {
			return err
		}
		lifted = found
		for _, e := range found {
			if err := tx.WithContext(ctx).Delete(&Suppression{}, e.ID).Error; err != nil {
				return fmt.Errorf("suppressions: delete %d: %w", e.ID, err)
			}
			if err := s.record(ctx, tx, p, outbox.SuppressionDelete, e); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return Deleted{}, err
	}
	return Deleted{ResponseCode: d.ResponseCode, ResponseMessage: d.ResponseMessage, TimeStamp: d.TimeStamp, Suppressions: lifted}, nil
}

// find reads address's entries: each channel's stored form of it (an email
// lower-cased, the others as given).
func (s *Service) find(ctx context.Context, db *gorm.DB, collectionID int64, address, channel string) ([]Suppression, error) {
	var f apperr.Fields
	if f.Text("address", address) {
		f.MaxLen("address", address, MaxAddressLen)
	}
	if channel != "" {
		f.OneOf("channel", channel, message.Email, message.SMS, message.Push)
	}
	if err := f.Err(); err != nil {
		return nil, err
	}
	out := []Suppression{}
	q := db.WithContext(ctx).Where("collection_id = ? AND ((channel = ? AND address = ?) OR (channel <> ? AND address = ?))",
		collectionID, message.Email, Normalize(message.Email, address), message.Email, Normalize(message.SMS, address))
	if channel != "" {
		q = q.Where("channel = ?", channel)
	}
	if err := q.Order("id").Find(&out).Error; err != nil {
		return nil, fmt.Errorf("suppressions: get: %w", err)
	}
	if len(out) == 0 {
		on := ""
		if channel != "" {
			on = " on channel " + channel
		}
		return nil, apperr.New(apperr.NotFound, "address %q is not suppressed%s in collection %d", apperr.Truncate(address, 200), on, collectionID)
	}
	return out, nil
}

// findColumns are the fields of one key in Find's parameter.
var findColumns = store.Columns("cid bigint", "channel text", "address text")

type findRow struct {
	CID     int64  `json:"cid"`
	Channel string `json:"channel"`
	Address string `json:"address"`
}

// Find returns, for each key, its entry, or nil when the key's address is
// not suppressed on its channel in its collection: one query for all the
// keys, whatever their number (planning asks once per batch).
func (s *Service) Find(ctx context.Context, keys []Key) ([]*Suppression, error) {
	out := make([]*Suppression, len(keys))
	if len(keys) == 0 {
		return out, nil
	}
	type at struct {
		cid           int64
		channel, addr string
	}
	idx := make(map[at][]int, len(keys))
	rows := make([]findRow, 0, len(keys))
	for i, k := range keys {
		a := at{k.CollectionID, k.Channel, Normalize(k.Channel, k.Address)}
		if a.addr == "" || !apperr.ValidText(a.addr) {
			continue
		}
		if _, ok := idx[a]; !ok {
			rows = append(rows, findRow{a.cid, a.channel, a.addr})
		}
		idx[a] = append(idx[a], i)
	}
	rows, err := s.mayHave(ctx, rows)
	if err != nil {
		return nil, err
	}
	if len(rows) == 0 {
		return out, nil
	}
	pg := store.IsPostgres(s.db)
	sel, from := store.BatchRows(pg, findColumns)
	var args []any
	if pg {
		// One array per column: PostgreSQL reads them without parsing.
		cids, channels, addrs := make(store.Int64s, len(rows)), make(store.Texts, len(rows)), make(store.Texts, len(rows))
		for i, r := range rows {
			cids[i], channels[i], addrs[i] = r.CID, r.Channel, r.Address
		}
		args = []any{cids, channels, addrs}
	} else {
		doc, err := json.Marshal(rows)
		if err != nil {
			return nil, err
		}
		args = []any{string(doc)}
	}
	q := `SELECT s.* FROM suppressions s JOIN (SELECT ` + sel + ` FROM ` + from + `) AS k
ON s.collection_id = k.cid AND s.channel = k.channel AND s.address = k.address`
	var found []Suppression
	// Find, not Scan: gorm's Scan renders the statement with its
	// parameters inlined, for a trace it then discards, on every call.
	if err := s.db.WithContext(ctx).Raw(q, args...).Find(&found).Error; err != nil {
		return nil, fmt.Errorf("suppressions: find %d addresses: %w", len(rows), err)
	}
	for i := range found {
		e := &found[i]
		for _, j := range idx[at{e.CollectionID, e.Channel, e.Address}] {
			out[j] = e
		}
	}
	return out, nil
}

func (s *Service) inTx(ctx context.Context, fn func(tx *gorm.DB) error) error {
	if err := s.db.WithContext(ctx).Transaction(fn); err != nil {
		if _, ok := apperr.As(err); ok {
			return err
		}
		return fmt.Errorf("suppressions: transaction: %w", err)
	}
	s.outbox.Committed()
	return nil
}

// record writes the envelope of a change to e in tx: create and delete
// both carry the entry ({"suppression": …}), so a consumer of a delete
// knows which address was lifted.
func (s *Service) record(ctx context.Context, tx *gorm.DB, p auth.Principal, detailType string, e Suppression) error {
	return s.outbox.Record(ctx, tx, outbox.Change{
		DetailType: detailType, EntityID: strconv.FormatInt(e.ID, 10), CollectionID: e.CollectionID,
		Payload: map[string]any{"suppression": e}, Actor: p,
		Href: Href(e),
	})
}

// Href is the API path of e.
func Href(e Suppression) string {
	return fmt.Sprintf("/v1/collections/%d/suppressions/%s?channel=%s", e.CollectionID, url.PathEscape(e.Address), e.Channel)
}

func (s *Service) added(bySource map[string]int) {
	if s.OnAdded == nil {
		return
	}
	for src, n := range bySource {
		if n > 0 {
			s.OnAdded(src, n)
		}
	}
}

func validSource(src string) bool {
	for _, s := range Sources() {
		if s == src {
			return true
		}
	}
	return false
}
