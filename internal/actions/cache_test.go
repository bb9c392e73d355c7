package actions_test

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/url"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"gorm.io/gorm"

	"github.com/notificationservice/notificationservice/internal/actions"
	"github.com/notificationservice/notificationservice/internal/apperr"
	"github.com/notificationservice/notificationservice/internal/invalidate"
	"github.com/notificationservice/notificationservice/internal/testdb"
)

// cached is a bundle whose service and rules read through a cache kept by a
// bus, as app.New wires them.
type cached struct {
	*bundle
	cache *actions.Cache
	bus   *invalidate.Bus
	rules *actions.Rules
	heard *recorder
	url   string // "" on SQLite
}

// recorder is a bus subscriber that remembers the keys it was told.
type recorder struct {
	mu   sync.Mutex
	keys map[invalidate.Key]bool
}

func (r *recorder) Evict(k invalidate.Key) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.keys[k] = true
}

func (r *recorder) Reset(bool) {}

func (r *recorder) has(k invalidate.Key) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.keys[k]
}

var markers atomic.Int64

// settle waits until the listener has heard every change committed so far,
// so that their echoes (a writer hears its own notifications too) do not
// evict entries a test is about to count on. Notifications arrive in commit
// order, so hearing a marker published now is enough.
func (c *cached) settle(t *testing.T) {
	t.Helper()
	if c.url == "" {
		return // SQLite: evictions are synchronous
	}
	marker := invalidate.Collection(-markers.Add(1))
	require.NoError(t, c.db.Transaction(func(tx *gorm.DB) error { return c.bus.Publish(c.ctx, tx, marker) }))
	require.Eventually(t, func() bool { return c.heard.has(marker) }, 5*time.Second, time.Millisecond)
}

// setupCached builds the bundle on dialect with a cache of size entries. On
// PostgreSQL the bus's listener connects to listenURL and is running (and
// connected) when it returns unless start is false.
func setupCached(t *testing.T, db *gorm.DB, listenURL string, size int, start bool) *cached {
	t.Helper()
	b := setup(t, db)
	c := &cached{bundle: b, cache: actions.NewCache(size), heard: &recorder{keys: map[invalidate.Key]bool{}}, url: listenURL}
	c.bus = invalidate.New(listenURL, slog.New(slog.NewTextHandler(io.Discard, nil)))
	c.bus.Subscribe(c.cache)
	c.bus.Subscribe(c.heard)
	b.svc.WithCache(c.cache, c.bus)
	c.rules = actions.NewRules(db).WithCache(c.cache)
	if start {
		c.run(t)
	}
	return c
}

// run starts the bus's listener until the test ends and waits until it
// has connected.
func (c *cached) run(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.bus.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		require.NoError(t, <-done)
	})
	require.Eventually(t, c.bus.Live, 10*time.Second, 5*time.Millisecond, "listener never connected")
}

// sneak changes an action's description behind the services' back: no
// notification, no eviction, as a change whose notification was lost.
func (c *cached) sneak(t *testing.T, id int64, description string) {
	t.Helper()
	require.NoError(t, c.db.Exec("UPDATE actions SET description = ? WHERE id = ?", description, id).Error)
}

func (c *cached) description(t *testing.T, id int64) string {
	t.Helper()
	a, err := c.svc.Get(c.ctx, c.admin, c.coll, id)
	require.NoError(t, err)
	return a.Description
}

// eachCachedDialect runs fn on SQLite (in-process bus) and on PostgreSQL
// (bus listening on the test's schema).
func eachCachedDialect(t *testing.T, size int, fn func(t *testing.T, c *cached)) {
	t.Run("sqlite", func(t *testing.T) {
		t.Parallel()
		db, _ := testdb.SQLite(t)
		fn(t, setupCached(t, db, "", size, true))
	})
	t.Run("postgres", func(t *testing.T) {
		t.Parallel()
		db, u := testdb.Postgres(t)
		fn(t, setupCached(t, db, u, size, true))
	})
}

