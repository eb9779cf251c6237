package gateway_test

import (
	"encoding/base64"
	"net/http"
	"strings"
	"testing"
)

// TestBinaryRawRead: a read of a Binary that does not explicitly ask for a
// FHIR type (Accept: text/plain, */*, a browser's) answers the content in
// the Binary's own contentType (binary.html), safely: nosniff, a sandbox
// CSP, and as an attachment for what a browser would render (HTML, SVG,
// XML); with the read's version headers, 304 and scope check, and audited
// as a read. A FHIR type, _format, or no Accept answers the resource; an
// Accept that admits neither is 406 (p27 F7).
func TestBinaryRawRead(t *testing.T) {
	h, _, tok := clientsServer(t, scopeClients)
	create := func(ct, content string) string {
		t.Helper()
		rec := req(h, "POST", "/fhir/Binary", `{"resourceType":"Binary","contentType":"`+ct+`","data":"`+
			base64.StdEncoding.EncodeToString([]byte(content))+`"}`, tok["full"])
		if rec.Code != http.StatusCreated {
			t.Fatalf("create Binary = %d %s", rec.Code, rec.Body)
		}
		return decode(t, rec)["id"].(string)
	}
	text := create("text/plain", "hello")
	html := create("text/html", "<script>alert(1)</script>")
	svg := create("image/svg+xml", "<svg xmlns='http://www.w3.org/2000/svg'/>")
	for _, tc := range []struct {
		name, target, accept, contentType, body, disposition string
		status                                               int
	}{
		{"text/plain", "/fhir/Binary/" + text, "text/plain", "text/plain", "hello", "", 200},
		{"*/*", "/fhir/Binary/" + text, "*/*", "text/plain", "hello", "", 200},
		{"a browser's", "/fhir/Binary/" + text, "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8", "text/plain", "hello", "", 200},
		{"vread", "/fhir/Binary/" + text + "/_history/1", "text/*", "text/plain", "hello", "", 200},
		{"HTML is an attachment", "/fhir/Binary/" + html, "*/*", "text/html", "<script>alert(1)</script>", "attachment", 200},
		{"SVG is an attachment", "/fhir/Binary/" + svg, "image/*", "image/svg+xml", "<svg xmlns='http://www.w3.org/2000/svg'/>", "attachment", 200},
		{"FHIR JSON asked for", "/fhir/Binary/" + text, "application/fhir+json", "application/fhir+json", "", "", 200},
		{"no Accept", "/fhir/Binary/" + text, "", "application/fhir+json", "", "", 200},
		{"_format", "/fhir/Binary/" + text + "?_format=json", "text/plain", "application/fhir+json", "", "", 200},
		{"neither", "/fhir/Binary/" + text, "image/png", "", "", "", 406},
	} {
		t.Run(tc.name, func(t *testing.T) {
			headers := []string{tok["full"]}
			if tc.accept != "" {
				headers = append(headers, "Accept: "+tc.accept)
			}
			rec := req(h, "GET", tc.target, "", headers...)
			if rec.Code != tc.status {
				t.Fatalf("GET %s (Accept %q) = %d %s, want %d", tc.target, tc.accept, rec.Code, rec.Body, tc.status)
			}
			if tc.status != 200 {
				return
			}
			hd := rec.Header()
			if ct := hd.Get("Content-Type"); !strings.HasPrefix(ct, tc.contentType) {
				t.Errorf("Content-Type = %q, want %s", ct, tc.contentType)
			}
			if hd.Get("ETag") != `W/"1"` || hd.Get("Last-Modified") == "" {
				t.Errorf("version headers: ETag %q, Last-Modified %q", hd.Get("ETag"), hd.Get("Last-Modified"))
			}
			if tc.body == "" {
				if !strings.Contains(rec.Body.String(), `"resourceType":"Binary"`) {
					t.Errorf("body = %s, want the Binary resource", rec.Body)
				}
				return
			}
			if rec.Body.String() != tc.body {
				t.Errorf("body = %q, want %q", rec.Body, tc.body)
			}
			if hd.Get("X-Content-Type-Options") != "nosniff" || !strings.Contains(hd.Get("Content-Security-Policy"), "sandbox") {
				t.Errorf("X-Content-Type-Options %q, Content-Security-Policy %q; want nosniff and a sandbox",
					hd.Get("X-Content-Type-Options"), hd.Get("Content-Security-Policy"))
			}
			if d := hd.Get("Content-Disposition"); !strings.HasPrefix(d, tc.disposition) || tc.disposition == "" && d != "" {
				t.Errorf("Content-Disposition = %q, want %q", d, tc.disposition)
			}
		})
	}
	// The client's copy is current: 304, as for any read.
	if rec := req(h, "GET", "/fhir/Binary/"+text, "", tok["full"], "Accept: text/plain", `If-None-Match: W/"1"`); rec.Code != http.StatusNotModified {
		t.Errorf("If-None-Match of the version = %d, want 304", rec.Code)
	}
	// The scope is checked as for a read.
	refused(t, req(h, "GET", "/fhir/Binary/"+text, "", tok["obs"], "Accept: text/plain"), "Binary", "")
	// It is audited as a read of the Binary.
	count := func() float64 {
		rec := req(h, "GET", "/fhir/AuditEvent?entity=Binary/"+text+"&subtype=read&_summary=count", "", tok["full"])
		n, ok := decode(t, rec)["total"].(float64)
		if !ok {
			t.Fatalf("AuditEvent count = %d %s", rec.Code, rec.Body)
		}
		return n
	}
	before := count()
	if rec := req(h, "GET", "/fhir/Binary/"+text, "", tok["full"], "Accept: text/plain"); rec.Code != 200 {
		t.Fatalf("raw read = %d", rec.Code)
	}
	if after := count(); after != before+1 {
		t.Errorf("AuditEvents of reads of the Binary: %v, then %v after a raw read; want one more", before, after)
	}
	// The CapabilityStatement says so.
	cs := decode(t, req(h, "GET", "/fhir/metadata", ""))
	said := false
	for _, r := range cs["rest"].([]any)[0].(map[string]any)["resource"].([]any) {
		if m := r.(map[string]any); m["type"] == "Binary" {
			d, _ := m["documentation"].(string)
			said = strings.Contains(d, "contentType") && strings.Contains(d, "nosniff")
		}
	}
	if !said {
		t.Errorf("the CapabilityStatement's Binary documentation does not describe the content read")
	}
}
