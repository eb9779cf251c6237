package search

import (
	"errors"
	"net/url"
	"reflect"
	"slices"
	"strings"
	"testing"
)

// mustQuery decodes a raw query string.
func mustQuery(t *testing.T, raw string) url.Values {
	t.Helper()
	v, err := url.ParseQuery(raw)
	if err != nil {
		t.Fatalf("ParseQuery(%q): %v", raw, err)
	}
	return v
}

func boolp(b bool) *bool { return &b }

// testBase is the server's own FHIR base in the parse tests.
const testBase = "http://gw.example/fhir"

func TestLocalReference(t *testing.T) {
	for _, tt := range []struct{ base, ref, want string }{
		{testBase, "http://gw.example/fhir/Patient/p1", "Patient/p1"},
		{testBase, "https://gw.example/fhir/Patient/p1", "https://gw.example/fhir/Patient/p1"},
		{testBase, "HTTP://GW.Example/fhir/Patient/p1", "Patient/p1"},
		{testBase, "http://gw.example/FHIR/Patient/p1", "http://gw.example/FHIR/Patient/p1"},
		{testBase, "http://gw.example/fhir/Patient?identifier=x|1", "Patient?identifier=x|1"},
		{testBase, "http://gw.example/fhirx/Patient/p1", "http://gw.example/fhirx/Patient/p1"},
		{testBase, "http://gw.example/fhir", "http://gw.example/fhir"},
		{testBase, "http://other.example/fhir/Patient/p1", "http://other.example/fhir/Patient/p1"},
		{testBase, "Patient/p1", "Patient/p1"},
		{"http://gw.example", "http://gw.example/Patient/p1", "Patient/p1"},
		{"", "http://gw.example/fhir/Patient/p1", "http://gw.example/fhir/Patient/p1"},
	} {
		if got := LocalReference(tt.base, tt.ref); got != tt.want {
			t.Errorf("LocalReference(%q, %q) = %q, want %q", tt.base, tt.ref, got, tt.want)
		}
	}
}

