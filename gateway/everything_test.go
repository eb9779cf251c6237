package gateway_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/ketamine-gateway/ketamine-gateway/schemas/r4"
)

// TestEverythingDeclared: the CapabilityStatement names the gateway's own
// $everything OperationDefinition, which declares exactly what the
// operation takes (instance level; _count, _offset, _since, _type), is
// served and valid R4; the operation answers GET and POST (a Parameters
// body) alike, and refuses what the definition does not declare.
func TestEverythingDeclared(t *testing.T) {
	h := fhirServer(t)
	pid := seedChain(t, h)

	cs := decode(t, req(h, "GET", "/fhir/metadata", ""))
	var def string
	for _, r := range cs["rest"].([]any)[0].(map[string]any)["resource"].([]any) {
		r := r.(map[string]any)
		if r["type"] != "Patient" {
			continue
		}
		for _, op := range r["operation"].([]any) {
			if op := op.(map[string]any); op["name"] == "everything" {
				def = op["definition"].(string)
			}
		}
	}
	const want = "https://ketamine-gateway.org/fhir/OperationDefinition/Patient-everything"
	if def != want {
		t.Fatalf("metadata: Patient operation everything definition = %q, want %s", def, want)
	}
	rec := req(h, "GET", "/fhir/OperationDefinition/Patient-everything", "")
	if rec.Code != http.StatusOK {
		t.Fatalf("GET OperationDefinition/Patient-everything = %d %s", rec.Code, rec.Body)
	}
	if res := r4.New(r4.Options{}).Validate(rec.Body.Bytes()); !res.Valid() {
		t.Errorf("OperationDefinition/Patient-everything is not valid R4: %+v", res.Issues)
	}
	od := decode(t, rec)
	if od["url"] != want || od["type"] != false || od["instance"] != true || od["affectsState"] != false {
		t.Errorf("OperationDefinition = url %v type %v instance %v affectsState %v", od["url"], od["type"], od["instance"], od["affectsState"])
	}
	var in []string
	for _, p := range od["parameter"].([]any) {
		if p := p.(map[string]any); p["use"] == "in" {
			in = append(in, p["name"].(string))
		}
	}
	if strings.Join(in, ",") != "_since,_type,_count,_offset" {
		t.Errorf("declared in-parameters %v, want _since,_type,_count,_offset", in)
	}

	// total counts every match; the page holds _count of them.
	answer := func(t *testing.T, rec *httptest.ResponseRecorder) (any, int) {
		t.Helper()
		if rec.Code != http.StatusOK {
			t.Fatalf("$everything = %d %s", rec.Code, rec.Body)
		}
		b := decode(t, rec)
		entries, _ := b["entry"].([]any)
		return b["total"], len(entries)
	}
	path := "/fhir/Patient/" + pid + "/$everything"
	for _, tc := range []struct {
		name, query, body string
		total             float64
		page              int
	}{
		{"POST without a body", "", "", 3, 3},
		{"POST with an empty Parameters", "", `{"resourceType":"Parameters"}`, 3, 3},
		{"POST _type", "", `{"resourceType":"Parameters","parameter":[{"name":"_type","valueCode":"Observation"}]}`, 2, 2},
		{"POST _type repeated", "", `{"resourceType":"Parameters","parameter":[{"name":"_type","valueCode":"Observation"},{"name":"_type","valueCode":"Provenance"}]}`, 3, 3},
		{"POST _since", "", `{"resourceType":"Parameters","parameter":[{"name":"_since","valueInstant":"2999-01-01T00:00:00Z"}]}`, 1, 1},
		{"POST _count", "", `{"resourceType":"Parameters","parameter":[{"name":"_count","valueInteger":1}]}`, 3, 1},
		{"POST URL and body", "?_type=Observation", `{"resourceType":"Parameters","parameter":[{"name":"_count","valueInteger":1}]}`, 2, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if total, page := answer(t, req(h, "POST", path+tc.query, tc.body)); total != tc.total || page != tc.page {
				t.Errorf("POST %s%s %s: total %v, %d on the page; want %v, %d", path, tc.query, tc.body, total, page, tc.total, tc.page)
			}
		})
	}
	for _, tc := range []struct {
		name, body, rule string
	}{
		{"not a Parameters", `{"resourceType":"Patient"}`, "operation-parameters-invalid"},
		{"_count as a string", `{"resourceType":"Parameters","parameter":[{"name":"_count","valueString":"5"}]}`, "operation-parameters-invalid"},
		{"_since without a value", `{"resourceType":"Parameters","parameter":[{"name":"_since"}]}`, "operation-parameters-invalid"},
		{"start", `{"resourceType":"Parameters","parameter":[{"name":"start","valueDate":"2020-01-01"}]}`, "search-param-unsupported"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			assertOutcome(t, req(h, "POST", path, tc.body), 400, tc.rule, "")
		})
	}
	// What the definition does not declare is refused, saying what is taken.
	rec = req(h, "GET", path+"?start=2020-01-01", "")
	assertOutcome(t, rec, 400, "search-param-unsupported", "")
	if !strings.Contains(rec.Body.String(), "_since") {
		t.Errorf("start: %s, want the parameters taken named", rec.Body)
	}
	rec = req(h, "GET", "/fhir/Patient/$everything", "")
	assertOutcome(t, rec, 404, "operation-unknown", "")
	if !strings.Contains(rec.Body.String(), "/fhir/Patient/{id}") {
		t.Errorf("Patient/$everything: %s, want the instance form named", rec.Body)
	}
}
