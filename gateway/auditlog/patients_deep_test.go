package auditlog

import (
	"slices"
	"testing"
)

// TestPatientsInFollowsPatientParam: a resource's patients are those its
// type's patient parameter names (R4's), also where that is not a
// top-level subject or patient; a Patient it names otherwise (informant,
// asserter) is not one of them.
func TestPatientsInFollowsPatientParam(t *testing.T) {
	for _, tc := range []struct {
		typ, body string
		want      []string
	}{
		{"MedicationStatement", `{"resourceType":"MedicationStatement","subject":{"reference":"Patient/c"},"informationSource":{"reference":"Patient/m"}}`, []string{"Patient/c"}},
		{"AllergyIntolerance", `{"resourceType":"AllergyIntolerance","patient":{"reference":"Patient/c"},"asserter":{"reference":"Patient/m"}}`, []string{"Patient/c"}},
		{"Task", `{"resourceType":"Task","for":{"reference":"Patient/c"},"requester":{"reference":"Patient/m"}}`, []string{"Patient/c"}},
		{"Coverage", `{"resourceType":"Coverage","beneficiary":{"reference":"Patient/c"},"subscriber":{"reference":"Patient/m"}}`, []string{"Patient/c"}},
		{"Appointment", `{"resourceType":"Appointment","participant":[{"actor":{"reference":"Patient/c"}},{"actor":{"reference":"Practitioner/d"}}]}`, []string{"Patient/c"}},
		{"Schedule", `{"resourceType":"Schedule","actor":[{"reference":"Patient/c"}]}`, []string{"Patient/c"}},
	} {
		t.Run(tc.typ, func(t *testing.T) {
			if got := PatientsIn(tc.typ, "x", []byte(tc.body)); !slices.Equal(got, tc.want) {
				t.Errorf("PatientsIn(%s) = %v, want %v", tc.typ, got, tc.want)
			}
		})
	}
}
