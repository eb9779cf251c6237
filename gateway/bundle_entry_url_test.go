package gateway_test

import (
	"net/http"
	"strings"
	"testing"
)

// TestBundleEntrySearchOrOperation (p15 F5): a batch entry that POSTs a
// search (Type/_search) or an operation (Type/$validate) the top level's
// way is refused saying what to send instead, not that the url's id is not
// a valid FHIR id (no id was sent).
func TestBundleEntrySearchOrOperation(t *testing.T) {
	h := fhirServer(t)
	tests := []struct {
		entry, want string
	}{
		{`{"request":{"method":"POST","url":"Patient/_search"}}`, "in a Bundle a search is a GET entry"},
		{`{"request":{"method":"GET","url":"Patient/_search"}}`, "in a Bundle a search is a GET entry"},
		{`{"resource":{"resourceType":"Patient"},"request":{"method":"POST","url":"Patient/$validate"}}`, "operations are not run as Bundle entries"},
		{`{"resource":{"resourceType":"Patient"},"request":{"method":"POST","url":"$validate"}}`, "operations are not run as Bundle entries"},
		{`{"resource":{"resourceType":"Patient","id":"x"},"request":{"method":"PUT","url":"Patient/x/$validate"}}`, "operations are not run as Bundle entries"},
		{`{"resource":{"resourceType":"Patient"},"request":{"method":"POST","url":"Patient/123"}}`, "a POST entry's url is the resource type"},
	}
	var entries []string
	for _, tc := range tests {
		entries = append(entries, tc.entry)
	}
	rec := req(h, "POST", "/fhir", `{"resourceType":"Bundle","type":"batch","entry":[`+strings.Join(entries, ",")+`]}`)
	if rec.Code != http.StatusOK {
		t.Fatalf("batch = %d %s", rec.Code, rec.Body)
	}
	for i, e := range decode(t, rec)["entry"].([]any) {
		resp := e.(map[string]any)["response"].(map[string]any)
		is := resp["outcome"].(map[string]any)["issue"].([]any)[0].(map[string]any)
		rule := is["details"].(map[string]any)["coding"].([]any)[0].(map[string]any)["code"]
		text, _ := is["diagnostics"].(string)
		if resp["status"] != "400 Bad Request" || rule != "bundle-entry-url-invalid" || !strings.Contains(text, tests[i].want) ||
			strings.Contains(text, "not a valid FHIR id") {
			t.Errorf("entry %s: %v %v %q, want 400 bundle-entry-url-invalid saying %q", tests[i].entry, resp["status"], rule, text, tests[i].want)
		}
	}
}
