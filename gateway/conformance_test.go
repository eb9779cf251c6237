package gateway_test

import (
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/ketamine-gateway/ketamine-gateway/mapping"
	"github.com/ketamine-gateway/ketamine-gateway/schemas/r4"
)

const (
	kgVitalSigns = "https://ketamine-gateway.org/fhir/StructureDefinition/kg-vital-signs"
	heartRate    = "http://hl7.org/fhir/StructureDefinition/heartrate"
)

// issues returns an OperationOutcome's issues as rule, severity and
// expression.
func issues(t *testing.T, body map[string]any) []map[string]string {
	t.Helper()
	var out []map[string]string
	list, _ := body["issue"].([]any)
	for _, i := range list {
		m := i.(map[string]any)
		x := map[string]string{"severity": m["severity"].(string), "code": m["code"].(string)}
		if d, ok := m["details"].(map[string]any); ok {
			if c, ok := d["coding"].([]any); ok && len(c) > 0 {
				x["rule"], _ = c[0].(map[string]any)["code"].(string)
			}
			x["text"], _ = d["text"].(string)
		}
		if e, ok := m["expression"].([]any); ok && len(e) > 0 {
			x["expression"] = e[0].(string)
		}
		out = append(out, x)
	}
	return out
}

func hasIssue(list []map[string]string, rule, expr string) bool {
	return slices.ContainsFunc(list, func(i map[string]string) bool { return i["rule"] == rule && (expr == "" || i["expression"] == expr) })
}

