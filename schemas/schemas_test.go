package schemas

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/ketamine-gateway/ketamine-gateway/mapping"
)

func TestKinds(t *testing.T) {
	want := []string{"assessment", "vitals", "infusion", "adverse-event", "session"}
	if got := Kinds(); !slices.Equal(got, want) {
		t.Fatalf("Kinds() = %v, want %v", got, want)
	}
	Kinds()[0] = "changed"
	if Kinds()[0] != "assessment" {
		t.Fatal("Kinds() exposes internal state")
	}
	s := set(t)
	for _, k := range append(Kinds(), "common") {
		b, ok := s.Schema(k)
		if !ok || !json.Valid(b) {
			t.Errorf("Schema(%q): ok=%v, valid=%v", k, ok, json.Valid(b))
		}
	}
	if _, ok := s.Schema("nope"); ok {
		t.Error(`Schema("nope") reports ok`)
	}
	// The schema files are exactly the kinds plus common.
	files, _ := fs.Glob(schemaFiles, "*.schema.json")
	if len(files) != len(Kinds())+1 {
		t.Errorf("schema files %v: want one per kind plus common", files)
	}
}

func TestExamplesValid(t *testing.T) {
	s := set(t)
	all := allExamples(t)
	for _, kind := range Kinds() {
		if len(all[kind]) == 0 {
			t.Errorf("no examples for %s", kind)
		}
		for _, p := range all[kind] {
			b, _ := fs.ReadFile(Examples(), p)
			if err := s.Validate(kind, b); err != nil {
				var ve *ValidationError
				errors.As(err, &ve)
				t.Errorf("%s: %v%s", p, err, dump(ve.Issues))
			}
		}
	}
	if len(all) != len(Kinds()) {
		t.Errorf("example directories %v: want one per kind", all)
	}
}

// instrumentNames are the native names of mapping.Instruments.
func instrumentNames() []string {
	var names []string
	for _, in := range mapping.Instruments() {
		names = append(names, in.Name)
	}
	return names
}

// TestExampleCoverage checks that the examples cover what the integration
// guide promises: every instrument, every time point, both drugs, every
// infusion status.
func TestExampleCoverage(t *testing.T) {
	all := allExamples(t)
	values := func(kind, field string) map[string]int {
		seen := map[string]int{}
		for _, p := range all[kind] {
			b, _ := fs.ReadFile(Examples(), p)
			var m map[string]any
			if err := json.Unmarshal(b, &m); err != nil {
				t.Fatal(err)
			}
			if v, ok := m[field].(string); ok {
				seen[v]++
			}
		}
		return seen
	}
	want := map[string][]string{
		"assessment/instrument": instrumentNames(), // every instrument the mapping defines
		"vitals/timepoint":      {"pre-dose", "post-dose-40min", "discharge", "other"},
		"infusion/drug":         {"ketamine-iv", "esketamine-nasal"},
		"infusion/status":       {"completed", "stopped-early", "not-done"},
	}
	for kf, vs := range want {
		kind, field, _ := strings.Cut(kf, "/")
		seen := values(kind, field)
		for _, v := range vs {
			if seen[v] == 0 {
				t.Errorf("no %s example with %s %q", kind, field, v)
			}
		}
	}
	for kind, n := range map[string]int{"assessment": 8, "vitals": 5, "infusion": 5, "adverse-event": 6, "session": 3} {
		if len(all[kind]) < n {
			t.Errorf("%d %s examples, want at least %d", len(all[kind]), kind, n)
		}
	}
}

type invalidCase struct {
	name    string
	kind    string
	doc     []byte
	rule    string
	pointer string
	// maxIssues is the most issues this single mistake may produce; 0 means 1.
	maxIssues int
}

