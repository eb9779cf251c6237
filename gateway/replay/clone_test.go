package replay

import (
	"encoding/json"
	"testing"
)

// TestNumbersKeptExact: a replay writes and sends a mapped decimal with
// its digits (1.50 stays 1.50, not 1.5), or the next replay would find it
// changed.
func TestNumbersKeptExact(t *testing.T) {
	doc := map[string]any{"resourceType": "Observation", "status": "final",
		"valueQuantity": map[string]any{"value": json.Number("1.50")}}
	out, err := json.Marshal(clone(doc))
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"resourceType":"Observation","status":"final","valueQuantity":{"value":1.50}}`; string(out) != want {
		t.Errorf("clone = %s, want %s", out, want)
	}
	raw := []byte(`{"resourceType":"Observation","status":"final","valueQuantity":{"value":1.50}}`)
	if got, want := string(remarshal(raw, "Observation")), `{"resourceType":"Observation","status":"corrected","valueQuantity":{"value":1.50}}`; got != want {
		t.Errorf("remarshal = %s, want %s", got, want)
	}
}
