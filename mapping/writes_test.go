package mapping_test

import (
	"maps"
	"slices"
	"strings"
	"testing"

	fhir "github.com/samply/golang-fhir-models/fhir-models/fhir"

	"github.com/ketamine-gateway/ketamine-gateway/mapping"
)

// TestWrites: mapping.Writes() (what a destination's CapabilityStatement
// must support: the delivery's capability check) is exactly the resource
// types and interactions of the entries the mapping makes from every
// golden input and shipped example, mapped as a first version and as an
// update, and the kinds of record whose Bundles carry each: a type, an
// interaction or a kind the mapping starts to write without Writes()
// naming it fails here.
func TestWrites(t *testing.T) {
	interaction := map[fhir.HTTPVerb]string{fhir.HTTPVerbPOST: "create", fhir.HTTPVerbPUT: "update", fhir.HTTPVerbDELETE: "delete"}
	got, kinds, flags := map[string]map[string]bool{}, map[string]map[string]bool{}, map[string]map[string]bool{}
	for _, tc := range goldenCases(t) {
		for _, upd := range []bool{false, true} {
			rec, err := mapping.Decode(tc.kind, tc.input)
			if err != nil {
				t.Fatalf("%s: %v", tc.name, err)
			}
			res, err := mapping.Map(rec, mapping.Options{Update: upd})
			if err != nil {
				t.Fatalf("%s (update %v): %v", tc.name, upd, describe(err))
			}
			for _, e := range res.Entries {
				in, ok := interaction[e.Method]
				if !ok {
					t.Fatalf("%s: %s entry with method %v", tc.name, e.ResourceType, e.Method)
				}
				if got[e.ResourceType] == nil {
					got[e.ResourceType], kinds[e.ResourceType], flags[e.ResourceType] = map[string]bool{}, map[string]bool{}, map[string]bool{}
				}
				got[e.ResourceType][in] = true
				switch {
				case e.Method == fhir.HTTPVerbPOST && e.IfNoneExist != "":
					flags[e.ResourceType][mapping.FlagConditionalCreate] = true
				case e.Method == fhir.HTTPVerbPUT && strings.Contains(e.URL, "?"):
					flags[e.ResourceType][mapping.FlagConditionalUpdate] = true
				case e.Method == fhir.HTTPVerbPUT:
					flags[e.ResourceType][mapping.FlagUpdateCreate] = true
				}
				kinds[e.ResourceType][string(tc.kind)] = true
			}
		}
	}
	want, wantKinds, wantFlags := map[string]string{}, map[string]string{}, map[string]string{}
	for _, w := range mapping.Writes() {
		if _, dup := want[w.Type]; dup {
			t.Errorf("Writes() lists %s twice", w.Type)
		}
		if !slices.IsSorted(w.Interactions) || !slices.IsSorted(w.Kinds) {
			t.Errorf("Writes() %s: interactions %v or kinds %v not sorted", w.Type, w.Interactions, w.Kinds)
		}
		want[w.Type] = strings.Join(w.Interactions, ",")
		if !slices.IsSorted(w.Flags) {
			t.Errorf("Writes() %s: flags %v not sorted", w.Type, w.Flags)
		}
		wantFlags[w.Type] = strings.Join(w.Flags, ",")
		for _, k := range w.Kinds {
			wantKinds[w.Type] += string(k) + ","
		}
	}
	for typ, ins := range got {
		if s := strings.Join(slices.Sorted(maps.Keys(ins)), ","); want[typ] != s {
			t.Errorf("the mapping writes %s with %s; Writes() says %q", typ, s, want[typ])
		}
		if s := strings.Join(slices.Sorted(maps.Keys(flags[typ])), ","); wantFlags[typ] != s {
			t.Errorf("the mapping writes %s relying on the capability flags %q; Writes() says %q", typ, s, wantFlags[typ])
		}
		if s := strings.Join(slices.Sorted(maps.Keys(kinds[typ])), ",") + ","; wantKinds[typ] != s {
			t.Errorf("the mapping writes %s in the Bundles of %s; Writes() says %q", typ, s, wantKinds[typ])
		}
	}
	for typ := range want {
		if got[typ] == nil {
			t.Errorf("Writes() names %s, which the mapping never writes", typ)
		}
	}
}
