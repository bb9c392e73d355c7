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
