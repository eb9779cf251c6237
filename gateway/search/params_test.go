package search

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
)

func TestLookup(t *testing.T) {
	tests := []struct {
		rt, name string
		want     Param // Description is not compared
		ok       bool
	}{
		{"Patient", "_id", Param{Resource: "Resource", Name: "_id", Type: TypeToken, Paths: []string{"id"}}, true},
		{"Basic", "_lastUpdated", Param{Resource: "Resource", Name: "_lastUpdated", Type: TypeDate, Paths: []string{"meta.lastUpdated"}}, true},
		{"Patient", "name", Param{Resource: "Patient", Name: "name", Type: TypeString, Paths: []string{"name"}}, true},
		{"Patient", "family", Param{Resource: "Patient", Name: "family", Type: TypeString, Paths: []string{"name.family"}}, true},
		{"Patient", "birthdate", Param{Resource: "Patient", Name: "birthdate", Type: TypeDate, Paths: []string{"birthDate"}}, true},
		{"Patient", "gender", Param{Resource: "Patient", Name: "gender", Type: TypeToken, Paths: []string{"gender"},
			Systems: []string{"http://hl7.org/fhir/administrative-gender"}}, true},
		{"Patient", "patient", Param{}, false},
		{"Observation", "date", Param{Resource: "Observation", Name: "date", Type: TypeDate,
			Paths: []string{"effectiveDateTime", "effectivePeriod", "effectiveTiming", "effectiveInstant"}}, true},
		{"Observation", "patient", Param{Resource: "Observation", Name: "patient", Type: TypeReference,
			Paths: []string{"subject"}, Targets: []string{"Patient"}}, true},
		{"Observation", "subject", Param{Resource: "Observation", Name: "subject", Type: TypeReference,
			Paths: []string{"subject"}, Targets: []string{"Device", "Group", "Location", "Patient"}}, true},
		{"Observation", "value-quantity", Param{Resource: "Observation", Name: "value-quantity", Type: TypeQuantity,
			Paths: []string{"valueQuantity"}}, true},
		{"Observation", "component-code", Param{Resource: "Observation", Name: "component-code", Type: TypeToken,
			Paths: []string{"component.code"}}, true},
		{"Encounter", "date", Param{Resource: "Encounter", Name: "date", Type: TypeDate, Paths: []string{"period"}}, true},
		{"Procedure", "date", Param{Resource: "Procedure", Name: "date", Type: TypeDate,
			Paths: []string{"performedDateTime", "performedPeriod"}}, true},
		{"MedicationAdministration", "code", Param{Resource: "MedicationAdministration", Name: "code", Type: TypeToken,
			Paths: []string{"medicationCodeableConcept"}}, true},
		{"MedicationAdministration", "effective-time", Param{Resource: "MedicationAdministration", Name: "effective-time",
			Type: TypeDate, Paths: []string{"effectiveDateTime", "effectivePeriod"}}, true},
		{"MedicationAdministration", "part-of", Param{Resource: "MedicationAdministration", Name: "part-of",
			Type: TypeReference, Paths: []string{"partOf"}, Targets: []string{"MedicationAdministration", "Procedure"}}, true},
		{"AdverseEvent", "identifier", Param{Resource: "AdverseEvent", Name: "identifier", Type: TypeToken, Paths: []string{"identifier"}}, true},
		{"AdverseEvent", "patient", Param{}, false}, // R4 has only subject
		{"AdverseEvent", "substance", Param{Resource: "AdverseEvent", Name: "substance", Type: TypeReference,
			Paths: []string{"suspectEntity.instance"}, Targets: []string{"Device", "Immunization", "Medication",
				"MedicationAdministration", "MedicationStatement", "Procedure", "Substance"}}, true},
		{"Provenance", "target", Param{Resource: "Provenance", Name: "target", Type: TypeReference, Paths: []string{"target"}}, true},
		{"AuditEvent", "patient", Param{Resource: "AuditEvent", Name: "patient", Type: TypeReference,
			Paths: []string{"agent.who", "entity.what"}, Targets: []string{"Patient"}}, true},
		{"AuditEvent", "outcome", Param{Resource: "AuditEvent", Name: "outcome", Type: TypeToken, Paths: []string{"outcome"},
			Systems: []string{"http://hl7.org/fhir/audit-event-outcome"}}, true},
		{"AuditEvent", "site", Param{Resource: "AuditEvent", Name: "site", Type: TypeToken, Paths: []string{"source.site"}}, true},
		{"Immunization", "patient", Param{Resource: "Immunization", Name: "patient", Type: TypeReference,
			Paths: []string{"patient"}, Targets: []string{"Patient"}}, true},
		{"Medication", "patient", Param{Resource: "Medication", Name: "patient", Type: TypeReference,
			Targets: []string{"Patient"}}, true},
		{"Immunization", "vaccine-code", Param{Resource: "Immunization", Name: "vaccine-code", Type: TypeToken,
			Paths: []string{"vaccineCode"}}, true},
		{"Observation", "combo-code", Param{Resource: "Observation", Name: "combo-code", Type: TypeToken,
			Paths: []string{"code", "component.code"}}, true},
		{"Observation", "encounter", Param{Resource: "Observation", Name: "encounter", Type: TypeReference,
			Paths: []string{"encounter"}, Targets: []string{"Encounter"}}, true},
		{"Encounter", "practitioner", Param{Resource: "Encounter", Name: "practitioner", Type: TypeReference,
			Paths: []string{"participant.individual"}, Targets: []string{"Practitioner"}}, true},
		{"Encounter", "status", Param{Resource: "Encounter", Name: "status", Type: TypeToken, Paths: []string{"status"},
			Systems: []string{"http://hl7.org/fhir/encounter-status"}}, true},
		{"Patient", "phone", Param{Resource: "Patient", Name: "phone", Type: TypeToken,
			Paths: []string{"telecom.where(system='phone')"}}, true},
		{"Patient", "deceased", Param{Resource: "Patient", Name: "deceased", Type: TypeToken, Paths: []string{"deceased"}}, true},
		{"Condition", "onset-date", Param{Resource: "Condition", Name: "onset-date", Type: TypeDate,
			Paths: []string{"onsetDateTime", "onsetPeriod"}}, true},
		// Not indexed: each would add a row per label to every write.
		{"Basic", "_profile", Param{}, false},
		{"Observation", "_security", Param{}, false},
		{"Patient", "_tag", Param{}, false},
		{"Parameters", "patient", Param{}, false},
		{"Parameters", "_id", Param{Resource: "Resource", Name: "_id", Type: TypeToken, Paths: []string{"id"}}, true},
		{"NotAType", "_id", Param{}, false},
		{"patient", "name", Param{}, false},
	}
	for _, tt := range tests {
		t.Run(tt.rt+"."+tt.name, func(t *testing.T) {
			got, ok := Lookup(tt.rt, tt.name)
			if ok != tt.ok {
				t.Fatalf("Lookup(%q, %q) ok = %v, want %v", tt.rt, tt.name, ok, tt.ok)
			}
			if !ok {
				return
			}
			if got.Description == "" {
				t.Errorf("Lookup(%q, %q) has no Description", tt.rt, tt.name)
			}
			got.Description = ""
			if got.Resource != tt.want.Resource || got.Name != tt.want.Name || got.Type != tt.want.Type ||
				!slices.Equal(got.Paths, tt.want.Paths) || !slices.Equal(got.Targets, tt.want.Targets) ||
				!slices.Equal(got.Systems, tt.want.Systems) {
				t.Errorf("Lookup(%q, %q) = %+v, want %+v", tt.rt, tt.name, got, tt.want)
			}
		})
	}
}

