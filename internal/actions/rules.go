package actions

import (
	"context"
	"fmt"

	"gorm.io/gorm"

	"github.com/notificationservice/notificationservice/internal/schedule"
)

// Rule is what a notification name resolves to: the ACTIVE event of that name
// in the collection and its ACTIVE actions, in id order.
type Rule struct {
	EventID   int64
	EventName string
	// CollectionName is the name of the event's collection (conditions
	// read it as collection.name).
	CollectionName string
	// Required is the event's required flag: recipients' opt-outs do not
	// apply to it (password reset, security alerts).
	Required bool
	// Condition is the event's condition (docs/rules.md), checked before
	// any action's; "" is none.
	Condition string
	Actions   []Action
	// Tenant is the collection's tenant, "" when it has none: a send that
	// names another tenant is refused (the intake checks it).
	Tenant string

	compiled *Compiled // Condition, compiled when the rule is loaded
}

// CompiledCondition returns the event's condition compiled: the copy the
// rule was loaded with, or a fresh compile for a rule built by hand. nil
// when the event has none.
func (r *Rule) CompiledCondition() *Compiled {
	if r.compiled != nil || r.Condition == "" {
		return r.compiled
	}
	return compile(r.Condition)
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
		EventID          int64
		EventName        string
		EventRequired    bool
		EventCondition   string
		CollectionName   string
		CollectionTenant string
		Action
	}
	var rows []row
	err = r.db.WithContext(ctx).Raw(`
SELECT e.id AS event_id, e.name AS event_name, e.required AS event_required, e.condition AS event_condition,
       c.name AS collection_name, c.tenant AS collection_tenant,
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
	rule.EventID, rule.EventName = rows[0].EventID, rows[0].EventName
	rule.Required, rule.Condition = rows[0].EventRequired, rows[0].EventCondition
	rule.CollectionName = rows[0].CollectionName
	// Conditions are compiled here, once per load: the cache keeps the rule
	// with its programs until a change to the collection, its events or
	// actions evicts it (a new version of any of them), so a planning batch
	// never compiles.
	rule.compiled = compile(rule.Condition)
	rule.Tenant = rows[0].CollectionTenant
	for _, rw := range rows {
		if rw.Action.ID == 0 { // the LEFT JOIN row of an event without active actions
			continue
		}
		rw.Action.EventID = rw.EventID
		rw.Action.compiled = compile(string(rw.Action.Config.Condition))
		rule.Actions = append(rule.Actions, rw.Action)
	}
	return rule, true, nil
}

// Sender is a collection's default email sender (collections'
// default_from_email and default_from_name); empty when it has none.
type Sender struct {
	Email, Name string
}

// Defaults are what a send takes from an action's collection when the
// action does not say: the sender, the zone of recipients without one, and
// the quiet hours.
type Defaults struct {
	Sender     Sender
	Timezone   string
	QuietHours *schedule.Window
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
//
// Each action carries its event's required flag (Action.EventRequired). An
// event's change publishes its collection's key, which evicts the
// collection's sender; an action is served from the cache only with its
// sender, so the next call reads the action, and the flag, again.
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
			"COALESCE(collections.default_from_name, '') AS collection_from_name, "+
			"COALESCE(collections.timezone, '') AS collection_timezone, collections.quiet_hours AS collection_quiet_hours, "+
			"(events.required IS NOT NULL AND events.required) AS event_required").
		Joins("LEFT JOIN collections ON collections.id = actions.collection_id").
		Joins("LEFT JOIN events ON events.id = actions.event_id").
		Where("actions.id IN ?", ids).
		Find(&rows).Error
	if err != nil {
		return nil, fmt.Errorf("actions: load for send: %w", err)
	}
	for _, row := range rows {
		s := Defaults{Sender: Sender{Email: row.CollectionFromEmail, Name: row.CollectionFromName},
			Timezone: row.CollectionTimezone, QuietHours: row.CollectionQuietHours}
		p := misses[row.ID]
		row.Action.EventRequired = row.EventRequired
		if row.Action.Config.ConditionAtSend() {
			// The workers evaluate it (dispatch/delivery's conditionGate):
			// compiled once per load, kept with the cached action.
			row.Action.compiled = compile(string(row.Action.Config.Condition))
		}
		r.cache.putAction(p.action, row.Action)
		r.cache.putSender(p.sender, row.CollectionID, s)
		out = append(out, row.Action.withSender(s))
	}
	return out, nil
}

// sendRow is an action with its collection's default sender, as ForSend's
// join reads them, and its event's required flag.
type sendRow struct {
	Action
	CollectionFromEmail  string
	CollectionFromName   string
	CollectionTimezone   string
	CollectionQuietHours *schedule.Window `gorm:"serializer:json"`
	EventRequired        bool
}

// withSender returns a with its collection's defaults s where it names
// none: the sender, the zone (Action.Timezone) and the quiet hours (an
// absent config.quietHours; null stays off).
func (a Action) withSender(s Defaults) Action {
	if a.Config.FromEmail == "" && s.Sender.Email != "" {
		a.Config.FromEmail, a.Config.FromName = s.Sender.Email, s.Sender.Name
	}
	a.Timezone = s.Timezone
	if !a.Config.QuietHours.Set {
		a.Config.QuietHours = QuietHours{Set: true, Window: s.QuietHours}
	}
	return a
}
