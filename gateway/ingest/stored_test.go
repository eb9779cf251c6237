package ingest_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/app"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/auditlog"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/auth"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/engine"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/ingest"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/outcome"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/search"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store/sqlite"
	"github.com/ketamine-gateway/ketamine-gateway/mapping"
)

// gw is the application over a fresh SQLite store.
type gw struct {
	a *app.App
}

func newGateway(t *testing.T, cfg app.Config) *gw {
	return newGatewayOver(t, cfg, nil)
}

// legacyEngine is an engine over g's store of a build before the
// identifier systems the mappings mint were reserved (it reserves only a
// namespace nobody uses): a test writes with it what a client could write
// then (engine.Config.IdentifierBase).
func legacyEngine(g *gw) *engine.Engine {
	return engine.New(engine.Config{Store: g.a.Store, Audit: g.a.Audit, IdentifierBase: "https://unused.example/sid"})
}

// newGatewayOver is newGateway over wrap(the store) (wrap nil: the store).
func newGatewayOver(t *testing.T, cfg app.Config, wrap func(store.Store) store.Store) *gw {
	t.Helper()
	st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "kg.db"), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return gatewayOn(t, cfg, st, wrap)
}

// gatewayOn is the application started over wrap(st) (wrap nil: st),
// closed with st when the test ends.
func gatewayOn(t *testing.T, cfg app.Config, st store.Store, wrap func(store.Store) store.Store) *gw {
	t.Helper()
	cfg.Store = st
	if wrap != nil {
		cfg.Store = wrap(st)
	}
	a, err := app.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = a.Close()
		_ = st.Close()
	})
	return &gw{a: a}
}

// ingest stores a record of kind for tenant.
func (g *gw) ingest(tenant string, kind mapping.Kind, doc string) error {
	sc := auditlog.NewScope("ingest", &auth.Principal{ClientID: "test", Tenant: tenant})
	_, err := g.a.Ingest.Ingest(context.Background(), sc, kind, []byte(doc), false, engine.Answer{})
	return err
}

// count counts the tenant's current resources of typ matching params.
func (g *gw) count(t *testing.T, tenant, typ, params string) int {
	t.Helper()
	vals, err := url.ParseQuery(params)
	if err != nil {
		t.Fatal(err)
	}
	q, err := search.Parse(typ, vals, false)
	if err != nil {
		t.Fatal(err)
	}
	q.Tenant = tenant
	page, err := g.a.Store.Search(context.Background(), q)
	if err != nil {
		t.Fatal(err)
	}
	return page.Total
}

// rec builds a record: the envelope (patient id, optional MRN with system)
// and the kind's own members.
func rec(recordID, version, patientID, mrn, body string) string {
	m := ""
	if mrn != "" {
		m = `, "mrn": {"value": "` + mrn + `", "system": "https://hospital.example/mrn", "assigner": "Example Hospital"}`
	}
	return `{"source": {"system": "serenity-clinic-emr", "recordId": "` + recordID + `", "version": "` + version +
		`"}, "patient": {"id": "` + patientID + `"` + m + `}, ` + body + `}`
}

const (
	phq9Body = `"instrument": "PHQ-9", "takenAt": "2026-03-02T08:45:00-05:00", "total": 6`
	// infusionBody: 09:00 to 09:40, monitored until 11:00.
	infusionBody = `"drug": "ketamine-iv", "status": "completed", "doseMgPerKg": 0.5, "bodyWeightKg": 80,
		"totalDoseMg": 40, "infusionStart": "2026-03-02T09:00:00-05:00", "infusionEnd": "2026-03-02T09:40:00-05:00",
		"monitoringEnd": "2026-03-02T11:00:00-05:00"`
)

func aeBody(session, onset string) string {
	return `"sessionId": "` + session + `", "event": "nausea", "onsetAt": "` + onset +
		`", "severity": "mild", "serious": false, "outcome": "resolved"`
}

// wantIssues checks err's kind and that its issues are rule at pointers, in
// order, quoting no value.
func wantIssues(t *testing.T, err error, kind outcome.Kind, rule string, pointers ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("stored; want %s %s", kind, rule)
	}
	k, issues := outcome.From(err)
	if k != kind || len(issues) != len(pointers) {
		t.Fatalf("got %s %+v; want %s with %d issues", k, issues, kind, len(pointers))
	}
	for i, is := range issues {
		if is.Rule != rule || is.Pointer != pointers[i] {
			t.Errorf("issue %d = %s at %s, want %s at %s", i, is.Rule, is.Pointer, rule, pointers[i])
		}
		for _, v := range []string{"MRN-", "P-", "2026-", "S-"} {
			if strings.Contains(is.Message, v) {
				t.Errorf("issue %d quotes a value: %q", i, is.Message)
			}
		}
	}
}

// wantNamed checks that an issue of err names a stored record ("vitals
// record V-1"): a refusal because of a record stored before says which.
func wantNamed(t *testing.T, err error, record string) {
	t.Helper()
	_, issues := outcome.From(err)
	for _, is := range issues {
		if strings.Contains(is.Message, record) {
			return
		}
	}
	t.Errorf("no issue names the stored %s: %+v", record, issues)
}

// TestIdentityConflict: a new clinic id with another Patient's MRN is
// refused (409, both pointers) and nothing is stored.
func TestIdentityConflict(t *testing.T) {
	g := newGateway(t, app.Config{})
	if err := g.ingest("", mapping.KindAssessment, rec("A-1", "1", "P-1", "MRN-1", phq9Body)); err != nil {
		t.Fatal(err)
	}
	err := g.ingest("", mapping.KindAssessment, rec("A-2", "1", "P-2", "MRN-1", phq9Body))
	wantIssues(t, err, outcome.Conflict, ingest.RuleIdentityConflict, "/patient/id", "/patient/mrn/value")
	if n := g.count(t, "", "Patient", ""); n != 1 {
		t.Errorf("%d Patients, want 1", n)
	}
	if n := g.count(t, "", "Observation", "identifier=https://ketamine-gateway.org/fhir/sid/serenity-clinic-emr/assessment|A-2"); n != 0 {
		t.Errorf("the refused record's Observation was stored")
	}
	// The same clinic id again, or an MRN without a system, or another
	// tenant: no conflict.
	for _, tc := range []struct{ tenant, doc string }{
		{"", rec("A-3", "1", "P-1", "MRN-1", phq9Body)},
		{"", strings.Replace(rec("A-4", "1", "P-4", "MRN-1", phq9Body), `"system": "https://hospital.example/mrn", `, "", 1)},
		{"other-clinic", rec("A-5", "1", "P-2", "MRN-1", phq9Body)},
	} {
		if err := g.ingest(tc.tenant, mapping.KindAssessment, tc.doc); err != nil {
			t.Errorf("tenant %q: %v", tc.tenant, err)
		}
	}
	// A known clinic id that comes with another Patient's MRN.
	if err := g.ingest("", mapping.KindAssessment, rec("A-6", "1", "P-6", "MRN-6", phq9Body)); err != nil {
		t.Fatal(err)
	}
	err = g.ingest("", mapping.KindAssessment, rec("A-7", "1", "P-1", "MRN-6", phq9Body))
	wantIssues(t, err, outcome.Conflict, ingest.RuleIdentityConflict, "/patient/id", "/patient/mrn/value")
}

// TestMRNPunctuation: an MRN is data, compared whole: one holding the
// characters a token search separates values with (",", "|", "$", "\\")
// is neither another patient's MRN nor a failure, and the same MRN again
// is the same patient.
func TestMRNPunctuation(t *testing.T) {
	g := newGateway(t, app.Config{})
	if err := g.ingest("", mapping.KindAssessment, rec("A-1", "1", "P-1", "A", phq9Body)); err != nil {
		t.Fatal(err)
	}
	for i, mrn := range []string{"A,B", "B|C", `A\\,B`, "A$B", "C|"} {
		patient := fmt.Sprintf("P-%d", i+2)
		if err := g.ingest("", mapping.KindAssessment, rec(fmt.Sprintf("A-%d", i+2), "1", patient, mrn, phq9Body)); err != nil {
			t.Errorf("MRN %s: %v", mrn, err)
			continue
		}
		// Another clinic id with that MRN is another patient's MRN.
		err := g.ingest("", mapping.KindAssessment, rec(fmt.Sprintf("B-%d", i+2), "1", "Q-"+patient, mrn, phq9Body))
		wantIssues(t, err, outcome.Conflict, ingest.RuleIdentityConflict, "/patient/id", "/patient/mrn/value")
	}
	if n := g.count(t, "", "Patient", ""); n != 6 {
		t.Errorf("%d Patients, want 6", n)
	}
}

