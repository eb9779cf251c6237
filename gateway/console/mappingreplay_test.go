package console

import (
	"context"
	"net/http"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/auditlog"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/auth"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/engine"
)

// TestReplayPages: an operator starts a dry run of the mapping replay,
// follows it and reads its report; an apply asks for a confirmation
// first.
func TestReplayPages(t *testing.T) {
	f := newFixture(t, nil)
	body, err := os.ReadFile("../../schemas/examples/session/routine-ketamine-iv-session.json")
	if err != nil {
		t.Fatal(err)
	}
	sc := auditlog.NewScope("ingest", &auth.Principal{ClientID: "clinic", Scopes: auth.ParseScopes("gateway/ingest")})
	if _, err := f.app.Ingest.Ingest(context.Background(), sc, "session", body, false, engine.Answer{}); err != nil {
		t.Fatal(err)
	}
	status, page, _ := f.get(t, "/console/replays")
	if status != http.StatusOK || !strings.Contains(page, "Replay mapping") {
		t.Fatalf("replays page = %d", status)
	}
	token := csrf(t, page)
	status, page, _ = f.post(t, "/console/replays", url.Values{"csrf": {token}, "kind": {"session"}, "apply": {"yes"}})
	if status != http.StatusOK || !strings.Contains(page, "Yes, apply") {
		t.Fatalf("apply without confirmation = %d, want the question", status)
	}
	status, _, h := f.post(t, "/console/replays", url.Values{"csrf": {token}, "kind": {"session"}})
	if status != http.StatusSeeOther || !strings.HasPrefix(h.Get("Location"), "/console/replays/") {
		t.Fatalf("start = %d %v", status, h)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		status, page, _ = f.get(t, h.Get("Location"))
		if status != http.StatusOK {
			t.Fatalf("replay page = %d", status)
		}
		if strings.Contains(page, "s-done") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the replay did not finish:\n%s", page)
		}
		time.Sleep(20 * time.Millisecond) // polling a background job
	}
	if !strings.Contains(page, "<th scope=\"row\">Unchanged</th><td>1</td>") {
		t.Errorf("replay report lacks the unchanged record:\n%s", page)
	}
	if status, _, _ := f.get(t, "/console/replays/nope"); status != http.StatusNotFound {
		t.Errorf("unknown replay = %d, want 404", status)
	}
}
