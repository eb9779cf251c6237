package mapping_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/ketamine-gateway/ketamine-gateway/mapping"
)

// TestPatientDeliveredCriteria: the Patient the EHRs receive is a
// conditional create on the clinic identifier OR the hospital's MRN (when
// the record carries one with a system), so a hospital that holds the
// patient under its MRN gets no second Patient (DECISIONS.md 7); the MRN's
// characters that mean something in a token or a query string are escaped.
// The gateway's own store keeps matching the clinic identifier alone
// (Entry.IfNoneExist).
func TestPatientDeliveredCriteria(t *testing.T) {
	const clinic = "identifier=" + mapping.DefaultIdentifierBase + "/serenity-clinic-emr/patient|PT-1"
	for _, tc := range []struct {
		name, mrn string
		want      string
	}{
		{"no MRN", ``, clinic},
		{"MRN without a system", `{"value":"M-1","assigner":"H"}`, clinic},
		{"MRN", `{"value":"M-1","system":"https://hosp.example/mrn","assigner":"H"}`,
			clinic + ",https://hosp.example/mrn|M-1"},
		{"MRN with token and query characters", `{"value":"a,b|c$d\\e f&g+h%i;j=k#l\u00e9","system":"https://hosp.example/mrn","assigner":"H"}`,
			clinic + `,https://hosp.example/mrn|a%5C,b%5C|c%5C$d%5C%5Ce%20f%26g%2Bh%25i%3Bj%3Dk%23l%C3%A9`},
		{"system with a comma", `{"value":"M-1","system":"https://hosp.example/a,b","assigner":"H"}`,
			clinic + `,https://hosp.example/a%5C,b|M-1`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			patient := `{"id":"PT-1"}`
			if tc.mrn != "" {
				patient = `{"id":"PT-1","mrn":` + tc.mrn + `}`
			}
			doc := `{"source":{"system":"serenity-clinic-emr","recordId":"V-1","version":"1"},"patient":` + patient + `,
				"sessionId":"S-1","timepoint":"pre-dose","recordedAt":"2026-03-10T09:15:00-05:00","heartRate":72}`
			rec, err := mapping.Decode(mapping.KindVitals, []byte(doc))
			if err != nil {
				t.Fatal(err)
			}
			res, err := mapping.Map(rec, mapping.Options{})
			if err != nil {
				t.Fatalf("Map: %v", err)
			}
			if got := res.Entries[0].IfNoneExist; got != clinic {
				t.Errorf("Entries[0].IfNoneExist (the gateway's own match) = %q, want %q", got, clinic)
			}
			raw, err := res.TransactionJSON()
			if err != nil {
				t.Fatal(err)
			}
			var b struct {
				Entry []struct {
					Request struct{ IfNoneExist string } `json:"request"`
				} `json:"entry"`
			}
			if err := json.Unmarshal(raw, &b); err != nil {
				t.Fatal(err)
			}
			if got := b.Entry[0].Request.IfNoneExist; got != tc.want {
				t.Errorf("delivered Patient ifNoneExist = %q, want %q", got, tc.want)
			}
			for i, e := range b.Entry[1:] {
				if strings.Contains(e.Request.IfNoneExist, ",") {
					t.Errorf("entry %d ifNoneExist = %q: only the Patient's matches two identifiers", i+1, e.Request.IfNoneExist)
				}
			}
		})
	}
}