func invalidCases(t testing.TB) []invalidCase {
	deep := []byte(`{"source": ` + strings.Repeat("[", 100000) + strings.Repeat("]", 100000) + `}`)
	deepPtr := "/source" + strings.Repeat("/0", MaxDepth-1)
	long := strings.Repeat("n", 4001)
	vitals := example(t, "vitals", "pre-dose-baseline.json")
	manyVitals := make([]any, 51)
	for i := range manyVitals {
		manyVitals[i] = map[string]any{"recordId": fmt.Sprintf("V-%d", i), "timepoint": "pre-dose", "measuredAt": "2026-03-10T09:15:00Z", "heartRate": 70}
	}
	return []invalidCase{
		// Raw JSON problems.
		{name: "not JSON", kind: "vitals", doc: []byte("patient Testpatient felt fine"), rule: RuleJSONSyntax},
		{name: "truncated JSON", kind: "vitals", doc: []byte(`{"source": {"system": "serenity-clinic-emr", "recordId": "VIT-2026-0310-001"`), rule: RuleJSONSyntax, pointer: "/source"},
		{name: "truncated example", kind: "session", doc: example(t, "session", "routine-ketamine-iv-session.json")[:300], rule: RuleJSONSyntax, pointer: "/patient/mrn"},
		{name: "empty body", kind: "vitals", doc: nil, rule: RuleJSONEmpty},
		{name: "whitespace body", kind: "vitals", doc: []byte(" \r\n\t "), rule: RuleJSONEmpty},
		{name: "duplicate key nested", kind: "vitals", doc: []byte(strings.Replace(string(vitals), `"systolic": 128`, `"systolic": 128, "systolic": 182`, 1)), rule: RuleJSONDuplicateKey, pointer: "/bloodPressure/systolic"},
		{name: "duplicate key escaped", kind: "vitals", doc: []byte(strings.Replace(string(vitals), `"timepoint": "pre-dose"`, `"timepoint": "pre-dose", "time\u0070oint": "discharge"`, 1)), rule: RuleJSONDuplicateKey, pointer: "/timepoint"},
		{name: "top-level array", kind: "vitals", doc: []byte("[" + string(vitals) + "]"), rule: RuleJSONNotObject},
		{name: "top-level string", kind: "vitals", doc: []byte(`"Testpatient"`), rule: RuleJSONNotObject},
		{name: "trailing data", kind: "vitals", doc: []byte(string(vitals) + `{"recordId": "VIT-9"}`), rule: RuleJSONSyntax},
		{name: "invalid UTF-8", kind: "vitals", doc: []byte(strings.Replace(string(vitals), "Testpatient", "Test\xffpatient", 1)), rule: RuleJSONSyntax, pointer: "/patient/name"},
		{name: "byte order mark", kind: "vitals", doc: append([]byte("\xEF\xBB\xBF"), vitals...), rule: RuleJSONSyntax},
		{name: "100,000-deep nesting", kind: "assessment", doc: deep, rule: RuleJSONDepth, pointer: deepPtr},
		{name: "number out of float range", kind: "vitals", doc: []byte(strings.Replace(string(vitals), `"heartRate": 76`, `"heartRate": 76e400`, 1)), rule: RuleJSONNumber, pointer: "/heartRate"},
		{name: "too many values", kind: "session", doc: []byte(`{"vitals": [` + strings.Repeat(`{"heartRate": 1}, `, MaxValues/2) + `{}]}`), rule: RuleJSONTooLarge},
		{name: "unknown kind", kind: "medication", doc: vitals, rule: RuleKindUnknown},

		// Envelope.
		{name: "wrong type", kind: "vitals", doc: mutate(t, "vitals", "pre-dose-baseline.json", put("/heartRate", "76")), rule: RuleType, pointer: "/heartRate"},
		{name: "wrong type object", kind: "vitals", doc: mutate(t, "vitals", "pre-dose-baseline.json", put("/patient", "PT-000123")), rule: RuleType, pointer: "/patient"},
		{name: "unknown property top level", kind: "vitals", doc: mutate(t, "vitals", "pre-dose-baseline.json", put("/comment", "patient anxious")), rule: RuleAdditionalProperty, pointer: ""},
		{name: "unknown property nested", kind: "assessment", doc: mutate(t, "assessment", "gad7-mild.json", put("/patient/nickname", "Lexi")), rule: RuleAdditionalProperty, pointer: "/patient"},
		{name: "unknown property with odd name", kind: "vitals", doc: mutate(t, "vitals", "pre-dose-baseline.json", put("/patient/a~0b~1c", true)), rule: RuleAdditionalProperty, pointer: "/patient"},
		{name: "missing required nested", kind: "vitals", doc: mutate(t, "vitals", "pre-dose-baseline.json", del("/patient/id")), rule: RuleRequired, pointer: "/patient/id"},
		{name: "missing source", kind: "infusion", doc: mutate(t, "infusion", "ketamine-iv-completed-0.5mgkg.json", del("/source")), rule: RuleRequired, pointer: "/source"},
		{name: "missing mrn assigner", kind: "vitals", doc: mutate(t, "vitals", "pre-dose-baseline.json", del("/patient/mrn/assigner")), rule: RuleRequired, pointer: "/patient/mrn/assigner"},
		{name: "pattern violation record id", kind: "assessment", doc: mutate(t, "assessment", "phq9-moderate.json", put("/source/recordId", "ASM|2026|001")), rule: RulePattern, pointer: "/source/recordId"},
		{name: "pattern violation system", kind: "assessment", doc: mutate(t, "assessment", "phq9-moderate.json", put("/source/system", "Serenity EMR")), rule: RulePattern, pointer: "/source/system"},
		{name: "pattern violation patient id", kind: "assessment", doc: mutate(t, "assessment", "phq9-moderate.json", put("/patient/id", "-PT-000123")), rule: RulePattern, pointer: "/patient/id"},
		{name: "enum violation source status", kind: "vitals", doc: mutate(t, "vitals", "pre-dose-baseline.json", put("/source/status", "deleted")), rule: RuleEnum, pointer: "/source/status"},
		{name: "record id at top level", kind: "vitals", doc: mutate(t, "vitals", "pre-dose-baseline.json", put("/recordId", "VIT-2026-0310-001")), rule: RuleFalse, pointer: "/recordId"},
		{name: "birth date not a date", kind: "vitals", doc: mutate(t, "vitals", "pre-dose-baseline.json", put("/patient/birthDate", "1985-02-30")), rule: RuleFormat, pointer: "/patient/birthDate"},
		{name: "mrn system not a URI", kind: "vitals", doc: mutate(t, "vitals", "pre-dose-baseline.json", put("/patient/mrn/system", "serenity mrn list")), rule: RuleFormat, pointer: "/patient/mrn/system"},
		{name: "too many given names", kind: "vitals", doc: mutate(t, "vitals", "pre-dose-baseline.json", put("/patient/name/given", []any{"Ana", "Bea", "Cid", "Dee", "Eve", "Fay"})), rule: RuleItemsCount, pointer: "/patient/name/given"},
		{name: "lastUpdated without time zone", kind: "vitals", doc: mutate(t, "vitals", "pre-dose-baseline.json", put("/source/lastUpdated", "2026-03-10T09:16:40")), rule: RuleFormat, pointer: "/source/lastUpdated"},

		// Instants.
		{name: "date-time without time zone", kind: "assessment", doc: mutate(t, "assessment", "phq9-moderate.json", put("/takenAt", "2026-03-10T09:05:00")), rule: RuleFormat, pointer: "/takenAt"},
		{name: "date-time without seconds", kind: "assessment", doc: mutate(t, "assessment", "phq9-moderate.json", put("/takenAt", "2026-03-10T09:05-05:00")), rule: RuleFormat, pointer: "/takenAt"},
		{name: "date-only instant", kind: "adverse-event", doc: mutate(t, "adverse-event", "nausea-mild.json", put("/onsetAt", "2026-03-10")), rule: RuleFormat, pointer: "/onsetAt"},
		{name: "impossible date-time", kind: "adverse-event", doc: mutate(t, "adverse-event", "nausea-mild.json", put("/onsetAt", "2026-02-30T09:55:00Z")), rule: RuleFormat, pointer: "/onsetAt"},
		{name: "year 0000", kind: "adverse-event", doc: mutate(t, "adverse-event", "nausea-mild.json", put("/onsetAt", "0000-03-10T09:55:00Z")), rule: RuleFormat, pointer: "/onsetAt"},
		{name: "offset past +14:00", kind: "adverse-event", doc: mutate(t, "adverse-event", "nausea-mild.json", put("/onsetAt", "2026-03-10T09:55:00+14:01")), rule: RuleFormat, pointer: "/onsetAt"},
		{name: "offset past -14:00", kind: "vitals", doc: mutate(t, "vitals", "pre-dose-baseline.json", put("/measuredAt", "2026-03-10T09:55:00-23:00")), rule: RuleFormat, pointer: "/measuredAt"},
		{name: "offset minutes past 59", kind: "vitals", doc: mutate(t, "vitals", "pre-dose-baseline.json", put("/measuredAt", "2026-03-10T09:55:00+05:60")), rule: RuleFormat, pointer: "/measuredAt"},
		{name: "birth date in year 0000", kind: "vitals", doc: mutate(t, "vitals", "pre-dose-baseline.json", put("/patient/birthDate", "0000-02-03")), rule: RuleFormat, pointer: "/patient/birthDate"},
		{name: "mrn system a malformed urn:uuid", kind: "vitals", doc: mutate(t, "vitals", "pre-dose-baseline.json", put("/patient/mrn/system", "urn:uuid:0F8FAD5B-D9CB-469F-A165-70867728950E")), rule: RuleFormat, pointer: "/patient/mrn/system"},
		{name: "mrn system a malformed urn:oid", kind: "vitals", doc: mutate(t, "vitals", "pre-dose-baseline.json", put("/patient/mrn/system", "urn:oid:2.16.840.01")), rule: RuleFormat, pointer: "/patient/mrn/system"},
		{name: "identifier system with a space", kind: "vitals", doc: mutate(t, "vitals", "pre-dose-baseline.json", put("/patient/mrn/system", "https://hospital.example/fhir/ rn")), rule: RuleFormat, pointer: "/patient/mrn/system"},
		{name: "control character in a name", kind: "vitals", doc: mutate(t, "vitals", "pre-dose-baseline.json", put("/patient/name/family", "Test\u0000patient")), rule: RuleJSONControlCharacter, pointer: "/patient/name/family"},
		{name: "control character in an array item", kind: "vitals", doc: mutate(t, "vitals", "pre-dose-baseline.json", put("/patient/name/given/0", "\u001b[31m")), rule: RuleJSONControlCharacter, pointer: "/patient/name/given/0"},
		// DEL and the C1 controls are control characters too (finding p28 F6).
		{name: "DEL in a name", kind: "vitals", doc: mutate(t, "vitals", "pre-dose-baseline.json", put("/patient/name/family", "Sm\u007fith")), rule: RuleJSONControlCharacter, pointer: "/patient/name/family"},
		{name: "NEL (C1) in a name", kind: "vitals", doc: mutate(t, "vitals", "pre-dose-baseline.json", put("/patient/name/family", "Sm\u0085ith")), rule: RuleJSONControlCharacter, pointer: "/patient/name/family"},
		{name: "CSI (C1) in notes", kind: "infusion", doc: mutate(t, "infusion", "esketamine-nasal-56mg-completed.json", put("/notes", "x\u009b31m")), rule: RuleJSONControlCharacter, pointer: "/notes"},
		{name: "lowercase z", kind: "adverse-event", doc: mutate(t, "adverse-event", "nausea-mild.json", put("/onsetAt", "2026-03-10T09:55:00z")), rule: RuleFormat, pointer: "/onsetAt"},

		// Assessment.
		{name: "unknown instrument", kind: "assessment", doc: mutate(t, "assessment", "gad7-mild.json", put("/instrument", "PHQ-15")), rule: RuleEnum, pointer: "/instrument"},
		{name: "score > 6", kind: "assessment", doc: mutate(t, "assessment", "madrs-moderate.json", put("/items/2/score", 7)), rule: RuleRange, pointer: "/items/2/score"},
		{name: "negative score", kind: "assessment", doc: mutate(t, "assessment", "madrs-moderate.json", put("/items/9/score", -1)), rule: RuleRange, pointer: "/items/9/score"},
		{name: "fractional total", kind: "assessment", doc: mutate(t, "assessment", "gad7-mild.json", put("/total", 6.5)), rule: RuleType, pointer: "/total"},
		{name: "integer written with a fraction", kind: "assessment", doc: mutate(t, "assessment", "gad7-mild.json", put("/total", json.Number("6.0"))), rule: RuleType, pointer: "/total"},
		{name: "integer written with an exponent", kind: "assessment", doc: mutate(t, "assessment", "gad7-mild.json", put("/items/0/score", json.Number("1e0"))), rule: RuleType, pointer: "/items/0/score"},
		{name: "nested integer with a fraction", kind: "session", doc: mutate(t, "session", "routine-ketamine-iv-session.json", put("/adverseEvents/0/ctcaeGrade", json.Number("1.0"))), rule: RuleType, pointer: "/adverseEvents/0/ctcaeGrade"},
		{name: "item number 0", kind: "assessment", doc: mutate(t, "assessment", "gad7-mild.json", put("/items/0/number", 0)), rule: RuleRange, pointer: "/items/0/number"},
		{name: "item without number", kind: "assessment", doc: mutate(t, "assessment", "gad7-mild.json", del("/items/6/number")), rule: RuleRequired, pointer: "/items/6/number"},
		{name: "difficulty on GAD-7", kind: "assessment", doc: mutate(t, "assessment", "gad7-mild.json", put("/difficulty", "not-difficult")), rule: RuleFalse, pointer: "/difficulty"},
		{name: "score on C-SSRS item", kind: "assessment", doc: mutate(t, "assessment", "cssrs-screener-high-risk.json", put("/items/3/score", 1)), rule: RuleFalse, pointer: "/items/3/score"},
		{name: "answer on PHQ-9 item", kind: "assessment", doc: mutate(t, "assessment", "phq9-moderate.json", put("/items/8/answer", false)), rule: RuleFalse, pointer: "/items/8/answer"},
		{name: "missing takenAt", kind: "assessment", doc: mutate(t, "assessment", "moaa-s-post-infusion.json", del("/takenAt")), rule: RuleRequired, pointer: "/takenAt"},

		// Vitals.
		{name: "enum violation timepoint", kind: "vitals", doc: mutate(t, "vitals", "post-dose-40min.json", put("/timepoint", "post-dose-60min")), rule: RuleEnum, pointer: "/timepoint"},
		{name: "timepointText missing for other", kind: "vitals", doc: mutate(t, "vitals", "other-mid-infusion-check.json", del("/timepointText")), rule: RuleRequired, pointer: "/timepointText"},
		{name: "zero heart rate", kind: "vitals", doc: mutate(t, "vitals", "pre-dose-baseline.json", put("/heartRate", 0)), rule: RuleRange, pointer: "/heartRate"},
		{name: "diastolic missing", kind: "vitals", doc: mutate(t, "vitals", "pre-dose-baseline.json", del("/bloodPressure/diastolic")), rule: RuleRequired, pointer: "/bloodPressure/diastolic"},
		{name: "temperature unit", kind: "vitals", doc: mutate(t, "vitals", "pre-dose-baseline.json", put("/temperature/unit", "C")), rule: RuleEnum, pointer: "/temperature/unit"},

		// Infusion.
		{name: "statusReason missing for stopped-early", kind: "infusion", doc: mutate(t, "infusion", "ketamine-iv-stopped-early-blood-pressure.json", del("/statusReason")), rule: RuleRequired, pointer: "/statusReason"},
		{name: "statusReason missing for not-done", kind: "infusion", doc: mutate(t, "infusion", "ketamine-iv-not-done-no-show.json", del("/statusReason")), rule: RuleRequired, pointer: "/statusReason"},
		{name: "infusionStart missing for completed", kind: "infusion", doc: mutate(t, "infusion", "esketamine-nasal-56mg-completed.json", del("/infusionStart")), rule: RuleRequired, pointer: "/infusionStart"},
		{name: "unknown drug", kind: "infusion", doc: mutate(t, "infusion", "esketamine-nasal-56mg-completed.json", put("/drug", "esketamine-iv")), rule: RuleEnum, pointer: "/drug"},
		{name: "zero dose", kind: "infusion", doc: mutate(t, "infusion", "ketamine-iv-completed-0.5mgkg.json", put("/totalDoseMg", 0)), rule: RuleRange, pointer: "/totalDoseMg"},
		{name: "duplicate indication code", kind: "infusion", doc: mutate(t, "infusion", "ketamine-iv-with-rate-and-lot.json", put("/indication/codes", []any{"F33.2", "R45.851", "F33.2"})), rule: RuleUniqueItems, pointer: "/indication/codes/2"},
		{name: "notes too long", kind: "infusion", doc: mutate(t, "infusion", "esketamine-nasal-56mg-completed.json", put("/notes", long)), rule: RuleLength, pointer: "/notes"},
		{name: "empty lot number", kind: "infusion", doc: mutate(t, "infusion", "esketamine-nasal-56mg-completed.json", put("/lotNumber", "")), rule: RuleLength, pointer: "/lotNumber"},
		{name: "blank lot number", kind: "infusion", doc: mutate(t, "infusion", "esketamine-nasal-56mg-completed.json", put("/lotNumber", " \t ")), rule: RulePattern, pointer: "/lotNumber"},
		{name: "blank eventText for other", kind: "adverse-event", doc: mutate(t, "adverse-event", "other-blurred-vision.json", put("/eventText", "   ")), rule: RulePattern, pointer: "/eventText"},
		{name: "blank timepointText for other", kind: "vitals", doc: mutate(t, "vitals", "other-mid-infusion-check.json", put("/timepointText", "\n")), rule: RulePattern, pointer: "/timepointText"},
		{name: "blank family name", kind: "assessment", doc: mutate(t, "assessment", "phq9-moderate.json", put("/patient/name/family", "   ")), rule: RulePattern, pointer: "/patient/name/family"},
		{name: "instant after 9999 in UTC", kind: "vitals", doc: mutate(t, "vitals", "pre-dose-baseline.json", put("/measuredAt", "9999-12-31T23:59:59-14:00")), rule: RuleFormat, pointer: "/measuredAt"},
		{name: "instant before 0001 in UTC", kind: "vitals", doc: mutate(t, "vitals", "pre-dose-baseline.json", put("/measuredAt", "0001-01-01T00:00:00+14:00")), rule: RuleFormat, pointer: "/measuredAt"},
		{name: "nested instant after 9999 in UTC", kind: "session", doc: mutate(t, "session", "routine-ketamine-iv-session.json", put("/assessments/0/takenAt", "9999-12-31T20:00:00-05:00")), rule: RuleFormat, pointer: "/assessments/0/takenAt"},
		{name: "lastUpdated after 9999 in UTC", kind: "vitals", doc: mutate(t, "vitals", "pre-dose-baseline.json", put("/source/lastUpdated", "9999-12-31T23:59:59-00:01")), rule: RuleFormat, pointer: "/source/lastUpdated"},
		{name: "mrn with a trailing space", kind: "assessment", doc: mutate(t, "assessment", "phq9-moderate.json", put("/patient/mrn/value", "MRN-777 ")), rule: RulePattern, pointer: "/patient/mrn/value"},
		{name: "mrn with a leading no-break space", kind: "assessment", doc: mutate(t, "assessment", "phq9-moderate.json", put("/patient/mrn/value", "\u00a0MRN-777")), rule: RulePattern, pointer: "/patient/mrn/value"},
		{name: "mrn with a trailing ideographic space", kind: "assessment", doc: mutate(t, "assessment", "phq9-moderate.json", put("/patient/mrn/value", "MRN-777\u3000")), rule: RulePattern, pointer: "/patient/mrn/value"},
		{name: "mrn with a leading tab", kind: "assessment", doc: mutate(t, "assessment", "phq9-moderate.json", put("/patient/mrn/value", "\tMRN-777")), rule: RulePattern, pointer: "/patient/mrn/value"},
		{name: "blank mrn", kind: "assessment", doc: mutate(t, "assessment", "phq9-moderate.json", put("/patient/mrn/value", "  ")), rule: RulePattern, pointer: "/patient/mrn/value"},
		{name: "empty patient name", kind: "assessment", doc: mutate(t, "assessment", "phq9-moderate.json", put("/patient/name", map[string]any{})), rule: RuleEmptyObject, pointer: "/patient/name"},
		{name: "empty indication", kind: "infusion", doc: mutate(t, "infusion", "ketamine-iv-with-rate-and-lot.json", put("/indication", map[string]any{})), rule: RuleEmptyObject, pointer: "/indication"},
		{name: "blank given name", kind: "assessment", doc: mutate(t, "assessment", "phq9-moderate.json", put("/patient/name/given/0", " ")), rule: RulePattern, pointer: "/patient/name/given/0"},
		{name: "blank clinician name", kind: "infusion", doc: mutate(t, "infusion", "ketamine-iv-with-rate-and-lot.json", put("/clinician/name", " \t ")), rule: RulePattern, pointer: "/clinician/name"},
		{name: "blank statusReason text", kind: "infusion", doc: mutate(t, "infusion", "ketamine-iv-not-done-no-show.json", put("/statusReason/text", "  ")), rule: RulePattern, pointer: "/statusReason/text"},
		{name: "blank notes", kind: "infusion", doc: mutate(t, "infusion", "esketamine-nasal-56mg-completed.json", put("/notes", "\r\n")), rule: RulePattern, pointer: "/notes"},
		// Blank is any white space or invisible character, not ASCII only (finding p28 F6).
		{name: "no-break space family name", kind: "assessment", doc: mutate(t, "assessment", "phq9-moderate.json", put("/patient/name/family", "\u00a0")), rule: RulePattern, pointer: "/patient/name/family"},
		{name: "ideographic space family name", kind: "assessment", doc: mutate(t, "assessment", "phq9-moderate.json", put("/patient/name/family", "\u3000")), rule: RulePattern, pointer: "/patient/name/family"},
		{name: "em space given name", kind: "assessment", doc: mutate(t, "assessment", "phq9-moderate.json", put("/patient/name/given/0", "\u2003")), rule: RulePattern, pointer: "/patient/name/given/0"},
		{name: "zero-width space clinician name", kind: "infusion", doc: mutate(t, "infusion", "ketamine-iv-with-rate-and-lot.json", put("/clinician/name", "\u200b")), rule: RulePattern, pointer: "/clinician/name"},
		{name: "joiners family name", kind: "assessment", doc: mutate(t, "assessment", "phq9-moderate.json", put("/patient/name/family", "\u200d\u200c")), rule: RulePattern, pointer: "/patient/name/family"},
		{name: "byte order mark lot number", kind: "infusion", doc: mutate(t, "infusion", "esketamine-nasal-56mg-completed.json", put("/lotNumber", "\ufeff")), rule: RulePattern, pointer: "/lotNumber"},
		{name: "right-to-left override assigner", kind: "assessment", doc: mutate(t, "assessment", "phq9-moderate.json", put("/patient/mrn/assigner", "\u202e")), rule: RulePattern, pointer: "/patient/mrn/assigner"},
		{name: "tag characters family name", kind: "assessment", doc: mutate(t, "assessment", "phq9-moderate.json", put("/patient/name/family", "\U000E0020\U000E0041")), rule: RulePattern, pointer: "/patient/name/family"},
		{name: "Braille blank given name", kind: "assessment", doc: mutate(t, "assessment", "phq9-moderate.json", put("/patient/name/given/0", "\u2800")), rule: RulePattern, pointer: "/patient/name/given/0"},
		{name: "soft hyphen and word joiner eventText", kind: "adverse-event", doc: mutate(t, "adverse-event", "other-blurred-vision.json", put("/eventText", "\u00ad\u2060 ")), rule: RulePattern, pointer: "/eventText"},
		{name: "rate without unit", kind: "infusion", doc: mutate(t, "infusion", "ketamine-iv-with-rate-and-lot.json", del("/rate/durationUnit")), rule: RuleRequired, pointer: "/rate/durationUnit"},

		// Adverse event.
		{name: "unknown event", kind: "adverse-event", doc: mutate(t, "adverse-event", "nausea-mild.json", put("/event", "nosebleed")), rule: RuleEnum, pointer: "/event"},
		{name: "eventText missing for other", kind: "adverse-event", doc: mutate(t, "adverse-event", "other-blurred-vision.json", del("/eventText")), rule: RuleRequired, pointer: "/eventText"},
		{name: "serious missing", kind: "adverse-event", doc: mutate(t, "adverse-event", "nausea-mild.json", del("/serious")), rule: RuleRequired, pointer: "/serious"},
		{name: "serious as string", kind: "adverse-event", doc: mutate(t, "adverse-event", "nausea-mild.json", put("/serious", "no")), rule: RuleType, pointer: "/serious"},
		{name: "grade 6", kind: "adverse-event", doc: mutate(t, "adverse-event", "nausea-mild.json", put("/ctcaeGrade", 6)), rule: RuleRange, pointer: "/ctcaeGrade"},
		{name: "duplicate criterion", kind: "adverse-event", doc: mutate(t, "adverse-event", "hypotension-serious-hospitalization.json", put("/seriousnessCriteria", []any{"hospitalization", "hospitalization"})), rule: RuleUniqueItems, pointer: "/seriousnessCriteria/1"},
		{name: "empty action list", kind: "adverse-event", doc: mutate(t, "adverse-event", "nausea-mild.json", put("/actionTaken", []any{})), rule: RuleItemsCount, pointer: "/actionTaken"},
		{name: "recorder without id", kind: "adverse-event", doc: mutate(t, "adverse-event", "nausea-mild.json", del("/recorder/id")), rule: RuleRequired, pointer: "/recorder/id"},

		// Session.
		{name: "recordId missing in nested vitals", kind: "session", doc: mutate(t, "session", "routine-ketamine-iv-session.json", del("/vitals/1/recordId")), rule: RuleRequired, pointer: "/vitals/1/recordId"},
		{name: "sessionId in nested record", kind: "session", doc: mutate(t, "session", "routine-ketamine-iv-session.json", put("/assessments/0/sessionId", "INF-2026-0310-001")), rule: RuleFalse, pointer: "/assessments/0/sessionId"},
		{name: "sessionId in nested adverse event", kind: "session", doc: mutate(t, "session", "routine-ketamine-iv-session.json", put("/adverseEvents/0/sessionId", "INF-2026-0310-001")), rule: RuleFalse, pointer: "/adverseEvents/0/sessionId"},
		{name: "recordId in session infusion", kind: "session", doc: mutate(t, "session", "routine-ketamine-iv-session.json", put("/infusion/recordId", "INF-2026-0310-001")), rule: RuleFalse, pointer: "/infusion/recordId"},
		{name: "infusion missing", kind: "session", doc: mutate(t, "session", "esketamine-nasal-session.json", del("/infusion")), rule: RuleRequired, pointer: "/infusion"},
		{name: "nested score on C-SSRS", kind: "session", doc: mutate(t, "session", "esketamine-nasal-session.json", put("/assessments/0/items/1/score", 0)), rule: RuleFalse, pointer: "/assessments/0/items/1/score"},
		{name: "nested difficulty on CADSS", kind: "session", doc: mutate(t, "session", "routine-ketamine-iv-session.json", put("/assessments/2/difficulty", "very-difficult")), rule: RuleFalse, pointer: "/assessments/2/difficulty"},
		{name: "nested eventText missing", kind: "session", doc: mutate(t, "session", "routine-ketamine-iv-session.json", put("/adverseEvents/0/event", "other")), rule: RuleRequired, pointer: "/adverseEvents/0/eventText"},
		{name: "nested unknown property", kind: "session", doc: mutate(t, "session", "stopped-early-serious-adverse-event-session.json", put("/adverseEvents/0/grade", 3)), rule: RuleAdditionalProperty, pointer: "/adverseEvents/0"},
		{name: "session infusion statusReason missing", kind: "session", doc: mutate(t, "session", "stopped-early-serious-adverse-event-session.json", del("/infusion/statusReason")), rule: RuleRequired, pointer: "/infusion/statusReason"},
		{name: "nested vitals not an object", kind: "session", doc: mutate(t, "session", "routine-ketamine-iv-session.json", put("/vitals/2", "BP 124/80")), rule: RuleType, pointer: "/vitals/2"},
		{name: "too many nested vitals", kind: "session", doc: mutate(t, "session", "routine-ketamine-iv-session.json", put("/vitals", manyVitals)), rule: RuleItemsCount, pointer: "/vitals"},
		{name: "session-only property on infusion", kind: "infusion", doc: mutate(t, "infusion", "ketamine-iv-completed-0.5mgkg.json", put("/vitals", []any{})), rule: RuleAdditionalProperty, pointer: ""},
	}
}

