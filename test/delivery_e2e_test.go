package test

import (
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// waitDelivered polls the operator API until n deliveries are done.
func waitDelivered(t *testing.T, g *gateway, n int) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		_, _, b := doReq(t, "GET", g.base+"/admin/deliveries?status=done", "")
		if list, _ := b["deliveries"].([]any); len(list) >= n {
			return
		}
		if time.Now().After(deadline) {
			_, _, all := doReq(t, "GET", g.base+"/admin/deliveries", "")
			t.Fatalf("%d deliveries not done in time: %v", n, all)
		}
		time.Sleep(20 * time.Millisecond) // polling the running binary
	}
}

// TestDeliveryExactlyOnceAfterKill: records committed while the EHR is
// down, gateway killed -9 before it could send, restarted: each record is
// delivered, and nothing is duplicated at the EHR.
func TestDeliveryExactlyOnceAfterKill(t *testing.T) {
	ehr := newEHRStub(t)
	ehr.setDown(true)
	db := filepath.Join(t.TempDir(), "deliver.db")
	g := start(t, "--db", db, "--ehr-url", ehr.URL)
	examples, _ := filepath.Glob("../schemas/examples/session/*.json")
	for _, ex := range examples {
		body, _ := os.ReadFile(ex)
		if status, _, resp := doReq(t, "POST", g.base+"/ingest/session", string(body)); status != 200 {
			t.Fatalf("ingest %s = %d %v", ex, status, resp)
		}
	}
	_ = g.Cmd.Process.Signal(syscall.SIGKILL)
	_ = g.Cmd.Wait()

	ehr.setDown(false)
	g2 := start(t, "--db", db, "--ehr-url", ehr.URL)
	waitDelivered(t, g2, len(examples))
	distinct, maxCreates, _ := ehr.stats()
	if maxCreates != 1 || distinct == 0 {
		t.Errorf("EHR holds %d resources, a resource was created %d times; want each exactly once", distinct, maxCreates)
	}
}

// TestDeliveryClaimRecovery: a gateway is killed in the middle of a
// delivery attempt (its claim held, the EHR still working on the request);
// a second gateway on the same database delivers the record once the
// claim's lease has run out: within the documented 30 s lease plus a 5 s
// poll interval (docs/operations.md), not minutes.
func TestDeliveryClaimRecovery(t *testing.T) {
	ehr := newEHRStub(t)
	ehr.mu.Lock()
	ehr.hang = make(chan struct{})
	ehr.mu.Unlock()
	db := filepath.Join(t.TempDir(), "deliver.db")
	g := start(t, "--db", db, "--ehr-url", ehr.URL)
	body, _ := os.ReadFile("../schemas/examples/session/routine-ketamine-iv-session.json")
	if status, _, resp := doReq(t, "POST", g.base+"/ingest/session", string(body)); status != 200 {
		t.Fatalf("ingest = %d %v", status, resp)
	}
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		ehr.mu.Lock()
		hung := ehr.hung
		ehr.mu.Unlock()
		if hung > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the gateway never started its attempt")
		}
	}
	_ = g.Cmd.Process.Signal(syscall.SIGKILL)
	_ = g.Cmd.Wait()
	ehr.mu.Lock()
	close(ehr.hang)
	ehr.hang = nil
	ehr.mu.Unlock()

	restarted := time.Now()
	g2 := start(t, "--db", db, "--ehr-url", ehr.URL)
	waitDelivered(t, g2, 1)
	if took := time.Since(restarted); took > 45*time.Second {
		t.Errorf("the second gateway delivered after %v, want within the 30 s lease and a poll interval", took)
	}
	if _, maxCreates, _ := ehr.stats(); maxCreates != 1 {
		t.Errorf("a resource was created %d times at the EHR, want once", maxCreates)
	}
	// The killed gateway's attempt reached the EHR: the second gateway
	// records it, as interrupted, and audits it before it sends again, so
	// the outbox and the audit trail count both transmissions (p10 F3).
	_, _, list := doReq(t, "GET", g2.base+"/admin/deliveries", "")
	id := list["deliveries"].([]any)[0].(map[string]any)["id"].(string)
	_, _, one := doReq(t, "GET", g2.base+"/admin/deliveries/"+id, "")
	history, _ := one["attemptHistory"].([]any)
	if len(history) != 2 || !strings.HasPrefix(fmt.Sprint(history[0].(map[string]any)["error"]), "interrupted: ") {
		t.Errorf("attempt history = %v, want the interrupted attempt, then the delivery", one["attemptHistory"])
	}
	q := url.Values{"subtype": {"delivery-send"}, "entity:identifier": {"https://ketamine-gateway.org/fhir/sid/delivery|" + id}, "_sort": {"date"}}
	_, _, sent := doReq(t, "GET", g2.base+"/fhir/AuditEvent?"+q.Encode(), "")
	if entries, _ := sent["entry"].([]any); len(entries) != 2 {
		t.Errorf("%d delivery-send AuditEvents, want 2 (the interrupted attempt's and the delivery's)", len(entries))
	}
}

