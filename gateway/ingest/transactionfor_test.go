package ingest_test

import (
	"strings"
	"testing"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/ingest"
	"github.com/ketamine-gateway/ketamine-gateway/mapping"
)

// mappedWithMRN is a vitals record mapped, its Patient carrying the MRN
// MRN-77 of https://hosp.example/mrn, with the resources rendered.
func mappedWithMRN(t *testing.T) (*mapping.Result, [][]byte) {
	t.Helper()
	doc := `{"source":{"system":"clinic","recordId":"V-1","version":"1"},"patient":{"id":"P-1","mrn":{"system":"https://hosp.example/mrn","value":"MRN-77","assigner":"H"}},
		"sessionId":"S-1","timepoint":"pre-dose","recordedAt":"2026-03-10T09:15:00-05:00","heartRate":72}`
	rec, err := mapping.Decode(mapping.KindVitals, []byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	res, err := mapping.Map(rec, mapping.Options{})
	if err != nil {
		t.Fatal(err)
	}
	raws := make([][]byte, len(res.Entries))
	for i, e := range res.Entries {
		if raws[i], err = mapping.MarshalResource(e.Resource); err != nil {
			t.Fatal(err)
		}
	}
	if res.Entries[0].ResourceType != "Patient" || len(res.Entries) < 2 {
		t.Fatalf("mapped %d entries, the first a %s; want a Patient first", len(res.Entries), res.Entries[0].ResourceType)
	}
	return res, raws
}

// TestTransactionForPatientNotFirst: a destination with mrnSystems gets
// no MRN of another system wherever the Patient stands in the Bundle (a
// Result whose first entry is not its Patient once fell back to every
// MRN).
func TestTransactionForPatientNotFirst(t *testing.T) {
	res, raws := mappedWithMRN(t)
	res.Entries[0], res.Entries[1] = res.Entries[1], res.Entries[0]
	raws[0], raws[1] = raws[1], raws[0]
	for _, systems := range [][]string{{}, {"https://other.example/mrn"}} {
		b, err := ingest.TransactionFor(res, raws, systems)
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(b), "MRN-77") {
			t.Errorf("TransactionFor(mrnSystems %q) = %s; want no MRN-77", systems, b)
		}
	}
	b, err := ingest.TransactionFor(res, raws, []string{"https://hosp.example/mrn"})
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(b), "MRN-77"); n != 2 {
		t.Errorf("TransactionFor(its own system) carries MRN-77 %d times, want 2 (identifier, ifNoneExist): %s", n, b)
	}
}

// TestPayloads: each destination's Bundle carries the MRNs of its systems
// only; those sent every MRN the record has share one rendering, a
// destination whose mrnSystems leave none out too (not a rendering of its
// own in the write transaction).
func TestPayloads(t *testing.T) {
	res, raws := mappedWithMRN(t)
	systems := map[string][]string{"b": {}, "d": {"https://hosp.example/mrn"}}
	out, err := ingest.Payloads(res, raws, []string{"a", "b", "c", "d"}, func(d string) []string { return systems[d] })
	if err != nil {
		t.Fatal(err)
	}
	for d, want := range map[string]int{"a": 2, "b": 0, "c": 2, "d": 2} {
		if n := strings.Count(string(out[d]), "MRN-77"); n != want {
			t.Errorf("Payloads()[%s] carries MRN-77 %d times, want %d", d, n, want)
		}
	}
	if &out["a"][0] != &out["c"][0] || &out["a"][0] != &out["d"][0] {
		t.Errorf("Payloads(): the destinations sent every MRN the record has (d: its mrnSystems leave none out) got a rendering each, want one shared")
	}
}
