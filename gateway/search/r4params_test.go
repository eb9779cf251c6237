package search_test

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/search"
)

// TestR4Definition: R4Definition knows the parameters R4 (4.0.1) defines
// and only those: none that R4B or R5 added (DetectedIssue's status is
// R5's), so the gateway never calls one "a parameter FHIR R4 defines".
func TestR4Definition(t *testing.T) {
	const hl7 = "http://hl7.org/fhir/SearchParameter/"
	for _, tc := range []struct{ typ, code, want string }{
		{"Observation", "code", hl7 + "clinical-code"},
		{"Condition", "clinical-status", hl7 + "Condition-clinical-status"},
		{"DetectedIssue", "patient", hl7 + "clinical-patient"},
		{"DetectedIssue", "author", hl7 + "DetectedIssue-author"},
		{"Patient", "_id", hl7 + "Resource-id"},
		{"Patient", "_text", hl7 + "DomainResource-text"},
		{"Bundle", "_text", ""}, // Bundle is no DomainResource
		// Added after R4 (R5, or R4B): not R4's.
		{"DetectedIssue", "status", ""},
		{"DeviceDefinition", "classification", ""},
		{"ServiceRequest", "order-detail", ""},
		{"MedicationAdministration", "part-of", ""},
		{"AdverseEvent", "identifier", ""},
	} {
		if got := search.R4Definition(tc.typ, tc.code); got != tc.want {
			t.Errorf("R4Definition(%s, %s) = %q, want %q", tc.typ, tc.code, got, tc.want)
		}
	}
}

// r4SearchParametersEnv names the file TestR4ParamsFile reads, if set.
const r4SearchParametersEnv = "GATEWAY_TEST_R4_SEARCH_PARAMETERS"

// r4SearchParameter is what the tests read of one of R4's SearchParameters.
type r4SearchParameter struct {
	ResourceType, ID, Version, Code, Type, Expression string
	Base                                              []string
}

// r4SearchParameters reads HL7's search-parameters.json of FHIR R4 4.0.1
// (the file $GATEWAY_TEST_R4_SEARCH_PARAMETERS names, else
// ../shared/testdata/fhir-r4/search-parameters.json), or skips: it is 2 MB
// and not kept in the repository. It returns the file's bytes too.
func r4SearchParameters(t *testing.T) ([]byte, []r4SearchParameter) {
	t.Helper()
	path := os.Getenv(r4SearchParametersEnv)
	if path == "" {
		path = "../../../shared/testdata/fhir-r4/search-parameters.json"
	}
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		t.Skipf("%s is absent: set %s to HL7's FHIR R4 4.0.1 search-parameters.json (hl7.org/fhir/R4/search-parameters.json) to check r4params.txt and r4patient.txt against it",
			path, r4SearchParametersEnv)
	}
	if err != nil {
		t.Fatal(err)
	}
	var bundle struct {
		ResourceType, ID string
		Entry            []struct{ Resource r4SearchParameter }
	}
	if err := json.Unmarshal(b, &bundle); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	if bundle.ResourceType != "Bundle" || bundle.ID != "searchParams" || len(bundle.Entry) == 0 {
		t.Fatalf("%s is not R4's search-parameters.json (Bundle searchParams)", path)
	}
	sps := make([]r4SearchParameter, 0, len(bundle.Entry))
	for _, e := range bundle.Entry {
		sp := e.Resource
		if sp.ResourceType != "SearchParameter" || sp.Version != "4.0.1" {
			t.Fatalf("%s holds %s %s of version %q: not R4 4.0.1's search-parameters.json", path, sp.ResourceType, sp.ID, sp.Version)
		}
		sps = append(sps, sp)
	}
	return b, sps
}

// r4ParamsHeader is the header of r4params.txt, of the source's number of
// SearchParameters and sha256.
const r4ParamsHeader = `# The search parameters HL7 FHIR R4 (4.0.1) defines, from HL7's search-parameters.json of R4 (published at
# hl7.org/fhir/R4/search-parameters.json; HL7's definitions are CC0). The copy read (as vendored at
# github.com/medizininformatik-initiative/torch, search-parameters.json, commit cd2b1ff): Bundle "searchParams",
# meta.lastUpdated 2019-11-01T09:29:23.356+11:00, %d SearchParameters all of version 4.0.1, sha256
# %s.
# One line per base: base type, code, SearchParameter id (http://hl7.org/fhir/SearchParameter/<id>).
# Resource and DomainResource rows apply to every type. Checked against that file, and rewritten from it, by
# ` + r4SearchParametersEnv + `=<the file> go test ./gateway/search -run TestR4ParamsFile [-update]
`

