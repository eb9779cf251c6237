package test

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// secured is a gateway started with registered SMART Backend Services
// clients, and the keys to act as them.
type secured struct {
	*gateway
	tokenURL string
	config   string                // the --config file
	keys     map[string]signingKey // client id -> key
	other    *rsa.PrivateKey       // a key no client registered
}

type signingKey struct {
	key any // *rsa.PrivateKey or *ecdsa.PrivateKey
	alg jose.SignatureAlgorithm
	kid string
}

// securedClient is a client registered with the gateway: its tenant and
// scopes, and whether it signs with EC (else RSA).
type securedClient struct {
	id, tenant string
	scopes     []string
	ec         bool
}

// clients: id -> tenant and scopes.
var securedClients = []securedClient{
	{"clinic-a", "clinic-a", []string{"gateway/ingest", "system/*.cruds"}, false},
	{"hospital-b", "hospital-b", []string{"system/*.cruds"}, true},
	{"reader-a", "clinic-a", []string{"system/Patient.rs"}, false},
	{"patients-a", "clinic-a", []string{"system/Patient.cruds"}, false},
	{"auditor", "*", []string{"gateway/operator", "system/*.rs"}, false},
	{"clinic-c", "clinic-c", []string{"gateway/ingest"}, false},
}

// freeAddr reserves a loopback port (the token URL must be known before
// the gateway starts: it is the audience of client assertions).
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func startSecured(t *testing.T, extra ...string) *secured {
	return startSecuredWith(t, nil, extra...)
}

// startSecuredWith also configures delivery destinations.
func startSecuredWith(t *testing.T, destinations []map[string]any, extra ...string) *secured {
	t.Helper()
	return startSecuredClients(t, securedClients, destinations, nil, extra...)
}

// startSecuredClients registers clients, destinations and further
// sections of the --config file (search, ...).
func startSecuredClients(t *testing.T, registered []securedClient, destinations []map[string]any, sections map[string]any, extra ...string) *secured {
	t.Helper()
	addr := freeAddr(t)
	s := &secured{tokenURL: "http://" + addr + "/auth/token", keys: map[string]signingKey{}}
	other, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	s.other = other
	var clients []map[string]any
	for _, c := range registered {
		var k signingKey
		if c.ec {
			ek, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
			if err != nil {
				t.Fatal(err)
			}
			k = signingKey{key: ek, alg: jose.ES384, kid: c.id + "-k1"}
		} else {
			rk, err := rsa.GenerateKey(rand.Reader, 2048)
			if err != nil {
				t.Fatal(err)
			}
			k = signingKey{key: rk, alg: jose.RS384, kid: c.id + "-k1"}
		}
		s.keys[c.id] = k
		var pub any
		switch key := k.key.(type) {
		case *rsa.PrivateKey:
			pub = &key.PublicKey
		case *ecdsa.PrivateKey:
			pub = &key.PublicKey
		}
		jwks := jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: pub, KeyID: k.kid, Algorithm: string(k.alg), Use: "sig"}}}
		raw, _ := json.Marshal(jwks)
		clients = append(clients, map[string]any{"id": c.id, "tenant": c.tenant, "scopes": c.scopes, "jwks": json.RawMessage(raw)})
	}
	conf := map[string]any{"auth": map[string]any{"tokenUrl": s.tokenURL, "clients": clients}}
	if destinations != nil {
		conf["destinations"] = destinations
	}
	for k, v := range sections {
		conf[k] = v
	}
	cfg, _ := json.Marshal(conf)
	path := filepath.Join(t.TempDir(), "config.json")
	if err := os.WriteFile(path, cfg, 0o600); err != nil {
		t.Fatal(err)
	}
	s.config = path
	s.gateway = start(t, append([]string{"--addr", addr, "--config", path}, extra...)...)
	return s
}

