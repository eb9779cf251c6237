package auditlog

import (
	"slices"
	"testing"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/fhirwire"
)

func TestPatientsIn(t *testing.T) {
	tests := []struct {
		typ, body string
		want      []string
	}{
		{"Patient", `{}`, []string{"Patient/p0"}},
		{"Observation", `{"subject":{"reference":"Patient/p1/_history/2"}}`, []string{"Patient/p1"}},
		{"AdverseEvent", `{"subject":{"reference":"Patient/p2"},"code":{"text":"x"}}`, []string{"Patient/p2"}},
		{"Immunization", `{"patient":{"reference":"Patient/p3"}}`, []string{"Patient/p3"}},
		{"Observation", `{"subject":{"reference":"Group/g1"}}`, nil},
		{"Observation", `{"subject":[{"reference":"Patient/p4"}]}`, nil},
		{"Observation", `not json`, nil},
	}
	for _, tc := range tests {
		if got := PatientsIn(tc.typ, "p0", []byte(tc.body)); !slices.Equal(got, tc.want) {
			t.Errorf("PatientsIn(%s, %s) = %v, want %v", tc.typ, tc.body, got, tc.want)
		}
		doc, _ := fhirwire.Decode([]byte(tc.body))
		if got := PatientsOf(tc.typ, "p0", doc); !slices.Equal(got, tc.want) {
			t.Errorf("PatientsOf(%s, %s) = %v, want %v", tc.typ, tc.body, got, tc.want)
		}
	}
}
