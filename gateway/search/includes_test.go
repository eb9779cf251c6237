package search

import (
	"net/url"
	"slices"
	"testing"
)

// TestIncludesAgreeWithParse: Includes and RevIncludes (what the
// CapabilityStatement advertises) list exactly the _include and
// _revinclude values a search of each type accepts.
func TestIncludesAgreeWithParse(t *testing.T) {
	var all []string // every Source:param of a reference parameter
	for _, src := range r4Types {
		for _, p := range Params(src) {
			if p.Type == TypeReference {
				all = append(all, src+":"+p.Name)
			}
		}
	}
	if len(all) < 100 {
		t.Fatalf("only %d reference parameters", len(all))
	}
	for _, typ := range r4Types {
		inc, rev := Includes(typ), RevIncludes(typ)
		for _, v := range all {
			_, err := Parse(typ, url.Values{"_include": {v}}, false)
			if ok := err == nil; ok != slices.Contains(inc, v) {
				t.Errorf("%s?_include=%s: accepted %v, listed in Includes %v", typ, v, ok, !ok)
			}
			_, err = Parse(typ, url.Values{"_revinclude": {v}}, false)
			if ok := err == nil; ok != slices.Contains(rev, v) {
				t.Errorf("%s?_revinclude=%s: accepted %v, listed in RevIncludes %v", typ, v, ok, !ok)
			}
		}
	}
	for _, want := range []string{"Observation:subject", "Observation:patient", "Encounter:patient", "Claim:patient", "Provenance:target"} {
		if !slices.Contains(RevIncludes("Patient"), want) {
			t.Errorf("RevIncludes(Patient) lacks %s", want)
		}
	}
	if slices.Contains(RevIncludes("Encounter"), "Encounter:patient") {
		t.Error("RevIncludes(Encounter) lists Encounter:patient, which points to a Patient")
	}
}
