// Package config loads the service configuration: one struct with defaults,
// overlaid by config/config.yaml and then by NOTIFY_* environment variables.
package config

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"reflect"
	"sort"
	"strings"
	"time"

	"github.com/go-viper/mapstructure/v2"
	"github.com/knadh/koanf/parsers/yaml"
	"github.com/knadh/koanf/providers/file"
	"github.com/knadh/koanf/v2"
)

// EnvPrefix starts every environment variable the service reads.
const EnvPrefix = "NOTIFY_"

// TestEnvPrefix starts the variables the test suite reads
// (NOTIFY_TEST_DATABASE_URL, NOTIFY_TEST_AMQP_URL). The loader ignores them:
// a developer who exports them for `make test` must still be able to run the
// service, and the tests that run the command line inherit them.
const TestEnvPrefix = EnvPrefix + "TEST_"

// maxAuthLeeway bounds auth.leeway: skew is seconds, and a larger value would
// quietly extend every token's life.
const maxAuthLeeway = 5 * time.Minute

// Config is the whole service configuration. Every field has a default (see
// Default), a YAML key (the koanf tag path) and an environment variable.
type Config struct {
	HTTP      HTTP      `koanf:"http"`
	Database  Database  `koanf:"database"`
	Auth      Auth      `koanf:"auth"`
	Log       Log       `koanf:"log"`
	Outbox    Outbox    `koanf:"outbox"`
	AMQP      AMQP      `koanf:"amqp"`
	Dispatch  Dispatch  `koanf:"dispatch"`
	Channels  Channels  `koanf:"channels"`
	Templates Templates `koanf:"templates"`
	Preview   Preview   `koanf:"preview"`
	Metrics   Metrics   `koanf:"metrics"`
	Tracing   Tracing   `koanf:"tracing"`
	Webhooks  Webhooks  `koanf:"webhooks"`
	// Unsubscribe configures the one-click unsubscribe links (docs/rules.md).
	Unsubscribe Unsubscribe `koanf:"unsubscribe"`
	// Debug holds the operator's profiling switch (docs/observability.md).
	Debug Debug `koanf:"debug"`
	// Runtime tunes the Go runtime the process runs on.
	Runtime Runtime `koanf:"runtime"`
}

// Runtime tunes the Go runtime. The GOMEMLIMIT environment variable, when
// set, wins over MemoryLimit: it is the knob Go's own documentation gives
// operators, and one set in a container spec must not be silently undone.
type Runtime struct {
	// MemoryLimit is the Go runtime's soft memory limit in bytes
	// (runtime/debug.SetMemoryLimit): the GC runs more often as the heap,
	// stacks and runtime metadata approach it, and the scavenger returns
	// freed pages sooner, so RSS stays near it rather than at twice the
	// live heap. Soft: a live heap above it is not an error (the GC's CPU
	// share is capped, the process slows rather than dies). 0: no limit.
	MemoryLimit int64 `koanf:"memoryLimit"`
	// GCPercent is the GC's target (runtime/debug.SetGCPercent, GOGC): the
	// heap may grow to (1 + GCPercent/100) times the live heap before the
	// next cycle. Relative to the live heap, so it bounds RSS without the
	// constant GC a fixed limit near the working set caused. A GOGC
	// environment variable, when set, wins.
	GCPercent int `koanf:"gcPercent"`
	// ReleaseStartupCode drops the executable's pages that start-up touched
	// from the resident set once start-up is done (app.ReleaseStartupCode):
	// those still used fault back in from the page cache.
	ReleaseStartupCode bool `koanf:"releaseStartupCode"`
}

// validate checks the runtime section; bad records a finding.
func (r Runtime) validate(bad func(key, msg string)) {
	if r.MemoryLimit < 0 {
		bad("runtime.memoryLimit", "must be 0 (no limit) or a size in bytes")
	}
	if r.GCPercent <= 0 {
		bad("runtime.gcPercent", "must be a positive percentage (GOGC=off is for experiments: set the environment variable)")
	}
}

// Debug configures what an operator turns on to look inside a running
// process. Off by default: a profile endpoint is not for the public port.
type Debug struct {
	// PprofAddr, when set, serves net/http/pprof on its own listener
	// (e.g. 127.0.0.1:6060), never on the API port, so the API's auth and
	// middleware are not in the profile and the profiles are not on the
	// API's network.
	PprofAddr string `koanf:"pprofAddr"`
}

// HTTP configures the REST server.
type HTTP struct {
	Addr            string        `koanf:"addr"`
	MaxBodyBytes    int64         `koanf:"maxBodyBytes"`
	ShutdownTimeout time.Duration `koanf:"shutdownTimeout"`
	ReadTimeout     time.Duration `koanf:"readTimeout"`
	// RequireIdempotencyKey makes the REST send refuse a request without
	// an Idempotency-Key (400), as the event gateway's producers are
	// required to send one (seed 004); false accepts it without dedupe.
	// The queue never requires one.
	RequireIdempotencyKey bool `koanf:"requireIdempotencyKey"`
	// SendBatchWait is how long a REST send waits for concurrent ones to
	// share its transaction (group commit: one WAL flush for many sends);
	// 0 commits each send alone. SendBatchMax sends make a batch go at once.
	// A send after a quiet spell longer than SendBatchWait does not wait.
	SendBatchWait time.Duration `koanf:"sendBatchWait"`
	SendBatchMax  int           `koanf:"sendBatchMax"`
	// SendBatchConcurrency is how many batches of sends may be committing at
	// once; while they all are, the next batch keeps taking sends, so under
	// load batches grow rather than transactions (and pool connections)
	// multiply.
	SendBatchConcurrency int `koanf:"sendBatchConcurrency"`
	// ReportBatchWait, ReportBatchMax and ReportBatchConcurrency are the
	// same group commit for the providers' status routes (Twilio's
	// callbacks come one per message and status): concurrent requests share
	// one statement and one commit (dispatch/status, WithGroupCommit).
	ReportBatchWait        time.Duration `koanf:"reportBatchWait"`
	ReportBatchMax         int           `koanf:"reportBatchMax"`
	ReportBatchConcurrency int           `koanf:"reportBatchConcurrency"`
}

