package ingest_test

import (
	"context"
	"encoding/json"
	"slices"
	"strings"
	"testing"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/app"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/audit"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/auditlog"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/auth"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/ingest"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/outcome"
	"github.com/ketamine-gateway/ketamine-gateway/mapping"
)

// TestImportAuditsMappingDefect: a record of a bulk import whose mapped
// resources break a profile (500 mapping-output-nonconformant, the
// gateway's defect) is a refused record all the same: Import leaves its
// AuditEvent, naming the stored patient the record concerns, as for a
// refused 4xx. Before, Import audited only errors under 500 and the
// transaction's refusal path (raced, concerned) skipped it.
func TestImportAuditsMappingDefect(t *testing.T) {
	g := newGateway(t, app.Config{})
	const fast = `"timepoint": "other", "timepointText": "check", "measuredAt": "2026-03-10T09:00:00Z", "heartRate": 105`
	if err := g.ingest("", mapping.KindVitals, rec("V-1", "1", "P-1", "", fast)); err != nil {
		t.Fatal(err)
	}
	ingest.SetProfileCheck(g.a.Ingest.Pipeline(), heartRateUnitStrict)
	sc := auditlog.NewScope("ingest", &auth.Principal{ClientID: "test", Scopes: auth.ParseScopes(auth.ScopeIngest)})
	_, err := g.a.Ingest.Import(context.Background(), sc, mapping.KindVitals, []byte(rec("V-1", "2", "P-1", "", fast)))
	if !slices.Contains(outcome.Rules(err), ingest.RuleMappingNonconformant) {
		t.Fatalf("Import = %v, want %s", err, ingest.RuleMappingNonconformant)
	}
	var found bool
	_ = g.a.Store.AuditChainAfter(context.Background(), 0, func(e audit.ChainEntry) error {
		var ev struct {
			OutcomeDesc string `json:"outcomeDesc"`
			Entity      []struct {
				Role struct{ Code string }      `json:"role"`
				What struct{ Reference string } `json:"what"`
			} `json:"entity"`
		}
		if err := json.Unmarshal(e.Body, &ev); err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(ev.OutcomeDesc, ingest.RuleMappingNonconformant) {
			return nil
		}
		found = true
		var patients []string
		for _, en := range ev.Entity {
			if en.Role.Code == "1" {
				patients = append(patients, en.What.Reference)
			}
		}
		if len(patients) != 1 || !strings.HasPrefix(patients[0], "Patient/") {
			t.Errorf("the refused record's AuditEvent names patients %v, want the stored patient", patients)
		}
		return nil
	})
	if !found {
		t.Errorf("Import of a record whose mapping breaks a profile left no AuditEvent")
	}
}
