package ingest_test

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/app"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/ingest"
	"github.com/ketamine-gateway/ketamine-gateway/mapping"
)

// TestDeliveredPatientStoredMRN: the Patient the EHRs receive is matched
// there (its ifNoneExist) by the clinic identifier or the MRNs the gateway
// holds for the patient, not only the record's: a later record without an
// MRN (allowed: the stored MRN stays) is charted on the hospital's Patient
// found by MRN, not on a second Patient the EHR would make from the clinic
// identifier alone (DECISIONS.md 7). The MRN is escaped as the record's is.
func TestDeliveredPatientStoredMRN(t *testing.T) {
	g := newGateway(t, app.Config{Routes: []ingest.Route{{Name: "ehr", Accepts: func(string, string) bool { return true }}}})
	const clinic = "identifier=https://ketamine-gateway.org/fhir/sid/serenity-clinic-emr/patient|"
	const hosp = "https://hospital.example/mrn|"
	noSystem := func(doc string) string {
		return strings.Replace(doc, `"system": "https://hospital.example/mrn", `, "", 1)
	}
	for _, tc := range []struct {
		name, recordID, doc string
		want                string
	}{
		{"the record's MRN", "A-1", rec("A-1", "1", "P-1", "MRN-1", phq9Body), clinic + "P-1," + hosp + "MRN-1"},
		{"no MRN: the stored one", "A-2", rec("A-2", "1", "P-1", "", phq9Body), clinic + "P-1," + hosp + "MRN-1"},
		{"an MRN without system: the stored one", "A-3", noSystem(rec("A-3", "1", "P-1", "MRN-9", phq9Body)), clinic + "P-1," + hosp + "MRN-1"},
		{"a changed MRN: the new one", "A-4", rec("A-4", "1", "P-1", "MRN-2", phq9Body), clinic + "P-1," + hosp + "MRN-2"},
		{"no MRN after the change", "A-5", rec("A-5", "1", "P-1", "", phq9Body), clinic + "P-1," + hosp + "MRN-2"},
		{"a new patient without MRN", "B-1", rec("B-1", "1", "P-2", "", phq9Body), clinic + "P-2"},
		{"an MRN to escape", "C-1", rec("C-1", "1", "P-3", "77|5,2 x", phq9Body), clinic + "P-3," + hosp + `77%5C|5%5C,2%20x`},
		{"no MRN: the stored one escaped", "C-2", rec("C-2", "1", "P-3", "", phq9Body), clinic + "P-3," + hosp + `77%5C|5%5C,2%20x`},
	} {
		if err := g.ingest("", mapping.KindAssessment, tc.doc); err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		items := g.deliveries(t, "", "serenity-clinic-emr", tc.recordID)
		if len(items) != 1 {
			t.Fatalf("%s: %d deliveries, want 1", tc.name, len(items))
		}
		var b struct {
			Entry []struct {
				Request struct {
					URL         string `json:"url"`
					IfNoneExist string `json:"ifNoneExist"`
				} `json:"request"`
			} `json:"entry"`
		}
		if err := json.Unmarshal(items[0].Payload, &b); err != nil {
			t.Fatal(err)
		}
		if len(b.Entry) == 0 || b.Entry[0].Request.URL != "Patient" {
			t.Fatalf("%s: payload's first entry is not the Patient: %s", tc.name, items[0].Payload)
		}
		if got := b.Entry[0].Request.IfNoneExist; got != tc.want {
			t.Errorf("%s: delivered Patient ifNoneExist = %q, want %q", tc.name, got, tc.want)
		}
	}
}

