package ingest_test

import (
	"context"
	"encoding/json"
	"os"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/app"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/auditlog"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/auth"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/engine"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/ingest"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/outcome"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/search"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
	"github.com/ketamine-gateway/ketamine-gateway/mapping"
)

// sourceRecord is the example vitals record with its source system and
// record id replaced.
func sourceRecord(t *testing.T, source, recordID string) string {
	t.Helper()
	raw, err := os.ReadFile("../../schemas/examples/vitals/pre-dose-baseline.json")
	if err != nil {
		t.Fatal(err)
	}
	doc := strings.Replace(string(raw), `"VIT-2026-0310-001"`, `"`+recordID+`"`, 1)
	doc = strings.Replace(doc, `"MRN-TEST-000123"`, `"MRN-`+source+`"`, 1) // a patient per source
	return strings.Replace(doc, `"serenity-clinic-emr"`, `"`+source+`"`, 1)
}

// ingestAnswer stores a record for tenant and returns the answer's warnings
// (the issues of the first entry's outcome).
func (g *gw) ingestAnswer(t *testing.T, tenant, doc string) ([]string, error) {
	t.Helper()
	sc := auditlog.NewScope("ingest", &auth.Principal{ClientID: "test", Tenant: tenant})
	out, err := g.a.Ingest.Ingest(context.Background(), sc, mapping.KindVitals, []byte(doc), false, engine.Answer{})
	if err != nil {
		return nil, err
	}
	var b struct {
		Entry []struct {
			Response struct {
				Outcome *struct {
					Issue []struct {
						Severity string `json:"severity"`
						Details  struct {
							Coding []struct{ Code string } `json:"coding"`
							Text   string                  `json:"text"`
						} `json:"details"`
					} `json:"issue"`
				} `json:"outcome"`
			} `json:"response"`
		} `json:"entry"`
	}
	if err := json.Unmarshal(out, &b); err != nil {
		t.Fatal(err)
	}
	var warnings []string
	if oo := b.Entry[0].Response.Outcome; oo != nil {
		for _, is := range oo.Issue {
			if is.Severity == "warning" && len(is.Details.Coding) > 0 {
				warnings = append(warnings, is.Details.Coding[0].Code+": "+is.Details.Text)
			}
		}
	}
	return warnings, nil
}

// deliveries lists the tenant's deliveries of a record.
func (g *gw) deliveries(t *testing.T, tenant, source, recordID string) []*store.OutboxItem {
	t.Helper()
	items, err := g.a.Store.Deliveries(context.Background(), store.DeliveryFilter{Tenant: tenant, Source: source,
		RecordID: recordID, Limit: 100})
	if err != nil {
		t.Fatal(err)
	}
	return items
}

// TestSourceSharedByTenants: two tenants may send records of one source
// system (their records are apart in the gateway), but not to the same
// destination, where the identifiers minted from the source would be the
// same for both clinics' patients. The tenant that stored the source's
// first record holds it there; another tenant's record of it is stored
// all the same (200, with a warning naming the destination and the rule,
// never the other tenant) and its delivery there is a dead letter with
// the reason and no payload, which a retry does not send. Tenants
// delivering to different destinations are not concerned.
func TestSourceSharedByTenants(t *testing.T) {
	all := func(string, string) bool { return true }
	only := func(tenants ...string) func(string) bool {
		return func(x string) bool {
			return search.AllTenants != x && strings.Contains(","+strings.Join(tenants, ",")+",", ","+x+",")
		}
	}
	g := newGateway(t, app.Config{Routes: []ingest.Route{
		{Name: "shared-ehr", Accepts: all, AcceptsTenant: only("clinic-a")},
		{Name: "shared-ehr-2", Accepts: all, AcceptsTenant: only("clinic-a", "clinic-b")},
		{Name: "ehr-c", Accepts: all, AcceptsTenant: only("clinic-c")},
		{Name: "ehr-d", Accepts: all, AcceptsTenant: only("clinic-d")},
	}})
	const src = "serenity-clinic-emr"
	for _, tc := range []struct {
		tenant, recordID string
		notSent          string // the destination the record is not delivered to
		sent             []string
	}{
		{"clinic-a", "R-1", "", []string{"shared-ehr", "shared-ehr-2"}},
		{"clinic-b", "R-1", "shared-ehr-2", nil}, // clinic-a stored the source first
		{"clinic-a", "R-2", "", []string{"shared-ehr", "shared-ehr-2"}},
		{"clinic-c", "R-1", "", []string{"ehr-c"}},
		{"clinic-d", "R-1", "", []string{"ehr-d"}}, // a destination of its own
	} {
		warnings, err := g.ingestAnswer(t, tc.tenant, sourceRecord(t, src, tc.recordID))
		if err != nil {
			t.Fatalf("%s %s: %v; want stored", tc.tenant, tc.recordID, err)
		}
		var sent []string
		for _, it := range g.deliveries(t, tc.tenant, src, tc.recordID) {
			switch {
			case it.Status == store.StatusPending && len(it.Payload) > 0:
				sent = append(sent, it.Destination)
			case it.Destination == tc.notSent && it.Status == store.StatusDead:
				if !strings.HasPrefix(it.LastError, store.Refused+engine.RuleSourceOtherTenant) || len(it.Payload) != 0 {
					t.Errorf("%s %s: dead letter %q with %d bytes of payload; want the reason, no payload", tc.tenant, tc.recordID, it.LastError, len(it.Payload))
				}
				if _, err := g.a.Operator.Retry(context.Background(), tc.tenant, publicID(t, g, it.ID)); err == nil {
					t.Errorf("%s %s: the refused dead letter was retried", tc.tenant, tc.recordID)
				} else if _, issues := outcome.From(err); len(issues) != 1 || issues[0].Rule != "delivery-refused-when-stored" {
					t.Errorf("%s %s: retry = %v, want delivery-refused-when-stored", tc.tenant, tc.recordID, err)
				}
			default:
				t.Errorf("%s %s: delivery to %s %s", tc.tenant, tc.recordID, it.Destination, it.Status)
			}
		}
		slices.Sort(sent)
		if strings.Join(sent, ",") != strings.Join(tc.sent, ",") {
			t.Errorf("%s %s: delivered to %v, want %v", tc.tenant, tc.recordID, sent, tc.sent)
		}
		switch {
		case tc.notSent == "" && len(warnings) > 0:
			t.Errorf("%s %s: warnings %q", tc.tenant, tc.recordID, warnings)
		case tc.notSent != "" && (len(warnings) != 1 || !strings.HasPrefix(warnings[0], engine.RuleSourceOtherTenant+": ") ||
			!strings.Contains(warnings[0], tc.notSent) || strings.Contains(warnings[0], "clinic-a")):
			t.Errorf("%s %s: warnings %q; want one %s naming %s, not the other tenant", tc.tenant, tc.recordID, warnings,
				engine.RuleSourceOtherTenant, tc.notSent)
		}
	}
}

