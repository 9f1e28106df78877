// Package telemetry sets up OpenTelemetry tracing for the services of one process.
//
// Each fmgate service reports under its own service.name (fmgate-edge, fmgate-registry, ...)
// whether the mesh runs as seven processes or one, so an SRE's view in Jaeger is the same in
// both. A process therefore holds one TracerProvider per service it runs; they share one
// OTLP exporter. Spans are exported only when OTEL_EXPORTER_OTLP_ENDPOINT (or the
// traces-specific variable) is set; otherwise providers still create spans, so trace ids
// reach the logs, but nothing leaves the process.
package telemetry

import (
	"context"
	"errors"
	"fmt"
	"os"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.37.0"
	"go.opentelemetry.io/otel/trace"
)

// Providers holds one tracer provider per service name.
type Providers struct {
	byService map[string]*sdktrace.TracerProvider
	exporter  sdktrace.SpanExporter
}

// Config says what to set up.
type Config struct {
	// Services are the service names (registry, edge, ...) this process runs.
	Services []string
	// Global names the service whose provider becomes the global one, used by libraries
	// that take no provider (pgx, Redis, outgoing HTTP). Empty means the first service.
	Global string
	// Version is reported as service.version.
	Version string
	// Exporter overrides the OTLP exporter (tests pass an in-memory one).
	Exporter sdktrace.SpanExporter
	// Synchronous exports each span as it ends instead of in batches; for tests.
	Synchronous bool
}

// Setup creates the providers, sets the global provider and the W3C propagators, and
// returns them with a shutdown function that flushes every pending span.
func Setup(ctx context.Context, cfg Config) (*Providers, func(context.Context) error, error) {
	p := &Providers{byService: make(map[string]*sdktrace.TracerProvider, len(cfg.Services)), exporter: cfg.Exporter}
	if p.exporter == nil && exportEnabled() {
		exp, err := otlptracegrpc.New(ctx)
		if err != nil {
			return nil, nil, fmt.Errorf("otlp trace exporter: %w", err)
		}
		p.exporter = exp
	}
	for _, svc := range cfg.Services {
		res, err := resource.Merge(resource.Default(), resource.NewSchemaless(
			semconv.ServiceName(ServiceName(svc)),
			semconv.ServiceVersion(cfg.Version),
			semconv.ServiceNamespace("fmgate"),
		))
		if err != nil {
			return nil, nil, fmt.Errorf("telemetry resource: %w", err)
		}
		opts := []sdktrace.TracerProviderOption{sdktrace.WithResource(res)}
		if p.exporter != nil {
			if cfg.Synchronous {
				opts = append(opts, sdktrace.WithSyncer(nonClosing{p.exporter}))
			} else {
				opts = append(opts, sdktrace.WithBatcher(nonClosing{p.exporter}))
			}
		}
		p.byService[svc] = sdktrace.NewTracerProvider(opts...)
	}
	global := cfg.Global
	if global == "" && len(cfg.Services) > 0 {
		global = cfg.Services[0]
	}
	if tp, ok := p.byService[global]; ok {
		otel.SetTracerProvider(tp)
	}
	otel.SetTextMapPropagator(propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{}))
	shutdown := func(ctx context.Context) error {
		var errs []error
		for _, tp := range p.byService {
			errs = append(errs, tp.Shutdown(ctx))
		}
		if p.exporter != nil {
			errs = append(errs, p.exporter.Shutdown(ctx))
		}
		return errors.Join(errs...)
	}
	return p, shutdown, nil
}

// ServiceName is the service.name a service reports under.
func ServiceName(svc string) string { return "fmgate-" + svc }

// For returns the provider of a service, or the global one if the service has none.
func (p *Providers) For(svc string) trace.TracerProvider {
	if p != nil {
		if tp, ok := p.byService[svc]; ok {
			return tp
		}
	}
	return otel.GetTracerProvider()
}

func exportEnabled() bool {
	return os.Getenv("OTEL_EXPORTER_OTLP_ENDPOINT") != "" || os.Getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") != ""
}

// nonClosing lets several batchers share one exporter: each provider's Shutdown would
// otherwise shut the shared exporter down while the others still hold spans.
type nonClosing struct{ sdktrace.SpanExporter }

func (nonClosing) Shutdown(context.Context) error { return nil }
