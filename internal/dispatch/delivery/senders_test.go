package delivery

import (
	"bytes"
	"runtime"
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

const pkgPath = "github.com/notificationservice/notificationservice/internal/dispatch/delivery"

// deepCall uses about n × 0.5 KiB of stack and waits at its deepest for
// release to close.
//
//go:noinline
func deepCall(n int, release <-chan struct{}) byte {
	var frame [512]byte
	if n == 0 {
		<-release
		return frame[0]
	}
	frame[1] = deepCall(n-1, release)
	return frame[1]
}

// A pool's goroutines keep, while they wait for a job, the stack their
// jobs grew: garbage collections do not halve it, so the next job does not
// grow it again (senders, park). Not parallel: it reads the process's stack
// memory.
func TestSendersKeepTheStackTheirJobsNeed(t *testing.T) {
	const n = 100
	p := newSenders(n)
	t.Cleanup(p.close)
	// waitingIn counts the goroutines whose innermost frame is fn's.
	waitingIn := func(fn string) int {
		buf := make([]byte, 4<<20)
		return bytes.Count(buf[:runtime.Stack(buf, true)], []byte("]:\n"+pkgPath+"."+fn+"("))
	}
	release := make(chan struct{})
	var started sync.WaitGroup
	started.Add(n)
	for range n {
		p.do(func() {
			started.Done()
			deepCall(20, release) // about 10 KiB: the stack grows to 16 KiB
		})
	}
	started.Wait()
	require.Equal(t, n, p.started)
	// The jobs wait 10 KiB deep: no collection shrinks their stacks now.
	require.Eventually(t, func() bool { return waitingIn("deepCall") == n }, 5*time.Second, time.Millisecond)
	var busy, parked runtime.MemStats
	runtime.ReadMemStats(&busy)
	close(release)
	require.Eventually(t, func() bool { return waitingIn("(*senders).park") == n }, 5*time.Second, time.Millisecond)
	for range 4 {
		runtime.GC() // each halves the stacks it may shrink
	}
	runtime.ReadMemStats(&parked)
	t.Logf("stacks in use: %d KiB with the jobs running, %d KiB after four collections with them parked",
		busy.StackInuse>>10, parked.StackInuse>>10)
	require.GreaterOrEqual(t, parked.StackInuse, busy.StackInuse*3/4, "the parked goroutines' stacks were shrunk")
}
