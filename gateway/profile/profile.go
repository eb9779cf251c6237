// Package profile holds the gateway's own profiles
// (mapping.Canonical/StructureDefinition/kg-*), which add to the R4 base
// for the resources the gateway maps, with the ValueSets they bind and the
// extensions the output carries. A resource that claims a kg-* profile in
// meta.profile must satisfy it: receivers of mapped data rely on these
// rules. The engine applies them on every write and in $validate.
//
// One source of truth: the profiles are stated once, as differential
// elements (table.go). Their StructureDefinitions are derived from that
// table over HL7's R4 definitions (a differential and a complete
// snapshot), and the checks interpret those StructureDefinitions' snapshots
// (validate.go). So the rules the gateway enforces are exactly the
// StructureDefinitions it publishes. The same interpreter checks the R4
// vital-signs profiles the mapped vital signs claim, from HL7's own
// snapshots (r4base.json.gz, extracted by internal/gen).
package profile

import (
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/outcome"
	"github.com/ketamine-gateway/ketamine-gateway/mapping"
)

// Prefix is the canonical URL prefix of the gateway's profiles.
const Prefix = mapping.Canonical + "/StructureDefinition/"

// Set is the gateway's profiles, extensions and ValueSets, compiled for
// checking, and the R4 vital-signs profiles. It is immutable and safe for
// concurrent use; the StructureDefinitions and ValueSets it returns are
// shared and must not be modified.
type Set struct {
	lib        *library
	profiles   []*StructureDefinition
	extensions []*StructureDefinition
	valueSets  []*ValueSet
	// checkers are the profiles resources are checked against, by url:
	// the kg-* profiles and the R4 vital-signs profiles.
	checkers map[string]*checker
}

// New returns the Set: the StructureDefinitions derived from the table,
// their checks compiled. It is built once per process, on first use (it
// decodes the embedded R4 base, about 1 MB of JSON), like the R4
// definitions of package schemas/r4. Returns an error when the table does
// not fit the R4 base (an element R4 lacks, a looser cardinality, a
// constraint outside the FHIRPath subset): a programming error the
// package's tests catch.
func New() (*Set, error) { return built() }

// built builds the Set once.
var built = sync.OnceValues(build)

func build() (*Set, error) {
	lib, err := loadLibrary()
	if err != nil {
		return nil, err
	}
	s := &Set{lib: lib, valueSets: valueSets(), checkers: map[string]*checker{}}
	for _, p := range Profiles() {
		sd, err := buildProfile(lib, p)
		if err != nil {
			return nil, err
		}
		s.profiles = append(s.profiles, sd)
	}
	for _, x := range extensionDefs() {
		sd, err := buildExtension(lib, x)
		if err != nil {
			return nil, err
		}
		s.extensions = append(s.extensions, sd)
	}
	vsets := map[string]*ValueSet{}
	for _, vs := range lib.valueSets {
		vsets[vs.URL] = vs
	}
	for _, vs := range s.valueSets {
		vsets[vs.URL] = vs
	}
	check := append([]*StructureDefinition(nil), s.profiles...)
	for _, sd := range lib.sds {
		if sd.Derivation == "constraint" && sd.Kind == "resource" {
			check = append(check, sd)
		}
	}
	for _, sd := range check {
		c, err := compile(lib, sd, vsets)
		if err != nil {
			return nil, err
		}
		s.checkers[sd.URL] = c
	}
	return s, nil
}

// MustNew is New for callers that cannot go on without the profiles; the
// embedded definitions are tested, so it panics only on a broken build.
func MustNew() *Set {
	s, err := New()
	if err != nil {
		panic(err)
	}
	return s
}

// Profiles returns the StructureDefinitions of the kg-* profiles.
func (s *Set) Profiles() []*StructureDefinition { return s.profiles }

// Extensions returns the StructureDefinitions of the gateway's extensions.
func (s *Set) Extensions() []*StructureDefinition { return s.extensions }

// ValueSets returns the gateway's ValueSets.
func (s *Set) ValueSets() []*ValueSet { return s.valueSets }

// Source names where the R4 base definitions come from.
func (s *Set) Source() string { return s.lib.source }

// Resolve finds a profile resources can be checked against: one of the
// kg-* profiles or an R4 vital-signs profile, by canonical url (with an
// optional |version, which must be the profile's). It returns the resource
// type the profile constrains; ok is false for a profile the gateway does
// not know.
func (s *Set) Resolve(url string) (typ string, ok bool) {
	u, version, versioned := strings.Cut(url, "|")
	c := s.checkers[u]
	if c == nil || versioned && version != c.sd.Version {
		return "", false
	}
	return c.sd.Type, true
}

