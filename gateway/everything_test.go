package gateway_test

import (
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"github.com/ketamine-gateway/ketamine-gateway/schemas/r4"
)

// TestEverythingDeclared: the CapabilityStatement names the gateway's own
// $everything OperationDefinition, which declares exactly what the
// operation takes (instance level; start, end, _since, _type, _count,
// _offset), is
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
				if doc, _ := op["documentation"].(string); !strings.Contains(doc, "start and end") || strings.Contains(doc, "not R4's start") {
					t.Errorf("metadata: the everything operation's documentation does not say it takes start and end: %q", doc)
				}
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
	if strings.Join(in, ",") != "start,end,_since,_type,_count,_offset" {
		t.Errorf("declared in-parameters %v, want start,end,_since,_type,_count,_offset", in)
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
		{"start as an integer", `{"resourceType":"Parameters","parameter":[{"name":"start","valueInteger":2020}]}`, "operation-parameters-invalid"},
		{"start not a date", `{"resourceType":"Parameters","parameter":[{"name":"start","valueDateTime":"2020-13"}]}`, "primitive-format"},
		{"end before start", `{"resourceType":"Parameters","parameter":[{"name":"start","valueDate":"2021"},{"name":"end","valueDate":"2020-12-31"}]}`, "search-value-invalid"},
		{"a parameter not declared", `{"resourceType":"Parameters","parameter":[{"name":"date","valueDate":"2020-01-01"}]}`, "search-param-unsupported"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			assertOutcome(t, req(h, "POST", path, tc.body), 400, tc.rule, "")
		})
	}
	// What the definition does not declare is refused, saying what is taken.
	rec = req(h, "GET", path+"?date=2020-01-01", "")
	assertOutcome(t, rec, 400, "search-param-unsupported", "")
	if !strings.Contains(rec.Body.String(), "start, end, _since") {
		t.Errorf("date: %s, want the parameters taken named", rec.Body)
	}
	rec = req(h, "GET", "/fhir/Patient/$everything", "")
	assertOutcome(t, rec, 404, "operation-unknown", "")
	if !strings.Contains(rec.Body.String(), "/fhir/Patient/{id}") {
		t.Errorf("Patient/$everything: %s, want the instance form named", rec.Body)
	}
}

// TestEverythingCarePeriod: start and end keep the resources whose date of
// care (an Observation's effective[x], a MedicationAdministration's
// effective period, an AdverseEvent's date) overlaps the period, those
// without one, and those of types without a care date (Condition);
// the Patient is first whatever they say, a dateTime and a partial date
// are taken, and the next page keeps the period.
func TestEverythingCarePeriod(t *testing.T) {
	h := fhirServer(t)
	rec := req(h, "POST", "/fhir/Patient", `{"resourceType":"Patient","name":[{"family":"Okafor"}]}`)
	if rec.Code != http.StatusCreated {
		t.Fatalf("create Patient = %d %s", rec.Code, rec.Body)
	}
	pid := decode(t, rec)["id"].(string)
	subject := `"subject":{"reference":"Patient/` + pid + `"}`
	made := map[string]string{}
	for name, body := range map[string]string{
		"obs-march": `{"resourceType":"Observation","status":"final","code":{"text":"PHQ-9"},` + subject + `,"effectiveDateTime":"2026-03-10T09:00:00Z"}`,
		"obs-june":  `{"resourceType":"Observation","status":"final","code":{"text":"PHQ-9"},` + subject + `,"effectiveDateTime":"2026-06-15"}`,
		"obs-none":  `{"resourceType":"Observation","status":"final","code":{"text":"PHQ-9"},` + subject + `}`,
		"ma-june":   `{"resourceType":"MedicationAdministration","status":"completed","medicationCodeableConcept":{"text":"ketamine"},` + subject + `,"effectivePeriod":{"start":"2026-05-31T23:20:00Z","end":"2026-06-01T00:10:00Z"}}`,
		"ae-march":  `{"resourceType":"AdverseEvent","actuality":"actual",` + subject + `,"date":"2026-03-10T10:00:00Z"}`,
		"cond-2019": `{"resourceType":"Condition",` + subject + `,"code":{"text":"depression"},"onsetDateTime":"2019-01-01"}`,
	} {
		rec := req(h, "POST", "/fhir/"+strings.SplitN(body, `"`, 5)[3], body)
		if rec.Code != http.StatusCreated {
			t.Fatalf("create %s = %d %s", name, rec.Code, rec.Body)
		}
		made[decode(t, rec)["id"].(string)] = name
	}
	names := func(b map[string]any) []string {
		var out []string
		for _, e := range b["entry"].([]any) {
			r := e.(map[string]any)["resource"].(map[string]any)
			if r["resourceType"] == "Patient" {
				out = append(out, "patient")
			} else if n, ok := made[r["id"].(string)]; ok {
				out = append(out, n)
			}
		}
		return out
	}
	path := "/fhir/Patient/" + pid + "/$everything"
	for _, tc := range []struct{ query, want string }{
		{"start=2026-06&end=2026-06", "patient,cond-2019,ma-june,obs-june,obs-none"},
		{"start=2026-06-01", "patient,cond-2019,ma-june,obs-june,obs-none"},
		{"end=2026-03-31", "patient,ae-march,cond-2019,obs-march,obs-none"},
		{"start=2026-03-10T09:30:00Z&end=2026-03-10T11:00:00Z", "patient,ae-march,cond-2019,obs-none"},
		{"start=2025&end=2025&_type=Observation", "patient,obs-none"},
		{"start=2026-06&_type=Condition,Observation", "patient,cond-2019,obs-june,obs-none"},
	} {
		rec := req(h, "GET", path+"?"+tc.query, "")
		if rec.Code != http.StatusOK {
			t.Fatalf("$everything?%s = %d %s", tc.query, rec.Code, rec.Body)
		}
		got := names(decode(t, rec))
		if len(got) == 0 || got[0] != "patient" {
			t.Errorf("$everything?%s: %v, want the Patient first", tc.query, got)
			continue
		}
		slices.Sort(got[1:])
		if strings.Join(got, ",") != tc.want {
			t.Errorf("$everything?%s = %s, want %s", tc.query, strings.Join(got, ","), tc.want)
		}
	}
	// Paged, the next link keeps the period.
	var seen []string
	next := path + "?start=2026-06&end=2026-06&_count=2"
	for next != "" {
		b := decode(t, req(h, "GET", next, ""))
		seen = append(seen, names(b)...)
		next = ""
		for _, l := range b["link"].([]any) {
			if l := l.(map[string]any); l["relation"] == "next" {
				_, rest, _ := strings.Cut(l["url"].(string), "/fhir/")
				next = "/fhir/" + rest
			}
		}
	}
	slices.Sort(seen)
	if strings.Join(seen, ",") != "cond-2019,ma-june,obs-june,obs-none,patient" {
		t.Errorf("$everything June, paged by 2: %v", seen)
	}
}

