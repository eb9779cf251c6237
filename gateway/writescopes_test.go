package gateway_test

import (
	"encoding/base64"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/auth"
)

// writeClients are the clients of TestWriteWithoutRead, all of clinic-a:
// full may do everything, updater may only update Observations, deleter
// only delete them, and updaterSearch update and search them.
var writeClients = []auth.Client{
	{ID: "full", Tenant: "clinic-a", Scopes: []string{"system/*.cruds"}},
	{ID: "updater", Tenant: "clinic-a", Scopes: []string{"system/Observation.u"}},
	{ID: "deleter", Tenant: "clinic-a", Scopes: []string{"system/Observation.d"}},
	{ID: "updaterSearch", Tenant: "clinic-a", Scopes: []string{"system/Observation.us"}},
}

// TestWriteWithoutRead: a client that may update or delete a type but not
// read it learns nothing of a stored resource beyond what it wrote. A
// PATCH is computed on content the client does not send, and a JSON Patch
// `test` (or a patch that changes nothing) writes nothing and answers the
// resource, or tells by patch-test-failed whether a value is there: so a
// PATCH needs read (r, or s) on the type besides u, checked before the
// patch is looked at (403 naming system/<Type>.r, the same whether the
// test would hold or not), over HTTP and in Bundle entries. A PUT or DELETE
// by such a client is not refused, but its 412 names no version, its PUT
// always writes the version it answers (no "unchanged" answer carrying a
// version it did not write), and its DELETE of a deleted resource carries
// no ETag of the deletion someone else wrote.
func TestWriteWithoutRead(t *testing.T) {
	h, _, tok := clientsServer(t, writeClients)
	obs := `{"resourceType":"Observation","status":"final","code":{"text":"heart rate"},"valueQuantity":{"value":71}}`
	rec := req(h, "POST", "/fhir/Observation", obs, tok["full"])
	if rec.Code != http.StatusCreated {
		t.Fatalf("create = %d %s", rec.Code, rec.Body)
	}
	id := decode(t, rec)["id"].(string)
	// Versions 2 and 3, so that a version number in an answer is telling.
	for _, v := range []string{"72", "73"} {
		body := `{"resourceType":"Observation","id":"` + id + `","status":"final","code":{"text":"heart rate"},"valueQuantity":{"value":` + v + `}}`
		if rec := req(h, "PUT", "/fhir/Observation/"+id, body, tok["full"]); rec.Code != http.StatusOK {
			t.Fatalf("update = %d %s", rec.Code, rec.Body)
		}
	}
	stored := func() string {
		t.Helper()
		rec := req(h, "GET", "/fhir/Observation/"+id, "", tok["full"])
		if rec.Code != http.StatusOK {
			t.Fatalf("read = %d %s", rec.Code, rec.Body)
		}
		return rec.Header().Get("ETag")
	}
	if got := stored(); got != `W/"3"` {
		t.Fatalf("ETag = %s, want W/\"3\"", got)
	}

	jsonPatch := func(ops string) string {
		return `{"resourceType":"Binary","contentType":"application/json-patch+json","data":"` +
			base64.StdEncoding.EncodeToString([]byte(ops)) + `"}`
	}
	entry := func(kind, resource string) string {
		return `{"resourceType":"Bundle","type":"` + kind + `","entry":[{"resource":` + resource +
			`,"request":{"method":"PATCH","url":"Observation/` + id + `"}}]}`
	}
	const (
		holds = `[{"op":"test","path":"/valueQuantity/value","value":73}]`
		fails = `[{"op":"test","path":"/valueQuantity/value","value":70}]`
		noop  = `{"resourceType":"Parameters","parameter":[{"name":"operation","part":[{"name":"type","valueCode":"replace"},` +
			`{"name":"path","valueString":"Observation.status"},{"name":"value","valueCode":"final"}]}]}`
	)
	for _, tc := range []struct {
		name, method, target, body string
		headers                    []string
		location                   string
	}{
		{"JSON Patch test that holds", "PATCH", "/fhir/Observation/" + id, holds,
			[]string{"Content-Type: application/json-patch+json", "Prefer: return=representation"}, ""},
		{"JSON Patch test that fails", "PATCH", "/fhir/Observation/" + id, fails,
			[]string{"Content-Type: application/json-patch+json", "Prefer: return=minimal"}, ""},
		{"FHIRPath Patch that changes nothing", "PATCH", "/fhir/Observation/" + id, noop, nil, ""},
		{"transaction entry", "POST", "/fhir", entry("transaction", jsonPatch(holds)), []string{"Prefer: return=representation"}, "Bundle.entry[0]"},
		{"transaction entry, test fails", "POST", "/fhir", entry("transaction", jsonPatch(fails)), nil, "Bundle.entry[0]"},
		{"transaction entry, FHIRPath Patch", "POST", "/fhir", entry("transaction", noop), nil, "Bundle.entry[0]"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := req(h, tc.method, tc.target, tc.body, append([]string{tok["updater"]}, tc.headers...)...)
			refused(t, rec, "system/Observation.r", tc.location)
			if strings.Contains(rec.Body.String(), `"value":73`) || rec.Header().Get("ETag") != "" {
				t.Errorf("the refusal carries the resource or its version: %v %s", rec.Header(), rec.Body)
			}
		})
	}
	// In a batch the entry fails alone, the same whether the test holds.
	for _, ops := range []string{holds, fails} {
		rec := req(h, "POST", "/fhir", entry("batch", jsonPatch(ops)), tok["updater"], "Prefer: return=representation")
		if rec.Code != http.StatusOK {
			t.Fatalf("batch = %d %s", rec.Code, rec.Body)
		}
		b := decode(t, rec)
		e := b["entry"].([]any)[0].(map[string]any)
		resp, _ := json.Marshal(e["response"])
		if !strings.HasPrefix(e["response"].(map[string]any)["status"].(string), "403") || e["resource"] != nil ||
			!strings.Contains(string(resp), "system/Observation.r") || strings.Contains(rec.Body.String(), `"value":73`) {
			t.Errorf("batch PATCH entry by an update-only client = %s, want 403 naming system/Observation.r and no resource", rec.Body)
		}
	}
	// Search is enough: it reads the same resource by _id.
	rec = req(h, "PATCH", "/fhir/Observation/"+id, holds, tok["updaterSearch"], "Content-Type: application/json-patch+json")
	if rec.Code != http.StatusOK {
		t.Errorf("patch by a client with u and s = %d %s, want 200", rec.Code, rec.Body)
	}
	if got := stored(); got != `W/"3"` {
		t.Fatalf("after the patches, ETag = %s, want W/\"3\" (nothing written)", got)
	}

	// A 412 names no version the client could not read.
	put := `{"resourceType":"Observation","id":"` + id + `","status":"final","code":{"text":"heart rate"},"valueQuantity":{"value":73}}`
	noVersion := func(t *testing.T, body string) {
		t.Helper()
		var oo struct {
			Issue []struct{ Details struct{ Text string } }
		}
		if err := json.Unmarshal([]byte(body), &oo); err != nil || len(oo.Issue) == 0 {
			t.Fatalf("not an OperationOutcome: %s", body)
		}
		if text := oo.Issue[0].Details.Text; strings.Contains(text, "3") {
			t.Errorf("412 text %q names the current version (3), which the client may not read", text)
		}
	}
	for _, tc := range []struct{ name, client, method, target, body, header string }{
		{"PUT If-Match", "updater", "PUT", "/fhir/Observation/" + id, put, `If-Match: W/"1"`},
		{"DELETE If-Match", "deleter", "DELETE", "/fhir/Observation/" + id, "", `If-Match: W/"1"`},
		{"transaction PUT ifMatch", "updater", "POST", "/fhir", `{"resourceType":"Bundle","type":"transaction","entry":[{"resource":` + put +
			`,"request":{"method":"PUT","url":"Observation/` + id + `","ifMatch":"W/\"1\""}}]}`, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := req(h, tc.method, tc.target, tc.body, tok[tc.client], tc.header)
			if rec.Code != http.StatusPreconditionFailed {
				t.Fatalf("%s = %d %s, want 412", tc.name, rec.Code, rec.Body)
			}
			noVersion(t, rec.Body.String())
		})
	}
	// A PUT of what is stored writes a version of its own: an answer
	// carrying version 3 would tell the client its guess was the content.
	rec = req(h, "PUT", "/fhir/Observation/"+id, put, tok["updater"])
	if rec.Code != http.StatusOK || rec.Header().Get("ETag") != `W/"4"` {
		t.Errorf("PUT of the stored content by an update-only client = %d ETag %s, want 200 with the version it wrote, W/\"4\"",
			rec.Code, rec.Header().Get("ETag"))
	}
	// The full client's same PUT changes nothing (the version it can read).
	rec = req(h, "PUT", "/fhir/Observation/"+id, put, tok["full"])
	if rec.Code != http.StatusOK || rec.Header().Get("ETag") != `W/"4"` {
		t.Errorf("PUT of the stored content by a reader = %d ETag %s, want 200 W/\"4\" (unchanged)", rec.Code, rec.Header().Get("ETag"))
	}
	// A DELETE of a resource someone else deleted carries no ETag.
	if rec := req(h, "DELETE", "/fhir/Observation/"+id, "", tok["full"]); rec.Code != http.StatusNoContent {
		t.Fatalf("delete = %d %s", rec.Code, rec.Body)
	}
	rec = req(h, "DELETE", "/fhir/Observation/"+id, "", tok["deleter"])
	if rec.Code != http.StatusNoContent || rec.Header().Get("ETag") != "" {
		t.Errorf("DELETE of a deleted resource by a delete-only client = %d ETag %q, want 204 without ETag", rec.Code, rec.Header().Get("ETag"))
	}
	rec = req(h, "POST", "/fhir", `{"resourceType":"Bundle","type":"batch","entry":[{"request":{"method":"DELETE","url":"Observation/`+id+`"}}]}`, tok["deleter"])
	if b := rec.Body.String(); rec.Code != http.StatusOK || strings.Contains(b, "etag") {
		t.Errorf("batch DELETE of a deleted resource by a delete-only client = %d %s, want 200 without an etag", rec.Code, b)
	}
}