// validate checks the http section; bad records a finding.
func (h HTTP) validate(bad func(key, msg string)) {
	if _, _, err := net.SplitHostPort(h.Addr); err != nil {
		bad("http.addr", "must be host:port")
	}
	if h.MaxBodyBytes <= 0 {
		bad("http.maxBodyBytes", "must be positive")
	}
	if h.ShutdownTimeout <= 0 {
		bad("http.shutdownTimeout", "must be positive")
	}
	validateGroupCommit(bad, "http.sendBatch", h.SendBatchWait, h.SendBatchMax, h.SendBatchConcurrency)
	validateGroupCommit(bad, "http.reportBatch", h.ReportBatchWait, h.ReportBatchMax, h.ReportBatchConcurrency)
}

// validateGroupCommit checks the three settings of a group commit, named
// prefix+"Wait", "Max" and "Concurrency".
func validateGroupCommit(bad func(key, msg string), prefix string, wait time.Duration, most, concurrency int) {
	// A request waits this long even on an idle server: keep it short.
	if wait < 0 || wait > time.Second {
		bad(prefix+"Wait", "must be between 0 (no group commit) and 1s")
	}
	if most < 1 {
		bad(prefix+"Max", "must be at least 1")
	}
	if concurrency < 1 {
		bad(prefix+"Concurrency", "must be at least 1")
	}
}

// Database selects and tunes the database. An empty URL means SQLite.
type Database struct {
	URL          string `koanf:"url"`
	SQLitePath   string `koanf:"sqlitePath"`
	MaxOpenConns int    `koanf:"maxOpenConns"`
	// BusyTimeout bounds how long a SQLite statement waits for another
	// connection's write lock before it fails with BUSY (which the API
	// answers with 503). Ignored on PostgreSQL.
	BusyTimeout time.Duration `koanf:"busyTimeout"`
}

// Postgres reports whether the configured database is PostgreSQL.
func (d Database) Postgres() bool {
	return strings.HasPrefix(d.URL, "postgres://") || strings.HasPrefix(d.URL, "postgresql://")
}

// validate checks the database section; bad records a finding.
func (d Database) validate(bad func(key, msg string)) {
	if d.URL != "" && !d.Postgres() {
		bad("database.url", "must be empty (SQLite) or a postgres:// URL")
	}
	if d.URL == "" && d.SQLitePath == "" {
		bad("database.sqlitePath", "must be set when database.url is empty")
	}
	if d.MaxOpenConns <= 0 {
		bad("database.maxOpenConns", "must be positive")
	}
	if d.BusyTimeout <= 0 {
		bad("database.busyTimeout", "must be positive")
	}
}

// Auth configures JWT verification and minting.
type Auth struct {
	HMACSecret string `koanf:"hmacSecret"`
	// PreviousHMACSecret is also accepted when verifying HS256 tokens (never
	// used to mint), so the secret can be rotated without downtime
	// (docs/runbook.md). Empty: only HMACSecret.
	PreviousHMACSecret string        `koanf:"previousHMACSecret"`
	Issuer             string        `koanf:"issuer"`
	JWKSURL            string        `koanf:"jwksURL"`
	TokenTTL           time.Duration `koanf:"tokenTTL"`
	// AllowDevSecret lets serve listen on a non-loopback address with the
	// built-in DevHMACSecret, for a throwaway demo; see CheckExposure.
	AllowDevSecret bool `koanf:"allowDevSecret"`
	// Leeway is the clock skew tolerated on a token's exp and nbf: a token is
	// accepted until exp+Leeway. 0 (the default): exp is exact.
	Leeway time.Duration `koanf:"leeway"`
}

// validate checks the auth section; bad records a finding.
func (a Auth) validate(bad func(key, msg string)) {
	if a.JWKSURL == "" && len(a.HMACSecret) < 32 {
		bad("auth.hmacSecret", "must be at least 32 bytes when auth.jwksURL is empty")
	}
	if a.PreviousHMACSecret != "" && (len(a.PreviousHMACSecret) < 32 || a.PreviousHMACSecret == a.HMACSecret) {
		bad("auth.previousHMACSecret", "must be empty or at least 32 bytes and differ from auth.hmacSecret")
	}
	if a.Leeway < 0 || a.Leeway > maxAuthLeeway {
		bad("auth.leeway", "must be between 0 and "+maxAuthLeeway.String())
	}
	if a.JWKSURL != "" {
		if u, err := url.Parse(a.JWKSURL); err != nil || u.Host == "" {
			bad("auth.jwksURL", "must be an absolute URL")
		}
	}
}

// DevHMACSecret is the built-in auth.hmacSecret. It is printed in the README,
// so anyone can mint a super-admin token with it.
const DevHMACSecret = "dev-only-secret-change-me-0123456789"

// Log configures structured logging.
type Log struct {
	Level  string `koanf:"level"`
	Format string `koanf:"format"`
}

// validate checks the log section; bad records a finding.
func (l Log) validate(bad func(key, msg string)) {
	switch l.Level {
	case "debug", "info", "warn", "error":
	default:
		bad("log.level", "must be debug, info, warn or error")
	}
	switch l.Format {
	case "json", "text":
	default:
		bad("log.format", "must be json or text")
	}
}

