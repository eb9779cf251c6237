package operator

import (
	"reflect"
	"testing"
)

// TestCorrectionIn: a stored Provenance is a mapping replay's correction
// when it names the mapping version as its agent and the version it
// corrected as a revision entity; any other (a receipt, most of what a
// trace finds) is passed over without being decoded, so that even one
// that would not decode is no error.
func TestCorrectionIn(t *testing.T) {
	const replayed = `{"resourceType":"Provenance","extension":[{"url":"https://ketamine-gateway.org/fhir/StructureDefinition/trace-id","valueString":"t1"}],` +
		`"agent":[{"who":{"identifier":{"system":"https://ketamine-gateway.org/fhir/sid/mapping-version","value":"2.3.1"}}}],` +
		`"entity":[{"role":"revision","what":{"identifier":{"system":"https://ketamine-gateway.org/fhir/sid/mapping-version","value":"2.3.0"}}}]}`
	for _, tc := range []struct {
		name, body string
		trace      string
		want       *Correction
		err        bool
	}{
		{"a replay's correction", replayed, "t1", &Correction{MappingVersion: "2.3.1", PreviousMappingVersion: "2.3.0"}, false},
		{"a receipt", `{"resourceType":"Provenance","entity":[{"role":"source"}]}`, "", nil, false},
		{"a receipt that would not decode", `{"resourceType":"Provenance",`, "", nil, false},
		{"a revision that does not decode", `{"entity":[{"role":"revision"`, "", nil, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			trace, c, err := correctionIn([]byte(tc.body))
			if trace != tc.trace || !reflect.DeepEqual(c, tc.want) || (err != nil) != tc.err {
				t.Errorf("correctionIn(%s) = %q, %+v, %v; want %q, %+v, error %t", tc.body, trace, c, err, tc.trace, tc.want, tc.err)
			}
		})
	}
}
