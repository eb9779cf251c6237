package gateway_test

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/ketamine-gateway/ketamine-gateway/gateway"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/app"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store/sqlite"
)

// assertIssue checks that rec is status with an OperationOutcome whose
// first issue has rule and (when expr is not "") that expression.
func assertIssue(t *testing.T, rec *httptest.ResponseRecorder, status int, rule, expr string) {
	t.Helper()
	assertOutcome(t, rec, status, rule, "")
	var oo outcome
	_ = json.Unmarshal(rec.Body.Bytes(), &oo)
	if expr != "" && (len(oo.Issue[0].Expression) != 1 || oo.Issue[0].Expression[0] != expr) {
		t.Errorf("expression = %v, want [%s]", oo.Issue[0].Expression, expr)
	}
}

// batchEntryOutcome returns the status and first rule of entry i of a
// batch-response.
func batchEntryOutcome(t *testing.T, rec *httptest.ResponseRecorder, i int) (status, rule, expr string) {
	t.Helper()
	if rec.Code != 200 {
		t.Fatalf("batch = %d %s", rec.Code, rec.Body)
	}
	var b struct {
		Entry []struct {
			Response struct {
				Status  string  `json:"status"`
				Outcome outcome `json:"outcome"`
			} `json:"response"`
		} `json:"entry"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &b); err != nil || len(b.Entry) <= i {
		t.Fatalf("batch-response: %v %s", err, rec.Body)
	}
	r := b.Entry[i].Response
	if len(r.Outcome.Issue) > 0 {
		is := r.Outcome.Issue[0]
		if len(is.Details.Coding) > 0 {
			rule = is.Details.Coding[0].Code
		}
		if len(is.Expression) > 0 {
			expr = is.Expression[0]
		}
	}
	return r.Status, rule, expr
}

func batchBundle(entries ...string) string {
	return `{"resourceType":"Bundle","type":"batch","entry":[` + strings.Join(entries, ",") + `]}`
}

// TestSubsettedWriteRefused: a resource tagged SUBSETTED (the copy a read
// with _summary or _elements answers) is refused on create, update and in
// Bundle entries, naming the tag; the stored resource keeps what the copy
// left out. A patch of a resource an earlier build stored with the tag is
// refused the same way, and a whole update without the tag repairs it.
func TestSubsettedWriteRefused(t *testing.T) {
	st := tempSQLite(t, sqlite.Options{})
	h := newServer(t, app.Config{Store: st, UpdateCreate: true}, gateway.Config{})
	whole := `{"resourceType":"Patient","id":"sub-1","name":[{"family":"Whole"}],"gender":"female","birthDate":"1980-02-03"}`
	if rec := req(h, "PUT", "/fhir/Patient/sub-1", whole); rec.Code != http.StatusCreated {
		t.Fatalf("create = %d %s", rec.Code, rec.Body)
	}
	rec := req(h, "GET", "/fhir/Patient/sub-1?_elements=gender", "")
	sub := rec.Body.String()
	if rec.Code != 200 || !strings.Contains(sub, "SUBSETTED") || strings.Contains(sub, "Whole") {
		t.Fatalf("_elements=gender = %d %s", rec.Code, sub)
	}
	summary := req(h, "GET", "/fhir/Patient/sub-1?_summary=true", "").Body.String()
	for _, tc := range []struct {
		name, method, target, body string
		status                     int
		expr                       string
	}{
		{"update with the _elements copy", "PUT", "/fhir/Patient/sub-1", sub, 400, "Patient.meta.tag[0]"},
		{"update with the _summary copy", "PUT", "/fhir/Patient/sub-1", summary, 400, "Patient.meta.tag[0]"},
		{"update with If-Match", "PUT", "/fhir/Patient/sub-1", sub, 400, "Patient.meta.tag[0]"},
		{"create", "POST", "/fhir/Patient", sub, 400, "Patient.meta.tag[0]"},
		{"conditional update", "PUT", "/fhir/Patient?_id=sub-1", sub, 400, "Patient.meta.tag[0]"},
		{"transaction entry", "POST", "/fhir", txBundle(`{"resource":` + sub + `,"request":{"method":"PUT","url":"Patient/sub-1"}}`),
			400, "Bundle.entry[0].resource.ofType(Patient).meta.tag[0]"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var headers []string
			if strings.HasSuffix(tc.name, "If-Match") {
				headers = append(headers, `If-Match: W/"1"`)
			}
			assertIssue(t, req(h, tc.method, tc.target, tc.body, headers...), tc.status, "resource-subsetted", tc.expr)
		})
	}
	t.Run("batch entry", func(t *testing.T) {
		rec := req(h, "POST", "/fhir", batchBundle(`{"resource":`+sub+`,"request":{"method":"PUT","url":"Patient/sub-1"}}`))
		if status, rule, expr := batchEntryOutcome(t, rec, 0); !strings.HasPrefix(status, "400") || rule != "resource-subsetted" ||
			expr != "Bundle.entry[0].resource.ofType(Patient).meta.tag[0]" {
			t.Errorf("batch entry = %s %s %s, want 400 resource-subsetted at the tag", status, rule, expr)
		}
	})
	if rec := req(h, "GET", "/fhir/Patient/sub-1", ""); rec.Header().Get("ETag") != `W/"1"` || !strings.Contains(rec.Body.String(), "Whole") {
		t.Errorf("after the refused writes: %s %s, want version 1 whole", rec.Header().Get("ETag"), rec.Body)
	}

	// A resource an earlier build stored with the tag.
	legacy := map[string]any{"resourceType": "Patient", "id": "sub-legacy", "gender": "male",
		"meta": map[string]any{"tag": []any{map[string]any{"system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue", "code": "SUBSETTED"}}}}
	if err := st.Write(t.Context(), func(tx store.Tx) error {
		r, entries, err := store.NewVersion("Patient", "sub-legacy", 1, legacy, time.Now())
		if err != nil {
			return err
		}
		return tx.Put(r, entries)
	}); err != nil {
		t.Fatal(err)
	}
	assertIssue(t, req(h, "PATCH", "/fhir/Patient/sub-legacy", `[{"op":"replace","path":"/gender","value":"female"}]`,
		"Content-Type: application/json-patch+json"), 400, "resource-subsetted", "Patient.meta.tag[0]")
	if rec := req(h, "PUT", "/fhir/Patient/sub-legacy", `{"resourceType":"Patient","id":"sub-legacy","gender":"female"}`); rec.Code != 200 ||
		strings.Contains(rec.Body.String(), "SUBSETTED") {
		t.Errorf("whole update of the legacy copy = %d %s, want 200 without the tag", rec.Code, rec.Body)
	}
}

// TestDotSegmentIDs: "." and ".." match R4's id pattern but are URL
// dot-segments: no write may create a resource at them.
func TestDotSegmentIDs(t *testing.T) {
	h := fhirServer(t)
	for _, id := range []string{".", ".."} {
		body := `{"resourceType":"Patient","id":"` + id + `"}`
		for _, tc := range []struct {
			name, method, target, body, rule, expr string
		}{
			{"update-as-create", "PUT", "/fhir/Patient/" + id, body, "id-invalid", "Patient.id"},
			{"transaction PUT", "POST", "/fhir", txBundle(`{"resource":` + body + `,"request":{"method":"PUT","url":"Patient/` + id + `"}}`),
				"id-invalid", "Bundle.entry[0].request.url"},
			{"conditional update naming it in _id", "PUT", "/fhir/Patient?_id=" + id, `{"resourceType":"Patient"}`, "search-value-invalid", ""},
			{"conditional update with it in the body", "PUT", "/fhir/Patient?identifier=urn:x|dot", body, "id-invalid", "Patient.id"},
			{"conditional create naming it in _id", "POST", "/fhir/Patient", `{"resourceType":"Patient"}`, "search-value-invalid", ""},
		} {
			t.Run(tc.name+" "+id, func(t *testing.T) {
				var hs []string
				if tc.method == "POST" && tc.target != "/fhir" { // a conditional create's criteria (a PUT refuses If-None-Exist)
					hs = append(hs, "If-None-Exist: _id="+id)
				}
				rec := req(h, tc.method, tc.target, tc.body, hs...)
				assertIssue(t, rec, 400, tc.rule, tc.expr)
			})
		}
		t.Run("batch PUT "+id, func(t *testing.T) {
			rec := req(h, "POST", "/fhir", batchBundle(`{"resource":{"resourceType":"Patient","id":"`+id+`"},"request":{"method":"PUT","url":"Patient/`+id+`"}}`))
			if status, rule, _ := batchEntryOutcome(t, rec, 0); !strings.HasPrefix(status, "400") || rule != "id-invalid" {
				t.Errorf("batch entry = %s %s, want 400 id-invalid", status, rule)
			}
		})
	}
	// A POST's id is ignored (http.html#create), "..", too.
	if rec := req(h, "POST", "/fhir/Patient", `{"resourceType":"Patient","id":".."}`); rec.Code != http.StatusCreated ||
		strings.Contains(rec.Header().Get("Location"), "/..") {
		t.Errorf("create with id .. = %d %s", rec.Code, rec.Header().Get("Location"))
	}
}

// TestWritePreconditions: If-Match, If-None-Match and If-Unmodified-Since
// on PUT, PATCH and DELETE (and ifMatch/ifNoneMatch on Bundle entries) are
// evaluated as RFC 9110 13.2.2 orders them; a false one is 412 and writes
// nothing, a malformed one 400; If-Modified-Since does not apply to
// writes. A deleted resource's ETag (its deletion's version) guards its
// restoring PUT.
func TestWritePreconditions(t *testing.T) {
	h := fhirServer(t)
	old := "Mon, 01 Jan 2001 00:00:00 GMT"
	future := time.Now().Add(48 * time.Hour).UTC().Format(http.TimeFormat)
	patch := `[{"op":"add","path":"/active","value":false}]`
	for i, tc := range []struct {
		name  string
		state string // "absent", "v1" (one version), "deleted" (version 1, deleted as version 2)
		// method and target (%s: the resource's id), body ("" the resource
		// changed, "-" none; a Bundle's {resource} and {id} are replaced)
		method, target, body string
		headers              []string
		status               int
		rule                 string
		// version is the resource's ETag afterwards ("" none: absent or deleted).
		version string
	}{
		{"PUT If-None-Match * over an existing resource", "v1", "PUT", "/fhir/Patient/%s", "", []string{"If-None-Match: *"}, 412, "resource-exists", `W/"1"`},
		{"PUT If-None-Match * creates", "absent", "PUT", "/fhir/Patient/%s", "", []string{"If-None-Match: *"}, 201, "", `W/"1"`},
		{"PUT If-None-Match * restores a deleted resource", "deleted", "PUT", "/fhir/Patient/%s", "", []string{"If-None-Match: *"}, 201, "", `W/"3"`},
		{"PUT If-None-Match naming the current version", "v1", "PUT", "/fhir/Patient/%s", "", []string{`If-None-Match: W/"1"`}, 412, "version-matched", `W/"1"`},
		{"PUT If-None-Match naming it in a list", "v1", "PUT", "/fhir/Patient/%s", "", []string{`If-None-Match: W/"5", "1"`}, 412, "version-matched", `W/"1"`},
		{"PUT If-None-Match naming another version", "v1", "PUT", "/fhir/Patient/%s", "", []string{`If-None-Match: W/"7"`}, 200, "", `W/"2"`},
		{"PUT If-Unmodified-Since before the last update", "v1", "PUT", "/fhir/Patient/%s", "", []string{"If-Unmodified-Since: " + old}, 412, "modified-since", `W/"1"`},
		{"PUT If-Unmodified-Since after the last update", "v1", "PUT", "/fhir/Patient/%s", "", []string{"If-Unmodified-Since: " + future}, 200, "", `W/"2"`},
		{"PUT If-Unmodified-Since of a resource that never existed", "absent", "PUT", "/fhir/Patient/%s", "", []string{"If-Unmodified-Since: " + old}, 201, "", `W/"1"`},
		{"PUT If-Unmodified-Since before a deletion", "deleted", "PUT", "/fhir/Patient/%s", "", []string{"If-Unmodified-Since: " + old}, 412, "modified-since", ""},
		{"PUT If-Match wins over If-Unmodified-Since", "v1", "PUT", "/fhir/Patient/%s", "", []string{`If-Match: W/"1"`, "If-Unmodified-Since: " + old}, 200, "", `W/"2"`},
		{"PUT If-Match and a false If-None-Match", "v1", "PUT", "/fhir/Patient/%s", "", []string{`If-Match: W/"1"`, "If-None-Match: *"}, 412, "resource-exists", `W/"1"`},
		{"PUT If-Modified-Since does not apply to writes", "v1", "PUT", "/fhir/Patient/%s", "", []string{"If-Modified-Since: " + future}, 200, "", `W/"2"`},
		{"PUT malformed If-Unmodified-Since", "v1", "PUT", "/fhir/Patient/%s", "", []string{"If-Unmodified-Since: yesterday"}, 400, "precondition-invalid", `W/"1"`},
		{"PUT malformed If-None-Match", "v1", "PUT", "/fhir/Patient/%s", "", []string{"If-None-Match: abc"}, 400, "precondition-invalid", `W/"1"`},
		{"PUT malformed If-Match", "v1", "PUT", "/fhir/Patient/%s", "", []string{`If-Match: W/"1`}, 400, "precondition-invalid", `W/"1"`},
		// Entity-tags compare as strings (RFC 9110 8.8.3.2), and a bare
		// number is no entity-tag (p43 F1).
		{"PUT If-Match with a leading zero", "v1", "PUT", "/fhir/Patient/%s", "", []string{`If-Match: W/"01"`}, 412, "version-mismatch", `W/"1"`},
		{"PUT If-Match with a sign", "v1", "PUT", "/fhir/Patient/%s", "", []string{`If-Match: W/"+1"`}, 412, "version-mismatch", `W/"1"`},
		{"PUT If-Match a bare number", "v1", "PUT", "/fhir/Patient/%s", "", []string{`If-Match: 1`}, 400, "precondition-invalid", `W/"1"`},
		{"PUT If-None-Match a bare number", "v1", "PUT", "/fhir/Patient/%s", "", []string{`If-None-Match: 1`}, 400, "precondition-invalid", `W/"1"`},
		{"DELETE If-Match with a leading zero", "v1", "DELETE", "/fhir/Patient/%s", "-", []string{`If-Match: "01"`}, 412, "version-mismatch", `W/"1"`},
		{"transaction PUT ifMatch with a leading zero", "v1", "POST", "/fhir", `{"resourceType":"Bundle","type":"transaction","entry":[{"resource":{resource},"request":{"method":"PUT","url":"Patient/{id}","ifMatch":"W/\"01\""}}]}`, nil, 412, "version-mismatch", `W/"1"`},
		{"transaction PUT ifMatch a bare number", "v1", "POST", "/fhir", `{"resourceType":"Bundle","type":"transaction","entry":[{"resource":{resource},"request":{"method":"PUT","url":"Patient/{id}","ifMatch":"1"}}]}`, nil, 400, "precondition-invalid", `W/"1"`},
		{"PATCH If-None-Match *", "v1", "PATCH", "/fhir/Patient/%s", patch, []string{"If-None-Match: *", "Content-Type: application/json-patch+json"}, 412, "resource-exists", `W/"1"`},
		{"PATCH If-Unmodified-Since before the last update", "v1", "PATCH", "/fhir/Patient/%s", patch, []string{"If-Unmodified-Since: " + old, "Content-Type: application/json-patch+json"}, 412, "modified-since", `W/"1"`},
		{"PATCH If-Unmodified-Since after the last update", "v1", "PATCH", "/fhir/Patient/%s", patch, []string{"If-Unmodified-Since: " + future, "Content-Type: application/json-patch+json"}, 200, "", `W/"2"`},
		{"conditional PATCH If-None-Match naming the match's version", "v1", "PATCH", "/fhir/Patient?_id=%s", patch, []string{`If-None-Match: W/"1"`, "Content-Type: application/json-patch+json"}, 412, "version-matched", `W/"1"`},
		{"DELETE If-None-Match naming the current version", "v1", "DELETE", "/fhir/Patient/%s", "-", []string{`If-None-Match: W/"1"`}, 412, "version-matched", `W/"1"`},
		{"DELETE If-Unmodified-Since before the last update", "v1", "DELETE", "/fhir/Patient/%s", "-", []string{"If-Unmodified-Since: " + old}, 412, "modified-since", `W/"1"`},
		{"conditional update If-None-Match * matching a resource", "v1", "PUT", "/fhir/Patient?identifier=urn:pre|%s", "", []string{"If-None-Match: *"}, 412, "resource-exists", `W/"1"`},
		{"conditional update If-None-Match * matching none", "absent", "PUT", "/fhir/Patient?identifier=urn:pre|%s", "", []string{"If-None-Match: *"}, 201, "", `W/"1"`},
		// A deleted resource's ETag names its deletion (the 410 and the
		// DELETE's 204 carry it): it guards the restoring PUT.
		{"restoring PUT If-Match naming the deletion", "deleted", "PUT", "/fhir/Patient/%s", "", []string{`If-Match: W/"2"`}, 201, "", `W/"3"`},
		{"restoring PUT If-Match naming the version before it", "deleted", "PUT", "/fhir/Patient/%s", "", []string{`If-Match: W/"1"`}, 412, "version-mismatch", ""},
		{"restoring PUT If-Match *", "deleted", "PUT", "/fhir/Patient/%s", "", []string{"If-Match: *"}, 412, "version-mismatch", ""},
		{"PUT If-Match of a resource that never existed", "absent", "PUT", "/fhir/Patient/%s", "", []string{`If-Match: W/"1"`}, 412, "version-mismatch", ""},
		{"DELETE If-Match naming the deletion", "deleted", "DELETE", "/fhir/Patient/%s", "-", []string{`If-Match: W/"2"`}, 204, "", ""},
		// A create makes a new resource, which no precondition names.
		{"POST If-None-Match", "absent", "POST", "/fhir/Patient", "", []string{"If-None-Match: *"}, 400, "precondition-unsupported", ""},
		{"POST If-Match", "absent", "POST", "/fhir/Patient", "", []string{`If-Match: W/"1"`}, 400, "precondition-unsupported", ""},
		{"POST If-Modified-Since does not apply to writes", "absent", "POST", "/fhir/Patient", "", []string{"If-Modified-Since: " + old}, 201, "", ""},
		// If-None-Exist makes a POST a conditional create; on any other
		// write it would guard nothing, so it is refused, not ignored.
		{"PUT If-None-Exist", "v1", "PUT", "/fhir/Patient/%s", "", []string{"If-None-Exist: identifier=urn:pre|x"}, 400, "precondition-unsupported", `W/"1"`},
		{"PUT If-None-Exist creating", "absent", "PUT", "/fhir/Patient/%s", "", []string{"If-None-Exist: identifier=urn:pre|x"}, 400, "precondition-unsupported", ""},
		{"conditional update If-None-Exist", "v1", "PUT", "/fhir/Patient?identifier=urn:pre|%s", "", []string{"If-None-Exist: identifier=urn:pre|x"}, 400, "precondition-unsupported", `W/"1"`},
		{"PATCH If-None-Exist", "v1", "PATCH", "/fhir/Patient/%s", patch, []string{"If-None-Exist: identifier=urn:pre|x", "Content-Type: application/json-patch+json"}, 400, "precondition-unsupported", `W/"1"`},
		{"conditional PATCH If-None-Exist", "v1", "PATCH", "/fhir/Patient?_id=%s", patch, []string{"If-None-Exist: identifier=urn:pre|x", "Content-Type: application/json-patch+json"}, 400, "precondition-unsupported", `W/"1"`},
		{"DELETE If-None-Exist", "v1", "DELETE", "/fhir/Patient/%s", "-", []string{"If-None-Exist: identifier=urn:pre|x"}, 400, "precondition-unsupported", `W/"1"`},
		{"transaction PUT ifNoneExist", "v1", "POST", "/fhir", `{"resourceType":"Bundle","type":"transaction","entry":[{"resource":{resource},"request":{"method":"PUT","url":"Patient/{id}","ifNoneExist":"_id={id}"}}]}`, nil, 400, "bundle-entry-precondition-unsupported", `W/"1"`},
		{"transaction DELETE ifNoneExist", "v1", "POST", "/fhir", `{"resourceType":"Bundle","type":"transaction","entry":[{"request":{"method":"DELETE","url":"Patient/{id}","ifNoneExist":"_id={id}"}}]}`, nil, 400, "bundle-entry-precondition-unsupported", `W/"1"`},
		// Bundle entries: ifMatch and ifNoneMatch guard writes as the headers do.
		{"transaction PUT ifNoneMatch *", "v1", "POST", "/fhir", `{"resourceType":"Bundle","type":"transaction","entry":[{"resource":{resource},"request":{"method":"PUT","url":"Patient/{id}","ifNoneMatch":"*"}}]}`, nil, 412, "resource-exists", `W/"1"`},
		{"transaction PUT ifNoneMatch * creates", "absent", "POST", "/fhir", `{"resourceType":"Bundle","type":"transaction","entry":[{"resource":{resource},"request":{"method":"PUT","url":"Patient/{id}","ifNoneMatch":"*"}}]}`, nil, 200, "", `W/"1"`},
		{"transaction DELETE malformed ifNoneMatch", "v1", "POST", "/fhir", `{"resourceType":"Bundle","type":"transaction","entry":[{"request":{"method":"DELETE","url":"Patient/{id}","ifNoneMatch":"nope"}}]}`, nil, 400, "precondition-invalid", `W/"1"`},
		{"transaction PUT ifModifiedSince", "v1", "POST", "/fhir", `{"resourceType":"Bundle","type":"transaction","entry":[{"resource":{resource},"request":{"method":"PUT","url":"Patient/{id}","ifModifiedSince":"2001-01-01T00:00:00Z"}}]}`, nil, 400, "bundle-entry-precondition-unsupported", `W/"1"`},
		{"transaction POST ifMatch", "absent", "POST", "/fhir", `{"resourceType":"Bundle","type":"transaction","entry":[{"resource":{resource},"request":{"method":"POST","url":"Patient","ifMatch":"W/\"1\""}}]}`, nil, 400, "bundle-entry-precondition-unsupported", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			id := fmt.Sprintf("pre-%d", i)
			resource := `{"resourceType":"Patient","id":"` + id + `","identifier":[{"system":"urn:pre","value":"` + id + `"}]}`
			if tc.state != "absent" {
				if rec := req(h, "PUT", "/fhir/Patient/"+id, resource); rec.Code != 201 {
					t.Fatalf("set-up PUT = %d %s", rec.Code, rec.Body)
				}
			}
			if tc.state == "deleted" {
				if rec := req(h, "DELETE", "/fhir/Patient/"+id, ""); rec.Code != 204 || rec.Header().Get("ETag") != `W/"2"` {
					t.Fatalf("set-up DELETE = %d %s", rec.Code, rec.Header().Get("ETag"))
				}
			}
			target := strings.ReplaceAll(tc.target, "%s", id)
			body := ""
			switch {
			case tc.body == "":
				body = strings.Replace(resource, `"identifier"`, `"active":true,"identifier"`, 1)
			case strings.HasPrefix(tc.body, "{"):
				body = strings.NewReplacer("{resource}", resource, "{id}", id).Replace(tc.body)
			case tc.body != "-":
				body = tc.body
			}
			rec := req(h, tc.method, target, body, tc.headers...)
			switch {
			case tc.rule != "":
				assertOutcome(t, rec, tc.status, tc.rule, "")
			case rec.Code != tc.status:
				t.Fatalf("%s %s = %d %s, want %d", tc.method, target, rec.Code, rec.Body, tc.status)
			case tc.method == "POST" && strings.Contains(tc.body, `"transaction"`) && !strings.Contains(rec.Body.String(), `"status":"201`):
				t.Errorf("transaction-response = %s, want the entry created", rec.Body)
			}
			if tc.state == "deleted" && tc.rule == "version-mismatch" && !strings.Contains(rec.Body.String(), "deleted") {
				t.Errorf("412 for a deleted resource does not say it is deleted: %s", rec.Body)
			}
			read := req(h, "GET", "/fhir/Patient/"+id, "")
			if got := read.Header().Get("ETag"); read.Code == 200 && got != tc.version || read.Code != 200 && tc.version != "" {
				t.Errorf("afterwards: read = %d %s, want version %s", read.Code, got, tc.version)
			}
		})
	}
}