// TestDeliveryAnswerLost: the EHR commits, then the connection drops; the
// re-send creates no duplicate.
func TestDeliveryAnswerLost(t *testing.T) {
	ehr := newEHRStub(t)
	ehr.mu.Lock()
	ehr.dropAfterCommit = true
	ehr.mu.Unlock()
	g := start(t, "--ehr-url", ehr.URL)
	body, _ := os.ReadFile("../schemas/examples/session/routine-ketamine-iv-session.json")
	if status, _, _ := doReq(t, "POST", g.base+"/ingest/session", string(body)); status != 200 {
		t.Fatal(status)
	}
	waitDelivered(t, g, 1)
	distinct, maxCreates, posts := ehr.stats()
	if posts < 2 || maxCreates != 1 {
		t.Errorf("%d sends, a resource created %d times (of %d); want a re-send and no duplicate", posts, maxCreates, distinct)
	}
	_, _, list := doReq(t, "GET", g.base+"/admin/deliveries", "")
	id := list["deliveries"].([]any)[0].(map[string]any)["id"].(string) // the public id
	_, _, one := doReq(t, "GET", g.base+"/admin/deliveries/"+id, "")
	history, _ := one["attemptHistory"].([]any)
	if len(history) < 2 {
		t.Errorf("attempt history = %v, want the failed and the successful attempt", one["attemptHistory"])
	}
	// Every attempt to send the record left an AuditEvent (DICOM Export)
	// naming the delivery, the destination and the record's patient.
	q := url.Values{"subtype": {"delivery-send"}, "entity:identifier": {"https://ketamine-gateway.org/fhir/sid/delivery|" + id}, "_sort": {"date"}}
	_, _, sent := doReq(t, "GET", g.base+"/fhir/AuditEvent?"+q.Encode(), "")
	entries, _ := sent["entry"].([]any)
	var outcomes []string
	for _, e := range entries {
		ev := e.(map[string]any)["resource"].(map[string]any)
		outcomes = append(outcomes, ev["outcome"].(string))
		patients := 0
		for _, en := range ev["entity"].([]any) {
			if ref, _ := en.(map[string]any)["what"].(map[string]any)["reference"].(string); strings.HasPrefix(ref, "Patient/") {
				patients++
			}
		}
		if typ := ev["type"].(map[string]any)["code"]; typ != "110106" || patients != 1 {
			t.Errorf("AuditEvent of a send: type %v, %d patients named; want 110106 Export naming the patient", typ, patients)
		}
	}
	if len(entries) != len(history) || len(outcomes) == 0 || outcomes[len(outcomes)-1] != "0" {
		t.Errorf("%d AuditEvents of the sends (outcomes %v) for %d attempts; want one an attempt, the last a success", len(entries), outcomes, len(history))
	}
	_, _, ready := doReq(t, "GET", g.base+"/readyz", "")
	if ready["status"] != "ready" {
		t.Errorf("readyz = %v", ready)
	}
}