// TestIdentityConflictOtherSystem: a patient treated under two source
// systems of one tenant. The second system's record with the hospital MRN
// is refused, and the answer says what can be done, which works: the
// administrator adds the second system's patient identifier to the
// Patient through the FHIR API, and the record is then accepted, for the
// one Patient. A patient id of the record's own system under another MRN
// holder gets the advice it can follow (the id it used before).
func TestIdentityConflictOtherSystem(t *testing.T) {
	g := newGateway(t, app.Config{})
	if err := g.ingest("", mapping.KindAssessment, rec("A-1", "1", "P-1", "MRN-1", phq9Body)); err != nil {
		t.Fatal(err)
	}
	other := func(recordID string) string {
		return strings.Replace(rec(recordID, "1", "PY-1", "MRN-1", phq9Body), `"system": "serenity-clinic-emr"`, `"system": "harbor-clinic-emr"`, 1)
	}
	message := func(err error) string {
		_, issues := outcome.From(err)
		if len(issues) == 0 {
			return ""
		}
		return issues[0].Message
	}
	err := g.ingest("", mapping.KindAssessment, other("Y-1"))
	wantIssues(t, err, outcome.Conflict, ingest.RuleIdentityConflict, "/patient/id", "/patient/mrn/value")
	if m := message(err); !strings.Contains(m, "another source system") || !strings.Contains(m, "administrator") || strings.Contains(m, "patient id the gateway knows") {
		t.Errorf("another source system's patient: message %q; want the other source system named and the administrator's remedy, not an id the clinic cannot know", m)
	}
	// The same source system under another patient id: send the known id.
	err = g.ingest("", mapping.KindAssessment, rec("A-2", "1", "P-2", "MRN-1", phq9Body))
	wantIssues(t, err, outcome.Conflict, ingest.RuleIdentityConflict, "/patient/id", "/patient/mrn/value")
	if m := message(err); !strings.Contains(m, "patient id the gateway knows") {
		t.Errorf("this source system's patient under another id: message %q; want the known id as the remedy", m)
	}
	// The administrator's remedy: the second system's patient identifier
	// added to the Patient.
	vals, _ := url.ParseQuery("identifier=https://hospital.example/mrn|MRN-1")
	q, _ := search.Parse("Patient", vals, false)
	page, err := g.a.Store.Search(context.Background(), q)
	if err != nil || len(page.Matches) != 1 {
		t.Fatalf("%d Patients with the MRN, %v", len(page.Matches), err)
	}
	var patient map[string]any
	if err := json.Unmarshal(page.Matches[0].Body, &patient); err != nil {
		t.Fatal(err)
	}
	patient["identifier"] = append(patient["identifier"].([]any), map[string]any{
		"system": "https://ketamine-gateway.org/fhir/sid/harbor-clinic-emr/patient", "value": "PY-1"})
	bundle, _ := json.Marshal(map[string]any{"resourceType": "Bundle", "type": "transaction", "entry": []any{map[string]any{
		"resource": patient, "request": map[string]any{"method": "PUT", "url": "Patient/" + page.Matches[0].ID}}}})
	admin := auditlog.NewScope("transaction", &auth.Principal{ClientID: "admin", Scopes: auth.ParseScopes("system/*.cruds")})
	if _, err := legacyEngine(g).Bundle(context.Background(), admin, bundle, engine.Answer{}); err != nil {
		t.Fatal(err)
	}
	if err := g.ingest("", mapping.KindAssessment, other("Y-1")); err != nil {
		t.Errorf("the second system's record after the administrator linked its patient id: %v", err)
	}
	if n := g.count(t, "", "Patient", ""); n != 1 {
		t.Errorf("%d Patients, want 1", n)
	}
	// A known patient id whose record names another Patient's MRN.
	if err := g.ingest("", mapping.KindAssessment, rec("A-3", "1", "P-3", "MRN-3", phq9Body)); err != nil {
		t.Fatal(err)
	}
	err = g.ingest("", mapping.KindAssessment, rec("A-4", "1", "P-3", "MRN-1", phq9Body))
	wantIssues(t, err, outcome.Conflict, ingest.RuleIdentityConflict, "/patient/id", "/patient/mrn/value")
	if m := message(err); !strings.Contains(m, "correct the MRN") || strings.Contains(m, "patient id the gateway knows") {
		t.Errorf("a known patient id with another Patient's MRN: message %q; want correct the MRN", m)
	}
}

// TestMRNChange: an MRN added or changed for a known clinic id is a new
// version of the same Patient, and frees the old MRN.
func TestMRNChange(t *testing.T) {
	g := newGateway(t, app.Config{})
	steps := []struct {
		doc     string
		version int64
		mrn     string
	}{
		{rec("A-1", "1", "P-1", "", phq9Body), 1, ""},
		{rec("A-2", "1", "P-1", "MRN-1", phq9Body), 2, "MRN-1"},
		{rec("A-3", "1", "P-1", "MRN-1", phq9Body), 2, "MRN-1"},
		{rec("A-4", "1", "P-1", "", phq9Body), 2, "MRN-1"},
		{rec("A-5", "1", "P-1", "MRN-2", phq9Body), 3, "MRN-2"},
	}
	for i, s := range steps {
		if err := g.ingest("", mapping.KindAssessment, s.doc); err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
		vals, _ := url.ParseQuery("identifier=https://ketamine-gateway.org/fhir/sid/serenity-clinic-emr/patient|P-1")
		q, _ := search.Parse("Patient", vals, false)
		page, err := g.a.Store.Search(context.Background(), q)
		if err != nil || len(page.Matches) != 1 {
			t.Fatalf("step %d: %v Patients, %v", i, len(page.Matches), err)
		}
		p := page.Matches[0]
		if p.Version != s.version || (s.mrn != "") != strings.Contains(string(p.Body), `"value":"`+s.mrn+`"`) {
			t.Errorf("step %d: Patient version %d %s; want version %d with MRN %q", i, p.Version, p.Body, s.version, s.mrn)
		}
	}
	if n := g.count(t, "", "Patient", ""); n != 1 {
		t.Errorf("%d Patients, want 1", n)
	}
	// MRN-1 is free again; MRN-2 is P-1's.
	if err := g.ingest("", mapping.KindAssessment, rec("A-6", "1", "P-2", "MRN-1", phq9Body)); err != nil {
		t.Errorf("the old MRN for a new clinic id: %v", err)
	}
	wantIssues(t, g.ingest("", mapping.KindAssessment, rec("A-7", "1", "P-3", "MRN-2", phq9Body)),
		outcome.Conflict, ingest.RuleIdentityConflict, "/patient/id", "/patient/mrn/value")
}

