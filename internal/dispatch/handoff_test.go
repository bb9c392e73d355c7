package dispatch_test

import (
	"context"
	"strconv"
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
	"github.com/notificationservice/notificationservice/internal/outbox"
	"github.com/notificationservice/notificationservice/internal/testdb"
)

// gated is a channel whose Send blocks while the gate is closed; it counts
// the messages it accepted per delivery.
type gated struct {
	mu      sync.Mutex
	once    sync.Once
	open    chan struct{}
	entered chan struct{} // one value per Send call
	sent    map[int64]int
}

func newGated(open bool) *gated {
	g := &gated{open: make(chan struct{}), entered: make(chan struct{}, 100), sent: map[int64]int{}}
	if open {
		close(g.open)
	}
	return g
}

func (g *gated) Name() string { return "gated" }

// release opens the gate; it may be called again (a test's cleanup does,
// so a failed test does not leave the worker blocked and Run waiting).
func (g *gated) release() { g.once.Do(func() { close(g.open) }) }

func (g *gated) count(deliveryID int64) int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.sent[deliveryID]
}

func (g *gated) Send(ctx context.Context, msgs []channels.Message) []channels.Result {
	g.entered <- struct{}{}
	<-g.open
	g.mu.Lock()
	defer g.mu.Unlock()
	out := make([]channels.Result, len(msgs))
	for i, m := range msgs {
		g.sent[m.DeliveryID]++
		out[i].ProviderMessageID = "pm-" + jsonInt(m.DeliveryID)
	}
	return out
}

// handoffBundle is a running Dispatcher with one worker and claim batches
// of claimBatch, the intake wired to it, and separate clocks.
type handoffBundle struct {
	*bundle
	ch                       *gated
	intakeClock, workerClock atomic.Int64  // unix ms
	cancel                   func()        // stops Run
	done                     chan struct{} // closed when Run has returned
}

func runHandoff(t *testing.T, db *gorm.DB, claimBatch int, ch *gated, opts ...func(*config.Dispatch)) *handoffBundle {
	t.Helper()
	h := &handoffBundle{bundle: setup(t, db), ch: ch}
	now := time.Now().UnixMilli()
	h.intakeClock.Store(now)
	h.workerClock.Store(now + 1000)
	cfg := testConfig()
	cfg.Workers, cfg.ClaimBatch, cfg.PollInterval = 1, claimBatch, 20*time.Millisecond
	// Leases of an hour: the renewer (every 20 min) never runs in a test,
	// so a lease lapses when a test moves the worker's clock past it.
	cfg.Lease = time.Hour
	for _, o := range opts {
		o(&cfg)
	}
	h.disp = delivery.New(db, map[string]channels.Channel{"email": ch, "sms": ch}, cfg, delivery.Senders{}, discard(),
		func() time.Time { return time.UnixMilli(h.workerClock.Load()) })
	h.intake = intake.New(db, actions.NewRules(db), outbox.NewWriter(nil, nil),
		func() time.Time { return time.UnixMilli(h.intakeClock.Load()) }, h.disp)
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel, h.done = cancel, make(chan struct{})
	go func() { _ = h.disp.Run(ctx); close(h.done) }()
	t.Cleanup(func() { cancel(); <-h.done })
	// Hand-offs are taken once Run has started the workers.
	require.Eventually(t, func() bool {
		if h.disp.Reserve(1) == 1 {
			h.disp.Release(1)
			return true
		}
		return false
	}, 5*time.Second, time.Millisecond)
	return h
}

func (h *handoffBundle) submit(t *testing.T, emails ...string) int64 {
	t.Helper()
	return h.submitFrom(t, intake.SourceQueue, emails...)
}

func (h *handoffBundle) submitFrom(t *testing.T, source string, emails ...string) int64 {
	t.Helper()
	id, err := h.submitRequest(source, h.request(t, emails...))
	require.NoError(t, err)
	return id
}

// request is a notification of USER_INVITEUSER to emails.
func (h *handoffBundle) request(t *testing.T, emails ...string) dispatch.Request {
	t.Helper()
	body := `{"collectionId": CID, "notification": [{"name": "USER_INVITEUSER", "recipients": [`
	for i, e := range emails {
		if i > 0 {
			body += ","
		}
		body += `{"email": "` + e + `", "macros": {"FNAME": "X"}}`
	}
	return request(t, h.collectionID, body+`]}]}`)
}

func (h *handoffBundle) submitRequest(source string, req dispatch.Request) (int64, error) {
	out, err := h.intake.Submit(context.Background(), []intake.Submission{{Source: source, Request: req}})
	if err != nil {
		return 0, err
	}
	return out[0].Notifications[0].ID, nil
}

