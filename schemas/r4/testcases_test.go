package r4

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
)

// minInvalidRejected is the number of the HL7 validator's expected-invalid
// cases that this package rejects (53 of 98 when it was written; 52 of 97
// since encounter-period is a deliberate difference: deliberate; 51 since
// a urn:uuid with a fragment is a valid uri: ips-htmlrefs-backwards was
// rejected for that, while its fault is the value type its narrativeLink
// extension's definition gives, which needs the extension definitions).
// Most of the others need terminology services (displays, SNOMED/LOINC
// codes), profiles and extension definitions, signature checks, reference
// resolution or resource-specific business rules, which are out of scope.
// Raise it when the validator improves; the test fails if the number drops.
const minInvalidRejected = 51

// deliberate lists expected-invalid cases that this package accepts on
// purpose, with why; the test checks that it does.
var deliberate = map[string]string{
	"encounter-period": "per-1 as R5 states it (start.lowBoundary() <= end.highBoundary()): a day-precision start with a " +
		"timed end on that day is ordered; R4's start <= end is empty for mixed precisions, which the R4 reference " +
		"validator counts as a failure (finding p28 F7; HAPI accepts it too)",
}

// optionDependent lists cases whose expected outcome depends on an HL7
// validator setting that this package does not have: the same file is also
// listed with the opposite expectation.
var optionDependent = map[string]string{
	"json-comments-1-yes":              "run with allow-comments; JSON comments are syntax errors here",
	"json-comments-2-yes":              "run with allow-comments; JSON comments are syntax errors here",
	"contained-resource-bad-id-ignore": "run with validateContains=IGNORE; contained resources (and their 65-character id) are always validated here",
}

type hl7Case struct {
	Name   string   `json:"name"`
	File   string   `json:"file"`
	Expect string   `json:"expect"`
	Errors []string `json:"reference_validator_errors"`
}

func loadHL7Cases(tb testing.TB) (string, []hl7Case) {
	dir := sharedTestdata(tb, "fhir-test-cases")
	raw, err := os.ReadFile(filepath.Join(dir, "index.json"))
	if err != nil {
		tb.Skipf("fhir-test-cases/index.json: %v", err)
	}
	var idx struct {
		Cases []hl7Case `json:"cases"`
	}
	if err := json.Unmarshal(raw, &idx); err != nil {
		tb.Fatalf("index.json: %v", err)
	}
	return dir, idx.Cases
}

func TestHL7Cases(t *testing.T) {
	dir, cases := loadHL7Cases(t)
	v := testValidator()
	validOK, validN, invalidRejected, invalidN := 0, 0, 0, 0
	for _, c := range cases {
		doc, err := os.ReadFile(filepath.Join(dir, c.File))
		if err != nil {
			t.Errorf("%s: %v", c.Name, err)
			continue
		}
		res := v.Validate(doc)
		errs := errorsOf(res)
		switch c.Expect {
		case "valid":
			if why, ok := optionDependent[c.Name]; ok {
				t.Logf("skipping option-dependent valid case %s: %s", c.Name, why)
				continue
			}
			validN++
			if len(errs) == 0 {
				validOK++
				continue
			}
			for _, e := range errs {
				t.Errorf("valid case %s (%s) rejected: %s at %s: %s", c.Name, c.File, e.Rule, e.Expression, e.Message)
			}
		case "invalid":
			if why, ok := deliberate[c.Name]; ok {
				for _, e := range errs {
					t.Errorf("invalid case %s, accepted on purpose (%s), rejected: %s at %s: %s", c.Name, why, e.Rule, e.Expression, e.Message)
				}
				continue
			}
			invalidN++
			if len(errs) > 0 {
				invalidRejected++
				if testing.Verbose() {
					t.Logf("invalid case %s rejected: %s at %s: %s", c.Name, errs[0].Rule, errs[0].Expression, errs[0].Message)
				}
			} else if testing.Verbose() {
				t.Logf("invalid case %s accepted; reference validator said: %q", c.Name, c.Errors)
			}
		}
	}
	t.Logf("HL7 cases: valid accepted %d/%d, invalid rejected %d/%d (option-dependent skipped: %d, accepted on purpose: %d)",
		validOK, validN, invalidRejected, invalidN, len(optionDependent), len(deliberate))
	if invalidRejected < minInvalidRejected {
		t.Errorf("invalid cases rejected dropped to %d, below the recorded %d", invalidRejected, minInvalidRejected)
	}
}
