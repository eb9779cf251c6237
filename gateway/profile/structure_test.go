package profile

import (
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/ketamine-gateway/ketamine-gateway/mapping"
	"github.com/ketamine-gateway/ketamine-gateway/schemas/r4"
)

// TestStructureDefinitions checks each published StructureDefinition's
// structure: a valid R4 resource; a complete snapshot (every element of
// its base's, every differential element, each with cardinality, type and
// definition); element ids and paths consistent (path is the id without
// slice names, a parent before its children, a slice after its sliced
// element and named by its id); each element's base an R4 element; the
// base chain resolving to Resource or Element.
func TestStructureDefinitions(t *testing.T) {
	s, err := New()
	if err != nil {
		t.Fatal(err)
	}
	v := r4.New(r4.Options{})
	for _, sd := range append(s.Profiles(), s.Extensions()...) {
		t.Run(sd.ID, func(t *testing.T) {
			raw, err := json.Marshal(sd)
			if err != nil {
				t.Fatal(err)
			}
			if res := v.ValidateAs(raw, "StructureDefinition"); !res.Valid() {
				t.Errorf("not valid R4: %+v", res.Issues)
			}
			if sd.URL != Prefix+sd.ID || sd.Version != mapping.Version || sd.Derivation != "constraint" {
				t.Errorf("header: url %s, version %s, derivation %s", sd.URL, sd.Version, sd.Derivation)
			}
			// The base chain.
			chain := []string{sd.URL}
			for base := sd.BaseDefinition; base != ""; {
				b := s.lib.sds[base]
				if b == nil {
					t.Fatalf("base %s of %s does not resolve", base, chain[len(chain)-1])
				}
				chain = append(chain, base)
				base = b.BaseDefinition
			}
			if last := chain[len(chain)-1]; last != r4Prefix+"Resource" && last != r4Prefix+"Element" {
				t.Errorf("base chain %v ends at %s", chain, last)
			}
			checkSnapshot(t, s.lib, sd)
		})
	}
}

func checkSnapshot(t *testing.T, lib *library, sd *StructureDefinition) {
	t.Helper()
	snap := sd.Snapshot.Element
	ids := map[string]int{}
	for i, e := range snap {
		if _, dup := ids[e.ID]; dup {
			t.Errorf("element %s twice", e.ID)
		}
		ids[e.ID] = i
		if e.Path != pathOf(e.ID) {
			t.Errorf("element %s has path %s", e.ID, e.Path)
		}
		if e.Min == nil || e.Max == "" || e.Definition == "" || i > 0 && len(e.Type) == 0 && e.ContentReference == "" {
			t.Errorf("element %s lacks cardinality, definition or type", e.ID)
		}
		if m := maxInt(e.Max); m >= 0 && e.min() > m {
			t.Errorf("element %s: min %d above max %s", e.ID, e.min(), e.Max)
		}
		if e.Base == nil || lib.coreOf(e) == nil {
			t.Errorf("element %s: base %v is not an R4 element", e.ID, e.Base)
		}
		parent, name, slice := splitID(e.ID)
		switch {
		case i == 0:
			if e.ID != sd.Type {
				t.Errorf("the snapshot starts with %s, not %s", e.ID, sd.Type)
			}
		case slice != "":
			si, ok := ids[parent+"."+name]
			if !ok || snap[si].Slicing == nil || e.SliceName != slice {
				t.Errorf("slice %s: sliced element missing, unsliced or sliceName %q", e.ID, e.SliceName)
			}
		default:
			if _, ok := ids[parent]; !ok {
				t.Errorf("element %s before its parent", e.ID)
			}
		}
	}
	for _, e := range lib.sds[sd.BaseDefinition].Snapshot.Element {
		if _, ok := ids[e.ID]; !ok {
			t.Errorf("the base's element %s is missing", e.ID)
		}
	}
	for _, d := range sd.Differential.Element {
		if _, ok := ids[d.ID]; !ok || d.Path != pathOf(d.ID) {
			t.Errorf("differential element %s (path %s) is not in the snapshot", d.ID, d.Path)
		}
	}
}