// TestConformanceResourcesServed: the gateway's conformance resources are
// readable by id, searchable by url and version, valid R4, read-only, and
// the CapabilityStatement names them.
func TestConformanceResourcesServed(t *testing.T) {
	h := fhirServer(t)
	v := r4.New(r4.Options{})
	for _, path := range []string{"StructureDefinition/kg-vital-signs", "StructureDefinition/kg-adverse-event",
		"StructureDefinition/monitoring-timepoint", "ValueSet/kg-vital-sign-units", "CodeSystem/validation-rule",
		"CodeSystem/ketamine-gateway", "SearchParameter/AdverseEvent-identifier", "OperationDefinition/Resource-validate",
		"ImplementationGuide/ketamine-gateway"} {
		rec := req(h, "GET", "/fhir/"+path, "")
		if rec.Code != http.StatusOK {
			t.Fatalf("GET %s = %d %s", path, rec.Code, rec.Body)
		}
		if res := v.Validate(rec.Body.Bytes()); !res.Valid() {
			t.Errorf("%s is not valid R4: %+v", path, res.Issues)
		}
	}
	sd := decode(t, req(h, "GET", "/fhir/StructureDefinition/kg-vital-signs", ""))
	if sd["url"] != kgVitalSigns || sd["snapshot"] == nil || sd["differential"] == nil {
		t.Errorf("kg-vital-signs = url %v, snapshot and differential present %v %v", sd["url"], sd["snapshot"] != nil, sd["differential"] != nil)
	}

	search := func(typ, query string) []string {
		t.Helper()
		rec := req(h, "GET", "/fhir/"+typ+"?"+query, "")
		if rec.Code != http.StatusOK {
			t.Fatalf("search %s?%s = %d %s", typ, query, rec.Code, rec.Body)
		}
		var ids []string
		entries, _ := decode(t, rec)["entry"].([]any)
		for _, e := range entries {
			ids = append(ids, e.(map[string]any)["resource"].(map[string]any)["id"].(string))
		}
		return ids
	}
	u := url.QueryEscape(kgVitalSigns)
	for query, want := range map[string][]string{
		"url=" + u: {"kg-vital-signs"},
		"url=" + u + "&version=" + mapping.Version: {"kg-vital-signs"},
		"url=" + u + "&version=1.0.0":              nil,
		"url=https://nowhere.example/":             nil,
	} {
		if got := search("StructureDefinition", query); !slices.Equal(got, want) {
			t.Errorf("StructureDefinition?%s = %v, want %v", query, got, want)
		}
	}
	if got := search("ValueSet", "url="+url.QueryEscape("https://ketamine-gateway.org/fhir/ValueSet/kg-drugs")); !slices.Equal(got, []string{"kg-drugs"}) {
		t.Errorf("ValueSet?url = %v", got)
	}
	if got := search("StructureDefinition", "url:below="+url.QueryEscape("https://ketamine-gateway.org/fhir/StructureDefinition/kg-")+"&_count=100"); len(got) != 11 {
		t.Errorf("StructureDefinition?url:below=...kg- = %d profiles, want 11", len(got))
	}
	for _, typ := range []string{"SearchParameter", "OperationDefinition", "ImplementationGuide", "CodeSystem"} {
		if got := search(typ, "version="+mapping.Version+"&_count=100"); len(got) == 0 && typ != "SearchParameter" {
			t.Errorf("%s?version=%s found nothing", typ, mapping.Version)
		}
	}

	// Read-only for clients, like AuditEvent.
	for _, r := range []struct{ method, path string }{
		{"PUT", "/fhir/StructureDefinition/kg-vital-signs"}, {"DELETE", "/fhir/ValueSet/kg-drugs"},
		{"POST", "/fhir/CodeSystem"}, {"PUT", "/fhir/ImplementationGuide/ketamine-gateway"},
		{"POST", "/fhir/OperationDefinition"}, {"DELETE", "/fhir/SearchParameter/AdverseEvent-identifier"},
	} {
		rec := req(h, r.method, r.path, `{"resourceType":"StructureDefinition"}`)
		assertOutcome(t, rec, http.StatusMethodNotAllowed, "conformance-read-only", "")
	}

	// An unknown conformance resource: 404 saying what and where.
	rec := req(h, "GET", "/fhir/StructureDefinition/kg-no-such-profile", "")
	assertOutcome(t, rec, http.StatusNotFound, "resource-unknown", "")
	if is := issues(t, decode(t, rec)); !hasIssue(is, "resource-unknown", "StructureDefinition.id") ||
		!strings.Contains(is[0]["text"], "publishes no StructureDefinition") {
		t.Errorf("unknown StructureDefinition: %v", is)
	}

	// The CapabilityStatement: the guide, supportedProfile per type,
	// read-only interactions.
	cs := decode(t, req(h, "GET", "/fhir/metadata", ""))
	if ig, _ := cs["implementationGuide"].([]any); len(ig) != 1 || ig[0] != "https://ketamine-gateway.org/fhir/ImplementationGuide/ketamine-gateway" {
		t.Errorf("implementationGuide = %v", cs["implementationGuide"])
	}
	byType := map[string]map[string]any{}
	for _, r := range cs["rest"].([]any)[0].(map[string]any)["resource"].([]any) {
		m := r.(map[string]any)
		byType[m["type"].(string)] = m
	}
	supported := func(typ string) []string {
		var out []string
		for _, p := range asList(byType[typ]["supportedProfile"]) {
			out = append(out, p.(string))
		}
		return out
	}
	if sp := supported("Observation"); !slices.Contains(sp, kgVitalSigns) || !slices.Contains(sp, heartRate) || len(sp) != 11 {
		t.Errorf("Observation supportedProfile = %v", sp)
	}
	if sp := supported("AdverseEvent"); !slices.Equal(sp, []string{"https://ketamine-gateway.org/fhir/StructureDefinition/kg-adverse-event"}) {
		t.Errorf("AdverseEvent supportedProfile = %v", sp)
	}
	if sp := supported("DetectedIssue"); !slices.Equal(sp, []string{"https://ketamine-gateway.org/fhir/StructureDefinition/kg-detected-issue"}) {
		t.Errorf("DetectedIssue supportedProfile = %v", sp)
	}
	for _, i := range asList(byType["StructureDefinition"]["interaction"]) {
		if code := i.(map[string]any)["code"]; code == "create" || code == "update" || code == "delete" {
			t.Errorf("StructureDefinition interaction %v", code)
		}
	}
	params := map[string]bool{}
	for _, p := range asList(byType["StructureDefinition"]["searchParam"]) {
		params[p.(map[string]any)["name"].(string)] = true
	}
	if !params["url"] || !params["version"] {
		t.Errorf("StructureDefinition searchParam = %v", params)
	}
	// The documentation of the parameters whose values the codes' implied
	// systems and the values' ranges make match.
	doc := func(typ, name string) string {
		for _, p := range asList(byType[typ]["searchParam"]) {
			if m := p.(map[string]any); m["name"] == name {
				s, _ := m["documentation"].(string)
				return s
			}
		}
		return ""
	}
	for _, tc := range []struct{ typ, name, says string }{
		{"Patient", "gender", "(http://hl7.org/fhir/administrative-gender): system|code, system| and code find them"},
		{"Observation", "status", "http://hl7.org/fhir/observation-status"},
		{"Observation", "value-quantity", "comparator makes a range"},
	} {
		if d := doc(tc.typ, tc.name); !strings.Contains(d, tc.says) {
			t.Errorf("%s %s documentation = %q, want it to say %q", tc.typ, tc.name, d, tc.says)
		}
	}
}

func asList(v any) []any {
	l, _ := v.([]any)
	return l
}