// fillHandOffs has the one worker block in Send on a first delivery and
// then fills its hand-off queue (4 × 1 × 1) with a second notification's.
func (h *handoffBundle) fillHandOffs(t *testing.T) (first, second int64) {
	t.Helper()
	t.Cleanup(h.ch.release) // before runHandoff's, which waits for Run
	first = h.submit(t, "a@example.com")
	<-h.ch.entered // the worker holds it, blocked in Send
	second = h.submit(t, "b@example.com", "c@example.com", "d@example.com", "e@example.com")
	for _, d := range h.email(t, second) {
		require.Equal(t, dispatch.StatusSending, d.Status, "handed off")
	}
	return first, second
}

// submitAsync submits from source in the background; the channel gets the
// notification's id once Submit has returned (0 if it failed, reported
// with t.Errorf: require may not stop a test from another goroutine).
func (h *handoffBundle) submitAsync(t *testing.T, source string, emails ...string) <-chan int64 {
	t.Helper()
	req := h.request(t, emails...)
	done := make(chan int64, 1)
	go func() {
		id, err := h.submitRequest(source, req)
		if err != nil {
			t.Errorf("Submit: %v", err)
		}
		done <- id
	}()
	return done
}

func (h *handoffBundle) email(t *testing.T, notificationID int64) []dispatch.Delivery {
	t.Helper()
	return deliveries(t, h.bundle, notificationID, "email")
}

// claimedAt reads the column the API does not show.
func claimedAt(t *testing.T, db *gorm.DB, id int64) int64 {
	t.Helper()
	var at int64
	require.NoError(t, db.Raw("SELECT claimed_at FROM deliveries WHERE id = ?", id).Scan(&at).Error)
	return at
}

// The intake hands the deliveries the running workers have room for
// straight to them, claimed in its own transaction (claimed_at is the
// intake's clock); the rest are inserted pending and claimed by a worker
// (the worker's clock). Each is sent once.
func TestIntakeHandsDeliveriesToRunningWorkers(t *testing.T) {
	t.Parallel()
	testdb.Dialects(t, func(t *testing.T, db *gorm.DB) {
		h := runHandoff(t, db, 1, newGated(true)) // room for 4 × 1 worker × 1
		id := h.submit(t, "a@example.com", "b@example.com", "c@example.com", "d@example.com", "e@example.com")
		require.Eventually(t, func() bool {
			for _, d := range h.email(t, id) {
				if d.Status != dispatch.StatusSent {
					return false
				}
			}
			return true
		}, 10*time.Second, 10*time.Millisecond)

		var handed, claimed int
		for _, d := range h.email(t, id) {
			require.Equal(t, 1, d.Attempts)
			require.Equal(t, 1, h.ch.count(d.ID), "delivery %d", d.ID)
			switch claimedAt(t, db, d.ID) {
			case h.intakeClock.Load():
				handed++
			case h.workerClock.Load():
				claimed++
			default:
				t.Fatalf("delivery %d claimed at neither clock", d.ID)
			}
		}
		require.Equal(t, 4, handed, "the workers' room: 4 × workers × claimBatch")
		require.Equal(t, 1, claimed)
	})
}

// Hand-offs still queued when the dispatcher stops go back to pending,
// with a reason, for the next start (or another instance) to claim.
func TestHandoffsQueuedAtShutdownGoBackToPending(t *testing.T) {
	t.Parallel()
	testdb.Dialects(t, func(t *testing.T, db *gorm.DB) {
		ch := newGated(false)
		h := runHandoff(t, db, 1, ch)
		first := h.submit(t, "a@example.com")
		<-ch.entered // the worker holds the first one, blocked in Send
		second := h.submit(t, "b@example.com")
		require.Equal(t, dispatch.StatusSending, h.email(t, second)[0].Status, "handed off")

		h.cancel() // the stop comes while the worker is still in Send
		close(ch.open)
		<-h.done

		require.Equal(t, dispatch.StatusSent, h.email(t, first)[0].Status, "the send in hand is finished")
		d := h.email(t, second)[0]
		require.Equal(t, dispatch.StatusPending, d.Status)
		require.Contains(t, d.Reason, "not sent before shutdown")
		require.Zero(t, ch.count(d.ID))
	})
}

