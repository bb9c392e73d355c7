// Package app wires the service together: the one place that knows every
// component. main calls New and then Run.
package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"time"

	"golang.org/x/sync/errgroup"
	"gorm.io/gorm"

	"github.com/notificationservice/notificationservice/internal/actions"
	"github.com/notificationservice/notificationservice/internal/auth"
	"github.com/notificationservice/notificationservice/internal/channels"
	"github.com/notificationservice/notificationservice/internal/channels/webhookout"
	"github.com/notificationservice/notificationservice/internal/collections"
	"github.com/notificationservice/notificationservice/internal/config"
	"github.com/notificationservice/notificationservice/internal/dispatch/delivery"
	"github.com/notificationservice/notificationservice/internal/dispatch/intake"
	"github.com/notificationservice/notificationservice/internal/dispatch/planning"
	"github.com/notificationservice/notificationservice/internal/dispatch/status"
	"github.com/notificationservice/notificationservice/internal/httpapi"
	"github.com/notificationservice/notificationservice/internal/invalidate"
	"github.com/notificationservice/notificationservice/internal/macros"
	"github.com/notificationservice/notificationservice/internal/metrics"
	"github.com/notificationservice/notificationservice/internal/outbox"
	"github.com/notificationservice/notificationservice/internal/preferences"
	"github.com/notificationservice/notificationservice/internal/rabbitmq"
	"github.com/notificationservice/notificationservice/internal/redact"
	"github.com/notificationservice/notificationservice/internal/render"
	"github.com/notificationservice/notificationservice/internal/retry"
	"github.com/notificationservice/notificationservice/internal/store"
	"github.com/notificationservice/notificationservice/internal/suppressions"
	"github.com/notificationservice/notificationservice/internal/tracing"
	"github.com/notificationservice/notificationservice/internal/webhooks"
)

// Component is a long-running part of the service (relay, consumer, workers).
// Run blocks until ctx is cancelled or it fails; a failure stops the service.
type Component interface {
	Run(ctx context.Context) error
}

// App is the wired service.
type App struct {
	Config config.Config
	Log    *slog.Logger
	DB     *gorm.DB
	HTTP   *httpapi.Server
	Outbox *outbox.Writer
	// Relay publishes the outbox to the sink outbox.sink names.
	Relay *outbox.Relay
	// WebhookSender turns the outbox into signed events for the customer
	// webhook endpoints (docs/webhooks.md).
	WebhookSender *webhooks.Sender
	// Webhooks is the endpoint registry; the webhook channel
	// (SendWebhookConfig) reads its endpoints through it.
	Webhooks *webhooks.Service

	// Dispatcher runs the delivery workers; Sandbox is the channel that
	// stands in for every provider that is not configured.
	Dispatcher *delivery.Dispatcher
	Sandbox    *channels.Sandbox

	// ActionCache serves action reads and rule resolution from memory;
	// Invalidation keeps it (and every other instance's) current
	// (docs/api.md, "Caching and consistency").
	ActionCache  *actions.Cache
	Invalidation *invalidate.Bus

	// Metrics is the Prometheus registry /metrics serves; Tracing owns the
	// tracer provider (docs/observability.md).
	Metrics *metrics.Metrics
	Tracing *tracing.Tracing

	// Outage remembers the latest error that said the database cannot
	// commit (down, full, read-only, busy), so /readyz goes not-ready while
	// writes fail even if the database answers pings (docs/runbook.md).
	Outage *store.Outage

	components  []namedComponent
	closers     []func()
	sandboxOpts []channels.SandboxOption // WithSandboxOptions
}

type namedComponent struct {
	name string
	c    Component
}

