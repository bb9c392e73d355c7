package app

import (
	"io"
	"sync"
	"time"
)

// Log output batching: how long a line may wait and how much may wait.
const (
	logFlushInterval = 50 * time.Millisecond
	logFlushBytes    = 64 << 10
	logMaxPending    = 1 << 20 // past this a logging goroutine waits for the write
)

// LogOutput batches log lines into few writes. Every line used to be its own
// write(2) to stderr: about a tenth of the process's CPU while serving REST
// sends (docs/benchmarks.md). A line is written at most logFlushInterval
// after it is logged, sooner when logFlushBytes wait, and at Close.
//
// What batching costs: a process killed without Close (SIGKILL, OOM kill,
// a crash) loses the lines of its last logFlushInterval. Logs are a
// diagnostic, not a record: the database holds every outcome, and a clean
// shutdown (SIGTERM) flushes everything (docs/observability.md).
type LogOutput struct {
	w        io.Writer
	interval time.Duration

	mu      sync.Mutex
	drained *sync.Cond // a write finished: room for waiting lines
	buf     []byte
	spare   []byte
	closed  bool

	kick chan struct{} // a line arrived in an empty buffer
	full chan struct{} // logFlushBytes are waiting
	stop chan struct{}
	done chan struct{}
}

// NewLogOutput starts batching lines to w; Close stops it and writes what
// is left.
func NewLogOutput(w io.Writer) *LogOutput {
	return newLogOutput(w, logFlushInterval)
}

func newLogOutput(w io.Writer, interval time.Duration) *LogOutput {
	o := &LogOutput{w: w, interval: interval, kick: make(chan struct{}, 1), full: make(chan struct{}, 1),
		stop: make(chan struct{}), done: make(chan struct{})}
	o.drained = sync.NewCond(&o.mu)
	go o.run()
	return o
}

// Write queues p (one log line; the slog handlers write a line per call).
// It blocks only while logMaxPending bytes wait on a stalled writer, so a
// stuck stderr slows logging down instead of growing memory without bound.
func (o *LogOutput) Write(p []byte) (int, error) {
	o.mu.Lock()
	for !o.closed && len(o.buf) > 0 && len(o.buf)+len(p) > logMaxPending {
		o.drained.Wait()
	}
	if o.closed {
		defer o.mu.Unlock()
		return o.w.Write(p) // lines logged after Close go straight out
	}
	first := len(o.buf) == 0
	o.buf = append(o.buf, p...)
	n := len(o.buf)
	o.mu.Unlock()
	switch {
	case n >= logFlushBytes:
		signal(o.full)
	case first:
		signal(o.kick)
	}
	return len(p), nil
}

func signal(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

func (o *LogOutput) run() {
	defer close(o.done)
	t := time.NewTimer(o.interval)
	t.Stop()
	for {
		select {
		case <-o.kick:
		case <-o.full:
		case <-o.stop:
			return
		}
		t.Reset(o.interval)
		select {
		case <-t.C:
		case <-o.full:
			t.Stop()
		case <-o.stop:
			t.Stop()
			return
		}
		o.flush()
	}
}

// flush writes what waits, outside the lock, so lines keep queueing while
// the write is in flight.
func (o *LogOutput) flush() {
	o.mu.Lock()
	b := o.buf
	o.buf = o.spare[:0]
	o.mu.Unlock()
	if len(b) > 0 {
		_, _ = o.w.Write(b) // nowhere to report a failing stderr
	}
	o.mu.Lock()
	o.spare = b
	o.drained.Broadcast()
	o.mu.Unlock()
}

// Close writes every queued line and makes later lines go straight to the
// writer. Call it last, after everything that logs has stopped.
func (o *LogOutput) Close() error {
	close(o.stop)
	<-o.done
	o.mu.Lock()
	defer o.mu.Unlock()
	o.closed = true
	o.drained.Broadcast()
	if len(o.buf) > 0 {
		_, err := o.w.Write(o.buf)
		o.buf = nil
		return err
	}
	return nil
}
