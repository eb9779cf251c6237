package gateway_test

import (
	"compress/gzip"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/ketamine-gateway/ketamine-gateway/gateway"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/app"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store/sqlite"
)

// TestCompression: the FHIR API gzips an answer when the client accepts
// gzip (q above 0) and the answer is not tiny, says Vary: Accept-Encoding
// either way, and leaves alone what has no body (304, HEAD) and what is not
// the FHIR API (p43 F6).
func TestCompression(t *testing.T) {
	h := fhirServer(t)
	for i := range 30 {
		if rec := req(h, "PUT", fmt.Sprintf("/fhir/Patient/gz%02d", i), fmt.Sprintf(`{"resourceType":"Patient","id":"gz%02d","name":[{"family":"Compressible"}]}`, i)); rec.Code >= 300 {
			t.Fatalf("seed = %d %s", rec.Code, rec.Body)
		}
	}
	png := base64.StdEncoding.EncodeToString(append([]byte("\x89PNG\r\n\x1a\n"), make([]byte, 4096)...))
	if rec := req(h, "PUT", "/fhir/Binary/img", `{"resourceType":"Binary","id":"img","contentType":"image/png","data":"`+png+`"}`); rec.Code >= 300 {
		t.Fatalf("seed Binary = %d %s", rec.Code, rec.Body)
	}
	big := "/fhir/Patient?_count=30"
	for _, tc := range []struct {
		name, method, target string
		headers              []string
		gzipped              bool
	}{
		{"gzip accepted", "GET", big, []string{"Accept-Encoding: gzip"}, true},
		{"gzip among others", "GET", big, []string{"Accept-Encoding: br;q=1.0, gzip;q=0.5, deflate"}, true},
		{"any coding", "GET", big, []string{"Accept-Encoding: *"}, true},
		{"x-gzip", "GET", big, []string{"Accept-Encoding: x-gzip"}, true},
		{"no Accept-Encoding", "GET", big, nil, false},
		{"gzip refused", "GET", big, []string{"Accept-Encoding: gzip;q=0, identity"}, false},
		{"gzip refused by *;q=0", "GET", big, []string{"Accept-Encoding: *;q=0"}, false},
		{"identity only", "GET", big, []string{"Accept-Encoding: identity"}, false},
		{"a small answer", "GET", "/fhir/Patient/gz00", []string{"Accept-Encoding: gzip"}, false},
		{"an error, small", "GET", "/fhir/Patient/none", []string{"Accept-Encoding: gzip"}, false},
		{"not modified", "GET", "/fhir/Patient/gz00", []string{"Accept-Encoding: gzip", `If-None-Match: W/"1"`}, false},
		{"HEAD", "HEAD", big, []string{"Accept-Encoding: gzip"}, false},
		{"the capability statement", "GET", "/fhir/metadata", []string{"Accept-Encoding: gzip"}, true},
		{"a Binary's image read raw", "GET", "/fhir/Binary/img", []string{"Accept-Encoding: gzip", "Accept: image/png"}, false},
		{"a Binary as JSON", "GET", "/fhir/Binary/img", []string{"Accept-Encoding: gzip"}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := req(h, tc.method, tc.target, "", tc.headers...)
			if got := rec.Header().Get("Content-Encoding") == "gzip"; got != tc.gzipped {
				t.Fatalf("%s %s %v: Content-Encoding %q, want gzip %v", tc.method, tc.target, tc.headers, rec.Header().Get("Content-Encoding"), tc.gzipped)
			}
			if !strings.Contains(strings.Join(rec.Header().Values("Vary"), ","), "Accept-Encoding") {
				t.Errorf("%s %s: Vary %q, want Accept-Encoding", tc.method, tc.target, rec.Header().Values("Vary"))
			}
			if !tc.gzipped || tc.method == "HEAD" {
				return
			}
			if rec.Header().Get("Content-Length") != "" {
				t.Errorf("Content-Length %q on a compressed answer", rec.Header().Get("Content-Length"))
			}
			zr, err := gzip.NewReader(rec.Body)
			if err != nil {
				t.Fatal(err)
			}
			b, err := io.ReadAll(zr)
			if err != nil {
				t.Fatal(err)
			}
			var m map[string]any
			if err := json.Unmarshal(b, &m); err != nil || m["resourceType"] == nil {
				t.Errorf("the gunzipped answer is no resource: %v %.200s", err, b)
			}
			plain := req(h, tc.method, tc.target, "")
			if tc.target == big && len(b) != plain.Body.Len() {
				t.Errorf("gunzipped %d bytes, the plain answer %d", len(b), plain.Body.Len())
			}
		})
	}
	// Not the FHIR API: the health probe and the native ingest (whose
	// clients, Go's among them, ask for gzip by default: its hot path is
	// not made to pay for it) are left alone.
	rec := req(h, "GET", "/healthz", "", "Accept-Encoding: gzip")
	if rec.Header().Get("Content-Encoding") != "" {
		t.Errorf("/healthz: Content-Encoding %q", rec.Header().Get("Content-Encoding"))
	}
	rec = req(h, "POST", "/ingest/session", string(example(t, "session/routine-ketamine-iv-session.json")), "Accept-Encoding: gzip")
	if rec.Code != http.StatusOK || rec.Body.Len() < 1024 || rec.Header().Get("Content-Encoding") != "" {
		t.Errorf("POST /ingest/session = %d, %d bytes, Content-Encoding %q; want 200, over 1 KiB, not compressed",
			rec.Code, rec.Body.Len(), rec.Header().Get("Content-Encoding"))
	}
}

