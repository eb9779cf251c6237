package test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// sharedTestdata returns ../shared/testdata/<sub> or skips.
func sharedTestdata(t *testing.T, sub string) string {
	t.Helper()
	dir := filepath.Join("..", "..", "shared", "testdata", sub)
	if _, err := os.Stat(dir); err != nil {
		t.Skipf("%s not present (../shared/testdata is optional): %v", dir, err)
	}
	return dir
}

func doReq(t *testing.T, method, url, body string, headers ...string) (int, http.Header, map[string]any) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/fhir+json")
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
	b, _ := io.ReadAll(resp.Body)
	var m map[string]any
	_ = json.Unmarshal(b, &m)
	return resp.StatusCode, resp.Header, m
}

// TestSyntheaLoad: every Synthea bundle loads as a transaction and its
// Observations are found again by patient search.
func TestSyntheaLoad(t *testing.T) {
	dir := sharedTestdata(t, "synthea")
	files, _ := filepath.Glob(filepath.Join(dir, "*.json"))
	t.Run("sqlite", func(t *testing.T) { syntheaLoad(t, start(t), files) })
	// On PostgreSQL a Bundle's resources are put as they are made and its
	// rows sent ahead of the commit, 64 at a time (sqlstore's flushing
	// ahead): what the commit holds must be the same.
	t.Run("postgres", func(t *testing.T) { syntheaLoad(t, startReplicas(t, 1, freshPostgres(t))[0], files) })
}

// syntheaLoad posts each Synthea Bundle as a transaction to g and checks
// that a search by its Patient finds every Observation it held.
func syntheaLoad(t *testing.T, g *gateway, files []string) {
	for _, f := range files {
		body, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var in struct {
			Entry []struct {
				FullURL  string         `json:"fullUrl"`
				Resource map[string]any `json:"resource"`
			} `json:"entry"`
		}
		if err := json.Unmarshal(body, &in); err != nil {
			t.Fatal(err)
		}
		wantObs := 0
		for _, e := range in.Entry {
			if e.Resource["resourceType"] == "Observation" {
				wantObs++
			}
		}
		status, _, resp := doReq(t, "POST", g.base+"/fhir", string(body))
		if status != 200 {
			t.Fatalf("%s: transaction = %d %v", filepath.Base(f), status, resp)
		}
		var patient string
		for _, e := range resp["entry"].([]any) {
			loc, _ := e.(map[string]any)["response"].(map[string]any)["location"].(string)
			if strings.HasPrefix(loc, "Patient/") {
				patient = strings.Join(strings.Split(loc, "/")[:2], "/")
			}
		}
		if patient == "" {
			t.Fatalf("%s: no Patient in the transaction-response", filepath.Base(f))
		}
		_, _, found := doReq(t, "GET", g.base+"/fhir/Observation?patient="+patient+"&_summary=count", "")
		if got := int(found["total"].(float64)); got != wantObs {
			t.Errorf("%s: %d Observations found by patient search, want %d", filepath.Base(f), got, wantObs)
		}
	}
}

// TestConcurrentConditionalCreateE2E: 50 clients post the same conditional
// create to the real binary: exactly one resource.
func TestConcurrentConditionalCreateE2E(t *testing.T) {
	g := start(t)
	patient := `{"resourceType":"Patient","identifier":[{"system":"http://hospital.example/mrn","value":"E2E-1"}]}`
	var wg sync.WaitGroup
	var mu sync.Mutex
	counts := map[int]int{}
	for range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			status, _, _ := doReq(t, "POST", g.base+"/fhir/Patient", patient, "If-None-Exist: identifier=http://hospital.example/mrn|E2E-1")
			mu.Lock()
			counts[status]++
			mu.Unlock()
		}()
	}
	wg.Wait()
	_, _, b := doReq(t, "GET", g.base+"/fhir/Patient?identifier=http://hospital.example/mrn|E2E-1", "")
	if counts[201] != 1 || counts[200] != 49 || b["total"].(float64) != 1 {
		t.Errorf("statuses %v, %v stored; want one 201, 49 200 and one resource", counts, b["total"])
	}
}

