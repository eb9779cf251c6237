package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/app"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/audit"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/delivery"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/ingest"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/search"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store/sqlite"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/telemetry"
	"github.com/ketamine-gateway/ketamine-gateway/mapping"
)

// markers hands out unique canary strings that pass the schemas' patterns
// for free text and identifiers (lowercase letters and digits).
type markers struct{ all []string }

func (m *markers) next() string {
	s := fmt.Sprintf("zqxcanary%04d", len(m.all))
	m.all = append(m.all, s)
	return s
}

// markRecord replaces every string of a native record that can take any
// text (free text and identifiers: names, notes, ids, lot numbers, ...)
// by a marker, keeping the record valid: a replacement that the schema or
// the clinical rules reject is undone (codes, dates, enums).
func markRecord(t *testing.T, s *ingest.Service, kind mapping.Kind, raw []byte, m *markers) []byte {
	t.Helper()
	var doc any
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	valid := func() bool {
		b, _ := json.Marshal(doc)
		_, err := s.DryRun(context.Background(), "", kind, b, false)
		return err == nil
	}
	// try puts a marker where orig was and keeps it if the record stays valid.
	try := func(set func(string), orig string) {
		set(m.next())
		if !valid() {
			set(orig)
			m.all = m.all[:len(m.all)-1]
		}
	}
	var walk func(v any)
	walk = func(v any) {
		switch n := v.(type) {
		case map[string]any:
			for k, c := range n {
				if s, ok := c.(string); ok {
					try(func(v string) { n[k] = v }, s)
					continue
				}
				walk(c)
			}
		case []any:
			for i, c := range n {
				if s, ok := c.(string); ok {
					try(func(v string) { n[i] = v }, s)
					continue
				}
				walk(c)
			}
		}
	}
	walk(doc)
	b, _ := json.Marshal(doc)
	return b
}

// failingStore fails the next Write with an error quoting a marker (as a
// database driver might quote the value it failed on) and panics with a
// marker in Read while panicRead is set.
type failingStore struct {
	store.Store
	failWrite atomic.Pointer[string]
	panicRead atomic.Pointer[string]
}

func (f *failingStore) Write(ctx context.Context, fn func(store.Tx) error) error {
	if m := f.failWrite.Swap(nil); m != nil {
		return fmt.Errorf("UNIQUE constraint failed: value %q", *m)
	}
	return f.Store.Write(ctx, fn)
}

func (f *failingStore) Read(ctx context.Context, typ, id string) (*store.Resource, error) {
	if m := f.panicRead.Swap(nil); m != nil {
		panic("unexpected value " + *m)
	}
	return f.Store.Read(ctx, typ, id)
}