// Outbox configures the envelope relay and its sink (docs/outbox.md).
type Outbox struct {
	Sink         string `koanf:"sink"`         // log | eventbridge
	Source       string `koanf:"source"`       // the envelope's Source
	EventBusName string `koanf:"eventBusName"` // the bus PutEvents targets
	Region       string `koanf:"region"`       // AWS region of the bus
	Endpoint     string `koanf:"endpoint"`     // optional EventBridge base URL; empty: the regional endpoint
	Account      string `koanf:"account"`      // shown by the log sink, as EventBridge would add it
	// PollInterval is how often the relay looks for rows when nothing wakes
	// it (rows other instances committed, retries that fell due).
	PollInterval time.Duration `koanf:"pollInterval"`
	BatchSize    int           `koanf:"batchSize"`   // entries per PutEvents, 1..10
	ClaimSize    int           `koanf:"claimSize"`   // rows one relay claims (and locks) per cycle
	Concurrency  int           `koanf:"concurrency"` // PutEvents calls in flight per relay
	Timeout      time.Duration `koanf:"timeout"`     // bound on one PutEvents call
	// MaxAttempts parks an entry the sink keeps failing with a retryable
	// entry error; whole-call failures (sink down) never count toward it.
	MaxAttempts int           `koanf:"maxAttempts"`
	BackoffBase time.Duration `koanf:"backoffBase"`
	BackoffMax  time.Duration `koanf:"backoffMax"`
	Retention   time.Duration `koanf:"retention"` // how long published rows are kept for replay; 0 keeps them forever
}

// validate checks the outbox section; bad records a finding.
func (o Outbox) validate(bad func(key, msg string)) {
	switch o.Sink {
	case "log", "eventbridge":
	default:
		bad("outbox.sink", "must be log or eventbridge")
	}
	if o.Source == "" {
		bad("outbox.source", "must be set")
	}
	if o.BatchSize < 1 || o.BatchSize > 10 {
		bad("outbox.batchSize", "must be 1..10 (the PutEvents limit)")
	}
	if o.PollInterval <= 0 {
		bad("outbox.pollInterval", "must be positive")
	}
	if o.ClaimSize < 1 {
		bad("outbox.claimSize", "must be at least 1")
	}
	if o.Concurrency < 1 {
		bad("outbox.concurrency", "must be at least 1")
	}
	if o.Timeout <= 0 {
		bad("outbox.timeout", "must be positive")
	}
	if o.MaxAttempts < 1 {
		bad("outbox.maxAttempts", "must be at least 1")
	}
	if o.BackoffBase <= 0 || o.BackoffMax < o.BackoffBase {
		bad("outbox.backoffBase", "must be positive and at most outbox.backoffMax")
	}
	if o.Retention < 0 {
		bad("outbox.retention", "must not be negative (0 keeps published rows forever)")
	}
	if o.Sink == "eventbridge" {
		if o.Region == "" {
			bad("outbox.region", "must be set for the eventbridge sink")
		}
		if o.EventBusName == "" {
			bad("outbox.eventBusName", "must be set for the eventbridge sink")
		}
		if o.Endpoint != "" {
			if u, err := url.Parse(o.Endpoint); err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
				bad("outbox.endpoint", "must be an absolute http(s) URL")
			}
		}
	}
}

// AMQP configures the RabbitMQ connection and the NotificationQueue topology.
type AMQP struct {
	Enabled            bool          `koanf:"enabled"`
	URL                string        `koanf:"url"`
	Exchange           string        `koanf:"exchange"`
	Queue              string        `koanf:"queue"`
	RoutingKey         string        `koanf:"routingKey"`
	DeadLetterExchange string        `koanf:"deadLetterExchange"`
	DeadLetterQueue    string        `koanf:"deadLetterQueue"`
	DeliveryLimit      int           `koanf:"deliveryLimit"`
	Prefetch           int           `koanf:"prefetch"`
	Consumers          int           `koanf:"consumers"`
	MaxMessageBytes    int           `koanf:"maxMessageBytes"`
	BatchSize          int           `koanf:"batchSize"`
	BatchWait          time.Duration `koanf:"batchWait"`
	ReconnectMin       time.Duration `koanf:"reconnectMin"`
	ReconnectMax       time.Duration `koanf:"reconnectMax"`
}

// validate checks the amqp section; bad records a finding. A disabled
// consumer is not checked: its settings are never used.
func (a AMQP) validate(bad func(key, msg string)) {
	if !a.Enabled {
		return
	}
	if u, err := url.Parse(a.URL); err != nil || (u.Scheme != "amqp" && u.Scheme != "amqps") {
		bad("amqp.url", "must be an amqp:// or amqps:// URL")
	}
	if a.Queue == "" {
		bad("amqp.queue", "must be set")
	}
	if a.Prefetch < 1 {
		bad("amqp.prefetch", "must be at least 1")
	}
	if a.Consumers < 1 {
		bad("amqp.consumers", "must be at least 1")
	}
	if a.DeliveryLimit < 1 {
		bad("amqp.deliveryLimit", "must be at least 1")
	}
	if a.MaxMessageBytes < 1 {
		bad("amqp.maxMessageBytes", "must be positive")
	}
	if a.DeadLetterExchange == "" || a.DeadLetterExchange == a.Exchange {
		bad("amqp.deadLetterExchange", "must be set and differ from amqp.exchange")
	}
	if a.DeadLetterQueue == "" || a.DeadLetterQueue == a.Queue {
		bad("amqp.deadLetterQueue", "must be set and differ from amqp.queue")
	}
	if a.BatchSize < 1 { // a batch also never exceeds amqp.prefetch
		bad("amqp.batchSize", "must be at least 1")
	}
	if a.BatchWait < 0 {
		bad("amqp.batchWait", "must not be negative")
	}
	if a.ReconnectMin <= 0 || a.ReconnectMax < a.ReconnectMin {
		bad("amqp.reconnectMin", "must be positive and at most amqp.reconnectMax")
	}
}