func TestInvalidDocuments(t *testing.T) {
	s := set(t)
	cases := invalidCases(t)
	if len(cases) < 25 {
		t.Fatalf("only %d cases", len(cases))
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := s.Validate(c.kind, c.doc)
			var ve *ValidationError
			if !errors.As(err, &ve) {
				t.Fatalf("Validate = %v, want a *ValidationError", err)
			}
			checkIssueList(t, ve.Issues)
			first := ve.Issues[0]
			if first.Rule != c.rule || first.Pointer != c.pointer {
				t.Errorf("first issue %s at %q, want %s at %q; all:%s", first.Rule, first.Pointer, c.rule, c.pointer, dump(ve.Issues))
			}
			max := c.maxIssues
			if max == 0 {
				max = 1
			}
			if len(ve.Issues) > max {
				t.Errorf("%d issues for one mistake (flood), want at most %d:%s", len(ve.Issues), max, dump(ve.Issues))
			}
			if ve.Kind != c.kind {
				t.Errorf("Kind = %q, want %q", ve.Kind, c.kind)
			}
			assertNoValues(t, c.doc, ve.Issues)
			assertNoCodes(t, ve.Issues)
			wantPrefix := c.kind + ": "
			if !slices.Contains(Kinds(), c.kind) {
				wantPrefix = "unknown kind: "
			}
			if msg := err.Error(); strings.ContainsAny(msg, `"/`) || !strings.HasPrefix(msg, wantPrefix) {
				t.Errorf("Error() = %q", msg)
			}
		})
	}
}