func TestParseClauses(t *testing.T) {
	year := Value{Prefix: PrefixEq, Low: utc(2026, 1, 1, 0, 0, 0, 0), High: utc(2026, 12, 31, 23, 59, 59, 999)}
	tests := []struct {
		rt, query string
		want      []Clause
	}{
		// token
		{"Observation", "code=http://loinc.org|8480-6", []Clause{{Param: "code", Type: TypeToken,
			Values: []Value{{System: "http://loinc.org", Code: "8480-6", HasSystem: true}}}}},
		{"Observation", "code=8480-6", []Clause{{Param: "code", Type: TypeToken, Values: []Value{{Code: "8480-6"}}}}},
		{"Observation", "code=|8480-6", []Clause{{Param: "code", Type: TypeToken, Values: []Value{{Code: "8480-6", HasSystem: true}}}}},
		{"Observation", "code=http://loinc.org|", []Clause{{Param: "code", Type: TypeToken,
			Values: []Value{{System: "http://loinc.org", HasSystem: true}}}}},
		{"Patient", `identifier=sys|a\|b`, []Clause{{Param: "identifier", Type: TypeToken,
			Values: []Value{{System: "sys", Code: "a|b", HasSystem: true}}}}},
		{"Patient", `identifier=s\,t|a\,b,c\$d,e\\`, []Clause{{Param: "identifier", Type: TypeToken,
			Values: []Value{{System: "s,t", Code: "a,b", HasSystem: true}, {Code: "c$d"}, {Code: `e\`}}}}},
		{"Patient", `identifier=a%5C%7Cb`, []Clause{{Param: "identifier", Type: TypeToken, Values: []Value{{Code: "a|b"}}}}},
		{"Patient", `identifier=a\xb`, []Clause{{Param: "identifier", Type: TypeToken, Values: []Value{{Code: `a\xb`}}}}},
		{"Observation", "code:text=Blood%20Pressure", []Clause{{Param: "code", Type: TypeToken, Modifier: "text",
			Values: []Value{{Str: "Blood Pressure"}}}}},
		{"Observation", "status:not=final,amended", []Clause{{Param: "status", Type: TypeToken, Modifier: "not",
			Values: []Value{{Code: "final"}, {Code: "amended"}}}}},
		{"Observation", "code:missing=true", []Clause{{Param: "code", Type: TypeToken, Modifier: "missing", Missing: boolp(true)}}},
		{"Patient", "birthdate:missing=false", []Clause{{Param: "birthdate", Type: TypeDate, Modifier: "missing", Missing: boolp(false)}}},
		{"Patient", "_id=abc,def", []Clause{{Param: "_id", Type: TypeToken, Values: []Value{{Code: "abc"}, {Code: "def"}}}}},
		// string
		{"Patient", "name=Jos%C3%A9", []Clause{{Param: "name", Type: TypeString, Values: []Value{{Str: "José"}}}}},
		{"Patient", "family:exact=M%C3%BCller&given:contains=an", []Clause{
			{Param: "family", Type: TypeString, Modifier: "exact", Values: []Value{{Str: "Müller"}}},
			{Param: "given", Type: TypeString, Modifier: "contains", Values: []Value{{Str: "an"}}}}},
		{"Patient", `name=a\,b,c`, []Clause{{Param: "name", Type: TypeString, Values: []Value{{Str: "a,b"}, {Str: "c"}}}}},
		{"Patient", "name=", nil},
		{"Patient", "family:exact=-", []Clause{{Param: "family", Type: TypeString, Modifier: "exact", Values: []Value{{Str: "-"}}}}},
		// date
		{"Patient", "birthdate=2026", []Clause{{Param: "birthdate", Type: TypeDate, Values: []Value{year}}}},
		{"Patient", "birthdate=eq2026", []Clause{{Param: "birthdate", Type: TypeDate, Values: []Value{year}}}},
		{"Observation", "date=ge2026-03", []Clause{{Param: "date", Type: TypeDate, Values: []Value{
			{Prefix: PrefixGe, Low: utc(2026, 3, 1, 0, 0, 0, 0), High: utc(2026, 3, 31, 23, 59, 59, 999)}}}}},
		{"Observation", "date=lt2026-03-02T10:00:00%2B01:00", []Clause{{Param: "date", Type: TypeDate, Values: []Value{
			{Prefix: PrefixLt, Low: utc(2026, 3, 2, 9, 0, 0, 0), High: utc(2026, 3, 2, 9, 0, 0, 999)}}}}},
		{"Observation", "date=ge2026&date=le2027-06-30", []Clause{
			{Param: "date", Type: TypeDate, Values: []Value{{Prefix: PrefixGe, Low: year.Low, High: year.High}}},
			{Param: "date", Type: TypeDate, Values: []Value{{Prefix: PrefixLe, Low: utc(2027, 6, 30, 0, 0, 0, 0), High: utc(2027, 6, 30, 23, 59, 59, 999)}}}}},
		{"Observation", "date=sa2026-03-02T10:00,eb2026-03-02T10:00:00.5Z", []Clause{{Param: "date", Type: TypeDate, Values: []Value{
			{Prefix: PrefixSa, Low: utc(2026, 3, 2, 10, 0, 0, 0), High: utc(2026, 3, 2, 10, 0, 59, 999)},
			{Prefix: PrefixEb, Low: utc(2026, 3, 2, 10, 0, 0, 500), High: utc(2026, 3, 2, 10, 0, 0, 599)}}}}},
		{"Patient", "_lastUpdated=gt2026-03-02T10:00:00.123Z", []Clause{{Param: "_lastUpdated", Type: TypeDate, Values: []Value{
			{Prefix: PrefixGt, Low: utc(2026, 3, 2, 10, 0, 0, 123), High: utc(2026, 3, 2, 10, 0, 0, 123)}}}}},
		// quantity
		{"Observation", "value-quantity=5.4|http://unitsofmeasure.org|mg", []Clause{{Param: "value-quantity", Type: TypeQuantity,
			Values: []Value{{Prefix: PrefixEq, Number: 5.4, Precision: 0.05, System: "http://unitsofmeasure.org", Code: "mg", HasSystem: true}}}}},
		{"Observation", "value-quantity=gt100", []Clause{{Param: "value-quantity", Type: TypeQuantity,
			Values: []Value{{Prefix: PrefixGt, Number: 100, Precision: 0.5}}}}},
		{"Observation", "value-quantity=ap100.00||mm[Hg]", []Clause{{Param: "value-quantity", Type: TypeQuantity,
			Values: []Value{{Prefix: PrefixAp, Number: 100, Precision: 0.005, Code: "mm[Hg]"}}}}},
		{"Observation", "value-quantity=1e2,-1.50E-1", []Clause{{Param: "value-quantity", Type: TypeQuantity,
			Values: []Value{{Prefix: PrefixEq, Number: 100, Precision: 50}, {Prefix: PrefixEq, Number: -0.15, Precision: 0.0005}}}}},
		// reference
		{"Observation", "subject=Patient/123", []Clause{{Param: "subject", Type: TypeReference, Values: []Value{{RefType: "Patient", RefID: "123"}}}}},
		{"Observation", "subject=Patient/123/_history/2", []Clause{{Param: "subject", Type: TypeReference, Values: []Value{{RefType: "Patient", RefID: "123"}}}}},
		{"Observation", "patient=123", []Clause{{Param: "patient", Type: TypeReference, Values: []Value{{RefType: "Patient", RefID: "123"}}}}},
		{"Observation", "subject=123", []Clause{{Param: "subject", Type: TypeReference, Values: []Value{{RefID: "123"}}}}},
		{"Observation", "subject:Patient=123,Patient/456", []Clause{{Param: "subject", Type: TypeReference, Modifier: "Patient",
			Values: []Value{{RefType: "Patient", RefID: "123"}, {RefType: "Patient", RefID: "456"}}}}},
		{"Observation", "subject=https://ehr.example/fhir/Patient/1", []Clause{{Param: "subject", Type: TypeReference,
			Values: []Value{{RefURL: "https://ehr.example/fhir/Patient/1"}}}}},
		{"Provenance", "target=urn:uuid:abc", []Clause{{Param: "target", Type: TypeReference, Values: []Value{{RefURL: "urn:uuid:abc"}}}}},
		{"Observation", "subject:Group=urn:uuid:abc", []Clause{{Param: "subject", Type: TypeReference, Modifier: "Group",
			Values: []Value{{RefType: "Group", RefURL: "urn:uuid:abc"}}}}},
		{"Provenance", "target=Basic/b1", []Clause{{Param: "target", Type: TypeReference, Values: []Value{{RefType: "Basic", RefID: "b1"}}}}},
		{"Observation", `subject:identifier=http://mrn|4\|2`, []Clause{{Param: "subject", Type: TypeReference, Modifier: "identifier",
			Values: []Value{{System: "http://mrn", Code: "4|2", HasSystem: true}}}}},
		{"Immunization", "patient=Patient/p1", []Clause{{Param: "patient", Type: TypeReference, Values: []Value{{RefType: "Patient", RefID: "p1"}}}}},
		{"AdverseEvent", "subject:missing=true", []Clause{{Param: "subject", Type: TypeReference, Modifier: "missing", Missing: boolp(true)}}},
		// an absolute URL on the server's own base (testBase) is the relative
		// reference it names; another server's URL stays a URL
		{"Observation", "subject=http://gw.example/fhir/Patient/p1", []Clause{{Param: "subject", Type: TypeReference,
			Values: []Value{{RefType: "Patient", RefID: "p1"}}}}},
		{"Observation", "subject=HTTP://GW.example/fhir/Patient/p1/_history/2,http://gw.example/fhir/Group/g1", []Clause{{Param: "subject", Type: TypeReference,
			Values: []Value{{RefType: "Patient", RefID: "p1"}, {RefType: "Group", RefID: "g1"}}}}},
		{"Observation", "subject:Patient=http://gw.example/fhir/Patient/p1", []Clause{{Param: "subject", Type: TypeReference, Modifier: "Patient",
			Values: []Value{{RefType: "Patient", RefID: "p1"}}}}},
		{"Observation", "subject=http://other.example/fhir/Patient/p1", []Clause{{Param: "subject", Type: TypeReference,
			Values: []Value{{RefURL: "http://other.example/fhir/Patient/p1"}}}}},
		{"Observation", "subject=http://gw.example/fhir2/Patient/p1", []Clause{{Param: "subject", Type: TypeReference,
			Values: []Value{{RefURL: "http://gw.example/fhir2/Patient/p1"}}}}},
		{"Observation", "has-member:Observation.subject=http://gw.example/fhir/Patient/p1", []Clause{{Param: "has-member", Type: TypeReference,
			Modifier: "Observation", Chain: &Chain{TargetType: "Observation", Clause: Clause{Param: "subject", Type: TypeReference,
				Values: []Value{{RefType: "Patient", RefID: "p1"}}}}}}},
		// chains and _has (issue 13)
		{"Observation", "patient.identifier=http://mrn|123", []Clause{{Param: "patient", Type: TypeReference, Modifier: "Patient",
			Chain: &Chain{TargetType: "Patient", Clause: Clause{Param: "identifier", Type: TypeToken,
				Values: []Value{{System: "http://mrn", Code: "123", HasSystem: true}}}}}}},
		{"Observation", "subject:Patient.identifier=123", []Clause{{Param: "subject", Type: TypeReference, Modifier: "Patient",
			Chain: &Chain{TargetType: "Patient", Clause: Clause{Param: "identifier", Type: TypeToken, Values: []Value{{Code: "123"}}}}}}},
		// Without :Type, a chain looks into every target type that has the
		// parameter (a subject's Location has a name, as a Patient does).
		{"Observation", "subject.name=ann&subject.name=lee", []Clause{
			{Param: "subject", Type: TypeReference,
				Chain: &Chain{TargetType: "Location", Clause: Clause{Param: "name", Type: TypeString, Values: []Value{{Str: "ann"}}},
					Or: []Chain{{TargetType: "Patient", Clause: Clause{Param: "name", Type: TypeString, Values: []Value{{Str: "ann"}}}}}}},
			{Param: "subject", Type: TypeReference,
				Chain: &Chain{TargetType: "Location", Clause: Clause{Param: "name", Type: TypeString, Values: []Value{{Str: "lee"}}},
					Or: []Chain{{TargetType: "Patient", Clause: Clause{Param: "name", Type: TypeString, Values: []Value{{Str: "lee"}}}}}}}}},
		{"Observation", "subject:Patient.name=ann", []Clause{
			{Param: "subject", Type: TypeReference, Modifier: "Patient",
				Chain: &Chain{TargetType: "Patient", Clause: Clause{Param: "name", Type: TypeString, Values: []Value{{Str: "ann"}}}}}}},
		{"Encounter", "patient.family:exact=Lee,Li", []Clause{{Param: "patient", Type: TypeReference, Modifier: "Patient",
			Chain: &Chain{TargetType: "Patient", Clause: Clause{Param: "family", Type: TypeString, Modifier: "exact",
				Values: []Value{{Str: "Lee"}, {Str: "Li"}}}}}}},
		{"Provenance", "target:Patient._id=p1", []Clause{{Param: "target", Type: TypeReference, Modifier: "Patient",
			Chain: &Chain{TargetType: "Patient", Clause: Clause{Param: "_id", Type: TypeToken, Values: []Value{{Code: "p1"}}}}}}},
		{"Patient", "_has:Observation:patient:code=http://loinc.org|8867-4", []Clause{{Param: "_has", Type: TypeReference,
			Has: &Has{Type: "Observation", Param: "patient", Clause: Clause{Param: "code", Type: TypeToken,
				Values: []Value{{System: "http://loinc.org", Code: "8867-4", HasSystem: true}}}}}}},
		{"Patient", "_has:AdverseEvent:subject:severity:not=mild", []Clause{{Param: "_has", Type: TypeReference,
			Has: &Has{Type: "AdverseEvent", Param: "subject", Clause: Clause{Param: "severity", Type: TypeToken, Modifier: "not",
				Values: []Value{{Code: "mild"}}}}}}},
		// clause order: sorted parameter names
		{"Observation", "status=final&code=x&category=y", []Clause{
			{Param: "category", Type: TypeToken, Values: []Value{{Code: "y"}}},
			{Param: "code", Type: TypeToken, Values: []Value{{Code: "x"}}},
			{Param: "status", Type: TypeToken, Values: []Value{{Code: "final"}}}}},
	}
	for _, tt := range tests {
		t.Run(tt.rt+"?"+tt.query, func(t *testing.T) {
			q, _, err := Limits{Base: testBase}.Parse(tt.rt, mustQuery(t, tt.query), false)
			if err != nil {
				t.Fatalf("Parse(%s?%s): %v", tt.rt, tt.query, err)
			}
			if !reflect.DeepEqual(q.Clauses, tt.want) {
				t.Errorf("Parse(%s?%s) clauses =\n  %+v\nwant\n  %+v", tt.rt, tt.query, q.Clauses, tt.want)
			}
		})
	}
}

func TestParseErrors(t *testing.T) {
	const secret = "SECRET7"
	tests := []struct {
		rt, query, rule, param string
	}{
		{"Observation", "code=a|b|" + secret, RuleValueInvalid, "code"},
		{"Observation", "code=|", RuleValueInvalid, "code"},
		{"Observation", "code:missing=" + secret, RuleValueInvalid, "code:missing"},
		{"Observation", "code:exact=" + secret, RuleModifierUnsupported, "code:exact"},
		{"Observation", "code:in=" + secret, RuleModifierUnsupported, "code:in"},
		{"Patient", "name:text=" + secret, RuleModifierUnsupported, "name:text"},
		// A parameter of bare codes has no text for :text to search.
		{"Patient", "gender:text=" + secret, RuleModifierUnsupported, "gender:text"},
		{"Observation", "status:text=" + secret, RuleModifierUnsupported, "status:text"},
		{"Patient", "birthdate=" + secret, RuleValueInvalid, "birthdate"},
		{"Patient", "birthdate=2026-13", RuleValueInvalid, "birthdate"},
		{"Patient", "birthdate=xx2026", RuleValueInvalid, "birthdate"},
		{"Patient", "birthdate:exact=2026", RuleModifierUnsupported, "birthdate:exact"},
		{"Observation", "value-quantity=5|" + secret, RuleValueInvalid, "value-quantity"},
		{"Observation", "value-quantity=" + secret, RuleValueInvalid, "value-quantity"},
		{"Observation", "value-quantity=NaN", RuleValueInvalid, "value-quantity"},
		{"Observation", "value-quantity=0x10", RuleValueInvalid, "value-quantity"},
		{"Observation", "value-quantity=1e99999", RuleValueInvalid, "value-quantity"},
		{"Observation", "subject=Practitioner/" + secret, RuleValueInvalid, "subject"},
		{"Observation", "subject:Patient=Group/" + secret, RuleValueInvalid, "subject:Patient"},
		{"Observation", "subject=Foo/" + secret, RuleValueInvalid, "subject"},
		{"Observation", "subject=" + secret + "%20x", RuleValueInvalid, "subject"},
		{"Observation", "patient=Group/" + secret, RuleValueInvalid, "patient"},
		{"Observation", "subject:Practitioner=" + secret, RuleModifierUnsupported, "subject:Practitioner"},
		{"Observation", "subject:above=" + secret, RuleModifierUnsupported, "subject:above"},
		// Chains and _has (issue 13): unknown targets, deeper chains, bad values.
		{"Observation", "subject." + secret + "=x", RuleParamUnknown, "subject"},
		{"Observation", "subject:" + secret + ".name=x", RuleChainUnsupported, "subject"},
		{"Observation", "subject:Practitioner.name=x", RuleChainUnsupported, "subject:Practitioner.name"},
		{"Observation", "subject:Device.name=x", RuleParamUnknown, "subject:Device"},
		{"Observation", "subject:Patient._count=1", RuleParamUnknown, "subject:Patient"},
		{"Observation", "code.name=x", RuleChainUnsupported, "code"},
		{"Observation", secret + ".name=x", RuleParamUnknown, ""},
		{"Provenance", "target.name=x", RuleChainUnsupported, "target"},
		{"Observation", "subject:Patient.birthdate=" + secret, RuleValueInvalid, "subject:Patient.birthdate"},
		{"Observation", "patient.name:text=" + secret, RuleModifierUnsupported, "patient.name:text"},
		{"Patient", "_has:Observation:patient:code:exact=" + secret, RuleModifierUnsupported, "_has:Observation:patient:code:exact"},
		{"Patient", "_has:Observation:patient:" + secret + "=x", RuleParamUnknown, "_has:Observation:patient"},
		{"Patient", "_has:Observation:" + secret + ":code=x", RuleParamUnknown, "_has:Observation"},
		{"Patient", "_has:" + secret + ":patient:code=x", RuleChainUnsupported, "_has"},
		{"Patient", "_has:Observation:code:code=x", RuleParamUnknown, "_has:Observation"},
		{"Patient", "_has:Observation:has-member:code=x", RuleChainUnsupported, "_has:Observation:has-member:code"},
		{"Patient", "_has:Observation:patient=x", RuleValueInvalid, "_has"},
		{"Patient", "_has:Observation:patient:date=" + secret, RuleValueInvalid, "_has:Observation:patient:date"},
		{"Patient", "foo=" + secret, RuleParamUnknown, ""},
		{"Patient", "_source=" + secret, RuleParamUnsupported, "_source"},
		// _tag, _profile and _security are not indexed (each would add a
		// row per label to every write; docs/fhir.md).
		{"Observation", "_tag=" + secret, RuleParamUnsupported, "_tag"},
		{"Observation", "_profile=" + secret, RuleParamUnsupported, "_profile"},
		{"Observation", "_security=" + secret, RuleParamUnsupported, "_security"},
		{"Patient", "_security:not=" + secret, RuleParamUnsupported, "_security:not"},
		// A parameter R4 defines for the type that the gateway does not
		// support is named; one only a later version defines (R5's
		// DetectedIssue status, ServiceRequest order-detail) is unknown
		// in R4, so not.
		{"Condition", "abatement-date=2026", RuleParamUnsupported, "abatement-date"},
		{"DetectedIssue", "status=final", RuleParamUnknown, ""},
		{"ServiceRequest", "order-detail=x", RuleParamUnknown, ""},
		{"DeviceDefinition", "classification=x", RuleParamUnknown, ""},
		{"Patient", "_elements=name.family", RuleValueInvalid, "_elements"},
		{"Patient", "_elements=Observation.status", RuleValueInvalid, "_elements"},
		{"Patient", "_elements=name&_summary=true", RuleValueInvalid, "_summary"},
		{"Patient", "_elements:x=name", RuleModifierUnsupported, "_elements"},
		{"Patient", "_count=" + secret, RuleValueInvalid, "_count"},
		{"Patient", "_count=-1", RuleValueInvalid, "_count"},
		{"Patient", "_count=-99999999999999999999", RuleValueInvalid, "_count"},
		{"Patient", "_count=1&_count=2", RuleValueInvalid, "_count"},
		{"Patient", "_count:x=1", RuleModifierUnsupported, "_count"},
		{"Patient", "_offset=-5", RuleValueInvalid, "_offset"},
		{"Patient", "_summary=" + secret, RuleValueInvalid, "_summary"},
		{"Patient", "_total=" + secret, RuleValueInvalid, "_total"},
		{"Observation", "_sort=code", RuleSortUnsupported, "_sort"},
		{"Observation", "_sort=nope", RuleParamUnknown, "_sort"},
		{"Observation", "_sort=date,,_id", RuleValueInvalid, "_sort"},
		{"Observation", "_include=*", RuleIncludeUnsupported, "_include"},
		{"Observation", "_include=Observation:*", RuleIncludeUnsupported, "_include"},
		{"Observation", "_include=Observation:code", RuleIncludeUnsupported, "_include"},
		{"Observation", "_include=Observation", RuleValueInvalid, "_include"},
		{"Observation", "_include=Nope:subject", RuleValueInvalid, "_include"},
		{"Observation", "_include=Observation:nope", RuleParamUnknown, "_include"},
		{"Observation", "_include=Observation:subject:Practitioner", RuleValueInvalid, "_include"},
		{"Observation", "_include=Encounter:patient", RuleValueInvalid, "_include"},
		{"Observation", "_include:deep=Observation:subject", RuleModifierUnsupported, "_include"},
		{"Patient", "_revinclude=Observation:has-member", RuleValueInvalid, "_revinclude"},
		{"Patient", "_revinclude=Observation:subject:Group", RuleValueInvalid, "_revinclude"},
		{"Nope", "name=x", RuleTypeUnknown, ""},
		// A string value with nothing to compare once normalised would be a
		// prefix of every string (finding F12); a list of empty values
		// would drop the criterion.
		{"Patient", "family=-", RuleValueInvalid, "family"},
		{"Patient", "family=.", RuleValueInvalid, "family"},
		{"Patient", "family=%2A", RuleValueInvalid, "family"},
		{"Patient", "family='", RuleValueInvalid, "family"},
		{"Patient", "family=%25", RuleValueInvalid, "family"},
		{"Patient", "family=_", RuleValueInvalid, "family"},
		{"Patient", "family=%00", RuleValueInvalid, "family"},
		{"Patient", "family=%E2%80%8B", RuleValueInvalid, "family"}, // zero-width space
		{"Patient", "family=%CC%81", RuleValueInvalid, "family"},    // a lone combining acute
		{"Patient", "family=%C2%A0", RuleValueInvalid, "family"},    // no-break space
		{"Patient", `family=\,`, RuleValueInvalid, "family"},
		{"Patient", "family=lee,-", RuleValueInvalid, "family"},
		{"Patient", "name:contains=.", RuleValueInvalid, "name:contains"},
		{"Patient", "family=,", RuleValueInvalid, "family"},
		{"Patient", "family=,,", RuleValueInvalid, "family"},
		{"Patient", "gender=,", RuleValueInvalid, "gender"},
		{"Observation", "code:text=-", RuleValueInvalid, "code:text"},
		{"Observation", "subject:Patient.name=-", RuleValueInvalid, "subject:Patient.name"},
		{"Patient", "_has:Observation:patient:code:text=*", RuleValueInvalid, "_has:Observation:patient:code:text"},
	}
	for _, tt := range tests {
		t.Run(tt.rt+"?"+tt.query, func(t *testing.T) {
			q, err := Parse(tt.rt, mustQuery(t, tt.query), false)
			var se *Error
			if !errors.As(err, &se) {
				t.Fatalf("Parse(%s?%s) = %+v, %v; want *Error %s", tt.rt, tt.query, q, err, tt.rule)
			}
			if q != nil {
				t.Errorf("Parse returned a query with an error")
			}
			if se.Rule != tt.rule || se.Param != tt.param {
				t.Errorf("Parse(%s?%s) error rule, param = %s, %q; want %s, %q (%s)", tt.rt, tt.query, se.Rule, se.Param, tt.rule, tt.param, se.Message)
			}
			if se.Message == "" || strings.Contains(se.Error(), secret) {
				t.Errorf("Parse(%s?%s) error message %q is empty or quotes the value", tt.rt, tt.query, se.Message)
			}
		})
	}
}

func TestParseControl(t *testing.T) {
	tests := []struct {
		rt, query string
		check     func(*Query) bool
	}{
		{"Patient", "", func(q *Query) bool {
			return q.Type == "Patient" && q.Count == 50 && q.Offset == 0 && q.Total && !q.SummaryCount && q.Clauses == nil
		}},
		{"Patient", "_count=10&_offset=20", func(q *Query) bool { return q.Count == 10 && q.Offset == 20 }},
		// Too large for an int is still a non-negative integer (an attack
		// review: "_count must be a non-negative integer" for one).
		{"Patient", "_count=99999999999999999999", func(q *Query) bool { return q.Count == MaxCount }},
		{"Patient", "_offset=99999999999999999999", func(q *Query) bool { return q.Offset == MaxPaging }},
		{"Patient", "_count=0", func(q *Query) bool { return q.Count == 0 && q.SummaryCount }},
		{"Patient", "_count=5000", func(q *Query) bool { return q.Count == MaxCount }},
		{"Patient", "_count=&_sort=", func(q *Query) bool { return q.Count == DefaultCount && q.Sort == nil }},
		{"Patient", "_summary=count", func(q *Query) bool { return q.SummaryCount && q.Count == 50 }},
		{"Patient", "_summary=false", func(q *Query) bool { return !q.SummaryCount }},
		{"Patient", "_total=none", func(q *Query) bool { return !q.Total }},
		{"Patient", "_total=estimate", func(q *Query) bool { return q.Total }},
		{"Patient", "_total=accurate", func(q *Query) bool { return q.Total }},
		{"Patient", "_format=json&_pretty=true", func(q *Query) bool { return q.Clauses == nil }},
		{"Observation", "_sort=-date,_id,-_lastUpdated,date", func(q *Query) bool {
			return slices.Equal(q.Sort, []SortKey{{"date", true}, {"_id", false}, {"_lastUpdated", true}})
		}},
		{"Patient", "_sort=birthdate", func(q *Query) bool { return slices.Equal(q.Sort, []SortKey{{"birthdate", false}}) }},
		{"Observation", "_include=Observation:patient&_include=Observation:subject:Patient&_include=Observation:patient", func(q *Query) bool {
			return slices.Equal(q.Includes, []Include{{SourceType: "Observation", Param: "patient"},
				{SourceType: "Observation", Param: "subject", TargetType: "Patient"}})
		}},
		{"Observation", "_include:iterate=Encounter:patient", func(q *Query) bool {
			return slices.Equal(q.Includes, []Include{{SourceType: "Encounter", Param: "patient", Iterate: true}})
		}},
		{"Patient", "_revinclude=Observation:subject&_revinclude=Provenance:target&_revinclude=Immunization:patient&_revinclude:iterate=Observation:has-member", func(q *Query) bool {
			return slices.Equal(q.RevIncludes, []Include{{SourceType: "Observation", Param: "subject"},
				{SourceType: "Provenance", Param: "target"}, {SourceType: "Immunization", Param: "patient"},
				{SourceType: "Observation", Param: "has-member", Iterate: true}})
		}},
		{"Patient", "_revinclude=AuditEvent:entity:Patient", func(q *Query) bool {
			return slices.Equal(q.RevIncludes, []Include{{SourceType: "AuditEvent", Param: "entity", TargetType: "Patient"}})
		}},
	}
	for _, tt := range tests {
		t.Run(tt.rt+"?"+tt.query, func(t *testing.T) {
			q, err := Parse(tt.rt, mustQuery(t, tt.query), false)
			if err != nil {
				t.Fatalf("Parse(%s?%s): %v", tt.rt, tt.query, err)
			}
			if !tt.check(q) {
				t.Errorf("Parse(%s?%s) = %+v", tt.rt, tt.query, q)
			}
		})
	}
}

func TestParseLenient(t *testing.T) {
	params := mustQuery(t, "foo=1&code=x&_elements=id&subject.name=y&_sort=code&_count:x=3&_has:Patient:link:name=1"+
		"&_include=*&_include=Observation:patient&status=final")
	q, ignored, err := ParseLenient("Observation", params)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"_count:x", "_has:Patient:link:name", "_include", "_sort", "foo"}
	if !slices.Equal(ignored, want) {
		t.Errorf("ignored = %v, want %v", ignored, want)
	}
	if len(q.Clauses) != 3 || q.Clauses[0].Param != "code" || q.Clauses[1].Param != "status" || q.Clauses[2].Chain == nil {
		t.Errorf("clauses = %+v, want code, status and the chain subject.name", q.Clauses)
	}
	if q.Sort != nil {
		t.Errorf("ignored _sort left traces: %+v", q.Sort)
	}
	if want := []Include{{SourceType: "Observation", Param: "patient"}}; !slices.Equal(q.Includes, want) {
		t.Errorf("includes = %+v, want %+v (a bad _include drops only itself)", q.Includes, want)
	}
	// Parse in lenient mode drops the same parameters silently.
	q2, err := Parse("Observation", params, true)
	if err != nil || !reflect.DeepEqual(q, q2) {
		t.Errorf("Parse(lenient) = %+v, %v; want %+v", q2, err, q)
	}
	// Bad values stay errors.
	for _, raw := range []string{"date=notadate", "_count=x", "foo=1&code=a|b|c"} {
		if _, _, err := ParseLenient("Observation", mustQuery(t, raw)); err == nil {
			t.Errorf("ParseLenient(%s) = nil error, want search-value-invalid", raw)
		}
	}
	// So does a known criterion the gateway cannot run: dropping it would
	// widen the search to every resource of the type.
	for raw, rule := range map[string]string{
		"code:in=http://x/vs":                      RuleModifierUnsupported,
		"code:below=http://loinc.org|8867":         RuleModifierUnsupported,
		"code:exact=8867-4":                        RuleModifierUnsupported,
		"status:text=final":                        RuleModifierUnsupported,
		"subject:Patient.name:foo=x":               RuleModifierUnsupported,
		"subject.name=x&code:not-in=http://x/vs":   RuleModifierUnsupported,
		"code.name=x":                              RuleChainUnsupported,
		"subject:Nope.name=x":                      RuleChainUnsupported,
		"_has:Nope:patient:code=1":                 RuleChainUnsupported,
		"_has:Observation:patient:code=1":          RuleChainUnsupported,
		"_has:Observation:patient:code:below=8867": RuleChainUnsupported,
	} {
		_, _, err := ParseLenient("Observation", mustQuery(t, raw))
		var se *Error
		if !errors.As(err, &se) || se.Rule != rule {
			t.Errorf("ParseLenient(%s) = %v, want %s", raw, err, rule)
		}
	}
	if _, _, err := ParseLenient("Patient", mustQuery(t, "gender:text=male")); err == nil {
		t.Error("ParseLenient(Patient?gender:text=male) = nil error, want search-modifier-unsupported")
	}
	// Strict mode rejects what lenient ignores.
	if _, err := Parse("Observation", params, false); err == nil {
		t.Error("strict Parse accepted unknown parameters")
	}
}

func TestParseDecimal(t *testing.T) {
	tests := []struct {
		in      string
		v, prec float64
		ok      bool
	}{
		{in: "100", v: 100, prec: 0.5, ok: true},
		{in: "100.00", v: 100, prec: 0.005, ok: true},
		{in: "0.1", v: 0.1, prec: 0.05, ok: true},
		{in: "-3", v: -3, prec: 0.5, ok: true},
		{in: "+3.0", v: 3, prec: 0.05, ok: true},
		{in: "1e2", v: 100, prec: 50, ok: true},
		{in: "1.5E+2", v: 150, prec: 5, ok: true},
		{in: "2.50e-3", v: 0.0025, prec: 0.000005, ok: true},
		{in: ""}, {in: "."}, {in: "1."}, {in: ".5"}, {in: "1e"}, {in: "1e+"}, {in: "Inf"}, {in: "1_000"}, {in: "1,5"},
		{in: "1e99999"}, {in: "--1"}, {in: "1 "},
		// Beyond what the gateway stores: no comparison (1e-400 read as 0).
		{in: "1e-400"}, {in: "2e301"}, {in: "-0.5e-300"},
		{in: "0e-400", v: 0, prec: 0.5e-400, ok: true}, {in: "1e-300", v: 1e-300, prec: 0.5e-300, ok: true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			v, prec, ok := parseDecimal(tt.in)
			if ok != tt.ok {
				t.Fatalf("parseDecimal(%q) ok = %v, want %v", tt.in, ok, tt.ok)
			}
			if ok && (v != tt.v || !approx(prec, tt.prec)) {
				t.Errorf("parseDecimal(%q) = %v ± %v, want %v ± %v", tt.in, v, prec, tt.v, tt.prec)
			}
		})
	}
	// A number parameter parses the same way (no R4 number parameter is indexed yet).
	v, ok := parseValue(Param{Name: "n", Type: TypeNumber}, "", "le2.50", "")
	if !ok || v.Prefix != PrefixLe || v.Number != 2.5 || !approx(v.Precision, 0.005) {
		t.Errorf("parseValue(number, le2.50) = %+v, %v", v, ok)
	}
	if v, ok := parseValue(Param{Name: "u", Type: TypeURI}, "below", `http://x\,y`, ""); !ok || v.Str != "http://x,y" {
		t.Errorf("parseValue(uri) = %+v, %v", v, ok)
	}
}

