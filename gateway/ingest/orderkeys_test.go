package ingest

import (
	"slices"
	"testing"

	"github.com/ketamine-gateway/ketamine-gateway/mapping"
)

// TestOutboxItemOrderKeys: an item is ordered on every record identity it
// carries (docs/records.md, "Record identity"): a session on its infusion
// and nested records, an infusion on its session (p23 F1).
func TestOutboxItemOrderKeys(t *testing.T) {
	sess := &mapping.Session{
		Vitals:        []mapping.VitalsBody{{RecordID: "VIT-1"}},
		Assessments:   []mapping.AssessmentBody{{RecordID: "ASM-1"}},
		AdverseEvents: []mapping.AdverseEventBody{{RecordID: "AE-1"}},
	}
	for _, tc := range []struct {
		kind mapping.Kind
		rec  mapping.Record
		want []string
	}{
		{mapping.KindSession, sess, []string{"c|session|R", "c|infusion|R", "c|vitals|VIT-1", "c|assessment|ASM-1", "c|adverse-event|AE-1"}},
		{mapping.KindInfusion, &mapping.Infusion{}, []string{"c|infusion|R", "c|session|R"}},
		{mapping.KindVitals, &mapping.Vitals{}, []string{"c|vitals|R"}},
	} {
		t.Run(string(tc.kind), func(t *testing.T) {
			res := &mapping.Result{Kind: tc.kind, Source: mapping.Source{System: "c", RecordID: "R"}}
			it := OutboxItem("ehr", tc.kind, tc.rec, res, "1", nil, "")
			if got := append([]string{it.OrderKey}, it.OrderKeys...); !slices.Equal(got, tc.want) {
				t.Errorf("OutboxItem(%s) keys = %q, want %q", tc.kind, got, tc.want)
			}
		})
	}
}
