package gateway

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/app"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/auditlog"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/auth"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/console"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/ingest"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store/sqlite"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/telemetry"
)

// consoleBenchEvents is how many AuditEvents the console benchmark stores
// (KG_CONSOLE_BENCH_EVENTS overrides it for a quick run).
const consoleBenchEvents = 100_000

// BenchmarkConsolePages renders every console page through the edge over a
// store holding 100,000 AuditEvents (and 50 stored session records with
// their Provenance and deliveries), reporting p50 and p95 per page, and
// the JSON API call for the same data in the same run as the baseline.
// Run it with -benchtime=100x (docs/BENCHMARKS.md).
func BenchmarkConsolePages(b *testing.B) {
	n := consoleBenchEvents
	if v := os.Getenv("KG_CONSOLE_BENCH_EVENTS"); v != "" {
		fmt.Sscan(v, &n)
	}
	// Seeding 100,000 AuditEvents takes minutes: the seeded database is
	// kept in the temporary directory and copied for each run.
	cache := filepath.Join(os.TempDir(), fmt.Sprintf("kg-console-bench-%d.db", n))
	if _, err := os.Stat(cache); err != nil {
		s, st, a := consoleBenchServer(b, cache+".tmp", 0)
		doc, err := os.ReadFile(filepath.Join("..", "schemas", "examples", "session", "routine-ketamine-iv-session.json"))
		if err != nil {
			b.Fatal(err)
		}
		for i := range 50 {
			ingestSession(b, s, doc, i)
		}
		seedAuditEvents(b, a, st, n)
		_ = a.Close()
		if err := st.Close(); err != nil {
			b.Fatal(err)
		}
		if err := os.Rename(cache+".tmp", cache); err != nil {
			b.Fatal(err)
		}
	}
	db := filepath.Join(b.TempDir(), "console-bench.db")
	raw, err := os.ReadFile(cache)
	if err != nil {
		b.Fatal(err)
	}
	if err := os.WriteFile(db, raw, 0o600); err != nil {
		b.Fatal(err)
	}
	s, _, a := consoleBenchServer(b, db, 10*n)
	doc, err := os.ReadFile(filepath.Join("..", "schemas", "examples", "session", "routine-ketamine-iv-session.json"))
	if err != nil {
		b.Fatal(err)
	}
	sc := auditlog.NewScope("", &auth.Principal{Scopes: auth.ParseScopes("system/*.rs")})
	res, err := a.Engine.Search(context.Background(), sc, "Patient", url.Values{"identifier": {"MRN-TEST-000123"}}, false)
	if err != nil || len(res.Page.Matches) != 1 {
		b.Fatalf("the stored patient: %v", err)
	}
	patient := "Patient/" + res.Page.Matches[0].ID

	// The console's session and CSRF token, and a saved patient search.
	rec := serve(s, "GET", "/console/audit", "", "")
	cookie := strings.Split(rec.Header().Get("Set-Cookie"), ";")[0]
	token := regexp.MustCompile(`name="csrf" value="([^"]+)"`).FindStringSubmatch(rec.Body.String())[1]
	search := func(form url.Values) string {
		form.Set("csrf", token)
		r := serve(s, "POST", "/console/audit", form.Encode(), cookie)
		return r.Header().Get("Location")
	}
	byPatient := search(url.Values{"patient": {"MRN-TEST-000123"}})
	all := search(url.Values{})
	var lin auditlog.Lineage
	if err := json.Unmarshal(serve(s, "GET", "/admin/lineage?source=serenity-clinic-emr&record=INF-2026-0310-B7-001", "", "").Body.Bytes(), &lin); err != nil {
		b.Fatal(err)
	}
	if len(lin.Receipts) != 1 || lin.Receipts[0].Request == nil {
		b.Fatalf("lineage of a stored record: %+v", lin)
	}
	ingestEvent := strings.TrimPrefix(lin.Receipts[0].Request.AuditEvent, "AuditEvent/")
	trace := lin.Receipts[0].TraceID
	sessionDoc := url.Values{"csrf": {token}, "kind": {"session"}, "record": {string(doc)}}.Encode()
	// The eighth delivery (by its public id, as the list shows it; newest first).
	var listed struct{ Deliveries []struct{ ID string } }
	if err := json.Unmarshal(serve(s, "GET", "/admin/deliveries?limit=1000", "", "").Body.Bytes(), &listed); err != nil || len(listed.Deliveries) < 8 {
		b.Fatalf("deliveries listed: %d, %v; want at least 8", len(listed.Deliveries), err)
	}
	eighth := listed.Deliveries[len(listed.Deliveries)-8].ID

	pages := []struct {
		name, method, path, body string
		api                      string // the JSON API call for the same data ("" none)
		apiMethod, apiBody       string
	}{
		{name: "home", method: "GET", path: "/console/"},
		{name: "audit-form", method: "GET", path: "/console/audit"},
		{name: "audit-search-patient", method: "GET", path: byPatient,
			api: "/fhir/AuditEvent?patient=" + patient + "&_sort=-date&_count=25"},
		{name: "audit-search-all", method: "GET", path: all, api: "/fhir/AuditEvent?_sort=-date&_count=25"},
		{name: "audit-search-all-page-40", method: "GET", path: all + "&page=40", api: "/fhir/AuditEvent?_sort=-date&_count=25&_offset=975"},
		// The same searches as the console runs them through the API.
		{name: "api-console-query-patient", method: "GET", path: byPatient,
			api: "/fhir/AuditEvent?patient=" + patient + "&_sort=-_lastUpdated&_count=26&_total=none"},
		{name: "api-console-query-all", method: "GET", path: all, api: "/fhir/AuditEvent?_sort=-_lastUpdated&_count=26&_total=none"},
		{name: "request", method: "GET", path: "/console/audit/events/" + ingestEvent, api: "/admin/lineage?trace=" + trace},
		{name: "record", method: "GET", path: "/console/records?source=serenity-clinic-emr&record=INF-2026-0310-B7-001",
			api: "/admin/lineage?source=serenity-clinic-emr&record=INF-2026-0310-B7-001"},
		{name: "chain", method: "GET", path: "/console/audit/chain"},
		{name: "deliveries", method: "GET", path: "/console/deliveries", api: "/admin/deliveries?limit=51"},
		{name: "delivery", method: "GET", path: "/console/deliveries/" + eighth, api: "/admin/deliveries/" + eighth},
		{name: "playground", method: "GET", path: "/console/playground"},
		{name: "playground-map", method: "POST", path: "/console/playground", body: sessionDoc,
			api: "/ingest/session?dryRun=true", apiMethod: "POST", apiBody: string(doc)},
		{name: "rules", method: "GET", path: "/console/rules"},
	}
	for _, p := range pages {
		b.Run(p.name, func(b *testing.B) {
			var console, api []time.Duration
			for b.Loop() {
				t0 := time.Now()
				r := serve(s, p.method, p.path, p.body, cookie)
				console = append(console, time.Since(t0))
				if r.Code != http.StatusOK {
					b.Fatalf("%s %s = %d: %.500s", p.method, p.path, r.Code, r.Body)
				}
				if p.api != "" {
					m := p.apiMethod
					if m == "" {
						m = "GET"
					}
					t0 = time.Now()
					r = serve(s, m, p.api, p.apiBody, "")
					api = append(api, time.Since(t0))
					if r.Code != http.StatusOK {
						b.Fatalf("%s %s = %d: %.500s", m, p.api, r.Code, r.Body)
					}
				}
			}
			b.ReportMetric(quantile(console, 0.50), "p50-ms")
			b.ReportMetric(quantile(console, 0.95), "p95-ms")
			if len(api) > 0 {
				b.ReportMetric(quantile(api, 0.95), "api-p95-ms")
				b.ReportMetric(quantile(console, 0.95)/quantile(api, 0.95), "ratio-p95")
			}
		})
	}
}

