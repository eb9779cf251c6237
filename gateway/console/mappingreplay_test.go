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
	// A malformed field: the form again (400) with the values as typed
	// and the error at that field only; nothing started.
	for _, tc := range []struct {
		name   string
		form   url.Values
		field  string // the field in error
		typed  []string
		others []string // fields not in error
	}{
		{"since a word", url.Values{"kind": {"session"}, "since": {"yesterday"}, "reason": {"ok"}}, "r-since",
			[]string{`value="yesterday"`, `value="ok"`, `<option selected>session</option>`}, []string{"r-reason-error", "r-kind-error"}},
		{"since not a date", url.Values{"since": {"2026-99-99"}, "apply": {"yes"}}, "r-since",
			[]string{`value="2026-99-99"`, `value="yes" checked`}, []string{"r-reason-error", "r-kind-error"}},
		{"reason with a control character", url.Values{"since": {"2026-11-25T08:00"}, "reason": {"a\x07b"}}, "r-reason",
			[]string{`value="2026-11-25T08:00"`}, []string{"r-since-error", "r-kind-error"}},
		{"unknown kind", url.Values{"kind": {"lab"}}, "r-kind", nil, []string{"r-since-error", "r-reason-error"}},
		{"since in the future", url.Values{"since": {"2999-01-01T08:00"}}, "r-since",
			[]string{`value="2999-01-01T08:00"`, "the time is in the future"}, []string{"r-reason-error", "r-kind-error"}},
	} {
		tc.form.Set("csrf", token)
		status, page, _ := f.post(t, "/console/replays", tc.form)
		if status != http.StatusBadRequest || !strings.Contains(page, `id="form-errors"`) {
			t.Errorf("%s: %d, want 400 and the form again:\n%s", tc.name, status, page)
			continue
		}
		if !strings.Contains(page, `id="`+tc.field+`-error"`) || !strings.Contains(page, `aria-describedby="`+tc.field+`-error"`) {
			t.Errorf("%s: no error at %s:\n%s", tc.name, tc.field, page)
		}
		for _, want := range tc.typed {
			if !strings.Contains(page, want) {
				t.Errorf("%s: the form does not show %s again", tc.name, want)
			}
		}
		for _, other := range tc.others {
			if strings.Contains(page, other) {
				t.Errorf("%s: an error at %s, which was fine", tc.name, other)
			}
		}
		if strings.Contains(page, `<p class="status">`) /* the error page */ || !strings.Contains(page, "You have started no replay") {
			t.Errorf("%s: not the replay page, or a replay started:\n%s", tc.name, page)
		}
	}
	status, page, _ = f.post(t, "/console/replays", url.Values{"csrf": {token}, "kind": {"session"}, "apply": {"yes"}})
	if status != http.StatusOK || !strings.Contains(page, "Yes, apply") {
		t.Fatalf("apply without confirmation = %d, want the question", status)
	}
	// The question asks for the reason, showing what was typed, and an
	// apply without one is refused with the question again; nothing
	// starts (probe p8 F14).
	if !strings.Contains(page, `<input id="c-reason" name="reason" maxlength="200" required value="">`) {
		t.Errorf("the confirmation does not ask for the reason:\n%s", page)
	}
	status, page, _ = f.post(t, "/console/replays", url.Values{"csrf": {token}, "kind": {"session"}, "apply": {"yes"},
		"reason": {"CADSS display corrected"}})
	if status != http.StatusOK || !strings.Contains(page, `required value="CADSS display corrected"`) {
		t.Errorf("the confirmation does not show the reason typed (%d):\n%s", status, page)
	}
	for _, reason := range []string{"", "   "} {
		status, page, _ = f.post(t, "/console/replays", url.Values{"csrf": {token}, "kind": {"session"}, "apply": {"yes"},
			"confirm": {"yes"}, "reason": {reason}})
		if status != http.StatusBadRequest || !strings.Contains(page, "Reason: say why") || !strings.Contains(page, "Yes, apply") {
			t.Errorf("apply confirmed with reason %q = %d, want 400 and the question again:\n%s", reason, status, page)
		}
	}
	if _, page, _ := f.get(t, "/console/replays"); !strings.Contains(page, "You have started no replay") {
		t.Errorf("an apply without a reason started a replay")
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