func TestParamsNames(t *testing.T) {
	want := map[string][]string{
		"Patient":                  {"_id", "_lastUpdated", "active", "address", "address-city", "address-postalcode", "address-state", "birthdate", "deceased", "email", "family", "gender", "general-practitioner", "given", "identifier", "name", "organization", "phone", "telecom"},
		"Encounter":                {"_id", "_lastUpdated", "class", "date", "identifier", "participant", "patient", "practitioner", "service-provider", "status", "subject", "type"},
		"Observation":              {"_id", "_lastUpdated", "category", "code", "combo-code", "component-code", "date", "derived-from", "encounter", "has-member", "identifier", "part-of", "patient", "status", "subject", "value-concept", "value-quantity", "value-string"},
		"Procedure":                {"_id", "_lastUpdated", "category", "code", "date", "encounter", "identifier", "patient", "status", "subject"},
		"MedicationAdministration": {"_id", "_lastUpdated", "code", "context", "effective-time", "identifier", "medication", "part-of", "patient", "performer", "status", "subject"},
		"AdverseEvent":             {"_id", "_lastUpdated", "actuality", "category", "date", "event", "identifier", "seriousness", "severity", "subject", "substance"},
		"Condition":                {"_id", "_lastUpdated", "category", "clinical-status", "code", "encounter", "identifier", "onset-date", "patient", "subject", "verification-status"},
		"Provenance":               {"_id", "_lastUpdated", "agent", "entity", "patient", "recorded", "target", "trace-id"},
		"AuditEvent": {"_id", "_lastUpdated", "action", "address", "agent", "date", "entity", "outcome", "patient",
			"site", "subtype", "trace-id", "type"},
		"CarePlan":         {"_id", "_lastUpdated", "patient"},
		"Parameters":       {"_id", "_lastUpdated"},
		"DiagnosticReport": {"_id", "_lastUpdated", "category", "code", "date", "encounter", "identifier", "patient", "result", "status"},
		"Immunization":     {"_id", "_lastUpdated", "date", "identifier", "patient", "status", "vaccine-code"},
		"Nope":             nil,
	}
	for rt, names := range want {
		t.Run(rt, func(t *testing.T) {
			var got []string
			for _, p := range Params(rt) {
				got = append(got, p.Name)
			}
			if !slices.Equal(got, names) {
				t.Errorf("Params(%q) names = %v, want %v", rt, got, names)
			}
		})
	}
}

