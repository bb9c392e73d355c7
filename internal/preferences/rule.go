package preferences

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"

	"gorm.io/gorm"

	"github.com/notificationservice/notificationservice/internal/dispatch"
	"github.com/notificationservice/notificationservice/internal/dispatch/planning"
	"github.com/notificationservice/notificationservice/internal/invalidate"
	"github.com/notificationservice/notificationservice/internal/message"
	"github.com/notificationservice/notificationservice/internal/store"
)

// Rule is the preferences planning rule (a planning.BatchRule): it reads
// the preferences of every recipient of a batch in one query, then skips
// each delivery a preference opts out of (dispatch.ReasonOptedOut, the
// preference as its detail), unless the event is required.
type Rule struct {
	db     *gorm.DB
	absent *invalidate.Absent // nil: every batch reads
}

// NewRule returns the rule reading db.
func NewRule(db *gorm.DB) *Rule { return &Rule{db: db} }

// WithAbsent has the rule skip its read for the collections a knows to
// have no preferences stored (a's kind is invalidate.KindPreferences; the
// Service announces every change on the bus a subscribes to).
func (r *Rule) WithAbsent(a *invalidate.Absent) *Rule {
	r.absent = a
	return r
}

// Keys are the recipient keys whose preferences apply to rc on channel, in
// the order they are checked: its id (the producer's user id), then its
// address on the channel (the To addresses of an email, the phone, the push
// id). Both kinds apply: an address-keyed preference (an unsubscribe link of
// a send without id, an earlier producer that knew only the address) still
// stops a send to that address after the producer starts sending ids.
func Keys(rc *dispatch.Recipient, channel string) []string {
	keys := make([]string, 0, 2)
	add := func(k string) {
		if k = Key(k); k != "" && !slices.Contains(keys, k) {
			keys = append(keys, k)
		}
	}
	add(rc.ID)
	switch channel {
	case message.Email:
		for _, a := range rc.To() {
			add(a.Email)
		}
	case message.SMS:
		add(rc.Phone)
	case message.Push:
		add(rc.PushID)
	}
	return keys
}

// ForBatch implements planning.BatchRule: one query for every (collection,
// recipient key) of ins.
func (r *Rule) ForBatch(ctx context.Context, ins []planning.Input) (planning.Rule, error) {
	var cids []int64
	var keys []string
	seen := map[string]bool{}
	for i := range ins {
		if !slices.Contains(cids, ins[i].CollectionID) {
			cids = append(cids, ins[i].CollectionID)
		}
		for j := range ins[i].Notification.Recipients {
			rc := &ins[i].Notification.Recipients[j]
			for _, ch := range Channels {
				for _, k := range Keys(rc, ch) {
					if !seen[k] {
						seen[k] = true
						keys = append(keys, k)
					}
				}
			}
		}
	}
	b := batch{}
	if len(keys) == 0 {
		return b, nil
	}
	cids, err := r.absent.MayHave(ctx, cids, func(ctx context.Context, cids []int64) (map[int64]bool, error) {
		return store.CollectionsWithRows(ctx, r.db, "preferences", cids)
	})
	if err != nil {
		return nil, fmt.Errorf("preferences: read for planning: %w", err)
	}
	if len(cids) == 0 {
		return b, nil // no collection of the batch has a preference stored
	}
	var rows []row
	// Every pair of the two lists, not only those the batch has: a batch is
	// almost always one collection, and one statement beats a tuple list
	// SQLite and PostgreSQL spell differently. Each list is one JSON
	// parameter, not IN (?, ?, …): the statement's text is then the same
	// whatever the batch, so it is prepared once (an IN list made a new
	// prepared statement for every count of keys), and no batch outgrows
	// the bind parameters a statement may have.
	cj, err := json.Marshal(cids)
	if err != nil {
		return nil, fmt.Errorf("preferences: read for planning: %w", err)
	}
	kj, err := json.Marshal(keys)
	if err != nil {
		return nil, fmt.Errorf("preferences: read for planning: %w", err)
	}
	where := planningWhereSQLite
	if store.IsPostgres(r.db) {
		where = planningWherePG
	}
	if err := r.db.WithContext(ctx).Select("collection_id", "recipient_key", "document").
		Where(where, string(cj), string(kj)).Find(&rows).Error; err != nil {
		return nil, fmt.Errorf("preferences: read for planning: %w", err)
	}
	for _, rw := range rows {
		d, err := decode([]byte(rw.Document))
		if err != nil {
			// A stored document the service wrote and cannot read is its
			// own fault: it must not stop the batch, nor opt anyone out.
			continue
		}
		b[batchKey{rw.CollectionID, rw.RecipientKey}] = d
	}
	return b, nil
}

// The planning read's condition: every (collection, key) of two JSON
// arrays, the collection ids and the recipient keys.
const (
	planningWherePG = "collection_id IN (SELECT json_array_elements_text(CAST(? AS json))::bigint)" +
		" AND recipient_key IN (SELECT json_array_elements_text(CAST(? AS json)))"
	planningWhereSQLite = "collection_id IN (SELECT value FROM json_each(?)) AND recipient_key IN (SELECT value FROM json_each(?))"
)

type batchKey struct {
	collectionID int64
	key          string
}

// batch is the preferences of one batch's recipients.
type batch map[batchKey]Document

// Skip implements planning.Rule.
func (b batch) Skip(p planning.Pair) (string, string) {
	if len(b) == 0 || p.Event == nil || p.Event.Required {
		return "", ""
	}
	channel := p.Action.Channel()
	for _, k := range Keys(p.Recipient, channel) {
		d, ok := b[batchKey{p.In.CollectionID, k}]
		if !ok {
			continue
		}
		if m := d.Match(p.In.Notification.Name, channel); m != "" {
			return dispatch.ReasonOptedOut, m
		}
	}
	return "", ""
}