// TestNoFloods feeds documents with one mistake each in places where a
// naive schema would cascade (wrong container types, discriminators of the
// wrong type, missing discriminators) and checks that each yields at most a
// handful of issues.
func TestNoFloods(t *testing.T) {
	cases := []struct {
		name, kind string
		doc        []byte
	}{
		{"items not an array", "assessment", mutate(t, "assessment", "cadss-post-infusion.json", put("/items", map[string]any{"number": 1}))},
		{"item not an object", "assessment", mutate(t, "assessment", "cadss-post-infusion.json", put("/items/4", 2))},
		{"instrument a number", "assessment", mutate(t, "assessment", "phq9-moderate.json", put("/instrument", 9))},
		{"instrument missing", "assessment", mutate(t, "assessment", "cssrs-screener-high-risk.json", del("/instrument"))},
		{"status a number", "infusion", mutate(t, "infusion", "ketamine-iv-stopped-early-blood-pressure.json", put("/status", 2))},
		{"status missing", "infusion", mutate(t, "infusion", "ketamine-iv-not-done-no-show.json", del("/status"))},
		{"event null", "adverse-event", mutate(t, "adverse-event", "other-blurred-vision.json", put("/event", nil))},
		{"infusion an array", "session", mutate(t, "session", "routine-ketamine-iv-session.json", put("/infusion", []any{}))},
		{"vitals an object", "session", mutate(t, "session", "routine-ketamine-iv-session.json", put("/vitals", map[string]any{}))},
		{"assessments null", "session", mutate(t, "session", "routine-ketamine-iv-session.json", put("/assessments", nil))},
		{"patient empty", "vitals", mutate(t, "vitals", "discharge.json", put("/patient", map[string]any{}))},
		{"source array", "vitals", mutate(t, "vitals", "discharge.json", put("/source", []any{"serenity-clinic-emr"}))},
	}
	const handful = 5
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			issues := issuesOf(t, c.kind, c.doc)
			if len(issues) > handful {
				t.Errorf("%d issues:%s", len(issues), dump(issues))
			}
			assertNoValues(t, c.doc, issues)
			assertNoCodes(t, issues)
		})
	}
}

