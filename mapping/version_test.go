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
		"under the same version. First bump mapping.Version (mapping/map.go; docs/mapping.md §10 says whether a "+
		"change is a patch, minor or major version) and add an entry \"## <new version>\" to %s saying what a "+
		"receiver sees differently and what senders must change, then run go test ./mapping -update (it rewrites "+
		"the goldens, outputs.sum and the version docs/conformance.md and docs/mapping.md state) and review the diff", strings.Join(what, " and "), now.version, changelogDoc)
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
				!strings.Contains(err.Error(), "bump mapping.Version") || !strings.Contains(err.Error(), changelogDoc)):
				t.Errorf("unbumped() = %v, want an error naming %q, the bump and the changelog", err, tc.want)
			}
		})
	}
}

// TestAdviceOrder: TestGolden and TestVersionBumped give the same order,
// the bump before -update (p34 F6: TestGolden said only "run -update",
// which rewrites the goldens and fails again).
func TestAdviceOrder(t *testing.T) {
	recorded := sums{version: "1.0.0", cases: map[string]caseSum{"a": {"i", "o"}}}
	err := unbumped(recorded, sums{version: "1.0.0", cases: map[string]caseSum{"a": {"i", "oX"}}})
	if err == nil {
		t.Fatal("unbumped() = nil for a changed output")
	}
	for name, msg := range map[string]string{"TestGolden": goldenAdvice, "TestVersionBumped": err.Error()} {
		bump, upd := strings.Index(strings.ToLower(msg), "bump mapping.version"), strings.Index(msg, "go test ./mapping -update")
		if bump < 0 || upd < 0 || bump > upd || !strings.Contains(msg, "mapping-changelog.md") {
			t.Errorf("%s's advice %q: want the bump of mapping.Version and the changelog entry, then go test ./mapping -update", name, msg)
		}
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

// versionDocs are the docs that state the mapping version: each with the
// finder of the versions it states (TestDocsNameVersion).
var versionDocs = []struct {
	path  string
	stale func(doc, version string) []staleVersion
}{
	{"../docs/conformance.md", staleSemvers},
	{"../docs/mapping.md", staleStated},
}

// staleVersion is a version a doc states that is not mapping.Version: the
// line (1-based) and the text to replace.
type staleVersion struct {
	line int
	old  string
}

// otherVersions are versions of other things docs/conformance.md names:
// FHIR R4, the profiles' own version of conformance resources that are not
// the mapping's, npm packages, an address.
var otherVersions = map[string]bool{"4.0.1": true, "1.0.0": true, "4.12.0": true, "5.2.13": true, "127.0.0": true}

// staleSemvers finds every version in doc (conformance.md: the version of
// the conformance resources and the IG package) that is neither version
// nor one of otherVersions.
func staleSemvers(doc, version string) []staleVersion {
	semver := regexp.MustCompile(`\b\d+\.\d+\.\d+\b`)
	var out []staleVersion
	for n, line := range strings.Split(doc, "\n") {
		for _, v := range semver.FindAllString(line, -1) {
			if !otherVersions[v] && v != version {
				out = append(out, staleVersion{n + 1, v})
			}
		}
	}
	return out
}

// stated is how docs/mapping.md §1 states the version.
var stated = regexp.MustCompile("`mapping\\.Version` \\(`([^`]+)`\\)")

// staleStated finds docs/mapping.md's statement of the version when it is
// not version (or a missing statement, line 0).
func staleStated(doc, version string) []staleVersion {
	loc := stated.FindStringSubmatchIndex(doc)
	if loc == nil {
		return []staleVersion{{0, ""}}
	}
	if v := doc[loc[2]:loc[3]]; v != version {
		return []staleVersion{{strings.Count(doc[:loc[2]], "\n") + 1, v}}
	}
	return nil
}

// rewriteVersions replaces each stale version on its line by version.
func rewriteVersions(doc, version string, stale []staleVersion) string {
	lines := strings.Split(doc, "\n")
	for _, s := range stale {
		if s.line > 0 && s.old != "" {
			lines[s.line-1] = regexp.MustCompile(`\b`+regexp.QuoteMeta(s.old)+`\b`).ReplaceAllString(lines[s.line-1], version)
		}
	}
	return strings.Join(lines, "\n")
}

// TestDocsNameVersion: the docs that state the mapping version (the
// version of the published conformance resources and IG package) state
// mapping.Version: a bump that leaves them is caught here (p19 F3). Every
// stale line of every doc is named in one run, and go test ./mapping
// -update rewrites them (p34 F6: one file a run, each edited by hand).
func TestDocsNameVersion(t *testing.T) {
	var stale []string
	for _, d := range versionDocs {
		b, err := os.ReadFile(d.path)
		if err != nil {
			t.Fatal(err)
		}
		found := d.stale(string(b), mapping.Version)
		if len(found) == 0 {
			continue
		}
		if *update && found[0].line > 0 {
			if err := os.WriteFile(d.path, []byte(rewriteVersions(string(b), mapping.Version, found)), 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		for _, f := range found {
			if f.line == 0 {
				stale = append(stale, fmt.Sprintf("%s: no statement of the version", d.path))
				continue
			}
			stale = append(stale, fmt.Sprintf("%s:%d: %s", d.path, f.line, f.old))
		}
	}
	if len(stale) > 0 {
		t.Errorf("these docs state another mapping version than mapping.Version %s (run go test ./mapping -update to rewrite them, "+
			"after the bump):\n%s", mapping.Version, strings.Join(stale, "\n"))
	}
}

// TestStaleVersions: a bump's stale versions are found in both docs at
// once, and rewriting them leaves none.
func TestStaleVersions(t *testing.T) {
	conf := "version 2.3.0, canonical\nFHIR 4.0.1 and 2.3.0 of the IG\nnothing here\n"
	mdoc := "intro\n- The mapping version is `mapping.Version` (`2.3.0`); it is bumped\n"
	found := map[string][]staleVersion{}
	for _, d := range versionDocs {
		doc := conf
		if strings.HasSuffix(d.path, "mapping.md") {
			doc = mdoc
		}
		found[d.path] = d.stale(doc, "2.4.0")
		if got := d.stale(rewriteVersions(doc, "2.4.0", found[d.path]), "2.4.0"); len(got) != 0 {
			t.Errorf("%s: after rewriteVersions, stale = %v, want none", d.path, got)
		}
	}
	if got := found["../docs/conformance.md"]; !slices.Equal(got, []staleVersion{{1, "2.3.0"}, {2, "2.3.0"}}) {
		t.Errorf("staleSemvers = %v, want lines 1 and 2", got)
	}
	if got := found["../docs/mapping.md"]; !slices.Equal(got, []staleVersion{{2, "2.3.0"}}) {
		t.Errorf("staleStated = %v, want line 2", got)
	}
	if got := rewriteVersions(conf, "2.4.0", found["../docs/conformance.md"]); !strings.Contains(got, "FHIR 4.0.1 and 2.4.0") {
		t.Errorf("rewriteVersions changed another version: %q", got)
	}
}
