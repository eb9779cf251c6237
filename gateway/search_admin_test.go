package gateway_test

import (
	"encoding/json"
	"fmt"
	"net/url"
	"strings"
	"testing"
)

// The Synthea / EHR feed shape: clinicians and facilities are created
// idempotently by identifier (NPI, Synthea's own ids) and referenced
// conditionally by it.
const (
	practEntry = `{"fullUrl":"urn:uuid:a1111111-1111-4111-8111-111111111111","resource":{"resourceType":"Practitioner",` +
		`"identifier":[{"system":"http://hl7.org/fhir/sid/us-npi","value":"9999994393"}],"name":[{"family":"Kuhic","given":["Omar"],"prefix":["Dr."]}]},` +
		`"request":{"method":"POST","url":"Practitioner","ifNoneExist":"identifier=http://hl7.org/fhir/sid/us-npi|9999994393"}}`
	orgEntry = `{"fullUrl":"urn:uuid:a2222222-2222-4222-8222-222222222222","resource":{"resourceType":"Organization",` +
		`"identifier":[{"system":"https://github.com/synthetichealth/synthea","value":"ef58ea08"}],"name":"Brockton Hospital","alias":["Good Samaritan"]},` +
		`"request":{"method":"POST","url":"Organization","ifNoneExist":"identifier=https://github.com/synthetichealth/synthea|ef58ea08"}}`
	locEntry = `{"fullUrl":"urn:uuid:a3333333-3333-4333-8333-333333333333","resource":{"resourceType":"Location",` +
		`"identifier":[{"system":"https://github.com/synthetichealth/synthea","value":"loc-1"}],"name":"Brockton Hospital Main Campus"},` +
		`"request":{"method":"POST","url":"Location","ifNoneExist":"identifier=https://github.com/synthetichealth/synthea|loc-1"}}`
	encEntry = `{"fullUrl":"urn:uuid:a4444444-4444-4444-8444-444444444444","resource":{"resourceType":"Encounter","status":"finished",` +
		`"class":{"system":"http://terminology.hl7.org/CodeSystem/v3-ActCode","code":"AMB"},` +
		`"participant":[{"individual":{"reference":"Practitioner?identifier=http://hl7.org/fhir/sid/us-npi|9999994393"}}],` +
		`"location":[{"location":{"reference":"Location?identifier=https://github.com/synthetichealth/synthea|loc-1"}}],` +
		`"serviceProvider":{"reference":"Organization?identifier=https://github.com/synthetichealth/synthea|ef58ea08"}},` +
		`"request":{"method":"POST","url":"Encounter"}}`
	// An Observation about a place (R4: Observation.subject may be a Location).
	locObsEntry = `{"resource":{"resourceType":"Observation","status":"final","code":{"text":"Room temperature"},` +
		`"subject":{"reference":"Location?identifier=https://github.com/synthetichealth/synthea|loc-1"}},"request":{"method":"POST","url":"Observation"}}`
)