// TestKillDuringTransaction: kill -9 in the middle of a large transaction
// leaves, after restart, all of it or none of it.
func TestKillDuringTransaction(t *testing.T) {
	db := filepath.Join(t.TempDir(), "kill.db")
	const n = 3000
	var entries []string
	for i := range n {
		entries = append(entries, fmt.Sprintf(`{"fullUrl":"urn:uuid:%08d-0000-4000-8000-000000000000","resource":{"resourceType":"Basic","code":{"text":"k"},"identifier":[{"system":"urn:kill","value":"v%d"}]},"request":{"method":"POST","url":"Basic"}}`, i, i))
	}
	body := `{"resourceType":"Bundle","type":"transaction","entry":[` + strings.Join(entries, ",") + `]}`
	// One undisturbed run tells how long the transaction takes; the kills
	// then land at 30%, 60% and 90% of that, i.e. while it is in flight.
	g := startDB(t, db)
	began := time.Now()
	status, _, _ := doReq(t, "POST", g.base+"/fhir", body)
	took := time.Since(began)
	g.stop(t)
	if status != 200 {
		t.Fatalf("undisturbed transaction = %d", status)
	}
	for _, frac := range []float64{0.3, 0.6, 0.9} {
		g := startDB(t, db)
		done := make(chan struct{})
		go func() {
			defer close(done)
			resp, err := http.Post(g.base+"/fhir", "application/fhir+json", strings.NewReader(body))
			if err == nil {
				resp.Body.Close()
			}
		}()
		time.Sleep(time.Duration(frac * float64(took))) // chooses the kill moment; nothing is asserted on timing
		_ = g.Cmd.Process.Signal(syscall.SIGKILL)
		_ = g.Cmd.Wait()
		<-done
		g2 := startDB(t, db)
		_, _, all := doReq(t, "GET", g2.base+"/fhir/Basic?_summary=count", "")
		total := int(all["total"].(float64))
		if total%n != 0 || total < n {
			t.Fatalf("after kill -9 at %.0f%%: %d Basic resources, want a multiple of %d (all or nothing)", frac*100, total, n)
		}
		t.Logf("kill at %.0f%% of %v: %d resources (%d complete transactions)", frac*100, took, total, total/n)
		g2.stop(t)
	}
}

// startDB starts the gateway on a given database file.
func startDB(t *testing.T, db string) *gateway {
	t.Helper()
	return start(t, "--db", db)
}

