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
	sender       Sender
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
	if c == nil {
		return
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

// action looks up an action. On a miss it returns the fill for the read
// that follows.
func (c *Cache) action(collectionID, id int64) (Action, fill, bool) {
	if c == nil {
		return Action{}, fill{}, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.live {
		c.misses++
		return Action{}, fill{}, false
	}
	if el, ok := c.actions[actionKey{collectionID, id}]; ok {
		c.hits++
		c.lru.MoveToFront(el)
		return el.Value.(*entry).action.clone(), fill{}, true
	}
	c.misses++
	return Action{}, fill{gen: c.gen, ok: true}, false
}

// putAction caches a, read under f.
func (c *Cache) putAction(f fill, a Action) {
	if c == nil || !f.ok {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.gen != f.gen { // evicted or reset (gone off) since the lookup
		return
	}
	k := actionKey{a.CollectionID, a.ID}
	if el, ok := c.actions[k]; ok {
		c.remove(el)
	}
	c.actions[k] = c.lru.PushFront(&entry{kind: kindAction, collectionID: a.CollectionID, id: a.ID, action: a.clone()})
	c.trim()
}

// rule looks up a resolved rule, as action does.
func (c *Cache) rule(collectionID int64, name string) (Rule, fill, bool) {
	if c == nil {
		return Rule{}, fill{}, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.live {
		c.misses++
		return Rule{}, fill{}, false
	}
	if el, ok := c.rules[collectionID][name]; ok {
		c.hits++
		c.lru.MoveToFront(el)
		return el.Value.(*entry).rule.clone(), fill{}, true
	}
	c.misses++
	return Rule{}, fill{gen: c.gen, ok: true}, false
}

// putRule caches the rule name resolved to in collectionID, read under f.
func (c *Cache) putRule(f fill, collectionID int64, name string, r Rule) {
	if c == nil || !f.ok {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.gen != f.gen { // evicted or reset (gone off) since the lookup
		return
	}
	if el, ok := c.rules[collectionID][name]; ok {
		c.remove(el)
	}
	byName := c.rules[collectionID]
	if byName == nil {
		byName = map[string]*list.Element{}
		c.rules[collectionID] = byName
	}
	byName[name] = c.lru.PushFront(&entry{kind: kindRule, collectionID: collectionID, name: name, rule: r.clone()})
	c.trim()
}

// sender looks up a collection's default sender, as action does.
func (c *Cache) sender(collectionID int64) (Sender, fill, bool) {
	if c == nil {
		return Sender{}, fill{}, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.live {
		c.misses++
		return Sender{}, fill{}, false
	}
	if el, ok := c.senders[collectionID]; ok {
		c.hits++
		c.lru.MoveToFront(el)
		return el.Value.(*entry).sender, fill{}, true
	}
	c.misses++
	return Sender{}, fill{gen: c.gen, ok: true}, false
}

// putSender caches collection collectionID's default sender, read under f.
func (c *Cache) putSender(f fill, collectionID int64, s Sender) {
	if c == nil || !f.ok {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.gen != f.gen {
		return
	}
	if el, ok := c.senders[collectionID]; ok {
		c.remove(el)
	}
	c.senders[collectionID] = c.lru.PushFront(&entry{kind: kindSender, collectionID: collectionID, sender: s})
	c.trim()
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

// clone copies what a caller could change in place (the config's maps and
// condition), so no caller can alter a cached entry or see another's edits.
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
	if a.Config.Condition != nil {
		cond := *a.Config.Condition
		a.Config.Condition = &cond
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
