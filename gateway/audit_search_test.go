package gateway

import (
	"encoding/json"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// TestSearchAuditCounts: a search's AuditEvent says what the answer
// carried, the total when it was counted and the entries on the page, and
// an answer of the count only (_summary=count, _count=0), which has no
// entry to name a patient by, names the patients its criteria name: a
// reference to a Patient (patient, subject, a compartment's), a Patient
// search by _id; a Patient the gateway does not hold is not named
// (finding p16 F1: "0 matches" while 23 matched, and no patient).
func TestSearchAuditCounts(t *testing.T) {
	s, st := auditServer(t)
	if rec := send(s, "POST", "/ingest/assessment", string(exampleDoc(t, "assessment/phq9-moderate.json"))); rec.Code != http.StatusOK {
		t.Fatalf("ingest = %d %s", rec.Code, rec.Body)
	}
	patients := lastAudit(t, st).Patients
	if len(patients) != 1 {
		t.Fatalf("the ingest names patients %v, want one", patients)
	}
	p := patients[0]
	id := strings.TrimPrefix(p, "Patient/")
	total := func(target string) int {
		t.Helper()
		rec := send(s, "GET", strings.Replace(target, "_summary=count", "_summary=false", 1)+"&_count=1000&_total=accurate", "")
		var b struct{ Total int }
		if rec.Code != http.StatusOK || json.Unmarshal(rec.Body.Bytes(), &b) != nil {
			t.Fatalf("GET %s = %d %s", target, rec.Code, rec.Body)
		}
		return b.Total
	}
	obs := total("/fhir/Observation?subject=" + p)
	if obs < 2 {
		t.Fatalf("the patient has %d Observations, want at least 2", obs)
	}
	n := strconv.Itoa(obs)
	tests := []struct {
		target   string
		desc     string
		patients []string
	}{
		{"/fhir/Observation?subject=" + p + "&_summary=count", "Observation search: " + n + " matches in all, the count only (no entries)", patients},
		{"/fhir/Observation?patient=" + p + "&_count=0", "Observation search: " + n + " matches in all, the count only (no entries)", patients},
		{"/fhir/Observation?subject:Patient=" + id + "&_summary=count", "Observation search: " + n + " matches in all, the count only (no entries)", patients},
		{"/fhir/Patient/" + id + "/Observation?_summary=count", "Observation search: " + n + " matches in all, the count only (no entries)", patients},
		{"/fhir/Patient?_id=" + id + "&_summary=count", "Patient search: 1 match in all, the count only (no entries)", patients},
		{"/fhir/Observation?patient=" + p + "&_count=1", "Observation search: " + n + " matches in all, 1 on this page, 0 included, 0 withheld", patients},
		{"/fhir/Observation?patient=" + p + "&_count=1&_total=none", "Observation search: 1 match on this page (total not counted), 0 included, 0 withheld", patients},
		{"/fhir/Observation?subject=Patient/nobody&_summary=count", "Observation search: 0 matches in all, the count only (no entries)", nil},
		{"/fhir/Observation?code=http://loinc.org|44261-6&_summary=count", "", nil},
	}
	for _, tt := range tests {
		t.Run(tt.target, func(t *testing.T) {
			rec := send(s, "GET", tt.target, "")
			if rec.Code != http.StatusOK {
				t.Fatalf("GET %s = %d %s", tt.target, rec.Code, rec.Body)
			}
			got := lastAudit(t, st)
			if want := "HTTP 200 OK: " + tt.desc; tt.desc != "" && got.Desc != want {
				t.Errorf("GET %s: AuditEvent description %q, want %q", tt.target, got.Desc, want)
			}
			if !slices.Equal(got.Patients, tt.patients) {
				t.Errorf("GET %s: AuditEvent names patients %v, want %v", tt.target, got.Patients, tt.patients)
			}
		})
	}
}

// TestAuditAgentByID: an AuditEvent search by agent=<bare id> that finds
// nothing carries an information outcome saying the gateway names its
// clients by identifier (an auditor's review: an empty trail, no word
// why); a typed reference, or another parameter, has no such note.
func TestAuditAgentByID(t *testing.T) {
	s, _ := auditServer(t)
	if rec := send(s, "POST", "/ingest/assessment", string(exampleDoc(t, "assessment/phq9-moderate.json"))); rec.Code != http.StatusOK {
		t.Fatalf("ingest = %d %s", rec.Code, rec.Body)
	}
	search := func(q string) (total int, notes []string) {
		t.Helper()
		rec := send(s, "GET", "/fhir/AuditEvent?"+q, "")
		var b struct {
			Total int
			Entry []struct {
				Search   struct{ Mode string }
				Resource struct {
					Issue []struct {
						Details struct{ Coding []struct{ Code string } }
					}
				}
			}
		}
		if rec.Code != http.StatusOK || json.Unmarshal(rec.Body.Bytes(), &b) != nil {
			t.Fatalf("GET AuditEvent?%s = %d %s", q, rec.Code, rec.Body)
		}
		for _, e := range b.Entry {
			if e.Search.Mode == "outcome" {
				for _, i := range e.Resource.Issue {
					notes = append(notes, i.Details.Coding[0].Code)
				}
			}
		}
		return b.Total, notes
	}
	if n, notes := search("agent=emr-b"); n != 0 || !slices.Contains(notes, "audit-agent-by-identifier") {
		t.Errorf("agent=emr-b: %d found, notes %v; want none found and the note", n, notes)
	}
	if n, notes := search("agent=Practitioner/x,emr-b"); n != 0 || !slices.Contains(notes, "audit-agent-by-identifier") {
		t.Errorf("agent=Practitioner/x,emr-b: %d found, notes %v; want none found and the note", n, notes)
	}
	for _, q := range []string{"agent=Practitioner/x", "agent:identifier=emr-b", "_id=x"} {
		if _, notes := search(q); len(notes) != 0 {
			t.Errorf("%s: notes %v, want none", q, notes)
		}
	}
}
