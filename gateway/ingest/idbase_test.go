package ingest_test

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/app"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/audit"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/auditlog"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/auth"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/engine"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/ingest"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/outcome"
	"github.com/ketamine-gateway/ketamine-gateway/mapping"
)

// TestResolveIdentifierBase: a database remembers the identifier base its
// records were mapped with (their Provenance names it), for every tenant,
// and a program configured with another is refused (issue: a replay
// without the serving gateway's --identifier-base added every patient and
// resource a second time).
func TestResolveIdentifierBase(t *testing.T) {
	ctx := context.Background()
	const custom = "https://hospital.example/sid"
	for _, tc := range []struct {
		name, base, tenant string // what the records were stored with; "" base: none stored
		configured         string
		want               string
		wantStored         string
		mismatch           bool
	}{
		{name: "empty database, unset", want: "", wantStored: ""},
		{name: "empty database, set", configured: custom, want: custom},
		{name: "default base, unset", base: "-", want: "", wantStored: mapping.DefaultIdentifierBase},
		{name: "default base, set to it", base: "-", configured: mapping.DefaultIdentifierBase + "/", want: mapping.DefaultIdentifierBase + "/", wantStored: mapping.DefaultIdentifierBase},
		{name: "default base, set to another", base: "-", configured: custom, mismatch: true, wantStored: mapping.DefaultIdentifierBase},
		{name: "custom base, unset: the database's", base: custom, want: custom, wantStored: custom},
		{name: "custom base of a tenant, unset", base: custom, tenant: "clinic-a", want: custom, wantStored: custom},
		{name: "custom base, set to it with a slash", base: custom, configured: custom + "/", want: custom + "/", wantStored: custom},
		{name: "custom base, set to the default", base: custom, configured: mapping.DefaultIdentifierBase, mismatch: true, wantStored: custom},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := app.Config{}
			if tc.base != "-" {
				cfg.IdentifierBase = tc.base
			}
			g := newGateway(t, cfg)
			if tc.base != "" {
				if err := g.ingest(tc.tenant, mapping.KindAssessment, rec("A1", "1", "P1", "", phq9Body)); err != nil {
					t.Fatal(err)
				}
			}
			stored, err := ingest.StoredIdentifierBase(ctx, g.a.Store)
			if err != nil || stored != tc.wantStored {
				t.Errorf("StoredIdentifierBase = %q, %v; want %q", stored, err, tc.wantStored)
			}
			got, err := ingest.ResolveIdentifierBase(ctx, g.a.Store, tc.configured)
			var mm *ingest.BaseMismatchError
			if tc.mismatch {
				if !errors.As(err, &mm) || mm.Stored != tc.wantStored {
					t.Fatalf("ResolveIdentifierBase = %q, %v; want a mismatch naming %s", got, err, tc.wantStored)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Errorf("ResolveIdentifierBase = %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}

// TestIdentityAmbiguous: a record whose clinic patient id two stored
// Patients carry (written through the FHIR API in the gateway's own
// identifier namespace, as a build before that namespace was reserved let
// clients do: legacyEngine) is refused 409 at /patient/id, naming what to do,
// instead of an engine 412 about "Bundle entry 0" of a Bundle the clinic
// never sent; nothing is stored.
func TestIdentityAmbiguous(t *testing.T) {
	ctx := context.Background()
	g := newGateway(t, app.Config{})
	sc := auditlog.NewScope("create", &auth.Principal{ClientID: "test", Scopes: auth.ParseScopes("system/Patient.c")})
	patient := `{"resourceType":"Patient","identifier":[{"system":"` + mapping.DefaultIdentifierBase +
		`/serenity-clinic-emr/patient","value":"DUP-PT"}]}`
	for range 2 {
		if _, err := legacyEngine(g).Create(ctx, sc, "Patient", func() ([]byte, error) { return []byte(patient), nil }, engine.Preconditions{}); err != nil {
			t.Fatal(err)
		}
	}
	err := g.ingest("", mapping.KindAssessment, rec("A-DUP", "1", "DUP-PT", "", phq9Body))
	wantIssues(t, err, outcome.Conflict, ingest.RuleIdentityAmbiguous, "/patient/id")
	if n := g.count(t, "", "Observation", ""); n != 0 {
		t.Errorf("%d Observations stored", n)
	}
}

// TestNestedRecordLineage: a record nested in a session keeps its own
// identity, and its lineage begins with the session that brought it (the
// session's Provenance names its nested records); a later version sent on
// its own follows. Before, the story began with an UPDATE.
func TestNestedRecordLineage(t *testing.T) {
	ctx := context.Background()
	g := newGateway(t, app.Config{})
	doc, err := os.ReadFile("../../schemas/examples/session/routine-ketamine-iv-session.json")
	if err != nil {
		t.Fatal(err)
	}
	if err := g.ingest("", mapping.KindSession, string(doc)); err != nil {
		t.Fatal(err)
	}
	var sess struct {
		Source      struct{ RecordID string } `json:"source"`
		Assessments []struct {
			RecordID string `json:"recordId"`
		} `json:"assessments"`
	}
	if err := json.Unmarshal(doc, &sess); err != nil || len(sess.Assessments) == 0 {
		t.Fatalf("the example session: %v", err)
	}
	l, err := auditlog.BuildLineage(ctx, g.a.Store, auditlog.LineageQuery{Source: "serenity-clinic-emr",
		RecordID: sess.Assessments[0].RecordID, Kind: string(mapping.KindAssessment)})
	if err != nil {
		t.Fatal(err)
	}
	if len(l.Receipts) != 1 || l.Receipts[0].Activity != "CREATE" || l.Receipts[0].Kind != string(mapping.KindSession) ||
		l.Receipts[0].RecordID != sess.Source.RecordID {
		t.Errorf("lineage of a nested assessment: %+v, want the session's CREATE", l.Receipts)
	}
}

// TestCheckIdentifierBase: a base the conditional criteria would not carry
// as it is (%xx decoded, + a space, & and ; another parameter) or with
// user information is refused, naming the characters; one that is
// accepted maps records whose real ingest stores them, as its dry run
// says (a base with %7E was accepted, and every real ingest was refused
// conditional-criteria-unmatched).
func TestCheckIdentifierBase(t *testing.T) {
	for _, tc := range []struct {
		base string
		want string // in the refusal; "" accepted
	}{
		{base: ""},
		{base: mapping.DefaultIdentifierBase},
		{base: "https://hospital.example/sid/"},
		{base: "http://hospital.example:8080/a~b/c-d_e.f/!*'()"},
		{base: "https://example.org/p3%7Esid", want: "%&+;="},
		{base: "https://example.org/p3a+b", want: "%&+;="},
		{base: "https://example.org/p3a&b=c", want: "%&+;="},
		{base: "https://example.org/p3;x=y", want: "%&+;="},
		{base: "https://example.org/a=b", want: "%&+;="},
		{base: "https://user:pw@example.org/p3", want: "user information"},
		{base: "https://example.org/sid?q=1", want: "no query"},
		{base: "not a url", want: "absolute http or https URL"},
	} {
		name := tc.base
		if name == "" {
			name = "unset"
		}
		t.Run(name, func(t *testing.T) {
			err := ingest.CheckIdentifierBase(tc.base)
			if tc.want != "" {
				if err == nil || !strings.Contains(err.Error(), tc.want) {
					t.Fatalf("CheckIdentifierBase(%q) = %v, want a refusal naming %q", tc.base, err, tc.want)
				}
				if _, err := ingest.ResolveIdentifierBase(context.Background(), nil, tc.base); err == nil {
					t.Errorf("ResolveIdentifierBase(%q) accepted it", tc.base)
				}
				return
			}
			if err != nil {
				t.Fatalf("CheckIdentifierBase(%q) = %v, want nil", tc.base, err)
			}
			// The dry run and the real ingest agree: both store.
			g := newGateway(t, app.Config{IdentifierBase: tc.base})
			sc := auditlog.NewScope("ingest", &auth.Principal{ClientID: "test"})
			doc := []byte(rec("A1", "1", "P1", "", phq9Body))
			if _, err := g.a.Ingest.Ingest(context.Background(), sc, mapping.KindAssessment, doc, true, engine.Answer{}); err != nil {
				t.Fatalf("dry run: %v", err)
			}
			if err := g.ingest("", mapping.KindAssessment, string(doc)); err != nil {
				t.Fatalf("ingest with base %q: %v", tc.base, err)
			}
		})
	}
}

// TestReceiptActivity: a record version's Provenance says what it did:
// v3-DataOperation CREATE for a first version, UPDATE for a correction,
// NULLIFY ("nullify": treat as though it never existed) for a withdrawal,
// so that an auditor finds withdrawals by Provenance (probe p45 F5).
func TestReceiptActivity(t *testing.T) {
	ctx := context.Background()
	g := newGateway(t, app.Config{})
	phq := func(version, status, total string) string {
		return rec("A-1", version, "P-1", "", `"instrument": "PHQ-9", "takenAt": "2026-03-02T08:45:00-05:00", "total": `+total)
	}
	withdrawal := strings.Replace(phq("3", "", "7"), `"version": "3"`, `"version": "3", "status": "entered-in-error"`, 1)
	for _, doc := range []string{phq("1", "", "6"), phq("2", "", "7"), withdrawal} {
		if err := g.ingest("", mapping.KindAssessment, doc); err != nil {
			t.Fatal(err)
		}
	}
	l, err := auditlog.BuildLineage(ctx, g.a.Store, auditlog.LineageQuery{Source: "serenity-clinic-emr", RecordID: "A-1",
		Kind: string(mapping.KindAssessment)})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range l.Receipts {
		got = append(got, r.Activity)
	}
	if s := strings.Join(got, " "); s != "CREATE UPDATE NULLIFY" {
		t.Errorf("receipts' activities %q, want CREATE UPDATE NULLIFY", s)
	}
	// The code's display is the v3-DataOperation one.
	b, err := json.Marshal(audit.ProvenanceResource(audit.Provenance{Activity: "NULLIFY", WhatDisplay: "x"}))
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"code":"NULLIFY","display":"nullify","system":"http://terminology.hl7.org/CodeSystem/v3-DataOperation"}`; !strings.Contains(string(b), want) {
		t.Errorf("a withdrawal's Provenance: %s, want the activity %s", b, want)
	}
}