// TestSourceNotSquatted: a clinic that sends one record under another
// clinic's source system name, once a destination receives both, does not
// take that source from the clinic that stored its records first (before
// the destination was configured): the first clinic's records are stored
// and delivered, the second's stored and not delivered there; and the
// second clinic's own source system stays its own.
func TestSourceNotSquatted(t *testing.T) {
	var configured atomic.Bool
	g := newGateway(t, app.Config{Routes: []ingest.Route{
		{Name: "ehr-all", Accepts: func(string, string) bool { return configured.Load() }},
	}})
	const src = "serenity-clinic-emr"
	if _, err := g.ingestAnswer(t, "clinic-a", sourceRecord(t, src, "A-1")); err != nil {
		t.Fatal(err)
	}
	configured.Store(true) // the shared destination appears
	for _, tc := range []struct {
		tenant, source, recordID string
		delivered                bool
	}{
		{"clinic-b", src, "B-1", false}, // the squatter: stored, not delivered
		{"clinic-a", src, "A-2", true},  // the clinic that stored the source first
		{"clinic-b", "clinic-b-own-emr", "B-2", true},
		{"clinic-a", "clinic-b-own-emr", "A-3", false}, // clinic-b's now
	} {
		warnings, err := g.ingestAnswer(t, tc.tenant, sourceRecord(t, tc.source, tc.recordID))
		if err != nil {
			t.Errorf("%s %s: %v; want stored", tc.tenant, tc.recordID, err)
			continue
		}
		items := g.deliveries(t, tc.tenant, tc.source, tc.recordID)
		if len(items) != 1 {
			t.Fatalf("%s %s: %d deliveries, want 1", tc.tenant, tc.recordID, len(items))
		}
		if got := items[0].Status == store.StatusPending; got != tc.delivered {
			t.Errorf("%s %s: delivery %s (%s), want delivered %v", tc.tenant, tc.recordID, items[0].Status, items[0].LastError, tc.delivered)
		}
		if got := len(warnings) > 0; got == tc.delivered {
			t.Errorf("%s %s: warnings %q, want delivered %v", tc.tenant, tc.recordID, warnings, tc.delivered)
		}
	}
}

// TestSourceHeldByKindReceived: a tenant whose records of a source system
// are all of kinds a destination does not receive sends it nothing, so it
// does not hold the source there: the first tenant to store a record the
// destination receives does.
func TestSourceHeldByKindReceived(t *testing.T) {
	g := newGateway(t, app.Config{Routes: []ingest.Route{
		{Name: "ehr-vitals", Accepts: func(kind, _ string) bool { return kind == string(mapping.KindVitals) }},
	}})
	phq9, err := os.ReadFile("../../schemas/examples/assessment/phq9-moderate.json")
	if err != nil {
		t.Fatal(err)
	}
	sc := auditlog.NewScope("ingest", &auth.Principal{ClientID: "test", Tenant: "clinic-a"})
	if _, err := g.a.Ingest.Ingest(context.Background(), sc, mapping.KindAssessment, phq9, false, engine.Answer{}); err != nil {
		t.Fatal(err) // clinic-a's first record of the source: not one ehr-vitals receives
	}
	const src = "serenity-clinic-emr"
	for _, tc := range []struct {
		tenant, recordID string
		delivered        bool
	}{
		{"clinic-b", "B-1", true},
		{"clinic-a", "A-1", false},
	} {
		warnings, err := g.ingestAnswer(t, tc.tenant, sourceRecord(t, src, tc.recordID))
		if err != nil {
			t.Fatalf("%s %s: %v", tc.tenant, tc.recordID, err)
		}
		items := g.deliveries(t, tc.tenant, src, tc.recordID)
		if len(items) != 1 || (items[0].Status == store.StatusPending) != tc.delivered || (len(warnings) == 0) != tc.delivered {
			t.Errorf("%s %s: deliveries %d, warnings %q; want delivered %v", tc.tenant, tc.recordID, len(items), warnings, tc.delivered)
		}
	}
}

// publicID is the public id of the delivery of row number n (as the
// operator's list shows it).
func publicID(t *testing.T, g *gw, n int64) string {
	t.Helper()
	ids, err := g.a.Operator.IDs(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return ids.Encode(n)
}