// TestManyIssues checks sorting, numeric index order and the cap.
func TestManyIssues(t *testing.T) {
	vitals := make([]any, 50)
	for i := range vitals {
		// Each nested record misses recordId and has a bad instant.
		vitals[i] = map[string]any{"timepoint": "pre-dose", "measuredAt": "yesterday"}
	}
	doc := mutate(t, "session", "routine-ketamine-iv-session.json", put("/vitals", vitals))
	issues := issuesOf(t, "session", doc)
	if len(issues) != MaxIssues {
		t.Fatalf("%d issues, want the cap %d", len(issues), MaxIssues)
	}
	want := []string{"/vitals/0/measuredAt", "/vitals/0/recordId", "/vitals/1/measuredAt", "/vitals/1/recordId", "/vitals/2/measuredAt"}
	for i, p := range want {
		if issues[i].Pointer != p {
			t.Errorf("issue %d at %q, want %q", i, issues[i].Pointer, p)
		}
	}
	if last := issues[len(issues)-2].Pointer; last != "/vitals/24/measuredAt" {
		t.Errorf("last issue listed at %q, want /vitals/24/measuredAt (numeric order)", last)
	}
	// The last says how many more there are (100 found, 49 listed).
	if cut := issues[len(issues)-1]; cut.Rule != RuleIssuesCut || !strings.Contains(cut.Message, "51 more issues") {
		t.Errorf("last issue %+v, want %s saying 51 more", cut, RuleIssuesCut)
	}
}

func TestMessages(t *testing.T) {
	// Specific, helpful messages for the conditional rules.
	cases := []struct {
		kind string
		doc  []byte
		want string
	}{
		{"infusion", mutate(t, "infusion", "ketamine-iv-stopped-early-blood-pressure.json", del("/statusReason")), "statusReason is required when the infusion was stopped early or not done"},
		{"assessment", mutate(t, "assessment", "gad7-mild.json", put("/difficulty", "not-difficult")), "difficulty is not allowed for this instrument"},
		{"assessment", mutate(t, "assessment", "phq9-moderate.json", put("/takenAt", "2026-03-10")), "takenAt has a date but no time"},
		// RFC 3339 allows a leap second and any number of fraction digits:
		// the message says that the gateway does not, rather than that the
		// value is no RFC 3339 date-time.
		{"assessment", mutate(t, "assessment", "phq9-moderate.json", put("/takenAt", "2016-12-31T23:59:60Z")), "has a leap second (:60), which the gateway's clock cannot hold"},
		{"assessment", mutate(t, "assessment", "phq9-moderate.json", put("/takenAt", "2026-03-10T09:05:00.1234567890-05:00")), "has more than 9 fraction digits"},
		// The common mistakes are named (p19 F11), never with the value.
		{"assessment", mutate(t, "assessment", "phq9-moderate.json", put("/takenAt", "2026-03-10T09:15:00")), "takenAt has no time zone: add Z or an offset"},
		{"assessment", mutate(t, "assessment", "phq9-moderate.json", put("/takenAt", "2026-03-10T09:15-05:00")), "takenAt has no seconds"},
		{"assessment", mutate(t, "assessment", "phq9-moderate.json", put("/takenAt", "2026-03-10T09:15:00+0500")), "takenAt writes its offset without a colon"},
		{"assessment", mutate(t, "assessment", "phq9-moderate.json", put("/takenAt", "2026-03-10 09:15:00Z")), "takenAt separates the date and the time with a space"},
		{"assessment", mutate(t, "assessment", "phq9-moderate.json", put("/takenAt", "2026-03-10T09:15:00z")), "takenAt has a lowercase t or z"},
		{"assessment", mutate(t, "assessment", "phq9-moderate.json", put("/takenAt", "2026-03-10T09:15:00+15:00")), "takenAt has an offset beyond"},
		{"assessment", mutate(t, "assessment", "phq9-moderate.json", put("/takenAt", "0000-03-10T09:15:00Z")), "takenAt must be an RFC 3339 date-time with seconds and a time zone"},
		// A day-first date, and what a sender told to add a colon to its
		// "offset" made of it, are no instant's parts gone wrong: the
		// format, not a fix to a part they do not have (p45 F1).
		{"assessment", mutate(t, "assessment", "phq9-moderate.json", put("/takenAt", "10-03-2026")), "takenAt must be an RFC 3339 date-time with seconds and a time zone"},
		{"assessment", mutate(t, "assessment", "phq9-moderate.json", put("/takenAt", "10-03-20:26")), "takenAt must be an RFC 3339 date-time with seconds and a time zone"},
		{"assessment", mutate(t, "assessment", "phq9-moderate.json", put("/takenAt", "abcd-2026")), "takenAt must be an RFC 3339 date-time with seconds and a time zone"},
		{"assessment", mutate(t, "assessment", "phq9-moderate.json", put("/takenAt", "0915z")), "takenAt must be an RFC 3339 date-time with seconds and a time zone"},
		{"assessment", mutate(t, "assessment", "phq9-moderate.json", put("/takenAt", "2026-03-10T09:15:00.5+0500")), "takenAt writes its offset without a colon"},
		{"assessment", mutate(t, "assessment", "phq9-moderate.json", put("/takenAt", "2026-03-10t09:15:00Z")), "takenAt has a lowercase t or z"},
		{"assessment", mutate(t, "assessment", "phq9-moderate.json", put("/items/2/score", 9)), "items[2].score must be at most 3"},
		// A score or total above every instrument's bound gives the
		// record's instrument's bound, so the sender fixes it once (probe
		// p8 F9).
		{"assessment", mutate(t, "assessment", "cadss-post-infusion.json", put("/items/0/score", 7)), "items[0].score must be at most 4: the record's instrument allows 0-4"},
		{"session", mutate(t, "session", "routine-ketamine-iv-session.json", put("/assessments/0/items/0/score", 9)), "assessments[0].items[0].score must be at most 3: the record's instrument allows 0-3"},
		{"assessment", mutate(t, "assessment", "phq9-moderate.json", put("/total", 93)), "total must be at most 27: the record's instrument allows 0-27"},
		{"assessment", mutate(t, "assessment", "madrs-moderate.json", put("/items/0/score", 7)), "items[0].score must be at most 6: the record's instrument allows 0-6"},
		// A well-formed date whose day does not exist is called so.
		{"assessment", mutate(t, "assessment", "phq9-moderate.json", put("/takenAt", "2026-02-30T09:05:00-05:00")), "takenAt is not a real calendar date: that month has no such day"},
		{"assessment", mutate(t, "assessment", "phq9-moderate.json", put("/takenAt", "2026-13-01T09:05:00-05:00")), "takenAt is not a real calendar date"},
		{"assessment", mutate(t, "assessment", "phq9-moderate.json", put("/instrument", "PHQ9")), "instrument is not one of the allowed codes for this field"},
		// The allowed codes are listed (probe p42 F6): the schema's
		// constants, never the value sent.
		{"vitals", mutate(t, "vitals", "pre-dose-baseline.json", put("/temperature/unit", "C")), `temperature.unit is not one of the allowed codes for this field: "Cel", "[degF]"`},
		{"vitals", mutate(t, "vitals", "discharge.json", put("/heartRate", "72")), "heartRate must be a number, not a string"},
		{"vitals", mutate(t, "vitals", "discharge.json", put("/spo2", -1)), "spo2 must be greater than 0"},
		{"session", mutate(t, "session", "routine-ketamine-iv-session.json", del("/vitals/0/recordId")), "recordId is required on a record nested in a session"},
		{"vitals", mutate(t, "vitals", "discharge.json", put("/patient/ssn", "000-00-0000")), "property not allowed in patient"},
		{"vitals", []byte(`{"a": 1,}`), "invalid JSON: expected a string as object key near byte offset 8"},
		{"vitals", []byte(`{"a": [1, 2}`), "invalid JSON: expected ',' or ']' after an array element near byte offset"},
		// An error inside a number or a literal is located in the whole
		// document, not in the scalar (it was offset 7 and 29).
		{"vitals", []byte(`{"a":[1,2.]}`), "invalid JSON: malformed number near byte offset 10"},
		{"vitals", []byte(`{"patient":{"name":{"given":["A",tru]}}}`), "invalid JSON: malformed literal (true, false or null) near byte offset 36"},
	}
	for _, c := range cases {
		issues := issuesOf(t, c.kind, c.doc)
		if !strings.Contains(issues[0].Message, c.want) {
			t.Errorf("message %q, want it to contain %q", issues[0].Message, c.want)
		}
	}
}

func TestExpressionAndPointerEscaping(t *testing.T) {
	p := []pathElem{keyElem("patient"), keyElem("a/b~c"), indexElem(3), keyElem("x y"), keyElem("ok_1")}
	if got, want := pointer(p), "/patient/a~1b~0c/3/x y/ok_1"; got != want {
		t.Errorf("pointer = %q, want %q", got, want)
	}
	if got, want := expression(p), "patient.`a/b~c`[3].`x y`.ok_1"; got != want {
		t.Errorf("expression = %q, want %q", got, want)
	}
	if got := expression([]pathElem{keyElem("a`b")}); got != "`a\\`b`" {
		t.Errorf("expression with backtick = %q", got)
	}
	if comparePointers("/a/2", "/a/10") >= 0 || comparePointers("/a", "/a/0") >= 0 || comparePointers("/b", "/a/0") <= 0 {
		t.Error("comparePointers order")
	}
}

