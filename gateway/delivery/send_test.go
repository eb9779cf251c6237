package delivery

import (
	"context"
	"encoding/json"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/fhirwire"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
)

func goldenBundles(t *testing.T) map[string][]byte {
	t.Helper()
	files, err := filepath.Glob("../../mapping/testdata/session/*.golden.json")
	if err != nil || len(files) == 0 {
		t.Fatalf("no golden Bundles: %v", err)
	}
	out := map[string][]byte{}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		out[strings.TrimSuffix(filepath.Base(f), ".golden.json")] = data
	}
	return out
}

// typeCounts counts the resources a Bundle creates, by type.
func typeCounts(t *testing.T, payload []byte) map[string]int {
	var b fhirwire.Bundle
	if err := json.Unmarshal(payload, &b); err != nil {
		t.Fatal(err)
	}
	out := map[string]int{}
	for _, e := range b.Entry {
		typ, _, _ := strings.Cut(e.Request.URL, "?")
		typ, _, _ = strings.Cut(typ, "/")
		out[typ]++
	}
	return out
}

// TestGoldenBundlesInEveryMode delivers the mapping's real Bundles twice
// in each mode: everything lands once, references resolved (the stub
// rejects a urn:uuid outside a transaction and a reference to a missing
// resource), and the second delivery changes nothing.
func TestGoldenBundlesInEveryMode(t *testing.T) {
	for name, payload := range goldenBundles(t) {
		want := typeCounts(t, payload)
		for _, mode := range []Mode{ModeTransaction, ModeBatch, ModeSingle} {
			t.Run(name+"/"+string(mode), func(t *testing.T) {
				ehr := newStubEHR(t)
				d := testDest("ehr", ehr.base())
				d.Mode = mode
				d.MaxEntries = 7
				if mode == ModeTransaction {
					d.MaxEntries = 0
				}
				h := newHarness(t, []Destination{d}, nil)
				h.enqueue("ehr", "k", payload)
				h.enqueue("ehr", "k", payload)
				h.run()
				for i := range 2 {
					if ev := h.next(); ev.Status != store.StatusDone {
						t.Fatalf("delivery %d: %s %q %s", i+1, ev.Status, ev.A.Error, ev.A.Outcome)
					}
					for typ, n := range want {
						if got := ehr.count(typ); got != n {
							t.Fatalf("delivery %d: EHR holds %d %s, want %d", i+1, got, typ, n)
						}
					}
				}
				for _, r := range ehr.reqs() {
					if r.BundleType != "" && r.BundleType != map[Mode]string{ModeTransaction: "transaction", ModeBatch: "batch"}[mode] {
						t.Fatalf("a %s Bundle was sent in %s mode", r.BundleType, mode)
					}
					if r.Entries > 7 && mode == ModeBatch {
						t.Fatalf("a batch of %d entries, MaxEntries 7", r.Entries)
					}
				}
			})
		}
	}
}

func TestAmendmentInSingleMode(t *testing.T) {
	ehr := newStubEHR(t)
	d := testDest("ehr", ehr.base())
	d.Mode = ModeSingle
	h := newHarness(t, []Destination{d}, nil)
	h.enqueue("ehr", "k", sessionBundle("P-1", "S-1", "in-progress", false))
	h.enqueue("ehr", "k", sessionBundle("P-1", "S-1", "completed", true))
	h.run()
	for range 2 {
		if ev := h.next(); ev.Status != store.StatusDone {
			t.Fatalf("%s %q", ev.Status, ev.A.Error)
		}
	}
	wantCounts(t, ehr, 1, 1, 1)
	for _, r := range ehr.reqs() {
		if r.Method == http.MethodPut && strings.HasPrefix(r.Path, "/fhir/Procedure") &&
			r.Query != "identifier=https://ketamine-gateway.org/fhir/sid/test/session%7CS-1" {
			t.Errorf("conditional update query %q", r.Query)
		}
	}
	var proc map[string]any
	for _, w := range ehr.committed() {
		if strings.HasPrefix(w, "PUT Procedure/") {
			proc = ehr.resource(strings.Fields(w)[1])
		}
	}
	if proc == nil || proc["status"] != "completed" {
		t.Fatalf("amended Procedure: %v", proc)
	}
	if ref := proc["subject"].(map[string]any)["reference"]; ref != "Patient/1" {
		t.Fatalf("subject %v, want the EHR's Patient/1", ref)
	}
}

