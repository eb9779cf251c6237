package console

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/app"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/audit"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/ingest"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/search"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
)

// TestDeliveriesShowCorrections: the Deliveries page and a delivery's page
// mark the delivery of a mapping replay's correction ("correction, mapping
// 2.3.0 -> 2.3.1"), which otherwise reads as its record's original
// delivery; the original is not marked (p42 F8).
func TestDeliveriesShowCorrections(t *testing.T) {
	f := newFixtureApp(t, nil, app.Config{Routes: []ingest.Route{{Name: "ehr", Accepts: func(string, string) bool { return true }}}})
	f.ingestAs(t, "", "assessment", "phq9-moderate.json")
	ctx := context.Background()
	rows, err := f.app.Operator.List(ctx, "", store.DeliveryFilter{})
	if err != nil || len(rows) != 1 {
		t.Fatalf("deliveries %v, %v; want 1", rows, err)
	}
	orig := rows[0]
	// A replay's correction of the record: its Provenance (the mapping it
	// corrected from, as a revision entity) and its delivery, of one trace.
	trace := "0af7651916cd43dd8448eb211c80319c"
	prov := map[string]any{"resourceType": "Provenance", "id": "replay-1", "meta": map[string]any{"versionId": "1",
		"lastUpdated": "2026-12-01T10:00:00.000Z"}, "recorded": "2026-12-01T10:00:00.000Z",
		"extension": []any{map[string]any{"url": audit.ExtTraceID, "valueString": trace}},
		"target":    []any{map[string]any{"reference": "Patient/p1"}},
		"agent":     []any{map[string]any{"who": map[string]any{"identifier": map[string]any{"system": audit.SystemMappingVersion, "value": "2.3.1"}}}},
		"entity": []any{map[string]any{"role": "revision", "what": map[string]any{"identifier": map[string]any{
			"system": audit.SystemMappingVersion, "value": "2.3.0"}}}}}
	body, _ := json.Marshal(prov)
	err = f.st.Write(ctx, func(tx store.Tx) error {
		if err := tx.Put(&store.Resource{Type: "Provenance", ID: "replay-1", Version: 1, LastUpdated: time.Now().UTC().Truncate(time.Millisecond),
			Body: body}, search.Extract("Provenance", prov)); err != nil {
			return err
		}
		return tx.Enqueue(&store.OutboxItem{Destination: "ehr", OrderKey: "k-corr", Patient: orig.Patient, Kind: orig.Kind, Source: orig.Source,
			RecordID: orig.RecordID, Version: orig.Version, TraceID: trace, Payload: []byte(`{}`)})
	})
	if err != nil {
		t.Fatal(err)
	}
	rows, err = f.app.Operator.List(ctx, "", store.DeliveryFilter{})
	if err != nil || len(rows) != 2 {
		t.Fatalf("deliveries %v, %v; want 2", rows, err)
	}
	marker := "correction, mapping 2.3.0 -&gt; 2.3.1"
	code, page, _ := f.get(t, "/console/deliveries")
	if code != http.StatusOK || strings.Count(page, marker) != 1 {
		t.Errorf("GET /console/deliveries = %d, %d markers %q, want 1:\n%.3000s", code, strings.Count(page, marker), marker, page)
	}
	for _, v := range rows {
		want := 0
		if v.TraceID == trace {
			want = 1
		}
		code, page, _ := f.get(t, "/console/deliveries/"+v.ID)
		if code != http.StatusOK || strings.Count(page, marker) != want {
			t.Errorf("GET /console/deliveries/%s = %d, %d markers, want %d:\n%.3000s", v.ID, code, strings.Count(page, marker), want, page)
		}
	}
}
