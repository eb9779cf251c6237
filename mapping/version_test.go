package mapping_test

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/ketamine-gateway/ketamine-gateway/mapping"
)

// mapping.Version "is bumped whenever the output for an unchanged record
// changes" (docs/mapping.md §1). outputsSum records, for the version, the
// SHA-256 of each golden case's input and of its output, and of what the
// mapping can emit beyond the golden cases: the code table
// (mapping.Concepts) and the instruments it accepts and how it scores them
// (mapping.Instruments). TestVersionBumped fails when an input recorded for
// this version now maps to another output, or when the code table or the
// instruments changed, under the same version (go test ./mapping -update
// rewrites the goldens but not this file then); go test ./mapping -update
// records them once the version is bumped (and new cases under the
// current version).
const (
	outputsSum   = "testdata/outputs.sum"
	changelogDoc = "../docs/mapping-changelog.md"
)

// caseSum is a golden case's input and output hashes.
type caseSum struct{ input, output string }

// sums is what outputsSum records: the version, the hashes of the tables
// (by name: "concepts", "instruments") and each case's hashes.
type sums struct {
	version string
	tables  map[string]string
	cases   map[string]caseSum
}

// tableNames are the tables outputsSum records, with what to say of a
// change of each.
var tableNames = map[string]string{
	"concepts":    "the code table (mapping/codes.go: a code, system or display changed, added or removed)",
	"instruments": "the instruments (mapping/instruments.go: an instrument added or removed, its items, ranges, bands or difficulty item)",
}

// parseSums reads outputsSum.
func parseSums(b []byte) (sums, error) {
	s := sums{tables: map[string]string{}, cases: map[string]caseSum{}}
	for n, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		switch {
		case len(f) == 0 || strings.HasPrefix(f[0], "#"):
		case f[0] == "version" && len(f) == 2:
			s.version = f[1]
		case tableNames[f[0]] != "" && len(f) == 2:
			s.tables[f[0]] = f[1]
		case len(f) == 3:
			s.cases[f[0]] = caseSum{f[1], f[2]}
		default:
			return sums{}, fmt.Errorf("%s:%d: want \"version V\", \"concepts|instruments sha256\" or \"case input-sha256 output-sha256\"", outputsSum, n+1)
		}
	}
	return s, nil
}

// formatSums renders outputsSum.
func formatSums(s sums) string {
	var b strings.Builder
	b.WriteString("# mapping.Version; the SHA-256 of the code table and of the instruments; per golden case, the SHA-256\n")
	b.WriteString("# of its input and of its output. Written by go test ./mapping -update; TestVersionBumped checks it\n")
	b.WriteString("# (docs/mapping.md §1).\n")
	fmt.Fprintf(&b, "version %s\n", s.version)
	for _, t := range slices.Sorted(maps.Keys(s.tables)) {
		fmt.Fprintf(&b, "%s %s\n", t, s.tables[t])
	}
	for _, n := range slices.Sorted(maps.Keys(s.cases)) {
		fmt.Fprintf(&b, "%s %s %s\n", n, s.cases[n].input, s.cases[n].output)
	}
	return b.String()
}

