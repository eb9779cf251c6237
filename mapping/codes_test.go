package mapping_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/ketamine-gateway/ketamine-gateway/mapping"
)

// TestOneDisplayPerCode: a code two rows of the code table share (the same
// LOINC item in two instruments, a SNOMED finding that is an indication
// and an adverse event) has one display, written once (p20 F6: correcting
// one row's display left the other's, and a ValueSet kept whichever it met
// first).
func TestOneDisplayPerCode(t *testing.T) {
	first := map[string]mapping.Concept{}
	for _, c := range mapping.Concepts() {
		sc := c.System + "|" + c.Code
		f, ok := first[sc]
		if !ok {
			first[sc] = c
			continue
		}
		if c.Display != f.Display {
			t.Errorf("%s has display %q in row %s and %q in row %s: write it once, in row %s, and leave Display \"\" in "+
				"row %s (mapping/codes.go)", sc, f.Display, f.Key, c.Display, c.Key, f.Key, c.Key)
		}
	}
}

// TestRuleTextsNameInstruments: the published texts of the rules whose
// bounds are the instruments' (the validation-rule CodeSystem) give every
// instrument's bound from its definition, so a new or changed instrument
// is described without editing them (p20 F5).
func TestRuleTextsNameInstruments(t *testing.T) {
	texts := map[string]string{}
	for _, r := range mapping.Rules() {
		texts[r.ID] = r.Description
	}
	for _, in := range mapping.Instruments() {
		for rule, bound := range map[string]int{"assessment.item-unknown": in.Items, "assessment.score-range": in.MaxScore,
			"assessment.total-range": in.MaxTotal} {
			want := in.Name
			if bound > 0 {
				want = fmt.Sprintf("-%d", bound)
			}
			if !strings.Contains(texts[rule], in.Name) || !strings.Contains(texts[rule], want) {
				t.Errorf("rule %s's text %q does not give %s's bound", rule, texts[rule], in.Name)
			}
		}
	}
}
