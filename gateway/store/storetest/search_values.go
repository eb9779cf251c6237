package storetest

import (
	"testing"
	"time"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/search"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
)

// procedures are date fixtures d1..d9 (param "date"), last updated one
// hour apart from base in that order.
func procedures(t *testing.T, s store.Store) {
	t.Helper()
	d := func(id string, r ...[2]time.Time) doc {
		var es []search.Entry
		for _, x := range r {
			es = append(es, date("date", x))
		}
		return doc{"Procedure", id, es}
	}
	load(t, s,
		d("d1", day(2024, 3, 15)),
		d("d2", month(2024, 3)),
		d("d3", year(2024)),
		d("d4", instant(time.Date(2024, 3, 15, 10, 30, 0, 0, time.UTC))),
		d("d5", period(day(2024, 3, 10), day(2024, 3, 20))),
		d("d6", day(2023, 12, 31)),
		d("d7", [2]time.Time{day(2024, 3, 16)[0], search.MaxTime()}), // no end
		d("d8", day(2000, 1, 1)),
		d("d9"),
	)
}

func testSearchDate(t *testing.T, s store.Store) {
	procedures(t, s)
	q := func(v ...search.Value) *search.Query {
		return query("Procedure", clause("date", search.TypeDate, "", v...))
	}
	type c struct {
		p    search.Prefix
		want []string
	}
	run := func(name string, r [2]time.Time, cases []c) {
		for _, tc := range cases {
			expect(t, s, name+" "+string(tc.p), q(vDate(tc.p, r)), tc.want...)
		}
	}
	run("day 2024-03-15", day(2024, 3, 15), []c{
		{"", []string{"d1", "d4"}},
		{search.PrefixEq, []string{"d1", "d4"}},
		{search.PrefixNe, []string{"d2", "d3", "d5", "d6", "d7", "d8"}},
		{search.PrefixGt, []string{"d2", "d3", "d5", "d7"}},
		{search.PrefixLt, []string{"d2", "d3", "d5", "d6", "d8"}},
		{search.PrefixGe, []string{"d1", "d2", "d3", "d4", "d5", "d7"}},
		{search.PrefixLe, []string{"d1", "d2", "d3", "d4", "d5", "d6", "d8"}},
		{search.PrefixSa, []string{"d7"}},
		{search.PrefixEb, []string{"d6", "d8"}},
	})
	run("month 2024-03", month(2024, 3), []c{
		{search.PrefixEq, []string{"d1", "d2", "d4", "d5"}},
		{search.PrefixNe, []string{"d3", "d6", "d7", "d8"}},
		{search.PrefixGt, []string{"d3", "d7"}},
		{search.PrefixLt, []string{"d3", "d6", "d8"}},
		{search.PrefixGe, []string{"d1", "d2", "d3", "d4", "d5", "d7"}},
		{search.PrefixLe, []string{"d1", "d2", "d3", "d4", "d5", "d6", "d8"}},
		{search.PrefixSa, nil},
		{search.PrefixEb, []string{"d6", "d8"}},
	})
	run("year 2024", year(2024), []c{
		{search.PrefixEq, []string{"d1", "d2", "d3", "d4", "d5"}},
		{search.PrefixGt, []string{"d7"}},
		{search.PrefixLt, []string{"d6", "d8"}},
		{search.PrefixSa, nil},
		{search.PrefixEb, []string{"d6", "d8"}},
	})
	run("instant", instant(time.Date(2024, 3, 15, 10, 30, 0, 0, time.UTC)), []c{
		{search.PrefixEq, []string{"d4"}},
		{search.PrefixGt, []string{"d1", "d2", "d3", "d5", "d7"}},
		{search.PrefixLt, []string{"d1", "d2", "d3", "d5", "d6", "d8"}},
	})
	run("period 2024-03-10..20", period(day(2024, 3, 10), day(2024, 3, 20)), []c{
		{search.PrefixEq, []string{"d1", "d4", "d5"}},
		{search.PrefixSa, nil},
		{search.PrefixEb, []string{"d6", "d8"}},
	})
	expectSome(t, s, "ap 2024-03-15", q(vDate(search.PrefixAp, day(2024, 3, 15))),
		[]string{"d1", "d2", "d3", "d4", "d5", "d7"}, []string{"d8", "d9"})
	expect(t, s, "values ORed", q(vDate("", day(2000, 1, 1)), vDate("", day(2023, 12, 31))), "d6", "d8")
	expect(t, s, "clauses ANDed (a range)", query("Procedure",
		clause("date", search.TypeDate, "", vDate(search.PrefixGe, day(2024, 3, 1))),
		clause("date", search.TypeDate, "", vDate(search.PrefixLe, day(2024, 3, 31)))),
		"d1", "d2", "d3", "d4", "d5", "d7")
}