// TestMRNChangeKeepsDemographics: a record that changes the MRN makes a
// new version of the stored Patient with the new MRN and the stored
// demographics: one that leaves them out does not erase them, and one that
// gives them otherwise does not apply them and says so, as for any later
// record (patient.demographics-not-applied per field, never a value).
func TestMRNChangeKeepsDemographics(t *testing.T) {
	g := newGateway(t, app.Config{})
	send := func(recordID, mrn, demographics string) []string {
		t.Helper()
		doc := strings.Replace(rec(recordID, "1", "P-1", mrn, phq9Body), `"Example Hospital"}`, `"Example Hospital"}`+demographics, 1)
		sc := auditlog.NewScope("ingest", &auth.Principal{ClientID: "test"})
		answer, err := g.a.Ingest.Ingest(context.Background(), sc, mapping.KindAssessment, []byte(doc), false, engine.Answer{})
		if err != nil {
			t.Fatalf("%s: %v", recordID, err)
		}
		// Birth dates as written ("1970-01-01"): a bare year could be part
		// of a generated id in the answer.
		for _, v := range []string{"Xavier", "Other", "1970-", "1999-"} {
			if strings.Contains(string(answer), v) {
				t.Errorf("%s: the answer quotes a value %q", recordID, v)
			}
		}
		var b struct {
			Entry []struct {
				Response struct {
					Outcome *struct {
						Issue []struct {
							Severity string
							Details  struct{ Coding []struct{ Code string } }
							Location []string
						}
					}
				}
			}
		}
		if err := json.Unmarshal(answer, &b); err != nil {
			t.Fatal(err)
		}
		var warned []string
		if oo := b.Entry[0].Response.Outcome; oo != nil {
			for _, is := range oo.Issue {
				if is.Severity != "warning" || len(is.Details.Coding) != 1 || is.Details.Coding[0].Code != ingest.RuleDemographicsNotApplied {
					t.Errorf("%s: issue %+v", recordID, is)
				}
				warned = append(warned, strings.Join(is.Location, ","))
			}
		}
		return warned
	}
	patient := func() (version int64, p struct {
		Name       []struct{ Family string }
		BirthDate  string
		Gender     string
		Identifier []struct{ Value string }
	}) {
		t.Helper()
		vals, _ := url.ParseQuery("identifier=https://ketamine-gateway.org/fhir/sid/serenity-clinic-emr/patient|P-1")
		q, _ := search.Parse("Patient", vals, false)
		page, err := g.a.Store.Search(context.Background(), q)
		if err != nil || len(page.Matches) != 1 {
			t.Fatalf("%d Patients, %v", len(page.Matches), err)
		}
		if err := json.Unmarshal(page.Matches[0].Body, &p); err != nil {
			t.Fatal(err)
		}
		return page.Matches[0].Version, p
	}
	if w := send("A-1", "MRN-1", `, "name": {"family": "Xavier"}, "birthDate": "1970-01-01"`); len(w) != 0 {
		t.Errorf("first record: warnings at %q", w)
	}
	// The MRN changed, no demographics: they stay, nothing to warn about.
	if w := send("A-2", "MRN-2", ""); len(w) != 0 {
		t.Errorf("MRN changed without demographics: warnings at %q", w)
	}
	v, p := patient()
	if v != 2 || len(p.Name) != 1 || p.Name[0].Family != "Xavier" || p.BirthDate != "1970-01-01" ||
		len(p.Identifier) != 2 || p.Identifier[1].Value != "MRN-2" {
		t.Errorf("after an MRN change without demographics: version %d %+v; want version 2 with the first name and birth date and MRN-2", v, p)
	}
	// The MRN changed with other demographics: the MRN is applied, they
	// are not, and each one is warned about (gender, which the stored
	// Patient lacks, too); the same birth date says nothing.
	w := send("A-3", "MRN-3", `, "name": {"family": "Other"}, "birthDate": "1970-01-01", "gender": "male"`)
	if strings.Join(w, " ") != "/patient/name /patient/gender" {
		t.Errorf("MRN changed with other demographics: warnings at %q, want /patient/name and /patient/gender", w)
	}
	v, p = patient()
	if v != 3 || len(p.Name) != 1 || p.Name[0].Family != "Xavier" || p.BirthDate != "1970-01-01" || p.Gender != "" ||
		len(p.Identifier) != 2 || p.Identifier[1].Value != "MRN-3" {
		t.Errorf("after an MRN change with other demographics: version %d %+v; want version 3 with the first demographics and MRN-3", v, p)
	}
	// An administrator links another hospital's MRN to the Patient; the
	// record's next MRN change replaces its own MRN, not that one.
	vals, _ := url.ParseQuery("identifier=https://ketamine-gateway.org/fhir/sid/serenity-clinic-emr/patient|P-1")
	q, _ := search.Parse("Patient", vals, false)
	page, err := g.a.Store.Search(context.Background(), q)
	if err != nil || len(page.Matches) != 1 {
		t.Fatalf("%d Patients, %v", len(page.Matches), err)
	}
	cur := page.Matches[0]
	var doc map[string]any
	if err := json.Unmarshal(cur.Body, &doc); err != nil {
		t.Fatal(err)
	}
	doc["identifier"] = append(doc["identifier"].([]any), map[string]any{"system": "https://other-hospital.example/mrn", "value": "OTHER-9",
		"type": map[string]any{"coding": []any{map[string]any{"system": mapping.SystemV2IDType, "code": "MR"}}}})
	linked, _ := json.Marshal(doc)
	sc := auditlog.NewScope("update", &auth.Principal{ClientID: "admin", Scopes: auth.ParseScopes("system/*.cruds")})
	if _, err := g.a.Engine.Update(context.Background(), sc, "Patient", cur.ID, func() ([]byte, error) { return linked, nil }, engine.Preconditions{}); err != nil {
		t.Fatal(err)
	}
	send("A-4", "MRN-4", "")
	_, p = patient()
	var values []string
	for _, i := range p.Identifier {
		values = append(values, i.Value)
	}
	if got := strings.Join(values, " "); got != "P-1 MRN-4 OTHER-9" {
		t.Errorf("after the MRN changed beside a linked MRN of another hospital: identifiers %q, want P-1 MRN-4 OTHER-9", got)
	}
	if n := g.count(t, "", "Patient", ""); n != 1 {
		t.Errorf("%d Patients, want 1", n)
	}
}

// TestIdentityConcurrent: records with one MRN and different clinic ids
// sent at once: one Patient, every other record refused.
func TestIdentityConcurrent(t *testing.T) {
	g := newGateway(t, app.Config{})
	const n = 8
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			id := string(rune('A' + i))
			errs[i] = g.ingest("", mapping.KindAssessment, rec("A-"+id, "1", "P-"+id, "MRN-1", phq9Body))
		}()
	}
	wg.Wait()
	ok := 0
	for _, err := range errs {
		if err == nil {
			ok++
			continue
		}
		if k, issues := outcome.From(err); k != outcome.Conflict || issues[0].Rule != ingest.RuleIdentityConflict {
			t.Errorf("got %s %+v, want a conflict", k, issues)
		}
	}
	if ok != 1 || g.count(t, "", "Patient", "") != 1 {
		t.Errorf("%d stored, %d Patients; want 1 and 1", ok, g.count(t, "", "Patient", ""))
	}
}

