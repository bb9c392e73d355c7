// Package invalidate keeps in-process read caches honest when several
// instances share one PostgreSQL: every mutation announces what it changed
// with pg_notify inside its own transaction (so the announcement exists only
// if the change committed, and never before it), and every instance listens
// on a dedicated connection and evicts what it is told. While the listener is
// not connected the caches are told to stand aside, and they are emptied when
// it connects again, so a notification missed in between cannot leave a stale
// entry behind.
//
// On SQLite, which one instance owns by design, the bus only delivers the
// writer's own after-commit evictions.
package invalidate

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"gorm.io/gorm"

	"github.com/notificationservice/notificationservice/internal/retry"
)

// Channel is the PostgreSQL notification channel. It is shared by every
// schema of the database; a payload names its schema, and a listener ignores
// the payloads of other schemas.
const Channel = "notificationservice_invalidate"

// Kind is what a Key names.
type Kind string

// The kinds of keys.
const (
	// KindAction is one action; its change also changes the rules of its
	// collection (Rules.Resolve).
	KindAction Kind = "action"
	// KindCollection is a collection or one of its events: the rules of the
	// collection change, its actions do not.
	KindCollection Kind = "collection"
	// KindWebhooks is the customer webhook endpoints of a collection: which
	// of them are ACTIVE and which event types they want.
	KindWebhooks Kind = "webhooks"
	// KindPreferences is the stored preferences of a collection's
	// recipients: a recipient's document was created or changed.
	KindPreferences Kind = "preferences"
	// KindSuppressions is a collection's suppression list: an entry was
	// added.
	KindSuppressions Kind = "suppressions"
)

// Key names a changed row whose cached copies must go.
type Key struct {
	Kind         Kind
	CollectionID int64
	ID           int64 // the action's id for KindAction; 0 otherwise
}

// Action is the key of action id of collectionID.
func Action(collectionID, id int64) Key {
	return Key{Kind: KindAction, CollectionID: collectionID, ID: id}
}

// Collection is the key of collection collectionID and its events.
func Collection(collectionID int64) Key {
	return Key{Kind: KindCollection, CollectionID: collectionID}
}

// Webhooks is the key of collection collectionID's webhook endpoints.
func Webhooks(collectionID int64) Key {
	return Key{Kind: KindWebhooks, CollectionID: collectionID}
}

// Preferences is the key of the stored preferences of collectionID's
// recipients.
func Preferences(collectionID int64) Key {
	return Key{Kind: KindPreferences, CollectionID: collectionID}
}

// Suppressions is the key of collectionID's suppression list.
func Suppressions(collectionID int64) Key {
	return Key{Kind: KindSuppressions, CollectionID: collectionID}
}

// String is the key's wire form: "action:<collection>:<id>", or
// "<kind>:<collection>" for the other kinds.
func (k Key) String() string {
	if k.Kind == KindAction {
		return "action:" + strconv.FormatInt(k.CollectionID, 10) + ":" + strconv.FormatInt(k.ID, 10)
	}
	return string(k.Kind) + ":" + strconv.FormatInt(k.CollectionID, 10)
}

// Parse reads a key's wire form.
func Parse(s string) (Key, error) {
	parts := strings.Split(s, ":")
	num := func(v string) (int64, error) { return strconv.ParseInt(v, 10, 64) }
	switch {
	case len(parts) == 3 && parts[0] == string(KindAction):
		cid, err1 := num(parts[1])
		id, err2 := num(parts[2])
		if err := errors.Join(err1, err2); err != nil {
			return Key{}, fmt.Errorf("invalidate: key %q: %w", s, err)
		}
		return Action(cid, id), nil
	case len(parts) == 2 && collectionKind(Kind(parts[0])):
		cid, err := num(parts[1])
		if err != nil {
			return Key{}, fmt.Errorf("invalidate: key %q: %w", s, err)
		}
		return Key{Kind: Kind(parts[0]), CollectionID: cid}, nil
	}
	return Key{}, fmt.Errorf("invalidate: key %q: unknown form", s)
}

