package mapping_test

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/ketamine-gateway/ketamine-gateway/mapping"
)

// mapping.Version "is bumped whenever the output for an unchanged record
// changes" (docs/mapping.md §1). outputsSum records, for the version, the
// SHA-256 of each golden case's input and of its output; TestVersionBumped
// fails when an input recorded for this version now maps to another output
// (go test ./mapping -update rewrites the goldens but not this file then),
// and go test ./mapping -update records the outputs once the version is
// bumped (or for new cases).
const (
	outputsSum   = "testdata/outputs.sum"
	changelogDoc = "../docs/mapping-changelog.md"
)

// caseSum is a golden case's input and output hashes.
type caseSum struct{ input, output string }

// parseSums reads outputsSum: the version it records and each case's
// hashes.
func parseSums(b []byte) (version string, sums map[string]caseSum, err error) {
	sums = map[string]caseSum{}
	for n, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		switch {
		case len(f) == 0 || strings.HasPrefix(f[0], "#"):
		case f[0] == "version" && len(f) == 2:
			version = f[1]
		case len(f) == 3:
			sums[f[0]] = caseSum{f[1], f[2]}
		default:
			return "", nil, fmt.Errorf("%s:%d: want \"version V\" or \"case input-sha256 output-sha256\"", outputsSum, n+1)
		}
	}
	return version, sums, nil
}

// formatSums renders outputsSum.
func formatSums(version string, sums map[string]caseSum) string {
	var b strings.Builder
	b.WriteString("# mapping.Version and, per golden case, the SHA-256 of its input and of its output.\n")
	b.WriteString("# Written by go test ./mapping -update; TestVersionBumped checks it (docs/mapping.md §1).\n")
	fmt.Fprintf(&b, "version %s\n", version)
	names := make([]string, 0, len(sums))
	for n := range sums {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(&b, "%s %s %s\n", n, sums[n].input, sums[n].output)
	}
	return b.String()
}

func sha(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
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

// TestVersionBumped: an output changed for an unchanged input needs a new
// mapping.Version, and the changelog has an entry for the version.
func TestVersionBumped(t *testing.T) {
	now := map[string]caseSum{}
	for _, tc := range goldenCases(t) {
		now[tc.name] = caseSum{sha(tc.input), sha(mapJSON(t, tc.kind, tc.input, tc.opts))}
	}
	b, err := os.ReadFile(outputsSum)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	version, recorded, err := parseSums(b)
	if err != nil {
		t.Fatal(err)
	}
	if version == mapping.Version {
		if changed := changedOutputs(recorded, now); len(changed) > 0 {
			t.Fatalf("the output of %d unchanged inputs changed (%s), but mapping.Version is still %s: bump it (mapping/map.go), "+
				"say what changes in %s, then run go test ./mapping -update (docs/mapping.md §1)",
				len(changed), strings.Join(changed[:min(3, len(changed))], ", "), mapping.Version, changelogDoc)
		}
	}
	doc, err := os.ReadFile(changelogDoc)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(doc), "\n## "+mapping.Version+"\n") {
		t.Errorf("%s has no entry \"## %s\" for mapping.Version: say what a receiver sees differently and what senders must change", changelogDoc, mapping.Version)
	}
	want := formatSums(mapping.Version, now)
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

func TestChangedOutputs(t *testing.T) {
	recorded := map[string]caseSum{"same": {"i1", "o1"}, "output": {"i2", "o2"}, "input": {"i3", "o3"}}
	now := map[string]caseSum{"same": {"i1", "o1"}, "output": {"i2", "oX"}, "input": {"iX", "oX"}, "new": {"i4", "o4"}}
	if got := changedOutputs(recorded, now); len(got) != 1 || got[0] != "output" {
		t.Errorf("changedOutputs() = %v, want [output]", got)
	}
	v, sums, err := parseSums([]byte(formatSums("9.9.9", now)))
	if err != nil || v != "9.9.9" || len(sums) != len(now) || sums["output"] != now["output"] {
		t.Errorf("parseSums(formatSums()) = %q, %v, %v", v, sums, err)
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
