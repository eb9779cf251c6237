package gateway_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/auth"
)

// TestLineageChangedSinceClientAfterReads: the client named as having
// changed a delivered resource is the one that wrote the version, found
// among the write AuditEvents naming the resource; another client's reads
// since (which name the same version, and are newer) neither push the
// write out of the AuditEvents looked at nor stand in for it.
func TestLineageChangedSinceClientAfterReads(t *testing.T) {
	h, _, tok := clientsServer(t, []auth.Client{
		{ID: "writerA", Tenant: "clinic-a", Scopes: []string{auth.ScopeIngest, auth.ScopeAuditor, "system/*.cruds"}},
		{ID: "readerA", Tenant: "clinic-a", Scopes: []string{"system/*.rs"}},
	})
	if rec := req(h, "POST", "/ingest/assessment", string(example(t, "assessment/phq9-moderate.json")), tok["writerA"]); rec.Code != http.StatusOK {
		t.Fatalf("ingest = %d %s", rec.Code, rec.Body)
	}
	type lineage struct {
		Receipts []struct {
			Resources []string
			Changed   []struct{ Resource, Client string } `json:"changedSince"`
		}
	}
	read := func() lineage {
		t.Helper()
		rec := req(h, "GET", "/admin/lineage?source=serenity-clinic-emr&record=ASM-2026-0310-001", "", tok["writerA"])
		var l lineage
		if err := json.Unmarshal(rec.Body.Bytes(), &l); err != nil || len(l.Receipts) != 1 {
			t.Fatalf("lineage = %d %s", rec.Code, rec.Body)
		}
		return l
	}
	var obs string
	for _, r := range read().Receipts[0].Resources {
		if strings.HasPrefix(r, "Observation/") && obs == "" {
			obs = strings.Split(r, "/_history")[0]
		}
	}
	rec := req(h, "GET", "/fhir/"+obs, "", tok["writerA"])
	var body map[string]any
	if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
		t.Fatalf("GET %s = %d %s", obs, rec.Code, rec.Body)
	}
	body["status"] = "entered-in-error"
	b, _ := json.Marshal(body)
	if rec := req(h, "PUT", "/fhir/"+obs, string(b), tok["writerA"]); rec.Code != http.StatusOK {
		t.Fatalf("PUT %s = %d %s", obs, rec.Code, rec.Body)
	}
	for i := 0; i < 101; i++ {
		if rec := req(h, "GET", "/fhir/"+obs, "", tok["readerA"]); rec.Code != http.StatusOK {
			t.Fatalf("GET %s = %d %s", obs, rec.Code, rec.Body)
		}
	}
	if c := read().Receipts[0].Changed; len(c) != 1 || c[0].Client != "writerA" {
		t.Errorf("changedSince = %+v, want %s changed by writerA", c, obs)
	}
}
