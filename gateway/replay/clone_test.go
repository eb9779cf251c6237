package replay

import (
	"encoding/json"
	"testing"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/fhirwire"
)

// TestNumbersKeptExact: a replay writes and sends a mapped decimal with
// its digits (1.50 stays 1.50, not 1.5), or the next replay would find it
// changed.
func TestNumbersKeptExact(t *testing.T) {
	doc := map[string]any{"resourceType": "Observation", "status": "final",
		"valueQuantity": map[string]any{"value": json.Number("1.50")}}
	// As apply makes a correction: a copy of the mapped resource, changed.
	out, err := json.Marshal(corrected("Observation", fhirwire.Copy(doc).(map[string]any)))
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"resourceType":"Observation","status":"corrected","valueQuantity":{"value":1.50}}`; string(out) != want {
		t.Errorf("correction = %s, want %s", out, want)
	}
	if doc["status"] != "final" {
		t.Errorf("the mapped resource was changed too: status %v", doc["status"])
	}
	raw := []byte(`{"resourceType":"Observation","status":"final","valueQuantity":{"value":1.50}}`)
	if got, want := string(remarshal(raw, "Observation")), `{"resourceType":"Observation","status":"corrected","valueQuantity":{"value":1.50}}`; got != want {
		t.Errorf("remarshal = %s, want %s", got, want)
	}
}
