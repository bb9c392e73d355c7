package preferences

import (
	"context"
	"fmt"
	"slices"

	"gorm.io/gorm"

	"github.com/notificationservice/notificationservice/internal/dispatch"
	"github.com/notificationservice/notificationservice/internal/dispatch/planning"
	"github.com/notificationservice/notificationservice/internal/message"
)

// Rule is the preferences planning rule (a planning.BatchRule): it reads
// the preferences of every recipient of a batch in one query, then skips
// each delivery a preference opts out of (dispatch.ReasonOptedOut, the
// preference as its detail), unless the event is required.
type Rule struct {
	db *gorm.DB
}

// NewRule returns the rule reading db.
func NewRule(db *gorm.DB) *Rule { return &Rule{db: db} }

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
	var rows []row
	// Every pair of the two lists, not only those the batch has: a batch is
	// almost always one collection, and one statement beats a tuple list
	// SQLite and PostgreSQL spell differently. A batch with more keys than
	// one statement may bind takes one statement per maxKeysPerQuery.
	for chunk := range slices.Chunk(keys, maxKeysPerQuery) {
		var part []row
		if err := r.db.WithContext(ctx).Select("collection_id", "recipient_key", "document").
			Where("collection_id IN ? AND recipient_key IN ?", cids, chunk).Find(&part).Error; err != nil {
			return nil, fmt.Errorf("preferences: read for planning: %w", err)
		}
		rows = append(rows, part...)
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

// maxKeysPerQuery keeps a statement's bind parameters well under
// PostgreSQL's 65,535.
const maxKeysPerQuery = 10_000

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
