package auth

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
)

func TestParseGranular(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		wantErr string // a part of the reason; "" for a scope the gateway enforces
		wantKey string
	}{
		{"system and code", vitalSigns, "", "Observation?category=http://terminology.hl7.org/CodeSystem/observation-category|vital-signs"},
		{"code alone", "system/Observation.r?status=final", "", "Observation?status=final"},
		{"system alone", "system/Observation.rs?code=http://loinc.org|", "", "Observation?code=http://loinc.org|"},
		{"values ORed", "system/Observation.rs?status=final,amended", "", "Observation?status=amended,final"},
		{"params ANDed", "system/Observation.rs?status=final&category=vital-signs", "", "Observation?category=vital-signs&status=final"},
		{"percent-encoded", "system/Observation.rs?category=http://x%7Cvital-signs", "", "Observation?category=http://x|vital-signs"},
		{"writes", "system/Observation.cud?category=vital-signs", "", "Observation?category=vital-signs"},
		{"star type", "system/*.rs?category=vital-signs", "needs a resource type", ""},
		{"v1 permissions", "system/Observation.read?category=vital-signs", "SMART v2 permissions", ""},
		{"empty", "system/Observation.rs?", "is empty", ""},
		{"unknown param", "system/Observation.rs?colour=red", "not a search parameter of Observation", ""},
		{"date param", "system/Observation.rs?date=2026", "date parameter", ""},
		{"reference param", "system/Observation.rs?subject=Patient/1", "reference parameter", ""},
		{"string param", "system/Patient.rs?name=smith", "string parameter", ""},
		{"modifier", "system/Observation.rs?category:not=vital-signs", "without modifiers", ""},
		{"chain", "system/Observation.rs?subject.identifier=x", "chains", ""},
		{"_id", "system/Observation.rs?_id=1", "not _id", ""},
		{"_has", "system/Patient.rs?_has:Observation:patient:code=x", "not _id, _has", ""},
		{"_count", "system/Observation.rs?_count=1", "result parameters", ""},
		{"no system", "system/Observation.rs?category=|vital-signs", "|code", ""},
		{"empty value", "system/Observation.rs?category=&status=final", "without a value", ""},
		{"bad encoding", "system/Observation.rs?category=%ZZ", "percent-encoded", ""},
		{"patient context", "patient/Observation.rs?category=vital-signs", "system/ resource scope", ""},
		{"gateway scope", "gateway/ingest?x=y", "system/ resource scope", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sc, err := parseGranular(tt.in)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("parseGranular(%q) = %v, want no error", tt.in, err)
				}
				if sc.key != tt.wantKey || sc.text != tt.in {
					t.Errorf("parseGranular(%q) = key %q text %q, want key %q text as written", tt.in, sc.key, sc.text, tt.wantKey)
				}
				return
			}
			var ge *errGranular
			if !errors.As(err, &ge) || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("parseGranular(%q) = %v, want an error containing %q", tt.in, err, tt.wantErr)
			}
			if strings.Contains(err.Error(), "smith") || strings.Contains(err.Error(), "Patient/1") {
				t.Errorf("parseGranular(%q) = %v: the reason quotes a value", tt.in, err)
			}
		})
	}
}