func TestCapabilityFallback(t *testing.T) {
	for _, tc := range []struct {
		name                   string
		noTransaction, noBatch bool
		want                   Mode
	}{
		{"transaction", false, false, ModeTransaction},
		{"no-transaction", true, false, ModeBatch},
		{"neither", true, true, ModeSingle},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ehr := newStubEHR(t)
			ehr.noTransaction, ehr.noBatch = tc.noTransaction, tc.noBatch
			h := newHarness(t, []Destination{testDest("ehr", ehr.base())}, func(o *WorkerOptions) { o.CapabilityInterval = time.Hour })
			h.enqueue("ehr", "k", sessionBundle("P-1", "S-1", "completed", false))
			h.run()
			if ev := h.next(); ev.Status != store.StatusDone {
				t.Fatalf("%s %q", ev.Status, ev.A.Error)
			}
			reqs := ehr.reqs()
			if reqs[0].Method != http.MethodGet || reqs[0].Path != "/fhir/metadata" {
				t.Fatalf("first request %s %s, want the CapabilityStatement", reqs[0].Method, reqs[0].Path)
			}
			for _, r := range reqs[1:] {
				var got Mode
				switch {
				case r.BundleType == "transaction":
					got = ModeTransaction
				case r.BundleType == "batch":
					got = ModeBatch
				default:
					got = ModeSingle
				}
				if got != tc.want {
					t.Fatalf("%s %s (%s) in %s mode", r.Method, r.Path, r.BundleType, tc.want)
				}
			}
			if caps := h.w.Capabilities()["ehr"]; caps.Transaction == tc.noTransaction || caps.FHIRVersion != "4.0.1" {
				t.Fatalf("capabilities %+v", caps)
			}
			wantCounts(t, ehr, 1, 1, 1)
		})
	}
}

func TestRedirectToAnotherHostIsNotFollowed(t *testing.T) {
	ehr, other := newStubEHR(t), newStubEHR(t)
	ehr.intercept = func(n int, w http.ResponseWriter, r *http.Request, body []byte) bool {
		// A Location naming a resource: its id must not reach the error.
		http.Redirect(w, r, other.srv.URL+"/fhir/Patient/P-1?session=abc", http.StatusTemporaryRedirect)
		return true
	}
	h := newHarness(t, []Destination{testDest("ehr", ehr.base())}, func(o *WorkerOptions) {
		o.CapabilityInterval = time.Hour
		o.MaxAttempts = 2
	})
	id := h.enqueue("ehr", "k", sessionBundle("P-1", "S-1", "completed", false))
	h.run()
	evs := h.retryUntilFinal(id)
	// The target is named by scheme, host and port, and where its path
	// lies against the base's; no segment of its path, no query.
	want := "http 307 redirect not followed: to " + other.srv.URL + " (a path below the base's)"
	wantAttempt(t, evs[0], 1, store.StatusPending, 307, want)
	wantAttempt(t, evs[1], 2, store.StatusDead, 307, want)
	if strings.Contains(evs[0].A.Error, "?") || strings.Contains(evs[0].A.Error, "P-1") || strings.Contains(evs[0].A.Error, "Patient") {
		t.Errorf("the redirect's query or resource is named: %q", evs[0].A.Error)
	}
	if n := len(other.reqs()); n != 0 {
		t.Fatalf("the other host got %d requests", n)
	}
	if _, ok := h.w.Capabilities()["ehr"]; ok {
		t.Fatal("a redirected CapabilityStatement was read")
	}
}

