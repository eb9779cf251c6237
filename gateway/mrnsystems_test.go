package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/app"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/auditlog"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/delivery"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/ingest"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/operator"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store/sqlite"
)

// TestDeliveryMRNSystems: two hospitals' EHRs, each configured with its
// own MRN system, receive a patient whom the gateway knows by both
// hospitals' MRNs: each EHR receives only its own MRN, in the Patient's
// identifiers and in its ifNoneExist (never the other hospital's), what
// it received is byte for byte the outbox item's payload, and the audit
// trail verifies: each delivery-send AuditEvent's payload hash is that of
// what was sent.
func TestDeliveryMRNSystems(t *testing.T) {
	const sysA, sysB = "https://hospital-a.example/mrn", "https://hospital-b.example/mrn"
	st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "kg.db"), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })

	var mu sync.Mutex
	received := map[string][][]byte{} // by destination: the transaction Bundles
	ehr := func(name string) *httptest.Server {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/fhir+json")
			if strings.HasSuffix(r.URL.Path, "/metadata") {
				fmt.Fprint(w, `{"resourceType":"CapabilityStatement","status":"active","kind":"instance","fhirVersion":"4.0.1","format":["json"],"rest":[{"mode":"server","interaction":[{"code":"transaction"}]}]}`)
				return
			}
			body, _ := io.ReadAll(r.Body)
			var b struct {
				Entry []json.RawMessage `json:"entry"`
			}
			if err := json.Unmarshal(body, &b); err != nil {
				w.WriteHeader(http.StatusBadRequest)
				return
			}
			mu.Lock()
			received[name] = append(received[name], body)
			mu.Unlock()
			entries := make([]string, len(b.Entry))
			for i := range entries {
				entries[i] = `{"response":{"status":"201 Created"}}`
			}
			fmt.Fprintf(w, `{"resourceType":"Bundle","type":"transaction-response","entry":[%s]}`, strings.Join(entries, ","))
		}))
		t.Cleanup(srv.Close)
		return srv
	}
	dests := []delivery.Destination{
		{Name: "hospital-a", BaseURL: ehr("hospital-a").URL, MRNSystems: []string{sysA}},
		{Name: "hospital-b", BaseURL: ehr("hospital-b").URL, MRNSystems: []string{sysB}},
	}
	ids, err := operator.LoadIDs(context.Background(), st)
	if err != nil {
		t.Fatal(err)
	}
	var s *Server
	worker, err := delivery.NewWorker(st, dests, delivery.WorkerOptions{PollInterval: 20 * time.Millisecond,
		// Every attempt is audited as serve audits it.
		Audit: func(ctx context.Context, it *store.OutboxItem, a *store.Attempt, outcome string, entryStatus int) error {
			return s.app.Audit.AppendSent(ctx, st, "", auditlog.Sent{Delivery: ids.Encode(it.ID), Destination: it.Destination,
				Item: it, Attempt: a, Outcome: outcome, EntryStatus: entryStatus})
		}})
	if err != nil {
		t.Fatal(err)
	}
	var routes []ingest.Route
	for _, d := range dests {
		routes = append(routes, ingest.Route{Name: d.Name, Accepts: d.Accepts, AcceptsTenant: d.AcceptsTenant, MRNSystems: d.MRNSystems})
	}
	s = testServer(t, app.Config{Store: st, Routes: routes, Notify: worker.Notify}, Config{RateLimit: -1})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- worker.Run(ctx) }()
	var once sync.Once
	stop := func() { once.Do(func() { cancel(); <-done }) }
	defer stop()

	raw, err := os.ReadFile(filepath.Join("..", "schemas", "examples", "assessment", "phq9-moderate.json"))
	if err != nil {
		t.Fatal(err)
	}
	// The first record carries hospital A's MRN, the second hospital B's:
	// the gateway's Patient then holds both.
	for i, mrn := range []struct{ system, value string }{{sysA, "A-111"}, {sysB, "B-222"}} {
		var doc map[string]any
		if err := json.Unmarshal(raw, &doc); err != nil {
			t.Fatal(err)
		}
		doc["source"].(map[string]any)["recordId"] = fmt.Sprintf("ASM-%d", i)
		doc["patient"].(map[string]any)["mrn"] = map[string]any{"system": mrn.system, "value": mrn.value, "assigner": "Hospital"}
		rec, _ := json.Marshal(doc)
		r := httptest.NewRequest("POST", "/ingest/assessment", bytes.NewReader(rec))
		r.Header.Set("Content-Type", "application/json")
		w := httptest.NewRecorder()
		s.ServeHTTP(w, r)
		if w.Code != 200 {
			t.Fatalf("POST /ingest/assessment = %d: %s", w.Code, w.Body)
		}
	}

	// No fixed deadline of its own: the test's, less a margin.
	deadline := time.Now().Add(2 * time.Minute)
	if d, ok := t.Deadline(); ok {
		deadline = d.Add(-10 * time.Second)
	}
	var items []*store.OutboxItem
	for {
		items, err = st.Deliveries(context.Background(), store.DeliveryFilter{Status: store.StatusDone, Limit: 100})
		if err != nil {
			t.Fatal(err)
		}
		if len(items) == 4 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d deliveries done, want 4", len(items))
		}
		time.Sleep(20 * time.Millisecond) // waiting for the worker goroutine
	}
	stop()

	own := map[string]string{"hospital-a": sysA + "|A-111", "hospital-b": sysB + "|B-222"}
	other := map[string]string{"hospital-a": "B-222", "hospital-b": "A-111"}
	mu.Lock()
	defer mu.Unlock()
	for _, name := range []string{"hospital-a", "hospital-b"} {
		if len(received[name]) != 2 {
			t.Fatalf("%s received %d Bundles, want 2", name, len(received[name]))
		}
		for _, body := range received[name] {
			if bytes.Contains(body, []byte(other[name])) {
				t.Errorf("%s received the other hospital's MRN %s", name, other[name])
			}
			var b struct {
				Entry []struct {
					Resource struct {
						Identifier []struct{ System, Value string } `json:"identifier"`
					} `json:"resource"`
					Request struct {
						URL         string `json:"url"`
						IfNoneExist string `json:"ifNoneExist"`
					} `json:"request"`
				} `json:"entry"`
			}
			if err := json.Unmarshal(body, &b); err != nil || len(b.Entry) == 0 || b.Entry[0].Request.URL != "Patient" {
				t.Fatalf("%s: the Bundle's first entry is not the Patient: %v", name, err)
			}
			// The clinic identifier, and the destination's MRN once the
			// gateway knows it (A's from the first record, B's from the
			// second).
			got := b.Entry[0].Request.IfNoneExist
			clinic, mrns, _ := strings.Cut(got, ",")
			if !strings.HasPrefix(clinic, "identifier=https://ketamine-gateway.org/fhir/sid/") || mrns != "" && mrns != own[name] {
				t.Errorf("%s: Patient ifNoneExist = %q, want the clinic identifier or %s", name, got, own[name])
			}
			// Each outbox item holds what its destination received.
			held := false
			for _, it := range items {
				held = held || it.Destination == name && bytes.Equal(it.Payload, body)
			}
			if !held {
				t.Errorf("%s received a Bundle that no outbox item of it holds", name)
			}
		}
		// The first record's Patient carries the destination's MRN when
		// it is the record's; the second's carries B's, at B only.
		var ids []string
		for _, body := range received[name] {
			var b struct {
				Entry []struct {
					Resource struct {
						Identifier []struct{ System, Value string } `json:"identifier"`
					} `json:"resource"`
				} `json:"entry"`
			}
			_ = json.Unmarshal(body, &b)
			for _, id := range b.Entry[0].Resource.Identifier {
				if strings.HasPrefix(id.System, "https://hospital-") {
					ids = append(ids, id.System+"|"+id.Value)
				}
			}
		}
		if len(ids) != 1 || ids[0] != own[name] {
			t.Errorf("%s: the delivered Patients' MRN identifiers = %q, want [%s] once", name, ids, own[name])
		}
	}
	res, err := auditlog.Verify(context.Background(), st, time.Now())
	if err != nil || !res.Intact || res.Lineage.Faults != 0 || res.Lineage.Attempts < 4 {
		t.Fatalf("Verify = %+v, %v; want intact, the 4 attempts checked", res, err)
	}
}
