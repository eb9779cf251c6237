package test

import (
	"bytes"
	"database/sql"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	_ "modernc.org/sqlite"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
)

// TestAuditVerifyFromE2E: an auditor saves a verification, the gateway
// serves more requests, and `audit verify --from @saved.json` checks only
// the records since (the API's ?from= the same), saying what it did not
// check; a record changed after the saved head is found (exit 1), a head
// the chain does not hold is refused (exit 1), a malformed one is a usage
// error (exit 2).
func TestAuditVerifyFromE2E(t *testing.T) {
	dir := t.TempDir()
	db := filepath.Join(dir, "audit.db")
	g := start(t, "--db", db)
	for range 3 {
		doReq(t, "GET", g.base+"/fhir/metadata", "")
	}
	saved := filepath.Join(dir, "audit-verify.json")
	status, _, v := doReq(t, "GET", g.base+"/admin/audit/verify", "")
	if status != 200 || v["intact"] != true {
		t.Fatalf("audit/verify = %d %v", status, v)
	}
	out, err := exec.Command(binary, "audit", "verify", "--db", db).Output()
	if err != nil {
		t.Fatalf("audit verify: %v\n%s", err, out)
	}
	if err := os.WriteFile(saved, out, 0o600); err != nil {
		t.Fatal(err)
	}
	var headSeq int64
	var headHash string
	if _, err := fmt.Sscanf(string(out[bytes.Index(out, []byte(`"headSeq": `)):]), `"headSeq": %d,`, &headSeq); err != nil {
		t.Fatalf("headSeq in %s: %v", out, err)
	}
	if i := bytes.Index(out, []byte(`"headHash": "`)); i >= 0 {
		headHash = string(out[i+len(`"headHash": "`) : i+len(`"headHash": "`)+64])
	}
	for range 4 {
		doReq(t, "GET", g.base+"/fhir/metadata", "")
	}
	from := fmt.Sprintf("%d:%s", headSeq, headHash)
	status, _, v = doReq(t, "GET", g.base+"/admin/audit/verify?from="+from, "")
	if status != 200 || v["intact"] != true || !strings.Contains(fmt.Sprint(v["scope"]), "not checked now") {
		t.Errorf("audit/verify?from=%s = %d %v, want intact from the head", from, status, v)
	}
	g.stop(t)

	cmd := exec.Command(binary, "audit", "verify", "--db", db, "--from", "@"+saved)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err = cmd.Output()
	if err != nil || !bytes.Contains(out, []byte(`"intact": true`)) || !bytes.Contains(out, []byte(fmt.Sprintf(`"seq": %d`, headSeq))) ||
		!strings.Contains(stderr.String(), fmt.Sprintf("records 1 to %d were not checked now", headSeq-1)) {
		t.Fatalf("audit verify --from @saved: %v\n%s\n%s", err, out, stderr.String())
	}

	// A record after the head changed: found.
	sdb, err := sql.Open("sqlite", "file:"+db+"?_pragma=busy_timeout(10000)")
	if err != nil {
		t.Fatal(err)
	}
	defer sdb.Close()
	var id string
	if err := sdb.QueryRow(`SELECT id FROM audit_chain WHERE seq = ?`, headSeq+2).Scan(&id); err != nil {
		t.Fatal(err)
	}
	var stored []byte
	if err := sdb.QueryRow(`SELECT body FROM resources WHERE type = 'AuditEvent' AND id = ?`, id).Scan(&stored); err != nil {
		t.Fatal(err)
	}
	body, err := store.UnpackBody(stored)
	if err != nil {
		t.Fatal(err)
	}
	changed := bytes.Replace(body, []byte(`"outcome":"0"`), []byte(`"outcome":"4"`), 1)
	if _, err := sdb.Exec(`UPDATE resources SET body = ? WHERE type = 'AuditEvent' AND id = ?`, store.PackBody("AuditEvent", changed), id); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		from string
		code int
		want string
	}{
		{"a record after the head changed", "@" + saved, 1, fmt.Sprintf("broken at record %d", headSeq+2)},
		{"a head the chain does not hold", fmt.Sprintf("%d:%s", headSeq, strings.Repeat("0a", 32)), 1, "another hash than the anchor"},
		{"malformed", "x", 2, "an anchor is <record number>:<hash>"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := exec.Command(binary, "audit", "verify", "--db", db, "--from", tc.from).CombinedOutput()
			var ee *exec.ExitError
			if !errorsAs(err, &ee) || ee.ExitCode() != tc.code || !bytes.Contains(out, []byte(tc.want)) {
				t.Errorf("audit verify --from %s = %v\n%s\nwant exit %d, %q", tc.from, err, out, tc.code, tc.want)
			}
		})
	}
}
