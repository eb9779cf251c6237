package gateway_test

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// tenantSearch is what a search showed one client: the ids of its matches
// and included resources, its total, and how many resources it said it
// withheld (an outcome entry).
type tenantSearch struct {
	Matches, Included []string // Type/id
	Total             int
	Withheld          bool
}

// searchAs runs GET /fhir/<query> with token and returns what it showed.
func searchAs(t *testing.T, h http.Handler, token, query string) tenantSearch {
	t.Helper()
	rec := req(h, "GET", "/fhir/"+query, "", token)
	if rec.Code != http.StatusOK {
		t.Fatalf("GET %s = %d %s", query, rec.Code, rec.Body)
	}
	var b struct {
		Total int
		Entry []struct {
			Resource struct{ ResourceType, ID string }
			Search   struct{ Mode string }
		}
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &b); err != nil {
		t.Fatal(err)
	}
	out := tenantSearch{Total: b.Total}
	for _, e := range b.Entry {
		ref := e.Resource.ResourceType + "/" + e.Resource.ID
		switch e.Search.Mode {
		case "match":
			out.Matches = append(out.Matches, ref)
		case "include":
			out.Included = append(out.Included, ref)
		case "outcome":
			out.Withheld = true
		}
	}
	return out
}

// createAs creates a resource with token and returns its id.
func createAs(t *testing.T, h http.Handler, token, typ, body string) string {
	t.Helper()
	rec := req(h, "POST", "/fhir/"+typ, body, token)
	if rec.Code != http.StatusCreated {
		t.Fatalf("POST %s = %d %s", typ, rec.Code, rec.Body)
	}
	return decode(t, rec)["id"].(string)
}

// clientConformance are resources of the conformance types clients may
// write (the gateway publishes none of them), each naming a Patient.
var clientConformance = map[string]string{
	"ConceptMap": `{"resourceType":"ConceptMap","status":"draft","name":"clinicLocal",` +
		`"description":"local map; patient Zelda Bravopatient uses code K1"%s}`,
	"NamingSystem": `{"resourceType":"NamingSystem","name":"clinicLocal","status":"draft","kind":"identifier",` +
		`"date":"2026-01-01","description":"patient Zelda Bravopatient","uniqueId":[{"type":"uri","value":"urn:x-clinic:ids"}]%s}`,
	"CapabilityStatement": `{"resourceType":"CapabilityStatement","status":"draft","date":"2026-01-01","kind":"instance",` +
		`"fhirVersion":"4.0.1","format":["json"],"description":"patient Zelda Bravopatient"%s}`,
}

// aboutPatient is the extension that makes a clientConformance resource
// reference Patient/id.
func aboutPatient(id string) string {
	return `,"extension":[{"url":"http://clinic.example/about","valueReference":{"reference":"Patient/` + id + `"}}]`
}

// TestTenantClientConformance: a ConceptMap, NamingSystem or
// CapabilityStatement a clinic's client writes belongs to that clinic,
// like any resource: another clinic finds it by no read, history or
// search, cannot change it, and an all-tenant reader sees it. (The
// gateway's own published conformance resources stay readable by all:
// TestTenantSharedHops.)
func TestTenantClientConformance(t *testing.T) {
	h, _, tok := tenantsServer(t)
	for typ, body := range clientConformance {
		t.Run(typ, func(t *testing.T) {
			id := createAs(t, h, tok["clinA"], typ, strings.Replace(body, "%s", "", 1))
			for _, c := range []struct {
				client string
				want   int
			}{{"clinA", 200}, {"opAll", 200}, {"clinB", 404}} {
				for _, path := range []string{typ + "/" + id, typ + "/" + id + "/_history/1", typ + "/" + id + "/_history"} {
					if rec := req(h, "GET", "/fhir/"+path, "", tok[c.client]); rec.Code != c.want {
						t.Errorf("%s: GET %s = %d, want %d", c.client, path, rec.Code, c.want)
					}
				}
			}
			for _, q := range []string{typ + "?_id=" + id, typ, typ + "/_history"} {
				got := searchAs(t, h, tok["clinB"], q)
				if strings.Contains(strings.Join(got.Matches, " "), id) || got.Total != 0 {
					t.Errorf("clinB: GET %s = total %d, matches %v; want none of clinic-a's", q, got.Total, got.Matches)
				}
			}
			if got := searchAs(t, h, tok["clinA"], typ+"?_id="+id); got.Total != 1 {
				t.Errorf("clinA: GET %s?_id = total %d, want its own 1", typ, got.Total)
			}
			// clinic-b cannot change it (the same answer as for an unused
			// id) nor delete it.
			upd := `{"resourceType":"` + typ + `","id":"` + id + `"` + strings.TrimPrefix(strings.Replace(body, "%s", "", 1), `{"resourceType":"`+typ+`"`)
			if rec := req(h, "PUT", "/fhir/"+typ+"/"+id, upd, tok["clinB"]); rec.Code != http.StatusNotFound {
				t.Errorf("clinB: PUT %s = %d %s, want 404", typ, rec.Code, rec.Body)
			}
			req(h, "DELETE", "/fhir/"+typ+"/"+id, "", tok["clinB"])
			if rec := req(h, "GET", "/fhir/"+typ+"/"+id, "", tok["clinA"]); rec.Code != 200 {
				t.Errorf("clinA: GET %s after clinB's DELETE = %d, want 200", typ, rec.Code)
			}
		})
	}
}