func TestCheckJSON(t *testing.T) {
	cases := []struct {
		doc      string
		maxDepth int
		rules    []string
		pointers []string
	}{
		{`{}`, 4, nil, nil},
		{` {"a": [1, {"b": null}], "c": "d"} `, 4, nil, nil},
		{`{"a": {"b": {"c": {}}}}`, 4, nil, nil},
		{`{"a": {"b": {"c": {"d": 1}}}}`, 3, []string{RuleJSONDepth}, []string{"/a/b/c"}},
		{`{"a": [[[[]]]]}`, 0, nil, nil},
		{`{"a": 1, "b": 2, "a": 3, "b": 4}`, 4, []string{RuleJSONDuplicateKey, RuleJSONDuplicateKey}, []string{"/a", "/b"}},
		{`{"x": [{"k": 1}, {"k": 2, "k": 3}]}`, 4, []string{RuleJSONDuplicateKey}, []string{"/x/1/k"}},
		{`{"a": 1, "a": 2, "b": }`, 4, []string{RuleJSONDuplicateKey, RuleJSONSyntax}, []string{"/a", ""}},
		{`{"n": [1e300, -1e300, 1e-300, 0e-999, 0.0, -0, 0.30000000000000004, 76.5000, 1.5E2]}`, 4, nil, nil},
		{`{"n": [1, 1e309]}`, 4, []string{RuleJSONNumber}, []string{"/n/1"}},
		// A \u escape of half a surrogate pair would decode as U+FFFD: the
		// record stored would not be the one sent.
		{`{"a": "A\ud800B"}`, 4, []string{RuleJSONSyntax}, []string{""}},
		{`{"a": "A\udfffB"}`, 4, []string{RuleJSONSyntax}, []string{""}},
		{`{"a\ud800": 1}`, 4, []string{RuleJSONSyntax}, []string{""}},
		{`{"a": "\ud800\u0041"}`, 4, []string{RuleJSONSyntax}, []string{""}},
		{`{"a": "\ud83d\ude00 \u00e9 \\ud800 \"\ud800"}`, 4, []string{RuleJSONSyntax}, []string{""}},
		{`{"a": "\ud83d\ude00 \u00e9 \\ud800 \"", "b": "\\\\u"}`, 4, nil, nil},
		// Like the other json-syntax issues, invalid UTF-8 and a lone
		// surrogate are located at the innermost open object or array.
		{`{"x": {"y": ["\ud800"]}}`, 4, []string{RuleJSONSyntax}, []string{"/x/y"}},
		{"{\"p\": {\"n\": {\"f\": \"Zq\xff\"}}}", 4, []string{RuleJSONSyntax}, []string{"/p/n"}},
		{"{\"p\": [1, {\"k\xff\": 1}]}", 4, []string{RuleJSONSyntax}, []string{"/p/1"}},
		{"{\"p\": [1, \xff]}", 4, []string{RuleJSONSyntax}, []string{"/p"}},
		{"{\"p\": {\"q\": 1}, \"r\": \"\xff\"}", 4, []string{RuleJSONSyntax}, []string{""}},
		{"{\"a\": {\"b\": {\"c\": {\"d\": \"\xff\"}}}}", 3, []string{RuleJSONSyntax}, []string{"/a/b"}},
		{"[\"\xff\"]", 4, []string{RuleJSONSyntax}, []string{""}},
		// Numbers become FHIR decimals, which the gateway keeps as doubles:
		// beyond 1e-300 to 1e300, or with digits a double drops, they could
		// not be stored exactly (the R4 validator's decimal-out-of-range).
		{`{"n": [1e308, 1e301, 5e-324, -1e-301, 0.1000000000000000000001, 9007199254740993]}`, 4,
			[]string{RuleJSONNumber, RuleJSONNumber, RuleJSONNumber, RuleJSONNumber, RuleJSONNumber, RuleJSONNumber},
			[]string{"/n/0", "/n/1", "/n/2", "/n/3", "/n/4", "/n/5"}},
		{`{"n": 1e-400}`, 4, []string{RuleJSONNumber}, []string{"/n"}},
		{`{"n": 1` + strings.Repeat("0", 100) + `}`, 4, []string{RuleJSONNumber}, []string{"/n"}},
		{`{"a": "\u00e9\ud83d\ude00"}`, 4, nil, nil},
		{"{\"a\": \"\x01\"}", 4, []string{RuleJSONSyntax}, []string{""}},
		{`{"a": "x\u0001y", "b": ["\t\r\n", "\u001f"], "c": {"d": "\u0000"}, "e\u0001": 1}`, 4, []string{RuleJSONControlCharacter, RuleJSONControlCharacter, RuleJSONControlCharacter}, []string{"/a", "/b/1", "/c/d"}},
		{`{"a": "\u00a0\u2028 tab\tend\u00a1\u00ff"}`, 4, nil, nil},
		// DEL and the C1 controls, escaped or raw (finding p28 F6).
		{"{\"a\": \"\\u007f\", \"b\": \"x\\u0080\", \"c\": \"\\u009f\", \"d\": \"\x7f\", \"e\": \"\xc2\x85\"}", 4,
			[]string{RuleJSONControlCharacter, RuleJSONControlCharacter, RuleJSONControlCharacter, RuleJSONControlCharacter, RuleJSONControlCharacter},
			[]string{"/a", "/b", "/c", "/d", "/e"}},
		{`null`, 4, []string{RuleJSONNotObject}, []string{""}},
		{`12`, 4, []string{RuleJSONNotObject}, []string{""}},
		{`nul`, 4, []string{RuleJSONSyntax}, []string{""}},
		{`{"a": {"b": [1, 2`, 4, []string{RuleJSONSyntax}, []string{"/a/b"}},
		{`{"a": [` + strings.Repeat("1,", 2*MaxValues) + `1]}`, 4, nil, nil}, // CheckJSON itself has no value limit
	}
	for _, c := range cases {
		issues := CheckJSON([]byte(c.doc), c.maxDepth)
		var rules, pointers []string
		for _, is := range issues {
			rules = append(rules, is.Rule)
			pointers = append(pointers, is.Pointer)
		}
		if !slices.Equal(rules, c.rules) || !slices.Equal(pointers, c.pointers) {
			t.Errorf("CheckJSON(%.40q) = %v %q, want %v %q", c.doc, rules, pointers, c.rules, c.pointers)
		}
	}
}

func TestValueLimit(t *testing.T) {
	// Root object, "a" array: 2 values, then MaxValues-2 scalars is exactly
	// the limit.
	at := func(n int) []byte {
		return []byte(`{"a": [` + strings.TrimSuffix(strings.Repeat("1,", n), ",") + `]}`)
	}
	if issues := checkJSON(at(MaxValues-2), MaxDepth, MaxValues); len(issues) != 0 {
		t.Errorf("at the limit: %s", dump(issues))
	}
	if issues := checkJSON(at(MaxValues-1), MaxDepth, MaxValues); len(issues) != 1 || issues[0].Rule != RuleJSONTooLarge {
		t.Errorf("over the limit: %s", dump(issues))
	}
	// Keys do not count.
	var b strings.Builder
	b.WriteString("{")
	for i := 0; i < MaxValues-1; i++ {
		if i > 0 {
			b.WriteString(",")
		}
		fmt.Fprintf(&b, `"k%d": 1`, i)
	}
	b.WriteString("}")
	if issues := checkJSON([]byte(b.String()), MaxDepth, MaxValues); len(issues) != 0 {
		t.Errorf("keys counted: %s", dump(issues))
	}
	// The largest valid session shape stays well below the limit.
	if n := largestValidSessionValues(); n > MaxValues*3/4 {
		t.Errorf("a maximal valid session has %d values, too close to MaxValues", n)
	}
}

// largestValidSessionValues counts the values of a session with every array
// at its maximum and every optional property present.
func largestValidSessionValues() int {
	person := 3
	assessment := 1 + 3 + person + 1 + 23*3 + 2
	vitals := 1 + 4 + person + 3 + 3 + 3 + 3
	ae := 1 + 9 + (1 + 6) + 2 + (1 + 8) + person
	infusion := 1 + 2 + 3 + 3 + 5 + 4 + (1 + 1 + 5 + 2) + 3 + person + 1
	envelope := 6 + (1 + 1 + 4 + (1 + 1 + 1 + 5) + 2)
	return 1 + envelope + infusion + 3 + 50*(assessment+vitals+ae)
}

func TestCheckJSONDeepNesting(t *testing.T) {
	for _, doc := range []string{
		strings.Repeat("[", 100000),
		`{"a":` + strings.Repeat(`{"a":`, 100000),
		`{"a":` + strings.Repeat("[", 100000) + strings.Repeat("]", 100000) + "}",
	} {
		issues := CheckJSON([]byte(doc), MaxDepth)
		if len(issues) != 1 {
			t.Fatalf("%d issues: %s", len(issues), dump(issues))
		}
		if doc[0] == '[' {
			if issues[0].Rule != RuleJSONNotObject {
				t.Errorf("rule %s", issues[0].Rule)
			}
			continue
		}
		if issues[0].Rule != RuleJSONDepth || strings.Count(issues[0].Pointer, "/") != MaxDepth {
			t.Errorf("issue %+v", issues[0])
		}
	}
}