// New opens the database, applies migrations and builds every component.
// ctx bounds start-up and owns background refreshers (the JWKS cache).
func New(ctx context.Context, cfg config.Config, log *slog.Logger, opts ...Option) (*App, error) {
	// Every line the service logs is redacted, whoever built the logger.
	log = redact.Logger(log, Secrets(cfg)...)
	a := &App{Config: cfg, Log: log}
	o := options{version: "dev"}
	for _, opt := range opts {
		opt(&o)
	}
	a.sandboxOpts = o.sandbox
	if err := a.startTelemetry(ctx, o); err != nil {
		return nil, err
	}
	db, err := store.Open(ctx, cfg.Database)
	if err != nil {
		return nil, err
	}
	a.DB = db
	a.closers = append(a.closers, func() { _ = store.Close(db) })
	if err := store.Migrate(ctx, db, log); err != nil {
		a.Close()
		return nil, err
	}
	if err := a.instrumentDB(); err != nil {
		a.Close()
		return nil, err
	}
	a.Outage = store.NewOutage(store.DefaultOutageHold, time.Now)
	if err := db.Use(a.Outage); err != nil {
		a.Close()
		return nil, fmt.Errorf("app: outage plugin: %w", err)
	}

	verifier, err := auth.NewVerifier(ctx, cfg.Auth)
	if err != nil {
		a.Close()
		return nil, err
	}

	if a.Relay, err = a.newRelay(ctx); err != nil {
		a.Close()
		return nil, err
	}
	a.add("outbox", a.Relay)
	// Every commit that recorded an envelope wakes the outbox's readers at
	// once: the relay, and the webhook sender (set below, before anything
	// can commit).
	a.Outbox = outbox.NewWriter(time.Now, func() {
		a.Relay.Notify()
		if a.WebhookSender != nil {
			a.WebhookSender.Notify()
		}
	})

	deps := httpapi.Deps{
		Log:      log,
		HTTP:     cfg.HTTP,
		Verifier: verifier,
		Ready: []httpapi.ReadyCheck{
			{Name: "database", Critical: true, Check: func(ctx context.Context) error {
				if err := store.Ready(ctx, db); err != nil {
					return err
				}
				return a.Outage.Check(ctx)
			}},
		},
		Outage: a.Outage,
	}
	deps.Middleware, deps.Metrics = a.httpTelemetry()
	deps.Ready = append(deps.Ready, httpapi.ReadyCheck{Name: "outbox", Critical: false, Check: func(context.Context) error { return a.Relay.Health() }})
	deps.Outbox = outbox.NewStore(db, a.Relay.Notify)
	deps.Feed = outbox.NewFeed(db, a.Config.Outbox.Source, a.Config.Outbox.Account, a.Config.Outbox.Region, time.Now)
	a.wireCache(&deps)
	deps.Collections = collections.New(db, a.Outbox, time.Now).WithInvalidator(a.Invalidation)
	deps.Actions = actions.New(db, a.Outbox, time.Now).WithCache(a.ActionCache, a.Invalidation).
		WithRenderLimits(renderLimits(a.Config.Templates))
	if err := a.wireWebhooks(&deps); err != nil {
		a.Close()
		return nil, err
	}
	if err := a.wireDispatch(ctx, &deps); err != nil {
		a.Close()
		return nil, err
	}
	a.HTTP = httpapi.New(deps)
	if cfg.Debug.PprofAddr != "" {
		a.add("pprof", pprofServer{addr: cfg.Debug.PprofAddr, log: log})
	}
	return a, nil
}

// wireWebhooks builds the customer webhook endpoint registry, its routes
// and its sender.
func (a *App) wireWebhooks(deps *httpapi.Deps) error {
	cfg := a.Config.Webhooks
	client := webhookout.New(webhookout.Config{Timeout: cfg.Timeout, AllowPrivateNetworks: cfg.AllowPrivateNetworks})
	svc, err := webhooks.New(a.DB, a.Outbox, cfg, client, time.Now)
	if err != nil {
		return err
	}
	// Endpoint changes drop every instance's snapshot of who wants the
	// delivery lifecycle events (webhooks/lifecycle.go).
	svc = svc.WithInvalidator(a.Invalidation)
	deps.Endpoints = svc
	a.Webhooks = svc
	a.WebhookSender = svc.Sender(a.Log)
	a.add("webhooks", a.WebhookSender)
	return nil
}

// webhookEndpoints is the registry as the webhook channel reads it
// (channels.WebhookEndpoints): the channel never imports the registry.
type webhookEndpoints struct{ svc *webhooks.Service }

func (w webhookEndpoints) Endpoints(ctx context.Context, collectionID, id int64, now time.Time) ([]channels.WebhookEndpoint, error) {
	ts, err := w.svc.Targets(ctx, collectionID, id, now)
	if err != nil {
		return nil, err
	}
	out := make([]channels.WebhookEndpoint, len(ts))
	for i, t := range ts {
		out[i] = channels.WebhookEndpoint{ID: t.ID, URL: t.URL, State: t.State, Active: t.State == webhooks.StateActive,
			EventTypes: t.EventTypes, Secrets: t.Secrets}
		if t.Problem != "" {
			out[i].Active, out[i].State = false, t.State+" but unusable: "+t.Problem
		}
	}
	return out, nil
}

func (w webhookEndpoints) Attempted(ctx context.Context, endpointID int64, eventID, eventType string, start time.Time, res webhookout.Result) {
	w.svc.LogAttempt(ctx, endpointID, eventID, eventType, start, res)
}

