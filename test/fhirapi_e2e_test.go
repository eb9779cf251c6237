package test

import (
	"encoding/base64"
	"fmt"
	"strings"
	"testing"
)

// The FHIR API features of issue 13 (items 5-7) through the binary.

// loadPatients posts n Patients (identifier http://hospital.example/mrn|MRN-i,
// family Family<i>) with two Observations each (heart rate, and systolic
// for even i) as transaction Bundles of 250 patients.
func loadPatients(t *testing.T, base string, n int) {
	t.Helper()
	for start := 0; start < n; start += 250 {
		var entries []string
		for i := start; i < min(start+250, n); i++ {
			pu := fmt.Sprintf("urn:uuid:00000000-0000-4000-8000-%012d", i)
			entries = append(entries, fmt.Sprintf(`{"fullUrl":%q,"resource":{"resourceType":"Patient","identifier":[{"system":"http://hospital.example/mrn","value":"MRN-%d"}],"name":[{"family":"Family%d","given":["Pat"]}],"gender":"female"},"request":{"method":"POST","url":"Patient"}}`, pu, i, i))
			codes := []string{"8867-4", "8310-5"}
			if i%2 == 0 {
				codes[1] = "8480-6"
			}
			for _, code := range codes {
				entries = append(entries, fmt.Sprintf(`{"resource":{"resourceType":"Observation","status":"final","code":{"coding":[{"system":"http://loinc.org","code":%q}]},"subject":{"reference":%q},"effectiveDateTime":"2026-03-02T09:00:00Z","valueQuantity":{"value":72,"unit":"/min","system":"http://unitsofmeasure.org","code":"/min"}},"request":{"method":"POST","url":"Observation"}}`, code, pu))
			}
		}
		status, _, b := doReq(t, "POST", base+"/fhir", `{"resourceType":"Bundle","type":"transaction","entry":[`+strings.Join(entries, ",")+`]}`)
		if status != 200 {
			t.Fatalf("load = %d %.500v", status, b)
		}
	}
}

// bundleTotal is a searchset's total (-1 without one).
func bundleTotal(b map[string]any) int {
	n, ok := b["total"].(float64)
	if !ok {
		return -1
	}
	return int(n)
}

// TestChainedSearchE2E: chained parameters and _has across 1,000 patients
// (the store's plans for these searches are checked over the same load in
// gateway/store/sqlite and postgres TestChainPlanAfterLoad), and the 400s
// of chains the gateway cannot run.
func TestChainedSearchE2E(t *testing.T) {
	g := start(t)
	loadPatients(t, g.base, 1000)
	for _, tc := range []struct {
		query string
		want  int
	}{
		{"Observation?patient.identifier=http://hospital.example/mrn|MRN-500", 2},
		{"Observation?subject:Patient.identifier=MRN-501", 2},
		{"Observation?subject.name=Family999", 2},
		{"Observation?patient.family:exact=Family42&code=http://loinc.org|8480-6", 1},
		{"Observation?patient.family:exact=Family43&code=http://loinc.org|8480-6", 0},
		{"Patient?_has:Observation:patient:code=8480-6", 500},
		{"Patient?_has:Observation:subject:code=8480-6&identifier=MRN-7", 0},
		{"Patient?_has:Observation:subject:code=8480-6&identifier=MRN-8", 1},
	} {
		status, _, b := doReq(t, "GET", g.base+"/fhir/"+tc.query, "")
		if status != 200 || bundleTotal(b) != tc.want {
			t.Errorf("GET %s = %d, total %d; want %d", tc.query, status, bundleTotal(b), tc.want)
		}
	}
	for _, tc := range []struct{ query, rule string }{
		{"Observation?subject.SECRET7=x", "search-param-unknown"},
		{"Observation?subject:SECRET7.name=x", "search-chain-unsupported"},
		{"Observation?subject.organization.name=x", "search-limit-exceeded"},
		{"Patient?_has:Observation:patient:_has:AuditEvent:entity:type=x", "search-limit-exceeded"},
	} {
		status, _, b := doReq(t, "GET", g.base+"/fhir/"+tc.query, "")
		if status != 400 || !strings.Contains(fmt.Sprint(b), tc.rule) || strings.Contains(fmt.Sprint(b), "SECRET7") {
			t.Errorf("GET %s = %d %v; want 400 %s naming no made-up name", tc.query, status, b, tc.rule)
		}
	}
}