// assertion signs a client assertion with claims (defaults filled in).
func (s *secured) assertion(t *testing.T, client string, edit func(claims map[string]any, hdr *jose.SignerOptions) (key any, alg jose.SignatureAlgorithm)) string {
	t.Helper()
	k := s.keys[client]
	now := time.Now()
	claims := map[string]any{"iss": client, "sub": client, "aud": s.tokenURL, "exp": now.Add(4 * time.Minute).Unix(),
		"iat": now.Unix(), "jti": fmt.Sprintf("%s-%d", client, now.UnixNano())}
	opts := (&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", k.kid)
	key, alg := k.key, k.alg
	if edit != nil {
		if ek, ea := edit(claims, opts); ek != nil {
			key, alg = ek, ea
		}
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: key}, opts)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := jwt.Signed(signer).Claims(claims).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// tokenRequest posts a token request and returns status and JSON body.
func (s *secured) tokenRequest(t *testing.T, form url.Values) (int, map[string]any) {
	t.Helper()
	resp, err := http.PostForm(s.tokenURL, form)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&body)
	if resp.Header.Get("Cache-Control") != "no-store" {
		t.Errorf("token response without Cache-Control: no-store")
	}
	return resp.StatusCode, body
}

func tokenForm(assertion, scope string) url.Values {
	return url.Values{"grant_type": {"client_credentials"}, "scope": {scope},
		"client_assertion_type": {"urn:ietf:params:oauth:client-assertion-type:jwt-bearer"}, "client_assertion": {assertion}}
}

// token gets an access token for client.
func (s *secured) token(t *testing.T, client, scope string) string {
	t.Helper()
	status, body := s.tokenRequest(t, tokenForm(s.assertion(t, client, nil), scope))
	if status != 200 {
		t.Fatalf("token for %s = %d %v", client, status, body)
	}
	return body["access_token"].(string)
}

// call sends an authenticated API request.
func call(t *testing.T, method, url, token, body string) (int, http.Header, map[string]any) {
	t.Helper()
	h := []string{}
	if token != "" {
		h = append(h, "Authorization: Bearer "+token)
	}
	return doReq(t, method, url, body, h...)
}

// failures counts the AuditEvents with a failure outcome (as the auditor).
func (s *secured) failures(t *testing.T, auditor string) int {
	t.Helper()
	_, _, b := call(t, "GET", s.base+"/fhir/AuditEvent?outcome=4&_summary=count", auditor, "")
	n, _ := b["total"].(float64)
	return int(n)
}

