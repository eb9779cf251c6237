package test

import (
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
)

// groupBundle is transaction Bundle i of TestKillDuringGroupCommit: n
// Observations with the identifier urn:gc|b<i>.
func groupBundle(i, n int) string {
	var entries []string
	for j := range n {
		entries = append(entries, fmt.Sprintf(`{"fullUrl":"urn:uuid:%08d-%04d-4000-8000-000000000000","resource":{"resourceType":"Observation","status":"final","code":{"text":"gc"},"identifier":[{"system":"urn:gc","value":"b%d"}]},"request":{"method":"POST","url":"Observation"}}`, i, j, i))
	}
	return `{"resourceType":"Bundle","type":"transaction","entry":[` + strings.Join(entries, ",") + `]}`
}

// TestKillDuringGroupCommit: kill -9 while many clients' transactions are
// being committed together loses none that was answered 200 and leaves
// none in part, the audit chain still verifies, and every AuditEvent is
// indexed (those the kills left unindexed by the next search). Sixteen clients post
// Bundles of 20 Observations; the gateway is killed once 40 answers have
// come back (so batches are in flight, whatever the machine's speed),
// three times over on one database.
func TestKillDuringGroupCommit(t *testing.T) {
	db := filepath.Join(t.TempDir(), "group.db")
	const clients, perBundle, killAfter = 16, 20, 40
	acked := map[int]bool{}
	next := 0
	for round := range 3 {
		g := startDB(t, db)
		var mu sync.Mutex
		answered := 0
		killed := make(chan struct{})
		var once sync.Once
		var wg sync.WaitGroup
		for range clients {
			wg.Go(func() {
				for {
					mu.Lock()
					i := next
					next++
					mu.Unlock()
					resp, err := http.Post(g.base+"/fhir", "application/fhir+json", strings.NewReader(groupBundle(i, perBundle)))
					if err != nil {
						return // the gateway is gone
					}
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					mu.Lock()
					if resp.StatusCode == http.StatusOK {
						acked[i] = true
					}
					answered++
					n := answered
					mu.Unlock()
					if n >= killAfter {
						once.Do(func() {
							_ = g.Cmd.Process.Signal(syscall.SIGKILL)
							close(killed)
						})
						return
					}
				}
			})
		}
		<-killed
		_ = g.Cmd.Wait()
		wg.Wait()
		t.Logf("round %d: %d Bundles posted so far, %d answered 200", round, next, len(acked))
	}

	g := startDB(t, db)
	for i := range next {
		status, _, b := doReq(t, "GET", fmt.Sprintf("%s/fhir/Observation?identifier=urn:gc|b%d&_summary=count", g.base, i), "")
		n, ok := b["total"].(float64)
		if status != http.StatusOK || !ok {
			t.Fatalf("count of Bundle %d = %d %v", i, status, b)
		}
		total := int(n)
		switch {
		case total != 0 && total != perBundle:
			t.Errorf("Bundle %d: %d of its %d resources stored, want all or none", i, total, perBundle)
		case acked[i] && total == 0:
			t.Errorf("Bundle %d was answered 200 but is not stored", i)
		}
	}
	// Every AuditEvent is found by a search on an indexed parameter: those
	// whose index rows the kills kept from being written too (the search
	// before counting all of them adds one).
	_, _, byDate := doReq(t, "GET", g.base+"/fhir/AuditEvent?date=ge2000-01-01&_summary=count", "")
	_, _, all := doReq(t, "GET", g.base+"/fhir/AuditEvent?_summary=count", "")
	if indexed, stored := byDate["total"], all["total"]; indexed == nil || stored == nil || indexed.(float64)+1 != stored.(float64) {
		t.Errorf("after the kills: %v AuditEvents found by date, %v stored (one more: the search's own)", indexed, stored)
	}
	g.stop(t)
	out, err := exec.Command(binary, "audit", "verify", "--db", db).CombinedOutput()
	if err != nil {
		t.Errorf("audit verify after the kills: %v\n%s", err, out)
	}
}
