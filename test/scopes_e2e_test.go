package test

import (
	"encoding/base64"
	"fmt"
	"net/url"
	"os"
	"slices"
	"sort"
	"strings"
	"testing"
)

// The scope matrix: for each set of scopes and each way a resource can
// leave the gateway, the resource types the scopes do not allow never
// appear in the answer. A new way out (the console, bulk export,
// $everything) is one more row of disclosureWays.

// scopeClients are the clients of the matrix, all of tenant clinic-a.
var scopeClients = []securedClient{
	{id: "seeder", tenant: "clinic-a", scopes: []string{"system/*.cruds", "gateway/ingest"}},
	{id: "ingester", tenant: "clinic-a", scopes: []string{"gateway/ingest"}},
	{id: "obs-reader", tenant: "clinic-a", scopes: []string{"system/Observation.rs"}},
	{id: "obs-searcher", tenant: "clinic-a", scopes: []string{"system/Observation.s"}},
	{id: "patient-reader", tenant: "clinic-a", scopes: []string{"system/Patient.rs"}},
	{id: "obs-prov", tenant: "clinic-a", scopes: []string{"system/Observation.rs", "system/Provenance.rs"}},
	{id: "obs-patient-creator", tenant: "clinic-a", scopes: []string{"system/Observation.rs", "system/Patient.c"}},
	{id: "all-reader", tenant: "clinic-a", scopes: []string{"system/*.rs"}},
	{id: "obs-updater", tenant: "clinic-a", scopes: []string{"system/Observation.u"}},
	{id: "obs-deleter", tenant: "clinic-a", scopes: []string{"system/Observation.d"}},
	{id: "other-tenant", tenant: "hospital-b", scopes: []string{"system/*.rs"}},
}

// seeded are the resources the matrix looks for, by type.
type seeded map[string]string

// disclosureWay is one way resources leave the gateway: it makes the
// requests a client with token would make and returns the answers.
type disclosureWay struct {
	name  string
	fetch func(t *testing.T, base, token string, ids seeded) []map[string]any
}

func get(t *testing.T, url, token string) []map[string]any {
	t.Helper()
	status, _, b := call(t, "GET", url, token, "")
	if status >= 500 {
		t.Errorf("GET %s = %d %v", url, status, b)
	}
	return []map[string]any{b}
}

// patchTest is a JSON Patch that writes nothing: it tests that the
// resource's id is id (a client that may not read learns whether it holds).
func patchTest(id string) string { return `[{"op":"test","path":"/id","value":"` + id + `"}]` }