// TestPatchResultBounded: a patch may not make a resource larger than the
// request body limit (what a PUT could send): JSON Patch copies that each
// double the resource are refused at the copy that crosses it, before they
// are made, and a patch that adds a value too large for the stored
// resource (JSON Patch or FHIRPath Patch, single or in a transaction) is
// refused too; the resource stays as it was (p14 F1: a 1.5 KB patch of 18
// copies stored a 30 MB resource).
func TestPatchResultBounded(t *testing.T) {
	const limit = 16 << 10
	st := tempSQLite(t, sqlite.Options{})
	h := newServer(t, app.Config{Store: st, UpdateCreate: true, MaxResourceBytes: limit}, gateway.Config{})
	if rec := req(h, "PUT", "/fhir/Patient/big-1", `{"resourceType":"Patient","id":"big-1","gender":"female"}`); rec.Code != http.StatusCreated {
		t.Fatalf("create = %d %s", rec.Code, rec.Body)
	}
	// copies(n): an extension, then n copies of extension[0] into its own
	// extensions, each doubling it (2^n leaves; valid R4 throughout).
	copies := func(n int) string {
		ops := []string{`{"op":"add","path":"/extension","value":[{"url":"http://example.org/x","extension":[{"url":"http://example.org/y","valueString":"aaaaaaaaaaaaaaaaaaaa"}]}]}`}
		for range n {
			ops = append(ops, `{"op":"copy","from":"/extension/0","path":"/extension/0/extension/-"}`)
		}
		return "[" + strings.Join(ops, ",") + "]"
	}
	big := strings.Repeat("b", limit)
	binary := func(patch string) string {
		return `{"resourceType":"Binary","contentType":"application/json-patch+json","data":"` +
			base64.StdEncoding.EncodeToString([]byte(patch)) + `"}`
	}
	jsonPatch := "Content-Type: application/json-patch+json"
	for _, tc := range []struct {
		name, method, target, body, header string
		expr                               string
	}{
		{"copies doubling the resource", "PATCH", "/fhir/Patient/big-1", copies(12), jsonPatch, "Patch.operation[8]"},
		{"an add of a value too large", "PATCH", "/fhir/Patient/big-1",
			`[{"op":"add","path":"/extension","value":[{"url":"http://example.org/x","valueString":"` + big + `"}]}]`, jsonPatch, "Patch.operation[0]"},
		{"a FHIRPath Patch adding a value too large", "PATCH", "/fhir/Patient/big-1",
			`{"resourceType":"Parameters","parameter":[` + fpAdd("Patient", "extension",
				`{"name":"value","part":[{"name":"url","valueUri":"http://example.org/x"},{"name":"valueString","valueString":"`+big+`"}]}`) + `]}`,
			"Content-Type: application/fhir+json", ""},
		{"copies in a transaction's Binary", "POST", "/fhir",
			txBundle(`{"resource":` + binary(copies(12)) + `,"request":{"method":"PATCH","url":"Patient/big-1"}}`), "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var headers []string
			if tc.header != "" {
				headers = append(headers, tc.header)
			}
			rec := req(h, tc.method, tc.target, tc.body, headers...)
			assertIssue(t, rec, http.StatusRequestEntityTooLarge, "patch-result-too-large", tc.expr)
		})
	}
	if rec := req(h, "GET", "/fhir/Patient/big-1", ""); rec.Header().Get("ETag") != `W/"1"` || strings.Contains(rec.Body.String(), "extension") {
		t.Errorf("after the refused patches: %s %s, want version 1 unchanged", rec.Header().Get("ETag"), rec.Body)
	}
	// A patch that stays under the limit, removing what it copied too.
	ok := strings.TrimSuffix(copies(5), "]") + `,{"op":"remove","path":"/extension/0/extension/1"}]`
	if rec := req(h, "PATCH", "/fhir/Patient/big-1", ok, jsonPatch); rec.Code != http.StatusOK {
		t.Errorf("a patch under the limit = %d %s, want 200", rec.Code, rec.Body)
	}
}

