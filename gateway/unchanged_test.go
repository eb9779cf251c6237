package gateway_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestUnchangedUpdate: an update whose result is the current version as it
// stands (meta.versionId and meta.lastUpdated aside) writes no version, as
// HAPI FHIR and Medplum do: a PUT (plain, conditional, a transaction's or a
// batch's entry) or a PATCH answers 200 with the current version (its
// ETag, Last-Modified and body), the history keeps one version, and no
// Provenance names a version that does not exist. Its preconditions are
// still checked first; a change, however small, and a PUT over a deletion
// write a new version.
func TestUnchangedUpdate(t *testing.T) {
	h := fhirServer(t)
	pat := func(id string) string {
		return strings.Replace(patientJSON, `"resourceType":"Patient"`, `"resourceType":"Patient","id":"`+id+`"`, 1)
	}
	jsonPatch := "Content-Type: application/json-patch+json"
	sameGender := `[{"op":"replace","path":"/gender","value":"female"}]`
	entry := func(method, url, resource string) string {
		if resource == "" {
			return `{"request":{"method":"` + method + `","url":"` + url + `"}}`
		}
		return `{"resource":` + resource + `,"request":{"method":"` + method + `","url":"` + url + `"}}`
	}
	for i, tc := range []struct {
		name           string
		method, target string
		body           func(id string) string
		headers        []string
		code           int // of the write
		status         string
		version        int // the current version after the write (1: unchanged)
		outcome        string
	}{
		{name: "PUT the same body", method: "PUT", target: "/fhir/Patient/%s", body: pat, code: 200, version: 1},
		{name: "PUT the same body, keys in another order and the client's meta", method: "PUT", target: "/fhir/Patient/%s",
			body: func(id string) string {
				return `{"gender":"female","birthDate":"1980-02-03","name":[{"given":["Ann"],"family":"Testpatient"}],` +
					`"meta":{"versionId":"7","lastUpdated":"2020-01-01T00:00:00Z"},"id":"` + id + `",` +
					`"identifier":[{"value":"M1","system":"http://hospital.example/mrn"}],"resourceType":"Patient"}`
			}, code: 200, version: 1},
		{name: "PUT the same body with If-Match of the current version", method: "PUT", target: "/fhir/Patient/%s", body: pat,
			headers: []string{`If-Match: W/"1"`}, code: 200, version: 1},
		{name: "PUT the same body with If-Match of another version", method: "PUT", target: "/fhir/Patient/%s", body: pat,
			headers: []string{`If-Match: W/"2"`}, code: 412, version: 1},
		{name: "PUT the same body, Prefer return=OperationOutcome", method: "PUT", target: "/fhir/Patient/%s", body: pat,
			headers: []string{"Prefer: return=OperationOutcome"}, code: 200, version: 1, outcome: "unchanged: Patient/%s version 1"},
		{name: "PUT a changed field", method: "PUT", target: "/fhir/Patient/%s",
			body: func(id string) string { return strings.Replace(pat(id), `"Ann"`, `"Anne"`, 1) }, code: 200, version: 2},
		{name: "PUT a field added", method: "PUT", target: "/fhir/Patient/%s",
			body: func(id string) string { return strings.Replace(pat(id), `"gender"`, `"active":true,"gender"`, 1) }, code: 200, version: 2},
		{name: "conditional PUT of the same body", method: "PUT", target: "/fhir/Patient?_id=%s", body: pat, code: 200, version: 1},
		{name: "PATCH to the value it has", method: "PATCH", target: "/fhir/Patient/%s", body: func(string) string { return sameGender },
			headers: []string{jsonPatch}, code: 200, version: 1},
		{name: "PATCH, Prefer return=OperationOutcome", method: "PATCH", target: "/fhir/Patient/%s",
			body: func(string) string { return sameGender }, headers: []string{jsonPatch, "Prefer: return=OperationOutcome"},
			code: 200, version: 1, outcome: "unchanged: Patient/%s version 1 is already what the patch would store"},
		{name: "PATCH a changed value", method: "PATCH", target: "/fhir/Patient/%s",
			body: func(string) string { return `[{"op":"replace","path":"/gender","value":"male"}]` }, headers: []string{jsonPatch},
			code: 200, version: 2},
		{name: "conditional PATCH to the value it has", method: "PATCH", target: "/fhir/Patient?_id=%s",
			body: func(string) string { return sameGender }, headers: []string{jsonPatch}, code: 200, version: 1},
		{name: "transaction PUT of the same body", method: "POST", target: "/fhir",
			body: func(id string) string { return txBundle(entry("PUT", "Patient/"+id, pat(id))) }, code: 200, status: "200 OK", version: 1},
		{name: "transaction conditional PUT of the same body", method: "POST", target: "/fhir",
			body: func(id string) string { return txBundle(entry("PUT", "Patient?_id="+id, pat(id))) }, code: 200, status: "200 OK", version: 1},
		{name: "transaction PATCH to the value it has", method: "POST", target: "/fhir",
			body: func(id string) string { return txBundle(jsonPatchEntry("Patient/"+id, sameGender)) }, code: 200, status: "200 OK", version: 1},
		{name: "transaction PUT of a changed field", method: "POST", target: "/fhir",
			body: func(id string) string {
				return txBundle(entry("PUT", "Patient/"+id, strings.Replace(pat(id), `"Ann"`, `"Anne"`, 1)))
			}, code: 200, status: "200 OK", version: 2},
		{name: "batch PUT of the same body", method: "POST", target: "/fhir",
			body: func(id string) string { return batchBundle(entry("PUT", "Patient/"+id, pat(id))) }, code: 200, status: "200 OK", version: 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			id := fmt.Sprint("unch-", i)
			first := req(h, "PUT", "/fhir/Patient/"+id, pat(id))
			if first.Code != http.StatusCreated {
				t.Fatalf("create = %d %s", first.Code, first.Body)
			}
			target := tc.target
			if strings.Contains(target, "%s") {
				target = fmt.Sprintf(target, id)
			}
			rec := req(h, tc.method, target, tc.body(id), tc.headers...)
			if rec.Code != tc.code {
				t.Fatalf("%s %s = %d %s, want %d", tc.method, target, rec.Code, rec.Body, tc.code)
			}
			wantTag := fmt.Sprintf(`W/"%d"`, tc.version)
			switch {
			case tc.status != "": // a Bundle: its entry's response
				var b struct {
					Entry []struct {
						Response struct{ Status, Etag, LastModified string }
					}
				}
				if err := json.Unmarshal(rec.Body.Bytes(), &b); err != nil || len(b.Entry) != 1 {
					t.Fatalf("response Bundle: %v %s", err, rec.Body)
				}
				r := b.Entry[0].Response
				if r.Status != tc.status || r.Etag != wantTag {
					t.Errorf("entry response %s %s, want %s %s", r.Status, r.Etag, tc.status, wantTag)
				}
				if tc.version == 1 && r.LastModified != lastUpdated(t, first) {
					t.Errorf("entry lastModified %s, want the current version's %s", r.LastModified, lastUpdated(t, first))
				}
			case rec.Code == 200:
				if got := rec.Header().Get("ETag"); got != wantTag {
					t.Errorf("ETag = %s, want %s", got, wantTag)
				}
				if tc.version == 1 {
					if got, want := rec.Header().Get("Last-Modified"), first.Header().Get("Last-Modified"); got != want {
						t.Errorf("Last-Modified = %s, want the current version's %s", got, want)
					}
					if want := fmt.Sprintf("/fhir/Patient/%s/_history/1", id); !strings.HasSuffix(rec.Header().Get("Location"), want) {
						t.Errorf("Location = %s, want …%s", rec.Header().Get("Location"), want)
					}
				}
				switch {
				case tc.outcome != "":
					if want := fmt.Sprintf(tc.outcome, id); !strings.Contains(rec.Body.String(), want) {
						t.Errorf("outcome %s, want it to say %q", rec.Body, want)
					}
				case tc.version == 1 && rec.Body.String() != first.Body.String():
					t.Errorf("body %s, want the current version's %s", rec.Body, first.Body)
				}
			}
			hist := decode(t, req(h, "GET", "/fhir/Patient/"+id+"/_history", ""))
			if hist["total"] != float64(tc.version) {
				t.Errorf("history total %v, want %d", hist["total"], tc.version)
			}
			if cur := req(h, "GET", "/fhir/Patient/"+id, ""); cur.Header().Get("ETag") != wantTag {
				t.Errorf("read after = %s, want %s", cur.Header().Get("ETag"), wantTag)
			}
			// The Bundles' Provenance names only versions written.
			if tc.method == "POST" {
				prov := decode(t, req(h, "GET", "/fhir/Provenance?target=Patient/"+id, ""))
				want := 0
				if tc.version > 1 {
					want = 1
				}
				if prov["total"] != float64(want) {
					t.Errorf("Provenance naming the Patient: %v, want %d", prov["total"], want)
				}
			}
		})
	}
}

