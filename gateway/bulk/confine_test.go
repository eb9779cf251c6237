package bulk

import "testing"

// TestNamesOutsider: a Group export of Patient/a leaves out a resource
// that names any other Patient, however the reference is written; the
// quick scan and the decoding agree.
func TestNamesOutsider(t *testing.T) {
	c := newConfiner(nil, []string{"a", "a2"})
	for _, tc := range []struct {
		name, body string
		want       bool
	}{
		{"member", `{"resourceType":"Observation","subject":{"reference":"Patient/a"}}`, false},
		{"members, versioned", `{"resourceType":"Observation","subject":{"reference":"Patient/a/_history/3"},"focus":[{"reference":"Patient/a2"}]}`, false},
		{"the word in a text", `{"resourceType":"Observation","subject":{"reference":"Patient/a"},"note":[{"text":"Patient b called"}]}`, false},
		{"a prefix of a member", `{"resourceType":"Observation","subject":{"reference":"Patient/a"},"focus":[{"reference":"Patient/a22"}]}`, true},
		{"another", `{"resourceType":"Observation","subject":{"reference":"Patient/a"},"focus":[{"reference":"Patient/b"}]}`, true},
		{"escaped letter", `{"resourceType":"Observation","subject":{"reference":"Patient/a"},"focus":[{"reference":"\u0050atient/b"}]}`, true},
		{"escaped key", `{"resourceType":"Observation","focus":[{"refer\u0065nce":"Patient/b"}]}`, true},
		{"escaped slash", `{"resourceType":"Observation","focus":[{"reference":"Patient\/b"}]}`, true},
		{"spaced", `{"resourceType":"Observation","focus":[{"reference": "Patient/b"}]}`, true},
		{"another server's", `{"resourceType":"Observation","focus":[{"reference":"https://other.example/fhir/Patient/a"}]}`, true},
		{"by identifier", `{"resourceType":"Observation","focus":[{"type":"Patient","identifier":{"value":"1"}}]}`, true},
		{"by identifier, canonical type", `{"resourceType":"Observation","focus":[{"type":"http://hl7.org/fhir/StructureDefinition/Patient","identifier":{"value":"1"}}]}`, true},
		{"by display", `{"resourceType":"Observation","focus":[{"type":"Patient","display":"b"}]}`, true},
		{"an address", `{"resourceType":"Observation","subject":{"reference":"Patient/a"},"x":{"type":"postal","text":"Patient street"}}`, false},
		{"contained", `{"resourceType":"Observation","contained":[{"resourceType":"List","id":"l","subject":{"reference":"Patient/b"}}]}`, true},
		{"not JSON, a Patient in it", `{"resourceType":"Observation","note":"Patient`, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := c.namesOutsider([]byte(tc.body)); got != tc.want {
				t.Errorf("namesOutsider(%s) = %v, want %v", tc.body, got, tc.want)
			}
		})
	}
}
