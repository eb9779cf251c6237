package audit_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/audit"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
)

// checkRender compares Render with the document path it replaces:
// store.NewVersion of Event(r), byte for byte and entry for entry.
func checkRender(t *testing.T, r audit.Record) {
	t.Helper()
	want, wantEntries, err := store.NewVersion("AuditEvent", r.ID, 1, audit.Event(r), r.Recorded)
	if err != nil {
		t.Fatalf("NewVersion: %v", err)
	}
	body, entries := audit.Render(r)
	if !bytes.Equal(body, want.Body) {
		t.Errorf("Render body differs from NewVersion(Event):\n got %s\nwant %s", body, want.Body)
	}
	if !reflect.DeepEqual(entries, wantEntries) {
		t.Errorf("Render entries differ from Extract:\n got %+v\nwant %+v", entries, wantEntries)
	}
}

func TestRenderMatchesEvent(t *testing.T) {
	at := time.Date(2026, 12, 3, 6, 45, 12, 345678901, time.FixedZone("x", 3600))
	full := audit.Record{ID: "0193a5b2c3d4e5f6a7b8c9d0e1f2a3b4", Recorded: at, Interaction: "read", Status: 200,
		ClientID: "ehr-client", ClientAddr: "10.1.2.3", Observer: "gw-1", Tenant: "clinic-a",
		Patients: []string{"Patient/p1"}, Entities: []audit.Entity{{Type: "Observation", ID: "o1", Version: 3}},
		RequestID: "req-1", TraceID: "4bf92f3577b34da6a3ce929d0e0e4736", Description: "1 match"}
	with := func(edit func(*audit.Record)) audit.Record {
		r := full
		r.Patients = append([]string(nil), full.Patients...)
		r.Entities = append([]audit.Entity(nil), full.Entities...)
		edit(&r)
		return r
	}
	tests := map[string]audit.Record{
		"full": full,
		"anonymous, no address, tenant, ids or trace": with(func(r *audit.Record) {
			r.ClientID, r.ClientAddr, r.Tenant, r.RequestID, r.TraceID, r.Description = "", "", "", "", "", ""
		}),
		"unauthenticated":            with(func(r *audit.Record) { r.ClientID, r.Unauthenticated = "", true }),
		"no entities":                with(func(r *audit.Record) { r.Patients, r.Entities = nil, nil }),
		"only the request":           with(func(r *audit.Record) { r.Patients, r.Entities = nil, nil; r.RequestID = "q" }),
		"no entities and no request": with(func(r *audit.Record) { r.Patients, r.Entities, r.RequestID = nil, nil, "" }),
		"a Patient read":             with(func(r *audit.Record) { r.Entities = []audit.Entity{{Type: "Patient", ID: "p1", Version: 2}} }),
		"the same patient twice":     with(func(r *audit.Record) { r.Patients = []string{"Patient/p1", "Patient/p1", "Patient/p2"} }),
		"a search match, no version": with(func(r *audit.Record) { r.Entities = []audit.Entity{{Type: "Observation", ID: "o1"}} }),
		"an entity that is no id":    with(func(r *audit.Record) { r.Entities = []audit.Entity{{Type: "Observation", ID: "a b"}} }),
		"an unknown entity type":     with(func(r *audit.Record) { r.Entities = []audit.Entity{{Type: "Nope", ID: "x"}} }),
		"a local or empty reference": with(func(r *audit.Record) { r.Patients = []string{"#p", "", "https://x.example/fhir/Patient/9"} }),
		"a client mistake":           with(func(r *audit.Record) { r.Status = 404; r.Description = "rejected: not-found" }),
		"a server failure":           with(func(r *audit.Record) { r.Status = 503 }),
		"a status without a text":    with(func(r *audit.Record) { r.Status = 299 }),
		"an unknown interaction":     with(func(r *audit.Record) { r.Interaction = "frobnicate" }),
		"a gateway interaction":      with(func(r *audit.Record) { r.Interaction = "ingest" }),
		"a record sent to an EHR": with(func(r *audit.Record) {
			r.Interaction, r.ClientID, r.ClientAddr, r.RequestID, r.Recipient = "delivery-send", "", "", "", "general-hospital"
		}),
		"login":                       with(func(r *audit.Record) { r.Interaction = "login" }),
		"logout":                      with(func(r *audit.Record) { r.Interaction = "logout" }),
		"no id":                       with(func(r *audit.Record) { r.ID = "" }),
		"the zero time":               with(func(r *audit.Record) { r.Recorded = time.Time{} }),
		"characters to escape":        with(func(r *audit.Record) { r.ClientID, r.Tenant = "a<b>&\"c\"\\\n\t\x01", "Zürich – Ålesund" }),
		"invalid UTF-8":               with(func(r *audit.Record) { r.ClientAddr, r.Observer = "1.2.3.4\xff", "gw\xc3" }),
		"an address that folds empty": with(func(r *audit.Record) { r.ClientAddr = "::" }),
		"a record and a delivery named": with(func(r *audit.Record) {
			r.Identified = []audit.Identified{{System: "https://x.example/sid/emr/session-record", Value: "INF-1", Description: "the source record"},
				{System: "https://ketamine-gateway.org/fhir/sid/delivery", Value: "7", Description: "the delivery"}}
		}),
		"named, no resources and no request": with(func(r *audit.Record) {
			r.Patients, r.Entities, r.RequestID = nil, nil, ""
			r.Identified = []audit.Identified{{System: "s", Value: "v<&>", Description: "the source record"}}
		}),
		"an action of its own": with(func(r *audit.Record) { r.Interaction, r.Action = "ingest", "U" }),
		"a registered client changed, by the gateway": with(func(r *audit.Record) {
			r.Interaction, r.Action, r.Status, r.ClientID, r.ClientAddr, r.RequestID, r.TraceID = "client-registration", "U", 0, "", "", "", ""
			r.ByGateway, r.NoHTTP, r.Patients, r.Entities = true, true, nil, nil
			r.Identified = []audit.Identified{{System: audit.SystemClient, Value: "ehr-client", Description: "the registered client"}}
			r.Description = "registered client changed: scopes added: system/Patient.rs"
		}),
		"a Provenance written, with its hash": with(func(r *audit.Record) {
			r.Interaction = "ingest"
			r.Entities = append(r.Entities, audit.Entity{Type: "Provenance", ID: "rec-1", Version: 1, SHA256: audit.SHA256([]byte("{}"))})
		}),
		"an attempt sent, with its period": with(func(r *audit.Record) {
			r.Interaction, r.ClientID, r.Recipient = "delivery-send", "", "general-hospital"
			r.Identified = []audit.Identified{{System: "https://x.example/sid/emr/session-record", Value: "INF-1", Description: "the source record"},
				{System: audit.SystemDelivery, Value: "k7q2xw4mbn3ra", Description: "the delivery"},
				{System: audit.SystemDelivery, Value: "second", Description: "the delivery"}}
			r.Attempt = &audit.Attempt{N: 2, HTTPStatus: 500, PayloadSHA256: audit.SHA256([]byte("p")), AnswerSHA256: audit.SHA256(nil), Error: "http 500 <&>"}
			r.PeriodStart, r.PeriodEnd = at.Add(-time.Minute), at.Add(-time.Minute+1500*time.Millisecond)
		}),
		"an interrupted attempt, its period only started": with(func(r *audit.Record) {
			r.Interaction, r.ClientID, r.Recipient = "delivery-send", "", "general-hospital"
			r.Identified = []audit.Identified{{System: audit.SystemDelivery, Value: "k7q2xw4mbn3ra", Description: "the delivery"}}
			r.Attempt = &audit.Attempt{N: 1, AnswerSHA256: audit.SHA256(nil)}
			r.PeriodStart = at.Add(-time.Hour)
		}),
		"an attempt but no delivery named": with(func(r *audit.Record) { r.Attempt = &audit.Attempt{N: 1} }),
		"many patients, some twice": with(func(r *audit.Record) {
			r.Patients = nil
			for i := range 100 {
				r.Patients = append(r.Patients, fmt.Sprintf("Patient/p%d", i%70))
			}
		}),
	}
	for _, i := range audit.Interactions() {
		tests["interaction "+i] = with(func(r *audit.Record) { r.Interaction = i })
	}
	for name, r := range tests {
		t.Run(name, func(t *testing.T) { checkRender(t, r) })
	}
}

