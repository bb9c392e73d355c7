package actions

import (
	"context"
	"fmt"

	"gorm.io/gorm"
)

// Rule is what a notification name resolves to: the ACTIVE event of that name
// in the collection and its ACTIVE actions, in id order.
type Rule struct {
	EventID int64
	Actions []Action
	// Required is the event's required flag: opt-outs do not apply to it.
	Required bool
}

// Rules resolves notification names to the actions they fire.
type Rules struct {
	db    *gorm.DB
	cache *Cache
}

// NewRules returns Rules reading from db.
func NewRules(db *gorm.DB) *Rules { return &Rules{db: db} }

// WithCache makes Resolve read through cache (found rules only: a name that
// resolves to nothing is asked again each time), and returns r. The cache
// must be one the invalidation bus keeps honest, and every service that
// changes collections, events or actions must announce its changes to it.
func (r *Rules) WithCache(cache *Cache) *Rules {
	r.cache = cache
	return r
}

// Resolve returns the rule for name in collectionID. found is false when the
// collection has no ACTIVE event of that name (or the collection itself is
// missing or INACTIVE); an ACTIVE event with no ACTIVE actions is found with
// no actions. It is one query whatever the number of actions.
func (r *Rules) Resolve(ctx context.Context, collectionID int64, name string) (rule Rule, found bool, err error) {
	rule, f, hit := r.cache.rule(collectionID, name)
	if hit {
		return rule, true, nil
	}
	rule, found, err = r.resolve(ctx, collectionID, name)
	if found {
		r.cache.putRule(f, collectionID, name, rule)
	}
	return rule, found, err
}

func (r *Rules) resolve(ctx context.Context, collectionID int64, name string) (rule Rule, found bool, err error) {
	type row struct {
		EventID int64
		Action
	}
	var rows []row
	err = r.db.WithContext(ctx).Raw(`
SELECT e.id AS event_id,
       COALESCE(a.id, 0) AS id, COALESCE(a.collection_id, 0) AS collection_id,
       COALESCE(a.name, '') AS name, COALESCE(a.description, '') AS description,
       COALESCE(a.status, '') AS status, COALESCE(a.config_name, '') AS config_name,
       COALESCE(a.template, '') AS template, COALESCE(a.config, '{}') AS config,
       COALESCE(a.version, 0) AS version, COALESCE(a.created_by, '') AS created_by,
       COALESCE(a.updated_by, '') AS updated_by, COALESCE(a.created_time, 0) AS created_time,
       COALESCE(a.updated_time, 0) AS updated_time
FROM events e
JOIN collections c ON c.id = e.collection_id AND c.status = ?
LEFT JOIN actions a ON a.event_id = e.id AND a.status = ?
WHERE e.collection_id = ? AND e.name = ? AND e.status = ?
ORDER BY a.id`, StatusActive, StatusActive, collectionID, name, StatusActive).Scan(&rows).Error
	if err != nil {
		return Rule{}, false, fmt.Errorf("actions: resolve %q: %w", name, err)
	}
	if len(rows) == 0 {
		return Rule{}, false, nil
	}
	rule.EventID = rows[0].EventID
	for _, rw := range rows {
		if rw.Action.ID == 0 { // the LEFT JOIN row of an event without active actions
			continue
		}
		rw.Action.EventID = rw.EventID
		rule.Actions = append(rule.Actions, rw.Action)
	}
	return rule, true, nil
}

// Sender is a collection's default email sender (collections'
// default_from_email and default_from_name); empty when it has none.
type Sender struct {
	Email, Name string
}

// Ref names an action of a collection.
type Ref struct {
	CollectionID, ID int64
}

// ForSend returns the actions refs name as a send uses them, whatever their
// status: an action whose config names no fromEmail gets its collection's
// default sender in its place, so a send goes out from action config →
// collection default → the service's channels.sendgrid. The sender is taken
// as a pair: an action's fromName never goes with the collection's address.
// An action that no longer exists is left out. The actions are the caller's
// copies.
//
// With a cache, the actions and senders it holds cost nothing; the rest are
// read in one query (a join: the default costs no query of its own) and
// cached. The dispatch workers call it once per batch.
func (r *Rules) ForSend(ctx context.Context, refs []Ref) ([]Action, error) {
	type pending struct {
		action, sender fill
	}
	out := make([]Action, 0, len(refs))
	seen := make(map[int64]bool, len(refs))
	misses := map[int64]pending{}
	var ids []int64
	for _, ref := range refs {
		if seen[ref.ID] {
			continue
		}
		seen[ref.ID] = true
		a, fa, okA := r.cache.action(ref.CollectionID, ref.ID)
		s, fs, okS := r.cache.sender(ref.CollectionID)
		if okA && okS {
			out = append(out, a.withSender(s))
			continue
		}
		misses[ref.ID] = pending{fa, fs}
		ids = append(ids, ref.ID)
	}
	if len(ids) == 0 {
		return out, nil
	}
	var rows []sendRow
	// LEFT JOIN and COALESCE: the sender never decides which actions load
	// (the foreign key keeps the collection there anyway). Find, not Scan:
	// the config column needs its Scanner.
	err := r.db.WithContext(ctx).Table("actions").
		Select("actions.*, COALESCE(collections.default_from_email, '') AS collection_from_email, "+
			"COALESCE(collections.default_from_name, '') AS collection_from_name").
		Joins("LEFT JOIN collections ON collections.id = actions.collection_id").
		Where("actions.id IN ?", ids).
		Find(&rows).Error
	if err != nil {
		return nil, fmt.Errorf("actions: load for send: %w", err)
	}
	for _, row := range rows {
		s := Sender{Email: row.CollectionFromEmail, Name: row.CollectionFromName}
		p := misses[row.ID]
		r.cache.putAction(p.action, row.Action)
		r.cache.putSender(p.sender, row.CollectionID, s)
		out = append(out, row.Action.withSender(s))
	}
	return out, nil
}

// sendRow is an action with its collection's default sender, as ForSend's
// join reads them.
type sendRow struct {
	Action
	CollectionFromEmail string
	CollectionFromName  string
}

// withSender returns a with s as its sender when its config names none.
func (a Action) withSender(s Sender) Action {
	if a.Config.FromEmail == "" && s.Email != "" {
		a.Config.FromEmail, a.Config.FromName = s.Email, s.Name
	}
	return a
}
