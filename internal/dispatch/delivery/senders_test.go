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

// waitingIn counts the goroutines whose innermost frame is fn's.
func waitingIn(fn string) int {
	buf := make([]byte, 4<<20)
	return bytes.Count(buf[:runtime.Stack(buf, true)], []byte("]:\n"+pkgPath+"."+fn+"("))
}

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

// stackAfterJobs runs n jobs on p that grow their stacks to 16 KiB (about
// 10 KiB used), lets them end, waits until all n goroutines wait in waitFn,
// runs four collections (each halves the stacks it may shrink), and returns
// the stack memory in use with the jobs running and after.
func stackAfterJobs(t *testing.T, p *senders, n int, waitFn string) (busy, after uint64) {
	t.Helper()
	release := make(chan struct{})
	var started sync.WaitGroup
	started.Add(n)
	for range n {
		p.do(func() {
			started.Done()
			deepCall(20, release)
		})
	}
	started.Wait()
	require.Equal(t, n, p.started)
	// The jobs wait 10 KiB deep: no collection shrinks their stacks now.
	require.Eventually(t, func() bool { return waitingIn("deepCall") == n }, 5*time.Second, time.Millisecond)
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	busy = m.StackInuse
	close(release)
	require.Eventually(t, func() bool { return waitingIn(waitFn) == n }, 5*time.Second, time.Millisecond)
	for range 4 {
		runtime.GC()
	}
	runtime.ReadMemStats(&m)
	t.Logf("stacks in use: %d KiB with the jobs running, %d KiB after four collections with them in %s",
		busy>>10, m.StackInuse>>10, waitFn)
	return busy, m.StackInuse
}

// A pool's goroutines keep, while they wait for a job, the stack their
// jobs grew: garbage collections do not halve it, so the next job does not
// grow it again (senders, park). Not parallel: it reads the process's stack
// memory.
func TestSendersKeepTheStackTheirJobsNeed(t *testing.T) {
	p := newSenders(100)
	p.idle = time.Hour // not idle long enough to wait shallow
	t.Cleanup(p.close)
	busy, parked := stackAfterJobs(t, p, 100, "(*senders).park")
	require.GreaterOrEqual(t, parked, busy*3/4, "the parked goroutines' stacks were shrunk")
}

// A goroutine idle for longer than the pool's idle time waits without the
// frame, and the collector shrinks its stack: a burst does not keep its
// goroutines' stacks for good.
func TestSendersGiveBackIdleStacks(t *testing.T) {
	const n = 100
	p := newSenders(n)
	p.idle = 20 * time.Millisecond
	t.Cleanup(p.close)
	busy, idle := stackAfterJobs(t, p, n, "(*senders).next")
	require.Less(t, idle, busy*3/4, "the idle goroutines kept their stacks")

	// And they still take jobs.
	var ran sync.WaitGroup
	ran.Add(2 * n)
	for range 2 * n {
		p.do(ran.Done)
	}
	ran.Wait()
	require.Equal(t, n, p.started)
}
