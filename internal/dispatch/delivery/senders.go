package delivery

import "time"

// maxSendConcurrency bounds the provider calls one worker has in flight:
// the groups of its batch sent at once.
const maxSendConcurrency = 64

// sendConcurrency is how many groups one worker sends at once: its share of
// dispatch.recordBatch, the deliveries all the workers together may have
// sent and not yet recorded (recorder.reserve), at least two and at most
// maxSendConcurrency. A worker's pool goroutines beyond its share could not
// all be sending: the reservation holds them back, and each still keeps a
// send's stack (senders). At 64 for each of the 8 workers, against a bound
// of 256, the pools held about 540 goroutines and 9.7 MB of stacks through
// a 5,000 deliveries/s soak, with 106 sends in flight (docs/benchmarks.md).
func (d *Dispatcher) sendConcurrency() int {
	share := (d.cfg.RecordBatch + max(d.cfg.Workers, 1) - 1) / max(d.cfg.Workers, 1)
	return min(max(share, 2), maxSendConcurrency)
}

// senders is one worker's pool of send goroutines, started as the batches
// need them (at most max) and kept until the worker stops. A goroutine per
// group, started and ended per batch, grew its stack anew through the
// render, channel and database call chains each time: runtime.newstack and
// copystack were 5-6% of the drain's CPU (issue 17).
//
// Kept goroutines paid the same cost in another form. Every garbage
// collection halves the stack of a goroutine that is parked using less than
// a quarter of it, and the goroutine's next job grows it back, copying it
// (runtime.shrinkstack, newstack). With a collection every few dozen
// milliseconds under load, most jobs began by growing their stack again:
// 4-6% of the service's CPU in both the drain and the REST send
// (docs/benchmarks.md, "Latest: send goroutines keep their stacks"). So a
// goroutine waits for its next job with parkDepth bytes of stack under it
// (park), and its stack stays the size a send needs. A goroutine that has
// had no job for parkIdle waits without it, and the collector shrinks its
// stack: a burst does not leave every goroutine it started holding 16 KiB.
// The runtime's only setting for this, GODEBUG=gcshrinkstackoff=1, is
// process-wide and cannot be built in (go:debug does not take it).
//
// Only the pool's owner calls do and close.
type senders struct {
	jobs    chan func()
	started int
	max     int
	idle    time.Duration // parkIdle; tests shorten it
}

func newSenders(limit int) *senders {
	return &senders{jobs: make(chan func()), max: limit, idle: parkIdle}
}

// do runs f on an idle goroutine of the pool, else on a new one while
// fewer than max run, else waits for one to finish its job: at most max
// jobs run at once.
func (p *senders) do(f func()) {
	select {
	case p.jobs <- f:
		return
	default:
	}
	if p.started < p.max {
		p.started++
		go p.run(f)
		return
	}
	p.jobs <- f
}

func (p *senders) run(f func()) {
	idle := time.NewTimer(p.idle)
	defer idle.Stop()
	for ok := true; ok; f, ok = p.next(idle) {
		f()
	}
}

// parkIdle is how long a goroutine waits for a job in park before it waits
// without the frame, its stack left to the collector to shrink.
const parkIdle = 2 * time.Second

// parkDepth is the stack park keeps under a waiting goroutine: a quarter of
// the 16 KiB that render, a channel's Send and its logging reach, so a
// collection leaves that stack as it is (it shrinks one whose goroutine uses
// less than a quarter of it). It costs a 5 KiB memclr per job.
const parkDepth = 5 << 10

// next waits for the next job: in park for p.idle, then shallow.
func (p *senders) next(idle *time.Timer) (func(), bool) {
	if f, ok, got := p.park(idle); got {
		return f, ok
	}
	f, ok := <-p.jobs
	return f, ok
}

// park waits for the next job on a frame of parkDepth bytes (senders), for
// p.idle at most; got is false when none came.
//
//go:noinline
func (p *senders) park(idle *time.Timer) (f func(), ok, got bool) {
	var depth [parkDepth]byte
	// Since Go 1.23 a timer's channel holds no stale value after Reset or
	// Stop, so one timer serves every wait.
	idle.Reset(p.idle)
	select {
	case f, ok = <-p.jobs:
		got = true
		idle.Stop()
	case <-idle.C:
	}
	keepFrame(depth[:]) // the array, and so the frame, must not be optimized away
	return f, ok, got
}

//go:noinline
func keepFrame(b []byte) { _ = b[len(b)-1] }

// close ends the pool's goroutines once their jobs are done.
func (p *senders) close() { close(p.jobs) }