// TestRulesAgainstStoredSession: a record sent on its own is checked
// against its stored session, and a session against the records stored
// before it, in every order.
func TestRulesAgainstStoredSession(t *testing.T) {
	// An adverse event judged against the session's drug: its onset is
	// checked against the infusion's start.
	const causality = `, "causality": "probably-likely"`
	t.Run("adverse event after its session", func(t *testing.T) {
		g := newGateway(t, app.Config{})
		if err := g.ingest("", mapping.KindInfusion, rec("S-1", "1", "P-1", "", infusionBody)); err != nil {
			t.Fatal(err)
		}
		err := g.ingest("", mapping.KindAdverseEvent, rec("AE-1", "1", "P-1", "", aeBody("S-1", "2026-03-01T18:00:00-05:00")+causality))
		wantIssues(t, err, outcome.Unprocessable, "session.time-window", "/onsetAt")
		if n := g.count(t, "", "AdverseEvent", ""); n != 0 {
			t.Errorf("%d AdverseEvents stored, want 0", n)
		}
		if err := g.ingest("", mapping.KindAdverseEvent, rec("AE-1", "2", "P-1", "", aeBody("S-1", "2026-03-02T09:00:00-05:00"))); err != nil {
			t.Errorf("onset at the start: %v", err)
		}
		err = g.ingest("", mapping.KindAdverseEvent, rec("AE-2", "1", "P-2", "", aeBody("S-1", "2026-03-02T09:30:00-05:00")))
		wantIssues(t, err, outcome.Unprocessable, "session.patient-mismatch", "/sessionId")
		err = g.ingest("", mapping.KindVitals, rec("V-1", "1", "P-1", "",
			`"sessionId": "S-1", "timepoint": "post-dose-40min", "measuredAt": "2026-03-02T11:00:01-05:00", "heartRate": 80`))
		wantIssues(t, err, outcome.Unprocessable, "session.time-window", "/measuredAt")
		// A baseline rating up to 2 hours before the infusion belongs to the
		// session; before that it does not.
		err = g.ingest("", mapping.KindAssessment, rec("A-1", "1", "P-1", "",
			`"sessionId": "S-1", "instrument": "MOAA-S", "takenAt": "2026-03-02T06:59:00-05:00", "total": 5`))
		wantIssues(t, err, outcome.Unprocessable, "session.time-window", "/takenAt")
		if err := g.ingest("", mapping.KindAssessment, rec("A-2", "1", "P-1", "",
			`"sessionId": "S-1", "instrument": "MOAA-S", "takenAt": "2026-03-02T08:45:00-05:00", "total": 5`)); err != nil {
			t.Errorf("baseline MOAA/S 15 minutes before the infusion: %v", err)
		}
	})
	t.Run("adverse event before its session", func(t *testing.T) {
		g := newGateway(t, app.Config{})
		if err := g.ingest("", mapping.KindAdverseEvent, rec("AE-1", "1", "P-1", "", aeBody("S-1", "2026-03-02T08:30:00-05:00")+causality)); err != nil {
			t.Fatalf("an adverse event of a session not stored yet: %v", err)
		}
		err := g.ingest("", mapping.KindInfusion, rec("S-1", "1", "P-1", "", infusionBody))
		wantIssues(t, err, outcome.Unprocessable, "session.time-window", "/infusionStart")
		if n := g.count(t, "", "Procedure", ""); n != 0 {
			t.Errorf("%d Procedures stored, want 0", n)
		}
		err = g.ingest("", mapping.KindSession, rec("S-1", "1", "P-1", "", `"infusion": {`+infusionBody+`}`))
		wantIssues(t, err, outcome.Unprocessable, "session.time-window", "/infusion/infusionStart")
		// The adverse event corrected, the session is accepted and linked.
		if err := g.ingest("", mapping.KindAdverseEvent, rec("AE-1", "2", "P-1", "", aeBody("S-1", "2026-03-02T09:30:00-05:00")+causality)); err != nil {
			t.Fatal(err)
		}
		if err := g.ingest("", mapping.KindInfusion, rec("S-1", "1", "P-1", "", infusionBody)); err != nil {
			t.Fatalf("session after a fitting adverse event: %v", err)
		}
		// A later session version may not leave it outside its window.
		later := strings.Replace(infusionBody, "T09:00:00", "T09:45:00", 1)
		later = strings.Replace(later, "T09:40:00", "T10:25:00", 1)
		err = g.ingest("", mapping.KindInfusion, rec("S-1", "2", "P-1", "", later))
		wantIssues(t, err, outcome.Unprocessable, "session.time-window", "/infusionStart")
	})
	t.Run("measurement during the session, then a shorter session", func(t *testing.T) {
		g := newGateway(t, app.Config{})
		if err := g.ingest("", mapping.KindAssessment, rec("A-1", "1", "P-1", "",
			`"sessionId": "S-1", "instrument": "MOAA-S", "takenAt": "2026-03-02T10:30:00-05:00", "total": 5`)); err != nil {
			t.Fatal(err)
		}
		short := strings.Replace(infusionBody, "T11:00:00", "T10:00:00", 1)
		err := g.ingest("", mapping.KindInfusion, rec("S-1", "1", "P-1", "", short))
		wantIssues(t, err, outcome.Unprocessable, "session.time-window", "/monitoringEnd")
		wantNamed(t, err, "assessment record A-1")
		if err := g.ingest("", mapping.KindInfusion, rec("S-1", "1", "P-1", "", infusionBody)); err != nil {
			t.Errorf("session covering the measurement: %v", err)
		}
	})
	t.Run("discharge on its own before the infusion ended", func(t *testing.T) {
		// The same rule whatever the order: a discharge measurement sent on
		// its own against the stored session is checked against the
		// infusion's end, as a session version is checked against it; one
		// accepted before the end blocked every later session version.
		g := newGateway(t, app.Config{})
		if err := g.ingest("", mapping.KindInfusion, rec("S-1", "1", "P-1", "", infusionBody)); err != nil {
			t.Fatal(err)
		}
		discharge := func(at string) string {
			return rec("V-1", "1", "P-1", "", `"sessionId": "S-1", "timepoint": "discharge", "measuredAt": "`+at+`", "heartRate": 80`)
		}
		err := g.ingest("", mapping.KindVitals, discharge("2026-03-02T09:30:00-05:00"))
		wantIssues(t, err, outcome.Unprocessable, "session.time-window", "/measuredAt")
		if err := g.ingest("", mapping.KindVitals, discharge("2026-03-02T09:40:00-05:00")); err != nil {
			t.Fatalf("discharge at the infusion's end: %v", err)
		}
		noted := strings.Replace(infusionBody, `"status"`, `"notes": "typo fixed", "status"`, 1)
		if err := g.ingest("", mapping.KindInfusion, rec("S-1", "2", "P-1", "", noted)); err != nil {
			t.Errorf("a later session version changing only its notes: %v", err)
		}
	})
	t.Run("a discharge stored before the infusion ended, then a session version", func(t *testing.T) {
		// Stored as the gateway stored it before the check above (its mapped
		// Bundle written through the FHIR API): a session version that
		// leaves the infusion's end where it is is not refused for it.
		g := newGateway(t, app.Config{})
		if err := g.ingest("", mapping.KindInfusion, rec("S-1", "1", "P-1", "", infusionBody)); err != nil {
			t.Fatal(err)
		}
		sc := auditlog.NewScope("ingest", &auth.Principal{ClientID: "test"})
		bundle, err := g.a.Ingest.Ingest(context.Background(), sc, mapping.KindVitals, []byte(rec("V-1", "1", "P-1", "",
			`"sessionId": "S-1", "timepoint": "discharge", "measuredAt": "2026-03-02T09:30:00-05:00", "heartRate": 80`)), true, engine.Answer{})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := legacyEngine(g).Bundle(context.Background(), auditlog.NewScope("transaction", &auth.Principal{ClientID: "test", Scopes: auth.ParseScopes("system/*.cruds")}), bundle, engine.Answer{}); err != nil {
			t.Fatal(err)
		}
		noted := strings.Replace(infusionBody, `"status"`, `"notes": "typo fixed", "status"`, 1)
		if err := g.ingest("", mapping.KindInfusion, rec("S-1", "2", "P-1", "", noted)); err != nil {
			t.Errorf("a later session version changing only its notes: %v", err)
		}
		later := strings.Replace(noted, "T09:40:00", "T09:45:00", 1)
		err = g.ingest("", mapping.KindInfusion, rec("S-1", "3", "P-1", "", later))
		wantIssues(t, err, outcome.Unprocessable, "session.time-window", "/infusionEnd")
		wantNamed(t, err, "vitals record V-1")
	})
	t.Run("another patient's record names the session", func(t *testing.T) {
		g := newGateway(t, app.Config{})
		if err := g.ingest("", mapping.KindAdverseEvent, rec("AE-1", "1", "P-2", "", aeBody("S-1", "2026-03-02T09:30:00-05:00"))); err != nil {
			t.Fatal(err)
		}
		err := g.ingest("", mapping.KindInfusion, rec("S-1", "1", "P-1", "", infusionBody))
		wantIssues(t, err, outcome.Unprocessable, "session.patient-mismatch", "/patient/id")
		wantNamed(t, err, "adverse-event record AE-1")
		// Withdrawn, it no longer names the session.
		withdrawn := strings.Replace(rec("AE-1", "2", "P-2", "", aeBody("S-1", "2026-03-02T09:30:00-05:00")),
			`"version": "2"`, `"version": "2", "status": "entered-in-error"`, 1)
		if err := g.ingest("", mapping.KindAdverseEvent, withdrawn); err != nil {
			t.Fatal(err)
		}
		if err := g.ingest("", mapping.KindInfusion, rec("S-1", "1", "P-1", "", infusionBody)); err != nil {
			t.Errorf("session after the withdrawal: %v", err)
		}
	})
	t.Run("a session not done gave no drug", func(t *testing.T) {
		g := newGateway(t, app.Config{})
		notDone := `"drug": "ketamine-iv", "status": "not-done", "statusReason": {"code": "patient-no-show"},
			"scheduledAt": "2026-03-02T09:00:00-05:00"`
		if err := g.ingest("", mapping.KindInfusion, rec("S-1", "1", "P-1", "", notDone)); err != nil {
			t.Fatal(err)
		}
		err := g.ingest("", mapping.KindAdverseEvent, rec("AE-1", "1", "P-1", "", aeBody("S-1", "2026-03-02T09:30:00-05:00")+`, "causality": "certain"`))
		wantIssues(t, err, outcome.Unprocessable, "session.not-given", "/causality")
		err = g.ingest("", mapping.KindAssessment, rec("A-1", "1", "P-1", "",
			`"sessionId": "S-1", "instrument": "MOAA-S", "takenAt": "2026-03-02T09:20:00-05:00", "total": 1`))
		wantIssues(t, err, outcome.Unprocessable, "session.not-given", "/sessionId")
		if err := g.ingest("", mapping.KindAdverseEvent, rec("AE-1", "1", "P-1", "", aeBody("S-1", "2026-03-02T09:30:00-05:00"))); err != nil {
			t.Errorf("an adverse event without causality: %v", err)
		}
		// A given session made not done later, under a stored MOAA/S.
		if err := g.ingest("", mapping.KindAssessment, rec("A-2", "1", "P-1", "",
			`"sessionId": "S-2", "instrument": "MOAA-S", "takenAt": "2026-03-02T09:20:00-05:00", "total": 4`)); err != nil {
			t.Fatal(err)
		}
		if err := g.ingest("", mapping.KindInfusion, rec("S-2", "1", "P-1", "", infusionBody)); err != nil {
			t.Fatal(err)
		}
		err = g.ingest("", mapping.KindInfusion, rec("S-2", "2", "P-1", "", notDone))
		wantIssues(t, err, outcome.Unprocessable, "session.not-given", "/status")
	})
	t.Run("ratings after the infusion of a session without monitoring end", func(t *testing.T) {
		// monitoringEnd is optional: MOAA/S and CADSS are scored during
		// the monitoring after the infusion, which then has no recorded
		// end; they fit up to a day after infusionEnd (the latest
		// monitoringEnd the gateway accepts), and past it the message
		// names the session's fields.
		g := newGateway(t, app.Config{})
		unmonitored := strings.Replace(infusionBody, `,
		"monitoringEnd": "2026-03-02T11:00:00-05:00"`, "", 1)
		if err := g.ingest("", mapping.KindInfusion, rec("S-1", "1", "P-1", "", unmonitored)); err != nil {
			t.Fatal(err)
		}
		moaas := func(id, at string) string {
			return rec(id, "1", "P-1", "", `"sessionId": "S-1", "instrument": "MOAA-S", "takenAt": "`+at+`", "total": 4`)
		}
		if err := g.ingest("", mapping.KindAssessment, moaas("A-1", "2026-03-02T09:50:00-05:00")); err != nil {
			t.Errorf("MOAA/S 10 minutes after the infusion: %v", err)
		}
		err := g.ingest("", mapping.KindAssessment, moaas("A-2", "2026-03-03T09:40:01-05:00"))
		wantIssues(t, err, outcome.Unprocessable, "session.time-window", "/takenAt")
		if _, issues := outcome.From(err); !strings.Contains(issues[0].Message, "infusionEnd") || !strings.Contains(issues[0].Message, "monitoringEnd") {
			t.Errorf("message %q does not name the session's infusionEnd and monitoringEnd", issues[0].Message)
		}
		// The same ratings stored first, then the session without
		// monitoringEnd.
		g = newGateway(t, app.Config{})
		if err := g.ingest("", mapping.KindAssessment, moaas("A-1", "2026-03-02T09:50:00-05:00")); err != nil {
			t.Fatal(err)
		}
		if err := g.ingest("", mapping.KindInfusion, rec("S-1", "1", "P-1", "", unmonitored)); err != nil {
			t.Errorf("session without monitoringEnd after a rating taken 10 minutes after its infusion: %v", err)
		}
	})
	t.Run("a pre-dose adverse event without causality, then the session given", func(t *testing.T) {
		// An event before the dose judged against nothing (a pre-dose
		// hypertension) is accepted for a session cancelled or delayed
		// alike, and does not block correcting the session's status.
		g := newGateway(t, app.Config{})
		notDone := `"drug": "ketamine-iv", "status": "not-done", "statusReason": {"code": "elevated-blood-pressure"},
			"scheduledAt": "2026-03-02T09:00:00-05:00"`
		if err := g.ingest("", mapping.KindInfusion, rec("S-1", "1", "P-1", "", notDone)); err != nil {
			t.Fatal(err)
		}
		if err := g.ingest("", mapping.KindAdverseEvent, rec("AE-1", "1", "P-1", "", aeBody("S-1", "2026-03-02T08:45:00-05:00"))); err != nil {
			t.Fatal(err)
		}
		if err := g.ingest("", mapping.KindInfusion, rec("S-1", "2", "P-1", "", infusionBody)); err != nil {
			t.Errorf("the session corrected to completed under a pre-dose adverse event without causality: %v", err)
		}
		if err := g.ingest("", mapping.KindAdverseEvent, rec("AE-2", "1", "P-1", "", aeBody("S-1", "2026-03-02T08:50:00-05:00"))); err != nil {
			t.Errorf("a pre-dose adverse event without causality of a given session: %v", err)
		}
		err := g.ingest("", mapping.KindAdverseEvent, rec("AE-3", "1", "P-1", "", aeBody("S-1", "2026-03-02T08:50:00-05:00")+`, "causality": "possible"`))
		wantIssues(t, err, outcome.Unprocessable, "session.time-window", "/onsetAt")
	})
	t.Run("a session document's own records are not stored records", func(t *testing.T) {
		g := newGateway(t, app.Config{})
		session := rec("S-1", "1", "P-1", "", `"infusion": {`+infusionBody+`}, "adverseEvents": [{"recordId": "AE-1",
			"event": "nausea", "onsetAt": "2026-03-02T09:30:00-05:00", "severity": "mild", "serious": false}]`)
		if err := g.ingest("", mapping.KindSession, session); err != nil {
			t.Fatal(err)
		}
		// Version 2 moves the adverse event with the session.
		v2 := strings.ReplaceAll(strings.Replace(session, `"version": "1"`, `"version": "2"`, 1), "2026-03-02T", "2026-03-03T")
		if err := g.ingest("", mapping.KindSession, v2); err != nil {
			t.Errorf("session version 2 with its own adverse event moved: %v", err)
		}
	})
}