func TestSyntaxOffset(t *testing.T) {
	issues := CheckJSON([]byte(`{"a": 1, "b": tru}`), MaxDepth)
	if len(issues) != 1 || !regexp.MustCompile(`malformed literal \(true, false or null\) near byte offset (9|1[0-8])$`).MatchString(issues[0].Message) {
		t.Errorf("issues %s", dump(issues))
	}
	issues = CheckJSON([]byte(`{"a": "x`), MaxDepth)
	if len(issues) != 1 || !strings.HasSuffix(issues[0].Message, "truncated document?) near byte offset 8") {
		t.Errorf("issues %s", dump(issues))
	}
}

// TestConcurrentValidate runs validations in parallel; with -race it checks
// that a Set is safe for concurrent use.
func TestConcurrentValidate(t *testing.T) {
	s := set(t)
	all := allExamples(t)
	cases := invalidCases(t)
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for _, kind := range Kinds() {
				for _, p := range all[kind] {
					b, _ := fs.ReadFile(Examples(), p)
					if err := s.Validate(kind, b); err != nil {
						t.Errorf("%s: %v", p, err)
					}
				}
			}
			for _, c := range cases {
				if s.Validate(c.kind, c.doc) == nil {
					t.Errorf("%s: valid", c.name)
				}
			}
		}()
	}
	wg.Wait()
}

// TestSchemasAgainstMetaSchema validates every schema file against the
// draft-07 meta-schema (bundled with gojsonschema) and checks the rules the
// contract sets for them.
func TestSchemasAgainstMetaSchema(t *testing.T) {
	files, _ := fs.Glob(schemaFiles, "*.schema.json")
	for _, f := range files {
		b, _ := schemaFiles.ReadFile(f)
		issues := validateAgainstMeta(t, b)
		if len(issues) > 0 {
			t.Errorf("%s is not a valid draft-07 schema: %v", f, issues)
		}
		var doc any
		if err := json.Unmarshal(b, &doc); err != nil {
			t.Fatal(err)
		}
		walkSchema(doc, "", func(ptr string, m map[string]any) {
			for _, kw := range []string{"oneOf", "anyOf", "not", "patternProperties", "unevaluatedProperties"} {
				if _, ok := m[kw]; ok {
					t.Errorf("%s%s uses %s", f, ptr, kw)
				}
			}
			if props, ok := m["properties"]; ok {
				if ap, ok := m["additionalProperties"]; !ok || ap != false {
					_ = props
					t.Errorf("%s%s: object schema without additionalProperties: false", f, ptr)
				}
			}
			if m["type"] == "object" && m["properties"] == nil {
				t.Errorf("%s%s: object schema without properties", f, ptr)
			}
			if p, ok := m["pattern"].(string); ok {
				if _, known := patterns[p]; !known {
					t.Errorf("%s%s: pattern %q has no message in convert.go", f, ptr, p)
				}
			}
			if fm, ok := m["format"].(string); ok {
				if _, known := formats[fm]; !known {
					t.Errorf("%s%s: format %q has no message in convert.go", f, ptr, fm)
				}
			}
		})
	}
}

// walkSchema calls fn for every object in a schema document that is in a
// schema position, skipping the bodies of if (which only select) and of
// then/else subschemas that only constrain known properties.
func walkSchema(v any, ptr string, fn func(string, map[string]any)) {
	m, ok := v.(map[string]any)
	if !ok {
		if a, ok := v.([]any); ok {
			for i, e := range a {
				walkSchema(e, fmt.Sprintf("%s/%d", ptr, i), fn)
			}
		}
		return
	}
	if _, isRef := m["$ref"]; !isRef && !isConditional(ptr) {
		fn(ptr, m)
	}
	for k, c := range m {
		switch k {
		case "enum", "const", "required", "examples":
			continue
		}
		walkSchema(c, ptr+"/"+k, fn)
	}
}

// isConditional reports whether a schema location is inside if/then/else,
// where partial object schemas (no type, no additionalProperties) are the
// point.
func isConditional(ptr string) bool {
	for _, seg := range strings.Split(ptr, "/") {
		if seg == "if" || seg == "then" || seg == "else" {
			return true
		}
	}
	return false
}

// TestNoRemoteReferences checks that every $ref resolves to an embedded file.
func TestNoRemoteReferences(t *testing.T) {
	re := regexp.MustCompile(`"\$ref":\s*"([^"#]*)#`)
	files, _ := fs.Glob(schemaFiles, "*.schema.json")
	for _, f := range files {
		b, _ := schemaFiles.ReadFile(f)
		for _, m := range re.FindAllSubmatch(b, -1) {
			target := string(m[1])
			if target == "" {
				continue
			}
			if _, err := fs.Stat(schemaFiles, target); err != nil || strings.Contains(target, "/") {
				t.Errorf("%s: $ref to %q is not an embedded schema file", f, target)
			}
		}
	}
}

// TestDocsExamples validates every example in docs/records.md that is marked
// with <!-- example: KIND --> against its kind, and checks that the guide
// shows one example per kind.
func TestDocsExamples(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "docs", "records.md"))
	if err != nil {
		t.Skipf("docs/records.md: %v", err)
	}
	re := regexp.MustCompile("(?s)<!-- example: ([a-z-]+) -->\\s*```json\\n(.*?)\\n```")
	seen := map[string]bool{}
	for _, m := range re.FindAllSubmatch(b, -1) {
		kind, doc := string(m[1]), m[2]
		seen[kind] = true
		if kind == "operation-outcome" {
			if !json.Valid(doc) {
				t.Errorf("docs: OperationOutcome example is not valid JSON")
			}
			continue
		}
		if err := set(t).Validate(kind, doc); err != nil {
			var ve *ValidationError
			errors.As(err, &ve)
			t.Errorf("docs: %s example: %v%s", kind, err, dump(ve.Issues))
		}
	}
	for _, k := range append(Kinds(), "operation-outcome") {
		if !seen[k] {
			t.Errorf("docs/records.md has no marked example for %s", k)
		}
	}
	// Every rule id the package can produce is documented.
	for _, r := range []string{RuleJSONSyntax, RuleJSONDuplicateKey, RuleJSONDepth, RuleJSONEmpty, RuleJSONNotObject, RuleJSONNumber, RuleJSONTooLarge, RuleJSONControlCharacter, RuleKindUnknown,
		RuleRequired, RuleAdditionalProperty, RuleFalse, RuleType, RuleEnum, RuleFormat, RulePattern, RuleRange, RuleLength, RuleItemsCount, RuleUniqueItems,
		RuleKindMismatch} {
		if !strings.Contains(string(b), "`"+r+"`") {
			t.Errorf("docs/records.md does not document rule %s", r)
		}
	}
}

// TestRenumbered: every example made a record of its own stays valid, and
// every recordId, the patient's id and MRN carry the suffix.
func TestRenumbered(t *testing.T) {
	set, err := New()
	if err != nil {
		t.Fatal(err)
	}
	for _, kind := range Kinds() {
		ents, err := fs.ReadDir(Examples(), "examples/"+kind)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range ents {
			raw, err := fs.ReadFile(Examples(), "examples/"+kind+"/"+e.Name())
			if err != nil {
				t.Fatal(err)
			}
			out, err := Renumbered(raw, "-x7")
			if err != nil {
				t.Fatalf("%s: %v", e.Name(), err)
			}
			if err := set.Validate(kind, out); err != nil {
				t.Errorf("%s renumbered is invalid: %v", e.Name(), err)
			}
			before, after := strings.Count(string(raw), `"recordId"`), strings.Count(string(out), `-x7"`)
			var doc struct {
				Patient struct {
					ID  string
					MRN *struct{ Value string }
				}
			}
			if err := json.Unmarshal(out, &doc); err != nil {
				t.Fatal(err)
			}
			want := before + 1 // every recordId and the patient's id
			if doc.Patient.MRN != nil {
				want++
			}
			if after != want || !strings.HasSuffix(doc.Patient.ID, "-x7") {
				t.Errorf("%s: %d values suffixed, want %d (patient %q)", e.Name(), after, want, doc.Patient.ID)
			}
		}
	}
}

