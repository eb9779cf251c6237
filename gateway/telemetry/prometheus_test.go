package telemetry

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// scrape GETs h once and returns the body.
func scrape(t *testing.T, h http.Handler) string {
	t.Helper()
	srv := httptest.NewServer(h)
	defer srv.Close()
	res, err := http.Get(srv.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(res.Body)
	if res.StatusCode != http.StatusOK || !strings.HasPrefix(res.Header.Get("Content-Type"), "text/plain") {
		t.Fatalf("scrape = %d %s, want 200 text/plain", res.StatusCode, res.Header.Get("Content-Type"))
	}
	return string(body)
}

// sample returns the value text of the first sample line of name whose
// labels contain label (label may be "").
func sample(body, name, label string) string {
	for _, line := range strings.Split(body, "\n") {
		rest, ok := strings.CutPrefix(line, name)
		if !ok || (rest != "" && rest[0] != ' ' && rest[0] != '{') || !strings.Contains(rest, label) {
			continue
		}
		return rest[strings.LastIndex(rest, " ")+1:]
	}
	return ""
}

func TestSetupPrometheusServesMetrics(t *testing.T) {
	tel := setup(t, nil, envMetricsExporter, "prometheus")
	defer quickShutdown(t, tel)
	if got := tel.PrometheusAddr(); got != "127.0.0.1:9464" {
		t.Errorf("PrometheusAddr() = %q, want 127.0.0.1:9464", got)
	}
	h := tel.PrometheusHandler()
	if h == nil {
		t.Fatal("PrometheusHandler() = nil")
	}
	m, err := NewMetrics(tel.MeterProvider())
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = m.Close() }()
	if err := StartRuntime(tel.MeterProvider()); err != nil {
		t.Fatal(err)
	}
	st := PoolStat{InUse: 3, Idle: 2, Open: 5, Max: 10, Waits: 4, WaitDuration: 1500 * time.Millisecond, Canceled: 1,
		WriteQueue: 7, WriteQueueMax: 1024, WriteLanesBusy: 2, WriteLanes: 2}
	m.RegisterStore(func() PoolStat { return st })

	before := scrape(t, h)
	if v := sample(before, "gateway_requests_refused", ""); v != "" {
		t.Errorf("gateway_requests_refused before any refusal = %s, want no sample", v)
	}
	m.Refused(context.Background(), "store-busy")
	m.Refused(context.Background(), "store-busy")
	m.Refused(context.Background(), "search-concurrency-limit")
	st.InUse, st.Waits = 9, 5
	body := scrape(t, h)

	for _, c := range []struct{ name, label, want string }{
		{"gateway_requests_refused_total", `refusal_rule="store-busy"`, "2"},
		{"gateway_requests_refused_total", `refusal_rule="search-concurrency-limit"`, "1"},
		{"gateway_db_pool_in_use", "", "9"},
		{"gateway_db_pool_idle", "", "2"},
		{"gateway_db_pool_open", "", "5"},
		{"gateway_db_pool_max", "", "10"},
		{"gateway_db_pool_waits_total", "", "5"},
		{"gateway_db_pool_wait_duration_seconds_total", "", "1.5"},
		{"gateway_db_pool_canceled_total", "", "1"},
		{"gateway_db_write_queue_depth", "", "7"},
		{"gateway_db_write_queue_max", "", "1024"},
		{"gateway_db_write_lanes_busy", "", "2"},
		{"gateway_db_write_lanes_max", "", "2"},
	} {
		if got := sample(body, c.name, c.label); got != c.want {
			t.Errorf("%s{%s} = %q, want %q", c.name, c.label, got, c.want)
		}
	}
	for _, name := range []string{"go_goroutine_count", "go_memory_used_bytes", "go_memory_gc_goal_bytes"} {
		if sample(body, name, "") == "" {
			t.Errorf("%s missing from the scrape", name)
		}
	}
}

func TestPrometheusAddr(t *testing.T) {
	for _, c := range []struct {
		name       string
		host, port string
		want       string
		wantErr    bool
	}{
		{"default", "", "", "127.0.0.1:9464", false},
		{"host and port", "0.0.0.0", "9100", "0.0.0.0:9100", false},
		{"ipv6", "::1", "0", "[::1]:0", false},
		{"bad port", "", "http", "", true},
		{"port out of range", "", "70000", "", true},
		{"host with a path", "example.org/x", "", "", true},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, err := prometheusAddr(env(envOf(envPrometheusHost, c.host, envPrometheusPort, c.port)))
			if (err != nil) != c.wantErr || got != c.want {
				t.Errorf("prometheusAddr(%q, %q) = %q, %v; want %q, error %v", c.host, c.port, got, err, c.want, c.wantErr)
			}
		})
	}
}

func TestPrometheusIsMetricsOnly(t *testing.T) {
	_, err := Setup(context.Background(), envOf(envTracesExporter, "prometheus"), &bytes.Buffer{})
	if err == nil || !strings.Contains(err.Error(), "metrics only") {
		t.Errorf("Setup(OTEL_TRACES_EXPORTER=prometheus) = %v, want an error saying prometheus exports metrics only", err)
	}
}
