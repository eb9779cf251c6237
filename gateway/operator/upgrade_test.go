package operator

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
)

// upgradeStore is an UpgradeStore (and the outbox and jobs the gates
// wrap) that counts the calls.
type upgradeStore struct {
	store.Outbox
	store.Jobs
	floor                     store.SchemaFloor
	repair                    store.OrderRepair
	repairs, claims, jobClaim int
}

func (u *upgradeStore) SchemaFloor(context.Context) (store.SchemaFloor, error) { return u.floor, nil }
func (u *upgradeStore) RepairOrder(context.Context) (store.OrderRepair, error) {
	u.repairs++
	return u.repair, nil
}
func (u *upgradeStore) Claim(context.Context, string, time.Time, time.Duration, int) ([]*store.OutboxItem, error) {
	u.claims++
	return nil, nil
}
func (u *upgradeStore) ClaimJob(context.Context, []string, string, time.Time, time.Duration) (*store.Job, error) {
	u.jobClaim++
	return nil, nil
}

// TestUpgradeWatch: a gateway repairs the order keys an older release
// wrote, saying so; once a later release has raised the database's floor
// above its schema (a migration older gateways must not outlive, p38 F3)
// it logs one ERROR saying to stop it, claims no deliveries or jobs, and
// answers unready.
func TestUpgradeWatch(t *testing.T) {
	ctx := context.Background()
	var logs bytes.Buffer
	st := &upgradeStore{floor: store.SchemaFloor{Database: 21, Floor: 17, Program: 20}, repair: store.OrderRepair{Keyed: 2}}
	w := NewUpgradeWatch(UpgradeWatchConfig{Store: st, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	ob, jobs := GateOutbox(st, w.Superseded), GateJobs(st, w.Superseded)
	svc := New(nil, nil, nil, nil)
	svc.SetUpgradeWatch(w)
	if err := w.Check(ctx); err != nil {
		t.Fatal(err)
	}
	if w.Superseded() || st.repairs != 1 || !strings.Contains(logs.String(), "level=WARN") || !strings.Contains(logs.String(), "items_keyed=2") {
		t.Fatalf("Check (floor 17, schema 20): superseded %v, repairs %d, log %q; want a repair, said", w.Superseded(), st.repairs, logs.String())
	}
	ob.Claim(ctx, "ehr", time.Now(), time.Minute, 1)
	jobs.ClaimJob(ctx, nil, "c", time.Now(), time.Minute)
	if st.claims != 1 || st.jobClaim != 1 {
		t.Fatalf("claims %d, job claims %d before the floor rose, want 1 each", st.claims, st.jobClaim)
	}

	logs.Reset()
	st.floor = store.SchemaFloor{Database: 25, Floor: 24, Program: 20}
	for range 2 {
		if err := w.Check(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if !w.Superseded() || strings.Count(logs.String(), "level=ERROR") != 1 || !strings.Contains(logs.String(), "stop this gateway") ||
		!strings.Contains(logs.String(), "database_floor=24") {
		t.Fatalf("Check (floor 24, schema 20): superseded %v, log %q; want one ERROR saying to stop it", w.Superseded(), logs.String())
	}
	if st.repairs != 1 {
		t.Errorf("repairs %d once superseded, want none more", st.repairs)
	}
	if got, err := ob.Claim(ctx, "ehr", time.Now(), time.Minute, 1); got != nil || err != nil || st.claims != 1 {
		t.Errorf("Claim once superseded = %v %v (store claims %d), want nothing claimed", got, err, st.claims)
	}
	if j, err := jobs.ClaimJob(ctx, nil, "c", time.Now(), time.Minute); j != nil || err != nil || st.jobClaim != 1 {
		t.Errorf("ClaimJob once superseded = %v %v (store claims %d), want nothing claimed", j, err, st.jobClaim)
	}
	if r, err := svc.Ready(ctx); err != nil || r.Ready || r.Database != "superseded" {
		t.Errorf("Ready once superseded = %+v %v, want unready, superseded", r, err)
	}
}
