package auditlog

import (
	"encoding/json"
	"slices"
	"strconv"
	"testing"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/auth"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/fhirwire"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/search"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
)

func TestPatientsIn(t *testing.T) {
	tests := []struct {
		typ, body string
		want      []string
	}{
		{"Patient", `{}`, []string{"Patient/p0"}},
		{"Observation", `{"subject":{"reference":"Patient/p1/_history/2"}}`, []string{"Patient/p1"}},
		{"AdverseEvent", `{"subject":{"reference":"Patient/p2"},"code":{"text":"x"}}`, []string{"Patient/p2"}},
		{"Immunization", `{"patient":{"reference":"Patient/p3"}}`, []string{"Patient/p3"}},
		{"Observation", `{"subject":{"reference":"Group/g1"}}`, nil},
		{"Observation", `{"subject":[{"reference":"Patient/p4"}]}`, nil},
		{"Observation", `not json`, nil},
	}
	for _, tc := range tests {
		if got := PatientsIn(tc.typ, "p0", []byte(tc.body)); !slices.Equal(got, tc.want) {
			t.Errorf("PatientsIn(%s, %s) = %v, want %v", tc.typ, tc.body, got, tc.want)
		}
		doc, _ := fhirwire.Decode([]byte(tc.body))
		if got := PatientsOf(tc.typ, "p0", doc); !slices.Equal(got, tc.want) {
			t.Errorf("PatientsOf(%s, %s) = %v, want %v", tc.typ, tc.body, got, tc.want)
		}
	}
}

// slowRefs is what PatientsIn read before topRefs: json.Unmarshal into
// the two members.
func slowRefs(body []byte) (subject, patient string) {
	var refs struct {
		Subject, Patient struct {
			Reference string `json:"reference"`
		}
	}
	_ = json.Unmarshal(body, &refs)
	return refs.Subject.Reference, refs.Patient.Reference
}

// TestTopRefs: topRefs reads what json.Unmarshal reads, or leaves the
// body to it (ok false).
func TestTopRefs(t *testing.T) {
	tests := []struct {
		body string
		ok   bool
	}{
		{`{}`, true},
		{` { "subject" : { "reference" : "Patient/a" } , "patient":{"reference":"Patient/b"} } `, true},
		{`{"status":"final","code":{"coding":[{"system":"x","code":"}{\"]"}]},"subject":{"display":"x","reference":"Patient/a"}}`, true},
		{`{"valueString":"\"subject\":{\"reference\":\"Patient/z\"}","subject":{"reference":"Patient/a"}}`, true},
		{`{"subject":{"reference":"Patient/a"},"subject":{"display":"second"}}`, true},
		{`{"subject":{"reference":"Patient/a"},"subject":{"reference":"Patient/b"}}`, true},
		{`{"subject":{"reference":"Patient/a","reference":7}}`, true},
		{`{"subject":"Patient/a","patient":null,"n":-1.5e3,"t":true,"f":false,"a":[[],{},[1,{"b":[null]}]]}`, true},
		{`{"subject":{"identifier":{"reference":"Patient/deep"}}}`, true},
		{`{"subject":[{"reference":"Patient/a"}]}`, true},
		{`{"Subject":{"reference":"Patient/a"}}`, false},
		{`{"subject":{"REFERENCE":"Patient/a"}}`, false},
		{`{"ſubject":{"reference":"Patient/a"}}`, false},
		{`{"subject":{"reference":"Patient\/a"}}`, false},
		{`{"sub\u006aect":{"reference":"Patient/a"}}`, false},
		{"{\"subject\":{\"reference\":\"Patient/\xff\"}}", false},
		{`[{"subject":{"reference":"Patient/a"}}]`, false},
		{`"subject"`, false},
	}
	for _, tc := range tests {
		s, p, ok := topRefs([]byte(tc.body))
		if ok != tc.ok {
			t.Errorf("topRefs(%s): ok %v, want %v", tc.body, ok, tc.ok)
		}
		ws, wp := slowRefs([]byte(tc.body))
		if ok && (s != ws || p != wp) {
			t.Errorf("topRefs(%s) = %q, %q; json.Unmarshal reads %q, %q", tc.body, s, p, ws, wp)
		}
	}
}

