package storetest

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/search"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
)

const (
	mrn    = "urn:mrn"
	gender = "http://hl7.org/fhir/administrative-gender"
	loinc  = "http://loinc.org"
	ucum   = "http://unitsofmeasure.org"
)

// patients are the Patient fixtures; p4 is deleted after loading.
func patients(t *testing.T, s store.Store) {
	t.Helper()
	load(t, s,
		doc{"Patient", "p1", []search.Entry{
			tok("identifier", mrn, "123"),
			tokText("gender", gender, "female", "Female"),
			str("family", "Müller", "muller"),
			str("given", "Anna", "anna"),
			date("birthdate", day(1980, 5, 12)),
			tok("active", "", "true"),
			ref("general-practitioner", "Practitioner", "dr1"),
			ref("link", "Patient", "p2"),
		}},
		doc{"Patient", "p2", []search.Entry{
			tok("identifier", mrn, "456"),
			tok("identifier", mrn, "789"),
			tokText("gender", gender, "male", "Male"),
			str("family", "Mullerson", "mullerson"),
			str("given", "Zoë", "zoe"),
			date("birthdate", month(1980, 5)),
		}},
		doc{"Patient", "p3", []search.Entry{
			tok("identifier", "urn:other", "123"),
			tok("identifier", "", "789"),
			tok("gender", gender, "other"),
			str("family", "Smith-Jones", "smith jones"),
			str("given", "José Luis", "jose luis"),
			tok("active", "", "false"),
		}},
		doc{"Patient", "p4", []search.Entry{
			tok("identifier", mrn, "999"),
			str("family", "Gone", "gone"),
			tok("gender", gender, "female"),
		}},
		doc{"Patient", "p5", []search.Entry{
			tok("identifier", mrn, "555"),
		}},
		// Same parameter names on another type must not leak into Patient searches.
		doc{"Observation", "p1", []search.Entry{
			tok("identifier", mrn, "123"),
			str("family", "Müller", "muller"),
		}},
	)
	put(t, s, deletion("Patient", "p4", 2, base.Add(24*time.Hour)))
}

func testSearchToken(t *testing.T, s store.Store) {
	patients(t, s)
	id := func(mod string, v ...search.Value) *search.Query {
		return query("Patient", clause("identifier", search.TypeToken, mod, v...))
	}
	g := func(mod string, v ...search.Value) *search.Query {
		return query("Patient", clause("gender", search.TypeToken, mod, v...))
	}
	expect(t, s, "code in any system", id("", vCode("123")), "p1", "p3")
	expect(t, s, "system|code", id("", vSys(mrn, "123")), "p1")
	expect(t, s, "|code (no system)", id("", vSys("", "789")), "p3")
	expect(t, s, "code with and without system", id("", vCode("789")), "p2", "p3")
	expect(t, s, "system|", id("", vSys(mrn, "")), "p1", "p2", "p5")
	expect(t, s, "values are ORed", id("", vSys(mrn, "123"), vSys(mrn, "456")), "p1", "p2")
	expect(t, s, "deleted resource", id("", vCode("999")))
	expect(t, s, "unknown system", id("", vSys("urn:nope", "123")))
	expect(t, s, "gender", g("", vCode("female")), "p1")
	expect(t, s, "code is case-sensitive", g("", vCode("Female")))
	expect(t, s, ":not", g("not", vCode("female")), "p2", "p3", "p5")
	expect(t, s, ":not two values", g("not", vCode("female"), vSys(gender, "male")), "p3", "p5")
	expect(t, s, ":text", g("text", vStr("FEM")), "p1")
	expect(t, s, "boolean", query("Patient", clause("active", search.TypeToken, "", vCode("true"))), "p1")
	expect(t, s, "clauses are ANDed", query("Patient",
		clause("identifier", search.TypeToken, "", vSys(mrn, "")),
		clause("gender", search.TypeToken, "", vCode("male"))), "p2")

	load(t, s, doc{"Observation", "o1", []search.Entry{tokText("code", loinc, "29463-7", "Body weight")}},
		doc{"Observation", "o2", []search.Entry{tokText("code", loinc, "8867-4", "Heart rate")}},
		doc{"Observation", "o3", []search.Entry{tokText("code", loinc, "8302-2", "Body height")}})
	text := func(v string) *search.Query {
		return query("Observation", clause("code", search.TypeToken, "text", vStr(v)))
	}
	// :text is a string match (search.html#token) at the start of a word:
	// the start of the text or of any word in it, never inside a word.
	expect(t, s, ":text first word", text("body"), "o1", "o3")
	expect(t, s, ":text later word, any case", text("WEIGHT"), "o1")
	expect(t, s, ":text start of a later word", text("wei"), "o1")
	expect(t, s, ":text words in order", text("body we"), "o1")
	expect(t, s, ":text inside a word", text("ight"))
	expect(t, s, ":text inside words", text("dy we"))
	expect(t, s, ":text end of a word", text("ody"))
	expect(t, s, ":text values ORed", query("Observation",
		clause("code", search.TypeToken, "text", vStr("pressure"), vStr("heart"), vStr("weight"))), "o1", "o2")
	expect(t, s, ":text no match", text("pressure"))

	// :of-type reads the rows of the identifiers' types (search.OfTypeParam).
	const v2 = "http://terminology.hl7.org/CodeSystem/v2-0203"
	load(t, s, doc{"Patient", "t1", []search.Entry{tok("identifier", mrn, "M1"),
		tok(search.OfTypeParam("identifier"), search.OfTypeSystem(v2, "MR"), "M1"),
		tok(search.OfTypeParam("identifier"), search.OfTypeSystem(v2, "SS"), "999")}},
		doc{"Patient", "t2", []search.Entry{tok(search.OfTypeParam("identifier"), search.OfTypeSystem(v2, "MR"), "999")}})
	ofType := func(code, value string) *search.Query {
		return query("Patient", clause("identifier", search.TypeToken, "of-type",
			search.Value{System: search.OfTypeSystem(v2, code), Code: value, HasSystem: true}))
	}
	expect(t, s, ":of-type MR", ofType("MR", "999"), "t2")
	expect(t, s, ":of-type SS", ofType("SS", "999"), "t1")
	expect(t, s, ":of-type no such type", ofType("DL", "999"))
	expect(t, s, "of-type rows are not identifier rows", id("", vCode("999")))
}

