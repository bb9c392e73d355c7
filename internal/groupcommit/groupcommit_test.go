package groupcommit

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// fakeFlush is a flush that records each batch's keys and how many batches
// were in it at once; each waits for release (nil: returns at once). Its
// result for a key is the key doubled.
type fakeFlush struct {
	release        chan struct{}
	inflight, most atomic.Int64
	mu             sync.Mutex
	batches        [][]string
}

func (f *fakeFlush) flush(_ context.Context, keys []string) ([]string, error) {
	n := f.inflight.Add(1)
	defer f.inflight.Add(-1)
	for {
		m := f.most.Load()
		if n <= m || f.most.CompareAndSwap(m, n) {
			break
		}
	}
	outs := make([]string, len(keys))
	for i, k := range keys {
		outs[i] = k + k
	}
	f.mu.Lock()
	f.batches = append(f.batches, keys)
	f.mu.Unlock()
	if f.release != nil {
		<-f.release
	}
	return outs, nil
}

func (f *fakeFlush) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.batches)
}

// sendN sends n requests keyed from+0… concurrently and checks each got its
// own result.
func sendN(t *testing.T, g *Group[string, string], from, n int) *sync.WaitGroup {
	t.Helper()
	var wg sync.WaitGroup
	for i := range n {
		key := strconv.Itoa(from + i)
		wg.Go(func() {
			out, err := g.Do(context.Background(), key)
			if err != nil || out != key+key {
				t.Errorf("send %s: %v %+v", key, err, out)
			}
		})
	}
	return &wg
}

// No more than inflight batches submit at once, however many are full.
func TestBoundsTheBatchesInFlight(t *testing.T) {
	t.Parallel()
	f := &fakeFlush{release: make(chan struct{})}
	g := New(f.flush, time.Hour, 1, 2, time.Now) // every send is a full batch
	wg := sendN(t, g, 0, 6)
	require.Eventually(t, func() bool { return f.count() == 2 }, 5*time.Second, time.Millisecond)
	time.Sleep(20 * time.Millisecond) // room for a third to start, were it allowed
	require.EqualValues(t, 2, f.inflight.Load())
	close(f.release)
	wg.Wait()
	require.EqualValues(t, 2, f.most.Load())
	require.Equal(t, 6, f.count())
}

// While every slot is busy the open group keeps taking sends: they go as
// one batch when a slot frees, not one batch per wait.
func TestGrowsTheBatchWhileSlotsAreBusy(t *testing.T) {
	t.Parallel()
	f := &fakeFlush{release: make(chan struct{})}
	g := New(f.flush, time.Millisecond, 100, 1, time.Now)
	first := sendN(t, g, 0, 1)
	require.Eventually(t, func() bool { return f.count() == 1 }, 5*time.Second, time.Millisecond)
	var rest sync.WaitGroup
	for i := range 5 {
		w := sendN(t, g, 1+i, 1)
		rest.Go(w.Wait)
		time.Sleep(3 * time.Millisecond) // longer than the wait: each would have been a batch of its own
	}
	close(f.release)
	first.Wait()
	rest.Wait()
	require.Equal(t, 2, f.count(), "batches: %v", f.batches)
	require.Len(t, f.batches[1], 5)
}

// A send after a quiet spell longer than the wait goes at once; sends close
// together still wait for each other (the wait here is an hour).
func TestDoesNotWaitAfterAQuietSpell(t *testing.T) {
	t.Parallel()
	var clock atomic.Int64 // ns since start
	start := time.Now()
	now := func() time.Time { return start.Add(time.Duration(clock.Load())) }
	f := &fakeFlush{}
	g := New(f.flush, time.Hour, 3, 4, now)

	clock.Add(int64(2 * time.Hour))
	done := make(chan struct{})
	go func() { sendN(t, g, 0, 1).Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("a send after a quiet spell waited for others")
	}

	// Close together: three sends make one batch (it goes when full).
	sendN(t, g, 1, 3).Wait()
	require.Equal(t, 2, f.count(), "batches: %v", f.batches)
	require.Len(t, f.batches[1], 3)
}

// A batch's error is every member's, and a member whose ctx ended before
// its batch was taken is left out of it with its own ctx's error.
func TestErrorsAndLeavers(t *testing.T) {
	t.Parallel()
	failed := errors.New("the database is away")
	var flushed [][]string
	var mu sync.Mutex
	g := New(func(_ context.Context, keys []string) ([]string, error) {
		mu.Lock()
		flushed = append(flushed, keys)
		mu.Unlock()
		return nil, failed
	}, 50*time.Millisecond, 3, 1, time.Now)

	gone, cancel := context.WithCancel(context.Background())
	errs := make([]error, 3)
	var wg sync.WaitGroup
	wg.Go(func() { _, errs[0] = g.Do(context.Background(), "a") }) // leads, waits 50 ms
	time.Sleep(5 * time.Millisecond)
	wg.Go(func() { _, errs[1] = g.Do(gone, "b") })
	time.Sleep(5 * time.Millisecond)
	cancel() // b leaves before the batch is taken
	wg.Go(func() { _, errs[2] = g.Do(context.Background(), "c") })
	wg.Wait()

	require.ErrorIs(t, errs[0], failed)
	require.ErrorIs(t, errs[1], context.Canceled)
	require.ErrorIs(t, errs[2], failed)
	require.Equal(t, [][]string{{"a", "c"}}, flushed)
}

// A flush that returns a result count other than its batch's fails the
// batch rather than hand members someone else's result.
func TestAMiscountedFlushFails(t *testing.T) {
	t.Parallel()
	g := New(func(_ context.Context, keys []string) ([]string, error) { return keys[:0], nil }, time.Millisecond, 1, 1, time.Now)
	_, err := g.Do(context.Background(), "a")
	require.ErrorContains(t, err, "0 results for a batch of 1")
}
