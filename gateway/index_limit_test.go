package gateway_test

import (
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/ketamine-gateway/ketamine-gateway/gateway"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/app"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/engine"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/search"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store/sqlite"
)

// wide is a Patient with n names, each a family name: two index entries
// a name (family and name), one for deceased.
func wide(id string, n int) string {
	names := make([]string, n)
	for i := range names {
		names[i] = fmt.Sprintf(`{"family":"w%d"}`, i)
	}
	idm := ""
	if id != "" {
		idm = `"id":"` + id + `",`
	}
	return `{"resourceType":"Patient",` + idm + `"name":[` + strings.Join(names, ",") + `]}`
}

// TestIndexEntriesBounded: a resource with more values to index than
// search.MaxEntries is refused (413 resource-too-many-index-values, at the
// element of the parameter with the most) by create, update, patch and as
// a transaction or batch entry, and the resources of one request together
// may have at most engine.MaxTxEntries; nothing of a refused write is
// stored (an attacker's review: a 14.6 MB Patient of 700,000 names held
// the write lane 36 s and grew the database by 285 MB). One just under the
// bound is stored.
func TestIndexEntriesBounded(t *testing.T) {
	st := tempSQLite(t, sqlite.Options{})
	h := newServer(t, app.Config{Store: st, UpdateCreate: true}, gateway.Config{})
	over := search.MaxEntries/2 + 1
	under := search.MaxEntries/2 - 5 // and _id, _lastUpdated, deceased
	if rec := req(h, "PUT", "/fhir/Patient/under", wide("under", under)); rec.Code != http.StatusCreated {
		t.Fatalf("a Patient of %d names = %d %s, want 201", under, rec.Code, rec.Body)
	}
	const expr = "Patient.name.family"
	for _, tc := range []struct {
		name, method, target, body, expr string
		headers                          []string
	}{
		{"create", "POST", "/fhir/Patient", wide("", over), expr, nil},
		{"update", "PUT", "/fhir/Patient/under", wide("under", over), expr, nil},
		{"update-as-create", "PUT", "/fhir/Patient/wide-new", wide("wide-new", over), expr, nil},
		{"patch", "PATCH", "/fhir/Patient/under", `[{"op":"add","path":"/name/-","value":{"family":"x1"}},` +
			`{"op":"add","path":"/name/-","value":{"family":"x2"}},{"op":"add","path":"/name/-","value":{"family":"x3"}},` +
			`{"op":"add","path":"/name/-","value":{"family":"x4"}}]`, expr, []string{"Content-Type: application/json-patch+json"}},
		{"transaction entry", "POST", "/fhir", txBundle(
			`{"fullUrl":"urn:uuid:6a1b7f36-5b1a-4c4e-9a53-1b0c3c1f0001","resource":{"resourceType":"Patient","name":[{"family":"ok"}]},"request":{"method":"POST","url":"Patient"}}`,
			`{"fullUrl":"urn:uuid:6a1b7f36-5b1a-4c4e-9a53-1b0c3c1f0002","resource":`+wide("", over)+`,"request":{"method":"POST","url":"Patient"}}`),
			"Bundle.entry[1].resource.ofType(Patient).name.family", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			assertIssue(t, req(h, tc.method, tc.target, tc.body, tc.headers...), http.StatusRequestEntityTooLarge,
				"resource-too-many-index-values", tc.expr)
		})
	}
	t.Run("batch entry", func(t *testing.T) {
		rec := req(h, "POST", "/fhir", batchBundle(
			`{"resource":{"resourceType":"Patient","id":"batch-ok","name":[{"family":"ok"}]},"request":{"method":"PUT","url":"Patient/batch-ok"}}`,
			`{"resource":`+wide("", over)+`,"request":{"method":"POST","url":"Patient"}}`))
		if status, rule, expr := batchEntryOutcome(t, rec, 1); !strings.HasPrefix(status, "413") || rule != "resource-too-many-index-values" ||
			expr != "Bundle.entry[1].resource.ofType(Patient).name.family" {
			t.Errorf("batch entry = %s %s %s, want 413 resource-too-many-index-values at the names", status, rule, expr)
		}
		if status, _, _ := batchEntryOutcome(t, rec, 0); !strings.HasPrefix(status, "201") {
			t.Errorf("the batch's other entry = %s, want 201", status)
		}
	})
	t.Run("request total", func(t *testing.T) {
		n := engine.MaxTxEntries/(2*under+1) + 1
		entries := make([]string, n)
		for i := range entries {
			entries[i] = fmt.Sprintf(`{"resource":%s,"request":{"method":"PUT","url":"Patient/total-%d"}}`, wide(fmt.Sprintf("total-%d", i), under), i)
		}
		rec := req(h, "POST", "/fhir", txBundle(entries...))
		assertOutcome(t, rec, http.StatusRequestEntityTooLarge, "request-too-many-index-values", "")
		if rec := req(h, "GET", "/fhir/Patient?_id=total-0&_summary=count", ""); !strings.Contains(rec.Body.String(), `"total":0`) {
			t.Errorf("a refused transaction stored its first entry: %s", rec.Body)
		}
	})
	if rec := req(h, "GET", "/fhir/Patient/under", ""); rec.Header().Get("ETag") != `W/"1"` {
		t.Errorf("after the refused writes: Patient/under at %s, want version 1", rec.Header().Get("ETag"))
	}
	if rec := req(h, "GET", "/fhir/Patient?_summary=count", ""); !strings.Contains(rec.Body.String(), `"total":2`) {
		t.Errorf("Patients after the refused writes: %s, want 2 (under, batch-ok)", rec.Body)
	}
}
