package gateway_test

import (
	"context"
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/ketamine-gateway/ketamine-gateway/gateway"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/app"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/auditlog"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store/postgres"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store/sqlite"
)

// TestVerifyCountsNoReceiptRead (p41 F4): a Bundle's GET of a receipt
// names the Provenance it read in the Bundle's AuditEvent, without a
// hash (it wrote none). Verify counts as unchecked only the receipts a
// request wrote without recording their hash (an older gateway's): on a
// database this build wrote, after an ingest and batches and a
// transaction that only read its receipt, nothing is unchecked. On both
// stores (PostgreSQL's with GATEWAY_TEST_POSTGRES_URL).
func TestVerifyCountsNoReceiptRead(t *testing.T) {
	for _, backend := range []string{"sqlite", "postgres"} {
		t.Run(backend, func(t *testing.T) {
			var st store.Store = tempSQLite(t, sqlite.Options{})
			if backend == "postgres" {
				pg, err := postgres.Open(context.Background(), pgSchema(t, "kg_verify_reads"), postgres.Options{})
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { pg.Close() })
				st = pg
			}
			verifyCountsNoReceiptRead(t, st)
		})
	}
}

func verifyCountsNoReceiptRead(t *testing.T, st store.Store) {
	s := newServer(t, app.Config{Store: st}, gateway.Config{})
	rec := do(s, http.MethodPost, "/ingest/session", "application/json", example(t, "session/routine-ketamine-iv-session.json"))
	if rec.Code != http.StatusCreated && rec.Code != http.StatusOK {
		t.Fatalf("ingest = %d %s", rec.Code, rec.Body)
	}
	rec = do(s, http.MethodGet, "/fhir/Provenance?_elements=id", "", nil)
	var found struct {
		Entry []struct {
			Resource struct{ ID string } `json:"resource"`
		} `json:"entry"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &found); err != nil || len(found.Entry) != 1 {
		t.Fatalf("Provenance search = %d %s, want the ingest's receipt", rec.Code, rec.Body)
	}
	prov := "Provenance/" + found.Entry[0].Resource.ID
	for _, b := range []string{
		`{"resourceType":"Bundle","type":"batch","entry":[{"request":{"method":"GET","url":"` + prov + `"}}]}`,
		`{"resourceType":"Bundle","type":"batch","entry":[{"request":{"method":"GET","url":"` + prov + `/_history/1"}},
		  {"request":{"method":"GET","url":"Provenance?_id=` + found.Entry[0].Resource.ID + `"}}]}`,
		`{"resourceType":"Bundle","type":"transaction","entry":[{"request":{"method":"GET","url":"` + prov + `"}}]}`,
	} {
		if rec := do(s, http.MethodPost, "/fhir", gateway.ContentTypeFHIR, []byte(b)); rec.Code != http.StatusOK {
			t.Fatalf("Bundle of reads = %d %s, want 200", rec.Code, rec.Body)
		}
	}
	res, err := auditlog.Verify(context.Background(), st, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if !res.Intact || res.Lineage.Provenances != 1 || res.Lineage.Unchecked != 0 || res.Lineage.Note != "" {
		t.Errorf("Verify = intact %t, lineage %+v; want intact, the ingest's receipt checked, nothing unchecked and no note",
			res.Intact, res.Lineage)
	}
}