// TestWithdrawalWithheldAsSent: a withdrawal stored while the record's
// first delivery was still pending (so it was queued to be sent), whose
// first delivery then ended a dead letter the EHR applied none of (here
// an operator's cancel after the EHR's 500s, "sent to the wrong
// destination"), is not sent when its turn comes: it would give the EHR
// the patient's demographics and values it never had (an EHR review). It
// stands as a dead letter saying so, and the EHR receives nothing.
func TestWithdrawalWithheldAsSent(t *testing.T) {
	ehr := newEHRStub(t)
	ehr.mu.Lock()
	ehr.fail500 = 1 << 30
	ehr.mu.Unlock()
	g := start(t, "--ehr-url", ehr.URL)
	body, _ := os.ReadFile("../schemas/examples/vitals/pre-dose-baseline.json")
	var rec map[string]any
	if err := json.Unmarshal(body, &rec); err != nil {
		t.Fatal(err)
	}
	src := rec["source"].(map[string]any)
	src["recordId"], src["version"] = "V-WITHHELD", "1"
	v1, _ := json.Marshal(rec)
	if status, _, resp := doReq(t, "POST", g.base+"/ingest/vitals", string(v1)); status != 200 && status != 201 {
		t.Fatalf("ingest v1 = %d %v", status, resp)
	}
	// Its first attempt failed (500): pending, retried later.
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		ehr.mu.Lock()
		posts := ehr.posts
		ehr.mu.Unlock()
		if posts > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the gateway never attempted the first version")
		}
	}
	src["version"], src["status"], src["lastUpdated"] = "2", "entered-in-error", "2026-03-10T10:00:00-05:00"
	v2, _ := json.Marshal(rec)
	if status, _, resp := doReq(t, "POST", g.base+"/ingest/vitals", string(v2)); status != 200 && status != 201 {
		t.Fatalf("ingest the withdrawal = %d %v", status, resp)
	}
	deliveries := func() (first, withdrawal map[string]any) {
		_, _, list := doReq(t, "GET", g.base+"/admin/deliveries?record=V-WITHHELD", "")
		for _, d := range list["deliveries"].([]any) {
			m := d.(map[string]any)
			switch m["version"] {
			case "1":
				first = m
			case "2":
				withdrawal = m
			}
		}
		return first, withdrawal
	}
	first, withdrawal := deliveries()
	if first == nil || withdrawal == nil || withdrawal["status"] != "pending" {
		t.Fatalf("deliveries: first %v, withdrawal %v; want the withdrawal queued behind the first", first, withdrawal)
	}
	// The operator cancels the first: between attempts (one in flight is
	// refused 409, tried again).
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		status, _, resp := doReq(t, "POST", g.base+"/admin/deliveries/"+first["id"].(string)+"/cancel?reason=sent+to+the+wrong+destination", "")
		if status == 200 {
			break
		}
		if status != 409 || time.Now().After(deadline) {
			t.Fatalf("cancel = %d %v", status, resp)
		}
	}
	ehr.mu.Lock()
	ehr.fail500, ehr.posts = 0, 0
	ehr.mu.Unlock()
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		_, withdrawal = deliveries()
		if withdrawal["status"] != "pending" && withdrawal["status"] != "inflight" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the withdrawal still %v after 30 s", withdrawal["status"])
		}
	}
	if withdrawal["status"] != "dead" || !strings.HasPrefix(fmt.Sprint(withdrawal["lastError"]), "refused when stored: record.withdrawn-not-delivered") {
		t.Errorf("the withdrawal: %v %v, want a dead letter withheld", withdrawal["status"], withdrawal["lastError"])
	}
	if _, _, posts := ehr.stats(); posts != 0 {
		t.Errorf("the EHR received %d transactions after the cancel, want none", posts)
	}
}
