package test

import (
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ketamine-gateway/ketamine-gateway/test/internal/gwproc"
)

// TestPrometheusMetrics: with OTEL_METRICS_EXPORTER=prometheus the binary
// serves /metrics on a listener of its own (not the FHIR listener), with
// the store's pool and write-queue gauges and the Go runtime's; a record
// ingested and requests refused by the rate limit move their figures.
func TestPrometheusMetrics(t *testing.T) {
	p, err := gwproc.Prepare(binary, "serve", "--addr", "127.0.0.1:0", "--db", filepath.Join(t.TempDir(), "kg.db"),
		"--rate-limit", "0.01")
	if err != nil {
		t.Fatal(err)
	}
	p.Cmd.Env = append(os.Environ(), "OTEL_METRICS_EXPORTER=prometheus", "OTEL_EXPORTER_PROMETHEUS_PORT=0")
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	g := newGateway(p)
	if err := p.WaitAddr(30 * time.Second); err != nil {
		t.Fatal(err)
	}
	g.base = p.Base
	t.Cleanup(func() { g.stop(t) })
	// "metrics listening" is logged before "listening".
	var metricsAddr string
	for _, line := range strings.Split(g.Logs.String(), "\n") {
		var l struct{ Msg, Addr string }
		if json.Unmarshal([]byte(line), &l) == nil && l.Msg == "metrics listening" {
			metricsAddr = l.Addr
		}
	}
	if !strings.HasPrefix(metricsAddr, "127.0.0.1:") {
		t.Fatalf("no loopback \"metrics listening\" line in the log:\n%s", g.Logs)
	}
	scrape := func() string {
		t.Helper()
		resp, err := http.Get("http://" + metricsAddr + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET /metrics = %d %s", resp.StatusCode, b)
		}
		return string(b)
	}
	// value returns the sample of name whose labels contain label.
	value := func(body, name, label string) string {
		for _, line := range strings.Split(body, "\n") {
			rest, ok := strings.CutPrefix(line, name)
			if ok && (rest != "" && (rest[0] == ' ' || rest[0] == '{')) && strings.Contains(rest, label) {
				return rest[strings.LastIndex(rest, " ")+1:]
			}
		}
		return ""
	}

	before := scrape()
	for _, name := range []string{"gateway_db_pool_max", "gateway_db_pool_in_use", "gateway_db_pool_waits_total",
		"gateway_db_write_queue_depth", "gateway_db_write_queue_max", "gateway_db_write_lanes_max", "go_goroutine_count",
		"go_memory_used_bytes"} {
		if value(before, name, "") == "" {
			t.Errorf("%s missing from /metrics", name)
		}
	}
	if v := value(before, "gateway_requests_refused_total", ""); v != "" {
		t.Errorf("gateway_requests_refused_total before any refusal = %s", v)
	}
	if resp, err := http.Get(g.base + "/metrics"); err != nil || resp.StatusCode != http.StatusNotFound {
		t.Errorf("GET /metrics on the FHIR listener = %v %v, want 404", resp.StatusCode, err)
	}

	refused := 0
	for range 5 {
		resp, err := http.Get(g.base + "/fhir/metadata")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode == http.StatusTooManyRequests {
			refused++
		}
	}
	if refused == 0 {
		t.Fatal("no request refused by --rate-limit 0.01")
	}
	after := scrape()
	if got, want := value(after, "gateway_requests_refused_total", `refusal_rule="rate-limited"`), strconv.Itoa(refused); got != want {
		t.Errorf("gateway_requests_refused_total{refusal_rule=\"rate-limited\"} = %q, want %s", got, want)
	}
}
