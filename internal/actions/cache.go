package actions

import (
	"container/list"
	"maps"
	"sync"

	"github.com/notificationservice/notificationservice/internal/invalidate"
)

// DefaultCacheSize is the number of entries (actions and resolved rules
// together) a Cache holds by default: a few MB at most, enough for every
// action of a large deployment.
const DefaultCacheSize = 10_000

// Cache keeps recently read actions, by (collection, id), resolved rules,
// by (collection, name), and collections' default senders, so that
// Service.Get, Rules.Resolve and Rules.ForSend can answer without a
// database round trip. It is an invalidate.Subscriber: the
// invalidation bus evicts what mutations change, here and on every other
// instance, and switches the cache off (Reset(false)) whenever it cannot
// promise to deliver every change.
//
// Reads that miss fill the cache only if nothing was evicted or reset while
// they read the database (a generation check): a row read just before a
// change committed could otherwise be cached after its eviction and stay
// stale. Entries are least recently used beyond the size.
//
// Only reads use the cache. Writes always read the row they change in their
// own transaction, so If-Match is checked against the database, never
// against a cached ETag. A nil *Cache is valid and caches nothing.
type Cache struct {
	mu      sync.Mutex
	size    int
	live    bool
	gen     uint64 // bumped by every eviction and reset
	lru     list.List
	actions map[actionKey]*list.Element
	rules   map[int64]map[string]*list.Element // collection → name → entry
	senders map[int64]*list.Element            // collection → its default sender

	hits, misses uint64
}

type actionKey struct{ collectionID, id int64 }

// entryKind is what an entry holds.
type entryKind uint8

const (
	kindAction entryKind = iota
	kindRule
	kindSender
)

// entry is one cached action, rule (with its name) or collection sender.
type entry struct {
	kind         entryKind
	collectionID int64
	id           int64
	name         string
	action       Action
	rule         Rule
	sender       Defaults
}

// NewCache returns an empty cache of at most size entries, or nil (no
// caching) when size is not positive. It serves nothing until a bus marks it
// live (invalidate.Bus.Subscribe).
func NewCache(size int) *Cache {
	if size <= 0 {
		return nil
	}
	return &Cache{size: size, actions: map[actionKey]*list.Element{}, rules: map[int64]map[string]*list.Element{},
		senders: map[int64]*list.Element{}}
}

// CacheStats counts lookups since the cache was made. A lookup while the
// cache is not live counts as a miss.
type CacheStats struct {
	Hits, Misses uint64
	Entries      int
	Live         bool
}