func TestCacheServesGetsAndEvictsOnEveryMutation(t *testing.T) {
	t.Parallel()
	eachCachedDialect(t, 100, func(t *testing.T, c *cached) {
		a := c.create(t, email(c.event, "Send Reset Email"))
		c.settle(t)
		require.Equal(t, a.Description, c.description(t, a.ID))
		before := c.cache.Stats()

		// A change nobody announced stays invisible: the read came from memory.
		c.sneak(t, a.ID, "sneaked")
		require.Equal(t, a.Description, c.description(t, a.ID))
		require.Equal(t, before.Hits+1, c.cache.Stats().Hits)

		// The writer's own instance reads its write at once (the eviction
		// after commit), with the new version.
		up, err := c.svc.Update(c.ctx, c.admin, c.coll, a.ID, actions.Patch{Name: ptr("renamed")}, 1)
		require.NoError(t, err)
		got, err := c.svc.Get(c.ctx, c.admin, c.coll, a.ID)
		require.NoError(t, err)
		require.Equal(t, up, got)
		require.Equal(t, int64(2), got.Version)
		require.Equal(t, "sneaked", got.Description, "the update read the row from the database")

		// A stale If-Match is checked against the database, not the cache.
		c.settle(t)
		c.description(t, a.ID)
		require.NoError(t, c.db.Exec("UPDATE actions SET version = 7 WHERE id = ?", a.ID).Error)
		got, err = c.svc.Get(c.ctx, c.admin, c.coll, a.ID)
		require.NoError(t, err)
		require.Equal(t, int64(2), got.Version, "cached")
		_, err = c.svc.Update(c.ctx, c.admin, c.coll, a.ID, actions.Patch{Name: ptr("again")}, 2)
		requireKind(t, err, apperr.PreconditionFailed)
		_, err = c.svc.Delete(c.ctx, c.admin, c.coll, a.ID, 2)
		requireKind(t, err, apperr.PreconditionFailed)

		// Delete evicts.
		_, err = c.svc.Delete(c.ctx, c.admin, c.coll, a.ID, 7)
		require.NoError(t, err)
		_, err = c.svc.Get(c.ctx, c.admin, c.coll, a.ID)
		requireKind(t, err, apperr.NotFound)

		// A caller that edits what it got does not edit the cache.
		b := c.create(t, actions.Input{Name: "push", EventID: c.event, ConfigName: actions.ConfigPush,
			Config: actions.Config{Content: actions.Content{Title: "Hi", Data: map[string]string{"k": "v"}},
				Locales: map[string]actions.Content{"fr": {Title: "Salut"}}, Condition: `recipient.macros.M == "x"`}})
		c.settle(t)
		first, err := c.svc.Get(c.ctx, c.admin, c.coll, b.ID)
		require.NoError(t, err)
		first.Config.Data["k"] = "changed"
		first.Config.Locales["fr"] = actions.Content{Title: "changed"}
		second, err := c.svc.Get(c.ctx, c.admin, c.coll, b.ID)
		require.NoError(t, err)
		require.Equal(t, b, second)
		require.Positive(t, c.cache.Stats().Hits-before.Hits-1, "the second read was a hit")
	})
}

func TestCacheServesResolveAndEvictsOnActionChanges(t *testing.T) {
	t.Parallel()
	eachCachedDialect(t, 100, func(t *testing.T, c *cached) {
		a := c.create(t, email(c.event, "one"))
		c.settle(t)
		rule, found, err := c.rules.Resolve(c.ctx, c.coll, "USER_INVITEUSER")
		require.NoError(t, err)
		require.True(t, found)
		require.Len(t, rule.Actions, 1)

		// Unannounced: still the cached rule.
		require.NoError(t, c.db.Exec("UPDATE actions SET status = 'INACTIVE' WHERE id = ?", a.ID).Error)
		rule, _, err = c.rules.Resolve(c.ctx, c.coll, "USER_INVITEUSER")
		require.NoError(t, err)
		require.Len(t, rule.Actions, 1)

		// Any action change in the collection drops its rules: creating a
		// second action shows it, and the first one's sneaked status too.
		b := c.create(t, sms(c.event, "two"))
		rule, _, err = c.rules.Resolve(c.ctx, c.coll, "USER_INVITEUSER")
		require.NoError(t, err)
		require.Len(t, rule.Actions, 1)
		require.Equal(t, b.ID, rule.Actions[0].ID)

		_, err = c.svc.Update(c.ctx, c.admin, c.coll, b.ID, actions.Patch{Status: ptr(actions.StatusInactive)}, 0)
		require.NoError(t, err)
		rule, found, err = c.rules.Resolve(c.ctx, c.coll, "USER_INVITEUSER")
		require.NoError(t, err)
		require.True(t, found)
		require.Empty(t, rule.Actions)

		// A collection key (a collection or event change) drops the rules too.
		c.settle(t)
		rule, _, err = c.rules.Resolve(c.ctx, c.coll, "USER_INVITEUSER")
		require.NoError(t, err)
		require.Empty(t, rule.Actions)
		require.NoError(t, c.db.Exec("UPDATE actions SET status = 'ACTIVE' WHERE id = ?", a.ID).Error)
		c.bus.Committed(invalidate.Collection(c.coll))
		rule, _, err = c.rules.Resolve(c.ctx, c.coll, "USER_INVITEUSER")
		require.NoError(t, err)
		require.Len(t, rule.Actions, 1)
	})
}

