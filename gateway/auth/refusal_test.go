package auth

import (
	"context"
	"strings"
	"testing"
)

const vitalSigns = "system/Observation.rs?category=http://terminology.hl7.org/CodeSystem/observation-category|vital-signs"

// TestTokenScopeRefusals: when nothing requested can be granted, the
// invalid_scope error_description says why for each scope (a granular scope
// of a form the gateway does not enforce, and what to ask instead; a scope outside the
// client's registration; a form the gateway does not grant), echoing only
// scopes of the gateway's own grammar: never a granular scope's
// restriction or a string of another form.
func TestTokenScopeRefusals(t *testing.T) {
	const prefix = "none of the requested scopes can be granted to this client: "
	tests := []struct {
		name    string
		scope   string
		want    string   // the description after prefix
		mustNot []string // never in the description
	}{
		{"granular of a date, base registered", "system/Observation.rs?date=2026-01",
			"system/Observation.rs?... is restricted by search parameters (?) in a form this server does not enforce " +
				"(the restriction's parameter date of Observation is a date parameter: only token parameters may restrict a " +
				"scope): ask for a restriction of token parameters, or the unrestricted system/Observation.rs",
			[]string{"2026"}},
		{"granular wildcard, base narrowed", "system/*.cruds?_tag=x",
			"system/*.cruds?... is restricted by search parameters (?) in a form this server does not enforce (a " +
				"restriction by search parameters needs a resource type, not *: the parameters are those of one type): " +
				"ask for a restriction of token parameters, or unrestricted scopes: this client can get system/*.rs system/Observation.cruds",
			[]string{"_tag", "=x"}},
		{"granular, base not registered", "system/Patient.cud?_id=p-123",
			"system/Patient.cud?... is restricted by search parameters (?) in a form this server does not enforce (the " +
				"restriction may name only token search parameters of Patient, without modifiers or chains: not _id, _has, " +
				"modifiers (:), chains (.) or result parameters), and this client is not registered for system/Patient.cud either",
			[]string{"p-123"}},
		{"granular, not registered", "system/Patient.cud?gender=female",
			"this client is not registered for system/Patient.cud?...", []string{"female"}},
		{"outside the registration", "system/Patient.cud gateway/operator",
			"this client is not registered for system/Patient.cud; this client is not registered for gateway/operator", nil},
		{"patient context", "patient/Observation.rs?code=1234-5",
			"scope 1 (patient/...) needs a launch context, which SMART Backend Services does not have: ask for system/ scopes", []string{"1234-5", "Observation"}},
		{"unknown forms", `openid "sec\ret"`,
			"scope 1 is not a scope this server grants; scope 2 is not a scope this server grants" + scopeForms,
			[]string{"openid", "sec", `"`, `\`}},
		{"repeated scope explained once", "system/Patient.cud system/Patient.cud", "this client is not registered for system/Patient.cud", nil},
		{"many", "a b c d e f g",
			"scope 1 is not a scope this server grants; scope 2 is not a scope this server grants; scope 3 is not a scope this server grants; " +
				"scope 4 is not a scope this server grants; scope 5 is not a scope this server grants; and 2 more" + scopeForms, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, c := newTestServer(t)
			_, f := s.Token(context.Background(), tokenForm(rsAssertion(t, c.Now()), tt.scope))
			if f == nil || f.Code != CodeInvalidScope || f.Reason != "scope-not-granted" {
				t.Fatalf("Token(%q) = %+v, want invalid_scope (scope-not-granted)", tt.scope, f)
			}
			if f.Description != prefix+tt.want {
				t.Errorf("Token(%q) error_description =\n%q, want\n%q", tt.scope, f.Description, prefix+tt.want)
			}
			for _, bad := range tt.mustNot {
				if strings.Contains(f.Description, bad) {
					t.Errorf("error_description %q echoes %q", f.Description, bad)
				}
			}
			for _, r := range f.Description { // RFC 6749 section 5.2: %x20-21 / %x23-5B / %x5D-7E
				if r < 0x20 || r > 0x7e || r == '"' || r == '\\' {
					t.Errorf("error_description %q has %q, which RFC 6749 does not allow", f.Description, r)
				}
			}
		})
	}
}

// TestTokenPartialGrant: SMART lets the token endpoint grant fewer scopes
// than asked; the response's scope is exactly what the token grants, and
// NotGranted (for the log and the audit record, not the client) names
// each requested scope that grants nothing, without its restriction.
func TestTokenPartialGrant(t *testing.T) {
	tests := []struct {
		name       string
		scope      string
		wantScope  string
		notGranted string
	}{
		{"granular granted", vitalSigns + " system/Patient.rs", "system/Patient.rs " + vitalSigns, ""},
		{"granular of another form dropped", "system/Observation.rs?date=2026 system/Patient.rs", "system/Patient.rs",
			"system/Observation.rs?... (granular)"},
		{"granular narrowed", "system/Observation.cruds?category=vital-signs", "system/Observation.cruds?category=vital-signs", ""},
		{"granular covered by its unrestricted scope", vitalSigns + " system/Observation.rs", "system/Observation.rs", ""},
		{"granular covered by a wildcard", "system/Patient.rs?_id=1 system/*.rs", "system/*.rs", ""},
		{"unknown and unregistered", "openid system/Patient.rs gateway/operator", "system/Patient.rs",
			"scope 1 (unrecognised) gateway/operator (not-registered)"},
		{"narrowed is reported, not dropped", "system/*.cruds", "system/*.rs system/Observation.cruds", "system/*.cruds (narrowed)"},
		{"narrowed by type", "system/Patient.cruds system/Observation.cruds", "system/Patient.rs system/Observation.cruds", "system/Patient.cruds (narrowed)"},
		{"many dropped, bounded", "a b c d e f g system/Patient.rs", "system/Patient.rs",
			"scope 1 (unrecognised) scope 2 (unrecognised) scope 3 (unrecognised) scope 4 (unrecognised) scope 5 (unrecognised) and 2 more"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, c := newTestServer(t)
			resp, f := s.Token(context.Background(), tokenForm(rsAssertion(t, c.Now()), tt.scope))
			if f != nil {
				t.Fatalf("Token(%q) = %+v, want success", tt.scope, f)
			}
			if resp.Scope != tt.wantScope || strings.Join(resp.NotGranted, " ") != tt.notGranted {
				t.Errorf("Token(%q) = scope %q, not granted %q; want %q, %q", tt.scope, resp.Scope, resp.NotGranted, tt.wantScope, tt.notGranted)
			}
			// The response's scope is exact: the token grants what it says.
			p, fail := s.Authenticate(context.Background(), "Bearer "+resp.AccessToken)
			if fail != nil || p.Scopes.String() != resp.Scope {
				t.Errorf("Authenticate(token) = %v, %v; want scopes %q", p, fail, resp.Scope)
			}
		})
	}
}
