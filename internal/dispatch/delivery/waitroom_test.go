package delivery

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/notificationservice/notificationservice/internal/config"
)

// TestWaitRoom: the queue consumer's wait for room in the hand-off queue
// returns at once while the queue is at most a quarter full or the workers
// are not running, waits while it is fuller until a worker takes a batch,
// and never longer than its bound.
func TestWaitRoom(t *testing.T) {
	cfg := config.Default().Dispatch
	cfg.ClaimBatch = 4
	d := &Dispatcher{cfg: cfg, wake: make(chan struct{}, 1), local: local{capacity: 16}}
	ctx := context.Background()
	returns := func(most time.Duration) time.Duration {
		t0 := time.Now()
		d.WaitRoom(ctx, most, 10*most)()
		return time.Since(t0)
	}
	claimed := func(n int) []Claimed {
		b := make([]Claimed, n)
		for i := range b {
			b[i].ID = int64(len(d.local.items) + i + 1)
		}
		return b
	}

	// Not running (no Run yet): no wait, whatever the queue holds.
	d.local.items = claimed(16)
	require.Less(t, returns(time.Minute), time.Second)
	d.local.items = nil

	d.openLocal()
	hand := func(n int) {
		require.Equal(t, n, d.Reserve(n))
		d.Hand(claimed(n))
	}
	hand(4) // a quarter: room for a batch
	require.Less(t, returns(time.Minute), time.Second)

	hand(8) // 12 of 16: wait
	require.GreaterOrEqual(t, returns(50*time.Millisecond), 50*time.Millisecond, "bounded, but waited")

	done := make(chan time.Duration, 1)
	go func() { done <- returns(time.Minute) }()
	time.Sleep(20 * time.Millisecond)
	require.Len(t, d.takeLocal(), 4) // 8 left: still waiting
	select {
	case <-done:
		t.Fatal("returned with the queue half full")
	case <-time.After(50 * time.Millisecond):
	}
	require.Len(t, d.takeLocal(), 4) // 4 left: a quarter
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("still waiting after a worker made room")
	}

	// While the workers take batches the wait goes on past idle, up to
	// most in all.
	hand(12) // 16 of 16
	stop := make(chan struct{})
	go func() {
		for {
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
				d.local.mu.Lock()
				d.local.items = append(d.local.items, make([]Claimed, 4)...) // newcomers keep it full
				d.local.mu.Unlock()
				d.takeLocal()
			}
		}
	}()
	t0 := time.Now()
	d.WaitRoom(ctx, 60*time.Millisecond, 300*time.Millisecond)()
	waited := time.Since(t0)
	close(stop)
	require.GreaterOrEqual(t, waited, 120*time.Millisecond, "the workers moved: it waited past idle")
	require.Less(t, waited, 3*time.Second)
	d.local.mu.Lock()
	d.local.items = nil
	d.local.mu.Unlock()

	// A caller that waited holds the turn until it releases it: another
	// waits meanwhile, though the queue has room, then goes without one.
	hand(12)
	go func() {
		time.Sleep(20 * time.Millisecond)
		d.takeLocal()
		d.takeLocal() // 4 left: room
	}()
	release := d.WaitRoom(ctx, time.Minute, time.Minute)
	require.Len(t, d.local.items, 4)
	second := make(chan func(), 1)
	go func() { second <- d.WaitRoom(ctx, time.Minute, time.Minute) }()
	select {
	case <-second:
		t.Fatal("a second caller went while the first held the turn")
	case <-time.After(50 * time.Millisecond):
	}
	release()
	select {
	case r := <-second:
		r()
		require.False(t, d.local.turn, "every turn released")
	case <-time.After(5 * time.Second):
		t.Fatal("the second caller still waits after the turn ended")
	}
	d.local.items = nil

	// Reserved places count as taken; a closed queue never waits.
	d.local.reserved = 12
	require.GreaterOrEqual(t, returns(20*time.Millisecond), 20*time.Millisecond)
	d.closeLocalForTest()
	require.Less(t, returns(time.Minute), time.Second)
}

// closeLocalForTest marks the queue closed without requeueing (no database).
func (d *Dispatcher) closeLocalForTest() {
	d.local.mu.Lock()
	d.local.closed = true
	d.local.mu.Unlock()
}
