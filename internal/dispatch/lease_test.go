package dispatch_test

import (
	"context"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"gorm.io/gorm"

	"github.com/notificationservice/notificationservice/internal/actions"
	"github.com/notificationservice/notificationservice/internal/channels"
	"github.com/notificationservice/notificationservice/internal/config"
	"github.com/notificationservice/notificationservice/internal/dispatch"
	"github.com/notificationservice/notificationservice/internal/dispatch/delivery"
	"github.com/notificationservice/notificationservice/internal/dispatch/intake"
	"github.com/notificationservice/notificationservice/internal/testdb"
)

// holding is a channel that accepts at once every message except those to
// an address in slow (the first To email, or the phone), whose Send blocks
// until release is closed. It counts the messages it accepted per delivery.
type holding struct {
	slow    map[string]bool
	release chan struct{} // closed by open
	once    sync.Once
	entered chan struct{} // one value per blocked Send
	mu      sync.Mutex
	sent    map[int64]int
}

func newHolding(slow ...string) *holding {
	h := &holding{slow: map[string]bool{}, release: make(chan struct{}), entered: make(chan struct{}, 100), sent: map[int64]int{}}
	for _, s := range slow {
		h.slow[s] = true
	}
	return h
}

func (h *holding) Name() string { return "holding" }

// open lets every blocked and later Send through.
func (h *holding) open() { h.once.Do(func() { close(h.release) }) }

func (h *holding) Send(ctx context.Context, msgs []channels.Message) []channels.Result {
	for _, m := range msgs {
		if h.slow[heldAddress(m)] {
			h.entered <- struct{}{}
			<-h.release
			break
		}
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make([]channels.Result, len(msgs))
	for i, m := range msgs {
		h.sent[m.DeliveryID]++
		out[i].ProviderMessageID = "holding-" + jsonInt(m.DeliveryID)
	}
	return out
}

// heldAddress is the address holding matches m on.
func heldAddress(m channels.Message) string {
	if len(m.To) > 0 {
		return m.To[0].Email
	}
	return m.Phone
}

func (h *holding) count(id int64) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.sent[id]
}

// instance is one Dispatcher on a shared test clock: several of them on one
// database are several instances of the service.
func instance(db *gorm.DB, ch channels.Channel, cfg config.Dispatch, clock *atomic.Int64) *delivery.Dispatcher {
	return delivery.New(db, map[string]channels.Channel{"email": ch, "sms": ch}, cfg, delivery.Senders{}, discard(),
		func() time.Time { return time.UnixMilli(clock.Load()) })
}

func submitEmails(t *testing.T, b *bundle, emails ...string) int64 {
	t.Helper()
	body := `{"collectionId": CID, "notification": [{"name": "USER_INVITEUSER", "recipients": [`
	for i, e := range emails {
		if i > 0 {
			body += ","
		}
		body += `{"email": "` + e + `", "macros": {"FNAME": "X"}}`
	}
	out, err := b.intake.Submit(context.Background(), []intake.Submission{{Source: intake.SourceQueue,
		Request: request(t, b.collectionID, body+`]}]}`)}})
	require.NoError(t, err)
	return out[0].Notifications[0].ID
}

type leaseRow struct {
	Status     string
	Attempts   int
	LeaseOwner string
	LeaseUntil int64
	Reason     string
}

func lease(t *testing.T, db *gorm.DB, id int64) leaseRow {
	t.Helper()
	var r leaseRow
	require.NoError(t, db.Raw("SELECT status, attempts, lease_owner, lease_until, reason FROM deliveries WHERE id = ?", id).Scan(&r).Error)
	return r
}