var disclosureWays = []disclosureWay{
	{"read", func(t *testing.T, base, token string, ids seeded) (out []map[string]any) {
		for typ, id := range ids {
			out = append(out, get(t, base+"/fhir/"+typ+"/"+id, token)...)
			out = append(out, get(t, base+"/fhir/"+typ+"/"+id+"/_history/1", token)...)
		}
		return out
	}},
	{"search", func(t *testing.T, base, token string, ids seeded) (out []map[string]any) {
		for typ := range ids {
			out = append(out, get(t, base+"/fhir/"+typ+"?_count=200", token)...)
			status, _, b := doReq(t, "POST", base+"/fhir/"+typ+"/_search", "_count=200",
				"Authorization: Bearer "+token, "Content-Type: application/x-www-form-urlencoded")
			if status >= 500 {
				t.Errorf("POST %s/_search = %d", typ, status)
			}
			out = append(out, b)
		}
		return out
	}},
	{"include", func(t *testing.T, base, token string, ids seeded) []map[string]any {
		return append(get(t, base+"/fhir/Observation?_include=Observation:subject&_include=Observation:patient", token),
			get(t, base+"/fhir/Encounter?_include=Encounter:subject&_include=Encounter:patient", token)...)
	}},
	{"revinclude", func(t *testing.T, base, token string, ids seeded) []map[string]any {
		return append(get(t, base+"/fhir/Observation?_revinclude=Provenance:target&_revinclude=AuditEvent:entity", token),
			get(t, base+"/fhir/Patient?_revinclude=Observation:subject&_revinclude=Encounter:subject", token)...)
	}},
	{"include:iterate", func(t *testing.T, base, token string, ids seeded) []map[string]any {
		// Provenance -> Observation -> Patient and back: every round is
		// checked, and starts only from what the caller was shown.
		return append(get(t, base+"/fhir/Provenance?_include:iterate=Provenance:target&_include:iterate=Observation:subject", token),
			get(t, base+"/fhir/Patient?_revinclude:iterate=Observation:subject&_revinclude:iterate=Provenance:target&_revinclude:iterate=Encounter:subject", token)...)
	}},
	{"history", func(t *testing.T, base, token string, ids seeded) (out []map[string]any) {
		out = get(t, base+"/fhir/_history?_count=1000", token)
		out = append(out, get(t, base+"/fhir/_history?_type=AuditEvent&_count=1000", token)...) // not without _type
		for typ, id := range ids {
			out = append(out, get(t, base+"/fhir/"+typ+"/_history", token)...)
			out = append(out, get(t, base+"/fhir/"+typ+"/"+id+"/_history", token)...)
		}
		return out
	}},
	{"$everything", func(t *testing.T, base, token string, ids seeded) (out []map[string]any) {
		// AuditEvents only when _type names them (docs/fhir.md).
		out = append(out, get(t, base+"/fhir/Patient/"+ids["Patient"]+"/$everything?_count=1000", token)...)
		out = append(out, get(t, base+"/fhir/Patient/"+ids["Patient"]+"/$everything?_type=AuditEvent,Observation&_count=1000", token)...)
		// The POST form, its parameters in a Parameters body.
		status, _, b := call(t, "POST", base+"/fhir/Patient/"+ids["Patient"]+"/$everything", token,
			`{"resourceType":"Parameters","parameter":[{"name":"_type","valueCode":"AuditEvent"},{"name":"_type","valueCode":"Observation"},{"name":"_count","valueInteger":1000}]}`)
		if status >= 500 {
			t.Errorf("POST $everything = %d %v", status, b)
		}
		out = append(out, b)
		return append(out, get(t, base+"/fhir/Patient/"+ids["Patient"]+"/Observation", token)...)
	}},
	{"batch entry", func(t *testing.T, base, token string, ids seeded) []map[string]any {
		var entries []string
		for typ, id := range ids {
			entries = append(entries, fmt.Sprintf(`{"request":{"method":"GET","url":"%s/%s"}}`, typ, id),
				fmt.Sprintf(`{"request":{"method":"GET","url":"%s?_id=%s"}}`, typ, id))
		}
		entries = append(entries, `{"request":{"method":"GET","url":"Observation?_include=Observation:subject"}}`)
		status, _, b := call(t, "POST", base+"/fhir", token, `{"resourceType":"Bundle","type":"batch","entry":[`+strings.Join(entries, ",")+`]}`)
		if status != 200 {
			t.Errorf("batch = %d %v", status, b)
		}
		return []map[string]any{b}
	}},
	{"batch history and compartment entries", func(t *testing.T, base, token string, ids seeded) []map[string]any {
		entries := []string{`{"request":{"method":"GET","url":"_history?_count=1000"}}`,
			`{"request":{"method":"GET","url":"Patient/` + ids["Patient"] + `/$everything?_count=1000"}}`,
			`{"request":{"method":"GET","url":"Patient/` + ids["Patient"] + `/Observation"}}`}
		for typ, id := range ids {
			entries = append(entries, fmt.Sprintf(`{"request":{"method":"GET","url":"%s/_history"}}`, typ),
				fmt.Sprintf(`{"request":{"method":"GET","url":"%s/%s/_history"}}`, typ, id),
				fmt.Sprintf(`{"request":{"method":"GET","url":"%s/%s/_history/1"}}`, typ, id))
		}
		status, _, b := call(t, "POST", base+"/fhir", token, `{"resourceType":"Bundle","type":"batch","entry":[`+strings.Join(entries, ",")+`]}`)
		if status != 200 {
			t.Errorf("batch = %d %v", status, b)
		}
		return []map[string]any{b}
	}},
	{"patch", func(t *testing.T, base, token string, ids seeded) (out []map[string]any) {
		// A patch that changes nothing answers the stored version: a
		// client with u needs r (or s) too (docs/security.md).
		var entries []string
		for typ, id := range ids {
			status, _, b := doReq(t, "PATCH", base+"/fhir/"+typ+"/"+id, patchTest(id), "Authorization: Bearer "+token,
				"Content-Type: application/json-patch+json", "Prefer: return=representation")
			if status >= 500 {
				t.Errorf("PATCH %s = %d %v", typ, status, b)
			}
			out = append(out, b)
			entries = append(entries, fmt.Sprintf(`{"resource":{"resourceType":"Binary","contentType":"application/json-patch+json","data":"%s"},`+
				`"request":{"method":"PATCH","url":"%s/%s"}}`, base64.StdEncoding.EncodeToString([]byte(patchTest(id))), typ, id))
		}
		// A FHIRPath Patch that replaces a value by itself.
		status, _, b := doReq(t, "PATCH", base+"/fhir/Observation/"+ids["Observation"], `{"resourceType":"Parameters","parameter":[{"name":"operation","part":[`+
			`{"name":"type","valueCode":"replace"},{"name":"path","valueString":"Observation.status"},{"name":"value","valueCode":"final"}]}]}`,
			"Authorization: Bearer "+token, "Content-Type: application/fhir+json", "Prefer: return=representation")
		if status >= 500 {
			t.Errorf("FHIRPath PATCH = %d %v", status, b)
		}
		out = append(out, b)
		for _, kind := range []string{"batch", "transaction"} {
			for _, e := range entries {
				status, _, b := doReq(t, "POST", base+"/fhir", `{"resourceType":"Bundle","type":"`+kind+`","entry":[`+e+`]}`,
					"Authorization: Bearer "+token, "Content-Type: application/fhir+json", "Prefer: return=representation")
				if status >= 500 {
					t.Errorf("%s PATCH entry = %d %v", kind, status, b)
				}
				out = append(out, b)
			}
		}
		return out
	}},
	{"transaction response", func(t *testing.T, base, token string, ids seeded) (out []map[string]any) {
		for typ, id := range ids {
			status, _, b := call(t, "POST", base+"/fhir", token, fmt.Sprintf(`{"resourceType":"Bundle","type":"transaction","entry":[`+
				`{"request":{"method":"GET","url":"%s/%s"}},{"request":{"method":"GET","url":"%s?_id=%s"}}]}`, typ, id, typ, id))
			if status >= 500 {
				t.Errorf("transaction = %d %v", status, b)
			}
			out = append(out, b)
		}
		// A conditional create that matches an existing Patient, as a
		// transaction entry and as a single create, with the representation.
		create := `{"resourceType":"Patient","identifier":[{"system":"http://clinic-a.example/mrn","value":"SM-1"}]}`
		tx := `{"resourceType":"Bundle","type":"transaction","entry":[{"resource":` + create +
			`,"request":{"method":"POST","url":"Patient","ifNoneExist":"identifier=http://clinic-a.example/mrn|SM-1"}}]}`
		_, _, b := doReq(t, "POST", base+"/fhir", tx, "Authorization: Bearer "+token, "Prefer: return=representation")
		_, _, c := doReq(t, "POST", base+"/fhir/Patient", create, "Authorization: Bearer "+token,
			"If-None-Exist: identifier=http://clinic-a.example/mrn|SM-1")
		return append(out, b, c)
	}},
}