func TestParseScopesGranular(t *testing.T) {
	tests := []struct {
		in, want string
	}{
		{vitalSigns, vitalSigns},
		{vitalSigns + " " + vitalSigns, vitalSigns},
		{"system/Observation.rs?status=final system/Observation.rs?status=final", "system/Observation.rs?status=final"},
		{"system/Observation.rs?status=final system/Observation.rs", "system/Observation.rs?status=final system/Observation.rs"},
		{"system/Observation.rs?date=2026", ""},
	}
	for _, tt := range tests {
		if got := ParseScopes(tt.in).String(); got != tt.want {
			t.Errorf("ParseScopes(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestScopesHasGranular(t *testing.T) {
	tests := []struct {
		scopes, name string
		want         bool
	}{
		{vitalSigns, "system/Observation.rs", false},
		{vitalSigns, "system/Observation.r", false},
		{vitalSigns, vitalSigns, true},
		{vitalSigns, "system/Observation.r?category=http://terminology.hl7.org/CodeSystem/observation-category|vital-signs", true},
		{vitalSigns, "system/Observation.rs?category=vital-signs", false},
		{"system/Observation.rs", vitalSigns, true},
		{"system/*.rs", vitalSigns, true},
		{"system/Observation.r", vitalSigns, false},
	}
	for _, tt := range tests {
		if got := ParseScopes(tt.scopes).Has(tt.name); got != tt.want {
			t.Errorf("ParseScopes(%q).Has(%q) = %v, want %v", tt.scopes, tt.name, got, tt.want)
		}
	}
}

// TestGrantGranular: a granular scope is granted as requested where the
// client may have it or its unrestricted scope; an unrestricted scope asked
// by a client registered for a granular one only gets the granular one; a
// granular scope covered by an unrestricted one granted is dropped.
func TestGrantGranular(t *testing.T) {
	const vs = "system/Observation.rs?category=vital-signs"
	tests := []struct {
		name, requested, allowed, want string
		narrowed                       string
	}{
		{"as registered", vitalSigns, vitalSigns, vitalSigns, ""},
		{"narrowed from the unrestricted", vitalSigns, "system/Observation.cruds", vitalSigns, ""},
		{"narrowed from a wildcard", vitalSigns, "system/*.rs", vitalSigns, ""},
		{"fewer permissions", "system/Observation.r?category=vital-signs", vs, "system/Observation.r?category=vital-signs", ""},
		{"permissions clipped", "system/Observation.cruds?category=vital-signs", vs, vs, "system/Observation.cruds?... (narrowed)"},
		{"other restriction", "system/Observation.rs?category=survey", vs, "", ""},
		{"unrestricted asked, granular registered", "system/Observation.rs", vs, vs, "system/Observation.rs (narrowed)"},
		{"wildcard asked, granular registered", "system/*.rs", vs + " system/Patient.rs", "system/Patient.rs " + vs, ""},
		{"covered by an unrestricted scope", vs + " system/Observation.rs", "system/Observation.rs", "system/Observation.rs", ""},
		{"partly covered", "system/Observation.rs?category=vital-signs system/Observation.r", "system/Observation.rs",
			"system/Observation.r system/Observation.s?category=vital-signs", ""},
		{"two restrictions", vs + " system/Observation.rs?category=laboratory", "system/Observation.rs",
			vs + " system/Observation.rs?category=laboratory", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			allowed, err := configScopes(strings.Fields(tt.allowed))
			if err != nil {
				t.Fatal(err)
			}
			g := grant(ParseScopes(tt.requested), allowed)
			if g.String() != tt.want {
				t.Errorf("grant(%q, %q) = %q, want %q", tt.requested, tt.allowed, g, tt.want)
			}
			if n := strings.Join(narrowed(ParseScopes(tt.requested), g), " "); n != tt.narrowed {
				t.Errorf("narrowed(%q, %q) = %q, want %q", tt.requested, g, n, tt.narrowed)
			}
			if strings.Contains(g.Shown(), "vital-signs") {
				t.Errorf("Shown(%q) = %q: the log would carry the restriction", g, g.Shown())
			}
		})
	}
	_, err := configScopes([]string{"system/Observation.rs?date=2026"})
	if err == nil || !strings.Contains(err.Error(), "date parameter") || strings.Contains(err.Error(), "2026") {
		t.Errorf("configScopes(date restriction) = %v, want the grammar's reason, without the value", err)
	}
}

// FuzzParseGranular: any scope text parses or is refused without a panic;
// a refusal's reason quotes nothing after the "?" but the parameter names
// the gateway knows; what parses is shown without its restriction and
// decides any index entries.
func FuzzParseGranular(f *testing.F) {
	for _, seed := range []string{vitalSigns, "system/Observation.rs?status=final,amended&code=http://loinc.org|",
		"system/Observation.rs?date=2026", "system/*.rs?category=x", "system/Patient.rs?_has:Observation:patient:code=x",
		"system/Observation.rs?category=%ZZ", "system/Observation.rs?category=a\\,b", "system/Observation.rs?&&", "?"} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if strings.ContainsAny(s, " \t\n\r\v\f") {
			return // scopes are space-separated: one never holds a space
		}
		sc, err := parseGranular(s)
		_, query, _ := strings.Cut(s, "?")
		if err != nil {
			if len(query) >= 8 && strings.Contains(err.Error(), query) {
				t.Fatalf("parseGranular(%q) = %v: the reason quotes the restriction", s, err)
			}
			return
		}
		base, _, _ := strings.Cut(s, "?")
		if shown := (Scopes{list: []scope{sc}}).Shown(); shown != base+"?..." || ParseScopes(s).Shown() != shown {
			t.Fatalf("Shown(%q) = %q, ParseScopes(%[1]q).Shown() %q; want %q", s, shown, ParseScopes(s).Shown(), base+"?...")
		}
		(Scopes{list: []scope{sc}}).Restriction(sc.resourceType, "rs")
	})
}

func TestScopesRestriction(t *testing.T) {
	s := ParseScopes(vitalSigns + " system/Observation.rs?code=44261-6 system/Patient.rs system/*.c")
	if rs, un := s.Restriction("Observation", "rs"); un || len(rs) != 2 {
		t.Errorf("Restriction(Observation, rs) = %d restrictions, unrestricted %v; want 2, false", len(rs), un)
	}
	if rs, un := s.Restriction("Patient", "r"); !un || rs != nil {
		t.Errorf("Restriction(Patient, r) = %v, %v; want nil, true", rs, un)
	}
	if rs, un := s.Restriction("Observation", "c"); !un || rs != nil {
		t.Errorf("Restriction(Observation, c) = %v, %v; want nil, true (system/*.c)", rs, un)
	}
	if rs, un := s.Restriction("Observation", "d"); un || rs != nil {
		t.Errorf("Restriction(Observation, d) = %v, %v; want nothing granted", rs, un)
	}
}