// TestCORS: without allowed origins the gateway answers no Access-Control
// header (today's behaviour) and the CapabilityStatement says cors false;
// with them a preflight from an allowed origin is answered 204 with the
// methods and the headers FHIR clients send, an actual request carries the
// origin and the headers a client may read, never with credentials, and
// an origin not listed gets nothing (p43 F6).
func TestCORS(t *testing.T) {
	const origin = "https://app.clinic.example"
	off := fhirServer(t)
	on := newServer(t, app.Config{Store: tempSQLite(t, sqlite.Options{})}, gateway.Config{CORSOrigins: []string{origin, "http://localhost:3000"}})
	preflight := []string{"Origin: " + origin, "Access-Control-Request-Method: PUT"}

	t.Run("off: no preflight answer", func(t *testing.T) {
		rec := req(off, "OPTIONS", "/fhir/Patient/x", "", preflight...)
		if got := rec.Header().Get("Access-Control-Allow-Origin"); got != "" {
			t.Errorf("Access-Control-Allow-Origin %q without configured origins", got)
		}
		rec = req(off, "GET", "/fhir/metadata", "", "Origin: "+origin)
		if got := rec.Header().Get("Access-Control-Allow-Origin"); got != "" {
			t.Errorf("Access-Control-Allow-Origin %q without configured origins", got)
		}
		if cors := security(t, rec)["cors"]; cors != false {
			t.Errorf("CapabilityStatement rest.security.cors = %v, want false", cors)
		}
	})
	t.Run("preflight", func(t *testing.T) {
		rec := req(on, "OPTIONS", "/fhir/Patient/x", "", preflight...)
		if rec.Code != http.StatusNoContent {
			t.Fatalf("preflight = %d %s", rec.Code, rec.Body)
		}
		h := rec.Header()
		if got := h.Get("Access-Control-Allow-Origin"); got != origin {
			t.Errorf("Access-Control-Allow-Origin %q, want %s", got, origin)
		}
		for _, m := range []string{"GET", "POST", "PUT", "PATCH", "DELETE"} {
			if !strings.Contains(h.Get("Access-Control-Allow-Methods"), m) {
				t.Errorf("Access-Control-Allow-Methods %q lacks %s", h.Get("Access-Control-Allow-Methods"), m)
			}
		}
		for _, hd := range []string{"Authorization", "Content-Type", "Prefer", "If-Match", "If-None-Match", "If-None-Exist", "If-Modified-Since"} {
			if !strings.Contains(h.Get("Access-Control-Allow-Headers"), hd) {
				t.Errorf("Access-Control-Allow-Headers %q lacks %s", h.Get("Access-Control-Allow-Headers"), hd)
			}
		}
		if h.Get("Access-Control-Allow-Credentials") != "" {
			t.Errorf("Access-Control-Allow-Credentials %q", h.Get("Access-Control-Allow-Credentials"))
		}
		if !strings.Contains(strings.Join(h.Values("Vary"), ","), "Origin") {
			t.Errorf("Vary %q, want Origin", h.Values("Vary"))
		}
	})
	t.Run("preflight naming its headers", func(t *testing.T) {
		// A client library's own header (X-Medplum) is allowed as asked.
		const asked = "authorization, content-type, if-match, x-medplum"
		rec := req(on, "OPTIONS", "/fhir/Patient/x", "", append(preflight, "Access-Control-Request-Headers: "+asked)...)
		if got := rec.Header().Get("Access-Control-Allow-Headers"); rec.Code != http.StatusNoContent || got != asked {
			t.Errorf("preflight = %d, Access-Control-Allow-Headers %q, want 204 and %q", rec.Code, got, asked)
		}
	})
	t.Run("preflight from another origin", func(t *testing.T) {
		rec := req(on, "OPTIONS", "/fhir/Patient/x", "", "Origin: https://evil.example", "Access-Control-Request-Method: GET")
		if got := rec.Header().Get("Access-Control-Allow-Origin"); got != "" {
			t.Errorf("Access-Control-Allow-Origin %q for an origin not listed", got)
		}
	})
	t.Run("actual request", func(t *testing.T) {
		rec := req(on, "POST", "/fhir/Patient", `{"resourceType":"Patient"}`, "Origin: "+origin)
		if rec.Code != http.StatusCreated {
			t.Fatalf("POST = %d %s", rec.Code, rec.Body)
		}
		h := rec.Header()
		if got := h.Get("Access-Control-Allow-Origin"); got != origin {
			t.Errorf("Access-Control-Allow-Origin %q, want %s", got, origin)
		}
		for _, hd := range []string{"Location", "ETag", "Last-Modified", "Content-Location"} {
			if !strings.Contains(h.Get("Access-Control-Expose-Headers"), hd) {
				t.Errorf("Access-Control-Expose-Headers %q lacks %s", h.Get("Access-Control-Expose-Headers"), hd)
			}
		}
		if h.Get("Access-Control-Allow-Credentials") != "" {
			t.Errorf("Access-Control-Allow-Credentials %q", h.Get("Access-Control-Allow-Credentials"))
		}
	})
	t.Run("an error answer", func(t *testing.T) {
		rec := req(on, "GET", "/fhir/Patient/none", "", "Origin: "+origin)
		if rec.Code != http.StatusNotFound || rec.Header().Get("Access-Control-Allow-Origin") != origin {
			t.Errorf("GET unknown = %d, Access-Control-Allow-Origin %q; want 404 with the origin (a browser app must read the OperationOutcome)",
				rec.Code, rec.Header().Get("Access-Control-Allow-Origin"))
		}
	})
	t.Run("actual request from another origin", func(t *testing.T) {
		rec := req(on, "GET", "/fhir/metadata", "", "Origin: https://evil.example")
		if got := rec.Header().Get("Access-Control-Allow-Origin"); got != "" {
			t.Errorf("Access-Control-Allow-Origin %q for an origin not listed", got)
		}
		if cors := security(t, rec)["cors"]; cors != true {
			t.Errorf("CapabilityStatement rest.security.cors = %v, want true", cors)
		}
	})
	t.Run("not the FHIR API", func(t *testing.T) {
		rec := req(on, "GET", "/healthz", "", "Origin: "+origin)
		if got := rec.Header().Get("Access-Control-Allow-Origin"); got != "" {
			t.Errorf("/healthz: Access-Control-Allow-Origin %q", got)
		}
	})
}