// TestDeliveredPatientMRNSystems: a destination with MRN systems set
// receives, of the MRNs the gateway holds for a patient, only those of its
// systems, in the Patient's identifiers and in its ifNoneExist, besides the
// clinic identifier: one hospital's EHR never learns another's MRN. A
// destination without the setting receives every MRN (the default); one
// with an empty list none.
func TestDeliveredPatientMRNSystems(t *testing.T) {
	const sysA, sysB = "https://hospital.example/mrn", "https://hospital-b.example/mrn"
	all := func(string, string) bool { return true }
	g := newGateway(t, app.Config{Routes: []ingest.Route{
		{Name: "every-mrn", Accepts: all},
		{Name: "hospital-a", Accepts: all, MRNSystems: []string{sysA}},
		{Name: "hospital-b", Accepts: all, MRNSystems: []string{sysB, "https://unused.example/mrn"}},
		{Name: "registry", Accepts: all, MRNSystems: []string{}},
	}})
	const clinic = "identifier=https://ketamine-gateway.org/fhir/sid/serenity-clinic-emr/patient|P-1"
	const clinicSys = "https://ketamine-gateway.org/fhir/sid/serenity-clinic-emr/patient"
	// A-1 carries hospital A's MRN; A-2 hospital B's, which the stored
	// Patient holds besides A's.
	if err := g.ingest("", mapping.KindAssessment, rec("A-1", "1", "P-1", "MRN-A", phq9Body)); err != nil {
		t.Fatal(err)
	}
	docB := strings.Replace(rec("A-2", "1", "P-1", "MRN-B", phq9Body), sysA, sysB, 1)
	if err := g.ingest("", mapping.KindAssessment, docB); err != nil {
		t.Fatal(err)
	}
	type want struct {
		ifNoneExist string
		identifiers []string // system|value of the delivered Patient's
	}
	for _, tc := range []struct {
		record string
		want   map[string]want
	}{
		{"A-1", map[string]want{
			"every-mrn":  {clinic + "," + sysA + "|MRN-A", []string{clinicSys + "|P-1", sysA + "|MRN-A"}},
			"hospital-a": {clinic + "," + sysA + "|MRN-A", []string{clinicSys + "|P-1", sysA + "|MRN-A"}},
			"hospital-b": {clinic, []string{clinicSys + "|P-1"}},
			"registry":   {clinic, []string{clinicSys + "|P-1"}},
		}},
		{"A-2", map[string]want{
			"every-mrn":  {clinic + "," + sysB + "|MRN-B," + sysA + "|MRN-A", []string{clinicSys + "|P-1", sysB + "|MRN-B"}},
			"hospital-a": {clinic + "," + sysA + "|MRN-A", []string{clinicSys + "|P-1"}},
			"hospital-b": {clinic + "," + sysB + "|MRN-B", []string{clinicSys + "|P-1", sysB + "|MRN-B"}},
			"registry":   {clinic, []string{clinicSys + "|P-1"}},
		}},
	} {
		items := g.deliveries(t, "", "serenity-clinic-emr", tc.record)
		if len(items) != len(tc.want) {
			t.Fatalf("%s: %d deliveries, want %d", tc.record, len(items), len(tc.want))
		}
		for _, it := range items {
			var b struct {
				Entry []struct {
					Resource struct {
						Identifier []struct{ System, Value string } `json:"identifier"`
					} `json:"resource"`
					Request struct {
						URL         string `json:"url"`
						IfNoneExist string `json:"ifNoneExist"`
					} `json:"request"`
				} `json:"entry"`
			}
			if err := json.Unmarshal(it.Payload, &b); err != nil {
				t.Fatal(err)
			}
			if len(b.Entry) == 0 || b.Entry[0].Request.URL != "Patient" {
				t.Fatalf("%s to %s: payload's first entry is not the Patient", tc.record, it.Destination)
			}
			w := tc.want[it.Destination]
			if got := b.Entry[0].Request.IfNoneExist; got != w.ifNoneExist {
				t.Errorf("%s to %s: Patient ifNoneExist = %q, want %q", tc.record, it.Destination, got, w.ifNoneExist)
			}
			var ids []string
			for _, id := range b.Entry[0].Resource.Identifier {
				ids = append(ids, id.System+"|"+id.Value)
			}
			if !slices.Equal(ids, w.identifiers) {
				t.Errorf("%s to %s: Patient identifiers = %q, want %q", tc.record, it.Destination, ids, w.identifiers)
			}
			if n := len(b.Entry); n < 2 {
				t.Errorf("%s to %s: %d entries, want the record's too", tc.record, it.Destination, n)
			}
		}
	}
}