// TestRecordPatientChanged: a stored record stays about its patient, in
// every shape it can arrive in (docs/records.md, record identity).
func TestRecordPatientChanged(t *testing.T) {
	const vitalsBody = `"timepoint": "other", "timepointText": "check", "measuredAt": "2026-03-02T10:00:00-05:00", "heartRate": 80`
	session := func(id, version, patient string) string {
		return rec(id, version, patient, "", `"infusion": {`+infusionBody+`}, "vitals": [{"recordId": "V-0", `+vitalsBody+
			`}, {"recordId": "V-9", `+vitalsBody+`}], "assessments": [{"recordId": "A-9", `+phq9Body+`}]`)
	}
	withdrawn := func(doc string) string {
		return strings.Replace(doc, `"version": "`, `"status": "entered-in-error", "version": "`, 1)
	}
	for _, tc := range []struct {
		name     string
		stored   []string // kind|document, stored first
		kind     mapping.Kind
		doc      string
		pointers []string
	}{
		{"standalone record, another patient", []string{"assessment|" + rec("A-1", "1", "P-1", "", phq9Body)},
			mapping.KindAssessment, rec("A-1", "2", "P-2", "", phq9Body), []string{"/patient/id"}},
		// Reported before the version label, which a new version would not
		// fix (the version reused is the symptom).
		{"the same version label for another patient", []string{"assessment|" + rec("A-1", "1", "P-1", "", phq9Body)},
			mapping.KindAssessment, rec("A-1", "1", "P-2", "", phq9Body), []string{"/patient/id"}},
		{"withdrawn for another patient", []string{"assessment|" + rec("A-1", "1", "P-1", "", phq9Body)},
			mapping.KindAssessment, withdrawn(rec("A-1", "2", "P-2", "", phq9Body)), []string{"/patient/id"}},
		{"another patient with the first one's MRN is still the identity conflict",
			[]string{"assessment|" + rec("A-1", "1", "P-1", "MRN-1", phq9Body)},
			mapping.KindAssessment, rec("A-1", "2", "P-2", "MRN-1", phq9Body), nil},
		{"a session's nested record sent on its own for another patient", []string{"session|" + session("S-1", "1", "P-1")},
			mapping.KindAssessment, rec("A-9", "2", "P-2", "", phq9Body), []string{"/patient/id"}},
		{"a session nesting another patient's record", []string{"vitals|" + rec("V-9", "1", "P-2", "", vitalsBody)},
			mapping.KindSession, session("S-1", "1", "P-1"), []string{"/patient/id", "/vitals/1/recordId"}},
		{"a session version for another patient", []string{"session|" + session("S-1", "1", "P-1")},
			mapping.KindSession, session("S-1", "2", "P-2"), []string{"/patient/id", "/vitals/0/recordId", "/vitals/1/recordId", "/assessments/0/recordId"}},
		{"an adverse event for another patient", []string{"adverse-event|" + rec("AE-1", "1", "P-1", "", aeBody("S-1", "2026-03-02T09:30:00-05:00"))},
			mapping.KindAdverseEvent, rec("AE-1", "2", "P-2", "", aeBody("S-1", "2026-03-02T09:30:00-05:00")), []string{"/patient/id"}},
		{"a withdrawn adverse event for another patient", []string{"adverse-event|" + rec("AE-1", "1", "P-1", "", aeBody("S-1", "2026-03-02T09:30:00-05:00"))},
			mapping.KindAdverseEvent, withdrawn(rec("AE-1", "2", "P-2", "", aeBody("S-1", "2026-03-02T09:30:00-05:00"))), []string{"/patient/id"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := newGateway(t, app.Config{})
			for _, s := range tc.stored {
				kind, doc, _ := strings.Cut(s, "|")
				if err := g.ingest("", mapping.Kind(kind), doc); err != nil {
					t.Fatal(err)
				}
			}
			patients, observations := g.count(t, "", "Patient", ""), g.count(t, "", "Observation", "")
			err := g.ingest("", tc.kind, tc.doc)
			if tc.pointers == nil {
				wantIssues(t, err, outcome.Conflict, ingest.RuleIdentityConflict, "/patient/id", "/patient/mrn/value")
			} else {
				wantIssues(t, err, outcome.Conflict, ingest.RulePatientChanged, tc.pointers...)
			}
			if n := g.count(t, "", "Patient", ""); n != patients {
				t.Errorf("%d Patients after the refusal, want %d", n, patients)
			}
			if n := g.count(t, "", "Observation", ""); n != observations {
				t.Errorf("%d Observations after the refusal, want %d", n, observations)
			}
			if n := g.count(t, "", "Observation", "_lastUpdated=gt2000-01-01&status=amended,entered-in-error"); n != 0 {
				t.Errorf("%d Observations changed by the refused record", n)
			}
		})
	}
	// The same patient: new versions, withdrawals and a session nesting
	// the patient's own standalone record are accepted.
	g := newGateway(t, app.Config{})
	for i, s := range []struct {
		kind mapping.Kind
		doc  string
	}{
		{mapping.KindAssessment, rec("A-1", "1", "P-1", "MRN-1", phq9Body)},
		{mapping.KindAssessment, rec("A-1", "2", "P-1", "", phq9Body)},
		// (as the session nests it: the same version in both forms)
		{mapping.KindVitals, rec("V-9", "1", "P-1", "", `"sessionId": "S-1", `+vitalsBody)},
		{mapping.KindSession, session("S-1", "1", "P-1")},
		{mapping.KindAssessment, rec("A-9", "2", "P-1", "", phq9Body)},
		{mapping.KindAssessment, withdrawn(rec("A-1", "3", "P-1", "", phq9Body))},
	} {
		if err := g.ingest("", s.kind, s.doc); err != nil {
			t.Errorf("step %d: %v", i, err)
		}
	}
}

