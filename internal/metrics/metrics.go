// Package metrics is the service's Prometheus instrumentation: a registry
// the app owns (never the global default one), the Gin middleware that
// counts and times HTTP requests, decorators that measure provider calls and
// outbox publishes, queue counters, and collectors that read the database at
// scrape time. docs/observability.md lists every metric.
package metrics

import (
	"net/http"
	"strconv"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/notificationservice/notificationservice/internal/dispatch"
	"github.com/notificationservice/notificationservice/internal/dispatch/intake"
	"github.com/notificationservice/notificationservice/internal/dispatch/planning"
)

// Namespace prefixes every metric the service defines.
const Namespace = "notify"

// Error classes of provider calls and outbox publishes.
const (
	ClassPermanent      = "permanent"       // a provider refused a message for good
	ClassRetryable      = "retryable"       // a provider failed a message; it is retried
	ClassInDoubt        = "in_doubt"        // a provider's answer was lost; recovery asks it before any resend
	ClassUnavailable    = "unavailable"     // a whole sink call failed (throttled, 5xx, timeout, unreachable)
	ClassRejected       = "rejected"        // a whole sink call was refused as invalid
	ClassEntryPermanent = "entry_permanent" // the sink refused one entry for good
	ClassEntryRetryable = "entry_retryable" // the sink failed one entry; it is retried
)

// Metrics holds the registry and the collectors the service updates.
type Metrics struct {
	reg *prometheus.Registry

	httpRequests *prometheus.CounterVec
	httpDuration *prometheus.HistogramVec

	providerDuration *prometheus.HistogramVec
	providerMessages *prometheus.CounterVec
	providerErrors   *prometheus.CounterVec

	sinkDuration  *prometheus.HistogramVec
	sinkPublished *prometheus.CounterVec
	sinkErrors    *prometheus.CounterVec

	queueConsumed     prometheus.Counter
	queueAcked        prometheus.Counter
	queueDeadLettered *prometheus.CounterVec

	deliveriesInDoubt prometheus.Counter
	recordWait        prometheus.Counter

	planningDecisions *prometheus.CounterVec
	suppressionsAdded *prometheus.CounterVec

	intakeBatchSize     *prometheus.HistogramVec
	reportBatchSize     prometheus.Histogram
	intakeBatchDuration *prometheus.HistogramVec
}