// TestFHIRInteractions runs every REST interaction against the binary.
func TestFHIRInteractions(t *testing.T) {
	g := start(t)
	b := g.base + "/fhir"
	status, h, p := doReq(t, "POST", b+"/Patient", `{"resourceType":"Patient","name":[{"family":"Interact"}]}`)
	if status != 201 || h.Get("Location") == "" {
		t.Fatalf("create %d", status)
	}
	id := p["id"].(string)
	checks := []struct {
		method, path, body string
		want               int
	}{
		{"GET", "/metadata", "", 200},
		{"GET", "/Patient/" + id, "", 200},
		{"GET", "/Patient/" + id + "/_history/1", "", 200},
		{"PUT", "/Patient/" + id, `{"resourceType":"Patient","id":"` + id + `","name":[{"family":"Interact2"}]}`, 200},
		{"GET", "/Patient/" + id + "/_history", "", 200},
		{"GET", "/Patient/_history", "", 200},
		{"GET", "/_history", "", 200},
		{"GET", "/Patient?name=interact", "", 200},
		{"POST", "/Patient/_search", "", 200},
		{"POST", "/Patient/$validate", `{"resourceType":"Patient","gender":"x"}`, 200},
		{"POST", "/$validate", `{"resourceType":"Patient"}`, 200},
		{"PUT", "/Patient?name=interact2", `{"resourceType":"Patient","name":[{"family":"Interact3"}]}`, 200},
		{"POST", "", `{"resourceType":"Bundle","type":"transaction","entry":[{"fullUrl":"urn:uuid:5a0c2f52-1d3e-4b8e-9a41-7c0f3b2d9e11","resource":{"resourceType":"Patient"},"request":{"method":"POST","url":"Patient"}},{"resource":{"resourceType":"Observation","status":"final","code":{"text":"x"},"subject":{"reference":"urn:uuid:5a0c2f52-1d3e-4b8e-9a41-7c0f3b2d9e11"}},"request":{"method":"POST","url":"Observation"}}]}`, 200},
		{"POST", "", `{"resourceType":"Bundle","type":"batch","entry":[{"request":{"method":"GET","url":"Patient/` + id + `"}}]}`, 200},
		{"DELETE", "/Patient/" + id, "", 204},
		{"GET", "/Patient/" + id, "", 410},
	}
	for _, c := range checks {
		var st int
		if c.method == "POST" && strings.HasSuffix(c.path, "_search") {
			resp, err := http.Post(b+c.path, "application/x-www-form-urlencoded", bytes.NewBufferString("name=interact"))
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			st = resp.StatusCode
		} else {
			st, _, _ = doReq(t, c.method, b+c.path, c.body)
		}
		if st != c.want {
			t.Errorf("%s %s = %d, want %d", c.method, c.path, st, c.want)
		}
	}
}

// TestNativeIngestStored: ingest stores; the same record again changes
// nothing; a new version amends what it changes, and only that.
func TestNativeIngestStored(t *testing.T) {
	g := start(t)
	ex, err := os.ReadFile("../schemas/examples/assessment/phq9-moderate.json")
	if err != nil {
		t.Fatal(err)
	}
	status, _, first := doReq(t, "POST", g.base+"/ingest/assessment", string(ex))
	if status != 200 || first["type"] != "transaction-response" {
		t.Fatalf("ingest = %d %v", status, first)
	}
	status, _, again := doReq(t, "POST", g.base+"/ingest/assessment", string(ex))
	a, _ := json.Marshal(first["entry"])
	b, _ := json.Marshal(again["entry"])
	if status != 200 || !bytes.Equal(a, b) {
		t.Errorf("repeated record answered differently (%d)", status)
	}
	var doc map[string]any
	_ = json.Unmarshal(ex, &doc)
	_, _, before := doReq(t, "GET", g.base+"/fhir/Observation?_summary=count", "")
	for _, v := range []struct {
		version string
		amended float64 // Observations amended after it
	}{
		{"2", 0}, // the same content: nothing amended
		{"3", 1}, // one item's answer changed: that item (and the total it changes) only
	} {
		doc["source"].(map[string]any)["version"] = v.version
		if v.version == "3" {
			item := doc["items"].([]any)[0].(map[string]any)
			was := item["score"].(float64)
			item["score"] = 3 - was
			if total, ok := doc["total"].(float64); ok {
				doc["total"] = total + (3 - was) - was
			}
		}
		body, _ := json.Marshal(doc)
		if status, _, out := doReq(t, "POST", g.base+"/ingest/assessment", string(body)); status != 200 {
			t.Fatalf("version %s = %d %v", v.version, status, out)
		}
		_, _, amended := doReq(t, "GET", g.base+"/fhir/Observation?status=amended&_summary=count", "")
		_, _, all := doReq(t, "GET", g.base+"/fhir/Observation?_summary=count", "")
		if amended["total"].(float64) < v.amended || amended["total"].(float64) > v.amended+2 || all["total"] != before["total"] {
			t.Errorf("after version %s: %v amended of %v Observations (%v before); want %v (and the scores it changes), none duplicated",
				v.version, amended["total"], all["total"], before["total"], v.amended)
		}
	}
}