// TestPublishedIsEnforced: the checks are compiled from the very
// StructureDefinitions the gateway publishes, and the published JSON
// carries everything they use: read back and compiled, it gives the same
// checks. A change to the table changes both or neither.
func TestPublishedIsEnforced(t *testing.T) {
	s, err := New()
	if err != nil {
		t.Fatal(err)
	}
	vsets := map[string]*ValueSet{}
	for _, vs := range append(slices.Collect(maps.Values(s.lib.valueSets)), s.valueSets...) {
		vsets[vs.URL] = vs
	}
	for _, sd := range s.Profiles() {
		c := s.checkers[sd.URL]
		if c == nil || c.sd != sd {
			t.Fatalf("%s: not checked from the published StructureDefinition", sd.URL)
		}
		raw, err := json.Marshal(sd)
		if err != nil {
			t.Fatal(err)
		}
		var back StructureDefinition
		if err := json.Unmarshal(raw, &back); err != nil {
			t.Fatal(err)
		}
		again, err := compile(s.lib, &back, vsets)
		if err != nil {
			t.Fatal(err)
		}
		if got, want := fingerprint(again.root), fingerprint(c.root); got != want {
			t.Errorf("%s: the published JSON compiles to other checks:\n%s\nwant\n%s", sd.URL, got, want)
		}
		if n := strings.Count(fingerprint(c.root), "\n"); n < 10 {
			t.Errorf("%s: only %d elements with checks", sd.URL, n)
		}
	}
}

// fingerprint lists the checks of the live nodes below n.
func fingerprint(n *node) string {
	var b strings.Builder
	var walk func(n *node)
	walk = func(n *node) {
		if !n.live {
			return
		}
		fmt.Fprintf(&b, "%s rule=%s min=%v/%d max=%v/%d types=%v fixed=%s pattern=%s", n.def.ID, n.rule,
			n.checkMin, n.min, n.checkMax, n.max, n.types, jsonText(n.fixed), jsonText(n.pattern))
		for _, vs := range []*ValueSet{n.required, n.extended} {
			if vs != nil {
				b.WriteString(" vs=" + vs.URL)
			}
		}
		for _, c := range n.constraints {
			b.WriteString(" " + c.c.Key + "=" + c.expr.String())
		}
		for _, d := range n.discriminators {
			fmt.Fprintf(&b, " disc=%s:%s:%s", d.kind, d.path, jsonText(d.want))
		}
		b.WriteString("\n")
		for _, c := range append(slices.Clone(n.children), n.slices...) {
			walk(c)
		}
	}
	walk(n)
	return b.String()
}

// TestRules: every rule the profiles name is documented in Rules(), and
// every kg rule there is named by some profile.
func TestRules(t *testing.T) {
	s, err := New()
	if err != nil {
		t.Fatal(err)
	}
	used := map[string]bool{}
	for _, sd := range s.Profiles() {
		for _, e := range sd.Snapshot.Element {
			if id, msg := e.rule(); id != "" {
				used[id] = true
				if msg == "" {
					t.Errorf("%s %s: rule %s has no text", sd.ID, e.ID, id)
				}
			}
			for _, c := range e.Constraint {
				if strings.HasPrefix(c.Key, "profile.") {
					used[c.Key] = true
				}
			}
		}
	}
	generic := []string{"profile.unknown", "profile.type-mismatch", "profile.not-checked", "profile.cardinality", "profile.slice",
		"profile.fixed-value", "profile.pattern", "profile.type", "profile.binding", "profile.binding-extensible"}
	for _, r := range Rules() {
		if !used[r.ID] && !slices.Contains(generic, r.ID) {
			t.Errorf("rule %s is named by no profile", r.ID)
		}
		delete(used, r.ID)
	}
	for id := range used {
		t.Errorf("rule %s is not in Rules()", id)
	}
}

