package delivery

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// A pool runs at most its bound of jobs at once, starts no more goroutines
// than that, and reuses them for the jobs after.
func TestSendersBoundAndReuse(t *testing.T) {
	t.Parallel()
	p := newSenders(3)
	release := make(chan struct{})
	var running, peak, done atomic.Int64
	var wg sync.WaitGroup
	job := func() {
		defer wg.Done()
		n := running.Add(1)
		for {
			m := peak.Load()
			if n <= m || peak.CompareAndSwap(m, n) {
				break
			}
		}
		<-release
		running.Add(-1)
		done.Add(1)
	}
	wg.Add(3)
	for range 3 {
		p.do(job)
	}
	require.Eventually(t, func() bool { return running.Load() == 3 }, 5*time.Second, time.Millisecond)
	queued := make(chan struct{})
	wg.Add(7)
	go func() {
		for range 7 {
			p.do(job) // blocks while all three are busy
		}
		close(queued)
	}()
	select {
	case <-queued:
		t.Fatal("a fourth job started while three were running")
	case <-time.After(50 * time.Millisecond):
	}
	close(release)
	<-queued
	wg.Wait()
	require.EqualValues(t, 10, done.Load())
	require.EqualValues(t, 3, peak.Load())
	require.Equal(t, 3, p.started, "the goroutines are reused")
	p.close()
}