// TestRedirectTargetNamesNoPath: whatever the Location's path holds (a
// patient's MRN and name in lowercase segments, which no FHIR type rule
// recognises: p14 F9), the error names the target's scheme, host and
// port and where its path lies against the base's, nothing of the path.
func TestRedirectTargetNamesNoPath(t *testing.T) {
	c, err := NewClient(testDest("ehr", "http://127.0.0.1:19410/fhir/r4"), ClientOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ location, want string }{
		{"/ehr/patients/mrn-phia-7731/quintessa-marlowe-1966-07-14/chart?x=1", "http://127.0.0.1:19410 (another path than the base's)"},
		{"https://sso.example.org/login/mrn-phia-7731#frag", "https://sso.example.org (another path than the base's)"},
		{"https://user:secret@127.0.0.1:19410/fhir/r4/", "https://127.0.0.1:19410 (the base's path)"},
		{"/fhir/r4/patient/mrn-phia-7731", "http://127.0.0.1:19410 (a path below the base's)"},
		{"/fhir/r4x/mrn-phia-7731", "http://127.0.0.1:19410 (another path than the base's)"},
		{"", ""},
	} {
		h := http.Header{}
		if tc.location != "" {
			h.Set("Location", tc.location)
		}
		if got := c.redirectTarget(h); got != tc.want {
			t.Errorf("redirectTarget(%q) = %q, want %q", tc.location, got, tc.want)
		}
	}
}

func TestSameHostRedirectForMetadata(t *testing.T) {
	ehr := newStubEHR(t)
	ehr.intercept = func(n int, w http.ResponseWriter, r *http.Request, body []byte) bool {
		if r.URL.Path == "/fhir/metadata" {
			http.Redirect(w, r, "/fhir/metadata/", http.StatusMovedPermanently)
			return true
		}
		if r.URL.Path == "/fhir/metadata/" {
			r.URL.Path = "/fhir/metadata"
		}
		return false
	}
	c, err := NewClient(testDest("ehr", ehr.base()), ClientOptions{})
	if err != nil {
		t.Fatal(err)
	}
	caps, err := c.Capabilities(context.Background())
	if err != nil || !caps.Transaction || !caps.Batch || caps.Mode(ModeTransaction) != ModeTransaction {
		t.Fatalf("capabilities %+v, %v", caps, err)
	}
}

func TestBatchEntryStatuses(t *testing.T) {
	for _, tc := range []struct {
		name, status string
		want         []string
		reason       string
	}{
		{"bad-request", "400 Bad Request", []string{store.StatusDead}, "Bundle.entry[0] (POST Patient): http 400 (invalid)"},
		{"unavailable", "503", []string{store.StatusPending, store.StatusDone}, "Bundle.entry[0] (POST Patient): http 503"},
		{"throttled", "429", []string{store.StatusPending, store.StatusDone}, "Bundle.entry[0] (POST Patient): http 429"},
		{"delete-gone", "", []string{store.StatusDone}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ehr := newStubEHR(t)
			ehr.intercept = func(n int, w http.ResponseWriter, r *http.Request, body []byte) bool {
				if n > 0 || tc.status == "" {
					return false
				}
				writeJSON(w, http.StatusOK, map[string]any{"resourceType": "Bundle", "type": "batch-response",
					"entry": []any{map[string]any{"response": map[string]any{"status": tc.status,
						"outcome": outcome("invalid", "Patient.identifier: bad system")}}}})
				return true
			}
			d := testDest("ehr", ehr.base())
			d.Mode = ModeBatch
			h := newHarness(t, []Destination{d}, nil)
			payload := sessionBundle("P-1", "S-1", "completed", false)
			if tc.status == "" { // a re-sent DELETE of a resource already gone
				payload = []byte(`{"resourceType":"Bundle","type":"transaction","entry":[{"request":{"method":"DELETE","url":"AdverseEvent/ae-1"}}]}`)
			}
			id := h.enqueue("ehr", "k", payload)
			h.run()
			evs := h.retryUntilFinal(id)
			if len(evs) != len(tc.want) {
				t.Fatalf("%d attempts, want %d", len(evs), len(tc.want))
			}
			for i, ev := range evs {
				if ev.Status != tc.want[i] {
					t.Fatalf("attempt %d: %s %q", i+1, ev.Status, ev.A.Error)
				}
			}
			if !strings.Contains(evs[0].A.Error, tc.reason) {
				t.Fatalf("error %q, want %q", evs[0].A.Error, tc.reason)
			}
			if tc.status == "400 Bad Request" && !strings.Contains(string(evs[0].A.Outcome), "bad system") {
				t.Fatalf("entry outcome not recorded: %s", evs[0].A.Outcome)
			}
			// The status the EHR sent is the batch-response's 200; the
			// entries' statuses are in the recorded transaction-response
			// of every entry, even when the first one failed (p23 F7).
			if tc.status != "" {
				var rb fhirwire.Bundle
				if evs[0].A.HTTPStatus != http.StatusOK {
					t.Errorf("attempt 1 records http %d, want the 200 the EHR sent", evs[0].A.HTTPStatus)
				}
				if err := json.Unmarshal(evs[0].A.Outcome, &rb); err != nil || rb.Type != "transaction-response" ||
					len(rb.Entry) < 2 || rb.Entry[0].Response == nil || rb.Entry[1].Response != nil {
					t.Errorf("attempt 1 records %s, want a transaction-response of every entry, the first failed, the others not sent", evs[0].A.Outcome)
				}
			}
		})
	}
}

