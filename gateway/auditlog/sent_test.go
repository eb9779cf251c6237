package auditlog

import (
	"context"
	"encoding/json"
	"net/url"
	"path/filepath"
	"testing"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/audit"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/search"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store/sqlite"
)

// TestAppendSent: an attempt to send a record to an EHR leaves an
// AuditEvent of type DICOM Export in the record's tenant: the gateway is
// the requesting agent, the destination the other; it names the delivery
// and the destination (found by entity:identifier), says what became of
// the attempt and carries the EHR's status (502 without an answer).
func TestAppendSent(t *testing.T) {
	ctx := context.Background()
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "kg.db"), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	l := New(st, Config{Observer: "gw-1"})
	l.Start()
	defer l.Close()
	it := &store.OutboxItem{ID: 7, Destination: "general-hospital", Tenant: "clinic-a", Kind: "session", Source: "emr",
		RecordID: "INF-1", Version: "2", TraceID: "4bf92f3577b34da6a3ce929d0e0e4736"}
	tests := []struct {
		name, delivery, outcome, errText string
		status                           int
		wantOutcome, wantDesc            string
	}{
		{"delivered", "abcdefghijklm", "done", "", 200, "0",
			"HTTP 200 OK: delivery abcdefghijklm to general-hospital: attempt 1: delivered"},
		{"refused", "bcdefghijklmn", "dead", "http 422", 422, "4",
			"HTTP 422 Unprocessable Entity: delivery bcdefghijklmn to general-hospital: attempt 1: not delivered, a dead letter (http 422)"},
		{"no answer", "cdefghijklmno", "retry", "timeout", 0, "8",
			"HTTP 502 Bad Gateway: delivery cdefghijklmno to general-hospital: attempt 1: not delivered, to be retried (timeout)"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a := &store.Attempt{ItemID: it.ID, N: 1, HTTPStatus: tc.status, Error: tc.errText}
			if err := l.AppendSent(ctx, st, "", Sent{Delivery: tc.delivery, Destination: it.Destination, Item: it, Attempt: a, Outcome: tc.outcome}); err != nil {
				t.Fatal(err)
			}
			q, err := search.Parse("AuditEvent", url.Values{"entity:identifier": {audit.SystemDelivery + "|" + tc.delivery}}, false)
			if err != nil {
				t.Fatal(err)
			}
			q.Tenant = search.AllTenants
			page, err := st.Search(ctx, q)
			if err != nil || len(page.Matches) != 1 {
				t.Fatalf("AuditEvents naming the delivery: %v, %v; want 1", page, err)
			}
			m := page.Matches[0]
			var ev struct {
				Type        struct{ Code string } `json:"type"`
				Subtype     []struct{ Code string }
				Action      string
				Outcome     string
				OutcomeDesc string
				Agent       []struct {
					Requestor bool
					Who       struct {
						Display    string
						Identifier *struct{ Value string }
					}
				}
				Source struct{ Site string }
				Entity []struct {
					What struct {
						Identifier struct{ System, Value string }
					}
				}
				Extension []struct{ ValueString string }
			}
			if err := json.Unmarshal(m.Body, &ev); err != nil {
				t.Fatal(err)
			}
			if m.Tenant != "clinic-a" || ev.Source.Site != "clinic-a" {
				t.Errorf("kept in tenant %q (site %q), want the record's, clinic-a", m.Tenant, ev.Source.Site)
			}
			if ev.Type.Code != "110106" || len(ev.Subtype) != 1 || ev.Subtype[0].Code != "delivery-send" || ev.Action != "R" {
				t.Errorf("type %s, subtype %v, action %s; want 110106 Export, delivery-send, R", ev.Type.Code, ev.Subtype, ev.Action)
			}
			if ev.Outcome != tc.wantOutcome || ev.OutcomeDesc != tc.wantDesc {
				t.Errorf("outcome %s %q, want %s %q", ev.Outcome, ev.OutcomeDesc, tc.wantOutcome, tc.wantDesc)
			}
			if len(ev.Agent) != 2 || !ev.Agent[0].Requestor || ev.Agent[0].Who.Display != "gw-1" || ev.Agent[0].Who.Identifier != nil ||
				ev.Agent[1].Requestor || ev.Agent[1].Who.Display != "general-hospital" {
				t.Errorf("agents %+v, want the gateway requesting and the destination receiving", ev.Agent)
			}
			named := map[string]string{}
			for _, e := range ev.Entity {
				named[e.What.Identifier.System] = e.What.Identifier.Value
			}
			if named[audit.SystemDelivery] != tc.delivery || named[audit.SystemDestination] != "general-hospital" || named["https://ketamine-gateway.org/fhir/sid/emr/session-record"] != "INF-1" {
				t.Errorf("entities name %v, want the delivery, the destination and the source record", named)
			}
			if len(ev.Extension) != 1 || ev.Extension[0].ValueString != it.TraceID {
				t.Errorf("trace %v, want the record's %s", ev.Extension, it.TraceID)
			}
		})
	}
}