// security is the CapabilityStatement's rest[0].security of a metadata
// answer.
func security(t *testing.T, rec interface{ Result() *http.Response }) map[string]any {
	t.Helper()
	var cs map[string]any
	if err := json.NewDecoder(rec.Result().Body).Decode(&cs); err != nil {
		t.Fatal(err)
	}
	return cs["rest"].([]any)[0].(map[string]any)["security"].(map[string]any)
}

// TestCORSOrigins: an allowed origin is scheme://host[:port], nothing more.
func TestCORSOrigins(t *testing.T) {
	for _, tc := range []struct {
		origin string
		ok     bool
	}{
		{"https://app.example", true},
		{"http://localhost:3000", true},
		{"*", true},
		{"https://app.example/", false},
		{"https://app.example/path", false},
		{"app.example", false},
		{"ftp://app.example", false},
		{"https://user@app.example", false},
		{"https://app.example:443", false}, // a browser's Origin leaves the default port out
		{"http://localhost:80", false},
		{"https://app.example:8443", true},
		{"", false},
	} {
		if err := gateway.CheckCORSOrigins([]string{tc.origin}); (err == nil) != tc.ok {
			t.Errorf("CheckCORSOrigins(%q) = %v, want ok %v", tc.origin, err, tc.ok)
		}
	}
}