// Instance A claims a delivery and dies mid-send (it never renews). Its
// lease is the only thing between the crash and the recovery: instance B
// leaves the delivery alone until the lease expires and takes it the
// moment it has, not minutes later.
func TestDeadOwnersDeliveriesAreRecoveredWhenTheLeaseExpires(t *testing.T) {
	t.Parallel()
	testdb.Dialects(t, func(t *testing.T, db *gorm.DB) {
		b := setup(t, db)
		var clock atomic.Int64
		clock.Store(time.Now().Add(time.Second).UnixMilli()) // after the intake's own clock
		cfg := testConfig()
		cfg.Lease = 10 * time.Second
		ch := newHolding("a@example.com")
		a := instance(db, ch, cfg, &clock)
		bInst := instance(db, b.sandbox, cfg, &clock)
		require.NotEqual(t, a.Owner(), bInst.Owner(), "every process is its own owner")
		var inDoubt atomic.Int64
		bInst.OnInDoubt = func(n int) { inDoubt.Add(int64(n)) }

		id := submitEmails(t, b, "a@example.com")
		d := deliveries(t, b, id, "email")[0]
		done := make(chan struct{})
		go func() { _, _ = a.RunOnce(context.Background()); close(done) }()
		t.Cleanup(func() { ch.open(); <-done })
		<-ch.entered // A holds it, in Send; A's renewer is not running (A is dead)
		claimedAt := clock.Load()
		got := lease(t, db, d.ID)
		require.Equal(t, dispatch.StatusSending, got.Status)
		require.Equal(t, a.Owner(), got.LeaseOwner)
		require.Equal(t, claimedAt+cfg.Lease.Milliseconds(), got.LeaseUntil)

		clock.Store(claimedAt + cfg.Lease.Milliseconds() - 1)
		n, err := bInst.Recover(context.Background())
		require.NoError(t, err)
		require.Zero(t, n, "the lease has not expired yet")

		clock.Store(claimedAt + cfg.Lease.Milliseconds() + 1)
		n, err = bInst.Recover(context.Background())
		require.NoError(t, err)
		require.EqualValues(t, 1, n, "recovered as soon as the lease expired")
		require.EqualValues(t, 1, inDoubt.Load(), "counted as in doubt")
		got = lease(t, db, d.ID)
		require.Equal(t, dispatch.StatusPending, got.Status)
		require.Contains(t, got.Reason, "sending again", "the sandbox (a Reconciler) had not accepted it")
	})
}

// A send that takes far longer than the lease on a live instance is never
// taken by another: its owner's renewer keeps extending the lease, so
// instance B finds nothing to recover however much time passes, and the
// delivery is sent once.
func TestLiveOwnersSlowSendIsNeverRecovered(t *testing.T) {
	t.Parallel()
	testdb.Dialects(t, func(t *testing.T, db *gorm.DB) {
		b := setup(t, db)
		var clock atomic.Int64
		clock.Store(time.Now().Add(time.Second).UnixMilli())
		cfg := testConfig()
		cfg.Workers, cfg.Lease, cfg.PollInterval = 1, 300*time.Millisecond, 20*time.Millisecond // renewals every 100 ms
		ch := newHolding("slow@example.com")
		a := instance(db, ch, cfg, &clock)
		bInst := instance(db, b.sandbox, cfg, &clock)
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { _ = a.Run(ctx); close(done) }()
		t.Cleanup(func() { cancel(); <-done })
		t.Cleanup(ch.open) // first: a failed test must not leave Run in Send

		id := submitEmails(t, b, "slow@example.com")
		d := deliveries(t, b, id, "email")[0]
		<-ch.entered
		for range 5 {
			// An hour passes with the send still in flight; the renewer
			// (which reads the same clock) extends the lease.
			now := clock.Add(time.Hour.Milliseconds())
			require.Eventually(t, func() bool { return lease(t, db, d.ID).LeaseUntil > now }, 10*time.Second, 5*time.Millisecond,
				"the owner renews its lease")
			n, err := bInst.Recover(context.Background())
			require.NoError(t, err)
			require.Zero(t, n, "a live send is not taken")
		}
		ch.open()
		require.Eventually(t, func() bool { return lease(t, db, d.ID).Status == dispatch.StatusSent }, 10*time.Second, 5*time.Millisecond)
		require.Equal(t, 1, lease(t, db, d.ID).Attempts)
		require.Equal(t, 1, ch.count(d.ID))
	})
}

