package gateway_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/ketamine-gateway/ketamine-gateway/gateway"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/app"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store/sqlite"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store/storetest"
)

// TestGroupCommittedTransactions queues transaction Bundles behind held
// write lanes so that they share one database transaction, some of them
// failing inside it (a version conflict, 412): the store then runs the
// batch again with a savepoint per request (the first run, all together,
// was rolled back). Every Bundle that succeeded is stored whole, its
// Observation's subject resolving to the Patient the same Bundle created
// (references rewritten in the first run must name the resources of the
// run that committed); every Bundle that failed left nothing.
func TestGroupCommittedTransactions(t *testing.T) {
	st := tempSQLite(t, sqlite.Options{})
	s := newServer(t, app.Config{Store: st}, gateway.Config{RateLimit: -1, MaxInFlight: 1024})
	do := func(method, target, body string) *httptest.ResponseRecorder { return req(s, method, target, body) }
	rec := do(http.MethodPost, "/fhir/Patient", `{"resourceType":"Patient"}`)
	if rec.Code != http.StatusCreated {
		t.Fatalf("POST Patient = %d %s", rec.Code, rec.Body)
	}
	_, heldID, _ := strings.Cut(rec.Header().Get("Location"), "Patient/")
	heldID, _, _ = strings.Cut(heldID, "/")
	if heldID == "" {
		t.Fatalf("POST Patient: no id in Location %q", rec.Header().Get("Location"))
	}

	const n = 12
	failing := func(i int) bool { return i%4 == 1 }
	codes := make([]int, n)
	bodies := make([]string, n)
	storetest.QueuedTogether(t, st, n, func(i int) {
		extra := ""
		if failing(i) {
			extra = fmt.Sprintf(`,{"resource":{"resourceType":"Patient","id":%q,"active":true},
					"request":{"method":"PUT","url":"Patient/%s","ifMatch":"W/\"99\""}}`, heldID, heldID)
		}
		bundle := fmt.Sprintf(`{"resourceType":"Bundle","type":"transaction","entry":[
				{"fullUrl":"urn:uuid:9c1d5b52-0000-4000-8000-%012d","resource":{"resourceType":"Patient",
					"identifier":[{"system":"urn:gc","value":"p%d"}]},
					"request":{"method":"POST","url":"Patient","ifNoneExist":"identifier=urn:gc|p%d"}},
				{"resource":{"resourceType":"Observation","status":"final","code":{"text":"gc"},
					"subject":{"reference":"urn:uuid:9c1d5b52-0000-4000-8000-%012d"}},
					"request":{"method":"POST","url":"Observation"}}%s]}`, i, i, i, i, extra)
		rec := do(http.MethodPost, "/fhir", bundle)
		codes[i], bodies[i] = rec.Code, rec.Body.String()
	})

	for i := range n {
		patients := do(http.MethodGet, fmt.Sprintf("/fhir/Patient?identifier=urn:gc|p%d", i), "")
		var set struct {
			Entry []struct {
				Resource struct{ ID string } `json:"resource"`
			} `json:"entry"`
		}
		if err := json.Unmarshal(patients.Body.Bytes(), &set); err != nil {
			t.Fatalf("search: %v %s", err, patients.Body)
		}
		if failing(i) {
			if codes[i] != http.StatusPreconditionFailed {
				t.Errorf("bundle %d = %d %.300s; want 412", i, codes[i], bodies[i])
			}
			if len(set.Entry) != 0 {
				t.Errorf("bundle %d failed but left %d Patients", i, len(set.Entry))
			}
			continue
		}
		if codes[i] != http.StatusOK {
			t.Errorf("bundle %d = %d %.300s; want 200", i, codes[i], bodies[i])
			continue
		}
		if len(set.Entry) != 1 {
			t.Errorf("bundle %d: %d Patients with its identifier, want 1", i, len(set.Entry))
			continue
		}
		var resp struct {
			Entry []struct {
				Response struct{ Location string } `json:"response"`
			} `json:"entry"`
		}
		if err := json.Unmarshal([]byte(bodies[i]), &resp); err != nil || len(resp.Entry) < 2 {
			t.Fatalf("bundle %d response: %v %.300s", i, err, bodies[i])
		}
		loc := resp.Entry[1].Response.Location
		if j := strings.Index(loc, "/_history/"); j > 0 {
			loc = loc[:j]
		}
		obs := do(http.MethodGet, "/fhir/"+loc, "")
		var o struct {
			Subject struct{ Reference string } `json:"subject"`
		}
		if err := json.Unmarshal(obs.Body.Bytes(), &o); err != nil || obs.Code != http.StatusOK {
			t.Fatalf("bundle %d: GET %s = %d %v", i, loc, obs.Code, err)
		}
		if want := "Patient/" + set.Entry[0].Resource.ID; o.Subject.Reference != want {
			t.Errorf("bundle %d: Observation subject %q, want %q (the Patient it created)", i, o.Subject.Reference, want)
		}
	}
}
