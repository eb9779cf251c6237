package gateway_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/ketamine-gateway/ketamine-gateway/gateway"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/app"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/auth"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store/sqlite"
)

// TestExportDownloadNeedsScopes: an export's file is served only to a
// token whose scopes cover the file's type, even of the client that
// started the job: a token the client asked with scope=gateway/ingest
// only (least privilege for its ingest component) gets 403
// insufficient_scope for the Patient file it could not search, and the
// full token still downloads it (p7 F17).
func TestExportDownloadNeedsScopes(t *testing.T) {
	key, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	jwk, err := json.Marshal(jose.JSONWebKey{Key: &key.PublicKey, KeyID: "k1", Use: "sig", Algorithm: "ES384"})
	if err != nil {
		t.Fatal(err)
	}
	secret := []byte("0123456789abcdef0123456789abcdef-download")
	as, err := auth.NewServer(auth.Config{TokenURL: tenantsTokenURL, SigningSecret: secret, Clients: []auth.Client{{ID: "clinA",
		Tenant: "clinic-a", Scopes: []string{"system/*.cruds", auth.ScopeIngest}, JWKS: json.RawMessage(`{"keys":[` + string(jwk) + `]}`)}}})
	if err != nil {
		t.Fatal(err)
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.HS256, Key: secret}, (&jose.SignerOptions{}).WithType("at+jwt"))
	if err != nil {
		t.Fatal(err)
	}
	token := func(scope string) string {
		claims := struct {
			jwt.Claims
			Tenant string `json:"tenant"`
			Scope  string `json:"scope"`
		}{jwt.Claims{Issuer: tenantsTokenURL, Subject: "clinA", IssuedAt: jwt.NewNumericDate(time.Now()),
			Expiry: jwt.NewNumericDate(time.Now().Add(time.Hour)), ID: "clinA-" + scope}, "clinic-a", scope}
		tok, err := jwt.Signed(signer).Claims(claims).Serialize()
		if err != nil {
			t.Fatal(err)
		}
		return "Authorization: Bearer " + tok
	}
	full, ingest, obs := token("system/*.cruds gateway/ingest"), token(auth.ScopeIngest), token("system/Observation.rs")
	h := newServer(t, app.Config{Store: tempSQLite(t, sqlite.Options{})}, gateway.Config{Auth: as, AuthTokenURL: tenantsTokenURL})
	if rec := req(h, "POST", "/fhir/Patient", `{"resourceType":"Patient","gender":"other"}`, full); rec.Code != http.StatusCreated {
		t.Fatalf("create = %d %s", rec.Code, rec.Body)
	}
	rec := req(h, "GET", "/fhir/$export?_type=Patient", "", full, "Prefer: respond-async")
	if rec.Code != http.StatusAccepted {
		t.Fatalf("kick-off = %d %s", rec.Code, rec.Body)
	}
	status := strings.TrimPrefix(rec.Header().Get("Content-Location"), "http://example.com")
	for deadline := time.Now().Add(time.Minute); ; {
		rec = req(h, "GET", status, "", full)
		if rec.Code == http.StatusOK {
			break
		}
		if rec.Code != http.StatusAccepted || time.Now().After(deadline) {
			t.Fatalf("status = %d %s", rec.Code, rec.Body)
		}
		time.Sleep(time.Millisecond) // polling a background job, not timing the test
	}
	file := status + "/files/1"
	for _, tok := range []string{ingest, obs} {
		rec := req(h, "GET", file, "", tok)
		refused(t, rec, "system/Patient.rs", "")
		if strings.Contains(rec.Body.String(), `"resourceType":"Patient"`) {
			t.Errorf("the refused download holds a Patient: %s", rec.Body)
		}
	}
	if rec := req(h, "GET", file, "", full); rec.Code != http.StatusOK || !strings.Contains(rec.Body.String(), `"resourceType":"Patient"`) {
		t.Errorf("download with the full token = %d %s, want the Patient file", rec.Code, rec.Body)
	}
}