// collectionKind reports whether k's keys name a whole collection
// ("<kind>:<collection>").
func collectionKind(k Kind) bool {
	switch k {
	case KindCollection, KindWebhooks, KindPreferences, KindSuppressions:
		return true
	}
	return false
}

// Subscriber is a cache the bus keeps honest.
type Subscriber interface {
	// Evict drops what k names.
	Evict(k Key)
	// Reset drops everything and says whether the cache may serve from now
	// on: false while the bus cannot promise to deliver every change.
	Reset(live bool)
}

// Listener timings. Not configuration: they bound how long a silently dead
// connection can go unnoticed and how hard a down database is knocked on.
const (
	// heartbeat is how long the listener waits for a notification before it
	// checks that its connection still answers.
	heartbeat = 5 * time.Second
	// probeTimeout bounds that check, the connect and the LISTEN.
	probeTimeout = 5 * time.Second
	minBackoff   = 100 * time.Millisecond
	maxBackoff   = 10 * time.Second
)

// Bus publishes invalidations and delivers them to this instance's caches.
// It is an app component: Run is the listener.
type Bus struct {
	url string // PostgreSQL URL of the listener connection; "" on SQLite
	log *slog.Logger

	// heartbeat and probe are the package's constants; tests shorten them.
	heartbeat, probe time.Duration

	mu   sync.Mutex // serialises Subscribe with Reset deliveries
	subs []Subscriber
	live bool

	pid      atomic.Uint32 // backend pid of the listener connection, 0 when none
	received atomic.Uint64 // notifications of this schema handled
}

// New returns a bus. postgresURL is the database URL when the service runs on
// PostgreSQL (the listener connects to it, with the same search_path as the
// pool) and "" on SQLite, where the bus is live at once and in-process only.
func New(postgresURL string, log *slog.Logger) *Bus {
	return &Bus{url: postgresURL, log: log, live: postgresURL == "", heartbeat: heartbeat, probe: probeTimeout}
}

// Subscribe adds a cache. It starts bypassed unless the bus is live.
func (b *Bus) Subscribe(s Subscriber) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.subs = append(b.subs, s)
	s.Reset(b.live)
}

// Publish announces, inside the mutation's transaction tx, that k changed.
// PostgreSQL delivers the notification to every listener when tx commits and
// drops it when tx rolls back. A no-op on SQLite.
func (b *Bus) Publish(ctx context.Context, tx *gorm.DB, k Key) error {
	if b == nil || b.url == "" {
		return nil
	}
	// The payload names the schema so that instances on other schemas of the
	// same database (tests, side-by-side deployments) ignore it.
	err := tx.WithContext(ctx).Exec("SELECT pg_notify(?, ?::text || '@' || COALESCE(current_schema(), ''))",
		Channel, k.String()).Error
	if err != nil {
		return fmt.Errorf("invalidate: publish %s: %w", k, err)
	}
	return nil
}

// Committed evicts k from this instance's caches, at once: a writer reads its
// own write on the same instance without waiting for the notification. Call
// it after the mutation committed (evicting earlier would let a reader cache
// the old row again).
func (b *Bus) Committed(k Key) {
	if b == nil {
		return
	}
	b.evict(k)
}

// Live reports whether the caches may serve: always on SQLite, on PostgreSQL
// only while the listener is connected.
func (b *Bus) Live() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.live
}

// Health is nil while the caches may serve; /readyz reports it (a down
// listener degrades the service to uncached reads, it does not stop it).
func (b *Bus) Health() error {
	if b.Live() {
		return nil
	}
	return errors.New("invalidation listener not connected; caches bypassed")
}

// PID is the PostgreSQL backend pid of the listener connection, 0 when it is
// not connected. Operators (and tests) find the connection by it.
func (b *Bus) PID() uint32 { return b.pid.Load() }

// Received counts the notifications for this schema the listener handled.
func (b *Bus) Received() uint64 { return b.received.Load() }

func (b *Bus) evict(k Key) {
	b.mu.Lock()
	subs := b.subs
	b.mu.Unlock()
	for _, s := range subs {
		s.Evict(k)
	}
}