// TestGranularNarrowerAndConflicts: a restriction narrower than the one a
// client is registered for (a parameter added, or fewer values) is granted
// as asked; one of another parameter alone is not. A grant whose
// restrictions of one type's searches are of different parameters (every
// search of it would be 403 scope-restriction-unenforceable) is refused at
// the token endpoint, saying why and naming no value; NewServer's Warnings
// name such a registration for serve's warning. Refusal texts name the
// registered restrictions by their parameters, told apart. Before, the
// narrower request was "not registered for", the conflicting grant was
// issued, and the registered restrictions read "system/Observation.c?...
// system/Observation.c?...".
func TestGranularNarrowerAndConflicts(t *testing.T) {
	const (
		vital = "system/Observation.rs?category=" + catSys + "|vital-signs"
		both  = vital + "&code=http://loinc.org|8867-4"
	)
	tests := []struct {
		name, requested, allowed, want string
	}{
		{"a parameter added", both, vital, both},
		{"fewer values", "system/Observation.rs?category=" + catSys + "|vital-signs", "system/Observation.rs?category=" + catSys + "|vital-signs," + catSys + "|laboratory", vital},
		{"a system's code", vital, "system/Observation.rs?category=" + catSys + "|", vital},
		{"another parameter alone", "system/Observation.rs?code=http://loinc.org|8867-4", vital, ""},
		{"a wider value", "system/Observation.rs?category=vital-signs", vital, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			allowed, err := configScopes(strings.Fields(tt.allowed))
			if err != nil {
				t.Fatal(err)
			}
			if g := grant(ParseScopes(tt.requested), allowed); g.String() != tt.want {
				t.Errorf("grant(%q, %q) = %q, want %q", tt.requested, tt.allowed, g, tt.want)
			}
		})
	}

	mixed := []string{vital, "system/Observation.rs?code=http://loinc.org|44261-6"}
	for _, tc := range []struct {
		name   string
		scopes []string
		typ    string
	}{
		{"two parameters", mixed, "Observation"},
		{"one parameter twice", []string{vital, "system/Observation.rs?category=" + catSys + "|laboratory"}, ""},
		{"two parameters, searched by one", []string{vital, "system/Observation.r?code=http://loinc.org|44261-6"}, ""},
		{"two parameters in one scope", []string{both}, ""},
		{"covered by an unrestricted search", append(slices.Clone(mixed), "system/Observation.s"), ""},
	} {
		s, _ := newTestServerWith(t, tc.scopes)
		var got string
		for _, w := range s.Warnings() {
			if strings.Contains(w.Message, "by different search parameters") {
				got = w.Message
			}
		}
		if want := "searches of " + tc.typ + " by different search parameters (category or code)"; tc.typ == "" && got != "" ||
			tc.typ != "" && !strings.Contains(got, want) {
			t.Errorf("Warnings(%s) = %q, want one containing %q", tc.name, got, want)
		}
	}

	s, c := newTestServerWith(t, mixed)
	if ws := s.Warnings(); len(ws) != 1 || !strings.Contains(ws[0].Message, "Observation by different search parameters (category or code)") ||
		strings.Contains(ws[0].Message, "vital") {
		t.Errorf("Warnings() = %+v, want one naming Observation's category or code, no value", ws)
	}
	for _, scope := range []string{"system/Observation.rs", strings.Join(mixed, " ")} {
		_, f := s.Token(context.Background(), tokenForm(rsAssertion(t, c.Now()), scope))
		if f == nil || f.Code != CodeInvalidScope || f.Reason != "scope-restriction-unenforceable" ||
			!strings.Contains(f.Description, "Observation") || !strings.Contains(f.Description, "category or code") ||
			strings.Contains(f.Description, "vital") || strings.Contains(f.Description, "44261") {
			t.Errorf("Token(%q) = %+v, want invalid_scope naming Observation's category or code, no value", scope, f)
		}
	}
	if resp, f := s.Token(context.Background(), tokenForm(rsAssertion(t, c.Now()), vital)); f != nil || resp.Scope != vital {
		t.Errorf("Token(one of them) = %+v, %+v; want it granted", resp, f)
	}

	s, c = newTestServerWith(t, []string{"system/Observation.c?category=" + catSys + "|vital-signs",
		"system/Observation.c?category=" + catSys + "|laboratory", "system/Observation.c?code=http://loinc.org|8867-4"})
	_, f := s.Token(context.Background(), tokenForm(rsAssertion(t, c.Now()), "system/Observation.c?date=gt2020"))
	const want = "or one of the restricted scopes this client is registered for: system/Observation.c?category=... (2 scopes), " +
		"system/Observation.c?code=..."
	if f == nil || !strings.HasSuffix(f.Description, want) {
		t.Errorf("Token(a date restriction) = %+v, want a description ending %q", f, want)
	}
}

const catSys = "http://terminology.hl7.org/CodeSystem/observation-category"

// newTestServerWith is newTestServer with the RS384 client (rsAssertion's)
// registered for scopes.
func newTestServerWith(t *testing.T, scopes []string) (*Server, *clock) {
	t.Helper()
	return newTestServer(t, func(cfg *Config) { cfg.Clients[0].Scopes = scopes })
}