// TestExportDownloadHTTP: a file answers HEAD (the GET's headers, no
// body; 404 for a file that does not exist), an Accept that takes no
// NDJSON is 406 as at kick-off, and a development-mode manifest says
// requiresAccessToken false: no token exists there (p7 F5).
func TestExportDownloadHTTP(t *testing.T) {
	h := newServer(t, app.Config{Store: tempSQLite(t, sqlite.Options{})}, gateway.Config{})
	if rec := req(h, "POST", "/fhir/Patient", `{"resourceType":"Patient","gender":"other"}`); rec.Code != http.StatusCreated {
		t.Fatalf("create = %d %s", rec.Code, rec.Body)
	}
	rec := req(h, "GET", "/fhir/$export?_type=Patient", "", "Prefer: respond-async")
	if rec.Code != http.StatusAccepted {
		t.Fatalf("kick-off = %d %s", rec.Code, rec.Body)
	}
	status := strings.TrimPrefix(rec.Header().Get("Content-Location"), "http://example.com")
	for deadline := time.Now().Add(time.Minute); ; {
		rec = req(h, "GET", status, "")
		if rec.Code == http.StatusOK {
			break
		}
		if rec.Code != http.StatusAccepted || time.Now().After(deadline) {
			t.Fatalf("status = %d %s", rec.Code, rec.Body)
		}
		time.Sleep(time.Millisecond) // polling a background job, not timing the test
	}
	var m struct{ RequiresAccessToken *bool }
	if err := json.Unmarshal(rec.Body.Bytes(), &m); err != nil || m.RequiresAccessToken == nil || *m.RequiresAccessToken {
		t.Errorf("development-mode manifest %s, want requiresAccessToken false", rec.Body)
	}
	file := status + "/files/1"
	for _, tc := range []struct {
		method, target, accept string
		code                   int
		body                   bool
	}{
		{"HEAD", file, "", http.StatusOK, false},
		{"HEAD", status + "/files/9", "", http.StatusNotFound, false},
		{"GET", status + "/files/01", "", http.StatusNotFound, false}, // one spelling per file (attacker's review)
		{"GET", status + "/files/+1", "", http.StatusNotFound, false},
		{"GET", file, "application/xml", http.StatusNotAcceptable, false},
		{"GET", file, "application/fhir+xml, */*;q=0", http.StatusNotAcceptable, false},
		{"GET", file, "application/fhir+ndjson", http.StatusOK, true},
		{"GET", file, "*/*", http.StatusOK, true},
	} {
		var headers []string
		if tc.accept != "" {
			headers = append(headers, "Accept: "+tc.accept)
		}
		rec := req(h, tc.method, tc.target, "", headers...)
		hasPatient := strings.Contains(rec.Body.String(), `"resourceType":"Patient"`)
		if rec.Code != tc.code || hasPatient != tc.body {
			t.Errorf("%s %s Accept %q = %d %s, want %d", tc.method, tc.target, tc.accept, rec.Code, rec.Body, tc.code)
		}
		if tc.method == "HEAD" && tc.code == http.StatusOK && rec.Header().Get("Content-Type") != "application/fhir+ndjson" {
			t.Errorf("HEAD Content-Type = %q", rec.Header().Get("Content-Type"))
		}
	}
	// The client deletes the finished export (Bulk Data IG): 202, then
	// 404; neither says a cut-short job was cancelled (first-hour review).
	rec = req(h, "DELETE", status, "")
	if rec.Code != http.StatusAccepted || !strings.Contains(rec.Body.String(), "the job had ended (done)") {
		t.Errorf("DELETE of a finished export = %d %s, want 202 saying it had ended", rec.Code, rec.Body)
	}
	rec = req(h, "GET", status, "")
	if rec.Code != http.StatusNotFound || strings.Contains(rec.Body.String(), "items were done") ||
		!strings.Contains(rec.Body.String(), "and was then deleted") {
		t.Errorf("the deleted export's status = %d %s, want 404 saying it had ended and was deleted", rec.Code, rec.Body)
	}
	if rec := req(h, "GET", file, ""); rec.Code != http.StatusNotFound {
		t.Errorf("a file of the deleted export = %d, want 404", rec.Code)
	}
}