// Stats returns the counters and the current state.
func (c *Cache) Stats() CacheStats {
	if c == nil {
		return CacheStats{}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return CacheStats{Hits: c.hits, Misses: c.misses, Entries: c.lru.Len(), Live: c.live}
}

// Evict drops what k names: an action key drops the action and every rule
// of its collection (its status or event may have changed what they list);
// a collection key drops the collection's rules and its default sender.
func (c *Cache) Evict(k invalidate.Key) {
	if c == nil || (k.Kind != invalidate.KindAction && k.Kind != invalidate.KindCollection) {
		return // webhook endpoints, preferences and suppressions change no action, rule or sender
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen++
	if k.Kind == invalidate.KindAction {
		if el, ok := c.actions[actionKey{k.CollectionID, k.ID}]; ok {
			c.remove(el)
		}
	}
	for _, el := range c.rules[k.CollectionID] {
		c.remove(el)
	}
	if el, ok := c.senders[k.CollectionID]; ok && k.Kind == invalidate.KindCollection {
		c.remove(el)
	}
}

// Reset empties the cache and turns it on (live) or off.
func (c *Cache) Reset(live bool) {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen++
	c.live = live
	c.lru.Init()
	clear(c.actions)
	clear(c.rules)
	clear(c.senders)
}

// fill is the permission to cache what a read that missed is about to read
// from the database; it holds only while nothing is evicted or reset.
type fill struct {
	gen uint64
	ok  bool
}

// lookup is the one LRU read every kind of entry shares: find locates the
// entry (nil when absent: the indexes never hold a nil element) and value copies out what it holds. A hit moves
// the entry to the front; a miss returns the fill for the database read
// that follows. While the cache is not live every lookup is a miss without
// a fill.
func lookup[T any](c *Cache, find func() *list.Element, value func(*entry) T) (T, fill, bool) {
	var zero T
	if c == nil {
		return zero, fill{}, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.live {
		c.misses++
		return zero, fill{}, false
	}
	if el := find(); el != nil {
		c.hits++
		c.lru.MoveToFront(el)
		return value(el.Value.(*entry)), fill{}, true
	}
	c.misses++
	return zero, fill{gen: c.gen, ok: true}, false
}

// store is the one LRU write: it runs insert, which replaces the entry's
// previous copy, only while f still holds (nothing evicted or reset since
// the lookup, which would make what the read saw stale), then trims.
func (c *Cache) store(f fill, insert func()) {
	if c == nil || !f.ok {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.gen != f.gen {
		return
	}
	insert()
	c.trim()
}

// action looks up an action. On a miss it returns the fill for the read
// that follows.
func (c *Cache) action(collectionID, id int64) (Action, fill, bool) {
	return lookup(c, func() *list.Element { return c.actions[actionKey{collectionID, id}] },
		func(e *entry) Action { return e.action.clone() })
}

// putAction caches a, read under f.
func (c *Cache) putAction(f fill, a Action) {
	c.store(f, func() {
		k := actionKey{a.CollectionID, a.ID}
		if el, ok := c.actions[k]; ok {
			c.remove(el)
		}
		c.actions[k] = c.lru.PushFront(&entry{kind: kindAction, collectionID: a.CollectionID, id: a.ID, action: a.clone()})
	})
}

// rule looks up a resolved rule, as action does.
func (c *Cache) rule(collectionID int64, name string) (Rule, fill, bool) {
	return lookup(c, func() *list.Element { return c.rules[collectionID][name] },
		func(e *entry) Rule { return e.rule.clone() })
}

// putRule caches the rule name resolved to in collectionID, read under f.
func (c *Cache) putRule(f fill, collectionID int64, name string, r Rule) {
	c.store(f, func() {
		if el, ok := c.rules[collectionID][name]; ok {
			c.remove(el)
		}
		byName := c.rules[collectionID]
		if byName == nil {
			byName = map[string]*list.Element{}
			c.rules[collectionID] = byName
		}
		byName[name] = c.lru.PushFront(&entry{kind: kindRule, collectionID: collectionID, name: name, rule: r.clone()})
	})
}

// sender looks up a collection's defaults (its sender, zone and quiet
// hours), as action does.
func (c *Cache) sender(collectionID int64) (Defaults, fill, bool) {
	return lookup(c, func() *list.Element { return c.senders[collectionID] },
		func(e *entry) Defaults { return e.sender })
}

// putSender caches collection collectionID's default sender, read under f.
func (c *Cache) putSender(f fill, collectionID int64, s Defaults) {
	c.store(f, func() {
		if el, ok := c.senders[collectionID]; ok {
			c.remove(el)
		}
		c.senders[collectionID] = c.lru.PushFront(&entry{kind: kindSender, collectionID: collectionID, sender: s})
	})
}

// trim drops least recently used entries beyond the size.
func (c *Cache) trim() {
	for c.lru.Len() > c.size {
		c.remove(c.lru.Back())
	}
}

// remove drops one entry from the list and its index.
func (c *Cache) remove(el *list.Element) {
	e := c.lru.Remove(el).(*entry)
	switch e.kind {
	case kindAction:
		delete(c.actions, actionKey{e.collectionID, e.id})
		return
	case kindSender:
		delete(c.senders, e.collectionID)
		return
	}
	byName := c.rules[e.collectionID]
	delete(byName, e.name)
	if len(byName) == 0 {
		delete(c.rules, e.collectionID)
	}
}

// clone copies what a caller could change in place (the config's maps; the
// compiled condition is immutable and shared), so no caller can alter a cached entry or see another's edits.
func (a Action) clone() Action {
	a.Config.Data = maps.Clone(a.Config.Data)
	if a.Config.Locales != nil {
		locales := make(map[string]Content, len(a.Config.Locales))
		for k, v := range a.Config.Locales {
			v.Data = maps.Clone(v.Data)
			locales[k] = v
		}
		a.Config.Locales = locales
	}
	if a.Config.Delay != nil {
		delay := *a.Config.Delay
		a.Config.Delay = &delay
	}
	return a
}

func (r Rule) clone() Rule {
	if r.Actions == nil {
		return r
	}
	out := make([]Action, len(r.Actions))
	for i, a := range r.Actions {
		out[i] = a.clone()
	}
	r.Actions = out
	return r
}
