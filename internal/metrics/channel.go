package metrics

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/notificationservice/notificationservice/internal/channels"
	"github.com/notificationservice/notificationservice/internal/outbox"
)

// Channel wraps ch so every Send is timed and its messages and errors
// counted by provider (ch.Name()), channel and error class. It is a
// channels.Middleware: channels.Wrap keeps ch's capabilities.
func (m *Metrics) Channel(ch channels.Channel) channels.Channel {
	return channels.Wrap(ch, (&channel{next: ch, m: m}).Send)
}

type channel struct {
	next channels.Channel
	m    *Metrics
	// series caches, by channel name, the provider's duration and message
	// series: a lookup by label values per Send hashes them each time.
	series sync.Map // string → *channelSeries
}

type channelSeries struct {
	provider string
	duration prometheus.Observer
	messages prometheus.Counter
}

// seriesOf returns the series of provider (next's name: every channel's is
// a constant, which the cache checks) and channel name.
func (c *channel) seriesOf(provider, name string) *channelSeries {
	if s, ok := c.series.Load(name); ok && s.(*channelSeries).provider == provider {
		return s.(*channelSeries)
	}
	s := &channelSeries{provider, c.m.providerDuration.WithLabelValues(provider, name), c.m.providerMessages.WithLabelValues(provider, name)}
	c.series.Store(name, s)
	return s
}

func (c *channel) Send(ctx context.Context, msgs []channels.Message) []channels.Result {
	start := time.Now()
	res := c.next.Send(ctx, msgs)
	if len(msgs) == 0 {
		return res
	}
	provider, name := c.next.Name(), msgs[0].Channel
	s := c.seriesOf(provider, name)
	s.duration.Observe(time.Since(start).Seconds())
	s.messages.Add(float64(len(msgs)))
	for _, r := range res {
		if r.Err == nil {
			continue
		}
		c.m.providerErrors.WithLabelValues(provider, name, ErrorClass(channels.Classify(provider, r.Err))).Inc()
	}
	return res
}

// ErrorClass is the class label of a provider's error: permanent, in_doubt
// (its answer was lost) or retryable.
func ErrorClass(e *channels.Error) string {
	switch {
	case e.Permanent:
		return ClassPermanent
	case e.MaybeAccepted:
		return ClassInDoubt
	}
	return ClassRetryable
}

// Sink wraps s, the outbox sink named name (log, eventbridge), so every Put
// is timed and its published envelopes and failures counted.
func (m *Metrics) Sink(name string, s outbox.Sink) outbox.Sink {
	return &sink{next: s, name: name, m: m}
}

type sink struct {
	next outbox.Sink
	name string
	m    *Metrics
}

func (s *sink) Put(ctx context.Context, entries []outbox.Entry) ([]error, error) {
	start := time.Now()
	errs, err := s.next.Put(ctx, entries)
	s.m.sinkDuration.WithLabelValues(s.name).Observe(time.Since(start).Seconds())
	if err != nil {
		class := ClassUnavailable
		if errors.Is(err, outbox.ErrRejected) {
			class = ClassRejected
		}
		s.m.sinkErrors.WithLabelValues(s.name, class).Inc()
		return errs, err
	}
	published := 0
	for _, e := range errs {
		if e == nil {
			published++
			continue
		}
		class := ClassEntryRetryable
		var ee *outbox.EntryError
		if errors.Is(e, outbox.ErrUnpublishable) || (errors.As(e, &ee) && ee.Permanent()) {
			class = ClassEntryPermanent
		}
		s.m.sinkErrors.WithLabelValues(s.name, class).Inc()
	}
	s.m.sinkPublished.WithLabelValues(s.name).Add(float64(published))
	return errs, err
}