// TestSMARTBackendServicesNegatives: the ONC Inferno backend-services
// negative cases, each refused with the right status and OAuth error, and
// each leaving an AuditEvent with a failure outcome.
func TestSMARTBackendServicesNegatives(t *testing.T) {
	s := startSecured(t)
	auditor := s.token(t, "auditor", "gateway/operator system/*.rs")

	pubDER, _ := x509.MarshalPKIXPublicKey(&s.keys["clinic-a"].key.(*rsa.PrivateKey).PublicKey)
	replayed := s.assertion(t, "clinic-a", nil)
	if status, _ := s.tokenRequest(t, tokenForm(replayed, "system/*.rs")); status != 200 {
		t.Fatalf("first use of an assertion = %d", status)
	}
	b64 := base64.RawURLEncoding.EncodeToString
	noneTok := b64([]byte(`{"alg":"none","typ":"JWT","kid":"clinic-a-k1"}`)) + "." +
		b64([]byte(fmt.Sprintf(`{"iss":"clinic-a","sub":"clinic-a","aud":%q,"exp":%d,"jti":"none-1"}`, s.tokenURL, time.Now().Add(time.Minute).Unix()))) + "."
	cases := []struct {
		name   string
		form   url.Values
		status int
		code   string
	}{
		{"malformed assertion", tokenForm("not.a.jwt", "system/*.rs"), 401, "invalid_client"},
		{"expired", tokenForm(s.assertion(t, "clinic-a", func(c map[string]any, _ *jose.SignerOptions) (any, jose.SignatureAlgorithm) {
			c["exp"] = time.Now().Add(-time.Minute).Unix()
			return nil, ""
		}), "system/*.rs"), 401, "invalid_client"},
		{"exp too far ahead", tokenForm(s.assertion(t, "clinic-a", func(c map[string]any, _ *jose.SignerOptions) (any, jose.SignatureAlgorithm) {
			c["exp"] = time.Now().Add(time.Hour).Unix()
			return nil, ""
		}), "system/*.rs"), 401, "invalid_client"},
		{"wrong aud", tokenForm(s.assertion(t, "clinic-a", func(c map[string]any, _ *jose.SignerOptions) (any, jose.SignatureAlgorithm) {
			c["aud"] = "https://other.example/token"
			return nil, ""
		}), "system/*.rs"), 401, "invalid_client"},
		{"wrong iss", tokenForm(s.assertion(t, "clinic-a", func(c map[string]any, _ *jose.SignerOptions) (any, jose.SignatureAlgorithm) {
			c["iss"], c["sub"] = "nobody", "nobody"
			return nil, ""
		}), "system/*.rs"), 401, "invalid_client"},
		{"alg none", tokenForm(noneTok, "system/*.rs"), 401, "invalid_client"},
		{"HS256 with the public key", tokenForm(s.assertion(t, "clinic-a", func(map[string]any, *jose.SignerOptions) (any, jose.SignatureAlgorithm) {
			return pubDER, jose.HS256
		}), "system/*.rs"), 401, "invalid_client"},
		{"unknown kid", tokenForm(s.assertion(t, "clinic-a", func(_ map[string]any, o *jose.SignerOptions) (any, jose.SignatureAlgorithm) {
			o.WithHeader("kid", "no-such-key")
			return nil, ""
		}), "system/*.rs"), 401, "invalid_client"},
		{"wrong key", tokenForm(s.assertion(t, "clinic-a", func(map[string]any, *jose.SignerOptions) (any, jose.SignatureAlgorithm) {
			return s.other, jose.RS384
		}), "system/*.rs"), 401, "invalid_client"},
		{"replayed jti", tokenForm(replayed, "system/*.rs"), 401, "invalid_client"},
		{"wrong assertion type", func() url.Values {
			f := tokenForm(s.assertion(t, "clinic-a", nil), "system/*.rs")
			f.Set("client_assertion_type", "urn:ietf:params:oauth:client-assertion-type:saml2-bearer")
			return f
		}(), 400, "invalid_request"},
		{"wrong grant type", func() url.Values {
			f := tokenForm(s.assertion(t, "clinic-a", nil), "system/*.rs")
			f.Set("grant_type", "password")
			return f
		}(), 400, "unsupported_grant_type"},
		{"scope not granted", tokenForm(s.assertion(t, "reader-a", nil), "system/Observation.c"), 400, "invalid_scope"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := s.failures(t, auditor)
			status, body := s.tokenRequest(t, tc.form)
			if status != tc.status || body["error"] != tc.code {
				t.Errorf("token request = %d %v, want %d %s", status, body, tc.status, tc.code)
			}
			if d, _ := body["error_description"].(string); strings.Contains(d, "clinic-a-k1") || strings.Contains(d, s.tokenURL) {
				t.Errorf("error_description echoes the assertion: %q", d)
			}
			if after := s.failures(t, auditor); after != before+1 {
				t.Errorf("failure AuditEvents %d -> %d, want one more", before, after)
			}
			// The newest failure is this request's, and says why.
			_, _, evs := call(t, "GET", s.base+"/fhir/AuditEvent?outcome=4&_sort=-date&_count=1", auditor, "")
			if e := list(evs["entry"]); len(e) != 1 || !strings.Contains(fmt.Sprint(e[0].(map[string]any)["resource"].(map[string]any)["outcomeDesc"]), tc.code) {
				t.Errorf("newest failure AuditEvent = %v, want its description to name %s", evs["entry"], tc.code)
			}
		})
	}

	// Credentials in the URL (kept by proxies and access logs) are refused.
	inURL := tokenForm(s.assertion(t, "clinic-a", nil), "system/*.rs").Encode()
	resp, err := http.Post(s.tokenURL+"?"+inURL, "application/x-www-form-urlencoded", strings.NewReader(""))
	if err != nil {
		t.Fatal(err)
	}
	var qb map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&qb)
	resp.Body.Close()
	if resp.StatusCode != 400 || qb["error"] != "invalid_request" {
		t.Errorf("token request with the assertion in the URL = %d %v, want 400 invalid_request", resp.StatusCode, qb)
	}

	// The API side: no token, a malformed one, an expired or forged one.
	good := s.token(t, "clinic-a", "system/*.rs")
	parts := strings.Split(good, ".")
	forged := parts[0] + "." + b64([]byte(`{"sub":"clinic-a","tenant":"hospital-b","scope":"system/*.cruds","exp":9999999999}`)) + "." + parts[2]
	for _, tc := range []struct {
		name, header string
		wantError    bool
	}{
		{"no token", "", false},
		{"malformed", "Bearer not-a-token", true},
		{"forged claims", "Bearer " + forged, true},
		{"basic", "Basic YTpi", false},
	} {
		t.Run("API "+tc.name, func(t *testing.T) {
			before := s.failures(t, auditor)
			var h []string
			if tc.header != "" {
				h = append(h, "Authorization: "+tc.header)
			}
			status, hdr, body := doReq(t, "GET", s.base+"/fhir/Patient", "", h...)
			wa := hdr.Get("WWW-Authenticate")
			if status != 401 || !strings.HasPrefix(wa, "Bearer") || strings.Contains(wa, "error=") != tc.wantError {
				t.Errorf("GET /fhir/Patient = %d, WWW-Authenticate %q", status, wa)
			}
			if body["resourceType"] != "OperationOutcome" {
				t.Errorf("401 body is not an OperationOutcome: %v", body)
			}
			if after := s.failures(t, auditor); after != before+1 {
				t.Errorf("failure AuditEvents %d -> %d, want one more", before, after)
			}
		})
	}
	// The CapabilityStatement (public) names SMART and the token endpoint.
	_, _, md := doReq(t, "GET", s.base+"/fhir/metadata", "")
	if sec := fmt.Sprint(md["rest"]); !strings.Contains(sec, "SMART-on-FHIR") || !strings.Contains(sec, s.tokenURL) {
		t.Errorf("CapabilityStatement security = %v", sec)
	}
	mdJSON, _ := json.Marshal(md)
	v := exec.Command(binary, "validate", "-")
	v.Stdin = bytes.NewReader(mdJSON)
	if out, err := v.CombinedOutput(); err != nil {
		t.Errorf("the CapabilityStatement is not valid R4: %v\n%s", err, out)
	}
	// Discovery is public.
	status, _, conf := doReq(t, "GET", s.base+"/.well-known/smart-configuration", "")
	if status != 200 || conf["token_endpoint"] != s.tokenURL {
		t.Errorf("smart-configuration = %d %v", status, conf)
	}
}