// wireCache builds the action cache and the bus that invalidates it. On
// PostgreSQL the bus's listener is a component: until it has connected the
// cache stands aside.
func (a *App) wireCache(deps *httpapi.Deps) {
	var pgURL string
	if a.Config.Database.Postgres() {
		pgURL = a.Config.Database.URL
	}
	a.Invalidation = invalidate.New(pgURL, a.Log)
	a.ActionCache = actions.NewCache(actions.DefaultCacheSize)
	a.Invalidation.Subscribe(a.ActionCache)
	if pgURL != "" {
		a.add("invalidate", a.Invalidation)
		deps.Ready = append(deps.Ready, httpapi.ReadyCheck{Name: "cache", Critical: false, Check: func(context.Context) error { return a.Invalidation.Health() }})
	}
}

// wireDispatch builds the intake shared by the queue and the REST send
// route, the delivery workers, and the NotificationQueue consumer.
func (a *App) wireDispatch(ctx context.Context, deps *httpapi.Deps) error {
	cfg, db := a.Config, a.DB
	var record *gorm.DB
	if cfg.Dispatch.RecordSandbox {
		record = db
	}
	sandboxOpts := []channels.SandboxOption{channels.SandboxCountryCode(cfg.Channels.Twilio.DefaultCountryCode)}
	if cfg.Dispatch.BoundSandbox {
		sandboxOpts = append(sandboxOpts, channels.SandboxBounded())
	}
	sandboxOpts = append(sandboxOpts, a.sandboxOpts...)
	a.Sandbox = channels.NewSandbox(record, a.Log, time.Now, sandboxOpts...)
	// Each channel's provider when its credentials are configured, else the sandbox.
	chans, err := channels.Select(ctx, cfg.Channels, a.Sandbox, a.Log)
	if err != nil {
		return err
	}
	// The webhook channel posts for real even when the others are
	// sandboxed: its endpoints are the customer's own, registered and
	// validated by a HEALTH_CHECK echo (docs/webhooks.md).
	wh := cfg.Webhooks
	chans[channels.ChannelWebhook] = channels.NewWebhook(webhookEndpoints{a.Webhooks},
		webhookout.New(webhookout.Config{Timeout: wh.Timeout, AllowPrivateNetworks: wh.AllowPrivateNetworks}), wh.Timeout, a.Log)
	chans = a.instrumentChannels(chans)
	senders := delivery.Senders{
		Email:               channels.Address{Email: cfg.Channels.SendGrid.FromEmail, Name: cfg.Channels.SendGrid.FromName},
		SMSFrom:             cfg.Channels.Twilio.From,
		MessagingServiceSID: cfg.Channels.Twilio.MessagingServiceSID,
	}
	// The intake's rule resolution and the workers' action loads read
	// through the action cache, which the invalidation bus keeps honest.
	rules := actions.NewRules(db).WithCache(a.ActionCache)
	// The sandbox owns sandbox_messages; the status route and retention
	// read and prune it through these, whether or not it records now.
	sandboxRecords := channels.NewSandboxRecords(db)
	// The workers, the intake and the provider reports write the delivery
	// lifecycle events straight into the webhook sender's queue, in their
	// own transactions, for the collections whose endpoints want them.
	a.Dispatcher = delivery.New(db, chans, cfg.Dispatch, senders, a.Log, time.Now).WithActions(rules).
		WithRenderLimits(renderLimits(cfg.Templates)).WithSandbox(sandboxRecords).WithEvents(a.WebhookSender).
		// A customer's endpoint is retried over hours, as the webhook
		// sender retries its events, not over a provider's minutes.
		WithChannelRetry(channels.ChannelWebhook, delivery.ChannelRetry{
			Policy: retry.Policy{Initial: wh.BackoffBase, Max: wh.BackoffMax}, For: wh.RetryFor})
	a.Dispatcher.JoinTraces = a.Tracing.Enabled()
	a.Dispatcher.Outage = a.Outage
	a.Dispatcher.OnInDoubt = a.Metrics.DeliveriesInDoubt
	a.Dispatcher.OnRecordWait = a.Metrics.RecordWait
	a.add("dispatch", a.Dispatcher)
	// Recipient preferences: their routes, the planning rule after the
	// condition, and the one-click unsubscribe links of every email.
	// The intake reads a collection's preferences and suppression list for
	// every batch; these remember, kept honest by the invalidation bus,
	// which collections have none stored, so their batches skip the read.
	noPrefs := invalidate.NewAbsent(invalidate.KindPreferences, time.Now)
	noSupp := invalidate.NewAbsent(invalidate.KindSuppressions, time.Now)
	a.Invalidation.Subscribe(noPrefs)
	a.Invalidation.Subscribe(noSupp)
	prefs := preferences.New(db, a.Outbox, time.Now).WithInvalidator(a.Invalidation)
	links := preferences.NewLinks(cfg.Unsubscribe, cfg.Auth, cfg.HTTP.Addr, time.Now)
	a.Dispatcher.WithUnsubscribes(links)
	deps.Preferences = prefs
	deps.Unsubscribe = preferences.NewUnsubscribes(links, prefs, db)
	supp := suppressions.New(db, a.Outbox, time.Now).WithCache(a.Invalidation, noSupp)
	supp.OnAdded = a.Metrics.SuppressionsAdded
	a.Metrics.InitSuppressionSources(suppressions.Sources()...)
	deps.Suppressions = supp
	a.Dispatcher.WithSuppressor(suppressions.NewDispatch(supp))
	// The planning-time rules, in docs/rules.md's order (conditions,
	// preferences, suppressions); planning counts every decision it makes
	// (notify_planning_decisions_total).
	planner := planning.New(planning.Static(planning.Condition{}), preferences.NewRule(db).WithAbsent(noPrefs), planning.Suppressions(suppressions.NewDispatch(supp)))
	in := intake.New(db, rules, a.Outbox, time.Now, a.Dispatcher, intake.WithPlanner(planner.WithObserver(a.Metrics)), intake.WithObserver(a.Metrics),
		intake.WithEvents(a.WebhookSender), intake.WithMaxScheduleAhead(cfg.Dispatch.MaxScheduleAhead),
		intake.WithGroupCommit(cfg.HTTP.SendBatchWait, cfg.HTTP.SendBatchMax, cfg.HTTP.SendBatchConcurrency))
	deps.Notifications = notificationService{Intake: in, Store: status.New(db, time.Now).WithSandbox(sandboxRecords).WithEnvelopes(a.Outbox)}
	if err := a.wireProviderRoutes(deps, supp); err != nil {
		return err
	}
	deps.TestSend = &httpapi.TestSendConfig{Actions: rules, Sender: channels.Direct(chans), Senders: senders,
		Limits: renderLimits(cfg.Templates), Unsubscribes: links}
	// A preview shows where the link goes, with a sample token.
	deps.Preview.Unsubscribe = render.Unsubscribe{URL: links.URL("sample-token"), Mailto: cfg.Unsubscribe.Mailto}
	if cfg.AMQP.Enabled {
		ping := func(ctx context.Context) error {
			sqlDB, err := db.DB()
			if err != nil {
				return err
			}
			return sqlDB.PingContext(ctx)
		}
		consumer := rabbitmq.New(cfg.AMQP, in, ping, a.Log)
		consumer.Observer = a.Metrics
		a.Metrics.InitDeadLetterReasons(rabbitmq.DeadLetterReasons()...)
		consumer.Tracer = a.Tracing.Tracer()
		consumer.Outage = a.Outage
		deps.Ready = append(deps.Ready, httpapi.ReadyCheck{Name: "rabbitmq", Critical: false, Check: consumer.Ready})
		a.add("rabbitmq", consumer)
	}
	return nil
}