// TestUnchangedUpdateOfDeleted: a PUT of the body a resource had before
// it was deleted brings it back as a new version (201, as any update of a
// deleted resource), not as the deleted version.
func TestUnchangedUpdateOfDeleted(t *testing.T) {
	h := fhirServer(t)
	body := strings.Replace(patientJSON, `"resourceType":"Patient"`, `"resourceType":"Patient","id":"unch-deleted"`, 1)
	if rec := req(h, "PUT", "/fhir/Patient/unch-deleted", body); rec.Code != http.StatusCreated {
		t.Fatalf("create = %d %s", rec.Code, rec.Body)
	}
	if rec := req(h, "DELETE", "/fhir/Patient/unch-deleted", ""); rec.Code != http.StatusNoContent {
		t.Fatalf("delete = %d %s", rec.Code, rec.Body)
	}
	rec := req(h, "PUT", "/fhir/Patient/unch-deleted", body)
	if rec.Code != http.StatusCreated || rec.Header().Get("ETag") != `W/"3"` {
		t.Errorf("PUT over the deletion = %d %s, want 201 W/\"3\"", rec.Code, rec.Header().Get("ETag"))
	}
	if rec := req(h, "GET", "/fhir/Patient/unch-deleted", ""); rec.Code != 200 {
		t.Errorf("read after = %d, want 200", rec.Code)
	}
}