// TestReadFeaturesE2E: _elements, _summary, the compartment search,
// $everything and conditional reads.
func TestReadFeaturesE2E(t *testing.T) {
	g := start(t)
	loadPatients(t, g.base, 3)
	_, _, b := doReq(t, "GET", g.base+"/fhir/Patient?identifier=MRN-1", "")
	pid := b["entry"].([]any)[0].(map[string]any)["resource"].(map[string]any)["id"].(string)

	_, _, p := doReq(t, "GET", g.base+"/fhir/Patient/"+pid+"?_elements=identifier", "")
	if p["identifier"] == nil || p["name"] != nil || !strings.Contains(fmt.Sprint(p["meta"]), "SUBSETTED") {
		t.Errorf("_elements=identifier = %v", p)
	}
	_, _, b = doReq(t, "GET", g.base+"/fhir/Observation?_summary=true&_count=1", "")
	if r := b["entry"].([]any)[0].(map[string]any)["resource"].(map[string]any); !strings.Contains(fmt.Sprint(r["meta"]), "SUBSETTED") {
		t.Errorf("_summary=true match = %v", r)
	}
	if _, _, b = doReq(t, "GET", g.base+"/fhir/Observation?_summary=count", ""); bundleTotal(b) != 6 {
		t.Errorf("_summary=count = %v", b)
	}

	if _, _, b = doReq(t, "GET", g.base+"/fhir/Patient/"+pid+"/Observation?code=8867-4", ""); bundleTotal(b) != 1 {
		t.Errorf("compartment search = %v", b)
	}
	_, _, b = doReq(t, "GET", g.base+"/fhir/Patient/"+pid+"/$everything?_type=Patient,Observation&_count=2", "")
	if bundleTotal(b) != 3 || len(b["entry"].([]any)) != 2 || !strings.Contains(fmt.Sprint(b["link"]), "next") {
		t.Errorf("$everything page 1 = %v", b)
	}
	if _, _, b = doReq(t, "GET", g.base+"/fhir/Patient/"+pid+"/$everything?_type=Observation&_since=2999-01-01T00:00:00Z", ""); bundleTotal(b) != 1 {
		t.Errorf("$everything?_since=future = %v, want the Patient alone", b)
	}

	status, h, _ := doReq(t, "GET", g.base+"/fhir/Patient/"+pid, "")
	if status != 200 {
		t.Fatalf("read = %d", status)
	}
	if status, h2, _ := doReq(t, "GET", g.base+"/fhir/Patient/"+pid, "", "If-None-Match: "+h.Get("ETag")); status != 304 || h2.Get("ETag") != h.Get("ETag") {
		t.Errorf("read with If-None-Match = %d %v, want 304 with the ETag", status, h2)
	}
	if status, _, _ := doReq(t, "GET", g.base+"/fhir/Patient/"+pid, "", "If-Modified-Since: "+h.Get("Last-Modified")); status != 304 {
		t.Errorf("read with If-Modified-Since = %d, want 304", status)
	}
	if status, _, _ := doReq(t, "GET", g.base+"/fhir/Patient/"+pid, "", `If-None-Match: W/"99"`); status != 200 {
		t.Errorf("read with another ETag = %d, want 200", status)
	}
}