// A hand-off whose lease lapsed while it waited for a worker (no renewal
// came: here the renewer is an hour away) may be another instance's by now,
// so it is not sent from the queue: it goes back to pending and is claimed
// (a second attempt), so it is sent once.
func TestLateHandoffIsClaimedAgainNotSentFromTheQueue(t *testing.T) {
	t.Parallel()
	testdb.Dialects(t, func(t *testing.T, db *gorm.DB) {
		ch := newGated(false)
		h := runHandoff(t, db, 1, ch)
		first := h.submit(t, "a@example.com")
		<-ch.entered
		second := h.submit(t, "b@example.com")
		// Its lease is an hour from the intake's clock (runHandoff).
		h.workerClock.Add((time.Hour + time.Second).Milliseconds())
		close(ch.open)
		require.Eventually(t, func() bool {
			return h.email(t, second)[0].Status == dispatch.StatusSent && h.email(t, first)[0].Status == dispatch.StatusSent
		}, 10*time.Second, 10*time.Millisecond)
		d := h.email(t, second)[0]
		require.Equal(t, 2, d.Attempts, "put back, then claimed")
		require.Equal(t, h.workerClock.Load(), claimedAt(t, db, d.ID))
		require.Equal(t, 1, ch.count(d.ID))
	})
}

// runIdle runs one worker with room for 4 × claimBatch hand-offs whose poll is
// an hour away, after its first cycle's (empty) claim, and counts what it
// sends: every later claim is one the dispatcher chose to make.
func runIdle(t *testing.T, db *gorm.DB, b *bundle, claimBatch int) (*delivery.Dispatcher, *intake.Intake, *atomic.Int64) {
	t.Helper()
	cfg := testConfig()
	cfg.Workers, cfg.ClaimBatch, cfg.PollInterval = 1, claimBatch, time.Hour
	var sent atomic.Int64
	disp := delivery.New(db, map[string]channels.Channel{"email": b.sandbox, "sms": b.sandbox}, cfg, delivery.Senders{}, discard(), nil)
	disp.OnSent = func(*dispatch.Delivery) { sent.Add(1) }
	in := intake.New(db, actions.NewRules(db), nil, nil, disp)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = disp.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	require.Eventually(t, func() bool { return disp.Claims() == 1 }, 5*time.Second, time.Millisecond, "the first cycle's claim")
	return disp, in, &sent
}

// A batch of hand-offs is recorded alone and is not followed by a claim:
// under load nearly every batch is one, and the claims after them found
// nothing. Overflow and retries are claimed when woken or at the next poll
// (TestIntakeHandsDeliveriesToRunningWorkers).
func TestHandOffsAreNotFollowedByClaims(t *testing.T) {
	t.Parallel()
	testdb.Dialects(t, func(t *testing.T, db *gorm.DB) {
		b := setup(t, db)
		disp, in, sent := runIdle(t, db, b, 64)
		for i := range 5 {
			out, err := in.Submit(context.Background(), []intake.Submission{{Source: intake.SourceQueue,
				Request: request(t, b.collectionID, twoRecipients)}})
			require.NoError(t, err)
			require.Equal(t, 4, out[0].Notifications[0].Deliveries, "submission %d", i)
			// Email to both, SMS to the one with a phone.
			require.Eventually(t, func() bool { return sent.Load() == int64(3*(i+1)) }, 10*time.Second, time.Millisecond,
				"submission %d: deliveries not sent", i)
		}
		require.EqualValues(t, 1, disp.Claims(), "15 hand-offs, no claim after any")
	})
}

// Deliveries the intake could not hand off are claimed by the worker that
// finishes the hand-offs, not left for the next poll: the intake's wake-up
// for them may reach no idle worker (here the one worker's wake-up slot
// already holds the hand-off's), and the poll is an hour away.
func TestOverflowIsClaimedAfterTheHandOffsWithoutAPoll(t *testing.T) {
	t.Parallel()
	testdb.Dialects(t, func(t *testing.T, db *gorm.DB) {
		b := setup(t, db)
		_, in, sent := runIdle(t, db, b, 2)
		body := `{"collectionId": CID, "notification": [{"name": "USER_INVITEUSER", "recipients": [`
		for i := range 5 {
			if i > 0 {
				body += ","
			}
			body += `{"email": "u` + strconv.Itoa(i) + `@example.com", "phone": "+1555000000` + strconv.Itoa(i) + `", "macros": {"FNAME": "U"}}`
		}
		_, err := in.Submit(context.Background(), []intake.Submission{{Source: intake.SourceQueue, Request: request(t, b.collectionID, body+`]}]}`)}})
		require.NoError(t, err)
		require.Eventually(t, func() bool { return sent.Load() == 10 }, 10*time.Second, 5*time.Millisecond,
			"5 recipients × email and SMS: 8 handed off, 2 claimed")
	})
}

