package auditlog

import (
	"context"
	"encoding/json"
	"maps"
	"net/url"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/audit"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/search"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store/sqlite"
)

// TestAppendSent: an attempt to send a record to an EHR leaves an
// AuditEvent of type DICOM Export in the record's tenant: the gateway is
// the requesting agent, the destination the other; it names the delivery
// and the destination (found by entity:identifier), says what became of
// the attempt and carries the EHR's status (502 without an answer). Its
// period is when the attempt ran, which for an interrupted attempt
// (recorded by the gateway that recovered its claim, maybe hours later) is
// its claim, not when it was recorded (p16 F11); the delivery's entity
// carries the attempt as the outbox records it (p16 F3).
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
		RecordID: "INF-1", Version: "2", TraceID: "4bf92f3577b34da6a3ce929d0e0e4736", Payload: []byte(`{"resourceType":"Bundle"}`)}
	claimed := time.Date(2026, 12, 5, 18, 56, 52, 162_700_000, time.UTC)
	const interrupted = "interrupted: the gateway stopped during this attempt"
	tests := []struct {
		name, delivery, outcome, errText string
		status, entry                    int
		answer                           string
		at                               time.Time
		took                             time.Duration
		wantOutcome, wantDesc            string
		wantStart, wantEnd               string
	}{
		{"delivered", "abcdefghijklm", "done", "", 200, 0, `{"resourceType":"Bundle","type":"transaction-response"}`,
			claimed, 27*time.Millisecond + 900*time.Microsecond, "0",
			"HTTP 200 OK: delivery abcdefghijklm to general-hospital: attempt 1: delivered",
			"2026-12-05T18:56:52.162Z", "2026-12-05T18:56:52.189Z"},
		{"refused", "bcdefghijklmn", "dead", "http 422", 422, 0, `{"resourceType":"OperationOutcome"}`, claimed, time.Second, "4",
			"HTTP 422 Unprocessable Entity: delivery bcdefghijklmn to general-hospital: attempt 1: not delivered, a dead letter (http 422)",
			"2026-12-05T18:56:52.162Z", "2026-12-05T18:56:53.162Z"},
		{"no answer", "cdefghijklmno", "retry", "timeout", 0, 0, "", claimed, 30 * time.Second, "8",
			"HTTP 502 Bad Gateway: delivery cdefghijklmno to general-hospital: attempt 1: not delivered, to be retried (timeout)",
			"2026-12-05T18:56:52.162Z", "2026-12-05T18:57:22.162Z"},
		{"an entry refused in a 200 answer", "efghijklmnopq", "dead", "Bundle.entry[0] (POST Patient): http 412 (duplicate): merge them", 200, 412,
			`{"resourceType":"Bundle","type":"transaction-response"}`, claimed, time.Second, "4",
			"HTTP 412 Precondition Failed: delivery efghijklmnopq to general-hospital: attempt 1: not delivered, a dead letter " +
				"(the EHR answered http 200; Bundle.entry[0] (POST Patient): http 412 (duplicate): merge them)",
			"2026-12-05T18:56:52.162Z", "2026-12-05T18:56:53.162Z"},
		{"an entry to retry in a 200 answer", "fghijklmnopqr", "retry", "Bundle.entry[3] (PUT Observation): http 500", 200, 500,
			`{"resourceType":"Bundle","type":"batch-response"}`, claimed, time.Second, "8",
			"HTTP 500 Internal Server Error: delivery fghijklmnopqr to general-hospital: attempt 1: not delivered, to be retried " +
				"(the EHR answered http 200; Bundle.entry[3] (PUT Observation): http 500)",
			"2026-12-05T18:56:52.162Z", "2026-12-05T18:56:53.162Z"},
		// The entry's status is the delivery client's, not read back
		// from its text: an entry named by a path with an id is one the
		// text's pattern did not know.
		{"an entry with an id refused in a 200 answer", "ghijklmnopqrs", "dead", "Bundle.entry[2] (PUT Observation/o1): http 409", 200, 409,
			`{"resourceType":"Bundle","type":"transaction-response"}`, claimed, time.Second, "4",
			"HTTP 409 Conflict: delivery ghijklmnopqrs to general-hospital: attempt 1: not delivered, a dead letter " +
				"(the EHR answered http 200; Bundle.entry[2] (PUT Observation/o1): http 409)",
			"2026-12-05T18:56:52.162Z", "2026-12-05T18:56:53.162Z"},
		{"interrupted, recovered much later", "defghijklmnop", "interrupted", interrupted, 0, 0, "", claimed, 0, "8",
			"HTTP 502 Bad Gateway: delivery defghijklmnop to general-hospital: attempt 1: interrupted: the gateway stopped, or could not " +
				"record it, before its answer was recorded; the EHR may have received the record, which is sent again",
			"2026-12-05T18:56:52.162Z", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a := &store.Attempt{ItemID: it.ID, N: 1, HTTPStatus: tc.status, Error: tc.errText, At: tc.at, Duration: tc.took}
			if tc.answer != "" {
				a.Outcome = []byte(tc.answer)
			}
			if err := l.AppendSent(ctx, st, "", Sent{Delivery: tc.delivery, Destination: it.Destination, Item: it, Attempt: a, Outcome: tc.outcome, EntryStatus: tc.entry}); err != nil {
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
				Source   struct{ Site string }
				Recorded string
				Period   *struct{ Start, End string }
				Entity   []struct {
					What struct {
						Identifier struct{ System, Value string }
					}
					Detail []struct{ Type, ValueString string }
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
			details := map[string]string{}
			for _, e := range ev.Entity {
				named[e.What.Identifier.System] = e.What.Identifier.Value
				if e.What.Identifier.System == audit.SystemDelivery {
					for _, d := range e.Detail {
						details[d.Type] = d.ValueString
					}
				}
			}
			wantDetails := map[string]string{"attempt": "1", "http-status": strconv.Itoa(tc.status),
				"payload-sha256": audit.SHA256(it.Payload), "answer-sha256": audit.SHA256([]byte(tc.answer))}
			if tc.errText != "" {
				wantDetails["error"] = tc.errText
			}
			if !maps.Equal(details, wantDetails) {
				t.Errorf("the delivery's details = %v, want the attempt as recorded %v", details, wantDetails)
			}
			if ev.Period == nil || ev.Period.Start != tc.wantStart || ev.Period.End != tc.wantEnd {
				t.Errorf("period = %+v, want from %s to %q (the attempt's own time, as the outbox stores it), recorded %s", ev.Period, tc.wantStart, tc.wantEnd, ev.Recorded)
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