func sha(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

// tableSums are the hashes of the tables the mapping emits from beyond
// what the golden cases show.
func tableSums(t *testing.T) map[string]string {
	t.Helper()
	out := map[string]string{}
	for name, v := range map[string]any{"concepts": mapping.Concepts(), "instruments": mapping.Instruments()} {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		out[name] = sha(b)
	}
	return out
}

// changedOutputs lists the cases whose recorded input maps to another
// output now.
func changedOutputs(recorded, now map[string]caseSum) []string {
	var out []string
	for n, s := range now {
		if r, ok := recorded[n]; ok && r.input == s.input && r.output != s.output {
			out = append(out, n)
		}
	}
	sort.Strings(out)
	return out
}

// unbumped says what changed since recorded although the version is the
// same: outputs of unchanged inputs and tables; nil when the version
// differs or nothing did.
func unbumped(recorded, now sums) error {
	if recorded.version != now.version {
		return nil
	}
	var what []string
	if changed := changedOutputs(recorded.cases, now.cases); len(changed) > 0 {
		what = append(what, fmt.Sprintf("the output of %d unchanged inputs (%s)", len(changed),
			strings.Join(changed[:min(3, len(changed))], ", ")))
	}
	for _, t := range slices.Sorted(maps.Keys(now.tables)) {
		if r, ok := recorded.tables[t]; ok && r != now.tables[t] {
			what = append(what, tableNames[t])
		}
	}
	if len(what) == 0 {
		return nil
	}
	return fmt.Errorf("%s changed, but mapping.Version is still %s: a receiver would get other codes or resources "+
		"under the same version. Bump mapping.Version (mapping/map.go; a new instrument or code is a minor version), "+
		"add an entry \"## <new version>\" to %s saying what a receiver sees differently and what senders must "+
		"change, update the version docs/conformance.md and docs/mapping.md state, then run go test ./mapping -update "+
		"(docs/mapping.md §10)", strings.Join(what, " and "), now.version, changelogDoc)
}

// TestVersionBumped: an output changed for an unchanged input, or a
// changed code table or instrument, needs a new mapping.Version, and the
// changelog has an entry for the version.
func TestVersionBumped(t *testing.T) {
	now := sums{version: mapping.Version, tables: tableSums(t), cases: map[string]caseSum{}}
	for _, tc := range goldenCases(t) {
		now.cases[tc.name] = caseSum{sha(tc.input), sha(mapJSON(t, tc.kind, tc.input, tc.opts))}
	}
	b, err := os.ReadFile(outputsSum)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	recorded, err := parseSums(b)
	if err != nil {
		t.Fatal(err)
	}
	if err := unbumped(recorded, now); err != nil {
		t.Fatal(err)
	}
	doc, err := os.ReadFile(changelogDoc)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(doc), "\n## "+mapping.Version+"\n") {
		t.Errorf("%s has no entry \"## %s\" for mapping.Version: say what a receiver sees differently and what senders must change", changelogDoc, mapping.Version)
	}
	want := formatSums(now)
	if string(b) == want {
		return
	}
	if *update {
		if err := os.WriteFile(outputsSum, []byte(want), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	t.Errorf("%s does not record the outputs of mapping %s (a new case, or a new version): run go test ./mapping -update", outputsSum, mapping.Version)
}

// TestUnbumped: what changes under the same version is refused; a new
// case, or anything under a new version, is not.
func TestUnbumped(t *testing.T) {
	base := func() sums {
		return sums{version: "1.0.0", tables: map[string]string{"concepts": "c1", "instruments": "i1"},
			cases: map[string]caseSum{"a": {"i", "o"}}}
	}
	for _, tc := range []struct {
		name   string
		change func(*sums)
		want   string // in the error; "" for none
	}{
		{"nothing", func(*sums) {}, ""},
		{"a new case", func(s *sums) { s.cases["b"] = caseSum{"i2", "o2"} }, ""},
		{"an output", func(s *sums) { s.cases["a"] = caseSum{"i", "oX"} }, "the output of 1 unchanged inputs (a)"},
		{"a code table row no golden case emits", func(s *sums) { s.tables["concepts"] = "c2" }, "the code table"},
		{"an instrument added", func(s *sums) { s.tables["instruments"] = "i2" }, "the instruments"},
		{"under a new version", func(s *sums) { s.version, s.tables["concepts"], s.cases["a"] = "1.1.0", "c2", caseSum{"i", "oX"} }, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			now := base()
			tc.change(&now)
			err := unbumped(base(), now)
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("unbumped() = %v, want nil", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want) ||
				!strings.Contains(err.Error(), "Bump mapping.Version") || !strings.Contains(err.Error(), changelogDoc)):
				t.Errorf("unbumped() = %v, want an error naming %q, the bump and the changelog", err, tc.want)
			}
		})
	}
}

func TestChangedOutputs(t *testing.T) {
	recorded := map[string]caseSum{"same": {"i1", "o1"}, "output": {"i2", "o2"}, "input": {"i3", "o3"}}
	now := map[string]caseSum{"same": {"i1", "o1"}, "output": {"i2", "oX"}, "input": {"iX", "oX"}, "new": {"i4", "o4"}}
	if got := changedOutputs(recorded, now); len(got) != 1 || got[0] != "output" {
		t.Errorf("changedOutputs() = %v, want [output]", got)
	}
	in := sums{version: "9.9.9", tables: map[string]string{"concepts": "c", "instruments": "i"}, cases: now}
	got, err := parseSums([]byte(formatSums(in)))
	if err != nil || got.version != "9.9.9" || len(got.cases) != len(now) || got.cases["output"] != now["output"] ||
		!maps.Equal(got.tables, in.tables) {
		t.Errorf("parseSums(formatSums()) = %+v, %v", got, err)
	}
}

// TestDocsNameVersion: the docs that state the mapping version (the
// version of the published conformance resources and IG package) state
// mapping.Version: a bump that leaves them is caught here (p19 F3).
func TestDocsNameVersion(t *testing.T) {
	// Versions of other things these docs name: FHIR R4, the profiles'
	// own version of conformance resources that are not the mapping's,
	// npm packages, an address.
	others := map[string]bool{"4.0.1": true, "1.0.0": true, "4.12.0": true, "5.2.13": true, "127.0.0": true}
	semver := regexp.MustCompile(`\b\d+\.\d+\.\d+\b`)
	b, err := os.ReadFile("../docs/conformance.md")
	if err != nil {
		t.Fatal(err)
	}
	for n, line := range strings.Split(string(b), "\n") {
		for _, v := range semver.FindAllString(line, -1) {
			if !others[v] && v != mapping.Version {
				t.Errorf("docs/conformance.md:%d names version %s, not mapping.Version %s", n+1, v, mapping.Version)
			}
		}
	}
	b, err = os.ReadFile("../docs/mapping.md")
	if err != nil {
		t.Fatal(err)
	}
	stated := regexp.MustCompile("`mapping\\.Version` \\(`([^`]+)`\\)").FindSubmatch(b)
	if stated == nil || string(stated[1]) != mapping.Version {
		t.Errorf("docs/mapping.md states mapping.Version as %q, want %s", stated, mapping.Version)
	}
}