// Dispatch configures the delivery workers and their retry policy.
type Dispatch struct {
	Workers      int           `koanf:"workers"`
	ClaimBatch   int           `koanf:"claimBatch"`
	PollInterval time.Duration `koanf:"pollInterval"`
	MaxAttempts  int           `koanf:"maxAttempts"`
	BackoffBase  time.Duration `koanf:"backoffBase"`
	BackoffMax   time.Duration `koanf:"backoffMax"`
	SendTimeout  time.Duration `koanf:"sendTimeout"`
	// Lease is how long a claimed delivery stays this instance's without a
	// renewal; the instance renews its leases every Lease/3, and recovery
	// takes the deliveries whose lease has expired (a dead instance's).
	Lease time.Duration `koanf:"lease"`
	// RecordInterval is how long an outcome may wait to be written with
	// others in one statement (also written when recordBatch are waiting).
	RecordInterval time.Duration `koanf:"recordInterval"`
	RecordBatch    int           `koanf:"recordBatch"`
	RecordSandbox  bool          `koanf:"recordSandbox"`
	// BoundSandbox holds the sandbox's sends to RecordBatch as a real
	// provider's are (channels.SandboxBounded). Off, the recording sandbox
	// reconciles exactly and is not held: a crash leaves none of its sends
	// in doubt.
	BoundSandbox bool `koanf:"boundSandbox"`
	// HandOffWait is how long the queue intake waits for the local
	// workers' hand-off queue to be at most half full before it commits a
	// batch (0: it never waits, and what does not fit is stored pending).
	HandOffWait time.Duration `koanf:"handOffWait"`
	// Retention is how long finished notifications are kept, with their
	// deliveries, sandbox records and idempotency keys; 0 keeps them forever.
	Retention time.Duration `koanf:"retention"`
	// MaxScheduleAhead is how far ahead a notification's sendAt (or an
	// action's delay to a macro's timestamp) may be: beyond it the send
	// is refused, so no delivery waits in the queue for years.
	MaxScheduleAhead time.Duration `koanf:"maxScheduleAhead"`
}

// validate checks the dispatch section; bad records a finding.
func (d Dispatch) validate(bad func(key, msg string)) {
	if d.Workers < 1 {
		bad("dispatch.workers", "must be at least 1")
	}
	if d.MaxAttempts < 1 {
		bad("dispatch.maxAttempts", "must be at least 1")
	}
	if d.ClaimBatch < 1 || d.ClaimBatch > 1000 {
		bad("dispatch.claimBatch", "must be from 1 to 1000")
	}
	if d.PollInterval <= 0 {
		bad("dispatch.pollInterval", "must be positive")
	}
	if d.BackoffBase <= 0 || d.BackoffMax < d.BackoffBase {
		bad("dispatch.backoffBase", "must be positive and at most dispatch.backoffMax")
	}
	if d.SendTimeout <= 0 {
		bad("dispatch.sendTimeout", "must be positive")
	}
	// Under a day, an intake key could expire while the producer still
	// retries or the broker still redelivers the message it dedupes.
	if d.Retention < 0 || (d.Retention > 0 && d.Retention < 24*time.Hour) {
		bad("dispatch.retention", "must be 0 (keep forever) or at least 24h")
	}
	// Renewals come every lease/3: under a second they would be most of
	// an idle instance's statements.
	if d.Lease < time.Second {
		bad("dispatch.lease", "must be at least 1s")
	}
	if d.RecordInterval < 0 || d.RecordInterval > time.Second {
		bad("dispatch.recordInterval", "must be from 0 to 1s")
	}
	if d.RecordBatch < 1 {
		bad("dispatch.recordBatch", "must be at least 1")
	}
	// The messages wait unacknowledged meanwhile; beyond a lease the
	// workers are stuck, and waiting longer only stalls the consumer.
	if d.HandOffWait < 0 || d.HandOffWait > d.Lease {
		bad("dispatch.handOffWait", "must be from 0 to dispatch.lease")
	}
	if d.MaxScheduleAhead < time.Minute {
		bad("dispatch.maxScheduleAhead", "must be at least 1m")
	}
}

// Templates bounds what an action's templates may be and what one render
// may cost (docs/channels.md, "Template limits"). Templates are written by
// tenants: actions refuse at save what can be decided statically, and a
// delivery whose render goes over a limit fails with render_limit.
type Templates struct {
	MaxSize       int           `koanf:"maxSize"`       // bytes of one template field
	MaxOutput     int           `koanf:"maxOutput"`     // bytes of one rendered message, all fields together
	MaxDepth      int           `koanf:"maxDepth"`      // nested blocks
	MaxSteps      int           `koanf:"maxSteps"`      // helper calls, loop iterations and values printed per message
	RenderTimeout time.Duration `koanf:"renderTimeout"` // wall time of one message's render
}

// validate checks the templates section; bad records a finding.
func (t Templates) validate(bad func(key, msg string)) {
	for _, f := range []struct {
		key string
		v   int
	}{
		{"templates.maxSize", t.MaxSize}, {"templates.maxOutput", t.MaxOutput},
		{"templates.maxDepth", t.MaxDepth}, {"templates.maxSteps", t.MaxSteps},
	} {
		if f.v <= 0 {
			bad(f.key, "must be positive")
		}
	}
	if t.RenderTimeout <= 0 {
		bad("templates.renderTimeout", "must be positive")
	}
}

