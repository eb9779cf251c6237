package test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store/sqlite"
	"github.com/ketamine-gateway/ketamine-gateway/schemas"
)

// Helpers of the bulk data tests: kick-offs, polling, downloads, generated
// native records, and databases seeded with many resources.

// manifest is a Bulk Data complete-status body.
type manifest struct {
	TransactionTime     string `json:"transactionTime"`
	Request             string `json:"request"`
	RequiresAccessToken bool   `json:"requiresAccessToken"`
	Output              []struct {
		Type  string `json:"type"`
		URL   string `json:"url"`
		Count int    `json:"count"`
	} `json:"output"`
	Error []any `json:"error"`
}

// kickoff sends an $export kick-off and returns its status URL (the test
// fails on any answer but 202).
func kickoff(t *testing.T, url string, headers ...string) string {
	t.Helper()
	status, h, body := doReq(t, "GET", url, "", append([]string{"Prefer: respond-async", "Accept: application/fhir+json"}, headers...)...)
	if status != http.StatusAccepted || h.Get("Content-Location") == "" {
		t.Fatalf("kick-off %s = %d %v", url, status, body)
	}
	return h.Get("Content-Location")
}

// pollJob polls a job's status URL until it is no longer 202 (at most
// deadline) and returns the final status and body.
func pollJob(t *testing.T, url string, deadline time.Duration, headers ...string) (int, []byte) {
	t.Helper()
	end := time.Now().Add(deadline)
	for {
		status, h, body := rawReq(t, "GET", url, "", headers...)
		if (status == http.StatusTooManyRequests || status == http.StatusServiceUnavailable) && h.Get("Retry-After") != "" &&
			time.Now().Before(end) {
			// Busy (a loaded machine): poll again, as a Bulk Data client
			// does, rather than take the refusal for the job's outcome.
			time.Sleep(200 * time.Millisecond)
			continue
		}
		if status != http.StatusAccepted {
			return status, body
		}
		if h.Get("X-Progress") == "" || h.Get("Retry-After") == "" {
			t.Errorf("202 status without X-Progress or Retry-After: %v", h)
		}
		if time.Now().After(end) {
			t.Fatalf("job %s still running after %v (%s)", url, deadline, h.Get("X-Progress"))
		}
		time.Sleep(50 * time.Millisecond) // polling a running job, as a Bulk Data client does
	}
}

// rawReq sends a request and returns the status, headers and raw body.
func rawReq(t testing.TB, method, url, body string, headers ...string) (int, http.Header, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range headers {
		k, v, _ := strings.Cut(h, ":")
		req.Header.Set(strings.TrimSpace(k), strings.TrimSpace(v))
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read %s: %v", url, err)
	}
	return resp.StatusCode, resp.Header, b
}

// exportDone kicks an export off and waits for its manifest.
func exportDone(t *testing.T, url string, headers ...string) (string, manifest) {
	t.Helper()
	loc := kickoff(t, url, headers...)
	status, body := pollJob(t, loc, 2*time.Minute, headers...)
	if status != http.StatusOK {
		t.Fatalf("export %s ended %d %s", url, status, body)
	}
	var m manifest
	if err := json.Unmarshal(body, &m); err != nil {
		t.Fatalf("manifest: %v: %s", err, body)
	}
	return loc, m
}

// exported is one resource of an export: its type, id and line.
type exported struct {
	typ, id string
	line    []byte
}

// download fetches every output file of m and returns its resources,
// checking each file's type, media type and count.
func download(t *testing.T, m manifest, headers ...string) []exported {
	t.Helper()
	var out []exported
	for _, f := range m.Output {
		status, h, body := rawReq(t, "GET", f.URL, "", append([]string{"Accept: application/fhir+ndjson"}, headers...)...)
		if status != http.StatusOK || !strings.HasPrefix(h.Get("Content-Type"), "application/fhir+ndjson") {
			t.Fatalf("download %s = %d %s %.200s", f.URL, status, h.Get("Content-Type"), body)
		}
		n := 0
		sc := bufio.NewScanner(bytes.NewReader(body))
		sc.Buffer(nil, 64<<20)
		for sc.Scan() {
			var r struct{ ResourceType, ID string }
			if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
				t.Fatalf("%s line %d is not JSON: %v", f.URL, n+1, err)
			}
			if r.ResourceType != f.Type {
				t.Errorf("%s: a %s in the %s file", f.URL, r.ResourceType, f.Type)
			}
			out = append(out, exported{typ: r.ResourceType, id: r.ID, line: bytes.Clone(sc.Bytes())})
			n++
		}
		if n != f.Count {
			t.Errorf("%s has %d resources, the manifest says %d", f.URL, n, f.Count)
		}
	}
	return out
}