// consoleBenchServer opens the edge with the console over the SQLite file
// db, with a clock that starts at tick and moves 25 s per reading (the
// AuditEvents spread over about a month) and trace ids as in production.
func consoleBenchServer(b *testing.B, db string, tick int) (*Server, store.Store, *app.App) {
	ctx := context.Background()
	st, err := sqlite.Open(ctx, db, sqlite.Options{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { st.Close() })
	var clock atomic.Int64
	clock.Store(int64(tick))
	start := time.Date(2026, 10, 1, 0, 0, 0, 0, time.UTC)
	now := func() time.Time { return start.Add(time.Duration(clock.Add(1)) * 25 * time.Second) }
	tel, spans, _ := telemetry.NewForTest()
	b.Cleanup(func() { spans.Reset(); _ = tel.Shutdown(context.Background()) })
	a, err := app.New(app.Config{Store: st, Now: now, BacklogEvery: -1, Tracer: tel.TracerProvider(),
		Routes: []ingest.Route{{Name: "ehr", Accepts: func(string, string) bool { return true }}}})
	if err != nil {
		b.Fatal(err)
	}
	if err := a.Start(ctx); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = a.Close() })
	con, err := console.New(console.Config{App: a})
	if err != nil {
		b.Fatal(err)
	}
	s, err := NewServer(Config{App: a, RateLimit: -1, Console: con, Telemetry: tel})
	if err != nil {
		b.Fatal(err)
	}
	return s, st, a
}

