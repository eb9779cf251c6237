package test

import (
	"bytes"
	"context"
	"database/sql"

	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	_ "modernc.org/sqlite"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
)

// TestAuditTrailE2E follows one native record the way an auditor would,
// through the real binary: a clinic request with its own traceparent, an
// EHR that fails once and then accepts; the trace id reaches the EHR on
// every attempt, and the lineage endpoint, the AuditEvents and the
// Provenance tell the whole story. Then the audit chain is verified,
// tampered with, and found broken.
func TestAuditTrailE2E(t *testing.T) {
	ehr := newEHRStub(t)
	ehr.mu.Lock()
	ehr.fail500 = 1
	ehr.mu.Unlock()
	db := filepath.Join(t.TempDir(), "audit.db")
	g := start(t, "--db", db, "--ehr-url", ehr.URL)

	const traceID = "4bf92f3577b34da6a3ce929d0e0e4736"
	body, err := os.ReadFile("../schemas/examples/session/routine-ketamine-iv-session.json")
	if err != nil {
		t.Fatal(err)
	}
	status, hdr, resp := doReq(t, "POST", g.base+"/ingest/session", string(body),
		"traceparent: 00-"+traceID+"-00f067aa0ba902b7-01")
	if status != 200 {
		t.Fatalf("ingest = %d %v", status, resp)
	}
	if tr := hdr.Get("traceresponse"); !strings.Contains(tr, traceID) {
		t.Errorf("traceresponse = %q, want the caller's trace %s", tr, traceID)
	}
	waitDelivered(t, g, 1)

	// The trace continues to the EHR, on the failed and the good attempt.
	ehr.mu.Lock()
	tps := append([]string(nil), ehr.traceparents...)
	ehr.mu.Unlock()
	if len(tps) < 2 {
		t.Fatalf("EHR saw %d transactions, want the failed one and the good one", len(tps))
	}
	for i, tp := range tps {
		if !strings.HasPrefix(tp, "00-"+traceID+"-") {
			t.Errorf("attempt %d traceparent = %q, want trace %s", i+1, tp, traceID)
		}
	}

	// Lineage by trace id and by source record tell the same story.
	for _, q := range []string{"trace=" + traceID, "source=serenity-clinic-emr&record=INF-2026-0310-001",
		"source=serenity-clinic-emr&kind=session&record=INF-2026-0310-001"} {
		status, _, l := doReq(t, "GET", g.base+"/admin/lineage?"+q, "")
		if status != 200 {
			t.Fatalf("lineage?%s = %d %v", q, status, l)
		}
		receipts, _ := l["receipts"].([]any)
		if len(receipts) != 1 {
			t.Fatalf("lineage?%s receipts = %v, want 1", q, l["receipts"])
		}
		rc := receipts[0].(map[string]any)
		if rc["traceId"] != traceID || rc["kind"] != "session" || rc["version"] != "3" || rc["source"] != "serenity-clinic-emr" {
			t.Errorf("receipt = %v", rc)
		}
		if h, _ := rc["contentHash"].(string); !strings.HasPrefix(h, "sha256:") {
			t.Errorf("receipt content hash = %v", rc["contentHash"])
		}
		if res, _ := rc["resources"].([]any); len(res) < 5 || !strings.Contains(res[0].(string), "/_history/") {
			t.Errorf("receipt resources = %v, want versioned references", rc["resources"])
		}
		deliveries, _ := rc["deliveries"].([]any)
		if len(deliveries) != 1 {
			t.Fatalf("deliveries = %v", rc["deliveries"])
		}
		d := deliveries[0].(map[string]any)
		attempts, _ := d["attemptHistory"].([]any)
		if d["status"] != "done" || len(attempts) != 2 {
			t.Fatalf("delivery = %v, want done after 2 attempts", d)
		}
		first := attempts[0].(map[string]any)
		// The EHR's answer summarised (its diagnostics may hold PHI; the
		// delivery read with payload=true shows them, as a disclosure).
		if ans := fmt.Sprint(first["ehrResponse"]); first["httpStatus"] != float64(500) || !strings.Contains(ans, "exception") ||
			strings.Contains(ans, "EHR database busy") {
			t.Errorf("first attempt = %v, want the EHR's 500 and its OperationOutcome summarised", first)
		}
		if attempts[1].(map[string]any)["httpStatus"] != float64(200) {
			t.Errorf("second attempt = %v", attempts[1])
		}
		req, _ := rc["request"].(map[string]any)
		if req == nil || req["interaction"] != "ingest" || req["outcome"] != "0" || req["traceId"] != traceID {
			t.Errorf("receipt request = %v, want the ingest AuditEvent", rc["request"])
		}
	}

	// AuditEvent and Provenance are searchable FHIR resources.
	// The trace's AuditEvents: the ingest's and one for each attempt to
	// send the record to the EHR (the attempts continue the trace).
	_, _, evs := doReq(t, "GET", g.base+"/fhir/AuditEvent?trace-id="+traceID, "")
	var subtypes []string
	for _, e := range list(evs["entry"]) {
		ev := e.(map[string]any)["resource"].(map[string]any)
		subtypes = append(subtypes, fmt.Sprint(ev["subtype"].([]any)[0].(map[string]any)["code"], " ", ev["outcome"]))
	}
	slices.Sort(subtypes) // two may share a millisecond
	if want := []string{"delivery-send 0", "delivery-send 8", "ingest 0"}; !slices.Equal(subtypes, want) {
		t.Errorf("AuditEvent?trace-id = %v, want %v: the ingest and each attempt to send it", subtypes, want)
	}
	_, _, l := doReq(t, "GET", g.base+"/admin/lineage?trace="+traceID, "")
	target := strings.Split(l["receipts"].([]any)[0].(map[string]any)["resources"].([]any)[1].(string), "/_history/")[0]
	_, _, provs := doReq(t, "GET", g.base+"/fhir/Provenance?target="+url.QueryEscape(target), "")
	if n := len(list(provs["entry"])); n != 1 {
		t.Errorf("Provenance?target=%s = %d entries, want 1", target, n)
	}
	_, _, rl := doReq(t, "GET", g.base+"/admin/lineage?resource="+url.QueryEscape(target), "")
	if len(list(rl["receipts"])) != 1 || len(list(rl["accesses"])) == 0 {
		t.Errorf("lineage?resource = %v, want its receipt and the requests that touched it", rl)
	}
	if status, _, _ := doReq(t, "POST", g.base+"/fhir/AuditEvent", `{"resourceType":"AuditEvent"}`); status != 405 {
		t.Errorf("POST AuditEvent = %d, want 405", status)
	}
	_, _, v := doReq(t, "GET", g.base+"/admin/audit/verify", "")
	if v["intact"] != true {
		t.Errorf("audit/verify = %v", v)
	}
	g.stop(t)

	// The CLI verifies the chain: intact, then tampered.
	out, err := exec.Command(binary, "audit", "verify", "--db", db).CombinedOutput()
	if err != nil || !bytes.Contains(out, []byte(`"intact": true`)) {
		t.Fatalf("audit verify on an intact chain: %v\n%s", err, out)
	}
	out, err = exec.Command(binary, "lineage", "--db", db, "--trace", traceID).CombinedOutput()
	if err != nil || !bytes.Contains(out, []byte(`"receipts"`)) {
		t.Fatalf("lineage CLI: %v\n%s", err, out)
	}
	sdb, err := sql.Open("sqlite", "file:"+db+"?_pragma=busy_timeout(10000)")
	if err != nil {
		t.Fatal(err)
	}
	var seq int64
	var id string
	if err := sdb.QueryRowContext(context.Background(),
		`SELECT seq, id FROM audit_chain ORDER BY seq LIMIT 1 OFFSET 2`).Scan(&seq, &id); err != nil {
		t.Fatal(err)
	}
	// The AuditEvent is stored packed (store.PackBody): the tamperer
	// unpacks it, changes its outcome and packs it again.
	var stored []byte
	if err := sdb.QueryRow(`SELECT body FROM resources WHERE type = 'AuditEvent' AND id = ?`, id).Scan(&stored); err != nil {
		t.Fatal(err)
	}
	body, err = store.UnpackBody(stored)
	if err != nil || bytes.Equal(body, stored) {
		t.Fatalf("the stored AuditEvent is not packed (%v): %.40q", err, stored)
	}
	changed := bytes.Replace(body, []byte(`"outcome":"0"`), []byte(`"outcome":"4"`), 1)
	if bytes.Equal(changed, body) {
		changed = bytes.Replace(body, []byte(`"outcome":"8"`), []byte(`"outcome":"0"`), 1) // a failed attempt's
	}
	if bytes.Equal(changed, body) {
		t.Fatalf("AuditEvent %s has no outcome 0 or 8 to change", id)
	}
	if _, err := sdb.Exec(`UPDATE resources SET body = ? WHERE type = 'AuditEvent' AND id = ?`, store.PackBody("AuditEvent", changed), id); err != nil {
		t.Fatal(err)
	}
	sdb.Close()
	out, err = exec.Command(binary, "audit", "verify", "--db", db).CombinedOutput()
	var ee *exec.ExitError
	if !errorsAs(err, &ee) || ee.ExitCode() != 1 || !bytes.Contains(out, []byte(fmt.Sprintf("broken at record %d", seq))) {
		t.Errorf("audit verify after tampering with record %d: %v\n%s", seq, err, out)
	}
}

func list(v any) []any {
	l, _ := v.([]any)
	return l
}