// Preview configures the action preview route.
type Preview struct {
	// RatePerMinute is how many previews one user (the token's subject)
	// may ask for per minute, with as many in a burst; over it: 429.
	RatePerMinute int `koanf:"ratePerMinute"`
}

// validate checks the preview section; bad records a finding.
func (p Preview) validate(bad func(key, msg string)) {
	if p.RatePerMinute <= 0 {
		bad("preview.ratePerMinute", "must be positive")
	}
}

// Metrics configures the Prometheus endpoint /metrics (docs/observability.md).
type Metrics struct {
	Enabled bool `koanf:"enabled"`
	// DBTimeout bounds the queries the database-backed gauges (outbox
	// backlog, deliveries by status, retry queue depth) run at scrape time.
	DBTimeout time.Duration `koanf:"dbTimeout"`
	// DBCacheTTL reuses the last database reading for scrapes within it, so
	// several scrapers (or a short scrape interval) do not multiply the load.
	DBCacheTTL time.Duration `koanf:"dbCacheTTL"`
	// FinalStatusTTL is how long the counts of deliveries in final
	// statuses (sent, failed, …) are reused. They are a scan of the whole
	// deliveries table, which grows with the retention, where the active
	// statuses (pending, scheduled, sending) are read through their
	// partial indexes at every reading; 0 scans at every reading.
	FinalStatusTTL time.Duration `koanf:"finalStatusTTL"`
}

// validate checks the metrics section; bad records a finding.
func (m Metrics) validate(bad func(key, msg string)) {
	if m.DBTimeout <= 0 {
		bad("metrics.dbTimeout", "must be positive")
	}
	if m.DBCacheTTL < 0 {
		bad("metrics.dbCacheTTL", "must not be negative")
	}
	if m.FinalStatusTTL < 0 {
		bad("metrics.finalStatusTTL", "must not be negative")
	}
}

// Tracing configures OpenTelemetry tracing (docs/observability.md). Off by
// default: spans are not recorded, but W3C trace context is still passed on.
type Tracing struct {
	Enabled bool `koanf:"enabled"`
	// Endpoint is the OTLP/HTTP collector base URL (the exporter posts to
	// <endpoint>/v1/traces); http:// sends without TLS.
	Endpoint    string        `koanf:"endpoint"`
	ServiceName string        `koanf:"serviceName"`
	SampleRatio float64       `koanf:"sampleRatio"` // of new traces; a sampled parent is always followed
	Timeout     time.Duration `koanf:"timeout"`     // bound on one export call
}

// validate checks the tracing section; bad records a finding. The exporter
// settings are checked only when tracing is on.
func (t Tracing) validate(bad func(key, msg string)) {
	if t.Enabled {
		if u, err := url.Parse(t.Endpoint); err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
			bad("tracing.endpoint", "must be an absolute http(s) URL")
		}
		if t.ServiceName == "" {
			bad("tracing.serviceName", "must be set")
		}
		if t.Timeout <= 0 {
			bad("tracing.timeout", "must be positive")
		}
	}
	if t.SampleRatio < 0 || t.SampleRatio > 1 {
		bad("tracing.sampleRatio", "must be from 0 to 1")
	}
}