func testSearchString(t *testing.T, s store.Store) {
	patients(t, s)
	f := func(mod string, v ...string) *search.Query {
		var vals []search.Value
		for _, x := range v {
			vals = append(vals, vStr(x))
		}
		return query("Patient", clause("family", search.TypeString, mod, vals...))
	}
	given := func(v string) *search.Query {
		return query("Patient", clause("given", search.TypeString, "", vStr(v)))
	}
	expect(t, s, "starts with", f("", "muller"), "p1", "p2")
	expect(t, s, "case and accents", f("", "MÜL"), "p1", "p2")
	expect(t, s, "accented value", f("", "Müller"), "p1", "p2")
	expect(t, s, "longer prefix", f("", "mullers"), "p2")
	expect(t, s, "not a prefix", f("", "ller"))
	expect(t, s, "punctuation", f("", "Smith-Jones"), "p3")
	expect(t, s, "punctuation as a word boundary", f("", "smith jones"), "p3")
	expect(t, s, "values ORed", f("", "smith", "zz"), "p3")
	expect(t, s, "deleted", f("", "gone"))
	expect(t, s, ":exact", f("exact", "Müller"), "p1")
	expect(t, s, ":exact is case-sensitive", f("exact", "müller"))
	expect(t, s, ":exact not a prefix", f("exact", "Muller"))
	expect(t, s, ":exact other", f("exact", "Mullerson"), "p2")
	expect(t, s, ":contains", f("contains", "LERS"), "p2")
	expect(t, s, ":contains both", f("contains", "üll"), "p1", "p2")
	expect(t, s, ":contains end", f("contains", "jones"), "p3")
	expect(t, s, "given accent-insensitive", given("ZOË"), "p2")
	expect(t, s, "given plain", given("zoe"), "p2")
	expect(t, s, "given two words", given("José L"), "p3")
	expect(t, s, "given second word is not a prefix", given("luis"))
}

