package gateway_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ketamine-gateway/ketamine-gateway/gateway"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/app"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store/sqlite"
)

// FuzzFHIRWrite posts arbitrary bodies as a resource and as a Bundle to
// the FHIR API on a real store: the answer is never a 5xx (a client's
// mistake is a 4xx OperationOutcome) and never a panic.
func FuzzFHIRWrite(f *testing.F) {
	f.Add([]byte(patientJSON))
	f.Add([]byte(txBundle(patEntry)))
	f.Add([]byte(`{"resourceType":"Bundle","type":"batch","entry":[{"request":{"method":"GET","url":"Patient?name=a"}}]}`))
	if golden, _ := filepath.Glob("../mapping/testdata/session/*.golden.json"); len(golden) > 0 {
		for _, g := range golden {
			if b, err := os.ReadFile(g); err == nil {
				f.Add(b)
			}
		}
	}
	// HL7's own validator cases (valid and invalid) from ../shared/testdata,
	// when present: small ones, so that each run stays fast.
	cases, _ := filepath.Glob("../../shared/testdata/fhir-test-cases/cases/*/*.json")
	if more, _ := filepath.Glob("../../shared/testdata/fhir-test-cases/cases/*.json"); len(more) > 0 {
		cases = append(cases, more...)
	}
	n := 0
	for _, c := range cases {
		if fi, err := os.Stat(c); err == nil && fi.Size() < 8<<10 && n < 60 {
			if b, err := os.ReadFile(c); err == nil {
				f.Add(b)
				n++
			}
		}
	}
	st, err := sqlite.Open(context.Background(), filepath.Join(f.TempDir(), "fuzz.db"), sqlite.Options{})
	if err != nil {
		f.Fatal(err)
	}
	defer st.Close()
	s := newServer(f, app.Config{Store: st}, gateway.Config{})
	f.Fuzz(func(t *testing.T, body []byte) {
		for _, target := range []string{"/fhir/Observation", "/fhir"} {
			rec := req(s, http.MethodPost, target, string(body))
			if rec.Code >= 500 {
				t.Fatalf("POST %s = %d for a client's input: %s", target, rec.Code, rec.Body)
			}
		}
	})
}

// FuzzFHIRSearch sends arbitrary query strings as searches (GET, POST
// _search) and as conditional criteria (If-None-Exist) to a real store: the
// answer is a 200 or a 4xx OperationOutcome, never a 5xx (but a search
// stopped by the search timeout) and never a panic.
func FuzzFHIRSearch(f *testing.F) {
	for _, s := range []string{
		"name=a", "name=a&name=b&family:exact=X", "identifier=http://x|1,|2&_sort=-_lastUpdated&_count=3",
		"_include=Patient:organization&_revinclude=Observation:subject&_revinclude=Provenance:target",
		"birthdate=ge2020&birthdate=le2026-02-29T24:00:00+14:00", "_id=" + strings.Repeat("a,", 120),
		strings.Repeat("name=a&", 300), "subject.name=x", "_has:Observation:patient:code=1", "%zz", "a=\\",
		"Jane+Doe=1", "_summary=count&_total=accurate", "_elements=id", "gender:missing=maybe", "name:contains=%00",
	} {
		f.Add(s)
	}
	st, err := sqlite.Open(context.Background(), filepath.Join(f.TempDir(), "fuzz.db"), sqlite.Options{})
	if err != nil {
		f.Fatal(err)
	}
	defer st.Close()
	// Not audited: every request would be a write, and the audit is not what
	// this target checks.
	s := newServer(f, app.Config{Store: st, NoAudit: true}, gateway.Config{})
	for _, p := range []string{patientJSON, `{"resourceType":"Patient","name":[{"family":"a"}]}`} {
		if rec := req(s, http.MethodPost, "/fhir/Patient", p); rec.Code != http.StatusCreated {
			f.Fatalf("seed = %d %s", rec.Code, rec.Body)
		}
	}
	f.Fuzz(func(t *testing.T, raw string) {
		check := func(what string, rec *httptest.ResponseRecorder) {
			if rec.Code >= 500 && !(rec.Code == http.StatusServiceUnavailable && strings.Contains(rec.Body.String(), "search-too-costly")) {
				t.Fatalf("%s = %d for a client's query: %s", what, rec.Code, rec.Body)
			}
		}
		for _, typ := range []string{"Patient", "Observation"} {
			r := httptest.NewRequest(http.MethodGet, "/fhir/"+typ, nil)
			r.URL.RawQuery = raw
			check("GET "+typ, httptestDo(s, r))
			check("POST "+typ+"/_search", httptestDo(s, httptestForm("/fhir/"+typ+"/_search", raw)))
		}
		check("If-None-Exist", req(s, http.MethodPost, "/fhir/Patient", `{"resourceType":"Patient","gender":"other"}`,
			"If-None-Exist: "+raw))
	})
}