func TestLargeTransactionFallsBackToBatch(t *testing.T) {
	for _, tc := range []struct {
		name       string
		maxEntries int
		refuse     map[string]bool // Bundle types answered 413
		want       string          // kinds of request that carried data
	}{
		{"max-entries", 2, nil, "batch"},
		{"413", 0, map[string]bool{"transaction": true}, "batch"},
		{"413-batch-too", 0, map[string]bool{"transaction": true, "batch": true}, "single"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ehr := newStubEHR(t)
			ehr.intercept = func(n int, w http.ResponseWriter, r *http.Request, body []byte) bool {
				var b fhirwire.Bundle
				if json.Unmarshal(body, &b) == nil && tc.refuse[b.Type] {
					writeJSON(w, http.StatusRequestEntityTooLarge, outcome("too-costly", "too big"))
					return true
				}
				return false
			}
			d := testDest("ehr", ehr.base())
			d.MaxEntries = tc.maxEntries
			h := newHarness(t, []Destination{d}, nil)
			h.enqueue("ehr", "k", sessionBundle("P-1", "S-1", "completed", false))
			h.run()
			if ev := h.next(); ev.Status != store.StatusDone || ev.A.N != 1 {
				t.Fatalf("%s after %d attempts: %q", ev.Status, ev.A.N, ev.A.Error)
			}
			for _, r := range ehr.reqs() {
				if tc.refuse[r.BundleType] {
					continue
				}
				got := r.BundleType
				if got == "" {
					got = "single"
				}
				if got != tc.want || (tc.maxEntries > 0 && r.Entries > tc.maxEntries) {
					t.Fatalf("%s request with %d entries, want %s", got, r.Entries, tc.want)
				}
			}
			wantCounts(t, ehr, 1, 1, 1)
		})
	}
}

func TestBadPayloadIsDead(t *testing.T) {
	ehr := newStubEHR(t)
	d := testDest("ehr", ehr.base())
	d.Mode = ModeSingle
	h := newHarness(t, []Destination{d}, nil)
	reasons := map[int64]string{}
	for payload, reason := range map[string]string{
		`not json`:                   "payload is not a JSON Bundle",
		`{"resourceType":"Patient"}`: "payload is not a transaction Bundle",
		`{"resourceType":"Bundle","type":"transaction","entry":[{"request":{"method":"POST","url":"https://evil.example/Patient"},"resource":{}}]}`: "request url is not a relative FHIR URL",
		`{"resourceType":"Bundle","type":"transaction","entry":[{"request":{"method":"DELETE","url":"Patient/../../admin"}}]}`:                      "request url is not a relative FHIR URL",
		`{"resourceType":"Bundle","type":"transaction","entry":[` +
			`{"fullUrl":"urn:uuid:a","request":{"method":"POST","url":"Patient"},"resource":{"resourceType":"Patient","link":[{"other":{"reference":"urn:uuid:b"}}]}},` +
			`{"fullUrl":"urn:uuid:b","request":{"method":"POST","url":"Patient"},"resource":{"resourceType":"Patient","link":[{"other":{"reference":"urn:uuid:a"}}]}}]}`: "cycle",
	} {
		reasons[h.enqueue("ehr", payload, []byte(payload))] = reason
	}
	h.run()
	for range reasons {
		ev := h.next()
		if ev.Status != store.StatusDead || !strings.Contains(ev.A.Error, reasons[ev.ID]) {
			t.Errorf("item %d: %s %q, want dead with %q", ev.ID, ev.Status, ev.A.Error, reasons[ev.ID])
		}
	}
	if n := len(ehr.reqs()); n != 0 {
		t.Fatalf("%d requests for bad payloads", n)
	}
}