// fpAdd is a FHIRPath Patch add operation of name at path with the value
// part value.
func fpAdd(path, name, value string) string {
	return `{"name":"operation","part":[{"name":"type","valueCode":"add"},{"name":"path","valueString":"` + path +
		`"},{"name":"name","valueString":"` + name + `"},` + value + `]}`
}

// TestBatchRepeatedKeys: a key repeated outside the entries' resources of
// a batch (an entry's request given twice, its method twice, its
// resource twice) refuses the batch, as it refuses a transaction, with
// nothing done: decoded, the last one won, and a proxy keeping the first
// logged a GET while the gateway ran a DELETE (an attacker's review). One
// inside an entry's resource fails that entry alone.
func TestBatchRepeatedKeys(t *testing.T) {
	h := fhirServer(t)
	if rec := req(h, "PUT", "/fhir/Patient/abc", `{"resourceType":"Patient","id":"abc"}`); rec.Code != 201 {
		t.Fatalf("PUT = %d %s", rec.Code, rec.Body)
	}
	for name, tc := range map[string]struct{ entry, expr string }{
		"request twice":  {`{"request":{"method":"GET","url":"Patient/abc"},"request":{"method":"DELETE","url":"Patient/abc"}}`, "Bundle.entry[0].request"},
		"method twice":   {`{"request":{"method":"GET","method":"DELETE","url":"Patient/abc"}}`, "Bundle.entry[0].request.method"},
		"resource twice": {`{"resource":{"resourceType":"Patient"},"resource":{"resourceType":"Patient","gender":"x"},"request":{"method":"POST","url":"Patient"}}`, "Bundle.entry[0].resource"},
	} {
		for _, typ := range []string{"batch", "transaction"} {
			body := `{"resourceType":"Bundle","type":"` + typ + `","entry":[` + tc.entry + `]}`
			assertIssue(t, req(h, "POST", "/fhir", body), 400, "json-duplicate-key", tc.expr)
			if rec := req(h, "GET", "/fhir/Patient/abc", ""); rec.Code != 200 {
				t.Fatalf("%s %s: Patient/abc = %d after the refusal", name, typ, rec.Code)
			}
		}
	}
	body := `{"resourceType":"Bundle","type":"batch","entry":[{"resource":{"resourceType":"Patient","gender":"male","gender":"female"},` +
		`"request":{"method":"POST","url":"Patient"}},{"request":{"method":"GET","url":"Patient/abc"}}]}`
	rec := req(h, "POST", "/fhir", body)
	if status, rule, _ := batchEntryOutcome(t, rec, 0); !strings.HasPrefix(status, "400") || rule != "json-duplicate-key" {
		t.Errorf("batch entry 0 with a key repeated in its resource = %s %s, want 400 json-duplicate-key", status, rule)
	}
	if status, _, _ := batchEntryOutcome(t, rec, 1); !strings.HasPrefix(status, "200") {
		t.Errorf("batch entry 1 = %s, want 200", status)
	}
}

