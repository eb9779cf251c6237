package jobs

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/auditlog"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/auth"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
)

// registry is a fixed registration of clients: id -> tenant and scopes.
type registry map[string]struct{ tenant, scopes string }

func (r registry) Registration(id string) (string, auth.Scopes, bool) {
	c, ok := r[id]
	return c.tenant, auth.ParseScopes(c.scopes), ok
}

// TestOwnerNoLongerRegistered: a job queued (or released by a restart)
// whose owner is a registered client that was removed, moved to another
// tenant or lost the scope its kind needs fails when it is claimed, its
// handler never started, with the job-owner-revoked rule; owners that are
// not registered clients are not checked against the registration.
func TestOwnerNoLongerRegistered(t *testing.T) {
	reg := registry{
		"kept":   {"clinic-a", "gateway/ingest system/*.rs"},
		"moved":  {"clinic-b", "gateway/ingest"},
		"narrow": {"clinic-a", "system/Observation.rs"},
		"all":    {"*", "gateway/ingest system/*.rs"},
	}
	cases := []struct {
		name           string
		sc             *auditlog.Scope
		wantStatus     string
		wantReasonPart string
	}{
		{"still registered", caller("kept", "clinic-a"), store.JobDone, ""},
		{"all-tenant client still registered", caller("all", "*"), store.JobDone, ""},
		{"removed", caller("gone", "clinic-a"), store.JobFailed, `client "gone" was removed from the configuration`},
		{"moved to another tenant", caller("moved", "clinic-a"), store.JobFailed, `client "moved" now acts for another tenant`},
		{"scope withdrawn", caller("narrow", "clinic-a"), store.JobFailed, `no longer has the scope gateway/ingest`},
		{"console person", caller(auth.PersonPrefix+"alice@a", "clinic-a"), store.JobDone, ""},
		{"external issuer's client", auditlog.NewScope("", &auth.Principal{ClientID: "gone", Tenant: "clinic-a",
			Issuer: "https://idp.example", External: true}), store.JobDone, ""},
	}
	st := openStore(t)
	var started atomic.Int32
	s := New(Config{Store: st, Poll: 10 * time.Millisecond, Registry: reg})
	s.Handle("count", counter(&started, nil), auth.ScopeIngest)
	ctx := context.Background()
	ids := make([]string, len(cases))
	for i, c := range cases {
		j, err := s.Submit(ctx, c.sc, "count", []byte(`{"N":1}`), false)
		if err != nil {
			t.Fatal(err)
		}
		ids[i] = j.ID
	}
	s.Start()
	defer s.Close()
	ran := int32(0)
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			j := wait(t, s, c.sc, ids[i], func(j *store.Job) bool { return j.Status == store.JobDone || j.Status == store.JobFailed })
			if j.Status != c.wantStatus {
				t.Fatalf("status = %s (%q), want %s", j.Status, j.Error, c.wantStatus)
			}
			if j.Status == store.JobDone {
				ran++
				return
			}
			if !strings.HasPrefix(j.Error, OwnerRevoked) || !strings.Contains(j.Error, c.wantReasonPart) {
				t.Errorf("reason = %q, want %q ... %q", j.Error, OwnerRevoked, c.wantReasonPart)
			}
			if r := FailureRule(j); r != "job-owner-revoked" {
				t.Errorf("FailureRule = %s, want job-owner-revoked", r)
			}
		})
	}
	if started.Load() != ran {
		t.Errorf("handler started %d times, want %d (never for a revoked owner's job)", started.Load(), ran)
	}
}
