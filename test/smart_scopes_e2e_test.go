package test

import (
	"slices"
	"strings"
	"testing"
)

// TestSMARTGranularScopes: SMART v2 granular scopes restricted by token
// search parameters are granted (the token's scope is the restricted one:
// clinic-a is registered for system/*.cruds) and enforced; one of another
// form is refused with the reason, asked alone 400 invalid_scope, asked
// beside a grantable scope left out, and the log names it without its
// restriction (it may name a patient). Discovery lists the scope
// syntaxes accepted: v1 and v2.
func TestSMARTGranularScopes(t *testing.T) {
	s := startSecured(t)
	const granular = "system/Observation.rs?category=http://terminology.hl7.org/CodeSystem/observation-category|vital-signs"
	status, body := s.tokenRequest(t, tokenForm(s.assertion(t, "clinic-a", nil), granular))
	if status != 200 || body["scope"] != granular {
		t.Fatalf("granular scope = %d %v, want 200 with scope %s", status, body, granular)
	}
	code, _, b := call(t, "GET", s.base+"/fhir/Observation?category=vital-signs", body["access_token"].(string), "")
	if code != 200 {
		t.Errorf("Observation search with the token = %d %v, want 200", code, b)
	}

	const dated = "system/Observation.rs?date=2026-01-02"
	status, body = s.tokenRequest(t, tokenForm(s.assertion(t, "clinic-a", nil), dated))
	d, _ := body["error_description"].(string)
	if status != 400 || body["error"] != "invalid_scope" ||
		!strings.Contains(d, "system/Observation.rs?... is restricted by search parameters (?) in a form this server does not enforce "+
			"(the restriction's parameter date of Observation is a date parameter") || strings.Contains(d, "2026") {
		t.Errorf("date-restricted scope alone = %d %v, want 400 invalid_scope saying why, without the value", status, body)
	}

	status, body = s.tokenRequest(t, tokenForm(s.assertion(t, "clinic-a", nil), dated+" system/Patient.rs"))
	if status != 200 || body["scope"] != "system/Patient.rs" {
		t.Fatalf("refused granular and unrestricted scopes = %d %v, want 200 with scope system/Patient.rs", status, body)
	}
	logs := s.Logs.String()
	if !strings.Contains(logs, `"msg":"token granted fewer scopes than requested"`) ||
		!strings.Contains(logs, `"scopes_not_granted":"system/Observation.rs?... (granular)"`) || strings.Contains(logs, "2026-01-02") {
		t.Errorf("the log should name the scope not granted, without its restriction:\n%s", logs)
	}

	_, _, conf := doReq(t, "GET", s.base+"/.well-known/smart-configuration", "")
	var caps []string
	for _, c := range list(conf["capabilities"]) {
		caps = append(caps, c.(string))
	}
	if !slices.Contains(caps, "permission-v1") || !slices.Contains(caps, "permission-v2") {
		t.Errorf("capabilities = %v, want permission-v1 and permission-v2 (system/Patient.read and system/Patient.rs are both accepted)", caps)
	}
}