// TestSubscriptionRefused: the gateway sends no notifications, so it
// stores no Subscription: create, update, delete and a transaction entry
// are refused (405 subscription-unsupported, Allow: GET, HEAD), and the
// capability statement offers no write of the type (a conformance review:
// one was stored "requested" for ever, its writes advertised).
func TestSubscriptionRefused(t *testing.T) {
	h := newServer(t, app.Config{Store: tempSQLite(t, sqlite.Options{}), UpdateCreate: true}, gateway.Config{})
	const sub = `{"resourceType":"Subscription","status":"requested","reason":"r","criteria":"Observation?code=http://loinc.org|8867-4",` +
		`"channel":{"type":"rest-hook","endpoint":"https://ehr.example/hook","payload":"application/fhir+json"}}`
	for _, r := range []struct{ method, path, body string }{
		{"POST", "/fhir/Subscription", sub},
		{"PUT", "/fhir/Subscription/s1", strings.Replace(sub, `{"resourceType":"Subscription",`, `{"resourceType":"Subscription","id":"s1",`, 1)},
		{"DELETE", "/fhir/Subscription/s1", ""},
	} {
		rec := req(h, r.method, r.path, r.body)
		assertOutcome(t, rec, http.StatusMethodNotAllowed, "subscription-unsupported", "")
		if allow := rec.Header().Get("Allow"); allow != "GET, HEAD" {
			t.Errorf("%s %s: Allow %q, want GET, HEAD", r.method, r.path, allow)
		}
	}
	rec := req(h, "POST", "/fhir", txBundle(`{"fullUrl":"urn:uuid:6a1b7f36-5b1a-4c4e-9a53-1b0c3c1f0003","resource":`+sub+
		`,"request":{"method":"POST","url":"Subscription"}}`))
	assertOutcome(t, rec, http.StatusMethodNotAllowed, "subscription-unsupported", "")
	if rec := req(h, "GET", "/fhir/Subscription?_summary=count", ""); !strings.Contains(rec.Body.String(), `"total":0`) {
		t.Errorf("Subscriptions stored: %s", rec.Body)
	}
	var cs struct {
		Rest []struct {
			Resource []struct {
				Type        string
				Interaction []struct{ Code string }
			}
		}
	}
	if err := json.Unmarshal(req(h, "GET", "/fhir/metadata", "").Body.Bytes(), &cs); err != nil || len(cs.Rest) != 1 {
		t.Fatalf("metadata: %v", err)
	}
	for _, r := range cs.Rest[0].Resource {
		if r.Type != "Subscription" {
			continue
		}
		for _, i := range r.Interaction {
			if i.Code == "create" || i.Code == "update" || i.Code == "delete" || i.Code == "patch" {
				t.Errorf("metadata offers Subscription %s", i.Code)
			}
		}
	}
}