// FuzzTopRefs: on any valid JSON, topRefs either leaves the body to
// json.Unmarshal or reads the same references.
func FuzzTopRefs(f *testing.F) {
	for _, s := range []string{`{"subject":{"reference":"Patient/a"}}`, `{"patient":{"display":"x","reference":"Patient/b"},"a":[1,"}"]}`,
		`{"subject":{"reference":"P"},"subject":{"reference":1}}`, `{"x":{"y":[{"z":"\"{"}]},"patient":{}}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		if !json.Valid(body) {
			return // PatientsIn reads stored resources only
		}
		s, p, ok := topRefs(body)
		if !ok {
			return
		}
		if ws, wp := slowRefs(body); s != ws || p != wp {
			t.Errorf("topRefs(%s) = %q, %q; json.Unmarshal reads %q, %q", body, s, p, ws, wp)
		}
	})
}

// BenchmarkPatientsIn: the patients of a stored Observation, as every
// audited read and every search match asks.
func BenchmarkPatientsIn(b *testing.B) {
	body := []byte(`{"resourceType":"Observation","category":[{"coding":[{"code":"vital-signs","display":"vital-signs","system":"http://terminology.hl7.org/CodeSystem/observation-category"}]}],"code":{"coding":[{"code":"85354-9","display":"Blood pressure panel with all children optional","system":"http://loinc.org"}],"text":"Blood pressure panel with all children optional"},"component":[{"code":{"coding":[{"code":"8462-4","display":"Diastolic Blood Pressure","system":"http://loinc.org"}],"text":"Diastolic Blood Pressure"},"valueQuantity":{"code":"mm[Hg]","system":"http://unitsofmeasure.org","unit":"mm[Hg]","value":82}},{"code":{"coding":[{"code":"8480-6","display":"Systolic Blood Pressure","system":"http://loinc.org"}],"text":"Systolic Blood Pressure"},"valueQuantity":{"code":"mm[Hg]","system":"http://unitsofmeasure.org","unit":"mm[Hg]","value":128}}],"effectiveDateTime":"2019-02-24T05:17:21-05:00","encounter":{"reference":"Encounter/01a2391b121d21b35422765afca11c19"},"id":"01a2391b121d21b35422765afca11c20","issued":"2019-02-24T05:17:21.913-05:00","meta":{"lastUpdated":"2026-12-02T23:33:25.345Z","versionId":"1"},"status":"final","subject":{"reference":"Patient/01a2391b121d21b35422765afca11c18"}}`)
	b.ReportAllocs()
	for b.Loop() {
		if len(PatientsIn("Observation", "o", body)) != 1 {
			b.Fatal("no patient")
		}
	}
}

// TestEntitiesOnce: a request that touches the same resource versions
// many times (a batch of overlapping searches) names each once, in the
// order first touched, past the size where a set takes over.
func TestEntitiesOnce(t *testing.T) {
	sc := NewScope("batch", nil)
	for round := 0; round < 3; round++ {
		for i := 0; i < 50; i++ {
			sc.Touch(&store.Resource{Type: "Observation", ID: "o" + strconv.Itoa(i), Version: 1, Deleted: true})
		}
	}
	sc.Touch(&store.Resource{Type: "Observation", ID: "o0", Version: 2, Deleted: true})
	if len(sc.entities.list) != 51 {
		t.Fatalf("%d entities, want 51 (50 versions touched three times, one more)", len(sc.entities.list))
	}
	if sc.entities.list[0].ID != "o0" || sc.entities.list[49].ID != "o49" || sc.entities.list[50].Version != 2 {
		t.Errorf("entities out of order: %v ... %v", sc.entities.list[0], sc.entities.list[49:])
	}
	sc.Reset()
	sc.Touch(&store.Resource{Type: "Observation", ID: "o0", Version: 1, Deleted: true})
	if len(sc.entities.list) != 1 {
		t.Errorf("after Reset: %d entities, want 1", len(sc.entities.list))
	}
}

// TestScopeNamesExternalClient: a caller with an external issuer's token
// is recorded as <issuer>|<client id>, never as the registered client of
// that id.
func TestScopeNamesExternalClient(t *testing.T) {
	ext := NewScope("read", &auth.Principal{ClientID: "ehr-a", Tenant: "t", Issuer: "https://idp.example", External: true})
	if ext.ClientID != "https://idp.example|ehr-a" {
		t.Errorf("external client recorded as %q", ext.ClientID)
	}
	if reg := NewScope("read", &auth.Principal{ClientID: "ehr-a", Tenant: "t", Issuer: "https://gw.example/auth/token"}); reg.ClientID != "ehr-a" {
		t.Errorf("registered client recorded as %q", reg.ClientID)
	}
}

// TestScopeSub: a part of a request with an AuditEvent of its own (a bulk
// import's record, a replay's correction) is the same request: the same
// client, address, trace and request ids and HTTP exchange (or none); it
// acts as its principal and carries nothing the request recorded.
func TestScopeSub(t *testing.T) {
	for _, tc := range []struct {
		name   string
		noHTTP bool
	}{
		{"an API request", false},
		{"a CLI command", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sc := NewScope("mapping-replay", &auth.Principal{ClientID: "ops", Tenant: search.AllTenants})
			sc.Addr, sc.TraceID, sc.RequestID, sc.NoHTTP, sc.Description = "10.0.0.1", "trace-1", "req-1", tc.noHTTP, "the run"
			sc.Concern("Patient/p1")
			sub := sc.Sub("ingest", &auth.Principal{ClientID: "ops", Tenant: "clinic-a"})
			if sub.Interaction != "ingest" || sub.ClientID != sc.ClientID || sub.Tenant != "clinic-a" || sub.Addr != "10.0.0.1" ||
				sub.TraceID != "trace-1" || sub.RequestID != "req-1" || sub.NoHTTP != tc.noHTTP || sub.Description != "" || len(sub.Patients()) != 0 {
				t.Errorf("Sub(ingest) = %+v; want the request's client, address, trace, request id and NoHTTP %t, tenant clinic-a, nothing recorded",
					sub, tc.noHTTP)
			}
		})
	}
}
