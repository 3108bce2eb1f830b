// Package telemetry sets up OpenTelemetry for a detbus process the
// OpenTelemetry way. Metrics are always offered for scraping in the
// Prometheus format by [Telemetry.Handler] (served at /metrics by the
// node's and workers' HTTP servers). Further exporters are chosen with the
// standard environment variables: OTEL_METRICS_EXPORTER and
// OTEL_TRACES_EXPORTER ("otlp", "console", "none"), the OTEL_EXPORTER_OTLP_*
// endpoint and protocol settings, and OTEL_SERVICE_NAME and
// OTEL_RESOURCE_ATTRIBUTES for the resource. With none of them set, spans
// are not exported and metrics only scraped.
package telemetry

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"

	"go.opentelemetry.io/contrib/exporters/autoexport"
	"go.opentelemetry.io/otel"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	"go.opentelemetry.io/otel/propagation"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.40.0"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Telemetry is the process's OpenTelemetry setup.
type Telemetry struct {
	handler  http.Handler
	shutdown []func(context.Context) error
}

// Setup installs global meter and tracer providers and the W3C
// propagator for a process named service (OTEL_SERVICE_NAME wins).
// Call Shutdown before the process exits to flush exporters.
func Setup(ctx context.Context, service string) (*Telemetry, error) {
	res, err := resource.Merge(resource.Default(),
		resource.NewSchemaless(semconv.ServiceName(service)))
	if err != nil {
		return nil, fmt.Errorf("telemetry: resource: %w", err)
	}
	if env, err := resource.New(ctx, resource.WithFromEnv()); err == nil {
		res, _ = resource.Merge(res, env)
	}
	reg := prometheus.NewRegistry()
	prom, err := otelprom.New(otelprom.WithRegisterer(reg))
	if err != nil {
		return nil, fmt.Errorf("telemetry: prometheus exporter: %w", err)
	}
	t := &Telemetry{handler: promhttp.HandlerFor(reg, promhttp.HandlerOpts{})}
	opts := []sdkmetric.Option{sdkmetric.WithResource(res), sdkmetric.WithReader(prom)}
	if os.Getenv("OTEL_METRICS_EXPORTER") != "" {
		r, err := autoexport.NewMetricReader(ctx)
		if err != nil {
			return nil, fmt.Errorf("telemetry: OTEL_METRICS_EXPORTER: %w", err)
		}
		if !autoexport.IsNoneMetricReader(r) {
			opts = append(opts, sdkmetric.WithReader(r))
		}
	}
	mp := sdkmetric.NewMeterProvider(opts...)
	otel.SetMeterProvider(mp)
	t.shutdown = append(t.shutdown, mp.Shutdown)
	if os.Getenv("OTEL_TRACES_EXPORTER") != "" {
		exp, err := autoexport.NewSpanExporter(ctx)
		if err != nil {
			return nil, fmt.Errorf("telemetry: OTEL_TRACES_EXPORTER: %w", err)
		}
		if !autoexport.IsNoneSpanExporter(exp) {
			tp := sdktrace.NewTracerProvider(sdktrace.WithResource(res), sdktrace.WithBatcher(exp))
			otel.SetTracerProvider(tp)
			t.shutdown = append(t.shutdown, tp.Shutdown)
		}
	}
	otel.SetTextMapPropagator(propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{}))
	return t, nil
}

// Handler serves the metrics in the Prometheus exposition format.
func (t *Telemetry) Handler() http.Handler { return t.handler }

// Shutdown flushes and stops the exporters.
func (t *Telemetry) Shutdown(ctx context.Context) error {
	var errs []error
	for _, f := range t.shutdown {
		errs = append(errs, f(ctx))
	}
	return errors.Join(errs...)
}
