package gateway_test

import (
	"encoding/json"
	"net/http"
	"testing"

	"github.com/ketamine-gateway/ketamine-gateway/gateway"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/app"
)

func TestReadCodeSystem(t *testing.T) {
	h := newServer(t, app.Config{}, gateway.Config{})
	for _, id := range []string{"ketamine-gateway", "validation-rule"} {
		rec := do(h, http.MethodGet, "/fhir/CodeSystem/"+id, "", nil)
		if rec.Code != http.StatusOK {
			t.Fatalf("GET CodeSystem/%s = %d", id, rec.Code)
		}
		var cs struct {
			ResourceType, ID, URL, Status, Content string
			Concept                                []struct{ Code string }
		}
		if err := json.Unmarshal(rec.Body.Bytes(), &cs); err != nil {
			t.Fatal(err)
		}
		if cs.ResourceType != "CodeSystem" || cs.ID != id || cs.Status != "active" || len(cs.Concept) < 10 {
			t.Errorf("CodeSystem/%s = %+v", id, cs)
		}
	}
	assertOutcome(t, do(h, http.MethodGet, "/fhir/CodeSystem/nope", "", nil), http.StatusNotFound, "resource-unknown", "")
}
