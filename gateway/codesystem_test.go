package gateway_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/ketamine-gateway/ketamine-gateway/gateway"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/app"
)

// TestReadConformanceWithoutStore: without a database the gateway still
// serves its conformance resources.
func TestReadConformanceWithoutStore(t *testing.T) {
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
	// The other conformance resources too.
	for _, path := range []string{"StructureDefinition/kg-vital-signs", "ValueSet/kg-drugs", "ImplementationGuide/ketamine-gateway"} {
		if rec := do(h, http.MethodGet, "/fhir/"+path, "", nil); rec.Code != http.StatusOK || !strings.Contains(rec.Body.String(), `"id":"`+path[strings.IndexByte(path, '/')+1:]+`"`) {
			t.Errorf("GET %s = %d", path, rec.Code)
		}
	}
	assertOutcome(t, do(h, http.MethodGet, "/fhir/Patient/p1", "", nil), http.StatusNotFound, "resource-unknown", "")
}
