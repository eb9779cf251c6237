package telemetry

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"
)

// documentedNames returns the names of the Prometheus column of the
// metrics table of docs/operations.md, each with its table row.
func documentedNames(t *testing.T) map[string]string {
	t.Helper()
	doc, err := os.ReadFile("../../docs/operations.md")
	if err != nil {
		t.Fatal(err)
	}
	_, table, ok := strings.Cut(string(doc), "\n| metric (OpenTelemetry name) | Prometheus name |")
	if !ok {
		t.Fatal("docs/operations.md: no metrics table with a column \"Prometheus name\"")
	}
	names := map[string]string{}
	code := regexp.MustCompile("`([a-z_]+)`")
	for _, row := range strings.Split(table, "\n")[2:] {
		if !strings.HasPrefix(row, "|") {
			break
		}
		cells := strings.Split(row, "|")
		for _, m := range code.FindAllStringSubmatch(cells[2], -1) {
			names[m[1]] = strings.TrimSpace(cells[1])
		}
	}
	if len(names) == 0 {
		t.Fatal("docs/operations.md: the metrics table names no Prometheus metric")
	}
	return names
}

// TestPrometheusNamesDocumented (p41 F11): the Prometheus names the
// metrics table of docs/operations.md gives are those a scrape shows
// (a gauge of unit 1 ends in _ratio, one of an annotation unit has no
// suffix), and every metric of the gateway's own and of its HTTP server
// and client is in the table: with every instrument recording, the
// settings one (PostgreSQL's) too, the scrape and the table agree.
func TestPrometheusNamesDocumented(t *testing.T) {
	tel := setup(t, nil, envMetricsExporter, "prometheus")
	defer quickShutdown(t, tel)
	m, err := NewMetrics(tel.MeterProvider())
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = m.Close() }()
	if err := StartRuntime(tel.MeterProvider()); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	m.RegisterStore(func() PoolStat { return PoolStat{Max: 4} })
	m.RegisterBacklog(func(context.Context) []BacklogStat { return []BacklogStat{{Destination: "ehr", Held: true}} })
	m.RegisterSettings(func() int64 { return 0 })
	m.RegisterCapabilities(func() []CapabilityStat { return []CapabilityStat{{Destination: "ehr"}} })
	m.IngestRecord(ctx, "session", "accepted")
	m.ValidationFailure(ctx, "schema-required")
	m.DeliveryAttempt(ctx, "ehr", "success", time.Millisecond)
	m.Refused(ctx, "store-busy")
	// The HTTP server's and client's instruments (otelhttp).
	ehr := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer ehr.Close()
	client := &http.Client{Transport: ClientTransport(nil, tel)}
	gw := httptest.NewServer(ServerHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		SetRoute(r.Context(), "/fhir/metadata")
		_, _ = io.WriteString(w, "{}")
	}), tel, nil))
	defer gw.Close()
	for _, target := range []string{gw.URL + "/fhir/metadata", ehr.URL} {
		res, err := client.Post(target, "application/json", strings.NewReader("{}"))
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, res.Body)
		res.Body.Close()
	}

	scraped := map[string]bool{}
	for _, line := range strings.Split(scrape(t, tel.PrometheusHandler()), "\n") {
		if rest, ok := strings.CutPrefix(line, "# TYPE "); ok {
			name, _, _ := strings.Cut(rest, " ")
			scraped[name] = true
		}
	}
	documented := documentedNames(t)
	for name, row := range documented {
		if !scraped[name] {
			t.Errorf("docs/operations.md names %s (row %s), which the scrape does not show", name, row)
		}
	}
	for name := range scraped {
		own := strings.HasPrefix(name, "gateway_") || strings.HasPrefix(name, "http_")
		if _, ok := documented[name]; own && !ok {
			t.Errorf("the scrape shows %s, which the metrics table of docs/operations.md does not name", name)
		}
	}
}