// TestEverythingDateTimeNeedsZone: a start or end with a time but no time
// zone is refused, naming the parameter and the rule, by GET as by POST
// (R4 datatypes.html#dateTime: "If hours and minutes are specified, a time
// zone SHALL be populated"; a Parameters' valueDateTime without one is
// refused by R4's structure): the period of care is not guessed in UTC
// (probe p36 F7). A date, and a dateTime with Z or an offset, are taken.
func TestEverythingDateTimeNeedsZone(t *testing.T) {
	h := fhirServer(t)
	rec := req(h, "POST", "/fhir/Patient", `{"resourceType":"Patient","name":[{"family":"Okafor"}]}`)
	if rec.Code != http.StatusCreated {
		t.Fatalf("create Patient = %d %s", rec.Code, rec.Body)
	}
	path := "/fhir/Patient/" + decode(t, rec)["id"].(string) + "/$everything"
	for _, tc := range []struct{ query, param string }{
		{"start=2026-03-10T09:30", "start"},
		{"start=2026-03-10T09:30:00", "start"},
		{"end=2026-03-10T09:30:00.250", "end"},
		{"start=2026-03-10&end=2026-03-10T23:59:59", "end"},
	} {
		t.Run(tc.query, func(t *testing.T) {
			rec := req(h, "GET", path+"?"+tc.query, "")
			assertOutcome(t, rec, 400, "search-value-invalid", "")
			if b := rec.Body.String(); !strings.Contains(b, `"expression":["`+tc.param+`"]`) || !strings.Contains(b, "time zone") {
				t.Errorf("$everything?%s = %s, want the issue at %s saying a time zone is needed", tc.query, b, tc.param)
			}
		})
	}
	rec = req(h, "POST", path, `{"resourceType":"Parameters","parameter":[{"name":"start","valueDateTime":"2026-03-10T09:30:00"}]}`)
	if rec.Code != http.StatusBadRequest {
		t.Errorf("POST start valueDateTime without a zone = %d %s, want 400", rec.Code, rec.Body)
	}
	for _, q := range []string{"start=2026-03-10", "start=2026-03-10T09:30:00Z", "start=2026-03-10T09:30:00%2B01:00&end=2026-03-11T00:00:00-05:00"} {
		if rec := req(h, "GET", path+"?"+q, ""); rec.Code != http.StatusOK {
			t.Errorf("$everything?%s = %d %s, want 200", q, rec.Code, rec.Body)
		}
	}
}