// TestScopesAndTenants: scopes are checked per interaction and per Bundle
// entry; tenants never see each other's data, not even in totals.
func TestScopesAndTenants(t *testing.T) {
	s := startSecured(t)
	a := s.token(t, "clinic-a", "gateway/ingest system/*.cruds")
	b := s.token(t, "hospital-b", "system/*.cruds")
	reader := s.token(t, "reader-a", "system/Patient.rs")
	patientsOnly := s.token(t, "patients-a", "system/Patient.cruds")
	auditor := s.token(t, "auditor", "gateway/operator system/*.rs")

	// Clinic A stores a native record and a Patient.
	body, _ := os.ReadFile("../schemas/examples/session/routine-ketamine-iv-session.json")
	if status, _, r := call(t, "POST", s.base+"/ingest/session", a, string(body)); status != 200 {
		t.Fatalf("ingest as clinic A = %d %v", status, r)
	}
	if status, _, _ := call(t, "POST", s.base+"/ingest/session", b, string(body)); status != 403 {
		t.Errorf("ingest without gateway/ingest = %d, want 403", status)
	}
	status, _, p := call(t, "POST", s.base+"/fhir/Patient", a, `{"resourceType":"Patient","gender":"female"}`)
	if status != 201 {
		t.Fatalf("create Patient as A = %d", status)
	}
	pid := p["id"].(string)

	// Scopes.
	for _, tc := range []struct {
		name, method, path, token, body string
		want                            int
	}{
		{"reader reads Patient", "GET", "/fhir/Patient/" + pid, reader, "", 200},
		{"reader searches Patient", "GET", "/fhir/Patient", reader, "", 200},
		{"reader may not read Observation", "GET", "/fhir/Observation", reader, "", 403},
		{"reader may not create", "POST", "/fhir/Patient", reader, `{"resourceType":"Patient"}`, 403},
		{"reader may not delete", "DELETE", "/fhir/Patient/" + pid, reader, "", 403},
		{"reader may not read system history", "GET", "/fhir/_history", reader, "", 403},
		{"reader may not use the operator API", "GET", "/admin/deliveries", reader, "", 403},
		{"clinic may not use the operator API", "GET", "/admin/lineage?trace=4bf92f3577b34da6a3ce929d0e0e4736", a, "", 403},
	} {
		status, hdr, _ := call(t, tc.method, s.base+tc.path, tc.token, tc.body)
		if status != tc.want {
			t.Errorf("%s: %s %s = %d, want %d", tc.name, tc.method, tc.path, status, tc.want)
		}
		if status == 403 && !strings.Contains(hdr.Get("WWW-Authenticate"), "insufficient_scope") {
			t.Errorf("%s: 403 without WWW-Authenticate insufficient_scope: %q", tc.name, hdr.Get("WWW-Authenticate"))
		}
	}
	// One forbidden entry fails the whole transaction, and nothing is written.
	tx := `{"resourceType":"Bundle","type":"transaction","entry":[
	 {"fullUrl":"urn:uuid:7c1a7f4e-0a2b-4c7e-9d8f-2b1e3c4d5a6b","resource":{"resourceType":"Patient","identifier":[{"system":"urn:test","value":"tx-forbidden"}]},"request":{"method":"POST","url":"Patient"}},
	 {"resource":{"resourceType":"Observation","status":"final","code":{"text":"x"},"subject":{"reference":"urn:uuid:7c1a7f4e-0a2b-4c7e-9d8f-2b1e3c4d5a6b"}},"request":{"method":"POST","url":"Observation"}}]}`
	if status, _, oo := call(t, "POST", s.base+"/fhir", patientsOnly, tx); status != 403 || !strings.Contains(fmt.Sprint(oo), "Bundle.entry[1]") {
		t.Errorf("transaction with a forbidden entry = %d %v, want 403 naming entry 1", status, oo)
	}
	if _, _, r := call(t, "GET", s.base+"/fhir/Patient?identifier=urn:test|tx-forbidden&_total=accurate", patientsOnly, ""); r["total"] != float64(0) {
		t.Errorf("the refused transaction wrote its Patient: %v", r["total"])
	}

	// Tenants: B learns nothing of A.
	countA := total(t, s.base+"/fhir/Patient?_total=accurate", a)
	if countA < 2 {
		t.Fatalf("clinic A sees %d Patients, want its own 2", countA)
	}
	for _, tc := range []struct {
		name, method, path, body string
		want                     int
	}{
		{"read", "GET", "/fhir/Patient/" + pid, "", 404},
		{"vread", "GET", "/fhir/Patient/" + pid + "/_history/1", "", 404},
		{"history", "GET", "/fhir/Patient/" + pid + "/_history", "", 404},
		{"update", "PUT", "/fhir/Patient/" + pid, `{"resourceType":"Patient","id":"` + pid + `","gender":"male"}`, 404},
	} {
		status, _, r := call(t, tc.method, s.base+tc.path, b, tc.body)
		if status != tc.want {
			t.Errorf("hospital B %s of clinic A's Patient = %d %v, want %d", tc.name, status, r, tc.want)
		}
	}
	if status, _, _ := call(t, "DELETE", s.base+"/fhir/Patient/"+pid, b, ""); status != 204 {
		t.Errorf("hospital B delete of A's Patient = %d, want 204 (nothing to delete, as for any unknown id)", status)
	}
	if status, _, r := call(t, "GET", s.base+"/fhir/Patient/"+pid, a, ""); status != 200 || r["gender"] != "female" {
		t.Errorf("clinic A's Patient after B's attempts = %d %v", status, r)
	}
	for _, q := range []string{"/fhir/Patient?_total=accurate", "/fhir/Patient?_id=" + pid + "&_total=accurate",
		"/fhir/Observation?_total=accurate", "/fhir/Observation?_summary=count",
		"/fhir/Provenance?_total=accurate", "/fhir/AuditEvent?_total=accurate&outcome=0&action=C"} {
		if n := total(t, s.base+q, b); n != 0 {
			t.Errorf("hospital B %s total = %d, want 0", q, n)
		}
	}
	// B's system history holds only B's own AuditEvents (its requests).
	_, _, hist := call(t, "GET", s.base+"/fhir/_history?_count=1000", b, "")
	for _, e := range list(hist["entry"]) {
		if rt := fmt.Sprint(e.(map[string]any)["resource"].(map[string]any)["resourceType"]); rt != "AuditEvent" {
			t.Errorf("hospital B's system history shows a %s", rt)
		}
	}
	// The conditional create of the same identifier by B makes B's own resource.
	cond := `{"resourceType":"Patient","identifier":[{"system":"urn:test","value":"shared-mrn"}]}`
	if status, _, _ := call(t, "POST", s.base+"/fhir/Patient", a, cond); status != 201 {
		t.Fatal("A create")
	}
	status, hdr, _ := doReq(t, "POST", s.base+"/fhir/Patient", cond, "Authorization: Bearer "+b, "If-None-Exist: identifier=urn:test|shared-mrn")
	if status != 201 || strings.Contains(hdr.Get("Location"), pid) {
		t.Errorf("B's conditional create matching only A's Patient = %d, want 201 (a new resource of B's)", status)
	}
	// The auditor (all tenants) sees both; lineage names the record.
	if n := total(t, s.base+"/fhir/Patient?_total=accurate", auditor); n < countA+1 {
		t.Errorf("the all-tenant auditor sees %d Patients, want at least %d", n, countA+1)
	}
	if status, _, l := call(t, "GET", s.base+"/admin/lineage?source=serenity-clinic-emr&record=INF-2026-0310-001", auditor, ""); status != 200 || len(list(l["receipts"])) != 1 {
		t.Errorf("auditor lineage = %d %v", status, l)
	}
	// AuditEvents name the tenant and the client, and are found by patient,
	// entity, agent, date and outcome.
	for _, q := range []string{"site=hospital-b", "agent:identifier=https://ketamine-gateway.org/fhir/sid/client|hospital-b",
		"patient=Patient/" + pid, "entity=Patient/" + pid, "outcome=4&agent:identifier=https://ketamine-gateway.org/fhir/sid/client|reader-a",
		"date=ge" + time.Now().Add(-time.Hour).UTC().Format("2006-01-02T15:04:05Z") + "&subtype=http://hl7.org/fhir/restful-interaction|read"} {
		_, _, evs := call(t, "GET", s.base+"/fhir/AuditEvent?_count=1&"+strings.ReplaceAll(q, "|", "%7C"), auditor, "")
		if len(list(evs["entry"])) != 1 {
			t.Errorf("AuditEvent?%s found nothing: %v", q, evs)
		}
	}
}