// TestAdministrativeIdentifiers: Practitioner, Organization and Location
// are searchable by identifier and name (R4's parameters), so a
// transaction that creates them with ifNoneExist by identifier and
// references them conditionally loads, and loads again without copies.
func TestAdministrativeIdentifiers(t *testing.T) {
	h := fhirServer(t)
	for i := range 2 {
		if rec := req(h, "POST", "/fhir", txBundle(practEntry, orgEntry, locEntry, encEntry, locObsEntry)); rec.Code != 200 {
			t.Fatalf("transaction %d = %d %s", i+1, rec.Code, rec.Body)
		}
	}
	// And one about a Patient whose name is the place's.
	pat := `{"fullUrl":"urn:uuid:a5555555-5555-4555-8555-555555555555","resource":{"resourceType":"Patient","name":[{"family":"Brockton"}],` +
		`"identifier":[{"system":"https://github.com/synthetichealth/synthea","value":"loc-1"}]},"request":{"method":"POST","url":"Patient"}}`
	obs := `{"resource":{"resourceType":"Observation","status":"final","code":{"text":"Weight"},"subject":{"reference":"urn:uuid:a5555555-5555-4555-8555-555555555555"}},` +
		`"request":{"method":"POST","url":"Observation"}}`
	if rec := req(h, "POST", "/fhir", txBundle(pat, obs)); rec.Code != 200 {
		t.Fatalf("patient transaction = %d %s", rec.Code, rec.Body)
	}
	for _, tc := range []struct {
		target string
		total  float64
	}{
		{"/fhir/Practitioner?identifier=http://hl7.org/fhir/sid/us-npi|9999994393", 1},
		{"/fhir/Practitioner?identifier=9999994393", 1},
		{"/fhir/Practitioner?identifier=http://hl7.org/fhir/sid/us-npi|1", 0},
		{"/fhir/Practitioner?name=kuhic", 1},
		{"/fhir/Practitioner?name=omar", 1},
		{"/fhir/Organization?identifier=https://github.com/synthetichealth/synthea|ef58ea08", 1},
		{"/fhir/Organization?name=brockton", 1},
		{"/fhir/Organization?name=good%20sam", 1},
		{"/fhir/Organization?name:exact=Brockton", 0},
		{"/fhir/Location?identifier=https://github.com/synthetichealth/synthea|loc-1", 1},
		{"/fhir/Location?name=brockton%20hospital%20main", 1},
		{"/fhir/Encounter?_count=0", 2},
		// A chain without :Type looks into every target type with the
		// parameter: an Observation's subject, a Patient or a Location.
		{"/fhir/Observation?subject.identifier=https://github.com/synthetichealth/synthea|loc-1", 3},
		{"/fhir/Observation?subject.name=brockton", 3},
		{"/fhir/Observation?subject:Location.name=brockton", 2},
		{"/fhir/Observation?subject:Patient.name=brockton", 1},
		{"/fhir/Observation?subject.name=nobody", 0},
	} {
		wantTotal(t, h, tc.target, tc.total)
	}
}

// TestLenientNamesIgnored: with Prefer: handling=lenient, the searchset's
// outcome entry names each parameter it ignored that FHIR R4 defines
// (abatement-string and body-site of Condition, _source, and _tag, _profile
// and _security, which the gateway does not index), one issue each, and
// counts a name the client made up without repeating it; no value is
// repeated.
func TestLenientNamesIgnored(t *testing.T) {
	h := fhirServer(t)
	rec := req(h, "GET", "/fhir/Condition?abatement-string=active&body-site=problem-list-item&_source=SECRETVALUE"+
		"&_tag=SECRETTAG&_profile=SECRETPROFILE&_security=SECRETLABEL&John-Smith=1", "",
		"Prefer: handling=lenient")
	if rec.Code != 200 {
		t.Fatalf("lenient search = %d %s", rec.Code, rec.Body)
	}
	body := rec.Body.String()
	for _, secret := range []string{"SECRETVALUE", "SECRETTAG", "SECRETPROFILE", "SECRETLABEL", "John", "Smith", "active", "problem-list-item"} {
		if strings.Contains(body, secret) {
			t.Errorf("the searchset repeats %q: %s", secret, body)
		}
	}
	var outcomes []map[string]any
	for _, e := range entriesOf(decode(t, rec)) {
		if e["search"].(map[string]any)["mode"] == "outcome" {
			outcomes = append(outcomes, e["resource"].(map[string]any))
		}
	}
	if len(outcomes) != 1 {
		t.Fatalf("%d outcome entries, want 1: %s", len(outcomes), body)
	}
	got := map[string]string{} // expression (or "") -> rule
	for _, is := range outcomes[0]["issue"].([]any) {
		is := is.(map[string]any)
		if is["severity"] != "warning" {
			t.Errorf("issue severity %v, want warning", is["severity"])
		}
		expr := ""
		if ex, ok := is["expression"].([]any); ok {
			expr = ex[0].(string)
		}
		if text := is["details"].(map[string]any)["text"].(string); expr != "" && !strings.Contains(text, `"`+expr+`"`) {
			t.Errorf("issue text %q does not name %s", text, expr)
		}
		got[expr] = is["details"].(map[string]any)["coding"].([]any)[0].(map[string]any)["code"].(string)
	}
	want := map[string]string{"abatement-string": "search-param-unsupported", "body-site": "search-param-unsupported",
		"_source": "search-param-unsupported", "_tag": "search-param-unsupported", "_profile": "search-param-unsupported",
		"_security": "search-param-unsupported", "": "search-param-unknown"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("ignored parameters (expression: rule) = %v, want %v", got, want)
	}
	// Strictly, the same R4 parameter is 400 naming it.
	rec = req(h, "GET", "/fhir/Condition?abatement-string=active", "")
	assertOutcome(t, rec, 400, "search-param-unsupported", "")
	if !strings.Contains(rec.Body.String(), `\"abatement-string\"`) {
		t.Errorf("the 400 does not name the parameter: %s", rec.Body)
	}
}

