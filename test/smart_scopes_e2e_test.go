package test

import (
	"slices"
	"strings"
	"testing"
)

// TestSMARTGranularScopes: SMART v2 granular scopes (with ?) are not
// supported, and the token endpoint says so: asked alone, 400
// invalid_scope whose error_description says why and what to ask
// instead; asked beside a grantable scope, the token grants exactly what
// its scope says and the log tells the operator what was left out,
// without the restriction (it may name a patient). Discovery lists the
// scope syntaxes accepted: v1 and v2.
func TestSMARTGranularScopes(t *testing.T) {
	s := startSecured(t)
	const granular = "system/Observation.rs?category=http://terminology.hl7.org/CodeSystem/observation-category|vital-signs"

	status, body := s.tokenRequest(t, tokenForm(s.assertion(t, "clinic-a", nil), granular))
	d, _ := body["error_description"].(string)
	if status != 400 || body["error"] != "invalid_scope" ||
		!strings.Contains(d, "system/Observation.rs?... is restricted by search parameters (?), which this server does not support: "+
			"ask for the unrestricted system/Observation.rs instead") || strings.Contains(d, "vital-signs") {
		t.Errorf("granular scope alone = %d %v, want 400 invalid_scope saying why, without the restriction", status, body)
	}

	status, body = s.tokenRequest(t, tokenForm(s.assertion(t, "clinic-a", nil), granular+" system/Patient.rs"))
	if status != 200 || body["scope"] != "system/Patient.rs" {
		t.Fatalf("granular and unrestricted scopes = %d %v, want 200 with scope system/Patient.rs", status, body)
	}
	code, _, _ := call(t, "GET", s.base+"/fhir/Observation?category=vital-signs", body["access_token"].(string), "")
	if code != 403 {
		t.Errorf("Observation search with the token = %d, want 403: it was not granted", code)
	}
	logs := s.Logs.String()
	if !strings.Contains(logs, `"msg":"token granted fewer scopes than requested"`) ||
		!strings.Contains(logs, `"scopes_not_granted":"system/Observation.rs?... (granular)"`) || strings.Contains(logs, "vital-signs") {
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
