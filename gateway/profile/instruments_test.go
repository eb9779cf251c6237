package profile

import (
	"strconv"
	"testing"

	"github.com/ketamine-gateway/ketamine-gateway/mapping"
)

// TestValueSetsCoverInstruments: every instrument mapping.Instruments
// defines has its panel, items (and difficulty question) and score in the
// survey ValueSets its profiles bind, with no list of instruments kept
// here (p20 F3: a new instrument missing from such a list drew a
// profile.binding-extensible warning on every resource).
func TestValueSetsCoverInstruments(t *testing.T) {
	byID := map[string]*ValueSet{}
	for _, vs := range valueSets() {
		byID[vs.ID] = vs
	}
	concepts := map[string]mapping.Concept{}
	for _, c := range mapping.Concepts() {
		concepts[c.Key] = c
	}
	want := func(inst, key, vs string) {
		t.Helper()
		c, ok := concepts[key]
		if !ok {
			t.Errorf("instrument %s: no code table row %s (mapping/codes.go)", inst, key)
			return
		}
		if !byID[vs].Contains(c.System, c.Code) {
			t.Errorf("instrument %s: %s (%s|%s) is not in ValueSet %s: gateway/profile/valuesets.go selects the instruments' "+
				"codes from mapping.Instruments()", inst, key, c.System, c.Code, vs)
		}
	}
	for _, in := range mapping.Instruments() {
		if in.Items > 0 {
			want(in.Name, in.Key+".panel", "kg-survey-panel-codes")
		}
		for n := 1; n <= in.Items; n++ {
			want(in.Name, in.Key+"."+strconv.Itoa(n), "kg-survey-item-codes")
		}
		if in.Difficulty != "" {
			want(in.Name, in.Difficulty, "kg-survey-item-codes")
		}
		want(in.Name, in.Key+".total", "kg-survey-score-codes")
	}
}
