package app

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"

	"github.com/gin-gonic/gin"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/notificationservice/notificationservice/internal/channels"
	"github.com/notificationservice/notificationservice/internal/metrics"
	"github.com/notificationservice/notificationservice/internal/outbox"
	"github.com/notificationservice/notificationservice/internal/store"
	"github.com/notificationservice/notificationservice/internal/tracing"
)

// Option changes how New builds the app.
type Option func(*options)

type options struct {
	spanExporter sdktrace.SpanExporter
	version      string
	sandbox      []channels.SandboxOption
}

// WithSandboxOptions adds opts to the sandbox's. Tests pass
// channels.SandboxKeepAll to read what the workers sent from memory.
func WithSandboxOptions(opts ...channels.SandboxOption) Option {
	return func(o *options) { o.sandbox = append(o.sandbox, opts...) }
}

// WithSpanExporter records every span and hands it to exp as it ends,
// whatever tracing.enabled says. Tests pass a tracetest.InMemoryExporter.
func WithSpanExporter(exp sdktrace.SpanExporter) Option {
	return func(o *options) { o.spanExporter = exp }
}

// WithVersion sets the service.version the spans carry.
func WithVersion(v string) Option { return func(o *options) { o.version = v } }

// startTelemetry builds the metrics registry and the tracer provider. The
// provider is shut down (flushing buffered spans) by Close, after everything
// else that may still end spans.
func (a *App) startTelemetry(ctx context.Context, o options) error {
	a.Metrics = metrics.New()
	if o.spanExporter != nil {
		a.Tracing = tracing.NewWithExporter(o.spanExporter, a.Config.Tracing.ServiceName, o.version)
	} else {
		t, err := tracing.New(ctx, a.Config.Tracing, o.version)
		if err != nil {
			return err
		}
		a.Tracing = t
	}
	a.closers = append(a.closers, func() {
		sctx, cancel := context.WithTimeout(context.Background(), a.Config.Tracing.Timeout)
		defer cancel()
		if err := a.Tracing.Shutdown(sctx); err != nil {
			a.Log.Warn("tracing: spans may be lost", "error", err)
		}
	})
	return nil
}

// instrumentDB adds statement spans (when tracing records) and the
// database-backed gauges (when /metrics is on).
func (a *App) instrumentDB() error {
	if a.Tracing.Enabled() {
		system := "sqlite"
		if store.IsPostgres(a.DB) {
			system = "postgresql"
		}
		if err := a.DB.Use(a.Tracing.GormPlugin(system)); err != nil {
			return fmt.Errorf("app: tracing plugin: %w", err)
		}
	}
	if a.Config.Metrics.Enabled {
		if err := a.Metrics.RegisterDB(a.DB, a.Config.Metrics, a.Log); err != nil {
			return fmt.Errorf("app: metrics: %w", err)
		}
	}
	return nil
}

// httpTelemetry returns the middleware the router runs first (the trace
// span, then the request metrics) and the /metrics handler (nil when
// metrics.enabled is false).
func (a *App) httpTelemetry() ([]gin.HandlerFunc, http.Handler) {
	mw := []gin.HandlerFunc{a.Tracing.HTTP}
	if !a.Config.Metrics.Enabled {
		return mw, nil
	}
	return append(mw, a.Metrics.HTTP), a.Metrics.Handler()
}

// instrumentChannels wraps each provider so its calls are traced, timed,
// counted and logged (one line per message outcome), the trace outermost so
// its span covers the rest. A provider serving several channels (the
// sandbox) is wrapped once per channel.
func (a *App) instrumentChannels(chans map[string]channels.Channel) map[string]channels.Channel {
	out := make(map[string]channels.Channel, len(chans))
	for name, ch := range chans {
		a.Metrics.InitProvider(ch.Name(), name)
		out[name] = channels.Chain(ch, a.Tracing.Channel, a.Metrics.Channel, logOutcomes(a.Log))
	}
	return out
}

// instrumentSink wraps the outbox sink named name so publishes are traced,
// timed and counted.
func (a *App) instrumentSink(name string, s outbox.Sink) outbox.Sink {
	a.Metrics.InitSink(name)
	return a.Tracing.Sink(name, a.Metrics.Sink(name, s))
}

// logOutcomes logs one line per message a provider accepted or refused,
// with the delivery and notification ids (the trace id comes from ctx). No
// address or body is logged; the refusal reason goes through the redacting
// handler like every line.
func logOutcomes(log *slog.Logger) channels.Middleware {
	return func(ch channels.Channel) channels.Channel {
		return channels.Wrap(ch, (&outcomeLogger{next: ch, log: log}).Send)
	}
}

type outcomeLogger struct {
	next channels.Channel
	log  *slog.Logger
}

func (c *outcomeLogger) Send(ctx context.Context, msgs []channels.Message) []channels.Result {
	res := c.next.Send(ctx, msgs)
	provider := c.next.Name()
	for i, r := range res {
		if i >= len(msgs) {
			break
		}
		m := &msgs[i]
		// The attributes live in an array on the stack: a slice literal
		// and the append of the last attribute were two allocations per
		// delivery on the drain's hot path (issue 17).
		var buf [7]slog.Attr
		attrs := append(buf[:0],
			slog.Int64("deliveryId", m.DeliveryID),
			slog.Int64("notificationId", m.NotificationID),
			slog.Int64("collectionId", m.CollectionID),
			slog.String("channel", m.Channel),
			slog.String("provider", provider),
		)
		if r.Err == nil {
			c.log.LogAttrs(ctx, slog.LevelInfo, "delivery accepted by provider", append(attrs, slog.String("providerMessageId", r.ProviderMessageID))...)
			continue
		}
		e := channels.Classify(provider, r.Err)
		c.log.LogAttrs(ctx, slog.LevelWarn, "delivery refused by provider", append(attrs, slog.String("class", metrics.ErrorClass(e)), slog.String("reason", e.Reason))...)
	}
	return res
}
