package benchbin

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// result is what a closed-loop HTTP load saw.
type result struct {
	ok, other int
	elapsed   time.Duration
	lat       []time.Duration // of the ok answers, sorted
}

func (r result) rate() float64 { return float64(r.ok) / r.elapsed.Seconds() }

// closedLoop runs conns clients, each sending its next request as soon as
// the last is answered, for d. req builds request i; ok is the status that
// counts as served.
func closedLoop(conns int, d time.Duration, ok int, req func(i int64) *http.Request) result {
	tr := &http.Transport{MaxIdleConnsPerHost: conns, MaxConnsPerHost: conns}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 30 * time.Second}
	var next atomic.Int64
	var mu sync.Mutex
	var res result
	deadline := time.Now().Add(d)
	start := time.Now()
	var wg sync.WaitGroup
	for range conns {
		wg.Go(func() {
			var lat []time.Duration
			var other int
			for time.Now().Before(deadline) {
				t0 := time.Now()
				resp, err := client.Do(req(next.Add(1)))
				if err != nil {
					other++
					continue
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				_ = resp.Body.Close()
				if resp.StatusCode == ok {
					lat = append(lat, time.Since(t0))
				} else {
					other++
				}
			}
			mu.Lock()
			res.lat = append(res.lat, lat...)
			res.other += other
			mu.Unlock()
		})
	}
	wg.Wait()
	res.elapsed = time.Since(start)
	res.ok = len(res.lat)
	slices.Sort(res.lat)
	return res
}

// openLoop sends rate requests a second for d, request i at its own slot
// start+i/rate whatever the answers before it (at most 1024 in flight), and
// times each from its slot: a server that falls behind shows it in the
// latency, not in a lower offered rate.
func openLoop(rate int, d time.Duration, ok int, req func(i int64) *http.Request) result {
	tr := &http.Transport{MaxIdleConnsPerHost: 1024}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 30 * time.Second}
	n := int(int64(rate) * int64(d) / int64(time.Second))
	sem := make(chan struct{}, 1024)
	var mu sync.Mutex
	var res result
	var wg sync.WaitGroup
	start := time.Now()
	for i := range n {
		slot := start.Add(time.Duration(i) * time.Second / time.Duration(rate))
		time.Sleep(time.Until(slot))
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			resp, err := client.Do(req(int64(i)))
			served := false
			if err == nil {
				_, _ = io.Copy(io.Discard, resp.Body)
				_ = resp.Body.Close()
				served = resp.StatusCode == ok
			}
			lat := time.Since(slot)
			mu.Lock()
			defer mu.Unlock()
			if served {
				res.lat = append(res.lat, lat)
			} else {
				res.other++
			}
		})
	}
	wg.Wait()
	res.elapsed = time.Since(start)
	res.ok = len(res.lat)
	slices.Sort(res.lat)
	return res
}

// pct is the q-quantile of sorted (0 if empty).
func pct(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	return sorted[int(q*float64(len(sorted)-1))]
}

// publishAt publishes n messages at rate per second on its own channel,
// each at its slot start+i/rate so a late tick does not lower the rate, and
// returns when each was published. It publishes as docs/queue.md asks a
// producer to: persistent, mandatory, in confirm mode. The confirms are not
// waited for one by one (that would pace the publisher by the broker), but
// all of them before it returns: a message the broker did not take (nacked,
// returned, or never confirmed, as a channel closed right after its last
// publish can leave one) is the harness's error, not a message the service
// lost.
func publishAt(ctx context.Context, conn *amqp.Connection, exchange, key string, n, rate int, id func(int) string, body func(int) []byte) ([]time.Time, error) {
	ch, err := conn.Channel()
	if err != nil {
		return nil, err
	}
	defer ch.Close()
	if err := ch.Confirm(false); err != nil {
		return nil, err
	}
	returns := ch.NotifyReturn(make(chan amqp.Return, n))
	at := make([]time.Time, n)
	dcs := make([]*amqp.DeferredConfirmation, n)
	start := time.Now()
	for i := range n {
		time.Sleep(time.Until(start.Add(time.Duration(i) * time.Second / time.Duration(rate))))
		at[i] = time.Now()
		if dcs[i], err = ch.PublishWithDeferredConfirmWithContext(ctx, exchange, key, true, false, amqp.Publishing{
			MessageId: id(i), DeliveryMode: amqp.Persistent, ContentType: "application/json",
			Headers: amqp.Table{"bench-published-ns": at[i].UnixNano()}, Body: body(i)}); err != nil {
			return nil, fmt.Errorf("publish %d: %w", i, err)
		}
	}
	wctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	for i, dc := range dcs {
		if ok, err := dc.WaitContext(wctx); !ok {
			return nil, fmt.Errorf("publish %d (%s) not confirmed: %v", i, id(i), err)
		}
	}
	select {
	case r := <-returns:
		return nil, fmt.Errorf("publish %s returned unroutable: %d %s", r.MessageId, r.ReplyCode, r.ReplyText)
	default:
	}
	return at, nil
}