func testSearchReference(t *testing.T, s store.Store) {
	load(t, s,
		doc{"Observation", "o1", []search.Entry{ref("subject", "Patient", "p1")}},
		doc{"Observation", "o2", []search.Entry{ref("subject", "Patient", "p2")}},
		doc{"Observation", "o3", []search.Entry{
			// As Extract keeps an absolute URL ending in Type/id.
			{Param: "subject", Type: search.TypeReference, RefType: "Patient", RefID: "9", RefURL: "http://other.org/fhir/Patient/9"},
			tok("subject", mrn, "123"),
		}},
		doc{"Observation", "o4", []search.Entry{ref("subject", "Group", "p1")}},
		doc{"Observation", "o5", nil},
		// A urn whose type only Reference.type says.
		doc{"Observation", "o6", []search.Entry{{Param: "subject", Type: search.TypeReference, RefType: "Group", RefURL: "urn:uuid:g1"}}},
		// A URL of no known type.
		doc{"Observation", "o7", []search.Entry{refURL("subject", "urn:uuid:u1")}},
	)
	sub := func(mod string, v ...search.Value) *search.Query {
		return query("Observation", clause("subject", search.TypeReference, mod, v...))
	}
	expect(t, s, "type/id", sub("", vRef("Patient", "p1")), "o1")
	expect(t, s, "bare id", sub("", vRef("", "p1")), "o1", "o4")
	expect(t, s, "type modifier", sub("Group", vRef("", "p1")), "o4")
	expect(t, s, "type modifier Patient", sub("Patient", vRef("", "p1")), "o1")
	expect(t, s, "values ORed", sub("", vRef("Patient", "p1"), vRef("Patient", "p2")), "o1", "o2")
	url := func(u string) search.Value { return search.Value{RefURL: u} }
	expect(t, s, "absolute URL", sub("", url("http://other.org/fhir/Patient/9")), "o3")
	expect(t, s, "absolute URL, its type modifier", sub("Patient", url("http://other.org/fhir/Patient/9")), "o3")
	expect(t, s, "absolute URL, another type modifier", sub("Group", url("http://other.org/fhir/Patient/9")))
	expect(t, s, "urn", sub("", url("urn:uuid:g1")), "o6")
	expect(t, s, "urn, its Reference.type modifier", sub("Group", url("urn:uuid:g1")), "o6")
	expect(t, s, "urn, another type modifier", sub("Patient", url("urn:uuid:g1")))
	// As the parser gives a URL with a :Type modifier: the type in the value too.
	expect(t, s, "urn, its type as parsed", sub("Group", search.Value{RefType: "Group", RefURL: "urn:uuid:g1"}), "o6")
	expect(t, s, "urn, another type as parsed", sub("Patient", search.Value{RefType: "Patient", RefURL: "urn:uuid:g1"}))
	expect(t, s, "urn of no known type", sub("", url("urn:uuid:u1")), "o7")
	expect(t, s, "urn of no known type, a type modifier", sub("Patient", url("urn:uuid:u1")))
	expect(t, s, "no match", sub("", vRef("Patient", "p9")))
	expect(t, s, ":identifier system|value", sub("identifier", vSys(mrn, "123")), "o3")
	expect(t, s, ":identifier value", sub("identifier", vCode("123")), "o3")
	expect(t, s, ":identifier other system", sub("identifier", vSys("urn:x", "123")))
	expect(t, s, ":missing=true", query("Observation", missing("subject", search.TypeReference, true)), "o5")
	expect(t, s, ":missing=false", query("Observation", missing("subject", search.TypeReference, false)), "o1", "o2", "o3", "o4", "o6", "o7")
}

func testSearchID(t *testing.T, s store.Store) {
	patients(t, s)
	q := func(mod string, v ...string) *search.Query {
		var vals []search.Value
		for _, x := range v {
			vals = append(vals, vCode(x))
		}
		return query("Patient", clause("_id", search.TypeToken, mod, vals...))
	}
	expect(t, s, "_id", q("", "p1"), "p1")
	expect(t, s, "_id ORed", q("", "p1", "p3", "nope"), "p1", "p3")
	expect(t, s, "_id deleted", q("", "p4"))
	expect(t, s, "_id other type's id", q("", "o1"))
	expect(t, s, "_id:not", q("not", "p1"), "p2", "p3", "p5")
	// An id has no system: system|id names nothing, |id is id.
	id := func(mod string, v ...search.Value) *search.Query {
		return query("Patient", clause("_id", search.TypeToken, mod, v...))
	}
	expect(t, s, "_id system|id", id("", vSys("urn:x", "p1")))
	expect(t, s, "_id |id", id("", vSys("", "p1")), "p1")
	expect(t, s, "_id system|id or id", id("", vSys("urn:x", "p1"), vCode("p2")), "p2")
	expect(t, s, "_id:not system|id", id("not", vSys("urn:x", "p1")), "p1", "p2", "p3", "p5")
	expect(t, s, "_id and another clause", query("Patient",
		clause("_id", search.TypeToken, "", vCode("p1"), vCode("p2")),
		clause("gender", search.TypeToken, "", vCode("male"))), "p2")
}