// New returns Metrics on a fresh registry that also carries the Go runtime
// and process collectors.
func New() *Metrics {
	reg := prometheus.NewRegistry()
	f := func(c prometheus.Collector) prometheus.Collector { reg.MustRegister(c); return c }
	m := &Metrics{reg: reg}
	f(collectors.NewGoCollector())
	f(collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	m.httpRequests = f(prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: Namespace, Subsystem: "http", Name: "requests_total",
		Help: "HTTP requests served, by method, route template and status code.",
	}, []string{"method", "route", "status"})).(*prometheus.CounterVec)
	m.httpDuration = f(prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: Namespace, Subsystem: "http", Name: "request_duration_seconds",
		Help:    "Time from the first middleware to the response, by method and route template.",
		Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
	}, []string{"method", "route"})).(*prometheus.HistogramVec)

	m.providerDuration = f(prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: Namespace, Subsystem: "provider", Name: "call_duration_seconds",
		Help:    "Duration of one Channel.Send (one provider batch), by provider and channel.",
		Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
	}, []string{"provider", "channel"})).(*prometheus.HistogramVec)
	m.providerMessages = f(prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: Namespace, Subsystem: "provider", Name: "messages_total",
		Help: "Messages handed to a provider (each attempt counts), by provider and channel.",
	}, []string{"provider", "channel"})).(*prometheus.CounterVec)
	m.providerErrors = f(prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: Namespace, Subsystem: "provider", Name: "errors_total",
		Help: "Messages a provider did not accept, by provider, channel and class (permanent, retryable).",
	}, []string{"provider", "channel", "class"})).(*prometheus.CounterVec)

	m.sinkDuration = f(prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: Namespace, Subsystem: "outbox", Name: "publish_duration_seconds",
		Help:    "Duration of one sink call (one PutEvents batch), by sink.",
		Buckets: []float64{.001, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
	}, []string{"sink"})).(*prometheus.HistogramVec)
	m.sinkPublished = f(prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: Namespace, Subsystem: "outbox", Name: "published_total",
		Help: "Envelopes the sink accepted, by sink.",
	}, []string{"sink"})).(*prometheus.CounterVec)
	m.sinkErrors = f(prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: Namespace, Subsystem: "outbox", Name: "publish_errors_total",
		Help: "Sink failures by sink and class: unavailable and rejected count whole calls, entry_* count envelopes.",
	}, []string{"sink", "class"})).(*prometheus.CounterVec)

	m.queueConsumed = f(prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: Namespace, Subsystem: "queue", Name: "messages_consumed_total",
		Help: "Messages taken off NotificationQueue (redeliveries count again).",
	})).(prometheus.Counter)
	m.queueAcked = f(prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: Namespace, Subsystem: "queue", Name: "messages_acked_total",
		Help: "Messages acked after their notifications were committed or they were dead-lettered.",
	})).(prometheus.Counter)
	m.queueDeadLettered = f(prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: Namespace, Subsystem: "queue", Name: "messages_dead_lettered_total",
		Help: "Messages published to the dead-letter queue, by reason.",
	}, []string{"reason"})).(*prometheus.CounterVec)
	m.deliveriesInDoubt = f(prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: Namespace, Subsystem: "deliveries", Name: "in_doubt_total",
		Help: "Deliveries recovery found in sending with an expired lease (an instance stopped mid-send, or a provider call lost its answer): the provider may or may not have them.",
	})).(prometheus.Counter)
	m.recordWait = f(prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: Namespace, Subsystem: "dispatch", Name: "record_wait_seconds_total",
		Help: "Time delivery workers waited before a provider call because dispatch.recordBatch deliveries were sent and not yet recorded; its rate is how many waited on average.",
	})).(prometheus.Counter)
	m.planningDecisions = f(prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: Namespace, Subsystem: "planning", Name: "decisions_total",
		Help: "Deliveries planned, by decision: planned, no_address, or the reason code of the rule that skipped them (condition_false, condition_error, opted_out, suppressed, ...).",
	}, []string{"reason"})).(*prometheus.CounterVec)
	for _, r := range []string{planning.DecisionPlanned, planning.DecisionNoAddress, dispatch.ReasonConditionFalse, dispatch.ReasonConditionError} {
		m.planningDecisions.WithLabelValues(r)
	}
	m.intakeBatchSize = f(prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: Namespace, Subsystem: "intake", Name: "batch_submissions",
		Help:    "Submissions (queue messages, or REST sends under group commit) per intake transaction, by source (queue, api).",
		Buckets: []float64{1, 2, 4, 8, 16, 32, 64, 128, 256, 512},
	}, []string{"source"})).(*prometheus.HistogramVec)
	m.reportBatchSize = f(prometheus.NewHistogram(prometheus.HistogramOpts{
		Namespace: Namespace, Subsystem: "status", Name: "report_batch_requests",
		Help:    "Provider status requests (Twilio callbacks, SendGrid event batches) per statement and commit, under the status routes' group commit.",
		Buckets: []float64{1, 2, 4, 8, 16, 32, 64},
	})).(prometheus.Histogram)
	m.intakeBatchDuration = f(prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: Namespace, Subsystem: "intake", Name: "batch_duration_seconds",
		Help:    "Time from an intake batch's rule reads to its commit, by source (queue, api).",
		Buckets: []float64{.001, .002, .005, .01, .02, .05, .1, .2, .5, 1, 2.5, 5},
	}, []string{"source"})).(*prometheus.HistogramVec)
	for _, s := range []string{intake.SourceQueue, intake.SourceAPI} {
		m.intakeBatchSize.WithLabelValues(s)
		m.intakeBatchDuration.WithLabelValues(s)
	}
	m.suppressionsAdded = f(prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: Namespace, Subsystem: "suppressions", Name: "added_total",
		Help: "Addresses put on a suppression list, by source (sendgrid_bounce, sendgrid_spamreport, twilio_stop, api).",
	}, []string{"source"})).(*prometheus.CounterVec)
	return m
}

// Decided counts n planning decisions of reason (planning.Observer). The
// reasons are planning's fixed set, so the label cannot grow unbounded.
func (m *Metrics) Decided(reason string, n int) {
	m.planningDecisions.WithLabelValues(reason).Add(float64(n))
}

// BatchCommitted records an intake batch's size and time
// (intake.Observer). Source is one of the intake's two, so the label is
// bounded.
func (m *Metrics) BatchCommitted(source string, submissions int, took time.Duration) {
	m.intakeBatchSize.WithLabelValues(source).Observe(float64(submissions))
	m.intakeBatchDuration.WithLabelValues(source).Observe(took.Seconds())
}

// ReportBatchCommitted records how many provider status requests shared a
// commit (status.BatchObserver).
func (m *Metrics) ReportBatchCommitted(requests int) {
	m.reportBatchSize.Observe(float64(requests))
}