// The renewer extends the lease of everything the instance holds, across
// claim batches, with one statement.
func TestRenewExtendsEveryHeldLeaseInOneStatement(t *testing.T) {
	t.Parallel()
	testdb.Dialects(t, func(t *testing.T, db *gorm.DB) {
		b := setup(t, db)
		var clock atomic.Int64
		clock.Store(time.Now().Add(time.Second).UnixMilli())
		cfg := testConfig()
		cfg.ClaimBatch = 1
		ch := newHolding("a@example.com", "b@example.com", "c@example.com")
		a := instance(db, ch, cfg, &clock)
		id := submitEmails(t, b, "a@example.com", "b@example.com", "c@example.com")
		var wg sync.WaitGroup
		for range 3 { // three claims of one delivery each, all held in Send
			wg.Go(func() { _, _ = a.RunOnce(context.Background()) })
			<-ch.entered
		}
		t.Cleanup(func() { ch.open(); wg.Wait() })

		var statements atomic.Int64
		count := func(tx *gorm.DB) {
			if strings.Contains(tx.Statement.SQL.String(), "lease_until") {
				statements.Add(1)
			}
		}
		require.NoError(t, db.Callback().Raw().Before("gorm:raw").Register("test:count_renewals", count))
		require.NoError(t, db.Callback().Row().Before("gorm:row").Register("test:count_renewals", count))
		require.NoError(t, db.Callback().Query().Before("gorm:query").Register("test:count_renewals", count)) // UPDATE … RETURNING, through Find
		now := clock.Add(time.Hour.Milliseconds())
		n, err := a.Renew(context.Background())
		require.NoError(t, err)
		require.EqualValues(t, 3, n)
		require.EqualValues(t, 1, statements.Load(), "one statement for every held delivery")
		for _, d := range deliveries(t, b, id, "email") {
			require.Equal(t, now+cfg.Lease.Milliseconds(), lease(t, db, d.ID).LeaseUntil)
		}
	})
}

// A held delivery whose row another transaction has locked (the recorder
// writing its outcome) is skipped by the renewal, not waited for: waiting
// renewed nothing and held the renewed rows' locks against the next record
// flush. The next renewal takes it once it is free.
func TestRenewSkipsALockedRowInsteadOfWaiting(t *testing.T) {
	t.Parallel()
	db, _ := testdb.Postgres(t)
	b := setup(t, db)
	var clock atomic.Int64
	clock.Store(time.Now().Add(time.Second).UnixMilli())
	cfg := testConfig()
	cfg.ClaimBatch = 1
	ch := newHolding("a@example.com", "b@example.com")
	a := instance(db, ch, cfg, &clock)
	id := submitEmails(t, b, "a@example.com", "b@example.com")
	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() { _, _ = a.RunOnce(context.Background()) })
		<-ch.entered
	}
	t.Cleanup(func() { ch.open(); wg.Wait() })
	ds := deliveries(t, b, id, "email")
	locked, free := ds[0], ds[1]

	tx := db.Begin()
	require.NoError(t, tx.Error)
	t.Cleanup(func() { tx.Rollback() })
	require.NoError(t, tx.Exec(`SELECT id FROM deliveries WHERE id = ? FOR UPDATE`, locked.ID).Error)

	before := lease(t, db, locked.ID).LeaseUntil
	now := clock.Add(time.Hour.Milliseconds())
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	n, err := a.Renew(ctx)
	require.NoError(t, err, "the renewal does not wait for the locked row")
	require.EqualValues(t, 1, n)
	require.Equal(t, now+cfg.Lease.Milliseconds(), lease(t, db, free.ID).LeaseUntil)
	require.Equal(t, before, lease(t, db, locked.ID).LeaseUntil, "the locked row is left for the next renewal")

	require.NoError(t, tx.Rollback().Error)
	n, err = a.Renew(context.Background())
	require.NoError(t, err)
	require.EqualValues(t, 2, n, "once free it is renewed")
}

