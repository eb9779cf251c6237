package replay_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/replay"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
)

// TestCorrectionPatientMatchesStoredMRN: a correction of a record sent
// without an MRN matches the Patient at the EHR by the MRN the gateway
// holds for the patient too, as the record's own delivery does (p40 F1):
// with the clinic identifier alone, an EHR that holds the patient by MRN
// would make a second Patient.
func TestCorrectionPatientMatchesStoredMRN(t *testing.T) {
	f := newFixture(t)
	withMRN, id := example(t, "vitals/pre-dose-baseline.json", 1)
	var doc map[string]any
	if err := json.Unmarshal(withMRN, &doc); err != nil {
		t.Fatal(err)
	}
	mrn := doc["patient"].(map[string]any)["mrn"].(map[string]any)
	delete(doc["patient"].(map[string]any), "mrn")
	doc["source"].(map[string]any)["recordId"] = id + "-b"
	without, _ := json.Marshal(doc)
	f.ingest(t, "clinic-a", "vitals", withMRN)
	f.ingest(t, "clinic-a", "vitals", without)
	run(t, f.service(heartRateDisplay), replay.Options{Tenant: "clinic-a", Apply: true, Reason: "test"})
	items, err := f.st.Deliveries(context.Background(), store.DeliveryFilter{Tenant: "clinic-a", RecordID: id + "-b", Limit: 100})
	if err != nil {
		t.Fatal(err)
	}
	want := "," + mrn["system"].(string) + "|" + mrn["value"].(string)
	corrections := 0
	for _, it := range items {
		var b struct {
			Entry []struct {
				Request struct{ URL, IfNoneExist string }
			}
		}
		if err := json.Unmarshal(it.Payload, &b); err != nil || len(b.Entry) == 0 || b.Entry[0].Request.URL != "Patient" {
			t.Fatalf("payload %.300s: %v", it.Payload, err)
		}
		if got := b.Entry[0].Request.IfNoneExist; !strings.HasSuffix(got, want) {
			t.Errorf("delivery of version %s: Patient ifNoneExist %q, want it to end in %q", it.Version, got, want)
		}
		corrections++
	}
	if corrections != 2 {
		t.Errorf("%d deliveries of the record without MRN, want the record's and its correction", corrections)
	}
}