// TestValueSetsCoverTheCodeTable: every code the mappings emit is in one of
// the gateway's ValueSets, or its element is bound to an HL7 value set.
func TestValueSetsCoverTheCodeTable(t *testing.T) {
	vsets := valueSets()
	for _, c := range mapping.Concepts() {
		in := slices.ContainsFunc(vsets, func(vs *ValueSet) bool { return vs.Contains(c.System, c.Code) })
		hl7 := slices.ContainsFunc(hl7Bound, func(p string) bool { return strings.HasPrefix(c.Key, p) })
		if in == hl7 {
			t.Errorf("concept %s (%s|%s): in a gateway ValueSet %v, bound to HL7's %v", c.Key, c.System, c.Code, in, hl7)
		}
	}
	v := r4.New(r4.Options{})
	for _, vs := range vsets {
		raw, _ := json.Marshal(vs)
		if res := v.ValidateAs(raw, "ValueSet"); !res.Valid() || len(vs.Compose.Include) == 0 {
			t.Errorf("ValueSet %s: %+v", vs.ID, res.Issues)
		}
	}
}

// TestExtensionURLs: the extensions published are those the output (and
// the profiles themselves) use.
func TestExtensionURLs(t *testing.T) {
	s, err := New()
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"monitoring-timepoint", "ctcae-grade", "seriousness-criterion", "adverse-event-action-taken",
		"related-session", "medication-lot-number", "weight-based-dose", "trace-id", "receipt-patient", "content-hash", "record-kind", "record-version", "validation-rule"} {
		if !slices.ContainsFunc(s.Extensions(), func(sd *StructureDefinition) bool { return sd.URL == mapping.Canonical+"/StructureDefinition/"+name }) {
			t.Errorf("no extension %s", name)
		}
	}
}

// TestDocsConformance: docs/conformance.md names every profile, extension,
// ValueSet and rule the package publishes.
func TestDocsConformance(t *testing.T) {
	b, err := os.ReadFile("../../docs/conformance.md")
	if err != nil {
		t.Fatal(err)
	}
	doc := string(b)
	s, err := New()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, sd := range append(s.Profiles(), s.Extensions()...) {
		names = append(names, sd.ID)
	}
	for _, vs := range s.ValueSets() {
		names = append(names, vs.ID)
	}
	for _, r := range Rules() {
		names = append(names, r.ID)
	}
	for _, n := range names {
		if !strings.Contains(doc, "`"+n+"`") {
			t.Errorf("docs/conformance.md does not name `%s`", n)
		}
	}
}

// TestValueSetTitles: a ValueSet's title reads as a phrase after the
// publisher's name, its first word lower-cased unless it is an acronym.
func TestValueSetTitles(t *testing.T) {
	titles := map[string]string{}
	for _, vs := range valueSets() {
		titles[vs.ID] = vs.Title
	}
	for _, tc := range []struct{ id, want string }{
		{"kg-cssrs-risk-levels", "Ketamine-therapy gateway C-SSRS screener risk levels"},
		{"kg-survey-panel-codes", "Ketamine-therapy gateway assessment panel codes"},
		{"kg-vital-sign-units", "Ketamine-therapy gateway vital sign units"},
	} {
		if got := titles[tc.id]; got != tc.want {
			t.Errorf("ValueSet %s title = %q, want %q", tc.id, got, tc.want)
		}
	}
	for _, tc := range []struct{ in, want string }{
		{"Assessment panel codes", "assessment panel codes"},
		{"C-SSRS screener risk levels", "C-SSRS screener risk levels"},
		{"PHQ-9 items", "PHQ-9 items"},
		{"LOINC codes", "LOINC codes"},
		{"Drugs", "drugs"},
		{"", ""},
	} {
		if got := phrase(tc.in); got != tc.want {
			t.Errorf("phrase(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}