// TestRecordVersionStale: a version older than a stored one (its
// source.lastUpdated earlier) is refused, whatever its version label; the
// same version again is still the idempotent re-send.
func TestRecordVersionStale(t *testing.T) {
	at := func(kind mapping.Kind, recordID, version, lastUpdated, body string) func() (mapping.Kind, string) {
		return func() (mapping.Kind, string) {
			doc := rec(recordID, version, "P-1", "", body)
			if lastUpdated != "" {
				doc = strings.Replace(doc, `"version": "`+version+`"`, `"version": "`+version+`", "lastUpdated": "`+lastUpdated+`"`, 1)
			}
			if version == "" {
				doc = strings.Replace(doc, `"version": "", `, "", 1)
			}
			return kind, doc
		}
	}
	withdrawn := func(f func() (mapping.Kind, string)) func() (mapping.Kind, string) {
		return func() (mapping.Kind, string) {
			k, doc := f()
			return k, strings.Replace(doc, `"version": "`, `"status": "entered-in-error", "version": "`, 1)
		}
	}
	const A = mapping.KindAssessment
	const (
		stale  = ingest.RuleVersionStale
		reused = ingest.RuleVersionReused
	)
	otherTotal := strings.Replace(phq9Body, `"total": 6`, `"total": 7`, 1)
	nesting := `"infusion": {` + infusionBody + `}, "assessments": [{"recordId": "A-9", ` + phq9Body + `}]`
	const preDoseEvent = `"event": "hypertension", "onsetAt": "2026-03-02T08:50:00-05:00", "severity": "mild", "serious": false`
	preDoseAE := `"infusion": {` + infusionBody + `}, "adverseEvents": [{"recordId": "AE-9", ` + preDoseEvent + `}]`
	aeStandalone := `"sessionId": "S-4", ` + preDoseEvent
	steps := []struct {
		name             string
		doc              func() (mapping.Kind, string)
		refused, pointer string // rule and pointer; "" stored
	}{
		{"version 5", at(A, "A-1", "5", "2026-03-10T12:00:00Z", phq9Body), "", ""},
		{"version 4, earlier", at(A, "A-1", "4", "2026-03-10T10:00:00Z", phq9Body), stale, "/source/lastUpdated"},
		{"version 1 withdrawing it, earlier", withdrawn(at(A, "A-1", "1", "2026-03-10T10:00:00Z", phq9Body)), stale, "/source/lastUpdated"},
		{"version 5 again", at(A, "A-1", "5", "2026-03-10T12:00:00Z", phq9Body), "", ""},
		{"version 5 with other content", at(A, "A-1", "5", "2026-03-10T12:00:00Z", otherTotal), reused, "/source/version"},
		{"version 6, as late as 5", at(A, "A-1", "6", "2026-03-10T12:00:00Z", phq9Body), "", ""},
		{"version 7, later in another zone", at(A, "A-1", "7", "2026-03-10T07:30:00-05:00", phq9Body), "", ""},
		{"version 4 again, earlier than 7", at(A, "A-1", "4", "2026-03-10T12:15:00Z", phq9Body), stale, "/source/lastUpdated"},
		{"a version without lastUpdated", at(A, "A-1", "8", "", phq9Body), "", ""},
		{"a version without a label, earlier", at(A, "A-1", "", "2026-03-10T11:00:00Z", phq9Body), stale, "/source/lastUpdated"},
		{"a version without a label", at(A, "A-1", "", "2026-03-10T14:00:00Z", phq9Body), "", ""},
		{"it again with other content", at(A, "A-1", "", "2026-03-10T14:00:00Z", otherTotal), reused, "/source/lastUpdated"},
		// The same instant written otherwise is the same version label.
		{"it again in another zone, other content", at(A, "A-1", "", "2026-03-10T09:00:00-05:00", otherTotal), reused, "/source/lastUpdated"},
		{"it again with milliseconds, other content", at(A, "A-1", "", "2026-03-10T14:00:00.000Z", otherTotal), reused, "/source/lastUpdated"},
		{"it again in another zone, same content: the same version again", at(A, "A-1", "", "2026-03-10T09:00:00-05:00", phq9Body), "", ""},
		{"a version labelled by source.version, same instant", at(A, "A-1", "9", "2026-03-10T14:00:00.000Z", otherTotal), "", ""},
		{"infusion version 2", at(mapping.KindInfusion, "S-1", "2", "2026-03-10T12:00:00Z", infusionBody), "", ""},
		{"its session document, earlier", at(mapping.KindSession, "S-1", "1", "2026-03-10T10:00:00Z", `"infusion": {`+infusionBody+`}`), stale, "/source/lastUpdated"},
		{"its session document, later", at(mapping.KindSession, "S-1", "3", "2026-03-10T13:00:00Z", `"infusion": {`+infusionBody+`}`), "", ""},
		// A record nested in a session is the same record sent on its own.
		{"a session nesting A-9", at(mapping.KindSession, "S-2", "1", "2026-03-10T12:00:00Z", nesting), "", ""},
		{"A-9 on its own, earlier", at(A, "A-9", "1", "2026-03-10T10:00:00Z", phq9Body), stale, "/source/lastUpdated"},
		{"A-9 on its own, later", at(A, "A-9", "2", "2026-03-10T13:00:00Z", phq9Body), "", ""},
		{"the session again, earlier than A-9", at(mapping.KindSession, "S-2", "2", "2026-03-10T12:30:00Z", nesting), stale, "/source/lastUpdated /assessments/0/recordId"},
		// A first session version is refused for the nested record, which
		// the issues name (the session itself was never stored).
		{"a new session nesting A-9, earlier than A-9", at(mapping.KindSession, "S-3", "1", "2026-03-10T12:45:00Z", nesting), stale, "/source/lastUpdated /assessments/0/recordId"},
		{"the session again, later", at(mapping.KindSession, "S-2", "3", "2026-03-10T14:00:00Z", nesting), "", ""},
		{"A-9 on its own, earlier than the session", at(A, "A-9", "3", "2026-03-10T13:30:00Z", phq9Body), stale, "/source/lastUpdated"},
		// An adverse event the drug cannot have caused (it began before
		// the dose) names no suspect: its session is found by the
		// related-session extension (probe p45 F2).
		{"a session nesting AE-9, begun before the dose", at(mapping.KindSession, "S-4", "1", "2026-03-10T12:00:00Z", preDoseAE), "", ""},
		{"AE-9 on its own, earlier", at(mapping.KindAdverseEvent, "AE-9", "2", "2026-03-10T10:00:00Z", aeStandalone), stale, "/source/lastUpdated"},
		{"AE-9 on its own, later", at(mapping.KindAdverseEvent, "AE-9", "3", "2026-03-10T13:00:00Z", aeStandalone), "", ""},
	}
	g := newGateway(t, app.Config{})
	for _, s := range steps {
		kind, doc := s.doc()
		amended := g.count(t, "", "Observation", "status=amended,entered-in-error")
		err := g.ingest("", kind, doc)
		if s.refused == "" {
			if err != nil {
				t.Errorf("%s: %v", s.name, err)
			}
			continue
		}
		wantIssues(t, err, outcome.Conflict, s.refused, strings.Fields(s.pointer)...)
		if n := g.count(t, "", "Observation", "status=amended,entered-in-error"); n != amended {
			t.Errorf("%s: %d Observations amended after the refusal, want %d", s.name, n, amended)
		}
	}
	// Nothing the refused versions said was applied: the record was never
	// withdrawn.
	if n := g.count(t, "", "Observation", "status=entered-in-error"); n != 0 {
		t.Errorf("%d Observations withdrawn by a stale version", n)
	}
}

// TestTenantSafety: a tenant's thresholds apply to its records only.
func TestTenantSafety(t *testing.T) {
	strict := mapping.DefaultSafety()
	strict.HeartRate.CriticalHigh = 100
	g := newGateway(t, app.Config{TenantSafety: map[string]mapping.Safety{"strict": strict}})
	vitals := rec("V-1", "1", "P-1", "", `"timepoint": "other", "timepointText": "check",
		"measuredAt": "2026-03-02T10:00:00-05:00", "heartRate": 105`)
	for _, tenant := range []string{"", "strict"} {
		if err := g.ingest(tenant, mapping.KindVitals, vitals); err != nil {
			t.Fatal(err)
		}
	}
	interp := func(tenant string) string {
		vals, _ := url.ParseQuery("code=8867-4")
		q, _ := search.Parse("Observation", vals, false)
		q.Tenant = tenant
		page, err := g.a.Store.Search(context.Background(), q)
		if err != nil || len(page.Matches) != 1 {
			t.Fatalf("tenant %q: %d heart rates, %v", tenant, len(page.Matches), err)
		}
		var o struct {
			Interpretation []struct{ Coding []struct{ Code string } }
		}
		_ = json.Unmarshal(page.Matches[0].Body, &o)
		if len(o.Interpretation) == 0 {
			return ""
		}
		return o.Interpretation[0].Coding[0].Code
	}
	if got := interp(""); got != "" {
		t.Errorf("default tenant: heart rate 105 is %q, want none", got)
	}
	if got := interp("strict"); got != "HH" {
		t.Errorf("strict tenant: heart rate 105 is %q, want HH", got)
	}
}