// seedMatrix stores a Patient, an Encounter, an Observation and a
// Provenance (the requests leave AuditEvents naming them).
func seedMatrix(t *testing.T, base, token string) seeded {
	t.Helper()
	post := func(typ, body string) string {
		status, _, b := call(t, "POST", base+"/fhir/"+typ, token, body)
		if status != 201 {
			t.Fatalf("seed %s = %d %v", typ, status, b)
		}
		return b["id"].(string)
	}
	ids := seeded{}
	ids["Patient"] = post("Patient", `{"resourceType":"Patient","identifier":[{"system":"http://clinic-a.example/mrn","value":"SM-1"}],`+
		`"name":[{"family":"Matrix","given":["Sam"]}],"birthDate":"1970-01-01"}`)
	ids["Encounter"] = post("Encounter", `{"resourceType":"Encounter","status":"finished","class":{"system":`+
		`"http://terminology.hl7.org/CodeSystem/v3-ActCode","code":"AMB"},"subject":{"reference":"Patient/`+ids["Patient"]+`"}}`)
	ids["Observation"] = post("Observation", `{"resourceType":"Observation","status":"final","code":{"text":"mood"},`+
		`"subject":{"reference":"Patient/`+ids["Patient"]+`"},"encounter":{"reference":"Encounter/`+ids["Encounter"]+`"}}`)
	ids["Provenance"] = post("Provenance", `{"resourceType":"Provenance","target":[{"reference":"Observation/`+ids["Observation"]+`"}],`+
		`"recorded":"2026-01-01T00:00:00Z","agent":[{"who":{"display":"seeder"}}]}`)
	// Read once more so that AuditEvents name every resource.
	for typ, id := range ids {
		call(t, "GET", base+"/fhir/"+typ+"/"+id, token, "")
	}
	_, _, b := call(t, "GET", base+"/fhir/AuditEvent?_count=1", token, "")
	entries, _ := b["entry"].([]any)
	if len(entries) == 0 {
		t.Fatalf("no AuditEvent to find: %v", b)
	}
	ids["AuditEvent"] = entries[0].(map[string]any)["resource"].(map[string]any)["id"].(string)
	return ids
}