func FuzzRender(f *testing.F) {
	f.Add("read", 200, "client", "10.0.0.1", "clinic", "Patient/p1", "Observation", "o1", int64(1), "req", "trace", "", int64(1764744312345))
	f.Add("login", 401, "", "", "", "", "", "", int64(0), "", "", "rejected: x", int64(0))
	f.Add("ingest", 500, "c<&>", "::1", "t\x00", "#x", "Patient", "p.1", int64(-1), "r\n", "t\xff", "d", int64(-62135596800000))
	f.Fuzz(func(t *testing.T, interaction string, status int, client, addr, tenant, patient, etype, eid string,
		version int64, reqID, trace, desc string, ms int64) {
		r := audit.Record{ID: fmt.Sprint("id-", status), Recorded: time.UnixMilli(ms), Interaction: interaction, Status: status,
			ClientID: client, ClientAddr: addr, Observer: "gw", Tenant: tenant, RequestID: reqID, TraceID: trace,
			Description: desc}
		if patient != "" {
			r.Patients = []string{patient, patient}
		}
		if etype != "" || eid != "" {
			r.Entities = []audit.Entity{{Type: etype, ID: eid, Version: version}}
		}
		if trace != "" {
			r.Identified = []audit.Identified{{System: tenant, Value: trace, Description: desc}}
		}
		if version%5 == 0 {
			r.Action = etype
		}
		if version%3 == 0 {
			r.Identified = append(r.Identified, audit.Identified{System: audit.SystemDelivery, Value: eid, Description: "the delivery"})
			r.Attempt = &audit.Attempt{N: int(version), HTTPStatus: status, PayloadSHA256: patient, AnswerSHA256: trace, Error: desc}
			r.PeriodStart = time.UnixMilli(ms - version)
			if version%2 == 0 {
				r.PeriodEnd = time.UnixMilli(ms)
			}
		}
		checkRender(t, r)
	})
}