func approx(a, b float64) bool {
	d := a - b
	if d < 0 {
		d = -d
	}
	return d <= 1e-12*max(1, b)
}

func TestEscapeRoundTrip(t *testing.T) {
	for _, s := range []string{"", "plain", `a|b`, `a,b`, `a$b`, `a\b`, `\,|$\`, "ünï|cödé"} {
		if got := unescape(escape(s)); got != s {
			t.Errorf("unescape(escape(%q)) = %q", s, got)
		}
		if parts := splitEscaped(escape(s), ','); len(parts) != 1 {
			t.Errorf("splitEscaped(escape(%q)) split into %q", s, parts)
		}
	}
}

// TestToken: a token value built with Token parses back to its system
// and code whatever they hold.
func TestToken(t *testing.T) {
	for _, tc := range [][2]string{{"https://h.example/mrn", "A,B"}, {"s|t", "B|C"}, {"", `a\b$`}, {"x", ""}} {
		q, err := Parse("Patient", url.Values{"identifier": {Token(tc[0], tc[1])}}, false)
		if err != nil {
			t.Errorf("Token(%q, %q): %v", tc[0], tc[1], err)
			continue
		}
		v := q.Clauses[0].Values[0]
		if v.System != tc[0] || v.Code != tc[1] {
			t.Errorf("Token(%q, %q) parses to %q, %q", tc[0], tc[1], v.System, v.Code)
		}
	}
}

// TestErrorsDoNotEchoOddNames: an answer repeats a parameter name (and
// modifier) only when the gateway knows it: a made-up name may be a value,
// or PHI, typed where a name belongs. ParseLenient still returns the keys
// it ignored as sent (for the self link), and ShownName says which of them
// an answer may name.
func TestErrorsDoNotEchoOddNames(t *testing.T) {
	for _, key := range []string{"John Smith 1980", "shoe-size", "Jane", "nope.x:y"} {
		_, err := Parse("Patient", url.Values{key: {"x"}}, false)
		var se *Error
		if !errors.As(err, &se) || se.Param != "" || strings.Contains(se.Message, key) {
			t.Errorf("Parse(%q) = %+v, want no name in the error", key, err)
		}
	}
	_, err := Parse("Patient", url.Values{"name:Jane": {"x"}}, false)
	var se *Error
	if !errors.As(err, &se) || se.Param != "name" || strings.Contains(se.Message, "Jane") {
		t.Errorf("Parse(name:Jane) = %+v, want the parameter named, not the modifier", err)
	}
	_, ignored, err := ParseLenient("Patient", url.Values{"Jane Doe": {"x"}, "shoe-size": {"1"}, "_source": {"x"}})
	if err != nil || !slices.Equal(ignored, []string{"Jane Doe", "_source", "shoe-size"}) {
		t.Errorf("ParseLenient ignored = %v, %v", ignored, err)
	}
	for key, want := range map[string]string{"Jane Doe": "", "shoe-size": "", "_source": "_source", "name:exact": "name:exact",
		"name:Jane": "name", "subject:Patient.name": "", "birthdate:missing": "birthdate:missing", "_include:iterate": "_include:iterate"} {
		if got := ShownName("Patient", key); got != want {
			t.Errorf("ShownName(Patient, %q) = %q, want %q", key, got, want)
		}
	}
}

// TestUnknownParamListsKnown: an unknown parameter is refused without its
// name but with the type's search parameters (finding p16 F15), for every
// type: AuditEvent's element recorded is searched as date, and _sort,
// _include, a chain and _has list what they take; conditional criteria,
// which take no result parameters, list only the search parameters.
func TestUnknownParamListsKnown(t *testing.T) {
	const secret = "Rowan Auditcase"
	for _, rt := range Types() {
		_, err := Parse(rt, url.Values{secret: {"x"}}, false)
		var se *Error
		if !errors.As(err, &se) || se.Rule != RuleParamUnknown || se.Param != "" || strings.Contains(se.Message, secret) {
			t.Fatalf("Parse(%s?%s=x) = %v, want %s without the name", rt, secret, err, RuleParamUnknown)
		}
		for _, p := range Params(rt) {
			if !strings.Contains(se.Message, p.Name) {
				t.Errorf("Parse(%s?unknown) message %q does not list %s", rt, se.Message, p.Name)
			}
		}
		if !strings.Contains(se.Message, "_count") || !strings.Contains(se.Message, "CapabilityStatement") {
			t.Errorf("Parse(%s?unknown) message %q lists no result parameters or does not point to the CapabilityStatement", rt, se.Message)
		}
	}
	tests := []struct {
		rt, query, want string
		conditional     bool
	}{
		{rt: "AuditEvent", query: "date=ge2026-12-05&recorded=ge2026-12-05",
			want: "AuditEvent's search parameters are _id, _lastUpdated, action, address, agent, date (searches recorded), entity, outcome, patient, site, subtype, trace-id and type; its result parameters _count, _offset, _sort, _summary, _elements, _total, _include and _revinclude"},
		{rt: "AuditEvent", query: "_sort=-recorded", want: "it sorts AuditEvent by _id, _lastUpdated and date (searches recorded)"},
		{rt: "Patient", query: "birthDate=2000", want: "birthdate (searches birthDate)"},
		{rt: "Observation", query: "effective=2026", want: "date (searches effective[x])"},
		{rt: "Observation", query: "_include=Observation:nope", want: "the reference parameters of Observation are derived-from, encounter, has-member, part-of, patient and subject"},
		{rt: "Observation", query: "subject:Patient.nope=x", want: "Patient's search parameters are _id, _lastUpdated, active, address, address-city, address-postalcode, address-state, birthdate (searches birthDate), deceased, email, family, gender, general-practitioner, given, identifier, name, organization, phone and telecom"},
		{rt: "Patient", query: "_has:Observation:patient:nope=x", want: "Observation's search parameters are _id"},
		{rt: "Patient", query: "identifier=x&nope=x", conditional: true, want: "Patient's search parameters are _id, _lastUpdated, active, address, address-city, address-postalcode, address-state, birthdate (searches birthDate), deceased, email, family, gender, general-practitioner, given, identifier, name, organization, phone and telecom"},
	}
	for _, tt := range tests {
		t.Run(tt.rt+"?"+tt.query, func(t *testing.T) {
			var err error
			if tt.conditional {
				_, err = ParseConditional(tt.rt, tt.query)
			} else {
				_, err = Parse(tt.rt, mustQuery(t, tt.query), false)
			}
			var se *Error
			if !errors.As(err, &se) || se.Rule != RuleParamUnknown || !strings.Contains(se.Message, tt.want) {
				t.Fatalf("Parse(%s?%s) = %v, want %s saying %q", tt.rt, tt.query, err, RuleParamUnknown, tt.want)
			}
			if tt.conditional && strings.Contains(se.Message, "_count") {
				t.Errorf("ParseConditional(%s?%s) = %q, lists result parameters conditional criteria do not take", tt.rt, tt.query, se.Message)
			}
		})
	}
}

// TestIncludeSourceType: an _include without :iterate whose source type is
// not the searched type says so (finding p43 F4), whether or not the
// parameter exists for that source type, and names no unrelated list.
func TestIncludeSourceType(t *testing.T) {
	for _, tc := range []struct{ rt, query, want string }{
		{"Observation", "_include=Patient:subject", "without :iterate, the source type of _include must be the searched type Observation, not Patient"},
		{"Observation", "_include=Patient:general-practitioner", "without :iterate, the source type of _include must be the searched type Observation, not Patient"},
		{"Observation", "_include=Encounter:practitioner", "without :iterate, the source type of _include must be the searched type Observation, not Encounter"},
	} {
		_, err := Parse(tc.rt, mustQuery(t, tc.query), false)
		var se *Error
		if !errors.As(err, &se) || se.Rule != RuleValueInvalid || !strings.Contains(se.Message, tc.want) ||
			strings.Contains(se.Message, "reference parameters of") {
			t.Errorf("Parse(%s?%s) = %v, want %s saying %q", tc.rt, tc.query, err, RuleValueInvalid, tc.want)
		}
	}
	// With :iterate the source type may be another; its parameter must exist.
	if _, err := Parse("Observation", mustQuery(t, "_include=Observation:encounter&_include:iterate=Encounter:practitioner"), false); err != nil {
		t.Errorf("Parse(Observation?_include=Observation:encounter&_include:iterate=Encounter:practitioner) = %v", err)
	}
	_, err := Parse("Observation", mustQuery(t, "_include:iterate=Patient:subject"), false)
	var se *Error
	if !errors.As(err, &se) || se.Rule != RuleParamUnknown {
		t.Errorf("Parse(Observation?_include:iterate=Patient:subject) = %v, want %s", err, RuleParamUnknown)
	}
}
