package replay_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/audit"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/replay"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/search"
)

// TestApplyOutcomeDesc: each record's mapping-replay AuditEvent of an
// apply the CLI ran (a scope of no HTTP exchange) says what was done and
// claims no HTTP status; that of an apply asked through the API (the job)
// keeps the status its kick-off was answered with.
func TestApplyOutcomeDesc(t *testing.T) {
	for _, tc := range []struct {
		name   string
		noHTTP bool
		prefix string
	}{
		{"the CLI", true, ""},
		{"the API's job", false, "HTTP 200 OK: "},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			f.load(t)
			ctx := context.Background()
			sc := operator()
			sc.NoHTTP = tc.noHTTP
			opts := replay.Options{Tenant: search.AllTenants, Apply: true, Reason: "heart rate display fixed"}
			if _, err := f.service(heartRateDisplay).Run(ctx, sc, opts, func(replay.RecordResult) error { return nil }, nil); err != nil {
				t.Fatalf("Run: %v", err)
			}
			var descs []string
			_ = f.st.AuditChainAfter(ctx, 0, func(e audit.ChainEntry) error {
				var ev struct {
					Subtype     []struct{ Code string }
					OutcomeDesc string
					Outcome     string
				}
				_ = json.Unmarshal(e.Body, &ev)
				if len(ev.Subtype) > 0 && ev.Subtype[0].Code == "mapping-replay" {
					descs = append(descs, ev.OutcomeDesc)
					if ev.Outcome != "0" {
						t.Errorf("mapping-replay AuditEvent outcome %q, want 0", ev.Outcome)
					}
				}
				return nil
			})
			if len(descs) == 0 {
				t.Fatal("no mapping-replay AuditEvent")
			}
			for _, d := range descs {
				if !strings.HasPrefix(d, tc.prefix) || !strings.Contains(d, "record replayed with mapping") || tc.noHTTP && strings.Contains(d, "HTTP") {
					t.Errorf("mapping-replay outcomeDesc %q, want %q then what was replayed", d, tc.prefix)
				}
			}
		})
	}
}
