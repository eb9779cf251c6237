package search_test

import (
	"encoding/json"
	"testing"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/search"
	"github.com/ketamine-gateway/ketamine-gateway/mapping"
)

// TestDeliveredPatientCriteriaParse: the delivered Patient's conditional
// create criteria (the clinic identifier OR the hospital's MRN, mapping's
// DeliverCriteria), parsed as a receiver does (this gateway, when it is
// the EHR), are two token values, the MRN's back as the record gave it
// whatever characters it holds.
func TestDeliveredPatientCriteriaParse(t *testing.T) {
	for _, value := range []string{"MRN-77", `a,b|c$d\e f&g+h%i;j=k#l` + "\u00e9"} {
		mrn, _ := json.Marshal(map[string]string{"value": value, "system": "https://hosp.example/mrn,x", "assigner": "H"})
		doc := `{"source":{"system":"clinic","recordId":"V-1","version":"1"},"patient":{"id":"P-1","mrn":` + string(mrn) + `},
			"sessionId":"S-1","timepoint":"pre-dose","recordedAt":"2026-03-10T09:15:00-05:00","heartRate":72}`
		rec, err := mapping.Decode(mapping.KindVitals, []byte(doc))
		if err != nil {
			t.Fatal(err)
		}
		res, err := mapping.Map(rec, mapping.Options{})
		if err != nil {
			t.Fatal(err)
		}
		criteria := res.Entries[0].DeliverCriteria()
		q, err := search.ParseConditional("Patient", criteria)
		if err != nil {
			t.Fatalf("ParseConditional(%q): %v", criteria, err)
		}
		if len(q.Clauses) != 1 || len(q.Clauses[0].Values) != 2 {
			t.Fatalf("ParseConditional(%q) = %+v, want one clause of two values", criteria, q.Clauses)
		}
		got := q.Clauses[0].Values[1]
		if got.System != "https://hosp.example/mrn,x" || got.Code != value {
			t.Errorf("ParseConditional(%q): MRN %q|%q, want %q|%q", criteria, got.System, got.Code, "https://hosp.example/mrn,x", value)
		}
		if first := q.Clauses[0].Values[0]; first.System != mapping.DefaultIdentifierBase+"/clinic/patient" || first.Code != "P-1" {
			t.Errorf("ParseConditional(%q): clinic identifier %q|%q", criteria, first.System, first.Code)
		}
	}
}