// Each (notification, action) group's outcome is written as soon as its
// provider call returns, while the rest of the batch is still being sent:
// a crash then leaves in doubt only what was sent in the last record
// interval, not every finished send of the batch.
func TestOutcomesAreRecordedWhileTheBatchIsStillSending(t *testing.T) {
	t.Parallel()
	testdb.Dialects(t, func(t *testing.T, db *gorm.DB) {
		b := setup(t, db)
		cfg := testConfig()
		cfg.Workers, cfg.ClaimBatch, cfg.PollInterval = 1, 64, 20*time.Millisecond
		ch := newHolding("slow@example.com")
		disp := delivery.New(db, map[string]channels.Channel{"email": ch, "sms": ch}, cfg, delivery.Senders{}, discard(), nil)
		in := intake.New(db, actions.NewRules(db), nil, nil, disp)
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { _ = disp.Run(ctx); close(done) }()
		t.Cleanup(func() { cancel(); <-done })
		t.Cleanup(ch.open) // first: a failed test must not leave Run in Send
		require.Eventually(t, func() bool {
			if disp.Reserve(2) == 2 {
				disp.Release(2)
				return true
			}
			return false
		}, 5*time.Second, time.Millisecond)

		// Two notifications in one intake batch: one hand-off batch of
		// two groups, sent concurrently.
		sub := func(email string) intake.Submission {
			return intake.Submission{Source: intake.SourceQueue, Request: request(t, b.collectionID,
				`{"collectionId": CID, "notification": [{"name": "USER_INVITEUSER", "recipients": [{"email": "`+email+`", "macros": {"FNAME": "X"}}]}]}`)}
		}
		out, err := in.Submit(ctx, []intake.Submission{sub("slow@example.com"), sub("fast@example.com")})
		require.NoError(t, err)
		slow := deliveries(t, b, out[0].Notifications[0].ID, "email")[0]
		fast := deliveries(t, b, out[1].Notifications[0].ID, "email")[0]
		<-ch.entered
		require.Eventually(t, func() bool { return lease(t, db, fast.ID).Status == dispatch.StatusSent }, 10*time.Second, time.Millisecond,
			"the fast group's outcome is committed while the slow one is still in Send")
		require.Equal(t, dispatch.StatusSending, lease(t, db, slow.ID).Status)
		ch.open()
		require.Eventually(t, func() bool { return lease(t, db, slow.ID).Status == dispatch.StatusSent }, 10*time.Second, time.Millisecond)
	})
}

// The outcome of a send that outlived its lease is not written over a
// delivery another instance has claimed since: the write is fenced on the
// owner and the attempt.
func TestLateOutcomeIsIgnoredForADeliveryClaimedByAnotherOwner(t *testing.T) {
	t.Parallel()
	testdb.Dialects(t, func(t *testing.T, db *gorm.DB) {
		b := setup(t, db)
		var clock atomic.Int64
		clock.Store(time.Now().Add(time.Second).UnixMilli())
		cfg := testConfig()
		ch := newHolding("a@example.com", "b@example.com")
		a := instance(db, ch, cfg, &clock)
		bInst := instance(db, b.sandbox, cfg, &clock)
		idA := submitEmails(t, b, "a@example.com")
		idB := submitEmails(t, b, "b@example.com")
		first := deliveries(t, b, idA, "email")[0]
		second := deliveries(t, b, idB, "email")[0]
		var wg sync.WaitGroup
		wg.Go(func() { _, _ = a.RunOnce(context.Background()) })
		t.Cleanup(func() { ch.open(); wg.Wait() })
		<-ch.entered // A holds both (one batch, two groups)
		<-ch.entered

		// A's lease expires; B recovers the first and claims and sends it.
		clock.Add(cfg.Lease.Milliseconds() + 1)
		n, err := bInst.Recover(context.Background())
		require.NoError(t, err)
		require.EqualValues(t, 2, n)
		require.NoError(t, db.Exec("UPDATE deliveries SET next_attempt_at = ? WHERE id = ?", clock.Load()+time.Hour.Milliseconds(), second.ID).Error)
		k, err := bInst.RunOnce(context.Background())
		require.NoError(t, err)
		require.Equal(t, 1, k)
		byB := lease(t, db, first.ID)
		require.Equal(t, dispatch.StatusSent, byB.Status)
		require.Equal(t, bInst.Owner(), byB.LeaseOwner)
		require.Equal(t, 2, byB.Attempts)
		// The second: taken over by B with the same attempt count (as
		// only the owner fence can tell apart).
		require.NoError(t, db.Exec("UPDATE deliveries SET status = 'sending', lease_owner = ?, lease_until = ? WHERE id = ?",
			bInst.Owner(), clock.Load()+cfg.Lease.Milliseconds(), second.ID).Error)

		ch.open() // A's sends return; its outcomes must change nothing
		wg.Wait()
		got := lease(t, db, first.ID)
		require.Equal(t, byB, got, "B's outcome stands")
		pm := deliveries(t, b, idA, "email")[0].ProviderMessageID
		require.NotNil(t, pm)
		require.NotContains(t, *pm, "holding-", "A's provider message id is not written")
		got = lease(t, db, second.ID)
		require.Equal(t, dispatch.StatusSending, got.Status, "still B's")
		require.Equal(t, bInst.Owner(), got.LeaseOwner)
	})
}