func testSearchMissing(t *testing.T, s store.Store) {
	patients(t, s)
	m := func(param string, typ search.Type, v bool) *search.Query {
		return query("Patient", missing(param, typ, v))
	}
	expect(t, s, "string missing", m("family", search.TypeString, true), "p5")
	expect(t, s, "string present", m("family", search.TypeString, false), "p1", "p2", "p3")
	expect(t, s, "date missing", m("birthdate", search.TypeDate, true), "p3", "p5")
	expect(t, s, "date present", m("birthdate", search.TypeDate, false), "p1", "p2")
	expect(t, s, "token missing", m("gender", search.TypeToken, true), "p5")
	expect(t, s, "token present", m("active", search.TypeToken, false), "p1", "p3")
	expect(t, s, "reference missing", m("general-practitioner", search.TypeReference, true), "p2", "p3", "p5")
	expect(t, s, "missing and a value", query("Patient",
		missing("birthdate", search.TypeDate, true),
		clause("identifier", search.TypeToken, "", vSys(mrn, ""))), "p5")
}

// testSystemSearch: a query without a type searches every type, with its
// total and includes.
func testSystemSearch(t *testing.T, s store.Store) {
	load(t, s,
		doc{"Patient", "x0", []search.Entry{tok("_tag", "urn:t", "a")}},
		doc{"Observation", "x1", []search.Entry{tok("_tag", "urn:t", "a"), ref("subject", "Patient", "x0")}},
		doc{"Patient", "x2", []search.Entry{tok("_tag", "urn:t", "a")}},
	)
	q := &search.Query{Total: true, Clauses: []search.Clause{
		clause("_tag", search.TypeToken, "", vSys("urn:t", "a")),
		clause("_lastUpdated", search.TypeDate, "", search.Value{Prefix: search.PrefixGe, Low: base.Add(time.Hour)}),
	}, Includes: []search.Include{{SourceType: "Observation", Param: "subject"}}}
	pg := doSearch(t, s, q)
	var got []string
	for _, r := range pg.Matches {
		got = append(got, r.Type+"/"+r.ID)
	}
	if strings.Join(got, ",") != "Observation/x1,Patient/x2" || pg.Total != 2 {
		t.Errorf("Search = %v (total %d), want Observation/x1,Patient/x2 (total 2)", got, pg.Total)
	}
	if len(pg.Included) != 1 || pg.Included[0].ID != "x0" {
		t.Errorf("Search included %v, want Patient/x0", pg.Included)
	}
}

// testBadQueries: clauses the store cannot run, and a nil query, are
// errors.
func testBadQueries(t *testing.T, s store.Store) {
	tests := []struct {
		name string
		cl   search.Clause
	}{
		{"token:in", clause("x", search.TypeToken, "in", vCode("a"))},
		{"string:text", clause("x", search.TypeString, "text", vStr("a"))},
		{"date:exact", clause("x", search.TypeDate, "exact", search.Value{})},
		{"no values", clause("x", search.TypeToken, "")},
		{"composite", clause("x", "composite", "", vCode("a"))},
		{"chain", search.Clause{Param: "x", Type: search.TypeReference, Chain: &search.Chain{TargetType: "Patient"}}},
		{"reference:below", clause("x", search.TypeReference, "below", vRef("", "a"))},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := s.Search(context.Background(), query("Patient", tc.cl)); err == nil {
				t.Errorf("Search(%+v) = no error, want one", tc.cl)
			}
		})
	}
	if _, err := s.Search(context.Background(), nil); err == nil {
		t.Error("Search(nil) = no error, want one")
	}
}