func testSearchLastUpdated(t *testing.T, s store.Store) {
	procedures(t, s) // d1 at base, d2 an hour later, ...
	lu := func(p search.Prefix, r [2]time.Time) *search.Query {
		return query("Procedure", clause("_lastUpdated", search.TypeDate, "", vDate(p, r)))
	}
	hour := func(h int) [2]time.Time {
		lo := base.Add(time.Duration(h) * time.Hour)
		return [2]time.Time{lo, lo.Add(time.Hour - time.Millisecond)}
	}
	expect(t, s, "eq day", lu("", day(2025, 1, 1)), "d1", "d2", "d3", "d4", "d5", "d6", "d7", "d8", "d9")
	expect(t, s, "eq hour", lu(search.PrefixEq, hour(2)), "d3")
	expect(t, s, "eq instant", lu(search.PrefixEq, instant(base.Add(3*time.Hour))), "d4")
	expect(t, s, "ge", lu(search.PrefixGe, hour(6)), "d7", "d8", "d9")
	expect(t, s, "gt", lu(search.PrefixGt, hour(6)), "d8", "d9")
	expect(t, s, "lt", lu(search.PrefixLt, hour(2)), "d1", "d2")
	expect(t, s, "le", lu(search.PrefixLe, hour(2)), "d1", "d2", "d3")
	expect(t, s, "ne", lu(search.PrefixNe, hour(0)), "d2", "d3", "d4", "d5", "d6", "d7", "d8", "d9")
	expect(t, s, "with another clause", query("Procedure",
		clause("_lastUpdated", search.TypeDate, "", vDate(search.PrefixGe, hour(4))),
		clause("date", search.TypeDate, "", vDate(search.PrefixEb, day(2024, 1, 1)))), "d6", "d8")
}

func observations(t *testing.T, s store.Store) {
	t.Helper()
	load(t, s,
		doc{"Observation", "o1", []search.Entry{qty("value-quantity", 70.6, ucum, "kg", "kg")}},
		doc{"Observation", "o2", []search.Entry{qty("value-quantity", 72, ucum, "/min", "beats/minute")}},
		doc{"Observation", "o3", []search.Entry{qty("value-quantity", 70, ucum, "g", "g")}},
		doc{"Observation", "o4", nil},
	)
}

func testSearchQuantity(t *testing.T, s store.Store) {
	observations(t, s)
	q := func(v ...search.Value) *search.Query {
		return query("Observation", clause("value-quantity", search.TypeQuantity, "", v...))
	}
	expect(t, s, "eq with precision", q(vQty("", 70.6, 0.05, "", "")), "o1")
	expect(t, s, "eq integer", q(vQty("", 70, 0.5, "", "")), "o3")
	expect(t, s, "gt", q(vQty(search.PrefixGt, 70, 0.5, "", "")), "o1", "o2")
	expect(t, s, "gt with code", q(vQty(search.PrefixGt, 70, 0.5, "", "kg")), "o1")
	expect(t, s, "system|code", q(vQty("", 70.6, 0.05, ucum, "kg")), "o1")
	expect(t, s, "wrong system", q(vQty("", 70.6, 0.05, "http://other", "kg")))
	expect(t, s, "wrong unit", q(vQty("", 70.6, 0.05, ucum, "g")))
	expect(t, s, "le with code", q(vQty(search.PrefixLe, 72, 0.5, "", "/min")), "o2")
	expect(t, s, "||unit matches the human unit", q(vQty("", 72, 0.5, "", "beats/minute")), "o2")
	expect(t, s, "ge", q(vQty(search.PrefixGe, 72, 0.5, "", "")), "o2")
	expect(t, s, "lt", q(vQty(search.PrefixLt, 70.6, 0.05, "", "")), "o3")
	expect(t, s, "ne", q(vQty(search.PrefixNe, 70, 0.5, "", "")), "o1", "o2")
	expect(t, s, "ap", q(vQty(search.PrefixAp, 72, 0.5, "", "")), "o1", "o2", "o3")
	expect(t, s, "values ORed", q(vQty("", 70, 0.5, "", "g"), vQty("", 72, 0.5, "", "/min")), "o2", "o3")
	expect(t, s, "missing", query("Observation", missing("value-quantity", search.TypeQuantity, true)), "o4")
}