// SupportedProfiles lists, for a resource type, the urls of the profiles
// its resources can be checked against (kg-* first).
func (s *Set) SupportedProfiles(typ string) []string {
	var kg, other []string
	for u, c := range s.checkers {
		if c.sd.Type != typ {
			continue
		}
		if strings.HasPrefix(u, Prefix) {
			kg = append(kg, u)
		} else {
			other = append(other, u)
		}
	}
	slices.Sort(kg)
	slices.Sort(other)
	return append(kg, other...)
}

// Check applies the gateway profiles a resource claims (the check on
// write): errors only. expr is the FHIRPath of the resource
// ("Observation" or "Bundle.entry[3].resource"). A claimed kg-* profile
// that does not exist is an error; other profiles are not checked here.
func (s *Set) Check(doc map[string]any, expr string) []outcome.Issue {
	var out []outcome.Issue
	for _, url := range claimed(doc) {
		u := canonical(url)
		if !strings.HasPrefix(u, Prefix) {
			continue
		}
		c := s.checkers[u]
		if c == nil {
			out = append(out, unknown(expr))
			continue
		}
		if typ, _ := doc["resourceType"].(string); c.sd.Type != typ {
			out = append(out, typeMismatch(expr, u, c.sd.Type, typ))
			continue
		}
		out = append(out, c.check(doc, expr, false)...)
	}
	return out
}

// typeMismatch is the issue of a profile u, of resources of typ, that a
// resource of another type (got) claims or is checked against: one issue,
// not the profile's rules applied to elements the resource does not have
// (a conformance review).
func typeMismatch(expr, u, typ, got string) outcome.Issue {
	return outcome.Issue{Severity: "error", Code: "invalid", Rule: "profile.type-mismatch", Expression: expr,
		Message: fmt.Sprintf("the profile %s constrains %s, not %s", u, typ, got)}
}

// Validate is the check of $validate: the profiles doc claims that the
// gateway knows (kg-* and the R4 vital-signs profiles) and the requested
// ones (urls Resolve accepts), errors and warnings; a claimed profile the
// gateway does not know gets an information issue saying it was not
// checked. A requested profile of another resource type is an error.
func (s *Set) Validate(doc map[string]any, expr string, requested ...string) []outcome.Issue {
	var out []outcome.Issue
	typ, _ := doc["resourceType"].(string)
	seen := map[string]bool{}
	for _, url := range claimed(doc) {
		u := canonical(url)
		c := s.checkers[u]
		switch {
		case seen[u]:
		case c != nil && c.sd.Type != typ:
			out = append(out, typeMismatch(expr, u, c.sd.Type, typ))
		case c != nil:
			out = append(out, c.check(doc, expr, true)...)
		case strings.HasPrefix(u, Prefix):
			out = append(out, unknown(expr))
		default:
			out = append(out, outcome.Issue{Severity: "information", Code: "informational", Rule: "profile.not-checked",
				Expression: expr + ".meta.profile", Message: "the resource claims a profile the gateway does not know; it was not checked against it"})
		}
		seen[u] = true
	}
	for _, url := range requested {
		u := canonical(url)
		c := s.checkers[u]
		switch {
		case c == nil || seen[u]:
		case c.sd.Type != typ:
			out = append(out, typeMismatch(expr, u, c.sd.Type, typ))
		default:
			out = append(out, c.check(doc, expr, true)...)
		}
		seen[u] = true
	}
	return dedupe(out)
}

// claimed lists the profiles in doc's meta.profile.
func claimed(doc map[string]any) []string {
	meta, _ := doc["meta"].(map[string]any)
	var out []string
	for _, p := range asList(meta["profile"]) {
		if s, ok := p.(string); ok {
			out = append(out, s)
		}
	}
	return out
}

func unknown(expr string) outcome.Issue {
	return outcome.Issue{Severity: "error", Code: "not-supported", Rule: "profile.unknown", Expression: expr + ".meta.profile",
		Message: "the resource claims a gateway profile that does not exist"}
}

// dedupe drops an issue whose rule and path an earlier one has (a rule of
// a profile and of the profile it derives from, both claimed).
func dedupe(in []outcome.Issue) []outcome.Issue {
	out := in[:0]
	for _, i := range in {
		if !slices.ContainsFunc(out, func(x outcome.Issue) bool { return x.Rule == i.Rule && x.Expression == i.Expression }) {
			out = append(out, i)
		}
	}
	return out
}

// Error wraps profile issues as an Unprocessable error (the resource is
// valid FHIR but breaks a profile it claims); nil without errors.
func Error(issues []outcome.Issue) error {
	if !slices.ContainsFunc(issues, func(i outcome.Issue) bool { return i.Severity == "error" || i.Severity == "" }) {
		return nil
	}
	return &outcome.Error{Kind: outcome.Unprocessable, Issues: issues}
}
