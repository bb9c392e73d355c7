package invalidate

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"gorm.io/gorm"

	"github.com/notificationservice/notificationservice/internal/testdb"
)

func TestKeyWireForm(t *testing.T) {
	t.Parallel()
	for _, k := range []Key{Action(775, 42453), Collection(775), Collection(-3), Webhooks(775)} {
		got, err := Parse(k.String())
		require.NoError(t, err)
		require.Equal(t, k, got)
	}
	require.Equal(t, "action:775:42453", Action(775, 42453).String())
	require.Equal(t, "collection:775", Collection(775).String())
	require.Equal(t, "webhooks:775", Webhooks(775).String())
	for _, bad := range []string{"", "action:1", "collection:x", "webhooks:x", "webhooks:1:2", "event:1:2", "action:1:2:3"} {
		_, err := Parse(bad)
		require.Error(t, err, bad)
	}
}

// subscriber records what the bus tells it.
type subscriber struct {
	mu      sync.Mutex
	evicted []Key
	resets  []bool
}

func (s *subscriber) Evict(k Key) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.evicted = append(s.evicted, k)
}

func (s *subscriber) Reset(live bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.resets = append(s.resets, live)
}

func (s *subscriber) heard(k Key) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, e := range s.evicted {
		if e == k {
			return true
		}
	}
	return false
}

func (s *subscriber) lastReset() (live, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.resets) == 0 {
		return false, false
	}
	return s.resets[len(s.resets)-1], true
}

// start runs b until the test ends and waits for it to connect.
func start(t *testing.T, b *Bus) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- b.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		require.NoError(t, <-done)
	})
	require.Eventually(t, b.Live, 10*time.Second, 5*time.Millisecond)
}

func publish(t *testing.T, b *Bus, db *gorm.DB, k Key) {
	t.Helper()
	require.NoError(t, db.Transaction(func(tx *gorm.DB) error { return b.Publish(context.Background(), tx, k) }))
}

func discard() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func TestSQLiteBusIsLiveAndLocal(t *testing.T) {
	t.Parallel()
	b := New("", discard())
	s := &subscriber{}
	b.Subscribe(s)
	live, _ := s.lastReset()
	require.True(t, live, "SQLite has one instance: its cache may serve at once")
	require.NoError(t, b.Publish(context.Background(), nil, Action(1, 2)), "a no-op there")
	require.Empty(t, s.evicted)
	b.Committed(Action(1, 2))
	require.Equal(t, []Key{Action(1, 2)}, s.evicted)
}

func TestListenerDeliversOnlyCommittedChangesOfItsSchema(t *testing.T) {
	t.Parallel()
	db, u := testdb.Postgres(t)
	otherDB, otherURL := testdb.Postgres(t)
	b, other := New(u, discard()), New(otherURL, discard())
	s, o := &subscriber{}, &subscriber{}
	b.Subscribe(s)
	other.Subscribe(o)
	live, _ := s.lastReset()
	require.False(t, live, "off until the listener connects")
	start(t, b)
	start(t, other)
	live, _ = s.lastReset()
	require.True(t, live)

	// Rolled back: never announced.
	rolledBack := Action(1, 1)
	err := db.Transaction(func(tx *gorm.DB) error {
		require.NoError(t, b.Publish(context.Background(), tx, rolledBack))
		return io.EOF
	})
	require.ErrorIs(t, err, io.EOF)

	// Published on this schema: heard here, not on the other schema.
	publish(t, b, db, Action(1, 2))
	require.Eventually(t, func() bool { return s.heard(Action(1, 2)) }, 5*time.Second, time.Millisecond)
	publish(t, other, otherDB, Collection(9))
	require.Eventually(t, func() bool { return o.heard(Collection(9)) }, 5*time.Second, time.Millisecond)
	// Notifications arrive in commit order: by now anything of the first
	// transaction or the other schema would have arrived too.
	publish(t, b, db, Collection(1))
	require.Eventually(t, func() bool { return s.heard(Collection(1)) }, 5*time.Second, time.Millisecond)
	require.False(t, s.heard(rolledBack), "a rolled-back change was announced")
	require.False(t, s.heard(Collection(9)), "another schema's change was delivered")
	require.False(t, o.heard(Action(1, 2)), "another schema's change was delivered")
	require.EqualValues(t, 2, b.Received())
}

// A connection that goes silent (no reset, no FIN: a dead NAT entry, a
// partition) is noticed by the heartbeat: the caches go off and come back
// emptied when the listener reconnects.
func TestHeartbeatNoticesASilentConnection(t *testing.T) {
	t.Parallel()
	db, u := testdb.Postgres(t)
	p := newProxy(t, u)
	b := New(p.url(t, u), discard())
	b.heartbeat, b.probe = 50*time.Millisecond, 200*time.Millisecond
	s := &subscriber{}
	b.Subscribe(s)
	start(t, b)
	pid := b.PID()

	p.freeze()
	require.Eventually(t, func() bool { return !b.Live() }, 5*time.Second, time.Millisecond, "a silent connection went unnoticed")
	live, _ := s.lastReset()
	require.False(t, live)

	p.thaw()
	require.Eventually(t, b.Live, 10*time.Second, time.Millisecond)
	require.NotEqual(t, pid, b.PID())
	live, _ = s.lastReset()
	require.True(t, live)
	publish(t, b, db, Action(3, 4))
	require.Eventually(t, func() bool { return s.heard(Action(3, 4)) }, 5*time.Second, time.Millisecond)
}

// proxy forwards TCP connections to PostgreSQL. Frozen, it swallows every
// byte both ways without closing anything, as a silently dead path does.
type proxy struct {
	ln     net.Listener
	target string

	mu     sync.Mutex
	frozen bool
	conns  []net.Conn
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
		p.mu.Lock()
		defer p.mu.Unlock()
		for _, c := range p.conns {
			_ = c.Close()
		}
	})
	go p.accept()
	return p
}

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
		server, err := net.Dial("tcp", p.target)
		if err != nil {
			_ = client.Close()
			continue
		}
		p.mu.Lock()
		p.conns = append(p.conns, client, server)
		p.mu.Unlock()
		go p.pipe(server, client)
		go p.pipe(client, server)
	}
}

// pipe copies src to dst, dropping what it reads while frozen. A connection
// that saw a frozen moment stays dead: it has lost bytes.
func (p *proxy) pipe(dst, src net.Conn) {
	defer func() { _ = dst.Close() }()
	buf := make([]byte, 32<<10)
	lost := false
	for {
		n, err := src.Read(buf)
		if err != nil {
			return
		}
		p.mu.Lock()
		lost = lost || p.frozen
		p.mu.Unlock()
		if lost {
			continue
		}
		if _, err := dst.Write(buf[:n]); err != nil {
			return
		}
	}
}

func (p *proxy) freeze() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.frozen = true
}

func (p *proxy) thaw() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.frozen = false
}