// TestR4ParamsFile: r4params.txt is exactly R4's search-parameters.json,
// one line per (base, code), nothing a later FHIR version added; -update
// rewrites it from the file. And r4patient.txt's patient parameters are
// R4's: their ids, and each type's part of their expressions.
func TestR4ParamsFile(t *testing.T) {
	src, sps := r4SearchParameters(t)
	var rows []string
	for _, sp := range sps {
		for _, base := range sp.Base {
			rows = append(rows, base+" "+sp.Code+" "+sp.ID)
		}
	}
	slices.Sort(rows)
	rows = slices.Compact(rows)
	sum := sha256.Sum256(src)
	want := fmt.Sprintf(r4ParamsHeader, len(sps), hex.EncodeToString(sum[:])) + strings.Join(rows, "\n") + "\n"
	if *update {
		if err := os.WriteFile("r4params.txt", []byte(want), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := os.ReadFile("r4params.txt")
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != want {
		var have []string
		for line := range strings.Lines(string(got)) {
			if !strings.HasPrefix(line, "#") {
				have = append(have, strings.TrimSuffix(line, "\n"))
			}
		}
		for _, r := range have {
			if !slices.Contains(rows, r) {
				t.Errorf("r4params.txt has %q, which R4 does not define", r)
			}
		}
		for _, r := range rows {
			if !slices.Contains(have, r) {
				t.Errorf("r4params.txt lacks R4's %q", r)
			}
		}
		t.Errorf("r4params.txt differs from R4's search-parameters.json; rewrite it with -update and review the diff")
	}

	// r4patient.txt: "patient <type> <id> <the type's part of the expression>".
	byID := map[string]r4SearchParameter{}
	r4Patient := map[string]string{} // type -> id of R4's patient parameter
	for _, sp := range sps {
		byID[sp.ID] = sp
		if sp.Code == "patient" {
			for _, b := range sp.Base {
				r4Patient[b] = sp.ID
			}
		}
	}
	pt, err := os.ReadFile("r4patient.txt")
	if err != nil {
		t.Fatal(err)
	}
	listed := map[string]bool{}
	for line := range strings.Lines(string(pt)) {
		f := strings.Fields(line)
		if len(f) < 4 || f[0] != "patient" {
			continue
		}
		rt, id, expr := f[1], f[2], strings.Join(f[3:], " ")
		listed[rt] = true
		if r4Patient[rt] != id {
			t.Errorf("r4patient.txt: %s's patient parameter is %s, R4's is %q", rt, id, r4Patient[rt])
			continue
		}
		var parts []string
		for part := range strings.SplitSeq(byID[id].Expression, "|") {
			part = strings.TrimSpace(part)
			if strings.HasPrefix(part, ".") {
				// R4's Account-patient is ".subject.where(resolve() is
				// Patient)", its type left out.
				part = rt + part
			}
			if strings.HasPrefix(part, rt+".") {
				parts = append(parts, part)
			}
		}
		if r4 := strings.Join(parts, " | "); r4 != expr {
			t.Errorf("r4patient.txt: %s patient is %q, R4's %s is %q", rt, expr, id, r4)
		}
	}
	for rt := range r4Patient {
		if !listed[rt] {
			t.Errorf("r4patient.txt lacks R4's patient parameter of %s (%s)", rt, r4Patient[rt])
		}
	}

	// The parameters the gateway implements as R4's have R4's type.
	for _, typ := range search.Types() {
		for _, p := range search.Params(typ) {
			id, ok := strings.CutPrefix(p.Definition, "http://hl7.org/fhir/SearchParameter/")
			if !ok {
				continue
			}
			if sp := byID[id]; sp.Code != p.Name || sp.Type != string(p.Type) {
				t.Errorf("%s %s (%s) is cited as R4's %s, which is %q of type %q", typ, p.Name, p.Type, id, sp.Code, sp.Type)
			}
		}
	}
}