// TestRuleIDsCatalogued: the ingest's rule ids are in the validation-rule
// CodeSystem.
func TestRuleIDsCatalogued(t *testing.T) {
	for _, id := range []string{ingest.RuleIdentityConflict, ingest.RulePatientChanged, ingest.RuleInstrumentChanged, ingest.RuleVersionStale, ingest.RuleLastUpdatedFuture, ingest.RuleTimeFuture, "session.time-window", "session.patient-mismatch"} {
		found := false
		for _, r := range mapping.Rules() {
			found = found || r.ID == id
		}
		if !found {
			t.Errorf("rule %s is not in mapping.Rules()", id)
		}
	}
}

// TestSameInstantResent: a record without source.version sent again with
// its source.lastUpdated written otherwise (an offset, milliseconds) and
// nothing else changed is the same version again: the first answer comes
// back and nothing is written; with other content it is
// record-version-reused.
func TestSameInstantResent(t *testing.T) {
	g := newGateway(t, app.Config{})
	send := func(lastUpdated, body string) ([]byte, error) {
		doc := strings.Replace(rec("A-1", "", "P-1", "", body), `"version": ""`, `"lastUpdated": "`+lastUpdated+`"`, 1)
		sc := auditlog.NewScope("ingest", &auth.Principal{ClientID: "test"})
		return g.a.Ingest.Ingest(context.Background(), sc, mapping.KindAssessment, []byte(doc), false, engine.Answer{})
	}
	first, err := send("2026-03-10T12:00:00Z", phq9Body)
	if err != nil {
		t.Fatal(err)
	}
	for _, lu := range []string{"2026-03-10T07:00:00-05:00", "2026-03-10T12:00:00.000Z"} {
		again, err := send(lu, phq9Body)
		if err != nil || !bytes.Equal(again, first) {
			t.Errorf("sent again with lastUpdated %s: %v, answer %s; want the first answer %s", lu, err, again, first)
		}
		_, err = send(lu, strings.Replace(phq9Body, `"total": 6`, `"total": 7`, 1))
		wantIssues(t, err, outcome.Conflict, ingest.RuleVersionReused, "/source/lastUpdated")
	}
	if n := g.count(t, "", "Observation", "status=amended"); n != 0 {
		t.Errorf("%d Observations amended: a resend was applied as a new version", n)
	}
}

// TestSameInstantResentLabelled: a record with a source.version sent again
// with its source.lastUpdated written otherwise (.000Z, +00:00, an offset)
// and nothing else changed is the same version again, as without a label;
// a clinical time written otherwise is other content (it is charted as
// written).
func TestSameInstantResentLabelled(t *testing.T) {
	g := newGateway(t, app.Config{})
	send := func(lastUpdated, body string) ([]byte, error) {
		doc := strings.Replace(rec("A-1", "1", "P-1", "", body), `"version": "1"`, `"version": "1", "lastUpdated": "`+lastUpdated+`"`, 1)
		sc := auditlog.NewScope("ingest", &auth.Principal{ClientID: "test"})
		return g.a.Ingest.Ingest(context.Background(), sc, mapping.KindAssessment, []byte(doc), false, engine.Answer{})
	}
	first, err := send("2026-03-10T14:00:00Z", phq9Body)
	if err != nil {
		t.Fatal(err)
	}
	for _, lu := range []string{"2026-03-10T14:00:00.000Z", "2026-03-10T14:00:00+00:00", "2026-03-10T09:00:00-05:00"} {
		again, err := send(lu, phq9Body)
		if err != nil || !bytes.Equal(again, first) {
			t.Errorf("sent again with lastUpdated %s: %v; want the first answer", lu, err)
		}
	}
	_, err = send("2026-03-10T14:00:00.000Z", strings.Replace(phq9Body, `"total": 6`, `"total": 7`, 1))
	wantIssues(t, err, outcome.Conflict, ingest.RuleVersionReused, "/source/version")
	_, err = send("2026-03-10T14:00:00Z", strings.Replace(phq9Body, "2026-03-02T08:45:00-05:00", "2026-03-02T13:45:00Z", 1))
	wantIssues(t, err, outcome.Conflict, ingest.RuleVersionReused, "/source/version")
	_, err = send("2026-03-10T14:00:01Z", phq9Body)
	wantIssues(t, err, outcome.Conflict, ingest.RuleVersionReused, "/source/version")
	if n := g.count(t, "", "Observation", "status=amended"); n != 0 {
		t.Errorf("%d Observations amended: a resend was applied as a new version", n)
	}
}

// TestDemographicsNotApplied: a later record's patient name, birth date or
// gender that differ from the stored Patient's are not applied (the gateway
// keeps the first record's Patient), and the answer says so with a warning
// per field, never the value; the same ones, or none, say nothing.
func TestDemographicsNotApplied(t *testing.T) {
	g := newGateway(t, app.Config{})
	withPatient := func(recordID, patient string) string {
		return strings.Replace(rec(recordID, "1", "P-1", "", phq9Body), `"patient": {"id": "P-1"}`, `"patient": {"id": "P-1"`+patient+`}`, 1)
	}
	first := `, "name": {"family": "Wrongname"}, "birthDate": "1990-01-01", "gender": "male"`
	for _, tc := range []struct {
		name, doc string
		pointers  []string
	}{
		{"first record", withPatient("A-1", first), nil},
		{"the same demographics", withPatient("A-2", first), nil},
		{"none", withPatient("A-3", ""), nil},
		{"corrected", withPatient("A-4", `, "name": {"family": "Rightname"}, "birthDate": "1991-01-01", "gender": "male"`),
			[]string{"/patient/name", "/patient/birthDate"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sc := auditlog.NewScope("ingest", &auth.Principal{ClientID: "test"})
			answer, err := g.a.Ingest.Ingest(context.Background(), sc, mapping.KindAssessment, []byte(tc.doc), false, engine.Answer{})
			if err != nil {
				t.Fatal(err)
			}
			var b struct {
				Entry []struct {
					Response struct {
						Outcome *struct {
							Issue []struct {
								Severity, Diagnostics string
								Details               struct{ Coding []struct{ Code string } }
								Location              []string
								Expression            []string
							}
						}
					}
				}
			}
			if err := json.Unmarshal(answer, &b); err != nil {
				t.Fatal(err)
			}
			var got []string
			if oo := b.Entry[0].Response.Outcome; oo != nil {
				for _, is := range oo.Issue {
					if is.Severity != "warning" || len(is.Details.Coding) != 1 || is.Details.Coding[0].Code != ingest.RuleDemographicsNotApplied {
						t.Errorf("issue %+v", is)
					}
					got = append(got, strings.Join(is.Location, ","))
				}
			}
			if strings.Join(got, " ") != strings.Join(tc.pointers, " ") {
				t.Errorf("warnings at %q, want %q", got, tc.pointers)
			}
			for _, v := range []string{"Rightname", "1991", "Wrongname", "1990"} {
				if strings.Contains(string(answer), v) {
					t.Errorf("the answer quotes a value %q", v)
				}
			}
		})
	}
}