// notificationService is what the REST API's notification routes use
// (httpapi.NotificationService): the intake's Send and the status reads.
type notificationService struct {
	*intake.Intake
	*status.Store
}

// wireProviderRoutes adds the provider status webhooks, which record
// delivered/failed reports through the dispatch store, and the preview route.
func (a *App) wireProviderRoutes(deps *httpapi.Deps, supp *suppressions.Service) error {
	ch := a.Config.Channels
	sg, err := channels.NewSendGridWebhook(ch.SendGrid.WebhookPublicKey, ch.SendGrid.WebhookMaxSkew)
	if err != nil {
		return err
	}
	deps.Webhooks = &httpapi.Webhooks{
		SendGrid: sg,
		Twilio:   channels.NewTwilioWebhook(ch.Twilio.AuthToken, ch.Twilio.StatusCallbackURL),
		Reports: status.New(a.DB, time.Now).WithSuppressor(suppressions.NewDispatch(supp)).WithEvents(a.WebhookSender).
			WithGroupCommit(a.Config.HTTP.ReportBatchWait, a.Config.HTTP.ReportBatchMax, a.Config.HTTP.ReportBatchConcurrency, a.Metrics),
	}
	deps.Preview = &httpapi.PreviewConfig{Limits: macros.Limits{
		SMSMaxSegments: ch.Twilio.MaxSegments, PushMaxPayloadBytes: ch.FCM.MaxPayloadBytes,
		Render: renderLimits(a.Config.Templates),
	}, RatePerMinute: a.Config.Preview.RatePerMinute}
	return nil
}