// Registry is the registry every collector is on; tests gather from it.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// Register adds a collector of the caller's to the registry.
func (m *Metrics) Register(c prometheus.Collector) error { return m.reg.Register(c) }

// Handler serves the registry in the Prometheus text format, or in
// OpenMetrics when the scraper's Accept header asks for it (Prometheus does
// by default), as api/openapi.yaml promises.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg, EnableOpenMetrics: true})
}

// A counter series is born at its first increment, so until then an alert
// on it sees nothing, and rate() or increase() over its first sample sees no
// change: the first provider error or dead letter would go unnoticed. The
// Init methods create the series the service knows it may use at zero, at
// start-up.

// InitProvider creates the message and error counters of provider on
// channel (both error classes) at zero.
func (m *Metrics) InitProvider(provider, channel string) {
	m.providerMessages.WithLabelValues(provider, channel)
	for _, class := range []string{ClassPermanent, ClassRetryable} {
		m.providerErrors.WithLabelValues(provider, channel, class)
	}
}

// InitSink creates the published and error counters of the outbox sink
// named sink (every error class) at zero.
func (m *Metrics) InitSink(sink string) {
	m.sinkPublished.WithLabelValues(sink)
	for _, class := range []string{ClassUnavailable, ClassRejected, ClassEntryRetryable, ClassEntryPermanent} {
		m.sinkErrors.WithLabelValues(sink, class)
	}
}

// InitDeadLetterReasons creates the dead-letter counter of each reason at
// zero.
func (m *Metrics) InitDeadLetterReasons(reasons ...string) {
	for _, r := range reasons {
		m.queueDeadLettered.WithLabelValues(r)
	}
}

// knownMethods bounds the method label: anything else is "OTHER", so a
// client sending made-up methods cannot create series.
var knownMethods = map[string]bool{
	http.MethodGet: true, http.MethodHead: true, http.MethodPost: true, http.MethodPut: true,
	http.MethodPatch: true, http.MethodDelete: true, http.MethodOptions: true,
}

// statusLabels are the status labels of 100–599, made once: strconv.Itoa
// allocates a new string for any number of 100 or more, on every request.
var statusLabels = func() (l [600]string) {
	for i := 100; i < len(l); i++ {
		l[i] = strconv.Itoa(i)
	}
	return l
}()

// statusLabel is the status code as the label value.
func statusLabel(status int) string {
	if status >= 100 && status < len(statusLabels) {
		return statusLabels[status]
	}
	return strconv.Itoa(status)
}

// HTTP is Gin middleware counting and timing every request by its route
// template (c.FullPath, so /v1/collections/:collectionId is one series
// whatever the id); requests no route matched are "unmatched".
func (m *Metrics) HTTP(c *gin.Context) {
	start := time.Now()
	c.Next()
	route := c.FullPath()
	if route == "" {
		route = "unmatched"
	}
	method := c.Request.Method
	if !knownMethods[method] {
		method = "OTHER"
	}
	m.httpRequests.WithLabelValues(method, route, statusLabel(c.Writer.Status())).Inc()
	m.httpDuration.WithLabelValues(method, route).Observe(time.Since(start).Seconds())
}

// MessageConsumed counts a message taken off the queue.
func (m *Metrics) MessageConsumed() { m.queueConsumed.Inc() }

// MessagesAcked counts n messages acked.
func (m *Metrics) MessagesAcked(n int) { m.queueAcked.Add(float64(n)) }

// SuppressionsAdded counts n addresses put on a suppression list by
// source (suppressions.Service.OnAdded).
func (m *Metrics) SuppressionsAdded(source string, n int) {
	m.suppressionsAdded.WithLabelValues(source).Add(float64(n))
}

// InitSuppressionSources creates the suppression counter of each source
// at zero.
func (m *Metrics) InitSuppressionSources(sources ...string) {
	for _, s := range sources {
		m.suppressionsAdded.WithLabelValues(s)
	}
}

// DeliveriesInDoubt counts n deliveries found in sending with an expired
// lease (delivery.Dispatcher.OnInDoubt).
func (m *Metrics) DeliveriesInDoubt(n int) { m.deliveriesInDoubt.Add(float64(n)) }

// RecordWait adds a worker's wait for dispatch.recordBatch to
// notify_dispatch_record_wait_seconds_total
// (delivery.Dispatcher.OnRecordWait).
func (m *Metrics) RecordWait(waited time.Duration) { m.recordWait.Add(waited.Seconds()) }

// MessageDeadLettered counts a message the broker confirmed in the
// dead-letter queue, by reason.
func (m *Metrics) MessageDeadLettered(reason string) {
	m.queueDeadLettered.WithLabelValues(reason).Inc()
}
