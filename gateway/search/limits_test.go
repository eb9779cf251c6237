package search

import (
	"errors"
	"net/url"
	"strings"
	"testing"
)

// repeat is key=value n times.
func repeat(key, value string, n int) string {
	parts := make([]string, n)
	for i := range parts {
		parts[i] = key + "=" + value
	}
	return strings.Join(parts, "&")
}

func TestLimits(t *testing.T) {
	ids := make([]string, 101)
	for i := range ids {
		ids[i] = "id" + string(rune('a'+i%26))
	}
	manyParams := []string{}
	for _, p := range []string{"name", "family", "given", "birthdate", "gender", "identifier", "_id"} {
		manyParams = append(manyParams, repeat(p, "x", 5))
	}
	tests := []struct {
		name, rt, query string
		limits          Limits
		param           string // "" when the whole search is at fault or ok
		ok              bool
	}{
		{name: "300 repetitions", rt: "Patient", query: repeat("name", "a", 300), param: "name"},
		{name: "1000 repetitions", rt: "Patient", query: repeat("name", "a", 1000), param: "name"},
		{name: "6 repetitions", rt: "Patient", query: repeat("name", "a", 6), param: "name"},
		{name: "5 repetitions", rt: "Patient", query: repeat("name", "a", 5), ok: true},
		{name: "repetitions of an unknown name", rt: "Patient", query: repeat("Jane Doe", "a", 6)},
		{name: "too many parameters", rt: "Patient", query: strings.Join(manyParams, "&")},
		{name: "101 values", rt: "Patient", query: "_id=" + strings.Join(ids, ","), param: "_id"},
		{name: "100 values", rt: "Patient", query: "_id=" + strings.Join(ids[:100], ","), ok: true},
		{name: "escaped commas are one value", rt: "Patient", query: "name=" + strings.Repeat(`a\,`, 200), ok: true},
		{name: "11 includes", rt: "Observation", query: repeat("_include", "Observation:subject", 6) + "&" +
			repeat("_revinclude", "Provenance:target", 5)},
		{name: "10 includes", rt: "Observation", query: repeat("_include", "Observation:subject", 5) + "&" +
			repeat("_revinclude", "Provenance:target", 5), ok: true},
		{name: "chain of two links", rt: "Observation", query: "subject.organization.name=x", param: "subject"},
		{name: "_has of two links", rt: "Patient", query: "_has:Observation:patient:_has:AuditEvent:entity:type=x", param: "_has:Observation:patient"},
		{name: "_has and a chain", rt: "Patient", query: "_has:Observation:patient:subject.name=x", param: "_has:Observation:patient"},
		{name: "500 :text values", rt: "Observation", query: repeat("code:text", strings.Join(ids[:100], ","), 5), param: "code:text"},
		{name: "11 :text values", rt: "Observation", query: "code:text=a,b,c,d,e,f&category:text=g,h,i,j,k", param: "code:text"},
		{name: "11 :contains values", rt: "Patient", query: repeat("name:contains", "a,b", 5) + "&family:contains=c", param: "name:contains"},
		{name: ":text and :contains together", rt: "Patient", query: "identifier:text=a,b,c,d,e,f&name:contains=g,h,i,j,k", param: "name:contains"},
		{name: "chained :contains values", rt: "Observation", query: "subject:Patient.name:contains=" + strings.Join(ids[:11], ","), param: "subject:Patient.name:contains"},
		{name: "10 scanning values", rt: "Observation", query: "code:text=a,b,c,d,e&category:text=f,g,h,i,j", ok: true},
		{name: "escaped commas are one scanning value", rt: "Patient", query: "name:contains=" + strings.Repeat(`a\,`, 20), ok: true},
		{name: "100 indexed values beside scans", rt: "Observation", query: "code=" + strings.Join(ids[:100], ",") + "&code:text=a,b,c,d,e,f,g,h,i,j", ok: true},
		{name: "custom repeats", rt: "Patient", query: repeat("name", "a", 3), limits: Limits{Repeats: 2}, param: "name"},
		{name: "custom values", rt: "Patient", query: "name=a,b,c", limits: Limits{Values: 2}, param: "name"},
		{name: "custom params", rt: "Patient", query: "name=a&family=b&_count=1", limits: Limits{Params: 2}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := tt.limits.Parse(tt.rt, mustQuery(t, tt.query), false)
			if tt.ok {
				if err != nil {
					t.Fatalf("Parse = %v, want ok", err)
				}
				return
			}
			var se *Error
			if !errors.As(err, &se) || se.Rule != RuleLimitExceeded || se.Param != tt.param {
				t.Fatalf("Parse = %+v, want %s naming %q", err, RuleLimitExceeded, tt.param)
			}
			if strings.Contains(se.Message, "Jane") {
				t.Errorf("the message quotes an unknown name: %s", se.Message)
			}
			// Lenient mode does not ignore a limit.
			if _, _, err := tt.limits.Parse(tt.rt, mustQuery(t, tt.query), true); !errors.As(err, &se) || se.Rule != RuleLimitExceeded {
				t.Errorf("lenient Parse = %v, want %s", err, RuleLimitExceeded)
			}
		})
	}
	// Conditional criteria are bounded the same way.
	if _, err := ParseConditional("Patient", repeat("identifier", "s|v", 300)); !isRule(err, RuleLimitExceeded) {
		t.Errorf("ParseConditional(300 repetitions) = %v, want %s", err, RuleLimitExceeded)
	}
	if _, err := (Limits{Repeats: 1}).ParseConditional("Patient", "identifier=a|b&identifier=c|d"); !isRule(err, RuleLimitExceeded) {
		t.Errorf("ParseConditional within Limits{Repeats: 1} = %v, want %s", err, RuleLimitExceeded)
	}
	q, _, err := Limits{Included: 7}.Parse("Patient", url.Values{}, false)
	if err != nil || q.MaxIncluded != 7 {
		t.Errorf("Limits{Included: 7}.Parse = %+v, %v; want MaxIncluded 7", q, err)
	}
}

func isRule(err error, rule string) bool {
	var se *Error
	return errors.As(err, &se) && se.Rule == rule
}