// A renewal covers only the rows it extended. A hand-off whose lease
// lapsed in the queue (renewals failing) and which another instance's
// recovery has taken since is not extended by this instance's next
// renewal, so the lease gate still keeps it from being sent from the
// queue: the other instance sends it, once. (A renewal that counted for
// every held row let it through.)
func TestARenewalDoesNotCoverARowItDidNotExtend(t *testing.T) {
	t.Parallel()
	testdb.Dialects(t, func(t *testing.T, db *gorm.DB) {
		ch := newGated(false)
		h := runHandoff(t, db, 1, ch)
		first := h.submit(t, "a@example.com")
		<-ch.entered
		second := h.email(t, h.submit(t, "b@example.com"))[0]
		h.workerClock.Add((time.Hour + time.Second).Milliseconds())
		// Another instance's recovery took it; due in an hour, so this
		// instance's own claims leave it alone too.
		require.NoError(t, db.Exec("UPDATE deliveries SET status = 'pending', lease_owner = 'another-instance', next_attempt_at = ? WHERE id = ?",
			h.workerClock.Load()+time.Hour.Milliseconds(), second.ID).Error)
		n, err := h.disp.Renew(context.Background())
		require.NoError(t, err)
		require.EqualValues(t, 1, n, "the send in hand is renewed, the taken row is not")
		close(ch.open)
		// The one worker takes hand-offs in order: once the third is
		// sent, the second has been through the gate.
		third := h.submit(t, "c@example.com")
		require.Eventually(t, func() bool {
			return h.email(t, third)[0].Status == dispatch.StatusSent && h.email(t, first)[0].Status == dispatch.StatusSent
		}, 10*time.Second, 10*time.Millisecond)
		require.Zero(t, ch.count(second.ID), "not sent from the queue")
		var owner string
		require.NoError(t, db.Raw("SELECT lease_owner FROM deliveries WHERE id = ?", second.ID).Scan(&owner).Error)
		require.Equal(t, "another-instance", owner)
	})
}

// A queue batch that finds the hand-off queue more than half full waits for
// the workers to take from it (dispatch.handOffWait) instead of storing its
// deliveries pending: each of those would cost a claim UPDATE later, the
// most expensive write per delivery on PostgreSQL (docs/benchmarks.md).
// Here the queue is full, so the batch waits until the worker has taken two;
// then its delivery is handed off too, not claimed.
func TestQueueBatchWaitsForHandOffRoomInsteadOfGoingPending(t *testing.T) {
	t.Parallel()
	testdb.Dialects(t, func(t *testing.T, db *gorm.DB) {
		h := runHandoff(t, db, 1, newGated(false), func(c *config.Dispatch) { c.HandOffWait = time.Minute })
		first, second := h.fillHandOffs(t)
		third := h.submitAsync(t, intake.SourceQueue, "f@example.com")
		require.Never(t, func() bool { return len(third) > 0 }, 200*time.Millisecond, 10*time.Millisecond,
			"the queue is full: the batch waits for room")
		h.ch.release()
		var id int64
		select {
		case id = <-third:
		case <-time.After(10 * time.Second):
			t.Fatal("the batch still waits after the worker took from the queue")
		}
		require.Eventually(t, func() bool { return h.email(t, id)[0].Status == dispatch.StatusSent }, 10*time.Second, 10*time.Millisecond)
		d := h.email(t, id)[0]
		require.Equal(t, h.intakeClock.Load(), claimedAt(t, db, d.ID), "handed off by the intake, not claimed by the worker")
		require.Equal(t, 1, d.Attempts)
		for _, n := range []int64{first, second, id} {
			for _, d := range h.email(t, n) {
				require.Eventually(t, func() bool { return h.ch.count(d.ID) == 1 }, 10*time.Second, 10*time.Millisecond, "delivery %d sent once", d.ID)
			}
		}
	})
}

// The wait is bounded: after dispatch.handOffWait the batch commits and
// what does not fit is stored pending, as without a wait. An API send
// never waits (its caller is waiting for the answer).
func TestHandOffWaitIsBoundedAndOnlyForQueueBatches(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name   string
		source string
		wait   time.Duration
	}{
		{"queue batch after the wait", intake.SourceQueue, 50 * time.Millisecond},
		{"API send at once", intake.SourceAPI, time.Hour},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			testdb.Dialects(t, func(t *testing.T, db *gorm.DB) {
				h := runHandoff(t, db, 1, newGated(false), func(d *config.Dispatch) { d.HandOffWait = c.wait })
				h.fillHandOffs(t)
				done := h.submitAsync(t, c.source, "f@example.com")
				select {
				case id := <-done:
					require.Equal(t, dispatch.StatusPending, h.email(t, id)[0].Status, "no room: stored pending")
				case <-time.After(10 * time.Second):
					t.Fatal("Submit did not return while the queue stayed full")
				}
			})
		})
	}
}