// TestPartialDeliveryRecorded: in batch and single mode the EHR keeps what
// it stored before a request failed; the attempt records it: every entry
// answered so far with its status and location, the failed request's
// entries with the EHR's status and answer (probe p10 F6: only the
// failing entry's OperationOutcome was kept, so a dead letter read as
// "nothing reached the EHR").
func TestPartialDeliveryRecorded(t *testing.T) {
	for _, mode := range []Mode{ModeBatch, ModeSingle} {
		t.Run(string(mode), func(t *testing.T) {
			ehr := newStubEHR(t)
			ehr.intercept = func(n int, w http.ResponseWriter, r *http.Request, body []byte) bool {
				if n != 1 {
					return false
				}
				writeJSON(w, http.StatusBadRequest, outcome("invalid", "Procedure.code: unknown code"))
				return true
			}
			d := testDest("ehr", ehr.base())
			d.Mode = mode
			h := newHarness(t, []Destination{d}, nil)
			h.enqueue("ehr", "k", sessionBundle("P-1", "S-1", "completed", false))
			h.run()
			ev := h.next()
			if ev.Status != store.StatusDead {
				t.Fatalf("%s: %q, want a dead letter", ev.Status, ev.A.Error)
			}
			var rb fhirwire.Bundle
			if err := json.Unmarshal(ev.A.Outcome, &rb); err != nil || rb.Type != "transaction-response" {
				t.Fatalf("the attempt's answer is not the record of the entries: %v %s", err, ev.A.Outcome)
			}
			var stored, failed, unsent int
			for _, e := range rb.Entry {
				switch {
				case e.Response == nil:
					unsent++
				case strings.HasPrefix(e.Response.Status, "201") || strings.HasPrefix(e.Response.Status, "200"):
					if e.Response.Location == "" {
						t.Errorf("an entry the EHR stored has no location: %+v", e.Response)
					}
					stored++
				case strings.HasPrefix(e.Response.Status, "400"):
					if !strings.Contains(string(e.Response.Outcome), "unknown code") {
						t.Errorf("the failed entry lacks the EHR's answer: %s", e.Response.Outcome)
					}
					failed++
				}
			}
			if stored != 1 || failed == 0 {
				t.Errorf("%d entries recorded stored, %d failed, %d unsent; want the Patient stored and the failed request's entries", stored, failed, unsent)
			}
		})
	}
}

// TestPreconditionFailedExplained: an EHR's 412 (a conditional create
// whose criteria match several resources there, as a Patient the clinic
// identifier finds and another the MRN finds) is a dead letter whose
// reason says what it means and what to do.
func TestPreconditionFailedExplained(t *testing.T) {
	ehr := newStubEHR(t)
	ehr.intercept = func(n int, w http.ResponseWriter, r *http.Request, body []byte) bool {
		if r.Method != http.MethodPost {
			return false
		}
		writeJSON(w, http.StatusPreconditionFailed, outcome("multiple-matches", "2 matches"))
		return true
	}
	h := newHarness(t, []Destination{testDest("ehr", ehr.base())}, func(o *WorkerOptions) { o.CapabilityInterval = time.Hour })
	id := h.enqueue("ehr", "k", sessionBundle("P-1", "S-1", "completed", false))
	h.run()
	evs := h.retryUntilFinal(id)
	last := evs[len(evs)-1]
	if last.Status != store.StatusDead || last.A.HTTPStatus != http.StatusPreconditionFailed {
		t.Fatalf("a 412 became %s (http %d), want a dead letter", last.Status, last.A.HTTPStatus)
	}
	for _, want := range []string{"http 412", "more than one resource", "merge"} {
		if !strings.Contains(last.A.Error, want) {
			t.Errorf("dead letter reason %q, want it to contain %q", last.A.Error, want)
		}
	}
}