// TestUnknownNamesNotRepeated: a property name the schema does not define
// is the sender's text and may be data (an MRN or a name used as a key):
// no issue repeats it, in its pointer, expression or message. The issue
// is located at the object that holds it, whose allowed properties an
// unknown property's message lists, so that the stray key can be found.
func TestUnknownNamesNotRepeated(t *testing.T) {
	s := set(t)
	vitals := string(example(t, "vitals", "pre-dose-baseline.json"))
	insert := func(after, member string) []byte {
		if !strings.Contains(vitals, after) {
			t.Fatalf("the example lacks %s", after)
		}
		return []byte(strings.Replace(vitals, after, after+" "+member+",", 1))
	}
	for _, tc := range []struct {
		name    string
		doc     []byte
		rule    string
		pointer string
		lists   string // in the message: the properties of the object
		hidden  string // the name never repeated
	}{
		{"at the top level", insert(`{`, `"Zqcanary": 1`), RuleAdditionalProperty, "", "the properties the record may have are bloodPressure,", "Zqcanary"},
		{"nested", insert(`"patient": {`, `"Zqcanary": 1`), RuleAdditionalProperty, "/patient", "the properties patient may have are birthDate, gender, id, mrn, name", "Zqcanary"},
		{"an MRN as a key", insert(`"patient": {`, `"4711235": {"name": "x"}`), RuleAdditionalProperty, "/patient", "birthDate, gender, id, mrn, name", "4711235"},
		{"odd characters", insert(`"patient": {`, `"Zq\"we<ird>key": 1`), RuleAdditionalProperty, "/patient", "birthDate, gender, id, mrn, name", "we<ird>"},
		// Issues of the JSON stage under an unknown name: located at its
		// object too.
		{"a control character under it", insert(`"patient": {`, `"Zqcanary": {"a": "x\u0001"}`), RuleJSONControlCharacter, "/patient", "", "Zqcanary"},
		{"a duplicate of it", insert(`"patient": {`, `"Zqcanary": 1, "Zqcanary": 2`), RuleJSONDuplicateKey, "/patient", "", "Zqcanary"},
		{"invalid UTF-8 under it", insert(`"patient": {`, "\"Zqcanary\": [\"\xff\"]"), RuleJSONSyntax, "/patient", "", "Zqcanary"},
		{"an out-of-range number under it", insert(`"bloodPressure": {`, `"Zqcanary": 1e999`), RuleJSONNumber, "/bloodPressure", "", "Zqcanary"},
		// A defined name is repeated: it is the schema's, not the sender's.
		{"a defined name twice", insert(`"bloodPressure": {`, `"systolic": 1`), RuleJSONDuplicateKey, "/bloodPressure/systolic", "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var ve *ValidationError
			if !errors.As(s.Validate("vitals", tc.doc), &ve) {
				t.Fatalf("Validate accepted it")
			}
			first := ve.Issues[0]
			if first.Rule != tc.rule || first.Pointer != tc.pointer || !strings.Contains(first.Message, tc.lists) {
				t.Errorf("first issue %s at %q: %s; want %s at %q listing %q", first.Rule, first.Pointer, first.Message, tc.rule, tc.pointer, tc.lists)
			}
			for _, is := range ve.Issues {
				if tc.hidden != "" && strings.Contains(is.Pointer+is.Expression+is.Message, tc.hidden) {
					t.Errorf("the issue repeats the name: %+v", is)
				}
			}
		})
	}
}

// TestAllowedPropertiesByInstrument: the properties an unknown property's
// message lists are those this record's instrument allows (its if/then
// branches decided on the record): a C-SSRS screener's items have answers,
// a PHQ-9's scores, and only the PHQ-9 has difficulty. An instrument the
// schema does not know lists every branch's.
func TestAllowedPropertiesByInstrument(t *testing.T) {
	s := set(t)
	doc := func(file, instrument string, stray func(m map[string]any)) []byte {
		var m map[string]any
		if err := json.Unmarshal(example(t, "assessment", file), &m); err != nil {
			t.Fatal(err)
		}
		if instrument != "" {
			m["instrument"] = instrument
		}
		stray(m)
		b, _ := json.Marshal(m)
		return b
	}
	inItem := func(m map[string]any) { m["items"].([]any)[0].(map[string]any)["zzz"] = 1 }
	atTop := func(m map[string]any) { m["zzz"] = 1 }
	for _, tc := range []struct {
		name  string
		doc   []byte
		lists string
		not   string
	}{
		{"C-SSRS item", doc("cssrs-screener-negative.json", "", inItem), "the properties items[0] may have are answer, number;", ""},
		{"PHQ-9 item", doc("phq9-moderate.json", "", inItem), "the properties items[0] may have are number, score;", ""},
		{"C-SSRS record", doc("cssrs-screener-negative.json", "", atTop), "the properties the record may have are ", "difficulty"},
		{"PHQ-9 record", doc("phq9-moderate.json", "", atTop), "difficulty", ""},
		{"unknown instrument", doc("phq9-moderate.json", "XYZ-1", inItem), "the properties items[0] may have are answer, number, score;", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var ve *ValidationError
			if !errors.As(s.Validate("assessment", tc.doc), &ve) {
				t.Fatalf("Validate accepted it")
			}
			var msg string
			for _, is := range ve.Issues {
				if is.Rule == RuleAdditionalProperty {
					msg = is.Message + ";"
				}
			}
			if !strings.Contains(msg, tc.lists) || (tc.not != "" && strings.Contains(msg, tc.not)) {
				t.Errorf("message %q; want it to list %q, not %q", msg, tc.lists, tc.not)
			}
		})
	}
}

// TestInstantEdges: instants at the edges of the years 0001-9999 are valid
// while their UTC time stays within them.
func TestInstantEdges(t *testing.T) {
	s := set(t)
	for _, v := range []string{"9999-12-31T23:59:59+14:00", "9999-12-31T23:59:59Z", "9999-12-31T09:59:59-14:00",
		"0001-01-01T00:00:00-14:00", "0001-01-01T00:00:00Z", "0001-01-01T14:00:00+14:00"} {
		if err := s.Validate("vitals", mutate(t, "vitals", "pre-dose-baseline.json", put("/measuredAt", v))); err != nil {
			t.Errorf("Validate(measuredAt %s) = %v, want valid", v, err)
		}
	}
}

// TestMRNValues: an MRN may hold spaces inside, but none at its start or
// end, where a padded value would be another MRN than the hospital's.
func TestMRNValues(t *testing.T) {
	s := set(t)
	for _, tc := range []struct {
		value string
		ok    bool
	}{
		{"MRN-777", true},
		{"7", true},
		{"MRN 777", true},
		{"MRN\u00a0777", true},
		{"MRN-777 ", false},
		{" MRN-777", false},
		{"\u00a0MRN-777", false},
		{"MRN-777\u2007", false},
		{"MRN-777\ufeff", false},
		{"MRN-777\n", false},
	} {
		err := s.Validate("assessment", mutate(t, "assessment", "phq9-moderate.json", put("/patient/mrn/value", tc.value)))
		if (err == nil) != tc.ok {
			t.Errorf("Validate(mrn %q) = %v, want valid %t", tc.value, err, tc.ok)
		}
	}
}

// TestKindMismatch: a valid record of one kind sent as another is told
// which kind it is, first (p19 F6); a record valid as no kind is not.
func TestKindMismatch(t *testing.T) {
	s := set(t)
	for _, tc := range []struct{ sentAs, example, want string }{
		{"assessment", "vitals/pre-dose-baseline.json", "vitals"},
		{"infusion", "session/routine-ketamine-iv-session.json", "session"},
		{"session", "assessment/phq9-moderate.json", "assessment"},
	} {
		doc, err := os.ReadFile(filepath.Join("examples", tc.example))
		if err != nil {
			t.Fatal(err)
		}
		var ve *ValidationError
		if !errors.As(s.Validate(tc.sentAs, doc), &ve) || len(ve.Issues) < 2 || ve.Issues[0].Rule != RuleKindMismatch ||
			!strings.Contains(ve.Issues[0].Message, "send it as kind "+tc.want) {
			t.Errorf("%s sent as %s: %+v, want first a %s issue naming %s", tc.example, tc.sentAs, ve, RuleKindMismatch, tc.want)
		}
	}
	var ve *ValidationError
	if errors.As(s.Validate("assessment", []byte(`{"source": {}}`)), &ve) && slices.ContainsFunc(ve.Issues, func(i Issue) bool { return i.Rule == RuleKindMismatch }) {
		t.Errorf("a record valid as no kind names one: %+v", ve.Issues)
	}
	// A FHIR resource sent as a native record is told where it belongs,
	// first (a beginner's review).
	for _, kind := range []string{"vitals", "session"} {
		err := s.Validate(kind, []byte(`{"resourceType":"Observation","status":"final","code":{"text":"x"}}`))
		if !errors.As(err, &ve) || ve.Issues[0].Rule != RuleKindMismatch || !strings.Contains(ve.Issues[0].Message, "POST /fhir/{type}") {
			t.Errorf("a FHIR Observation sent as %s: %+v, want first a %s issue pointing to the FHIR API", kind, err, RuleKindMismatch)
		}
	}
}

// TestVisibleTextValid: text with something visible in it passes the
// "not blank" pattern and the control character check, whatever its
// script, spaces or invisible characters beside the visible ones (the
// rules refuse only text with nothing visible, and control characters).
func TestVisibleTextValid(t *testing.T) {
	s := set(t)
	for _, name := range []string{"José", "李小龍", "임", "Ngā\u00a0Tāngata", "\u200bAnn", "Ann\u200dLee", "O’Brien", "👍",
		"\ufeffSmith", "ab\tc", "محمد", "\u202eevil", "x\u00ad", "\u3000a\u3000", "Œ", "\u00a0\u00a0b"} {
		t.Run(name, func(t *testing.T) {
			doc := mutate(t, "assessment", "phq9-moderate.json", put("/patient/name/family", name))
			if err := s.Validate("assessment", doc); err != nil {
				t.Errorf("Validate with family %q = %v, want valid", name, err)
			}
		})
	}
}

// TestRulesDocumented: every schema rule is in docs/records.md's tables (a
// mapping developer's review: schema.const was not).
func TestRulesDocumented(t *testing.T) {
	doc, err := os.ReadFile(filepath.Join("..", "docs", "records.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range Rules() {
		if !strings.Contains(string(doc), "| `"+r.ID+"` |") {
			t.Errorf("docs/records.md has no row for rule %s", r.ID)
		}
	}
}