// The workers' loads (ForSend) come from the cache once read: the action
// and its collection's default sender. An action change drops the action,
// a collection change its sender, and each shows at the next load.
func TestCacheServesForSendAndEvictsOnSenderChanges(t *testing.T) {
	t.Parallel()
	eachCachedDialect(t, 100, func(t *testing.T, c *cached) {
		a := c.create(t, email(c.event, "one"))
		require.NoError(t, c.db.Exec("UPDATE collections SET default_from_email = 'team@example.com', default_from_name = 'Team' WHERE id = ?", c.coll).Error)
		c.settle(t)
		refs := []actions.Ref{{CollectionID: c.coll, ID: a.ID}, {CollectionID: c.coll, ID: a.ID}, {CollectionID: c.coll, ID: -1}}
		load := func() actions.Action {
			t.Helper()
			got, err := c.rules.ForSend(c.ctx, refs)
			require.NoError(t, err)
			require.Len(t, got, 1, "one per action; a missing action is left out")
			return got[0]
		}
		got := load()
		require.Equal(t, a.ID, got.ID)
		require.Equal(t, "team@example.com", got.Config.FromEmail)
		require.Equal(t, "Team", got.Config.FromName)

		// Unannounced changes stay invisible: both came from memory.
		before := c.cache.Stats()
		require.NoError(t, c.db.Exec("UPDATE collections SET default_from_email = 'new@example.com' WHERE id = ?", c.coll).Error)
		c.sneak(t, a.ID, "sneaked")
		got = load()
		require.Equal(t, "team@example.com", got.Config.FromEmail)
		require.Equal(t, a.Description, got.Description)
		// The action and its sender were hits, and the sender again for the
		// missing action (which is read each time: nothing caches absence).
		require.Equal(t, before.Hits+3, c.cache.Stats().Hits)

		// A collection change drops the sender (the action is read again
		// with it, in the same query).
		c.bus.Committed(invalidate.Collection(c.coll))
		got = load()
		require.Equal(t, "new@example.com", got.Config.FromEmail)
		require.Equal(t, "sneaked", got.Description)

		// An action change drops the action; its own sender wins over the
		// collection's.
		require.NoError(t, c.db.Exec("UPDATE actions SET config = ? WHERE id = ?",
			`{"content": {"subject": "s", "html": "h"}, "fromEmail": "own@example.com"}`, a.ID).Error)
		c.bus.Committed(invalidate.Action(c.coll, a.ID))
		got = load()
		require.Equal(t, "own@example.com", got.Config.FromEmail)
		require.Empty(t, got.Config.FromName, "the collection's name never goes with the action's address")
		require.Equal(t, "sneaked", got.Description)
	})
}

// A read that missed must not store what it read once an eviction came in
// between: the row it read may be the one the eviction was for (a change
// that committed just after the read). Here the eviction lands while Get
// holds its row, before Get stores it.
func TestCacheDoesNotStoreARowReadBeforeAnEviction(t *testing.T) {
	t.Parallel()
	eachCachedDialect(t, 100, func(t *testing.T, c *cached) {
		a := c.create(t, email(c.event, "Send Reset Email"))
		c.settle(t)
		var armed, fired atomic.Bool
		name := "race_" + testdb.Name("")
		require.NoError(t, c.db.Callback().Row().After("gorm:row").Register(name, func(*gorm.DB) {
			if armed.Load() && fired.CompareAndSwap(false, true) {
				c.bus.Committed(invalidate.Action(c.coll, a.ID))
			}
		}))
		t.Cleanup(func() { _ = c.db.Callback().Row().Remove(name) })

		armed.Store(true)
		c.description(t, a.ID)
		require.True(t, fired.Load())
		require.Zero(t, c.cache.Stats().Entries, "the row read across an eviction was stored")

		c.description(t, a.ID)
		require.Equal(t, 1, c.cache.Stats().Entries, "the next read stores it")
	})
}

