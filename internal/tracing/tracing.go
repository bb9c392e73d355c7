// Package tracing sets up OpenTelemetry for the service: the tracer
// provider (OTLP/HTTP export when tracing.enabled, otherwise a no-op that
// still passes W3C trace context on), the Gin middleware that starts a span
// per request, a gorm plugin that records statements, and decorators that
// trace provider calls and outbox publishes. The app owns one Tracing and
// shuts it down; nothing here touches OpenTelemetry's global state.
package tracing

import (
	"context"
	"fmt"
	"net/url"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/notificationservice/notificationservice/internal/config"
)

// InstrumentationName names the tracer every span of the service comes from.
const InstrumentationName = "github.com/notificationservice/notificationservice"

// Tracing owns the tracer provider and the propagator.
type Tracing struct {
	provider trace.TracerProvider
	sdk      *sdktrace.TracerProvider // nil when tracing is off
	tracer   trace.Tracer
	prop     propagation.TextMapPropagator
}

// New builds tracing from cfg. Off (the default): a no-op provider, so spans
// cost next to nothing and are never exported, but a trace context that
// arrives (traceparent header, AMQP header) still flows through to the
// envelope and the provider call. On: spans are batched and exported over
// OTLP/HTTP to tracing.endpoint, sampled at tracing.sampleRatio of new
// traces (a sampled parent is always followed).
func New(ctx context.Context, cfg config.Tracing, version string) (*Tracing, error) {
	if !cfg.Enabled {
		return newTracing(noop.NewTracerProvider(), nil), nil
	}
	u, err := url.Parse(cfg.Endpoint)
	if err != nil || u.Host == "" {
		return nil, fmt.Errorf("tracing: endpoint %q is not an absolute URL", cfg.Endpoint)
	}
	path := u.Path
	if path == "" || path == "/" {
		path = "/v1/traces"
	}
	opts := []otlptracehttp.Option{
		otlptracehttp.WithEndpoint(u.Host),
		otlptracehttp.WithURLPath(path),
		otlptracehttp.WithTimeout(cfg.Timeout),
	}
	if u.Scheme == "http" {
		opts = append(opts, otlptracehttp.WithInsecure())
	}
	exp, err := otlptracehttp.New(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("tracing: otlp exporter: %w", err)
	}
	sdk := sdktrace.NewTracerProvider(
		sdktrace.WithBatcher(exp),
		sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.TraceIDRatioBased(cfg.SampleRatio))),
		sdktrace.WithResource(serviceResource(cfg.ServiceName, version)),
	)
	return newTracing(sdk, sdk), nil
}

// NewWithExporter builds tracing that records every span and hands each to
// exp as it ends (synchronously), whatever the config says. Tests use it
// with tracetest.InMemoryExporter.
func NewWithExporter(exp sdktrace.SpanExporter, serviceName, version string) *Tracing {
	sdk := sdktrace.NewTracerProvider(
		sdktrace.WithSyncer(exp),
		sdktrace.WithSampler(sdktrace.AlwaysSample()),
		sdktrace.WithResource(serviceResource(serviceName, version)),
	)
	return newTracing(sdk, sdk)
}

func newTracing(p trace.TracerProvider, sdk *sdktrace.TracerProvider) *Tracing {
	return &Tracing{
		provider: p,
		sdk:      sdk,
		tracer:   p.Tracer(InstrumentationName),
		prop:     propagation.TraceContext{},
	}
}

func serviceResource(name, version string) *resource.Resource {
	return resource.NewSchemaless(
		attribute.String("service.name", name),
		attribute.String("service.version", version),
	)
}

// Enabled reports whether spans are recorded.
func (t *Tracing) Enabled() bool { return t.sdk != nil }

// Tracer is the service's tracer.
func (t *Tracing) Tracer() trace.Tracer { return t.tracer }

// Provider is the tracer provider.
func (t *Tracing) Provider() trace.TracerProvider { return t.provider }

// Propagator reads and writes W3C trace context (traceparent, tracestate).
func (t *Tracing) Propagator() propagation.TextMapPropagator { return t.prop }

// Shutdown exports the spans still buffered and stops the exporter, within
// ctx. It is a no-op when tracing is off.
func (t *Tracing) Shutdown(ctx context.Context) error {
	if t.sdk == nil {
		return nil
	}
	if err := t.sdk.Shutdown(ctx); err != nil {
		return fmt.Errorf("tracing: shutdown: %w", err)
	}
	return nil
}

// TraceParent returns the W3C traceparent header value of the span in ctx,
// or "" when ctx carries no valid span context.
func TraceParent(ctx context.Context) string {
	c := propagation.MapCarrier{}
	propagation.TraceContext{}.Inject(ctx, c)
	return c["traceparent"]
}

// WithTraceParent returns ctx with the span context that traceparent names
// as its remote parent; an empty or malformed value returns ctx unchanged.
func WithTraceParent(ctx context.Context, traceparent string) context.Context {
	if traceparent == "" {
		return ctx
	}
	return propagation.TraceContext{}.Extract(ctx, propagation.MapCarrier{"traceparent": traceparent})
}