// TestSystemHistoryLeavesOutAudit: every request records an AuditEvent,
// so a poll of the system's history would find those of the polls before
// it and never "nothing new": it leaves AuditEvents out unless _type names
// them, and answers the same while nothing else is written.
func TestSystemHistoryLeavesOutAudit(t *testing.T) {
	h := fhirServer(t)
	rec := req(h, "POST", "/fhir/Patient", patientJSON)
	if rec.Code != 201 {
		t.Fatalf("create = %d %s", rec.Code, rec.Body)
	}
	since := url.QueryEscape(decode(t, rec)["meta"].(map[string]any)["lastUpdated"].(string))
	types := func(target string) map[string]int {
		t.Helper()
		rec := req(h, "GET", target, "")
		if rec.Code != 200 {
			t.Fatalf("GET %s = %d %s", target, rec.Code, rec.Body)
		}
		out := map[string]int{}
		for _, e := range entriesOf(decode(t, rec)) {
			out[e["resource"].(map[string]any)["resourceType"].(string)]++
		}
		return out
	}
	for i := range 3 {
		if got := types("/fhir/_history?_since=" + since); fmt.Sprint(got) != "map[Patient:1]" {
			t.Errorf("poll %d of /fhir/_history?_since= = %v, want the Patient only", i+1, got)
		}
	}
	if got := types("/fhir/_history?_since=" + since + "&_type=AuditEvent"); got["AuditEvent"] < 3 || len(got) != 1 {
		t.Errorf("_type=AuditEvent = %v, want the polls' AuditEvents only", got)
	}
	if got := types("/fhir/_history?_type=Patient,AuditEvent"); got["Patient"] != 1 || got["AuditEvent"] < 4 {
		t.Errorf("_type=Patient,AuditEvent = %v, want both", got)
	}
	if got := types("/fhir/AuditEvent/_history"); got["AuditEvent"] < 4 {
		t.Errorf("AuditEvent/_history = %v, want the AuditEvents", got)
	}
	assertOutcome(t, req(h, "GET", "/fhir/_history?_type=Nope", ""), 400, "search-value-invalid", "")
	assertOutcome(t, req(h, "GET", "/fhir/Patient/_history?_type=Patient", ""), 400, "search-param-unsupported", "")
}

// TestCapabilityParamDefinitions: the CapabilityStatement names every
// search parameter's definition: R4's canonical for R4's parameters, the
// gateway's own SearchParameter (served at /fhir/SearchParameter) for the
// four it defines, MedicationAdministration part-of included; only the
// approximated patient compartment parameter has none.
func TestCapabilityParamDefinitions(t *testing.T) {
	h := fhirServer(t)
	cs := decode(t, req(h, "GET", "/fhir/metadata", ""))
	defs := map[string]string{}
	missing := 0
	for _, r := range cs["rest"].([]any)[0].(map[string]any)["resource"].([]any) {
		r := r.(map[string]any)
		for _, sp := range r["searchParam"].([]any) {
			sp := sp.(map[string]any)
			d, _ := sp["definition"].(string)
			defs[r["type"].(string)+" "+sp["name"].(string)] = d
			if d == "" && sp["name"] != "patient" {
				missing++
			}
		}
	}
	if missing > 0 {
		t.Errorf("%d searchParams other than patient have no definition", missing)
	}
	for k, want := range map[string]string{
		"Observation code":                 "http://hl7.org/fhir/SearchParameter/clinical-code",
		"Patient birthdate":                "http://hl7.org/fhir/SearchParameter/individual-birthdate",
		"Observation _id":                  "http://hl7.org/fhir/SearchParameter/Resource-id",
		"Practitioner identifier":          "http://hl7.org/fhir/SearchParameter/Practitioner-identifier",
		"MedicationAdministration part-of": "https://ketamine-gateway.org/fhir/SearchParameter/MedicationAdministration-part-of",
		"AdverseEvent identifier":          "https://ketamine-gateway.org/fhir/SearchParameter/AdverseEvent-identifier",
		"Practitioner patient":             "",
	} {
		if defs[k] != want {
			t.Errorf("searchParam %s definition = %q, want %q", k, defs[k], want)
		}
	}
	// The gateway's own definitions are published resources.
	for _, d := range defs {
		if strings.HasPrefix(d, "https://ketamine-gateway.org/") {
			wantTotal(t, h, "/fhir/SearchParameter?url="+url.QueryEscape(d), 1)
		}
	}
}