// TestParamsWellFormed checks every parameter of every type.
func TestParamsWellFormed(t *testing.T) {
	for _, rt := range r4Types {
		for _, d := range defs(rt) {
			p := d.param(rt)
			where := rt + "." + p.Name
			if p.Description == "" || p.Type == "" {
				t.Errorf("%s lacks Type or Description", where)
			}
			if (len(p.Paths) == 0) != d.compartment {
				t.Errorf("%s has no Paths", where)
			}
			if p.Type != TypeReference && len(p.Targets) > 0 {
				t.Errorf("%s: Targets on a %s parameter", where, p.Type)
			}
			for _, tg := range p.Targets {
				if !isResourceType(tg) {
					t.Errorf("%s: target %q is no resource type", where, tg)
				}
			}
			if !slices.IsSorted(p.Targets) {
				t.Errorf("%s: Targets not sorted", where)
			}
			want := rt
			if strings.HasPrefix(p.Name, "_") {
				want = "Resource"
			}
			if p.Resource != want {
				t.Errorf("%s: Resource = %q, want %q", where, p.Resource, want)
			}
		}
	}
}

func TestParamsNoAliasing(t *testing.T) {
	p, _ := Lookup("Observation", "subject")
	p.Targets[0] = "Mutated"
	p.Paths[0] = "mutated"
	q, _ := Lookup("Observation", "subject")
	if q.Targets[0] != "Device" || q.Paths[0] != "subject" {
		t.Errorf("Lookup results share memory: %+v", q)
	}
}

func TestTypes(t *testing.T) {
	got := Types()
	if len(got) != 145 || !slices.IsSorted(got) {
		t.Fatalf("Types() = %d types (sorted %v), want 145 sorted", len(got), slices.IsSorted(got))
	}
	if slices.Contains(got, "Parameters") {
		t.Error("Types() contains Parameters")
	}
	for _, want := range []string{"Patient", "Observation", "AdverseEvent", "AuditEvent", "Immunization"} {
		if !slices.Contains(got, want) {
			t.Errorf("Types() lacks %s", want)
		}
	}
}

func TestResourceTypeList(t *testing.T) {
	if len(r4Types) != 146 || !slices.IsSorted(r4Types[:]) {
		t.Fatalf("r4Types: %d, sorted %v; want 146 sorted", len(r4Types), slices.IsSorted(r4Types[:]))
	}
	if !isResourceType("VisionPrescription") || isResourceType("Resource") || isResourceType("patient") {
		t.Error("isResourceType is wrong")
	}
}