// heartRateJSON is a mapped heart rate (as in the goldens), claiming the
// gateway's and R4's vital-signs profiles.
const heartRateJSON = `{"resourceType":"Observation","meta":{"profile":["https://ketamine-gateway.org/fhir/StructureDefinition/kg-vital-signs",
"http://hl7.org/fhir/StructureDefinition/vitalsigns","http://hl7.org/fhir/StructureDefinition/heartrate"],
"security":[{"system":"http://terminology.hl7.org/CodeSystem/v3-ActCode","code":"PSY"},{"system":"http://terminology.hl7.org/CodeSystem/v3-Confidentiality","code":"R"}]},
"identifier":[{"use":"official","system":"https://ketamine-gateway.org/fhir/sid/c/vitals","value":"V-1-8867-4"}],"status":"final",
"category":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/observation-category","code":"vital-signs","display":"Vital Signs"}],"text":"Vital Signs"}],
"code":{"coding":[{"system":"http://loinc.org","code":"8867-4","display":"Heart rate"}],"text":"Heart rate"},
"subject":{"reference":"Patient/p1"},"effectiveDateTime":"2026-03-02T09:00:00Z",
"valueQuantity":{"value":72,"unit":"beats/minute","system":"http://unitsofmeasure.org","code":"/min"}}`

// TestValidateWithProfile: $validate checks the profiles a resource claims
// and the one given (query or Parameters), naming rule and element; an
// unknown profile is a 400 saying where it was given.
func TestValidateWithProfile(t *testing.T) {
	h := fhirServer(t)
	validate := func(target, body string) (int, []map[string]string) {
		t.Helper()
		rec := req(h, "POST", target, body)
		return rec.Code, issues(t, decode(t, rec))
	}
	// Valid against everything it claims.
	if code, is := validate("/fhir/Observation/$validate", heartRateJSON); code != 200 || len(is) != 1 || is[0]["severity"] != "information" {
		t.Errorf("golden heart rate: %d %v", code, is)
	}
	celsius := strings.Replace(heartRateJSON, `"code":"/min"`, `"code":"Cel"`, 1)
	if _, is := validate("/fhir/Observation/$validate", celsius); !hasIssue(is, "profile.fixed-value", "Observation.valueQuantity.code") {
		t.Errorf("heart rate in Cel: %v", is)
	}
	// A profile it does not claim, in the query and in Parameters.
	unclaimed := strings.Replace(celsius, `"http://hl7.org/fhir/StructureDefinition/heartrate"`, `"http://hl7.org/fhir/StructureDefinition/vitalsigns"`, 1)
	if _, is := validate("/fhir/Observation/$validate", unclaimed); hasIssue(is, "profile.fixed-value", "") {
		t.Errorf("heartrate checked though neither claimed nor asked for: %v", is)
	}
	if _, is := validate("/fhir/Observation/$validate?profile="+url.QueryEscape(heartRate), unclaimed); !hasIssue(is, "profile.fixed-value", "Observation.valueQuantity.code") {
		t.Errorf("?profile=heartrate: %v", is)
	}
	params := `{"resourceType":"Parameters","parameter":[{"name":"resource","resource":` + unclaimed + `},{"name":"profile","valueUri":"` + heartRate + `"}]}`
	if code, is := validate("/fhir/$validate", params); code != 200 || !hasIssue(is, "profile.fixed-value", "Observation.valueQuantity.code") {
		t.Errorf("Parameters with profile: %d %v", code, is)
	}
	noLabel := strings.Replace(heartRateJSON, `{"system":"http://terminology.hl7.org/CodeSystem/v3-ActCode","code":"PSY"},`, "", 1)
	if _, is := validate("/fhir/$validate", noLabel); !hasIssue(is, "profile.security-label", "Observation.meta.security") {
		t.Errorf("no PSY label: %v", is)
	}
	// Unknown profiles.
	rec := req(h, "POST", "/fhir/Observation/$validate?profile="+url.QueryEscape("https://example.org/StructureDefinition/x"), heartRateJSON)
	assertOutcome(t, rec, http.StatusBadRequest, "profile.unknown", "")
	unknown := strings.Replace(params, heartRate, "https://ketamine-gateway.org/fhir/StructureDefinition/kg-nothing", 1)
	rec = req(h, "POST", "/fhir/$validate", unknown)
	assertOutcome(t, rec, http.StatusBadRequest, "profile.unknown", "")
	if is := issues(t, decode(t, rec)); !hasIssue(is, "profile.unknown", "Parameters.parameter[1].valueUri") {
		t.Errorf("unknown profile in Parameters: %v", is)
	}
	// A profile of another type is a validation error, not a bad request.
	if code, is := validate("/fhir/$validate?profile="+url.QueryEscape("https://ketamine-gateway.org/fhir/StructureDefinition/kg-adverse-event"), heartRateJSON); code != 200 || !hasIssue(is, "profile.type-mismatch", "Observation") {
		t.Errorf("profile of another type: %d %v", code, is)
	}
}