// nativeRecords generates n native records from the example file ex, each
// its own (every recordId, the patient's id and MRN suffixed with prefix
// and its number), compacted to one line; the records at the indexes of
// bad are broken: every other one is cut in half (not JSON), the rest get
// an unknown member in place of source (not a record of the kind).
func nativeRecords(t *testing.T, ex string, n int, prefix string, bad ...int) []string {
	t.Helper()
	raw, err := os.ReadFile(ex)
	if err != nil {
		t.Fatal(err)
	}
	broken := map[int]bool{}
	for _, i := range bad {
		broken[i] = true
	}
	out := make([]string, n)
	for i := range n {
		b, err := schemas.Renumbered(raw, fmt.Sprintf("-%s%06d", prefix, i))
		if err != nil {
			t.Fatal(err)
		}
		s := string(b)
		if broken[i] {
			if i%2 == 1 {
				s = s[:len(s)/2]
			} else {
				s = strings.Replace(s, `"source":`, `"sauce":`, 1)
			}
		}
		out[i] = s
	}
	return out
}

// cli runs the binary with args (stdin when not ""), and returns its exit
// code, standard output and standard error.
func cli(t *testing.T, stdin string, args ...string) (int, string, string) {
	t.Helper()
	cmd := exec.Command(binary, args...)
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return code, out.String(), errb.String()
}

// seededDB copies a database of n Observations (of the default tenant),
// seeded once per test binary, to a new file of the test.
func seededDB(t *testing.T, n int) string {
	t.Helper()
	seedMu.Lock()
	defer seedMu.Unlock()
	tmpl := seededDBs[n]
	if tmpl == "" {
		// Beside the binary: TestMain removes the directory.
		tmpl = filepath.Join(filepath.Dir(binary), fmt.Sprintf("seed-%d.db", n))
		seedObservations(t, tmpl, "", n)
		seededDBs[n] = tmpl
	}
	raw, err := os.ReadFile(tmpl)
	if err != nil {
		t.Fatal(err)
	}
	db := filepath.Join(t.TempDir(), "seeded.db")
	if err := os.WriteFile(db, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	return db
}

var (
	seedMu    sync.Mutex
	seededDBs = map[int]string{} // n -> template database (closed, checkpointed)
)

// seedObservations writes n Observations (about 700 bytes each, of
// tenant) straight into a new SQLite database at path, in large
// transactions: a database big enough that an export runs for a while.
func seedObservations(t testing.TB, path, tenant string, n int) {
	t.Helper()
	ctx := context.Background()
	st, err := sqlite.Open(ctx, path, sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	now := time.Now().Add(-time.Hour)
	for start := 0; start < n; start += 5000 {
		err := st.Write(ctx, func(tx store.Tx) error {
			for i := start; i < min(start+5000, n); i++ {
				doc := seedObservation(i)
				r, entries, err := store.NewVersion("Observation", fmt.Sprintf("obs-%07d", i), 1, doc, now)
				if err != nil {
					return err
				}
				r.Tenant = tenant
				if err := tx.Put(r, entries); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			t.Fatalf("seed: %v", err)
		}
	}
}

// seedObservation is a plausible vital-sign Observation.
func seedObservation(i int) map[string]any {
	var doc map[string]any
	_ = json.Unmarshal(fmt.Appendf(nil, `{"resourceType":"Observation","status":"final",
		"category":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/observation-category","code":"vital-signs","display":"Vital Signs"}]}],
		"code":{"coding":[{"system":"http://loinc.org","code":"8867-4","display":"Heart rate"}],"text":"Heart rate"},
		"subject":{"reference":"Patient/seed-%d"},"effectiveDateTime":"2026-01-%02dT10:%02d:00Z",
		"identifier":[{"system":"https://seed.example/obs","value":"obs-%d"}],
		"valueQuantity":{"value":%d,"unit":"beats/minute","system":"http://unitsofmeasure.org","code":"/min"},
		"note":[{"text":"seeded for the bulk export tests: a line of text so that the resource has a realistic size of some seven hundred bytes"}]}`,
		i%500, i%28+1, i%60, i, 50+i%70), &doc)
	return doc
}
