package intake

import (
	"context"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// fakeSubmit is a Submit that records each batch's keys and how many
// batches were in it at once; each waits for release (nil: returns at once).
type fakeSubmit struct {
	release        chan struct{}
	inflight, most atomic.Int64
	mu             sync.Mutex
	batches        [][]string
}

func (f *fakeSubmit) submit(_ context.Context, subs []Submission) ([]Outcome, error) {
	n := f.inflight.Add(1)
	defer f.inflight.Add(-1)
	for {
		m := f.most.Load()
		if n <= m || f.most.CompareAndSwap(m, n) {
			break
		}
	}
	keys := make([]string, len(subs))
	outs := make([]Outcome, len(subs))
	for i, s := range subs {
		keys[i] = s.Key
		outs[i] = Outcome{Notifications: []Summary{{Name: s.Key}}}
	}
	f.mu.Lock()
	f.batches = append(f.batches, keys)
	f.mu.Unlock()
	if f.release != nil {
		<-f.release
	}
	return outs, nil
}

func (f *fakeSubmit) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.batches)
}

// sendN sends n submissions keyed from+0… concurrently and checks each got
// its own outcome.
func sendN(t *testing.T, g *groupCommit, from, n int) *sync.WaitGroup {
	t.Helper()
	var wg sync.WaitGroup
	for i := range n {
		key := strconv.Itoa(from + i)
		wg.Go(func() {
			out, err := g.send(context.Background(), Submission{Key: key})
			if err != nil || len(out.Notifications) != 1 || out.Notifications[0].Name != key {
				t.Errorf("send %s: %v %+v", key, err, out)
			}
		})
	}
	return &wg
}

// No more than inflight batches submit at once, however many are full.
func TestGroupCommitBoundsTheBatchesInFlight(t *testing.T) {
	t.Parallel()
	f := &fakeSubmit{release: make(chan struct{})}
	g := newGroupCommit(f.submit, time.Hour, 1, 2, time.Now) // every send is a full batch
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
func TestGroupCommitGrowsTheBatchWhileSlotsAreBusy(t *testing.T) {
	t.Parallel()
	f := &fakeSubmit{release: make(chan struct{})}
	g := newGroupCommit(f.submit, time.Millisecond, 100, 1, time.Now)
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
func TestGroupCommitDoesNotWaitAfterAQuietSpell(t *testing.T) {
	t.Parallel()
	var clock atomic.Int64 // ns since start
	start := time.Now()
	now := func() time.Time { return start.Add(time.Duration(clock.Load())) }
	f := &fakeSubmit{}
	g := newGroupCommit(f.submit, time.Hour, 3, 4, now)

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