// Default returns the embedded configuration: SQLite, sandbox channels, the
// log sink, and a queue consumer that connects to a local RabbitMQ if present.
func Default() Config {
	return Config{
		HTTP: HTTP{
			Addr:            "127.0.0.1:8080",
			MaxBodyBytes:    1 << 20,
			ShutdownTimeout: 15 * time.Second,
			ReadTimeout:     30 * time.Second,
			// A retried send without a key would be sent twice.
			RequireIdempotencyKey: true,
			SendBatchWait:         2 * time.Millisecond,
			SendBatchMax:          64,
			// Two cores of PostgreSQL gain nothing from more concurrent
			// intake transactions; the pool's other connections stay the
			// delivery workers'. Two rather than four: while both commit,
			// the next batch grows, so fewer commits carry the same sends
			// (bench-binary, 4 Dec, four alternated pairs: 64-connection
			// REST 2,887–3,181/s against 2,724–2,882/s, p99 33–39 ms
			// against 43–46; docs/benchmarks.md).
			SendBatchConcurrency: 2,
			// The sends' settings, for the same reasons: the status routes
			// commit into the same two cores of PostgreSQL.
			ReportBatchWait:        2 * time.Millisecond,
			ReportBatchMax:         64,
			ReportBatchConcurrency: 2,
		},
		Database: Database{
			SQLitePath:   "./data/notificationservice.db",
			MaxOpenConns: 20,
			BusyTimeout:  5 * time.Second,
		},
		Auth: Auth{
			HMACSecret: DevHMACSecret,
			Issuer:     "notificationservice",
			TokenTTL:   12 * time.Hour,
		},
		Log: Log{Level: "info", Format: "json"},
		Outbox: Outbox{
			Sink:         "log",
			Source:       "notificationservice",
			EventBusName: "default",
			Region:       "us-east-1",
			Account:      "000000000000",
			PollInterval: time.Second,
			BatchSize:    10,
			ClaimSize:    100,
			Concurrency:  4,
			Timeout:      10 * time.Second,
			MaxAttempts:  20,
			BackoffBase:  200 * time.Millisecond,
			BackoffMax:   time.Minute,
			Retention:    7 * 24 * time.Hour,
		},
		AMQP: AMQP{
			Enabled:            true,
			URL:                "amqp://guest:guest@127.0.0.1:5672/",
			Exchange:           "notifications",
			Queue:              "NotificationQueue",
			RoutingKey:         "NotificationQueue",
			DeadLetterExchange: "notifications.dlx",
			DeadLetterQueue:    "NotificationQueue.dlq",
			DeliveryLimit:      20,
			Prefetch:           256,
			Consumers:          2,
			MaxMessageBytes:    1 << 20,
			BatchSize:          128,
			BatchWait:          5 * time.Millisecond,
			ReconnectMin:       500 * time.Millisecond,
			// A dial to a broker that is down costs little; a longer cap
			// left a restarted broker's queue unconsumed for up to the cap
			// (the fault suite's broker-kill saw 30 s).
			ReconnectMax: 5 * time.Second,
		},
		Dispatch: Dispatch{
			Workers:        8,
			ClaimBatch:     64,
			PollInterval:   500 * time.Millisecond,
			MaxAttempts:    8,
			BackoffBase:    time.Second,
			BackoffMax:     10 * time.Minute,
			SendTimeout:    30 * time.Second,
			Lease:          10 * time.Second,
			RecordInterval: 5 * time.Millisecond,
			RecordBatch:    256,
			RecordSandbox:  true,
			HandOffWait:    time.Second,
			Retention:      30 * 24 * time.Hour,
			// A quarter: far enough for a renewal reminder, near enough
			// that a typo in a year does not park a delivery for a decade.
			MaxScheduleAhead: 90 * 24 * time.Hour,
		},
		Channels: Channels{
			SendGrid: SendGrid{
				BaseURL:        "https://api.sendgrid.com",
				RatePerSecond:  100,
				Burst:          10,
				Timeout:        10 * time.Second,
				WebhookMaxSkew: 10 * time.Minute,
			},
			Twilio: Twilio{
				BaseURL:       "https://api.twilio.com",
				RatePerSecond: 1,
				Burst:         1,
				Concurrency:   4,
				Timeout:       10 * time.Second,
				MaxSegments:   10,
			},
			FCM: FCM{
				BaseURL:         "https://fcm.googleapis.com",
				RatePerSecond:   500,
				Burst:           50,
				Concurrency:     16,
				Timeout:         10 * time.Second,
				MaxPayloadBytes: 4096,
			},
			BreakerFailures: 5,
			BreakerCooldown: 30 * time.Second,
		},
		Templates: Templates{
			MaxSize:       64 << 10,
			MaxOutput:     1 << 20,
			MaxDepth:      16,
			MaxSteps:      50_000,
			RenderTimeout: 2 * time.Second,
		},
		Preview: Preview{RatePerMinute: 60},
		Metrics: Metrics{Enabled: true, DBTimeout: 5 * time.Second, DBCacheTTL: 5 * time.Second, FinalStatusTTL: 5 * time.Minute},
		Tracing: Tracing{
			Endpoint:    "http://127.0.0.1:4318",
			ServiceName: "notificationservice",
			SampleRatio: 1,
			Timeout:     10 * time.Second,
		},
		Webhooks: Webhooks{
			SecretKey:         DevWebhookSecretKey,
			RotationOverlap:   24 * time.Hour,
			DisableAfter:      24 * time.Hour,
			ValidationTimeout: 5 * time.Second,
			Timeout:           10 * time.Second,
			PollInterval:      time.Second,
			BatchSize:         32,
			BackoffBase:       30 * time.Second,
			BackoffMax:        time.Hour,
			RetryFor:          24 * time.Hour,
		},
		Unsubscribe: Unsubscribe{TTL: 60 * 24 * time.Hour},
		Runtime: Runtime{
			MemoryLimit:        0,   // off: a 32 MiB default made the 1,000 msg/s enqueue→sent p99 936 ms against 36 ms without it (bench-binary, 4 Dec)
			GCPercent:          100, // Go's own: 50 took 6-11 MiB off the drain's peak but cost 12-16% more CPU per delivery (bench-binary, 4 Dec)
			ReleaseStartupCode: true,
		},
	}
}

// Load builds the configuration from the defaults, the YAML file at path (if
// path is empty or the file does not exist, the defaults stand) and the
// environment given as KEY=VALUE pairs (os.Environ() in main).
func Load(path string, environ []string) (Config, error) {
	cfg := Default()
	k := koanf.New(".")
	if path != "" {
		if _, err := os.Stat(path); err == nil {
			if err := k.Load(file.Provider(path), yaml.Parser()); err != nil {
				return Config{}, fmt.Errorf("config: read %s: %w", path, err)
			}
		} else if !errors.Is(err, os.ErrNotExist) {
			return Config{}, fmt.Errorf("config: %w", err)
		}
	}
	envValues, err := fromEnv(environ)
	if err != nil {
		return Config{}, err
	}
	for key, v := range envValues {
		if err := k.Set(key, v); err != nil {
			return Config{}, fmt.Errorf("config: %s: %w", key, err)
		}
	}
	err = k.UnmarshalWithConf("", &cfg, koanf.UnmarshalConf{
		Tag: "koanf",
		DecoderConfig: &mapstructure.DecoderConfig{
			DecodeHook: mapstructure.ComposeDecodeHookFunc(
				mapstructure.StringToTimeDurationHookFunc(),
				mapstructure.StringToSliceHookFunc(","),
			),
			WeaklyTypedInput: true,
			ErrorUnused:      true,
			Result:           &cfg,
			TagName:          "koanf",
		},
	})
	if err != nil {
		return Config{}, fmt.Errorf("config: %w", err)
	}
	if err := cfg.Validate(); err != nil {
		return Config{}, err
	}
	return cfg, nil
}