// testSearchQuantityRanges: every prefix compares the range of the
// entry, a point or, with a comparator, a range open at one end ("<100"
// is (-inf, 100)), with the value 100, whose range is [99.5, 100.5)
// (search.html#prefix and #number): eq and ne that range, gt and lt
// 100 itself, ge and le both, sa and eb what lies wholly beyond the
// range, ap 10% of 100 around it.
func testSearchQuantityRanges(t *testing.T, s store.Store) {
	at := func(id string, n float64, comparator string) doc {
		e := qty("value-quantity", n, ucum, "kg", "kg")
		e.Comparator = comparator
		return doc{"Observation", id, []search.Entry{e}}
	}
	load(t, s,
		at("p1", 99.4, ""), at("p2", 99.5, ""), at("p3", 99.95, ""), at("p4", 100, ""),
		at("p5", 100.4, ""), at("p6", 100.5, ""), at("p7", 101, ""), at("p8", 150, ""),
		at("b1", 100, "<"), at("b2", 99.5, "<="), at("b3", 99.5, "<"), at("b4", 80, "<"),
		at("a1", 100, ">"), at("a2", 100.5, ">="), at("a4", 100.4, ">="), at("a5", 120, ">="),
	)
	tests := []struct {
		prefix search.Prefix
		want   []string
	}{
		{search.PrefixEq, []string{"p2", "p3", "p4", "p5"}},
		{search.PrefixNe, []string{"p1", "p6", "p7", "p8", "b1", "b2", "b3", "b4", "a1", "a2", "a4", "a5"}},
		{search.PrefixGt, []string{"p5", "p6", "p7", "p8", "a1", "a2", "a4", "a5"}},
		{search.PrefixLt, []string{"p1", "p2", "p3", "b1", "b2", "b3", "b4"}},
		{search.PrefixGe, []string{"p2", "p3", "p4", "p5", "p6", "p7", "p8", "a1", "a2", "a4", "a5"}},
		{search.PrefixLe, []string{"p1", "p2", "p3", "p4", "p5", "b1", "b2", "b3", "b4"}},
		{search.PrefixSa, []string{"p6", "p7", "p8", "a2", "a5"}},
		{search.PrefixEb, []string{"p1", "b3", "b4"}},
		{search.PrefixAp, []string{"p1", "p2", "p3", "p4", "p5", "p6", "p7", "b1", "b2", "b3", "a1", "a2", "a4"}},
	}
	for _, tt := range tests {
		for _, code := range []string{"", "kg"} {
			expect(t, s, string(tt.prefix)+"100 "+code,
				query("Observation", clause("value-quantity", search.TypeQuantity, "", vQty(tt.prefix, 100, 0.5, "", code))), tt.want...)
		}
	}
	// "<100": the real value is below 100, so it may be below 99 or above 99.9.
	q := func(p search.Prefix, n, precision float64) *search.Query {
		return query("Observation", clause("value-quantity", search.TypeQuantity, "", vQty(p, n, precision, ucum, "kg")),
			clause("_id", search.TypeToken, "", vCode("b1")))
	}
	expect(t, s, "<100 lt99", q(search.PrefixLt, 99, 0.5), "b1")
	expect(t, s, "<100 le99", q(search.PrefixLe, 99, 0.5), "b1")
	expect(t, s, "<100 gt99.9", q(search.PrefixGt, 99.9, 0.05), "b1")
	expect(t, s, "<100 gt100", q(search.PrefixGt, 100, 0.5))
	expect(t, s, "<100 ge100.5", q(search.PrefixGe, 100.5, 0.05))
	expect(t, s, "<100 eq99", q(search.PrefixEq, 99, 0.5))
}