func total(t *testing.T, url, token string) int {
	t.Helper()
	status, _, r := call(t, "GET", url, token, "")
	if status != 200 {
		t.Fatalf("GET %s = %d %v", url, status, r)
	}
	n, _ := r["total"].(float64)
	return int(n)
}

// TestLimits: oversize and deeply nested bodies are refused, a flooding
// client gets 429 with Retry-After, and clients that never finish their
// headers do not stop the server answering others.
func TestLimits(t *testing.T) {
	g := start(t, "--max-body", "1048576", "--rate-limit", "20")

	// Oversize: 413 from Content-Length, before the body is read.
	big := bytes.Repeat([]byte("a"), 2<<20)
	status, _ := post(t, g.base+"/fhir/Patient", "application/fhir+json", big)
	if status != 413 {
		t.Errorf("2 MiB body = %d, want 413", status)
	}
	// 100,000-deep JSON.
	deep := strings.Repeat(`{"a":`, 100000) + "1" + strings.Repeat("}", 100000)
	for _, path := range []string{"/fhir/Patient", "/fhir", "/ingest/session"} {
		if status, _ := post(t, g.base+path, "application/fhir+json", []byte(deep)); status != 400 && status != 413 {
			t.Errorf("POST %s with 100,000-deep JSON = %d, want 400", path, status)
		}
	}
	deepArr := `{"resourceType":"Patient","name":` + strings.Repeat("[", 100000) + strings.Repeat("]", 100000) + "}"
	if status, _ := post(t, g.base+"/fhir/Patient", "application/fhir+json", []byte(deepArr)); status != 400 {
		t.Errorf("100,000-deep array = %d, want 400", status)
	}

	// Slow clients: 50 connections that never finish their headers.
	var conns []net.Conn
	for i := 0; i < 50; i++ {
		c, err := net.Dial("tcp", strings.TrimPrefix(g.base, "http://"))
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(c, "GET /fhir/metadata HTTP/1.1\r\nHost: x\r\nX-Slow: ")
		conns = append(conns, c)
	}
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	if status, _, _ := doReq(t, "GET", g.base+"/healthz", ""); status != 200 {
		t.Errorf("healthz with 50 slow clients = %d", status)
	}
	if status, _, _ := doReq(t, "GET", g.base+"/fhir/metadata", ""); status != 200 {
		t.Errorf("metadata with 50 slow clients = %d", status)
	}

	// A flood from one client: 429 with Retry-After; the server stays up.
	var wg sync.WaitGroup
	var mu sync.Mutex
	codes := map[int]int{}
	retryAfter := ""
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; j < 25; j++ {
				resp, err := http.Get(g.base + "/fhir/Patient?_count=1")
				if err != nil {
					continue
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				mu.Lock()
				codes[resp.StatusCode]++
				if resp.StatusCode == 429 {
					retryAfter = resp.Header.Get("Retry-After")
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if codes[429] == 0 || retryAfter == "" || codes[200] == 0 {
		t.Errorf("flood of 200 requests at 20/s: %v, Retry-After %q; want some 200 and some 429 with Retry-After", codes, retryAfter)
	}
	if status, _, _ := doReq(t, "GET", g.base+"/healthz", ""); status != 200 {
		t.Errorf("healthz after the flood = %d", status)
	}
}

// TestReplicasShareAuth: two replicas on one database, one configuration
// and one GATEWAY_TOKEN_SECRET: a token from one works on the other, and an
// assertion used at one is refused as a replay at the other. On
// PostgreSQL, the database replicas share (a SQLite file is served by one
// gateway process, which locks it).
func TestReplicasShareAuth(t *testing.T) {
	t.Setenv("GATEWAY_TOKEN_SECRET", base64.StdEncoding.EncodeToString([]byte("an-example-secret-of-32-bytes-or-more!")))
	db := freshPostgres(t)
	a := startSecured(t, "--db", db)
	b := start(t, "--db", db, "--config", a.config)

	assertion := a.assertion(t, "clinic-a", nil)
	status, body := a.tokenRequest(t, tokenForm(assertion, "system/*.rs"))
	if status != 200 {
		t.Fatalf("token at replica A = %d %v", status, body)
	}
	if st, _, r := call(t, "GET", b.base+"/fhir/Patient", body["access_token"].(string), ""); st != 200 {
		t.Errorf("replica A's token at replica B = %d %v", st, r)
	}
	resp, err := http.PostForm(b.base+"/auth/token", tokenForm(assertion, "system/*.rs"))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var replay map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&replay)
	if resp.StatusCode != 401 || replay["error"] != "invalid_client" {
		t.Errorf("the same assertion at replica B = %d %v, want 401 invalid_client (replayed)", resp.StatusCode, replay)
	}
}

// TestDeliveryTenantFilter: a destination with a tenants filter receives
// only those tenants' records.
func TestDeliveryTenantFilter(t *testing.T) {
	ehr := newEHRStub(t)
	s := startSecuredWith(t, []map[string]any{{"name": "clinic-a-hospital", "baseUrl": ehr.URL,
		"filter": map[string]any{"tenants": []string{"clinic-a"}}}})
	body, _ := os.ReadFile("../schemas/examples/session/routine-ketamine-iv-session.json")
	for _, client := range []string{"clinic-a", "clinic-c"} {
		tok := s.token(t, client, "gateway/ingest")
		if status, _, r := call(t, "POST", s.base+"/ingest/session", tok, string(body)); status != 200 {
			t.Fatalf("ingest as %s = %d %v", client, status, r)
		}
	}
	auditor := s.token(t, "auditor", "gateway/operator system/*.rs")
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, _, l := call(t, "GET", s.base+"/admin/deliveries", auditor, "")
		items := list(l["deliveries"])
		if len(items) == 1 && items[0].(map[string]any)["status"] == "done" {
			break
		}
		if len(items) > 1 || time.Now().After(deadline) {
			t.Fatalf("deliveries = %v, want clinic A's record only, delivered", l)
		}
		time.Sleep(20 * time.Millisecond) // polling the running binary
	}
	if _, _, posts := ehr.stats(); posts != 1 {
		t.Errorf("the EHR received %d transactions, want 1 (clinic A's)", posts)
	}
}

// TestOneServePerSQLiteFile: a second serve on a SQLite file another
// serve is serving is refused (exit 2, naming the holder's pid), and
// once the first has stopped, the file is served again (an operator's
// review: it started without a word, with its own configuration).
func TestOneServePerSQLiteFile(t *testing.T) {
	db := filepath.Join(t.TempDir(), "one.db")
	g := start(t, "--db", db)
	out, err := exec.Command(binary, "serve", "--addr", "127.0.0.1:0", "--db", db).CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 2 || !strings.Contains(string(out), fmt.Sprintf("is being served already (pid %d", g.Cmd.Process.Pid)) {
		t.Fatalf("a second serve = %v: %s; want exit 2 naming pid %d", err, out, g.Cmd.Process.Pid)
	}
	if err := g.Cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	_ = g.Cmd.Wait()
	g2 := start(t, "--db", db)
	if status, _, _ := doReq(t, "GET", g2.base+"/healthz", ""); status != 200 {
		t.Errorf("the file served again: healthz %d", status)
	}
}
