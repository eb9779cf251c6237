package engine

import (
	"strings"
	"testing"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/outcome"
)

// TestOutcomeLeavesSharedErrorsAlone: naming a Bundle entry in an error's
// issues must not change the shared *outcome.Error values the engine
// returns (errIDTaken): the second answer would name the entry twice.
func TestOutcomeLeavesSharedErrorsAlone(t *testing.T) {
	for i := 0; i < 2; i++ {
		_, issues := outcome.From(&outcome.EntryError{Index: 3, Err: errIDTaken})
		if got := issues[0].Expression; got != "Bundle.entry[3]" {
			t.Fatalf("outcome.From() #%d expression = %q, want Bundle.entry[3]", i+1, got)
		}
	}
	if errIDTaken.Issues[0].Expression != "" || strings.Contains(errIDTaken.Issues[0].Message, "Bundle entry") {
		t.Errorf("errIDTaken was changed: %+v", errIDTaken.Issues[0])
	}
}