// BenchmarkRender: an audited read's AuditEvent, written directly and
// through the document (store.NewVersion of Event).
func BenchmarkRender(b *testing.B) {
	r := audit.Record{ID: "0193a5b2c3d4e5f6a7b8c9d0e1f2a3b4", Recorded: time.Now(), Interaction: "read", Status: 200,
		ClientID: "ehr-client-1", ClientAddr: "10.1.2.3", Observer: "ketamine-gateway", Tenant: "clinic-a",
		Patients:  []string{"Patient/0193a5b2c3d4e5f6a7b8c9d0e1f2a3b5"},
		Entities:  []audit.Entity{{Type: "Observation", ID: "0193a5b2c3d4e5f6a7b8c9d0e1f2a3b6", Version: 1}},
		RequestID: "0193a5b2c3d4e5f6a7b8c9d0e1f2a3b7", TraceID: "4bf92f3577b34da6a3ce929d0e0e4736"}
	b.Run("direct", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			audit.Render(r)
		}
	})
	b.Run("document", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, _, err := store.NewVersion("AuditEvent", r.ID, 1, audit.Event(r), r.Recorded); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// TestAnonymousClientNamedOnce: development mode's client has one name in
// the AuditEvent (the requesting agent) and in the Provenance (the
// enterer), so a search for one finds both.
func TestAnonymousClientNamedOnce(t *testing.T) {
	body, _ := audit.Render(audit.Record{Interaction: "ingest", Status: 200, Observer: "gw"})
	var ev struct {
		Agent []struct {
			Requestor bool
			Who       struct{ Display string }
		}
	}
	if err := json.Unmarshal(body, &ev); err != nil {
		t.Fatal(err)
	}
	var requestor string
	for _, a := range ev.Agent {
		if a.Requestor {
			requestor = a.Who.Display
		}
	}
	pb, err := json.Marshal(audit.ProvenanceResource(audit.Provenance{Activity: "CREATE", WhatDisplay: "x"}))
	if err != nil {
		t.Fatal(err)
	}
	var prov struct {
		Agent []struct {
			Type struct{ Coding []struct{ Code string } }
			Who  struct{ Display string }
		}
	}
	if err := json.Unmarshal(pb, &prov); err != nil {
		t.Fatal(err)
	}
	var enterer string
	for _, a := range prov.Agent {
		if len(a.Type.Coding) > 0 && a.Type.Coding[0].Code == "enterer" {
			enterer = a.Who.Display
		}
	}
	if requestor != audit.AnonymousClient || enterer != audit.AnonymousClient {
		t.Errorf("anonymous client: AuditEvent says %q, Provenance %q; want both %q", requestor, enterer, audit.AnonymousClient)
	}
}
