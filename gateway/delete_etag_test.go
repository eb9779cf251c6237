package gateway_test

import (
	"net/http"
	"testing"
)

// TestDeleteAnswersItsVersion (p15 F3): a deletion is a version, and
// every answer about it carries that version's ETag, so that a client can
// restore the resource with If-Match: the top-level DELETE (also of a
// resource deleted already), a transaction's or batch's DELETE entry
// (etag and lastModified, as history shows them), and a batch's GET of
// the deleted resource (410, as the top-level read's 410).
func TestDeleteAnswersItsVersion(t *testing.T) {
	h := fhirServer(t)
	for _, id := range []string{"de1", "de2", "de3", "de4"} {
		if rec := req(h, "PUT", "/fhir/Basic/"+id, `{"resourceType":"Basic","id":"`+id+`","code":{"text":"d"}}`); rec.Code != http.StatusCreated {
			t.Fatalf("PUT Basic/%s = %d %s", id, rec.Code, rec.Body)
		}
	}
	// The deletion's etag and lastModified, as history shows them.
	deletion := func(id string) (etag, lastModified string) {
		t.Helper()
		rec := req(h, "GET", "/fhir/Basic/"+id+"/_history", "")
		resp := decode(t, rec)["entry"].([]any)[0].(map[string]any)["response"].(map[string]any)
		if resp["status"] != "204" {
			t.Fatalf("Basic/%s's latest version is not a deletion: %v", id, resp)
		}
		return resp["etag"].(string), resp["lastModified"].(string)
	}
	entryResponses := func(body string) []map[string]any {
		t.Helper()
		rec := req(h, "POST", "/fhir", body)
		if rec.Code != http.StatusOK {
			t.Fatalf("POST /fhir = %d %s", rec.Code, rec.Body)
		}
		var out []map[string]any
		for _, e := range decode(t, rec)["entry"].([]any) {
			out = append(out, e.(map[string]any)["response"].(map[string]any))
		}
		return out
	}
	check := func(name string, resp map[string]any, id, status string) {
		t.Helper()
		etag, lm := deletion(id)
		if resp["status"] != status || resp["etag"] != etag || resp["lastModified"] != lm {
			t.Errorf("%s: response %v, want status %q, etag %q, lastModified %q", name, resp, status, etag, lm)
		}
	}

	rec := req(h, "DELETE", "/fhir/Basic/de1", "")
	if etag, _ := deletion("de1"); rec.Code != http.StatusNoContent || rec.Header().Get("ETag") != etag {
		t.Errorf("DELETE = %d ETag %q, want 204 %q", rec.Code, rec.Header().Get("ETag"), etag)
	}
	rec = req(h, "DELETE", "/fhir/Basic/de1", "")
	if etag, _ := deletion("de1"); rec.Code != http.StatusNoContent || rec.Header().Get("ETag") != etag {
		t.Errorf("DELETE again = %d ETag %q, want 204 with the deletion's %q", rec.Code, rec.Header().Get("ETag"), etag)
	}
	if rec := req(h, "DELETE", "/fhir/Basic/never", ""); rec.Code != http.StatusNoContent || rec.Header().Get("ETag") != "" {
		t.Errorf("DELETE of what never existed = %d ETag %q, want 204 without one", rec.Code, rec.Header().Get("ETag"))
	}

	rs := entryResponses(`{"resourceType":"Bundle","type":"transaction","entry":[{"request":{"method":"DELETE","url":"Basic/de2"}}]}`)
	check("transaction DELETE", rs[0], "de2", "204 No Content")

	rs = entryResponses(`{"resourceType":"Bundle","type":"batch","entry":[
		{"request":{"method":"DELETE","url":"Basic/de3"}},
		{"request":{"method":"DELETE","url":"Basic/de1"}},
		{"request":{"method":"GET","url":"Basic/de2"}},
		{"request":{"method":"GET","url":"Basic/de2/_history/2"}},
		{"request":{"method":"DELETE","url":"Basic/never"}}]}`)
	check("batch DELETE", rs[0], "de3", "204 No Content")
	check("batch DELETE of a resource deleted already", rs[1], "de1", "204 No Content")
	check("batch GET of a deleted resource", rs[2], "de2", "410 Gone")
	check("batch vread of a deletion", rs[3], "de2", "410 Gone")
	if _, ok := rs[4]["etag"]; ok || rs[4]["status"] != "204 No Content" {
		t.Errorf("batch DELETE of what never existed: response %v, want 204 without an etag", rs[4])
	}
}
