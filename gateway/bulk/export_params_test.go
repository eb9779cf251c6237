package bulk_test

import (
	"context"
	"fmt"
	"net/url"
	"strings"
	"testing"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/auditlog"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/auth"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/bulk"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/outcome"
)

// TestExportKickoffRefusals: kick-off parameters the gateway would
// otherwise ignore or misread are refused with a rule id and the
// parameter named: a narrowing parameter also under handling=lenient
// (ignoring patient= exported every patient: p7 F12), a repeated _since
// and an empty _type (F3), a '+' decoded as a space (F2), result
// parameters in a _typeFilter (F14), a type outside the patient
// compartment at Patient and Group level (F4).
func TestExportKickoffRefusals(t *testing.T) {
	a, st := newApp(t, 1<<20)
	seed(t, st, "Group", 1, func(int) map[string]any {
		return map[string]any{"type": "person", "actual": true,
			"member": []any{map[string]any{"entity": map[string]any{"reference": "Patient/p1"}}}}
	})
	sc := auditlog.NewScope("bulk-export", &auth.Principal{ClientID: "c", Scopes: auth.ParseScopes("system/*.rs")})
	const lenient = "respond-async, handling=lenient"
	for _, tc := range []struct {
		name, level, query, prefer, rule, expression, says string
	}{
		{"patient lenient", bulk.LevelPatient, "_type=Patient&patient=Patient/p1", lenient, "export-parameter-unsupported", "patient", "narrows"},
		{"patient strict", bulk.LevelPatient, "patient=Patient/p1", "respond-async", "export-parameter-unsupported", "patient", "narrows"},
		{"_elements lenient", bulk.LevelSystem, "_type=Patient&_elements=id", lenient, "export-parameter-unsupported", "_elements", "narrows"},
		{"includeAssociatedData lenient", bulk.LevelSystem, "includeAssociatedData=_none", lenient, "export-parameter-unsupported", "includeAssociatedData", "narrows"},
		{"unknown lenient", bulk.LevelSystem, "_typ=Patient", lenient, "export-parameter-unsupported", "", "unknown parameter"},
		{"_since twice", bulk.LevelSystem, "_since=2020-01-01T00:00:00Z&_since=2021-01-01T00:00:00Z", "respond-async", "export-since-invalid", "_since", "more than once"},
		{"_type empty", bulk.LevelSystem, "_type=", "respond-async", "export-type-unknown", "_type", "empty"},
		{"_type empty item", bulk.LevelSystem, "_type=Patient,,Observation", "respond-async", "export-type-unknown", "_type", "empty"},
		{"_outputFormat plus", bulk.LevelSystem, "_outputFormat=application/fhir+ndjson", "respond-async", "export-format-unsupported", "_outputFormat", "%2B"},
		{"_since plus", bulk.LevelSystem, "_since=2020-01-01T00:00:00+01:00", "respond-async", "export-since-invalid", "_since", "%2B"},
		{"_since a date", bulk.LevelSystem, "_since=2020-01-01", "respond-async", "export-since-invalid", "_since", "to the second with its time zone"},
		{"_typeFilter _summary", bulk.LevelSystem, "_type=Observation&_typeFilter=" + url.QueryEscape("Observation?_summary=true"), "respond-async", "export-typefilter-invalid", "_typeFilter", "_summary"},
		{"_typeFilter _offset", bulk.LevelSystem, "_type=Observation&_typeFilter=" + url.QueryEscape("Observation?code=x&_offset=5"), "respond-async", "export-typefilter-invalid", "_typeFilter", "_offset"},
		{"_typeFilter _elements", bulk.LevelSystem, "_type=Observation&_typeFilter=" + url.QueryEscape("Observation?_elements=id"), "respond-async", "export-typefilter-invalid", "_typeFilter", "_elements"},
		{"_typeFilter _count", bulk.LevelSystem, "_type=Observation&_typeFilter=" + url.QueryEscape("Observation?code=x&_count=5"), "respond-async", "export-typefilter-invalid", "_typeFilter", "_count"},
		// A _sort the search would correct is refused as a result
		// parameter, and a parameter unknown is told with the search
		// parameters alone (a new user's first hour).
		{"_typeFilter _sort by a string", bulk.LevelSystem, "_type=Patient&_typeFilter=" + url.QueryEscape("Patient?name=x&_sort=name"), "respond-async", "export-typefilter-invalid", "_typeFilter", "result parameters"},
		{"_typeFilter unknown parameter", bulk.LevelSystem, "_type=Patient&_typeFilter=" + url.QueryEscape("Patient?namee=x"), "respond-async", "export-typefilter-invalid", "_typeFilter", "search parameters are"},
		{"1,000 _typeFilters of a type", bulk.LevelSystem, "_type=Observation&" + typeFilters("Observation", 1000, "&"), "respond-async", "search-limit-exceeded", "_typeFilter", "at most 30"},
		{"31 _typeFilters of a type in one value", bulk.LevelSystem, "_type=Observation&_typeFilter=" + strings.ReplaceAll(typeFilters("Observation", 31, ","), "_typeFilter=", ""), "respond-async", "search-limit-exceeded", "_typeFilter", "at most 30"},
		{"Patient export Organization", bulk.LevelPatient, "_type=Organization", "respond-async", "export-type-not-in-compartment", "_type", "Organization"},
		{"Group export Practitioner", bulk.LevelGroup, "_type=Patient,Practitioner", "respond-async", "export-type-not-in-compartment", "_type", "Practitioner"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			q, err := url.ParseQuery(tc.query)
			if err != nil {
				t.Fatal(err)
			}
			_, err = a.Bulk.Export(context.Background(), sc, bulk.ExportParams{Level: tc.level, Group: "group-0000000",
				Prefer: tc.prefer, Base: "https://gw", Query: q})
			kind, issues := outcome.From(err)
			if kind != outcome.Invalid || len(issues) != 1 || issues[0].Rule != tc.rule {
				t.Fatalf("Export(%s) = %v, want 400 %s", tc.query, err, tc.rule)
			}
			if issues[0].Expression != tc.expression || !strings.Contains(issues[0].Message, tc.says) {
				t.Errorf("Export(%s) says %q at %q, want %q at %q", tc.query, issues[0].Message, issues[0].Expression, tc.says, tc.expression)
			}
			if strings.Contains(tc.name, "unknown parameter") && strings.Contains(issues[0].Message, "result parameters") {
				t.Errorf("Export(%s) says %q: it offers the result parameters a _typeFilter refuses", tc.query, issues[0].Message)
			}
		})
	}
	// What stays accepted: a Prefer with ';' (HAPI's reading), the
	// parameters lenient ignores, the compartment's types.
	for i, tc := range []struct{ level, query, prefer string }{
		{bulk.LevelSystem, "_type=Patient", "respond-async; handling=lenient"},
		{bulk.LevelSystem, "_type=Patient&allowPartialManifests=true", lenient},
		{bulk.LevelPatient, "_type=Patient,Observation,Provenance,AdverseEvent", "respond-async"},
		{bulk.LevelSystem, "_outputFormat=application/fhir%2Bndjson&_since=2020-01-01T00:00:00%2B01:00", "respond-async"},
		// 30 search parameters in the _typeFilters of each type.
		{bulk.LevelSystem, "_type=Observation,Patient&" + typeFilters("Observation", 30, "&") + "&" + typeFilters("Patient", 30, "&"), "respond-async"},
	} {
		q, err := url.ParseQuery(tc.query)
		if err != nil {
			t.Fatal(err)
		}
		// A client each: a client has at most three exports running.
		sc := auditlog.NewScope("bulk-export", &auth.Principal{ClientID: fmt.Sprint("ok-", i), Scopes: auth.ParseScopes("system/*.rs")})
		if _, err := a.Bulk.Export(context.Background(), sc, bulk.ExportParams{Level: tc.level, Prefer: tc.prefer, Base: "https://gw", Query: q}); err != nil {
			t.Errorf("Export(%s, Prefer %s) = %v, want it started", tc.query, tc.prefer, err)
		}
	}
}

// typeFilters is n _typeFilter parameters of typ, one search parameter
// each, joined by sep ("&": repeated, ",": one value once the names are
// dropped), for a query string.
func typeFilters(typ string, n int, sep string) string {
	fs := make([]string, n)
	for i := range fs {
		fs[i] = "_typeFilter=" + url.QueryEscape(fmt.Sprintf("%s?_id=f%d", typ, i))
	}
	return strings.Join(fs, sep)
}