func TestCacheIsBounded(t *testing.T) {
	t.Parallel()
	eachCachedDialect(t, 3, func(t *testing.T, c *cached) {
		var ids []int64
		for _, n := range []string{"a", "b", "c", "d", "e"} {
			ids = append(ids, c.create(t, email(c.event, n)).ID)
		}
		c.settle(t)
		for _, id := range ids {
			c.description(t, id)
		}
		st := c.cache.Stats()
		require.Equal(t, 3, st.Entries)

		// The least recently used went first: the last three are there.
		for _, id := range ids[2:] {
			c.description(t, id)
		}
		require.Equal(t, st.Hits+3, c.cache.Stats().Hits)
		c.description(t, ids[0])
		require.Equal(t, st.Hits+3, c.cache.Stats().Hits, "the first action was evicted")
		require.Equal(t, 3, c.cache.Stats().Entries)

		// Rules share the bound.
		_, _, err := c.rules.Resolve(c.ctx, c.coll, "USER_INVITEUSER")
		require.NoError(t, err)
		require.Equal(t, 3, c.cache.Stats().Entries)
	})
}

func TestCacheOffWhileListenerDown(t *testing.T) {
	t.Parallel()
	db, u := testdb.Postgres(t)
	p := newProxy(t, u)
	c := setupCached(t, db, p.url(t, u), 100, false)
	a := c.create(t, email(c.event, "Send Reset Email"))

	// Before the listener has connected nothing is cached.
	c.description(t, a.ID)
	c.sneak(t, a.ID, "one")
	require.Equal(t, "one", c.description(t, a.ID))
	require.False(t, c.cache.Stats().Live)
	require.Zero(t, c.cache.Stats().Entries)

	c.run(t)
	require.Equal(t, "one", c.description(t, a.ID))
	c.sneak(t, a.ID, "two")
	require.Equal(t, "one", c.description(t, a.ID), "cached once the listener is up")

	// The listener's connection breaks (and reconnecting fails): the
	// cache is emptied and stays off, whatever notifications are missed.
	p.cut()
	require.Eventually(t, func() bool { return !c.bus.Live() }, 10*time.Second, 5*time.Millisecond)
	require.Equal(t, "two", c.description(t, a.ID))
	c.sneak(t, a.ID, "three")
	require.Equal(t, "three", c.description(t, a.ID), "nothing is cached while the listener is down")
	require.Zero(t, c.cache.Stats().Entries)

	// Back: emptied again, then caching.
	p.restore()
	require.Eventually(t, c.bus.Live, 15*time.Second, 5*time.Millisecond)
	require.Equal(t, "three", c.description(t, a.ID))
	c.sneak(t, a.ID, "four")
	require.Equal(t, "three", c.description(t, a.ID), "caching again")

	// And it hears other instances again: a change announced from another
	// connection evicts.
	require.NoError(t, db.Transaction(func(tx *gorm.DB) error {
		if err := tx.Exec("UPDATE actions SET description = 'five' WHERE id = ?", a.ID).Error; err != nil {
			return err
		}
		return c.bus.Publish(c.ctx, tx, invalidate.Action(c.coll, a.ID))
	}))
	require.Eventually(t, func() bool { return c.description(t, a.ID) == "five" }, 5*time.Second, 5*time.Millisecond)
}

// proxy forwards TCP connections to PostgreSQL until it is cut: then it
// closes every open connection and refuses new ones, as a network failure
// between one instance's listener and the database would.
type proxy struct {
	ln     net.Listener
	target string

	mu    sync.Mutex
	down  bool
	conns []net.Conn
}

func newProxy(t *testing.T, dbURL string) *proxy {
	t.Helper()
	u, err := url.Parse(dbURL)
	require.NoError(t, err)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	p := &proxy{ln: ln, target: u.Host}
	t.Cleanup(func() {
		_ = ln.Close()
		p.cut()
	})
	go p.accept()
	return p
}

// url is dbURL through the proxy.
func (p *proxy) url(t *testing.T, dbURL string) string {
	u, err := url.Parse(dbURL)
	require.NoError(t, err)
	u.Host = p.ln.Addr().String()
	return u.String()
}

func (p *proxy) accept() {
	for {
		client, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		down := p.down
		p.mu.Unlock()
		if down {
			_ = client.Close()
			continue
		}
		server, err := net.Dial("tcp", p.target)
		if err != nil {
			_ = client.Close()
			continue
		}
		p.mu.Lock()
		p.conns = append(p.conns, client, server)
		p.mu.Unlock()
		go func() { _, _ = io.Copy(server, client); _ = server.Close() }()
		go func() { _, _ = io.Copy(client, server); _ = client.Close() }()
	}
}

func (p *proxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.down = true
	for _, c := range p.conns {
		_ = c.Close()
	}
	p.conns = nil
}

func (p *proxy) restore() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.down = false
}
