package gateway_test

import (
	"bytes"
	"encoding/json"
	"io/fs"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ketamine-gateway/ketamine-gateway/gateway"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/app"
	kgoutcome "github.com/ketamine-gateway/ketamine-gateway/gateway/outcome"
	"github.com/ketamine-gateway/ketamine-gateway/schemas"
)

// outcome is the part of an OperationOutcome the tests look at.
type outcome struct {
	ResourceType string `json:"resourceType"`
	Issue        []struct {
		Severity string `json:"severity"`
		Code     string `json:"code"`
		Details  struct {
			Coding []struct{ System, Code string } `json:"coding"`
			Text   string                          `json:"text"`
		} `json:"details"`
		Location   []string `json:"location"`
		Expression []string `json:"expression"`
	} `json:"issue"`
}

func newServer(t testing.TB, acfg app.Config, cfg gateway.Config) *gateway.Server {
	t.Helper()
	if cfg.RateLimit == 0 {
		cfg.RateLimit = -1 // tests send faster than any client should
	}
	return gateway.NewTestServer(t, acfg, cfg, nil)
}

func do(h http.Handler, method, target, contentType string, body []byte) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, target, bytes.NewReader(body))
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

func example(t *testing.T, path string) []byte {
	t.Helper()
	b, err := fs.ReadFile(schemas.Examples(), "examples/"+path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestHealthz(t *testing.T) {
	rec := do(newServer(t, app.Config{}, gateway.Config{}), http.MethodGet, "/healthz", "", nil)
	if rec.Code != http.StatusOK {
		t.Fatalf("GET /healthz = %d, want 200", rec.Code)
	}
}

// TestIngestDryRunExamples maps every shipped example over HTTP, with both
// accepted media types.
func TestIngestDryRunExamples(t *testing.T) {
	h := newServer(t, app.Config{}, gateway.Config{})
	err := fs.WalkDir(schemas.Examples(), "examples", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		kind := strings.Split(path, "/")[1]
		for _, ct := range []string{"application/json", "application/fhir+json; charset=utf-8"} {
			t.Run(path+" "+ct, func(t *testing.T) {
				body, _ := fs.ReadFile(schemas.Examples(), path)
				rec := do(h, http.MethodPost, "/ingest/"+kind+"?dryRun=true", ct, body)
				if rec.Code != http.StatusOK {
					t.Fatalf("POST /ingest/%s = %d %s, want 200", kind, rec.Code, rec.Body)
				}
				if got := rec.Header().Get("Content-Type"); got != gateway.ContentTypeFHIR {
					t.Errorf("Content-Type = %q, want %q", got, gateway.ContentTypeFHIR)
				}
				var b struct {
					ResourceType, Type string
					Entry              []json.RawMessage
				}
				if err := json.Unmarshal(rec.Body.Bytes(), &b); err != nil {
					t.Fatal(err)
				}
				if b.ResourceType != "Bundle" || b.Type != "transaction" || len(b.Entry) < 2 {
					t.Errorf("got %s/%s with %d entries, want a transaction Bundle with the Patient and the record", b.ResourceType, b.Type, len(b.Entry))
				}
			})
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestIngestBadInput: every kind of bad input is a 4xx OperationOutcome
// naming the rule and the place, never a 500, never a value of the record.
func TestIngestBadInput(t *testing.T) {
	phq := string(example(t, "assessment/phq9-moderate.json"))
	replace := func(old, new string) string {
		if !strings.Contains(phq, old) {
			t.Fatalf("example lacks %q", old)
		}
		return strings.Replace(phq, old, new, 1)
	}
	tests := []struct {
		name, method, target, contentType, body string
		status                                  int
		rule, location                          string
	}{
		{"not JSON", "POST", "/ingest/assessment?dryRun=true", "application/json", "hello", 400, "json-syntax", ""},
		{"truncated", "POST", "/ingest/assessment?dryRun=true", "application/json", phq[:len(phq)/2], 400, "json-syntax", ""},
		{"empty body", "POST", "/ingest/assessment?dryRun=true", "application/json", "", 400, "json-empty", ""},
		{"top-level array", "POST", "/ingest/assessment?dryRun=true", "application/json", "[]", 400, "json-not-object", ""},
		{"duplicate key", "POST", "/ingest/assessment?dryRun=true", "application/json", replace(`"instrument"`, `"instrument": "GAD-7", "instrument"`), 400, "json-duplicate-key", "/instrument"},
		{"wrong type", "POST", "/ingest/assessment?dryRun=true", "application/json", replace(`"instrument": "PHQ-9"`, `"instrument": 9`), 400, "schema.type", "/instrument"},
		{"unknown field", "POST", "/ingest/assessment?dryRun=true", "application/json", replace(`"instrument"`, `"SECRET-MARKER-KEY": "SECRET-MARKER", "instrument"`), 400, "schema.additional-property", ""},
		{"unknown instrument", "POST", "/ingest/assessment?dryRun=true", "application/json", replace(`"PHQ-9"`, `"BDI-II"`), 400, "schema.enum", "/instrument"},
		{"deep nesting", "POST", "/ingest/assessment?dryRun=true", "application/json", strings.Repeat(`{"a":`, 100000) + "1" + strings.Repeat("}", 100000), 400, "json-depth", ""},
		{"wrong media type", "POST", "/ingest/assessment?dryRun=true", "text/plain", phq, 415, "content-type-unsupported", ""},
		{"unknown kind", "POST", "/ingest/lab-result?dryRun=true", "application/json", phq, 404, "kind-unknown", ""},
		{"bad dryRun", "POST", "/ingest/assessment?dryRun=yes", "application/json", phq, 400, "parameter-invalid", ""},
		{"dryRun without a value", "POST", "/ingest/assessment?dryRun", "application/json", phq, 400, "parameter-invalid", ""},
		{"dryRun in lower case", "POST", "/ingest/assessment?dryrun=true", "application/json", phq, 400, "parameter-unknown", ""},
		{"dry_run", "POST", "/ingest/assessment?dry_run=true", "application/json", phq, 400, "parameter-unknown", ""},
		{"a made-up parameter", "POST", "/ingest/assessment?dryRun=true&SECRET-MARKER=1", "application/json", phq, 400, "parameter-unknown", ""},
		{"dryRun twice", "POST", "/ingest/assessment?dryRun=false&dryRun=true", "application/json", phq, 400, "parameter-invalid", ""},
		{"_pretty twice", "POST", "/ingest/assessment?dryRun=true&_pretty=true&_pretty=false", "application/json", phq, 400, "parameter-invalid", ""},
		{"xml requested", "POST", "/ingest/assessment?dryRun=true&_format=xml", "application/json", phq, 406, "format-unsupported", ""},
		{"storage not yet available", "POST", "/ingest/assessment", "application/json", phq, 501, "storage-unavailable", ""},
		{"wrong method", "GET", "/ingest/assessment", "", "", 405, "method-not-allowed", ""},
		{"unknown route", "GET", "/nowhere", "", "", 404, "route-unknown", ""},
		{"body over limit", "POST", "/ingest/assessment?dryRun=true", "application/json", phq + strings.Repeat(" ", 1<<20), 413, "body-too-large", ""},
	}
	h := newServer(t, app.Config{}, gateway.Config{MaxBodyBytes: 1 << 20})
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rec := do(h, tc.method, tc.target, tc.contentType, []byte(tc.body))
			assertOutcome(t, rec, tc.status, tc.rule, tc.location)
			if strings.Contains(rec.Body.String(), "SECRET-MARKER") || strings.Contains(rec.Body.String(), "Testpatient") {
				t.Errorf("response quotes record content: %s", rec.Body)
			}
		})
	}
	// What to do is said: the known spelling of a misspelt parameter, the
	// body limit and how to stay under it.
	for target, want := range map[string]string{
		"/ingest/assessment?dry_run=true": "spelt dryRun",
		"/ingest/assessment?x=1":          "it takes dryRun, _format, _pretty",
		"/ingest/assessment?dryRun=true&_pretty=true&pad=" + strings.Repeat("x", 10): "it takes dryRun",
	} {
		if rec := do(h, "POST", target, "application/json", []byte(phq)); !strings.Contains(rec.Body.String(), want) {
			t.Errorf("POST %s = %s, want it to say %q", target, rec.Body, want)
		}
	}
	rec := do(h, "POST", "/ingest/assessment?dryRun=true", "application/json", []byte(phq+strings.Repeat(" ", 1<<20)))
	if body := rec.Body.String(); !strings.Contains(body, "limit of 1 MiB (serve --max-body)") || !strings.Contains(body, "one record per request") {
		t.Errorf("413 = %s, want the limit and what to do", body)
	}
	// The asynchronous import: no dry run, no unknown parameter, nothing
	// started.
	hs, _ := sqliteServer(t, app.Config{})
	for target, want := range map[string]string{
		"/ingest/assessment/$import?dryRun=true":                "POST /ingest/{kind}?dryRun=true",
		"/ingest/assessment/$import?delivr=true":                "it takes deliver, _pretty",
		"/ingest/assessment/$import?deliver=false&deliver=true": "more than once",
	} {
		rec := do(hs, "POST", target, "application/fhir+ndjson", []byte(phq))
		assertOutcome(t, rec, http.StatusBadRequest, map[bool]string{true: "parameter-invalid", false: "parameter-unknown"}[strings.Contains(want, "more")], "")
		if !strings.Contains(rec.Body.String(), want) {
			t.Errorf("POST %s = %s, want it to say %q", target, rec.Body, want)
		}
	}
	// A body that is one JSON document, not NDJSON, is refused before any
	// record is read, as the import command refuses it: a JSON array of
	// records (on one line too: jq -c . of an array file) or a
	// pretty-printed record.
	var line bytes.Buffer
	if err := json.Compact(&line, []byte(phq)); err != nil {
		t.Fatal(err)
	}
	for name, tc := range map[string]struct{ body, want string }{
		"one-line array":     {"[" + line.String() + "," + line.String() + "]\n", "jq -c '.[]'"},
		"array":              {"[\n" + line.String() + "\n]\n", "jq -c '.[]'"},
		"pretty-printed one": {phq, "jq -c . FILE"},
	} {
		rec := do(hs, "POST", "/ingest/assessment/$import", "application/fhir+ndjson", []byte(tc.body))
		assertOutcome(t, rec, http.StatusBadRequest, "import-not-ndjson", "")
		if !strings.Contains(rec.Body.String(), tc.want) {
			t.Errorf("$import of %s = %s, want it to say %q", name, rec.Body, tc.want)
		}
	}
}

// TestIngestRuleErrors: schema-valid records that break clinical rules are
// 422 with the rule id, JSON pointer and path.
func TestIngestRuleErrors(t *testing.T) {
	h := newServer(t, app.Config{}, gateway.Config{})
	phq := string(example(t, "assessment/phq9-moderate.json"))
	var doc map[string]any
	if err := json.Unmarshal([]byte(phq), &doc); err != nil {
		t.Fatal(err)
	}
	doc["total"] = doc["total"].(float64) + 1
	body, _ := json.Marshal(doc)
	rec := do(h, http.MethodPost, "/ingest/assessment?dryRun=true", "application/json", body)
	assertOutcome(t, rec, http.StatusUnprocessableEntity, "assessment.total-mismatch", "/total")
	var oo outcome
	_ = json.Unmarshal(rec.Body.Bytes(), &oo)
	if got := oo.Issue[0].Expression; len(got) != 1 || got[0] != "total" {
		t.Errorf("expression = %v, want [total]", got)
	}
}

func assertOutcome(t *testing.T, rec *httptest.ResponseRecorder, status int, rule, location string) {
	t.Helper()
	if rec.Code != status {
		t.Fatalf("status = %d, want %d; body %s", rec.Code, status, rec.Body)
	}
	if got := rec.Header().Get("Content-Type"); got != gateway.ContentTypeFHIR {
		t.Errorf("Content-Type = %q, want %q", got, gateway.ContentTypeFHIR)
	}
	var oo outcome
	if err := json.Unmarshal(rec.Body.Bytes(), &oo); err != nil || oo.ResourceType != "OperationOutcome" || len(oo.Issue) == 0 {
		t.Fatalf("body is not an OperationOutcome with issues: %s", rec.Body)
	}
	first := oo.Issue[0]
	if len(first.Details.Coding) != 1 || first.Details.Coding[0].Code != rule || first.Details.Coding[0].System != kgoutcome.RuleSystem {
		t.Errorf("rule = %+v, want %s", first.Details.Coding, rule)
	}
	if location != "" && (len(first.Location) != 1 || first.Location[0] != location) {
		t.Errorf("location = %v, want [%s]", first.Location, location)
	}
	if first.Details.Text == "" || first.Severity != "error" {
		t.Errorf("issue needs severity error and a text: %+v", first)
	}
}

// FuzzIngest drives arbitrary bodies through decode -> validate -> map over
// HTTP: the answer is always 200 or a 4xx OperationOutcome, never a 500 or a
// panic.
func FuzzIngest(f *testing.F) {
	kinds := []string{"assessment", "vitals", "infusion", "adverse-event", "session"}
	_ = fs.WalkDir(schemas.Examples(), "examples", func(path string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			b, _ := fs.ReadFile(schemas.Examples(), path)
			for i, k := range kinds {
				if k == strings.Split(path, "/")[1] {
					f.Add(uint8(i), b)
				}
			}
		}
		return nil
	})
	// FHIR JSON from ../shared/testdata (primitive-format corner cases,
	// HL7 validator cases), when present: foreign but JSON-shaped input.
	var shared []string
	for _, glob := range []string{"../../shared/testdata/fhir-primitives/jsonformat/*.json", "../../shared/testdata/fhir-test-cases/cases/*.json"} {
		m, _ := filepath.Glob(glob)
		shared = append(shared, m...)
	}
	for i, path := range shared {
		if fi, err := os.Stat(path); err == nil && fi.Size() < 16<<10 && i < 40 {
			if b, err := os.ReadFile(path); err == nil {
				f.Add(uint8(i), b)
			}
		}
	}
	s := newServer(f, app.Config{}, gateway.Config{})
	f.Fuzz(func(t *testing.T, kind uint8, body []byte) {
		target := "/ingest/" + kinds[int(kind)%len(kinds)] + "?dryRun=true"
		rec := do(s, http.MethodPost, target, "application/json", body)
		if rec.Code >= 500 {
			t.Fatalf("status %d for a client's input: %s", rec.Code, rec.Body)
		}
	})
}

// TestRequestLogNamesRules: the log line of a rejected request carries the
// rule ids it broke (fixed strings, never request content), so an
// operator can triage from the log alone.
func TestRequestLogNamesRules(t *testing.T) {
	var logs bytes.Buffer
	h := newServer(t, app.Config{}, gateway.Config{Logger: slog.New(slog.NewJSONHandler(&logs, nil))})
	phq := strings.Replace(string(example(t, "assessment/phq9-moderate.json")), `"PHQ-9"`, `"BDI-II"`, 1)
	phq = strings.Replace(phq, `"instrument"`, `"SECRET-MARKER": 1, "instrument"`, 1)
	do(h, "POST", "/ingest/assessment?dryRun=true", "application/json", []byte(phq))
	do(h, "GET", "/healthz", "", nil)
	lines := strings.Split(strings.TrimSpace(logs.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("%d log lines, want 2: %s", len(lines), logs.String())
	}
	var bad, good map[string]any
	_ = json.Unmarshal([]byte(lines[0]), &bad)
	_ = json.Unmarshal([]byte(lines[1]), &good)
	if bad["status"] != 400.0 || bad["rules"] != "schema.additional-property,schema.enum" || bad["route"] != "/ingest/:kind" {
		t.Errorf("log line of the rejected request = %s", lines[0])
	}
	if _, ok := good["rules"]; ok {
		t.Errorf("a successful request's line names rules: %s", lines[1])
	}
	if strings.Contains(logs.String(), "SECRET-MARKER") || strings.Contains(logs.String(), "BDI-II") {
		t.Errorf("the log quotes request content: %s", logs.String())
	}
}

// TestDeliveriesSinceFuture: a since in the future (a mistyped year) of a
// delivery list or replay is refused, 400 parameter-invalid, rather than
// answered with nothing to list or replay, as $export refuses _since.
func TestDeliveriesSinceFuture(t *testing.T) {
	hs, _ := sqliteServer(t, app.Config{})
	for _, tc := range []struct{ method, target string }{
		{"GET", "/admin/deliveries?since=2099-01-01T00:00:00Z"},
		{"POST", "/admin/deliveries/replay?destination=ehr&since=2099-01-01T00:00:00Z"},
	} {
		rec := do(hs, tc.method, tc.target, "", nil)
		assertOutcome(t, rec, http.StatusBadRequest, "parameter-invalid", "")
		if !strings.Contains(rec.Body.String(), "since is in the future") {
			t.Errorf("%s %s = %s, want it to say since is in the future", tc.method, tc.target, rec.Body)
		}
	}
}