func (b *Bus) setLive(live bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.live = live
	for _, s := range b.subs {
		s.Reset(live)
	}
}

// Run is the listener: it connects, LISTENs, marks the caches live (emptied),
// and evicts what every notification names, until ctx ends. When the
// connection fails it marks the caches bypassed and reconnects with backoff.
// On SQLite it only waits for ctx.
func (b *Bus) Run(ctx context.Context) error {
	if b.url == "" {
		<-ctx.Done()
		return nil
	}
	// From minBackoff doubling to maxBackoff, without jitter (one listener
	// per instance), never giving up (Do returns only when ctx ends); the
	// schedule starts over after a connection that got as far as LISTEN.
	policy := retry.Policy{Initial: minBackoff, Max: maxBackoff, NoJitter: true}
	backOff := policy.NewBackOff()
	_ = policy.DoWith(ctx, backOff, func() error {
		connected, err := b.listen(ctx)
		b.pid.Store(0)
		if b.Live() {
			b.setLive(false)
		}
		if connected {
			backOff.Reset()
		}
		return err // never nil: listen returns only on a failure or ctx's end
	}, func(err error, wait time.Duration) {
		b.log.WarnContext(ctx, "cache invalidation listener down; reads bypass the caches until it is back",
			"err", err, "retryIn", wait)
	})
	return nil
}

// listen runs one connection until it fails or ctx ends. connected reports
// whether it got as far as LISTEN.
func (b *Bus) listen(ctx context.Context) (connected bool, err error) {
	cctx, cancel := context.WithTimeout(ctx, b.probe)
	defer cancel()
	cfg, err := pgx.ParseConfig(b.url)
	if err != nil {
		return false, fmt.Errorf("invalidate: %w", err)
	}
	cfg.RuntimeParams["application_name"] = "notificationservice-invalidate"
	conn, err := pgx.ConnectConfig(cctx, cfg)
	if err != nil {
		return false, fmt.Errorf("invalidate: connect: %w", err)
	}
	defer func() {
		closeCtx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_ = conn.Close(closeCtx)
	}()
	var schema string
	if err := conn.QueryRow(cctx, "SELECT COALESCE(current_schema(), '')").Scan(&schema); err != nil {
		return false, fmt.Errorf("invalidate: schema: %w", err)
	}
	if _, err := conn.Exec(cctx, "LISTEN "+pgx.Identifier{Channel}.Sanitize()); err != nil {
		return false, fmt.Errorf("invalidate: listen: %w", err)
	}
	// From here on every commit is announced to us, so emptying the caches
	// now covers whatever was missed while we were not listening.
	b.pid.Store(conn.PgConn().PID())
	b.setLive(true)
	b.log.InfoContext(ctx, "cache invalidation listener connected", "channel", Channel, "schema", schema)
	suffix := "@" + schema
	for {
		wctx, cancel := context.WithTimeout(ctx, b.heartbeat)
		n, err := conn.WaitForNotification(wctx)
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				return true, ctx.Err()
			}
			if pgconn.Timeout(err) && !conn.IsClosed() {
				// Quiet for a while: make sure the connection is still
				// there, so a silently dead one is noticed within a
				// heartbeat and a probe, not at the next TCP timeout.
				pctx, cancel := context.WithTimeout(ctx, b.probe)
				err = conn.Ping(pctx)
				cancel()
				if err == nil {
					continue
				}
			}
			return true, fmt.Errorf("invalidate: wait: %w", err)
		}
		payload, ok := strings.CutSuffix(n.Payload, suffix)
		if !ok {
			continue // another schema's
		}
		k, err := Parse(payload)
		if err != nil {
			// Not ours to understand (a newer version's key?): empty the
			// caches rather than risk keeping what it meant to evict.
			b.log.WarnContext(ctx, "cache invalidation: unknown payload; emptying the caches", "payload", n.Payload)
			b.setLive(true)
			continue
		}
		b.received.Add(1)
		b.evict(k)
	}
}
