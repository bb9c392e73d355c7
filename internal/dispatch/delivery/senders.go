package delivery

// sendConcurrency bounds the provider calls one worker has in flight: the
// groups of its batch sent at once.
const sendConcurrency = 64

// senders is one worker's pool of send goroutines, started as the batches
// need them (at most max) and kept until the worker stops. A goroutine per
// group, started and ended per batch, grew its stack anew through the
// render, channel and database call chains each time: runtime.newstack and
// copystack were 5-6% of the drain's CPU (issue 17). Only its owner calls
// do and close.
type senders struct {
	jobs    chan func()
	started int
	max     int
}

func newSenders(limit int) *senders {
	return &senders{jobs: make(chan func()), max: limit}
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
	for ok := true; ok; f, ok = <-p.jobs {
		f()
	}
}

// close ends the pool's goroutines once their jobs are done.
func (p *senders) close() { close(p.jobs) }
