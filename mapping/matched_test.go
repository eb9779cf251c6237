package mapping

import (
	"slices"
	"testing"
)

// TestMatchedMRNSystems: the systems DeliverMatching writes into a
// Patient's ifNoneExist are read back, whatever their characters.
func TestMatchedMRNSystems(t *testing.T) {
	for _, tc := range []struct {
		name string
		mrns []MRN
	}{
		{"none", nil},
		{"one", []MRN{{System: "urn:h1", Value: "M1"}}},
		{"escapes", []MRN{{System: `urn:a|b,c\d$e f&g%`, Value: `v,|\$`}, {System: "urn:h2", Value: "x"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := Entry{IfNoneExist: "identifier=https://example.org/sid/patient|P-1"}
			e.DeliverMatching(tc.mrns)
			var want []string
			for _, m := range tc.mrns {
				want = append(want, m.System)
			}
			got, ok := MatchedMRNSystems(e.DeliverCriteria())
			if !ok || !slices.Equal(got, want) {
				t.Errorf("MatchedMRNSystems(%q) = %q, %v; want %q", e.DeliverCriteria(), got, ok, want)
			}
		})
	}
}
