package search

import (
	"errors"
	"fmt"
	"reflect"
	"testing"
)

// TestExtractAtMost: without a limit, or within it, ExtractAtMost is
// Extract; past it, a *TooManyEntries naming the parameter with the most
// entries and its element.
func TestExtractAtMost(t *testing.T) {
	names := make([]any, 60)
	for i := range names {
		names[i] = map[string]any{"family": fmt.Sprintf("f%d", i)}
	}
	ids := make([]any, 80)
	for i := range ids {
		ids[i] = map[string]any{"system": "urn:x", "value": fmt.Sprintf("v%d", i)}
	}
	doc := map[string]any{"resourceType": "Patient", "id": "p", "name": names, "identifier": ids, "gender": "female"}
	all := Extract("Patient", doc)
	for _, limit := range []int{0, len(all)} {
		got, err := ExtractAtMost("Patient", doc, limit)
		if err != nil || !reflect.DeepEqual(got, all) {
			t.Errorf("limit %d: %d entries, %v; want Extract's %d", limit, len(got), err, len(all))
		}
	}
	got, err := ExtractAtMost("Patient", doc, len(all)-1)
	var tm *TooManyEntries
	if !errors.As(err, &tm) || got != nil {
		t.Fatalf("limit %d: %d entries, %v; want a *TooManyEntries", len(all)-1, len(got), err)
	}
	if tm.Type != "Patient" || tm.Param != "identifier" || tm.Path != "Patient.identifier" || tm.Limit != len(all)-1 {
		t.Errorf("got %+v, want the identifiers (80 entries) named", tm)
	}
}
