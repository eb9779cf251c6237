package gateway_test

import (
	"fmt"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/ketamine-gateway/ketamine-gateway/gateway"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/app"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store/sqlite"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/telemetry"
	"github.com/ketamine-gateway/ketamine-gateway/schemas"
)

// TestSpans: a native record with canary markers in its free text goes
// through success and failure; the spans continue the caller's trace, name
// the stages, and carry no marker and no attribute outside the allow-list.
func TestSpans(t *testing.T) {
	tel, spans, _ := telemetry.NewForTest()
	st := tempSQLite(t, sqlite.Options{})
	h := newServer(t, app.Config{Store: st, Tracer: tel.TracerProvider()}, gateway.Config{Telemetry: tel})
	doc, err := fs.ReadFile(schemas.Examples(), "examples/session/routine-ketamine-iv-session.json")
	if err != nil {
		t.Fatal(err)
	}
	const marker = "CANARY-7f3a"
	withMarker := strings.Replace(string(doc), `"family": "`, `"family": "`+marker, 1)
	const traceID = "4bf92f3577b34da6a3ce929d0e0e4736"
	for i, body := range []string{withMarker, strings.Replace(withMarker, `"source"`, `"bogus-`+marker+`": 1, "source"`, 1)} {
		r := httptest.NewRequest(http.MethodPost, "/ingest/session", strings.NewReader(body))
		r.Header.Set("Content-Type", "application/json")
		r.Header.Set("traceparent", fmt.Sprintf("00-%s-00f067aa0ba902b7-01", traceID))
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, r)
		if want := []int{200, 400}[i]; rec.Code != want {
			t.Fatalf("request %d = %d, want %d", i, rec.Code, want)
		}
		if tr := rec.Header().Get("traceresponse"); !strings.Contains(tr, traceID) {
			t.Errorf("traceresponse = %q, want the caller's trace", tr)
		}
	}
	names := map[string]bool{}
	for _, sp := range spans.GetSpans() {
		names[sp.Name] = true
		if sp.SpanContext.TraceID().String() != traceID {
			t.Errorf("span %s is not in the caller's trace", sp.Name)
		}
		for _, a := range sp.Attributes {
			if !telemetry.AttributeAllowed(string(a.Key)) {
				t.Errorf("span %s has attribute %s outside the allow-list", sp.Name, a.Key)
			}
			if strings.Contains(a.Value.Emit(), marker) {
				t.Errorf("span %s attribute %s carries record content", sp.Name, a.Key)
			}
		}
		if strings.Contains(sp.Name, marker) || strings.Contains(sp.Status.Description, marker) {
			t.Errorf("span %q carries record content", sp.Name)
		}
	}
	for _, want := range []string{"POST /ingest/:kind", "ingest.map", "store.transaction"} {
		if !names[want] {
			t.Errorf("no span %q among %v", want, names)
		}
	}
}