func TestGatewaySearchParameters(t *testing.T) {
	sps := GatewaySearchParameters()
	data, err := json.Marshal(sps)
	if err != nil {
		t.Fatal(err)
	}
	var got []map[string]any
	if err := json.Unmarshal(data, &got); err != nil {
		t.Fatal(err)
	}
	byURL := map[string]map[string]any{}
	for _, sp := range got {
		for _, f := range []string{"resourceType", "id", "url", "version", "name", "status", "description", "code", "base", "type", "expression"} {
			if _, ok := sp[f]; !ok {
				t.Errorf("SearchParameter %v lacks %s", sp["id"], f)
			}
		}
		byURL[sp["url"].(string)] = sp
	}
	ae := byURL["https://ketamine-gateway.org/fhir/SearchParameter/AdverseEvent-identifier"]
	if ae == nil {
		t.Fatal("no AdverseEvent-identifier SearchParameter")
	}
	want := map[string]any{"resourceType": "SearchParameter", "status": "active", "code": "identifier",
		"type": "token", "expression": "AdverseEvent.identifier"}
	for k, v := range want {
		if ae[k] != v {
			t.Errorf("AdverseEvent-identifier %s = %v, want %v", k, ae[k], v)
		}
	}
	if b, _ := ae["base"].([]any); len(b) != 1 || b[0] != "AdverseEvent" {
		t.Errorf("AdverseEvent-identifier base = %v", ae["base"])
	}
	// Every gateway-defined SearchParameter is in the table.
	for _, sp := range got {
		base := sp["base"].([]any)[0].(string)
		p, ok := Lookup(base, sp["code"].(string))
		if !ok || string(p.Type) != sp["type"] || !strings.Contains(p.Description, sp["url"].(string)) {
			t.Errorf("SearchParameter %s does not match Lookup: %+v", sp["url"], p)
		}
	}
}

// TestReferenceRows: a patient parameter with the paths of a reference
// parameter that accepts Patients is kept as that one's rows of type
// Patient; any other parameter as its own.
func TestReferenceRows(t *testing.T) {
	tests := []struct{ rt, name, param, refType string }{
		{"Observation", "patient", "subject", "Patient"},
		{"Encounter", "patient", "subject", "Patient"},
		{"Condition", "patient", "subject", "Patient"},
		{"Procedure", "patient", "subject", "Patient"},
		{"MedicationAdministration", "patient", "subject", "Patient"},
		{"MedicationRequest", "patient", "subject", "Patient"},
		{"Provenance", "patient", "target", "Patient"},
		{"Observation", "subject", "subject", ""},
		{"Observation", "has-member", "has-member", ""},
		{"AuditEvent", "patient", "patient", ""}, // agent.who and entity.what: no other parameter has both
		{"AdverseEvent", "subject", "subject", ""},
		{"Claim", "patient", "patient", ""},            // R4's Claim.patient: no other parameter has it
		{"Immunization", "patient", "patient", ""},     // no subject
		{"DiagnosticReport", "patient", "patient", ""}, // the gateway indexes no subject of it
		// An Encounter's practitioner is its participant of type Practitioner.
		{"Encounter", "practitioner", "participant", "Practitioner"},
		{"Encounter", "participant", "participant", ""},
		{"NotAType", "patient", "patient", ""},
	}
	for _, tt := range tests {
		p, rt := ReferenceRows(tt.rt, tt.name)
		if p != tt.param || rt != tt.refType {
			t.Errorf("ReferenceRows(%s, %s) = %q, %q; want %q, %q", tt.rt, tt.name, p, rt, tt.param, tt.refType)
		}
	}
	al := ReferenceRowAliases("patient")
	var n int
	for _, a := range al {
		for _, typ := range a.Types {
			n++
			if p, rt := ReferenceRows(typ, "patient"); p != a.Param || rt != a.RefType || p == "patient" {
				t.Errorf("ReferenceRowAliases: %s is kept as %s/%s, ReferenceRows says %s/%s", typ, a.Param, a.RefType, p, rt)
			}
		}
	}
	for _, typ := range r4Types {
		if p, _ := ReferenceRows(typ, "patient"); p != "patient" {
			n--
		}
	}
	if n != 0 || len(al) == 0 {
		t.Errorf("ReferenceRowAliases(patient) = %+v: not every type ReferenceRows aliases, once", al)
	}
	if al := ReferenceRowAliases("subject"); len(al) != 0 {
		t.Errorf("ReferenceRowAliases(subject) = %+v, want none", al)
	}
}