// TestTransactionEntryStatuses: an EHR that answers a transaction 200
// with a failed entry (one that did not apply it atomically, or a DELETE
// of what is already gone) is classified entry by entry as in batch mode
// (entryFailure): a 412 is a dead letter with its remedy, a 4xx a dead
// letter, a 5xx retried, a DELETE answered 404 or 410 done; the attempt
// records the 200 the EHR sent, and its reason the entry's status and
// that the EHR applied the other entries.
func TestTransactionEntryStatuses(t *testing.T) {
	del := []byte(`{"resourceType":"Bundle","type":"transaction","entry":[` +
		`{"request":{"method":"DELETE","url":"AdverseEvent/ae-1"}}]}`)
	for _, tc := range []struct {
		name, status string
		payload      []byte
		want         []string
		reason       []string
		entry        int // the entry status the first attempt's audit is given (-1: not checked)
	}{
		{"precondition-failed", "412 Precondition Failed", nil, []string{store.StatusDead},
			[]string{"Bundle.entry[0] (POST Patient): http 412 (invalid)", "merge them at the EHR", "the EHR applied the transaction's other"}, 412},
		{"bad-request", "400 Bad Request", nil, []string{store.StatusDead}, []string{"Bundle.entry[0] (POST Patient): http 400 (invalid)"}, 400},
		{"server-error", "500", nil, []string{store.StatusPending, store.StatusDone}, []string{"Bundle.entry[0] (POST Patient): http 500"}, 500},
		{"delete-not-found", "404 Not Found", del, []string{store.StatusDone}, nil, -1},
		{"delete-gone", "410 Gone", del, []string{store.StatusDone}, nil, -1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ehr := newStubEHR(t)
			sent := 0 // transactions answered
			ehr.intercept = func(_ int, w http.ResponseWriter, r *http.Request, body []byte) bool {
				var b fhirwire.Bundle
				if r.Method != http.MethodPost || json.Unmarshal(body, &b) != nil || b.Type != "transaction" ||
					sent > 0 && tc.payload == nil {
					return false
				}
				sent++
				entries := []any{map[string]any{"response": map[string]any{"status": tc.status,
					"outcome": outcome("invalid", "Patient.identifier: bad system")}}}
				for range b.Entry[1:] {
					entries = append(entries, map[string]any{"response": map[string]any{"status": "201 Created"}})
				}
				writeJSON(w, http.StatusOK, map[string]any{"resourceType": "Bundle", "type": "transaction-response", "entry": entries})
				return true
			}
			var audited []int // the entry status each attempt's audit was given
			var mu sync.Mutex
			h := newHarness(t, []Destination{testDest("ehr", ehr.base())}, func(o *WorkerOptions) {
				o.CapabilityInterval = time.Hour
				o.Audit = func(_ context.Context, _ *store.OutboxItem, _ *store.Attempt, _ string, entry int) error {
					mu.Lock()
					defer mu.Unlock()
					audited = append(audited, entry)
					return nil
				}
			})
			payload := tc.payload
			if payload == nil {
				payload = sessionBundle("P-1", "S-1", "completed", false)
			}
			id := h.enqueue("ehr", "k", payload)
			h.run()
			evs := h.retryUntilFinal(id)
			if len(evs) != len(tc.want) {
				t.Fatalf("%d attempts (the first %s %q), want %d", len(evs), evs[0].Status, evs[0].A.Error, len(tc.want))
			}
			for i, ev := range evs {
				if ev.Status != tc.want[i] {
					t.Fatalf("attempt %d: %s %q, want %s", i+1, ev.Status, ev.A.Error, tc.want[i])
				}
			}
			for _, want := range tc.reason {
				if !strings.Contains(evs[0].A.Error, want) {
					t.Errorf("attempt 1: error %q, want it to contain %q", evs[0].A.Error, want)
				}
			}
			mu.Lock()
			if tc.entry >= 0 && (len(audited) == 0 || audited[0] != tc.entry) {
				t.Errorf("entry statuses audited = %v, want the first %d (the audit is told the entry's status, not left to parse it)", audited, tc.entry)
			}
			mu.Unlock()
			if evs[0].A.HTTPStatus != http.StatusOK {
				t.Errorf("attempt 1 records http %d, want the 200 the EHR sent", evs[0].A.HTTPStatus)
			}
		})
	}
}
