package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/telemetry"
)

// metricsListener opens the Prometheus scrape endpoint's listener when
// OTEL_METRICS_EXPORTER names prometheus (nil, nil otherwise): on its own
// address (OTEL_EXPORTER_PROMETHEUS_HOST/PORT, default 127.0.0.1:9464), not
// the FHIR listener, so that metrics are not served to the FHIR API's
// clients. A port serve cannot have is exit 2, at once.
func metricsListener(tel *telemetry.Telemetry) (net.Listener, error) {
	if tel.PrometheusHandler() == nil {
		return nil, nil
	}
	addr := tel.PrometheusAddr()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		detail := err
		var oe *net.OpError
		if errors.As(err, &oe) && oe.Err != nil {
			detail = oe.Err
		}
		return nil, &exitError{code: exitUsage, msg: fmt.Sprintf("serve: cannot listen on %s for metrics: choose another "+
			"OTEL_EXPORTER_PROMETHEUS_HOST / OTEL_EXPORTER_PROMETHEUS_PORT (%v)", addr, detail)}
	}
	return ln, nil
}

// serveMetrics serves GET /metrics (the Prometheus text format) on ln
// until the returned stop is called. Nothing else is served there.
func serveMetrics(ln net.Listener, tel *telemetry.Telemetry, logger *slog.Logger) (stop func()) {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", tel.PrometheusHandler())
	hs := &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    16 << 10,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
	logger.Info("metrics listening", "addr", ln.Addr().String(), "path", "/metrics")
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := hs.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			logger.Warn("metrics listener stopped", "error", err.Error())
		}
	}()
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = hs.Shutdown(ctx)
		<-done
	}
}

// poolStats adapts the store's PoolStats to the metrics' (nil when the
// store reports none).
func poolStats(st store.Store) func() telemetry.PoolStat {
	r, ok := st.(store.StatsReporter)
	if !ok {
		return nil
	}
	return func() telemetry.PoolStat {
		p := r.PoolStats()
		return telemetry.PoolStat{InUse: p.InUse, Idle: p.Idle, Open: p.Open, Max: p.Max,
			Waits: p.Waits, WaitDuration: p.WaitDuration, Canceled: p.Canceled,
			WriteQueue: p.WriteQueue, WriteQueueMax: p.WriteQueueMax,
			WriteLanesBusy: p.WriteLanesBusy, WriteLanes: p.WriteLanes}
	}
}
