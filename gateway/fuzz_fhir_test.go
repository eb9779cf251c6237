package gateway_test

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
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
