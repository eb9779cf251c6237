package test

import (
	"compress/gzip"
	"encoding/json"
	"io"
	"net/http"
	"testing"
)

// TestCORSAndGzipE2E: the real binary with --cors-origins (and
// authentication, which CORS requires) answers a
// preflight from that origin, says cors true in its CapabilityStatement,
// and gzips a large answer for a client that asks (p43 F6).
func TestCORSAndGzipE2E(t *testing.T) {
	const origin = "https://app.clinic.example"
	g := startSecured(t, "--cors-origins", origin).gateway // CORS needs authentication

	pre, err := http.NewRequest(http.MethodOptions, g.base+"/fhir/Patient/x", nil)
	if err != nil {
		t.Fatal(err)
	}
	pre.Header.Set("Origin", origin)
	pre.Header.Set("Access-Control-Request-Method", "PUT")
	resp, err := http.DefaultTransport.RoundTrip(pre)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent || resp.Header.Get("Access-Control-Allow-Origin") != origin {
		t.Errorf("preflight = %d, Access-Control-Allow-Origin %q; want 204 and %s", resp.StatusCode, resp.Header.Get("Access-Control-Allow-Origin"), origin)
	}

	// The CapabilityStatement (170 kB): compressed when asked, and cors true.
	get, err := http.NewRequest(http.MethodGet, g.base+"/fhir/metadata", nil)
	if err != nil {
		t.Fatal(err)
	}
	get.Header.Set("Accept-Encoding", "gzip") // set by hand: the transport then leaves the body compressed
	get.Header.Set("Origin", origin)
	resp, err = http.DefaultTransport.RoundTrip(get)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.Header.Get("Content-Encoding") != "gzip" || resp.Header.Get("Access-Control-Allow-Origin") != origin {
		t.Fatalf("GET metadata: Content-Encoding %q, Access-Control-Allow-Origin %q", resp.Header.Get("Content-Encoding"),
			resp.Header.Get("Access-Control-Allow-Origin"))
	}
	zr, err := gzip.NewReader(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	var cs struct {
		Rest []struct {
			Security struct {
				CORS bool `json:"cors"`
			} `json:"security"`
		} `json:"rest"`
	}
	if err := json.Unmarshal(b, &cs); err != nil || len(cs.Rest) != 1 || !cs.Rest[0].Security.CORS {
		t.Errorf("CapabilityStatement: %v, rest.security.cors not true", err)
	}
}