// TestTenantSharedHops: each hop of a search (the matches, the far end of
// a chain or _has, an included resource, a conditional reference's
// criteria) is confined by the tenancy rule of its own type: the caller's
// tenant, plus, for the types of the gateway's published conformance
// resources, those resources. A chain from a conformance type never
// reaches another clinic's Patient, a _has on the gateway's CodeSystem
// never another clinic's Provenance.
func TestTenantSharedHops(t *testing.T) {
	h, _, tok := tenantsServer(t)
	pat := createAs(t, h, tok["clinA"], "Patient",
		`{"resourceType":"Patient","name":[{"family":"Testpatient","given":["Jordan"]}],"gender":"male","birthDate":"1979-11-03"}`)
	// clinic-b's own ConceptMap naming clinic-a's Patient, and clinic-a's
	// naming it.
	cmB := createAs(t, h, tok["clinB"], "ConceptMap", strings.Replace(clientConformance["ConceptMap"], "%s", aboutPatient(pat), 1))
	cmA := createAs(t, h, tok["clinA"], "ConceptMap", strings.Replace(clientConformance["ConceptMap"], "%s", aboutPatient(pat), 1))
	const csURL = "https://ketamine-gateway.org/fhir/CodeSystem/ketamine-gateway"
	prov := func(agent string) string {
		return `{"resourceType":"Provenance","target":[{"reference":"CodeSystem/ketamine-gateway"}],"recorded":"2026-01-01T00:00:00Z",` +
			`"agent":[{"who":{"reference":"Practitioner/` + agent + `"}}]}`
	}
	provA := createAs(t, h, tok["clinA"], "Provenance", prov("secret-a"))
	provB := createAs(t, h, tok["clinB"], "Provenance", prov("own-b"))

	for _, c := range []struct {
		name, client, query string
		matches, included   []string
		withheld            bool
	}{
		{name: "chain from clinic-b's ConceptMap to clinic-a's Patient", client: "clinB",
			query: "ConceptMap?_id=" + cmB + "&patient.name=Testpatient"},
		{name: "chain by birth date", client: "clinB", query: "ConceptMap?_id=" + cmB + "&patient:Patient.birthdate=1979-11-03"},
		{name: "chain by gender", client: "clinB", query: "ConceptMap?_id=" + cmB + "&patient.gender=male"},
		{name: "the reference itself is clinic-b's own data", client: "clinB", query: "ConceptMap?patient=Patient/" + pat,
			matches: []string{"ConceptMap/" + cmB}},
		{name: "chain to clinic-a's ConceptMap", client: "clinB", query: "ConceptMap?patient.name=Testpatient"},
		{name: "clinic-a's chain to its own Patient", client: "clinA", query: "ConceptMap?patient.name=Testpatient",
			matches: []string{"ConceptMap/" + cmA}},
		{name: "_has on an AuditEvent of clinic-a", client: "clinB", query: "ConceptMap?_has:AuditEvent:entity:site=clinic-a"},
		{name: "_has on the gateway's CodeSystem through clinic-a's Provenance", client: "clinB",
			query: "CodeSystem?_has:Provenance:target:agent=Practitioner/secret-a"},
		{name: "_has on the gateway's CodeSystem through clinic-a's own Provenance", client: "clinA",
			query: "CodeSystem?_has:Provenance:target:agent=Practitioner/secret-a", matches: []string{"CodeSystem/ketamine-gateway"}},
		{name: "_revinclude on the gateway's CodeSystem", client: "clinB", query: "CodeSystem?_id=ketamine-gateway&_revinclude=Provenance:target",
			matches: []string{"CodeSystem/ketamine-gateway"}, included: []string{"Provenance/" + provB}},
		{name: "_include from clinic-b's ConceptMap", client: "clinB", query: "ConceptMap?_id=" + cmB + "&_include=ConceptMap:patient",
			matches: []string{"ConceptMap/" + cmB}},
		{name: "chain to the gateway's CodeSystem", client: "clinB", query: "Provenance?target:CodeSystem.url=" + url.QueryEscape(csURL),
			matches: []string{"Provenance/" + provB}},
		{name: "_include of the gateway's CodeSystem", client: "clinA", query: "Provenance?_id=" + provA + "&_include=Provenance:target",
			matches: []string{"Provenance/" + provA}, included: []string{"CodeSystem/ketamine-gateway"}},
		{name: "the gateway's CodeSystem by url", client: "clinB", query: "CodeSystem?url=" + url.QueryEscape(csURL),
			matches: []string{"CodeSystem/ketamine-gateway"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			got := searchAs(t, h, tok[c.client], c.query+"&_total=accurate")
			if strings.Join(got.Matches, " ") != strings.Join(c.matches, " ") || got.Total != len(c.matches) ||
				strings.Join(got.Included, " ") != strings.Join(c.included, " ") || got.Withheld != c.withheld {
				t.Errorf("%s: GET %s = matches %v (total %d), included %v, withheld %v; want %v, %v, %v",
					c.client, c.query, got.Matches, got.Total, got.Included, got.Withheld, c.matches, c.included, c.withheld)
			}
		})
	}

	// The gateway's own are read, and their history listed, by every tenant.
	for _, client := range []string{"clinA", "clinB", "opAll"} {
		for _, path := range []string{"CodeSystem/ketamine-gateway", "CodeSystem/ketamine-gateway/_history"} {
			if rec := req(h, "GET", "/fhir/"+path, "", tok[client]); rec.Code != 200 || !strings.Contains(rec.Body.String(), csURL) {
				t.Errorf("%s: GET %s = %d, want 200 with the CodeSystem", client, path, rec.Code)
			}
		}
	}

	// A conditional reference's criteria: the same confinement.
	condRef := func(criteria string) string {
		return `{"resourceType":"Bundle","type":"transaction","entry":[{"request":{"method":"POST","url":"Provenance"},` +
			`"resource":{"resourceType":"Provenance","target":[{"reference":"` + criteria + `"}],"recorded":"2026-01-01T00:00:00Z",` +
			`"agent":[{"who":{"reference":"Practitioner/own-b"}}]}}]}`
	}
	for _, c := range []struct {
		name, client, criteria string
		want                   int
	}{
		{"a chain to clinic-a's Patient", "clinB", "ConceptMap?_id=" + cmB + "&patient.name=Testpatient", 400},
		{"the same chain, unresolved", "clinB", "ConceptMap?_id=" + cmB + "&patient.name=Nobody", 400},
		{"a _has through clinic-a's Provenance", "clinB", "CodeSystem?url=" + url.QueryEscape(csURL) + "&_has:Provenance:target:agent=Practitioner/secret-a", 400},
		{"clinic-a's own", "clinA", "CodeSystem?url=" + url.QueryEscape(csURL) + "&_has:Provenance:target:agent=Practitioner/secret-a", 200},
	} {
		t.Run("conditional reference: "+c.name, func(t *testing.T) {
			if rec := req(h, "POST", "/fhir", condRef(c.criteria), tok[c.client]); rec.Code != c.want {
				t.Errorf("%s: conditional reference %s = %d %s, want %d", c.client, c.criteria, rec.Code, rec.Body, c.want)
			}
		})
	}
}