// preload publishes n messages with confirms, in windows of 1000.
func preload(ctx context.Context, conn *amqp.Connection, exchange, key string, n int, id func(int) string, body func(int) []byte) error {
	ch, err := conn.Channel()
	if err != nil {
		return err
	}
	defer ch.Close()
	if err := ch.Confirm(false); err != nil {
		return err
	}
	var w confirmWindow
	for i := range n {
		dc, err := ch.PublishWithDeferredConfirmWithContext(ctx, exchange, key, false, false, amqp.Publishing{
			MessageId: id(i), DeliveryMode: amqp.Persistent, ContentType: "application/json", Body: body(i)})
		if err != nil {
			return err
		}
		if _, err := w.add(ctx, dc); err != nil {
			return err
		}
	}
	_, err = w.wait(ctx)
	return err
}

// confirmWindow waits for a publisher's confirms 1000 at a time: a
// publisher neither waits on each message nor counts one the broker has
// not confirmed. A channel closed with publishes unconfirmed can lose
// them, and the service would be blamed for messages it never got.
type confirmWindow struct{ pending []*amqp.DeferredConfirmation }

// add queues dc and, when 1000 are queued, waits for them; it returns how
// many were confirmed by that wait (0 when it did not wait).
func (w *confirmWindow) add(ctx context.Context, dc *amqp.DeferredConfirmation) (int, error) {
	if w.pending = append(w.pending, dc); len(w.pending) < 1000 {
		return 0, nil
	}
	return w.wait(ctx)
}

// wait waits for every queued confirm and returns how many there were.
func (w *confirmWindow) wait(ctx context.Context) (int, error) {
	for _, dc := range w.pending {
		wctx, cancel := context.WithTimeout(ctx, time.Minute)
		ok, err := dc.WaitContext(wctx)
		cancel()
		if !ok {
			return 0, fmt.Errorf("publish not confirmed: %v", err)
		}
	}
	n := len(w.pending)
	w.pending = w.pending[:0]
	return n, nil
}

// bareConsume is the baseline: consumers channels with prefetch, each acking
// every message as it arrives, until n are acked or d passes. It returns the
// publish→receive latencies of the messages that carry the publish time.
func bareConsume(conn *amqp.Connection, queue string, consumers, prefetch, n int, d time.Duration) ([]time.Duration, error) {
	var acked atomic.Int64
	var mu sync.Mutex
	var lat []time.Duration
	done := make(chan struct{})
	var once sync.Once
	var wg sync.WaitGroup
	for range consumers {
		ch, err := conn.Channel()
		if err != nil {
			return nil, err
		}
		if err := ch.Qos(prefetch, 0, false); err != nil {
			return nil, err
		}
		ds, err := ch.Consume(queue, "", false, false, false, false, nil)
		if err != nil {
			return nil, err
		}
		wg.Go(func() {
			defer ch.Close()
			for {
				select {
				case m, open := <-ds:
					if !open {
						return
					}
					if ns, ok := m.Headers["bench-published-ns"].(int64); ok {
						mu.Lock()
						lat = append(lat, time.Since(time.Unix(0, ns)))
						mu.Unlock()
					}
					if m.Ack(false) != nil {
						return
					}
					if acked.Add(1) >= int64(n) {
						once.Do(func() { close(done) })
					}
				case <-done:
					return
				}
			}
		})
	}
	var err error
	select {
	case <-done:
	case <-time.After(d):
		once.Do(func() { close(done) })
		err = fmt.Errorf("bare loop: %d of %d acked in %s", acked.Load(), n, d)
	}
	wg.Wait()
	slices.Sort(lat)
	return lat, err
}

// request is a JSON request with the token.
func request(method, url, tok, body string) *http.Request {
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		panic(errors.Join(errors.New("benchbin: bad request"), err)) // a bug in the harness, not a measurement
	}
	req.Header.Set("Authorization", "Bearer "+tok)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	return req
}