func testSearchNumber(t *testing.T, s store.Store) {
	load(t, s,
		doc{"RiskAssessment", "r1", []search.Entry{num("probability", 0.24)}},
		doc{"RiskAssessment", "r2", []search.Entry{num("probability", 0.3)}},
		doc{"RiskAssessment", "r3", []search.Entry{num("probability", 100)}},
		doc{"RiskAssessment", "r4", []search.Entry{num("probability", 99.6)}},
	)
	q := func(v ...search.Value) *search.Query {
		return query("RiskAssessment", clause("probability", search.TypeNumber, "", v...))
	}
	expect(t, s, "100 (precision 0.5)", q(vNum("", 100, 0.5)), "r3", "r4")
	expect(t, s, "100.0 (precision 0.05)", q(vNum(search.PrefixEq, 100, 0.05)), "r3")
	expect(t, s, "0.3", q(vNum("", 0.3, 0.05)), "r2")
	expect(t, s, "gt", q(vNum(search.PrefixGt, 0.3, 0.05)), "r3", "r4")
	expect(t, s, "ge", q(vNum(search.PrefixGe, 0.3, 0.05)), "r2", "r3", "r4")
	expect(t, s, "lt", q(vNum(search.PrefixLt, 0.3, 0.05)), "r1")
	expect(t, s, "le", q(vNum(search.PrefixLe, 0.3, 0.05)), "r1", "r2")
	expect(t, s, "ge within the precision", q(vNum(search.PrefixGe, 100, 0.5)), "r3", "r4")
	expect(t, s, "le within the precision", q(vNum(search.PrefixLe, 0.2, 0.05)), "r1")
	expect(t, s, "eq's range ends before n+precision", q(vNum(search.PrefixEq, 99, 0.5)))
	expect(t, s, "sa beyond the precision", q(vNum(search.PrefixSa, 100, 0.5)))
	expect(t, s, "gt n itself", q(vNum(search.PrefixGt, 99.5, 0.05)), "r3", "r4")
	expect(t, s, "ne", q(vNum(search.PrefixNe, 100, 0.5)), "r1", "r2")
	expect(t, s, "ap", q(vNum(search.PrefixAp, 100, 0.5)), "r3", "r4")
	expect(t, s, "values ORed", q(vNum("", 0.24, 0.005), vNum("", 0.3, 0.05)), "r1", "r2")
}

func testSearchURI(t *testing.T, s store.Store) {
	load(t, s,
		doc{"ValueSet", "v1", []search.Entry{uri("url", "http://acme.org/fhir/ValueSet/123")}},
		doc{"ValueSet", "v2", []search.Entry{uri("url", "http://acme.org/fhir/ValueSet/124")}},
		doc{"ValueSet", "v3", []search.Entry{uri("url", "http://other.org/x")}},
		doc{"ValueSet", "v4", []search.Entry{uri("url", "http://acme.org/fhir")}},
	)
	q := func(mod, v string) *search.Query {
		return query("ValueSet", clause("url", search.TypeURI, mod, vStr(v)))
	}
	expect(t, s, "exact", q("", "http://acme.org/fhir/ValueSet/123"), "v1")
	expect(t, s, "no prefix match", q("", "http://acme.org/fhir/ValueSet/12"))
	expect(t, s, "case-sensitive", q("", "http://ACME.org/fhir/ValueSet/123"))
	expect(t, s, ":below", q("below", "http://acme.org/fhir/"), "v1", "v2")
	expect(t, s, ":below without slash", q("below", "http://acme.org/fhir"), "v1", "v2", "v4")
	expect(t, s, ":above", q("above", "http://acme.org/fhir/ValueSet/123/_history/5"), "v1", "v4")
}

// testNormalizedOnPut: entries whose Norm/Text are only lower-cased (or
// empty, with Exact set) still match accent-insensitive searches: Put
// normalises them again.
func testNormalizedOnPut(t *testing.T, s store.Store) {
	put(t, s, res("Patient", "a", 1, base),
		search.Entry{Param: "family", Type: search.TypeString, Exact: "Ñandú-Pérez"},
		search.Entry{Param: "given", Type: search.TypeString, Exact: "Zoë", Norm: "zoë"},
		search.Entry{Param: "code", Type: search.TypeToken, Code: "x", Text: "crème brûlée"},
	)
	tests := []struct {
		name string
		cl   search.Clause
	}{
		{"family prefix", clause("family", search.TypeString, "", vStr("nandu pe"))},
		{"family:contains", clause("family", search.TypeString, "contains", vStr("PÉREZ"))},
		{"given", clause("given", search.TypeString, "", vStr("ZOE"))},
		{"code:text", clause("code", search.TypeToken, "text", vStr("Brulee"))},
	}
	for _, tc := range tests {
		expect(t, s, tc.name, query("Patient", tc.cl), "a")
	}
}