// resourceTypes lists the types of resources(answers), sorted.
func resourceTypes(answers []map[string]any) []string {
	var out []string
	for _, r := range resources(answers) {
		if rt := r["resourceType"].(string); !slices.Contains(out, rt) {
			out = append(out, rt)
		}
	}
	sort.Strings(out)
	return out
}

// readable lists the types the scopes let a client read or search ("*"
// for every type).
func readable(scopes []string) []string {
	var out []string
	for _, s := range scopes {
		typ, perms, _ := strings.Cut(strings.TrimPrefix(s, "system/"), ".")
		if strings.ContainsAny(perms, "rs") {
			out = append(out, typ)
		}
	}
	return out
}

func TestScopeMatrix(t *testing.T) {
	s := startSecuredClients(t, scopeClients, nil, nil, "--rate-limit", "100000")
	seeder := s.token(t, "seeder", "system/*.cruds gateway/ingest")
	ids := seedMatrix(t, s.base, seeder)

	for _, c := range scopeClients[1:] {
		token := s.token(t, c.id, strings.Join(c.scopes, " "))
		allowed := readable(c.scopes)
		for _, way := range disclosureWays {
			t.Run(c.id+"/"+way.name, func(t *testing.T) {
				answers := way.fetch(t, s.base, token, ids)
				for _, rt := range resourceTypes(answers) {
					if !slices.Contains(allowed, rt) && !slices.Contains(allowed, "*") {
						t.Errorf("a %s left the gateway for scopes %v", rt, c.scopes)
					}
				}
				if c.tenant != "clinic-a" {
					for _, r := range resources(answers) {
						src, _ := r["source"].(map[string]any)
						site, _ := src["site"].(string)
						if id, _ := r["id"].(string); ids[r["resourceType"].(string)] == id || site == "clinic-a" {
							t.Errorf("another tenant saw clinic-a's %s/%s", r["resourceType"], id)
						}
					}
				}
			})
		}
	}

	// The matrix proves something only if the ways do carry those types
	// to a client allowed to see them, and say so to one that is not.
	all := s.token(t, "all-reader", "system/*.rs")
	for way, want := range map[string][]string{
		"include":                               {"Encounter", "Observation", "Patient"},
		"search":                                {"AuditEvent", "Encounter", "Observation", "Patient", "Provenance"},
		"revinclude":                            {"AuditEvent", "Encounter", "Observation", "Patient", "Provenance"},
		"include:iterate":                       {"Encounter", "Observation", "Patient", "Provenance"},
		"history":                               {"Encounter", "Observation", "Patient", "Provenance"},
		"$everything":                           {"AuditEvent", "Encounter", "Observation", "Patient"},
		"batch entry":                           {"AuditEvent", "Encounter", "Observation", "Patient", "Provenance"},
		"batch history and compartment entries": {"AuditEvent", "Encounter", "Observation", "Patient", "Provenance"},
		"transaction response":                  {"AuditEvent", "Encounter", "Observation", "Patient", "Provenance"},
	} {
		i := slices.IndexFunc(disclosureWays, func(w disclosureWay) bool { return w.name == way })
		got := resourceTypes(disclosureWays[i].fetch(t, s.base, all, ids))
		for _, rt := range want {
			if !slices.Contains(got, rt) {
				t.Errorf("%s for system/*.rs carried %v, want %s among them", way, got, rt)
			}
		}
	}
	if got := resourceTypes(disclosureWays[slices.IndexFunc(disclosureWays, func(w disclosureWay) bool { return w.name == "patch" })].
		fetch(t, s.base, seeder, ids)); !slices.Contains(got, "Observation") || !slices.Contains(got, "Patient") {
		t.Errorf("patch for system/*.cruds carried %v, want Observation and Patient among them", got)
	}
	obs := s.token(t, "obs-reader", "system/Observation.rs")
	_, _, b := call(t, "GET", s.base+"/fhir/Observation?_include=Observation:subject&_revinclude=Provenance:target", obs, "")
	var status int
	if n := withheld(b); n != 2 {
		t.Errorf("Observation?_include&_revinclude for Observation.rs: withheld outcome says %d, want 2 (the Patient and the Provenance): %v", n, b)
	}
	// An ingest that matches a Patient stored before answers without it for
	// a client that may only ingest (what it wrote itself it gets back).
	first, _ := os.ReadFile("../schemas/examples/session/esketamine-nasal-session.json")
	second, _ := os.ReadFile("../schemas/examples/session/minimal-not-done-session.json")
	if status, _, b := doReq(t, "POST", s.base+"/ingest/session", string(first), "Authorization: Bearer "+seeder); status != 200 {
		t.Fatalf("ingest as seeder = %d %v", status, b)
	}
	ingester := s.token(t, "ingester", "gateway/ingest")
	status, _, b = doReq(t, "POST", s.base+"/ingest/session", string(second), "Authorization: Bearer "+ingester,
		"Prefer: return=representation")
	if got := resourceTypes([]map[string]any{b}); status != 200 || slices.Contains(got, "Patient") || len(got) == 0 {
		t.Errorf("ingest matching a stored Patient, for an ingest-only client = %d carrying %v, want 200 with its own resources and no Patient", status, got)
	}
	// A conditional create is a search of its type: a client that may
	// create Patients but not search them is refused before anything is
	// searched (it would learn whether, and which, Patient matches).
	creator := s.token(t, "obs-patient-creator", "system/Observation.rs system/Patient.c")
	status, _, c := doReq(t, "POST", s.base+"/fhir/Patient", `{"resourceType":"Patient","identifier":[{"system":"http://clinic-a.example/mrn","value":"SM-1"}]}`,
		"Authorization: Bearer "+creator, "If-None-Exist: identifier="+url.QueryEscape("http://clinic-a.example/mrn|SM-1"))
	if status != 403 || !strings.Contains(fmt.Sprint(c), "system/Patient.s") {
		t.Errorf("conditional create by a client that may not search Patients = %d %v, want 403 naming system/Patient.s", status, c)
	}
}

// withheld reads the count of a searchset's "results-withheld" outcome.
func withheld(b map[string]any) int {
	entries, _ := b["entry"].([]any)
	for _, e := range entries {
		r, _ := e.(map[string]any)["resource"].(map[string]any)
		if r["resourceType"] != "OperationOutcome" {
			continue
		}
		for _, is := range r["issue"].([]any) {
			i := is.(map[string]any)
			if i["code"] == "suppressed" {
				var n int
				fmt.Sscanf(i["details"].(map[string]any)["text"].(string), "%d", &n)
				return n
			}
		}
	}
	return 0
}

// resources lists the resources anywhere in answers (nested Bundles
// included), but the Bundles and OperationOutcomes themselves.
func resources(answers []map[string]any) []map[string]any {
	var out []map[string]any
	var walk func(v any)
	walk = func(v any) {
		switch n := v.(type) {
		case map[string]any:
			if rt, ok := n["resourceType"].(string); ok && rt != "Bundle" && rt != "OperationOutcome" {
				out = append(out, n)
			}
			for _, c := range n {
				walk(c)
			}
		case []any:
			for _, c := range n {
				walk(c)
			}
		}
	}
	for _, a := range answers {
		walk(a)
	}
	return out
}
