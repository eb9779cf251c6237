package auditlog

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/audit"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/search"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store/sqlite"
)

// TestManyPatients: a request that concerned more patients than one
// AuditEvent names (the download of a bulk export file) leaves one
// AuditEvent per patientsPerEvent patients, each saying which part it is,
// so that every patient is named (none dropped) and found by
// AuditEvent?patient=; a request with fewer leaves one.
func TestManyPatients(t *testing.T) {
	ctx := context.Background()
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "kg.db"), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	l := New(st, Config{Observer: "gw"})
	l.Start()
	defer l.Close()
	for _, tc := range []struct{ patients, events int }{{1, 1}, {patientsPerEvent, 1}, {2*patientsPerEvent + 345, 3}} {
		t.Run(fmt.Sprint(tc.patients, " patients"), func(t *testing.T) {
			sc := NewScope("job-download", nil)
			sc.RequestID, sc.Description = fmt.Sprint("req-", tc.patients), "export job j: file 1"
			sc.NameRecord("https://x.example/sid/r", "r1")
			for i := range tc.patients {
				sc.Concern(fmt.Sprintf("Patient/p%d", i))
				sc.Concern(fmt.Sprintf("Patient/p%d/_history/1", i)) // the same patient again
			}
			if err := l.Append(sc, 200); err != nil {
				t.Fatal(err)
			}
			q, err := search.Parse("AuditEvent", url.Values{"entity:identifier": {audit.SystemRequestID + "|" + sc.RequestID}, "_sort": {"date"}, "_count": {"100"}}, false)
			if err != nil {
				t.Fatal(err)
			}
			page, err := st.Search(ctx, q)
			if err != nil {
				t.Fatal(err)
			}
			if len(page.Matches) != tc.events {
				t.Fatalf("%d AuditEvents, want %d", len(page.Matches), tc.events)
			}
			named, parts := map[string]bool{}, map[string]bool{}
			for i, m := range page.Matches {
				var ev struct {
					OutcomeDesc string `json:"outcomeDesc"`
					Entity      []struct {
						Role struct{ Code string }      `json:"role"`
						What struct{ Reference string } `json:"what"`
					} `json:"entity"`
				}
				if err := json.Unmarshal(m.Body, &ev); err != nil {
					t.Fatal(err)
				}
				n := 0
				for _, e := range ev.Entity {
					if e.Role.Code == "1" {
						named[e.What.Reference] = true
						n++
					}
				}
				if _, part, ok := strings.Cut(ev.OutcomeDesc, "(part "); ok {
					parts[strings.Split(part, ",")[0]] = true
				}
				if n > patientsPerEvent || !strings.HasPrefix(ev.OutcomeDesc, "HTTP 200 OK: export job j: file 1") {
					t.Errorf("AuditEvent %d names %d patients, %q", i+1, n, ev.OutcomeDesc)
				}
			}
			for k := 1; k <= tc.events && tc.events > 1; k++ {
				if !parts[fmt.Sprintf("%d of %d", k, tc.events)] {
					t.Errorf("no AuditEvent says it is part %d of %d: %v", k, tc.events, parts)
				}
			}
			if tc.events == 1 && len(parts) > 0 {
				t.Errorf("one AuditEvent says it is a part: %v", parts)
			}
			if len(named) != tc.patients {
				t.Errorf("the AuditEvents name %d patients, want %d", len(named), tc.patients)
			}
			last := fmt.Sprintf("Patient/p%d", tc.patients-1)
			q, _ = search.Parse("AuditEvent", url.Values{"patient": {last}, "_summary": {"count"}}, false)
			if page, err := st.Search(ctx, q); err != nil || page.Total != 1 {
				t.Errorf("AuditEvent?patient=%s: %v, %v; want 1", last, page, err)
			}
		})
	}
}

// TestFailureDescription: a client's mistake (4xx) was rejected, the
// gateway's own failure (5xx) failed; rule ids only, at most five named.
func TestFailureDescription(t *testing.T) {
	for _, tc := range []struct {
		status int
		rules  []string
		want   string
	}{
		{200, nil, ""},
		{422, []string{"assessment.total-mismatch"}, "rejected: assessment.total-mismatch"},
		{409, []string{"a", "b", "c", "d", "e", "f", "g"}, "rejected: a, b, c, d, e and 2 more"},
		{500, []string{"internal"}, "failed: internal"},
		{503, []string{"audit-unavailable"}, "failed: audit-unavailable"},
	} {
		if got := failureDescription(tc.status, tc.rules); got != tc.want {
			t.Errorf("failureDescription(%d, %v) = %q, want %q", tc.status, tc.rules, got, tc.want)
		}
	}
}