// renderLimits are the templates.* settings as package macros takes them.
func renderLimits(t config.Templates) macros.RenderLimits {
	return macros.RenderLimits{MaxTemplateBytes: t.MaxSize, MaxOutputBytes: t.MaxOutput, MaxDepth: t.MaxDepth,
		MaxSteps: t.MaxSteps, Timeout: t.RenderTimeout}
}

// newRelay builds the outbox relay and the sink outbox.sink names: the log
// (the embedded default) or EventBridge, with the standard AWS credential
// chain.
func (a *App) newRelay(ctx context.Context) (*outbox.Relay, error) {
	cfg := a.Config.Outbox
	var sink outbox.Sink = outbox.NewLogSink(a.Log, cfg.Account, cfg.Region)
	if cfg.Sink == "eventbridge" {
		eb, err := outbox.NewEventBridge(ctx, outbox.EventBridgeConfig{Region: cfg.Region, Endpoint: cfg.Endpoint, Timeout: cfg.Timeout})
		if err != nil {
			return nil, err
		}
		sink = eb
	}
	return outbox.NewRelay(a.DB, a.instrumentSink(cfg.Sink, sink), cfg, a.Log,
		outbox.WithFanoutShortcut(webhooks.NoActiveEndpoint)), nil
}

func (a *App) add(name string, c Component) {
	a.components = append(a.components, namedComponent{name: name, c: c})
}

// Run serves HTTP and runs every component until ctx is cancelled (SIGTERM),
// then shuts down: the HTTP server drains within the configured deadline and
// the components stop through their contexts.
func (a *App) Run(ctx context.Context) error {
	ln, err := net.Listen("tcp", a.Config.HTTP.Addr)
	if err != nil {
		return fmt.Errorf("app: listen %s: %w", a.Config.HTTP.Addr, err)
	}
	return a.Serve(ctx, ln)
}

// Serve is Run on a listener the caller opened (tests use port 0).
func (a *App) Serve(ctx context.Context, ln net.Listener) error {
	srv := &http.Server{
		Handler:           a.HTTP,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       a.Config.HTTP.ReadTimeout,
	}
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		a.Log.Info("http listening", "addr", ln.Addr().String())
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("app: http: %w", err)
		}
		return nil
	})
	g.Go(func() error {
		<-gctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), a.Config.HTTP.ShutdownTimeout)
		defer cancel()
		a.Log.Info("shutting down", "deadline", a.Config.HTTP.ShutdownTimeout)
		return srv.Shutdown(sctx)
	})
	for _, nc := range a.components {
		g.Go(func() error {
			err := nc.c.Run(gctx)
			if err != nil && !errors.Is(err, context.Canceled) {
				return fmt.Errorf("app: %s: %w", nc.name, err)
			}
			return nil
		})
	}
	return g.Wait()
}

// Close releases what New opened.
func (a *App) Close() {
	for i := len(a.closers) - 1; i >= 0; i-- {
		a.closers[i]()
	}
}

// NewLogger builds the JSON (or text) slog logger the config asks for. Its
// lines are redacted (addresses masked, secrets removed) and carry the trace
// and span ids of the context they are logged with; secrets are values to
// remove wherever they appear (New adds the configured ones).
func NewLogger(cfg config.Log, w interface{ Write([]byte) (int, error) }, secrets ...string) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(cfg.Level))
	opts := &slog.HandlerOptions{Level: level}
	if cfg.Format == "text" {
		return redact.Logger(slog.New(slog.NewTextHandler(w, opts)), secrets...)
	}
	return redact.Logger(slog.New(slog.NewJSONHandler(w, opts)), secrets...)
}

// Secrets lists the configured secret values no log line may contain: the
// HMAC secrets, the SendGrid key, the Twilio auth token and the passwords in
// the database and AMQP URLs.
func Secrets(cfg config.Config) []string {
	out := []string{cfg.Auth.HMACSecret, cfg.Auth.PreviousHMACSecret, cfg.Channels.SendGrid.APIKey, cfg.Channels.Twilio.AuthToken,
		cfg.Webhooks.SecretKey}
	for _, raw := range []string{cfg.Database.URL, cfg.AMQP.URL} {
		if u, err := url.Parse(raw); err == nil && u.User != nil {
			if p, ok := u.User.Password(); ok {
				out = append(out, p)
			}
		}
	}
	return out
}