// TestSessionUpdatesNestedRecords: a session new to the gateway that nests
// a newer version of a record sent on its own before writes that version
// (the record's resources amended, its safety Flag pointing at what it
// says now), and the record sent on its own again with that version is
// the version received; a nested record received on its own with the
// session's version is left as stored (p19 F1).
func TestSessionUpdatesNestedRecords(t *testing.T) {
	g := newGateway(t, app.Config{})
	items := func(item9 int) string {
		var b strings.Builder
		for i := 1; i <= 9; i++ {
			score := 1
			if i == 9 {
				score = item9
			}
			fmt.Fprintf(&b, `{"number": %d, "score": %d},`, i, score)
		}
		return `"instrument": "PHQ-9", "takenAt": "2026-03-02T08:45:00-05:00", "items": [` +
			strings.TrimSuffix(b.String(), ",") + fmt.Sprintf(`], "total": %d`, 8+item9)
	}
	vitals := func(hr int) string {
		return fmt.Sprintf(`"timepoint": "pre-dose", "measuredAt": "2026-03-02T08:50:00-05:00", "heartRate": %d`, hr)
	}
	// On their own first: heart rate 76, PHQ-9 item 9 "not at all";
	// VB-1 with the version the session will have.
	for _, r := range []struct {
		kind mapping.Kind
		doc  string
	}{
		{mapping.KindVitals, rec("VA-1", "1", "P-1", "", `"sessionId": "S-1", `+vitals(76))},
		{mapping.KindAssessment, rec("AQ-1", "1", "P-1", "", `"sessionId": "S-1", `+items(0))},
		{mapping.KindVitals, rec("VB-1", "2", "P-1", "", `"sessionId": "S-1", `+strings.Replace(vitals(70), `"pre-dose"`, `"other", "timepointText": "check"`, 1))},
		{mapping.KindVitals, rec("VC-1", "1", "P-1", "", `"sessionId": "S-1", `+strings.Replace(vitals(72), `"pre-dose"`, `"other", "timepointText": "again"`, 1))},
	} {
		if err := g.ingest("", r.kind, r.doc); err != nil {
			_, issues := outcome.From(err)
			t.Fatalf("%v: %+v", err, issues)
		}
	}
	session := rec("S-1", "2", "P-1", "", `"infusion": {`+infusionBody+`}, "vitals": [{"recordId": "VA-1", `+vitals(90)+
		`}, {"recordId": "VB-1", `+strings.Replace(vitals(70), `"pre-dose"`, `"other", "timepointText": "check"`, 1)+`}, {"recordId": "VC-1", `+strings.Replace(vitals(72), `"pre-dose"`, `"other", "timepointText": "again"`, 1)+
		`}], "assessments": [{"recordId": "AQ-1", `+items(2)+`}]`)
	if err := g.ingest("", mapping.KindSession, session); err != nil {
		t.Fatal(err)
	}
	one := func(typ, identifier string) map[string]any {
		t.Helper()
		q, err := search.Parse(typ, url.Values{"identifier": {"https://ketamine-gateway.org/fhir/sid/serenity-clinic-emr/" + identifier}}, false)
		if err != nil {
			t.Fatal(err)
		}
		page, err := g.a.Store.Search(context.Background(), q)
		if err != nil || len(page.Matches) != 1 {
			t.Fatalf("%s %s: %v, %d matches", typ, identifier, err, len(page.Matches))
		}
		var doc map[string]any
		if err := json.Unmarshal(page.Matches[0].Body, &doc); err != nil {
			t.Fatal(err)
		}
		doc["_id"] = page.Matches[0].ID
		return doc
	}
	value := func(doc map[string]any) any {
		if q, ok := doc["valueQuantity"].(map[string]any); ok {
			return q["value"]
		}
		if c, ok := doc["valueCodeableConcept"].(map[string]any); ok {
			return c["coding"].([]any)[0].(map[string]any)["code"]
		}
		return doc["valueInteger"]
	}
	hr := one("Observation", "vitals|VA-1-8867-4")
	if value(hr) != float64(90) || hr["status"] != "amended" || hr["meta"].(map[string]any)["versionId"] != "2" {
		t.Errorf("heart rate of VA-1 = %v, %v, version %v; want 90, amended, 2", value(hr), hr["status"], hr["meta"].(map[string]any)["versionId"])
	}
	item9 := one("Observation", "assessment|AQ-1-44260-8")
	if value(item9) == "LA6568-5" { // "Not at all"
		t.Errorf("item 9 of AQ-1 still says not at all: %v", item9)
	}
	if total := one("Observation", "assessment|AQ-1-44261-6"); value(total) != float64(10) {
		t.Errorf("PHQ-9 total of AQ-1 = %v, want 10", value(total))
	}
	flag := one("Flag", "assessment|AQ-1-flag-phq9-item9")
	if flag["status"] != "active" || !strings.Contains(fmt.Sprint(flag), "Observation/"+item9["_id"].(string)) {
		t.Errorf("item 9 Flag = %v, want active, at the item 9 Observation", flag)
	}
	// VB-1 was received with the session's version and content, VC-1 with
	// another version and the same content: as stored, nothing amended.
	for _, id := range []string{"VB-1", "VC-1"} {
		if post := one("Observation", "vitals|"+id+"-8867-4"); post["status"] != "final" || post["meta"].(map[string]any)["versionId"] != "1" {
			t.Errorf("%s's heart rate = %v, version %v; want final, 1", id, post["status"], post["meta"].(map[string]any)["versionId"])
		}
	}
	// VA-1 on its own with the session's version and the content it nested:
	// that version was received.
	if err := g.ingest("", mapping.KindVitals, rec("VA-1", "2", "P-1", "", `"sessionId": "S-1", `+vitals(90))); err != nil {
		t.Errorf("VA-1 version 2 on its own: %v", err)
	}
	if hr := one("Observation", "vitals|VA-1-8867-4"); hr["meta"].(map[string]any)["versionId"] != "2" {
		t.Errorf("VA-1 written again: version %v", hr["meta"].(map[string]any)["versionId"])
	}
}

// TestMappingWarnings: what a stored record leaves unknown that a clinician
// must know (an incomplete C-SSRS screener) is a warning issue in the
// answer, at the record's pointer and with the rule, never a value; the
// same record again gets the same answer.
func TestMappingWarnings(t *testing.T) {
	g := newGateway(t, app.Config{})
	screener := `"instrument": "C-SSRS-screener", "takenAt": "2026-03-02T08:45:00-05:00", "items": [{"number": 1, "answer": false}]`
	// A dose given above the plan is charted as given (p25 F5): the
	// MedicationAdministration with its note passes the profiles.
	aboveOrder := `"drug": "ketamine-iv", "status": "stopped-early", "statusReason": {"code": "elevated-blood-pressure"},
		"doseMgPerKg": 0.5, "bodyWeightKg": 92, "totalDoseMg": 46, "infusionStart": "2026-06-02T09:05:00-05:00",
		"infusionEnd": "2026-06-02T09:27:00-05:00", "administeredDoseMg": 47`
	for _, tc := range []struct {
		name string
		kind mapping.Kind
		doc  string
		want string
	}{
		{"incomplete screener", mapping.KindAssessment, rec("A-1", "1", "P-1", "", screener), "warning assessment.cssrs-incomplete /items"},
		{"the same again", mapping.KindAssessment, rec("A-1", "1", "P-1", "", screener), "warning assessment.cssrs-incomplete /items"},
		{"complete screener", mapping.KindAssessment, rec("A-2", "1", "P-1", "", strings.Replace(screener, `false}]`, `false}, {"number": 2, "answer": false}, {"number": 6, "answer": false}]`, 1)), ""},
		{"dose given above the plan", mapping.KindInfusion, rec("S-1", "1", "P-1", "", aboveOrder), "warning infusion.administered-above-plan /administeredDoseMg"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sc := auditlog.NewScope("ingest", &auth.Principal{ClientID: "test"})
			answer, err := g.a.Ingest.Ingest(context.Background(), sc, tc.kind, []byte(tc.doc), false, engine.Answer{})
			if err != nil {
				t.Fatal(err)
			}
			var b struct {
				Entry []struct {
					Response struct {
						Outcome *struct {
							Issue []struct {
								Severity string
								Details  struct{ Coding []struct{ Code string } }
								Location []string
							}
						}
					}
				}
			}
			if err := json.Unmarshal(answer, &b); err != nil {
				t.Fatal(err)
			}
			var got []string
			if oo := b.Entry[0].Response.Outcome; oo != nil {
				for _, is := range oo.Issue {
					code := ""
					if len(is.Details.Coding) == 1 {
						code = is.Details.Coding[0].Code
					}
					got = append(got, is.Severity+" "+code+" "+strings.Join(is.Location, ","))
				}
			}
			if strings.Join(got, "; ") != tc.want {
				t.Errorf("issues %q, want %q", got, tc.want)
			}
		})
	}
}

// TestDemographicsNotHeldSaid: a later record's name for a patient whose
// first record gave none is warned about as a field the gateway's Patient
// does not have, not one that "differs" from what it holds (an EHR
// review); a name that differs is warned as differing.
func TestDemographicsNotHeldSaid(t *testing.T) {
	g := newGateway(t, app.Config{})
	const at = `"timepoint": "pre-dose", "measuredAt": "2026-03-02T08:50:00-05:00", "heartRate": 80`
	named := func(recordID, given string) string {
		return strings.Replace(rec(recordID, "1", "P-DEM", "", at), `"id": "P-DEM"`, `"id": "P-DEM", "name": {"family": "Testpatient", "given": ["`+given+`"]}`, 1)
	}
	if _, err := g.ingestAnswer(t, "", rec("V-D1", "1", "P-DEM", "", at)); err != nil {
		t.Fatal(err)
	}
	warnings, err := g.ingestAnswer(t, "", named("V-D2", "Alex"))
	if err != nil {
		t.Fatal(err)
	}
	if len(warnings) != 1 || !strings.Contains(warnings[0], "has no such field") || strings.Contains(warnings[0], "differs") {
		t.Errorf("a name the gateway's Patient does not have: %v, want it said so", warnings)
	}
}