// fromEnv maps NOTIFY_* variables onto config keys. Underscores and case are
// ignored when matching, so NOTIFY_DATABASE_URL sets database.url and
// NOTIFY_HTTP_MAX_BODY_BYTES sets http.maxBodyBytes. An unknown NOTIFY_*
// variable is an error: a typo must not silently fall back to a default.
// NOTIFY_TEST_* variables belong to the test suite and are skipped.
func fromEnv(environ []string) (map[string]string, error) {
	byNorm := map[string]string{}
	for _, key := range Keys() {
		byNorm[normalize(key)] = key
	}
	out := map[string]string{}
	for _, kv := range environ {
		name, value, ok := strings.Cut(kv, "=")
		if !ok || !strings.HasPrefix(name, EnvPrefix) || strings.HasPrefix(name, TestEnvPrefix) {
			continue
		}
		key, known := byNorm[normalize(strings.TrimPrefix(name, EnvPrefix))]
		if !known {
			return nil, fmt.Errorf("config: unknown environment variable %s (see docs/configuration.md)", name)
		}
		out[key] = value
	}
	return out, nil
}

// normalize is the form a key and an environment variable are matched in:
// lower case, without "_" and ".". Called for every key and every NOTIFY_
// variable at start; a strings.Replacer built per call allocated 0.9 MB
// there (GODEBUG=memprofilerate=1), strings.Map and ToLower a string each
// at most.
func normalize(s string) string {
	return strings.ToLower(strings.Map(func(r rune) rune {
		if r == '_' || r == '.' {
			return -1
		}
		return r
	}, s))
}

// EnvName is the canonical environment variable for a config key, such as
// NOTIFY_DATABASE_URL for database.url.
func EnvName(key string) string {
	var b strings.Builder
	b.WriteString(EnvPrefix)
	prevLower := false
	for _, r := range key {
		switch {
		case r == '.':
			b.WriteByte('_')
			prevLower = false
			continue
		case r >= 'A' && r <= 'Z':
			if prevLower {
				b.WriteByte('_')
			}
			prevLower = false
		default:
			prevLower = true
		}
		b.WriteString(strings.ToUpper(string(r)))
	}
	return b.String()
}

// Keys lists every configuration key (dotted koanf paths), sorted.
func Keys() []string {
	var keys []string
	var walk func(prefix string, t reflect.Type)
	walk = func(prefix string, t reflect.Type) {
		for i := range t.NumField() {
			f := t.Field(i)
			tag := f.Tag.Get("koanf")
			if tag == "" {
				continue
			}
			key := tag
			if prefix != "" {
				key = prefix + "." + tag
			}
			if f.Type.Kind() == reflect.Struct && f.Type != reflect.TypeOf(time.Duration(0)) {
				walk(key, f.Type)
				continue
			}
			keys = append(keys, key)
		}
	}
	walk("", reflect.TypeOf(Config{}))
	sort.Strings(keys)
	return keys
}

// CheckExposure refuses a configuration that would let anyone who can reach
// the server mint tokens: the built-in development secret on an address
// other than loopback. serve calls it before listening; the other commands
// (token, migrate, healthcheck) do not listen and need not.
// auth.allowDevSecret overrides it for a demo.
func (c Config) CheckExposure() error {
	dev := c.Auth.HMACSecret == DevHMACSecret || c.Auth.PreviousHMACSecret == DevHMACSecret
	if !dev || c.Auth.AllowDevSecret || IsLoopback(c.HTTP.Addr) {
		return nil
	}
	return fmt.Errorf("config: auth.hmacSecret (%s) is the built-in development secret and http.addr (%s) %q is not a loopback address, "+
		"so anyone who reaches it can mint a super-admin token: set your own secret of at least 32 bytes, listen on 127.0.0.1, "+
		"or, for a throwaway demo only, set auth.allowDevSecret (%s=true)",
		EnvName("auth.hmacSecret"), EnvName("http.addr"), c.HTTP.Addr, EnvName("auth.allowDevSecret"))
}

// CheckWebhookExposure is CheckExposure for webhooks.secretKey: the
// built-in key, printed in this repository, protects nothing, so serve
// refuses it off loopback (auth.allowDevSecret overrides it for a demo).
func (c Config) CheckWebhookExposure() error {
	if c.Webhooks.SecretKey != DevWebhookSecretKey || c.Auth.AllowDevSecret || IsLoopback(c.HTTP.Addr) {
		return nil
	}
	return fmt.Errorf("config: webhooks.secretKey (%s) is the built-in development key and http.addr (%s) %q is not a loopback address, "+
		"so the webhook signing secrets it encrypts are as good as public: set your own key of at least 32 bytes, listen on 127.0.0.1, "+
		"or, for a throwaway demo only, set auth.allowDevSecret (%s=true)",
		EnvName("webhooks.secretKey"), EnvName("http.addr"), c.HTTP.Addr, EnvName("auth.allowDevSecret"))
}

// IsLoopback reports whether the host of addr (host:port) is a loopback
// address or localhost. An empty host or a wildcard (0.0.0.0, ::) listens on
// every interface, and any other name may resolve to a public address: both
// count as exposed.
func IsLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// Validate reports every invalid setting, naming its key: each section
// checks itself (its validate method, beside its type), in this order.
func (c Config) Validate() error {
	var errs []error
	bad := func(key, msg string) { errs = append(errs, fmt.Errorf("config: %s (%s): %s", key, EnvName(key), msg)) }
	c.HTTP.validate(bad)
	c.Database.validate(bad)
	c.Auth.validate(bad)
	c.Log.validate(bad)
	c.Outbox.validate(bad)
	c.Templates.validate(bad)
	c.Preview.validate(bad)
	c.AMQP.validate(bad)
	c.Dispatch.validate(bad)
	c.Channels.validate(bad)
	c.Metrics.validate(bad)
	if c.Debug.PprofAddr != "" {
		if _, _, err := net.SplitHostPort(c.Debug.PprofAddr); err != nil {
			bad("debug.pprofAddr", "must be host:port")
		}
	}
	c.Tracing.validate(bad)
	c.Webhooks.validate(bad)
	c.Unsubscribe.validate(bad)
	c.Runtime.validate(bad)
	return errors.Join(errs...)
}