// TestOfType: identifier:of-type=type-system|type-code|value
// (search.html#token) finds an identifier by its type and value, "the
// MRN" of a Patient that carries several identifiers; the three parts are
// needed (400 otherwise, never a widened search), and the value is never
// repeated.
func TestOfType(t *testing.T) {
	h := fhirServer(t)
	const v2 = "http://terminology.hl7.org/CodeSystem/v2-0203"
	typed := func(code, value string) string {
		return `{"type":{"coding":[{"system":"` + v2 + `","code":"` + code + `"}],"text":"typed"},"system":"urn:sys:` + code + `","value":"` + value + `"}`
	}
	for _, body := range []string{
		`{"resourceType":"Patient","id":"ot1","identifier":[` + typed("MR", "M123") + `,` + typed("SS", "999") + `]}`,
		`{"resourceType":"Patient","id":"ot2","identifier":[` + typed("MR", "999") + `]}`,
	} {
		var m map[string]any
		_ = json.Unmarshal([]byte(body), &m)
		if rec := req(h, "PUT", "/fhir/Patient/"+m["id"].(string), body); rec.Code != 201 {
			t.Fatalf("PUT = %d %s", rec.Code, rec.Body)
		}
	}
	ids := func(target string) string {
		t.Helper()
		rec := req(h, "GET", target, "")
		if rec.Code != 200 {
			t.Fatalf("GET %s = %d %s", target, rec.Code, rec.Body)
		}
		var out []string
		for _, e := range entriesOf(decode(t, rec)) {
			out = append(out, e["resource"].(map[string]any)["id"].(string))
		}
		return strings.Join(out, ",")
	}
	q := func(v string) string { return "/fhir/Patient?_sort=_id&identifier:of-type=" + url.QueryEscape(v) }
	for _, tc := range []struct{ value, want string }{
		{v2 + "|MR|M123", "ot1"},
		{v2 + "|MR|999", "ot2"},
		{v2 + "|SS|999", "ot1"},
		{v2 + "|MR|M123," + v2 + "|MR|999", "ot1,ot2"},
		{v2 + "|DL|999", ""},
		{"|MR|M123", ""}, // an empty system is no system
		{"urn:other|MR|M123", ""},
	} {
		if got := ids(q(tc.value)); got != tc.want {
			t.Errorf("identifier:of-type=%s = [%s], want [%s]", tc.value, got, tc.want)
		}
	}
	// Leniently too, a malformed value is 400, never dropped.
	for _, prefer := range []string{"", "Prefer: handling=lenient"} {
		for _, v := range []string{v2 + "|MR", "SECRET123", v2 + "||SECRET123"} {
			rec := req(h, "GET", q(v), "", prefer)
			assertOutcome(t, rec, 400, "search-value-invalid", "")
			if strings.Contains(rec.Body.String(), "SECRET123") {
				t.Errorf("the outcome repeats the value: %s", rec.Body)
			}
		}
	}
	// A parameter of codes has no identifier types.
	assertOutcome(t, req(h, "GET", "/fhir/Patient?gender:of-type=a|b|c", ""), 400, "search-modifier-unsupported", "")
}