// seedAuditEvents stores consoleBenchEvents AuditEvents through the audit
// log, 2,000 per transaction: reads and searches by five clients, a tenth
// of them about the stored sessions' patient.
func seedAuditEvents(b *testing.B, a *app.App, st store.Store, n int) {
	sc := auditlog.NewScope("", &auth.Principal{Scopes: auth.ParseScopes("system/*.rs")})
	res, err := a.Engine.Search(context.Background(), sc, "Patient", url.Values{"identifier": {"MRN-TEST-000123"}}, false)
	if err != nil || len(res.Page.Matches) != 1 {
		b.Fatalf("the stored patient: %v", err)
	}
	patient := "Patient/" + res.Page.Matches[0].ID
	interactions := []string{"read", "search-type", "vread", "history-instance"}
	for done := 0; done < n; {
		batch := min(2000, n-done)
		err := st.Write(context.Background(), func(tx store.Tx) error {
			for j := range batch {
				k := done + j
				sc := auditlog.NewScope(interactions[k%len(interactions)], &auth.Principal{ClientID: fmt.Sprintf("hospital-%d", k%5)})
				sc.Addr, sc.TraceID, sc.RequestID = "10.1.2.3", fmt.Sprintf("%032x", k), fmt.Sprintf("%032x", k)
				id := fmt.Sprintf("p%d", k%997)
				if k%10 == 0 {
					id = strings.TrimPrefix(patient, "Patient/")
				}
				sc.Touch(&store.Resource{Type: "Patient", ID: id, Version: 1})
				sc.Description = "Patient read"
				if err := a.Audit.AppendTx(tx, sc, http.StatusOK); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
		done += batch
	}
}

// serve sends one request to the edge with a cookie ("" none).
func serve(h http.Handler, method, target, body, cookie string) *httptest.ResponseRecorder {
	r := httptest.NewRequest(method, target, strings.NewReader(body))
	if method == "POST" && strings.HasPrefix(target, "/console") {
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	} else if body != "" {
		r.Header.Set("Content-Type", "application/json")
	}
	if cookie != "" {
		r.Header.Set("Cookie", cookie)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, r)
	return rec
}

// quantile returns the q-quantile of ds in milliseconds.
func quantile(ds []time.Duration, q float64) float64 {
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return float64(s[min(len(s)-1, int(q*float64(len(s))))].Microseconds()) / 1000
}