// Webhooks configures the customer webhook endpoints (docs/webhooks.md).
type Webhooks struct {
	// SecretKey encrypts the endpoints' signing secrets at rest (AES-256-GCM
	// with a key derived from it). Changing it makes the stored secrets
	// unreadable: rotate every endpoint's secret after.
	SecretKey string `koanf:"secretKey"`
	// AllowPrivateNetworks lets endpoints be (and resolve to) loopback,
	// private, link-local, CGNAT or metadata addresses, and use http:// there.
	AllowPrivateNetworks bool `koanf:"allowPrivateNetworks"`
	// RotationOverlap is how long the previous secret still signs after a
	// rotate-secret.
	RotationOverlap time.Duration `koanf:"rotationOverlap"`
	// DisableAfter is how long an endpoint may fail every delivery before it
	// is DISABLED.
	DisableAfter time.Duration `koanf:"disableAfter"`
	// ValidationTimeout bounds a HEALTH_CHECK, and so how long a create waits.
	ValidationTimeout time.Duration `koanf:"validationTimeout"`
	// Timeout bounds one event POST.
	Timeout time.Duration `koanf:"timeout"`
	// PollInterval is how often the sender looks for new envelopes and due retries.
	PollInterval time.Duration `koanf:"pollInterval"`
	// BatchSize is how many envelopes, and how many messages, one cycle takes.
	BatchSize int `koanf:"batchSize"`
	// BackoffBase and BackoffMax shape the retry delays (exponential, with
	// jitter; a longer Retry-After wins); RetryFor is how long a message is
	// retried before it is given up.
	BackoffBase time.Duration `koanf:"backoffBase"`
	BackoffMax  time.Duration `koanf:"backoffMax"`
	RetryFor    time.Duration `koanf:"retryFor"`
}

// DevWebhookSecretKey is the built-in webhooks.secretKey; CheckExposure
// refuses it off loopback.
const DevWebhookSecretKey = "dev-only-webhook-key-change-me-0123456789"

// validate checks the webhooks section; bad records a finding.
func (w Webhooks) validate(bad func(key, msg string)) {
	if len(w.SecretKey) < 32 {
		bad("webhooks.secretKey", "must be at least 32 bytes")
	}
	for _, d := range []struct {
		key string
		v   time.Duration
	}{
		{"webhooks.rotationOverlap", w.RotationOverlap}, {"webhooks.disableAfter", w.DisableAfter},
		{"webhooks.validationTimeout", w.ValidationTimeout}, {"webhooks.timeout", w.Timeout},
		{"webhooks.pollInterval", w.PollInterval}, {"webhooks.backoffBase", w.BackoffBase},
		{"webhooks.backoffMax", w.BackoffMax}, {"webhooks.retryFor", w.RetryFor},
	} {
		if d.v <= 0 {
			bad(d.key, "must be positive")
		}
	}
	if w.BackoffMax < w.BackoffBase {
		bad("webhooks.backoffMax", "must be at least webhooks.backoffBase")
	}
	if w.BatchSize <= 0 {
		bad("webhooks.batchSize", "must be positive")
	}
}

// Unsubscribe configures the one-click unsubscribe links every email of a
// non-required event carries (RFC 8058; docs/rules.md).
type Unsubscribe struct {
	// BaseURL is where the links point: <baseURL>/unsubscribe/<token>.
	// Empty: the service's own address, http://<http.addr>.
	BaseURL string `koanf:"baseURL"`
	// Mailto, when set, is added to List-Unsubscribe as <mailto:…>.
	Mailto string `koanf:"mailto"`
	// TTL is how long a link works after the email was sent.
	TTL time.Duration `koanf:"ttl"`
	// SigningKey signs the links' tokens (HS256); PreviousSigningKey is
	// still accepted, never signed with, so the key rotates as
	// auth.hmacSecret does. Empty: a key derived from auth.hmacSecret (and
	// the previous from auth.previousHMACSecret), so rotating the JWT secret
	// rotates these too.
	SigningKey         string `koanf:"signingKey"`
	PreviousSigningKey string `koanf:"previousSigningKey"`
}

// validate checks the unsubscribe section; bad records a finding.
func (u Unsubscribe) validate(bad func(key, msg string)) {
	if u.BaseURL != "" {
		if p, err := url.Parse(u.BaseURL); err != nil || p.Host == "" || (p.Scheme != "http" && p.Scheme != "https") {
			bad("unsubscribe.baseURL", "must be an absolute http(s) URL")
		}
	}
	if u.Mailto != "" && !strings.Contains(u.Mailto, "@") {
		bad("unsubscribe.mailto", "must be an email address")
	}
	if u.TTL <= 0 {
		bad("unsubscribe.ttl", "must be positive")
	}
	if u.SigningKey != "" && len(u.SigningKey) < 32 {
		bad("unsubscribe.signingKey", "must be empty or at least 32 bytes")
	}
	if u.PreviousSigningKey != "" && (len(u.PreviousSigningKey) < 32 || u.PreviousSigningKey == u.SigningKey) {
		bad("unsubscribe.previousSigningKey", "must be empty or at least 32 bytes and differ from unsubscribe.signingKey")
	}
}