// lastUpdated is the Last-Modified a Bundle entry answers for the version
// rec (a single write's response) answered: its meta.lastUpdated.
func lastUpdated(t *testing.T, rec *httptest.ResponseRecorder) string {
	t.Helper()
	meta, _ := decode(t, rec)["meta"].(map[string]any)
	s, _ := meta["lastUpdated"].(string)
	return s
}

// TestUnchangedUpdateAudited: an update that changes nothing is still an
// update the client made: its AuditEvent (action U, outcome success)
// names the current version it confirmed.
func TestUnchangedUpdateAudited(t *testing.T) {
	h := fhirServer(t)
	body := strings.Replace(patientJSON, `"resourceType":"Patient"`, `"resourceType":"Patient","id":"unch-audit"`, 1)
	for _, want := range []int{http.StatusCreated, http.StatusOK} {
		if rec := req(h, "PUT", "/fhir/Patient/unch-audit", body); rec.Code != want {
			t.Fatalf("PUT = %d %s, want %d", rec.Code, rec.Body, want)
		}
	}
	var b struct {
		Entry []struct {
			Resource struct {
				Action      string
				Outcome     string
				OutcomeDesc string
				Subtype     []struct{ Code string }
				Entity      []struct {
					What struct{ Reference string }
				}
			}
		}
	}
	rec := req(h, "GET", "/fhir/AuditEvent?entity=Patient/unch-audit&_sort=date", "")
	if err := json.Unmarshal(rec.Body.Bytes(), &b); err != nil || len(b.Entry) != 2 {
		t.Fatalf("AuditEvents of the Patient: %v %d %s", err, len(b.Entry), rec.Body)
	}
	ev := b.Entry[1].Resource
	names := false
	for _, e := range ev.Entity {
		names = names || e.What.Reference == "Patient/unch-audit/_history/1"
	}
	if ev.Action != "U" || ev.Outcome != "0" || len(ev.Subtype) == 0 || ev.Subtype[0].Code != "update" || !names ||
		!strings.HasSuffix(ev.OutcomeDesc, "Patient update: unchanged, no version written") {
		t.Errorf("AuditEvent of the unchanged update: action %s, outcome %s %q, subtype %v, entities %v; want U, 0 "+
			"saying unchanged, update, naming Patient/unch-audit/_history/1", ev.Action, ev.Outcome, ev.OutcomeDesc, ev.Subtype, ev.Entity)
	}
}