// TestCanaryNoPHI drives records of every kind, with a unique marker in
// every free-text and identifying field, through success and every failure
// path (schema error, rule error, conflicting version, FHIR validation and
// search errors, store error, panic, EHR 500, EHR 400) and then looks for
// the markers in the logs, the exported spans and the AuditEvent
// descriptions: there must be none. It also checks that the markers did
// reach the database, so that the test can fail.
func TestCanaryNoPHI(t *testing.T) {
	tel, spans, _ := telemetry.NewForTest()
	var logs syncBuffer
	logger := slog.New(telemetry.LogHandler(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
	base, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "kg.db"), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { base.Close() })
	st := &failingStore{Store: base}
	m := &markers{}

	// Two EHRs that echo PHI in their errors.
	ehrMarker500, ehrMarker400 := m.next(), m.next()
	ehr := func(status int, marker string) *httptest.Server {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if strings.HasSuffix(r.URL.Path, "/metadata") {
				w.Header().Set("Content-Type", "application/fhir+json")
				fmt.Fprint(w, `{"resourceType":"CapabilityStatement","status":"active","kind":"instance","fhirVersion":"4.0.1","format":["json"],"rest":[{"mode":"server","interaction":[{"code":"transaction"}]}]}`)
				return
			}
			w.Header().Set("Content-Type", "application/fhir+json")
			w.WriteHeader(status)
			fmt.Fprintf(w, `{"resourceType":"OperationOutcome","issue":[{"severity":"error","code":"invalid","diagnostics":"patient %s already exists"}]}`, marker)
		}))
		t.Cleanup(srv.Close)
		return srv
	}
	dests := []delivery.Destination{
		{Name: "ehr-500", BaseURL: ehr(500, ehrMarker500).URL},
		{Name: "ehr-400", BaseURL: ehr(400, ehrMarker400).URL},
	}
	worker, err := delivery.NewWorker(base, dests, delivery.WorkerOptions{
		Logger: logger, TraceID: telemetry.TraceID, PollInterval: 50 * time.Millisecond,
		BackoffBase: 10 * time.Millisecond, BackoffMax: 20 * time.Millisecond,
		StartAttempt: func(ctx context.Context, dest string, it *store.OutboxItem) (context.Context, func(string)) {
			return tel.StartDeliveryAttempt(ctx, dest, it.TraceID, it.Attempts+1)
		},
		WrapTransport: func(rt http.RoundTripper) http.RoundTripper { return telemetry.ClientTransport(rt, tel) },
	})
	if err != nil {
		t.Fatal(err)
	}
	var routes []ingest.Route
	for _, d := range dests {
		routes = append(routes, ingest.Route{Name: d.Name, Accepts: d.Accepts, AcceptsTenant: d.AcceptsTenant})
	}
	s := testServer(t, app.Config{Store: st, Tracer: tel.TracerProvider(), Routes: routes, Notify: worker.Notify},
		Config{RateLimit: -1, Logger: logger, Telemetry: tel})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- worker.Run(ctx) }()

	call := func(method, target, contentType string, body []byte, want int) {
		t.Helper()
		r := httptest.NewRequest(method, target, bytes.NewReader(body))
		if contentType != "" {
			r.Header.Set("Content-Type", contentType)
		}
		rec := httptest.NewRecorder()
		s.ServeHTTP(rec, r)
		if rec.Code != want {
			t.Errorf("%s %s = %d, want %d: %s", method, strings.Split(target, "?")[0], rec.Code, want, rec.Body)
		}
	}

	// Native records of every kind: success, then every failure.
	stored := 0
	for _, kind := range mapping.Kinds() {
		files, _ := filepath.Glob(filepath.Join("..", "schemas", "examples", string(kind), "*.json"))
		if len(files) == 0 {
			t.Fatalf("no examples of %s", kind)
		}
		for _, f := range files {
			raw, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			rec := markRecord(t, s.app.Ingest, kind, raw, m)
			call("POST", "/ingest/"+string(kind), "application/json", rec, 200)
			if !bytes.Contains(raw, []byte(`"entered-in-error"`)) {
				stored++ // a withdrawal of a record never stored is delivered nowhere
			}

			// The same version with other content: 409.
			var src struct {
				Source map[string]string `json:"source"`
			}
			_ = json.Unmarshal(rec, &src)
			for i := len(m.all) - 1; i >= 0; i-- {
				if bytes.Contains(rec, []byte(m.all[i])) && !slices.Contains(slices.Collect(maps.Values(src.Source)), m.all[i]) {
					call("POST", "/ingest/"+string(kind), "application/json", bytes.ReplaceAll(rec, []byte(m.all[i]), []byte(m.next())), 409)
					break
				}
			}
			var doc map[string]any
			_ = json.Unmarshal(rec, &doc)
			// An unknown member whose name and value are markers.
			doc[m.next()] = m.next()
			changed, _ := json.Marshal(doc)
			call("POST", "/ingest/"+string(kind), "application/json", changed, 400)
			// A schema error: a required member missing, an unknown one with a marker.
			delete(doc, "source")
			bad, _ := json.Marshal(doc)
			call("POST", "/ingest/"+string(kind)+"?dryRun=true", "application/json", bad, 400)
			// Broken JSON quoting a marker.
			call("POST", "/ingest/"+string(kind), "application/json", []byte(`{"note":"`+m.next()+`",`), 400)
		}
	}
	// A clinical rule error (PHQ-9 total that does not add up).
	phq, _ := os.ReadFile(filepath.Join("..", "schemas", "examples", "assessment", "phq9-moderate.json"))
	phq = markRecord(t, s.app.Ingest, "assessment", phq, m)
	var pd map[string]any
	_ = json.Unmarshal(phq, &pd)
	pd["total"] = pd["total"].(float64) + 1
	ruleBad, _ := json.Marshal(pd)
	call("POST", "/ingest/assessment", "application/json", ruleBad, 422)

	// FHIR API: success and failures with markers in names, identifiers,
	// free text, element names and query strings.
	name, ident, text := m.next(), m.next(), m.next()
	patient := fmt.Sprintf(`{"resourceType":"Patient","identifier":[{"system":"http://hospital.example/mrn","value":%q}],"name":[{"family":%q}],"text":{"status":"generated","div":"<div xmlns=\"http://www.w3.org/1999/xhtml\">%s</div>"}}`, ident, name, text)
	call("POST", "/fhir/Patient", "application/fhir+json", []byte(patient), 201)
	call("GET", "/fhir/Patient?family="+name, "", nil, 200)
	call("GET", "/fhir/Patient?identifier=http://hospital.example/mrn|"+ident, "", nil, 200)
	call("GET", "/fhir/Patient?"+m.next()+"="+m.next(), "", nil, 400)
	call("GET", "/fhir/Patient?birthdate="+m.next(), "", nil, 400)
	call("POST", "/fhir/Patient", "application/fhir+json", []byte(fmt.Sprintf(`{"resourceType":"Patient","%s":%q}`, m.next(), m.next())), 400)
	call("POST", "/fhir/Patient", "application/fhir+json", []byte(fmt.Sprintf(`{"resourceType":"Patient","birthDate":%q}`, m.next())), 400)
	ident2 := m.next()
	call("PUT", "/fhir/Patient?identifier="+ident2, "application/fhir+json",
		[]byte(fmt.Sprintf(`{"resourceType":"Patient","identifier":[{"value":%q}]}`, ident2)), 201)
	call("PUT", "/fhir/Patient?identifier="+m.next(), "application/fhir+json", []byte(`{"resourceType":"Patient"}`), 400)
	call("GET", "/fhir/Patient/"+m.next(), "", nil, 404)
	call("POST", "/fhir", "application/fhir+json", []byte(fmt.Sprintf(`{"resourceType":"Bundle","type":"transaction","entry":[{"resource":{"resourceType":"Observation","status":"final","code":{"text":%q},"subject":{"reference":"urn:uuid:5b6f0d6e-3c1c-4d0e-9a43-1c2b3d4e5f60"}},"request":{"method":"POST","url":"Observation"}}]}`, m.next())), 400)
	call("GET", "/admin/lineage?source="+m.next()+"&record="+m.next(), "", nil, 404)

	// A store error quoting a marker, and a panic with a marker.
	sm := m.next()
	st.failWrite.Store(&sm)
	call("POST", "/fhir/Patient", "application/fhir+json", []byte(patient), 500)
	pm := m.next()
	st.panicRead.Store(&pm)
	call("GET", "/fhir/Patient/abc", "", nil, 500)

	// Deliveries: every record fails at both EHRs (500: retried; 400: dead).
	// No fixed deadline of its own (a loaded machine under -race is slow):
	// the test's own timeout, less a margin to report what was missing.
	deadline := time.Now().Add(5 * time.Minute)
	if d, ok := t.Deadline(); ok {
		deadline = d.Add(-10 * time.Second)
	}
	for {
		dead, _ := base.Deliveries(context.Background(), store.DeliveryFilter{Destination: "ehr-400", Status: store.StatusDead, Limit: 1000})
		retried, _ := base.Deliveries(context.Background(), store.DeliveryFilter{Destination: "ehr-500", Limit: 1000})
		tried := 0
		for _, it := range retried {
			if it.Attempts > 0 {
				tried++
			}
		}
		if len(dead) >= stored && tried >= stored {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("deliveries did not fail in time: %d dead of %d, %d tried", len(dead), stored, tried)
		}
		time.Sleep(20 * time.Millisecond) // waiting for the worker goroutine
	}
	cancel()
	<-done

	// The markers reached the database (so the test can fail)...
	page, err := base.Search(context.Background(), mustQuery(t, "Patient", "family="+name))
	if err != nil || len(page.Matches) != 1 {
		t.Fatalf("marked Patient not stored: %v %v", page, err)
	}
	its, _ := base.Deliveries(context.Background(), store.DeliveryFilter{Destination: "ehr-400", Limit: 1})
	if _, attempts, _ := base.Delivery(context.Background(), its[0].ID); len(attempts) == 0 || !bytes.Contains(attempts[0].Outcome, []byte(ehrMarker400)) {
		t.Fatalf("the EHR's answer was not kept for the operator")
	}
	// ...but never the logs, the spans or the audit descriptions.
	var spanText bytes.Buffer
	for _, sp := range spans.GetSpans() {
		b, _ := json.Marshal(map[string]any{"name": sp.Name, "attrs": sp.Attributes, "events": sp.Events,
			"status": sp.Status, "links": sp.Links, "resource": sp.Resource.Attributes()})
		spanText.Write(b)
	}
	if spanText.Len() == 0 {
		t.Fatal("no spans exported")
	}
	var descs bytes.Buffer
	err = base.AuditChainAfter(context.Background(), 0, func(e audit.ChainEntry) error {
		var ev map[string]any
		if err := json.Unmarshal(e.Body, &ev); err != nil {
			return err
		}
		fmt.Fprintln(&descs, ev["outcomeDesc"], ev["source"], ev["agent"])
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	logText := logs.String()
	if !strings.Contains(logText, "request failed") || !strings.Contains(logText, "panic") {
		t.Fatalf("the failures were not logged at all:\n%s", logText)
	}
	for _, mk := range m.all {
		for where, text := range map[string]string{"logs": logText, "spans": spanText.String(), "audit descriptions": descs.String()} {
			if strings.Contains(text, mk) {
				i := strings.Index(text, mk)
				t.Errorf("marker %s found in %s: ...%s...", mk, where, text[max(0, i-200):min(len(text), i+50)])
			}
		}
	}
	t.Logf("%d markers, %d records stored, %d spans, %d log bytes", len(m.all), stored, len(spans.GetSpans()), len(logText))
}

func mustQuery(t *testing.T, typ, q string) *search.Query {
	t.Helper()
	v, err := url.ParseQuery(q)
	if err != nil {
		t.Fatal(err)
	}
	sq, err := search.Parse(typ, v, false)
	if err != nil {
		t.Fatal(err)
	}
	return sq
}

// syncBuffer is a bytes.Buffer safe for the worker's and the handlers'
// concurrent log writes.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