// TestPatchE2E: JSON Patch, FHIRPath Patch, conditional PATCH and a PATCH
// entry; a patch of id or meta or producing an invalid resource is a 400
// naming the operation and writes nothing.
func TestPatchE2E(t *testing.T) {
	g := start(t)
	loadPatients(t, g.base, 1)
	_, _, b := doReq(t, "GET", g.base+"/fhir/Patient?identifier=MRN-0", "")
	pid := b["entry"].([]any)[0].(map[string]any)["resource"].(map[string]any)["id"].(string)
	url := g.base + "/fhir/Patient/" + pid

	status, _, p := doReq(t, "PATCH", url, `[{"op":"replace","path":"/gender","value":"other"}]`,
		"Content-Type: application/json-patch+json", `If-Match: W/"1"`)
	if status != 200 || p["gender"] != "other" {
		t.Fatalf("JSON Patch = %d %v", status, p)
	}
	status, _, p = doReq(t, "PATCH", url, `{"resourceType":"Parameters","parameter":[{"name":"operation","part":[`+
		`{"name":"type","valueCode":"add"},{"name":"path","valueString":"Patient"},{"name":"name","valueString":"birthDate"},{"name":"value","valueDate":"1970-01-01"}]}]}`)
	if status != 200 || p["birthDate"] != "1970-01-01" {
		t.Fatalf("FHIRPath Patch = %d %v", status, p)
	}
	status, _, p = doReq(t, "PATCH", g.base+"/fhir/Patient?identifier=http://hospital.example/mrn|MRN-0",
		`[{"op":"add","path":"/active","value":true}]`, "Content-Type: application/json-patch+json")
	if status != 200 || p["active"] != true {
		t.Fatalf("conditional PATCH = %d %v", status, p)
	}
	data := base64.StdEncoding.EncodeToString([]byte(`[{"op":"replace","path":"/active","value":false}]`))
	status, _, b = doReq(t, "POST", g.base+"/fhir", `{"resourceType":"Bundle","type":"transaction","entry":[{"resource":`+
		`{"resourceType":"Binary","contentType":"application/json-patch+json","data":"`+data+`"},"request":{"method":"PATCH","url":"Patient/`+pid+`"}}]}`)
	if status != 200 {
		t.Fatalf("transaction PATCH = %d %v", status, b)
	}
	for _, tc := range []struct{ body, ct, rule, expr string }{
		{`[{"op":"replace","path":"/id","value":"x"}]`, "application/json-patch+json", "patch-server-owned", "Patch.operation[0].path"},
		{`[{"op":"add","path":"/active","value":true},{"op":"remove","path":"/meta"}]`, "application/json-patch+json", "patch-server-owned", "Patch.operation[1].path"},
		{`[{"op":"replace","path":"/gender","value":"SECRET7"}]`, "application/json-patch+json", "binding-required", "Patient.gender"},
		{`{"resourceType":"Parameters","parameter":[{"name":"operation","part":[{"name":"type","valueCode":"delete"},{"name":"path","valueString":"Patient.meta"}]}]}`,
			"application/fhir+json", "patch-server-owned", "Parameters.parameter[0]"},
	} {
		status, _, b := doReq(t, "PATCH", url, tc.body, "Content-Type: "+tc.ct)
		out := fmt.Sprint(b)
		if status != 400 || b["resourceType"] != "OperationOutcome" || !strings.Contains(out, tc.rule) ||
			!strings.Contains(out, tc.expr) || strings.Contains(out, "SECRET7") {
			t.Errorf("PATCH %s = %d %v; want 400 %s at %s", tc.body, status, b, tc.rule, tc.expr)
		}
	}
	if _, _, p = doReq(t, "GET", url, ""); p["meta"].(map[string]any)["versionId"] != "5" || p["active"] != false {
		t.Errorf("after the refused patches = %v, want version 5", p)
	}
}

// TestTypeCriteriaE2E: ifNoneExist in the Type?criteria form, as HL7's
// Bundle-xds example writes it; another type is 400 naming the entry.
func TestTypeCriteriaE2E(t *testing.T) {
	g := start(t)
	entry := func(typ, value string) string {
		return `{"fullUrl":"urn:uuid:` + fmt.Sprintf("00000000-0000-4000-8000-%012d", len(value)) + `","resource":{"resourceType":"Patient",` +
			`"identifier":[{"system":"http://hospital.example/mrn","value":"` + value + `"}]},"request":{"method":"POST","url":"Patient",` +
			`"ifNoneExist":"` + typ + `?identifier=http://hospital.example/mrn|` + value + `"}}`
	}
	tx := func(entries ...string) string {
		return `{"resourceType":"Bundle","type":"transaction","entry":[` + strings.Join(entries, ",") + `]}`
	}
	if status, _, b := doReq(t, "POST", g.base+"/fhir", tx(entry("Patient", "X1"))); status != 200 {
		t.Fatalf("ifNoneExist Patient?identifier= = %d %v", status, b)
	}
	_, _, b := doReq(t, "POST", g.base+"/fhir", tx(entry("Patient", "X1")))
	if st := b["entry"].([]any)[0].(map[string]any)["response"].(map[string]any)["status"]; st != "200 OK" {
		t.Errorf("the same ifNoneExist again = %v, want 200 OK", st)
	}
	status, _, b := doReq(t, "POST", g.base+"/fhir", tx(entry("Patient", "X22"), entry("Observation", "X333")))
	if status != 400 || !strings.Contains(fmt.Sprint(b), "search-type-mismatch") || !strings.Contains(fmt.Sprint(b), "Bundle.entry[1]") {
		t.Errorf("ifNoneExist Observation?... for a Patient = %d %v, want 400 naming Bundle.entry[1]", status, b)
	}
	if _, _, b = doReq(t, "GET", g.base+"/fhir/Patient?identifier=X22", ""); bundleTotal(b) != 0 {
		t.Errorf("the refused transaction wrote %d patients", bundleTotal(b))
	}
}
