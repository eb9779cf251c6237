package operator_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/operator"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/outcome"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/search"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
)

// TestInFlightClaim: show and list give an in-flight delivery's claim end
// and say when it has lapsed; cancel takes one whose claim lapsed (its
// gateway died: p44 F2) and refuses one with a live claim, saying so, as
// it says "delivered" of a delivered one.
func TestInFlightClaim(t *testing.T) {
	st := openStore(t)
	ctx := context.Background()
	done := enqueue(t, st, "hosp", "R9", "1", store.StatusDone)
	it := &store.OutboxItem{Destination: "hosp", OrderKey: "src|session|R1", Patient: "src|P", Kind: "session",
		Source: "src", RecordID: "R1", Version: "1", Payload: []byte(`{}`)}
	if err := st.Write(ctx, func(tx store.Tx) error { return tx.Enqueue(it) }); err != nil {
		t.Fatal(err)
	}
	claimedAt := time.Now().UTC().Truncate(time.Millisecond).Add(time.Second)
	if got, err := st.Claim(ctx, "hosp", claimedAt, 30*time.Second, 1); err != nil || len(got) != 1 {
		t.Fatalf("Claim = %v %v", got, err)
	}
	until := claimedAt.Add(30 * time.Second)
	now := claimedAt.Add(10 * time.Second)
	ops := operator.New(st, []string{"hosp"}, nil, func() time.Time { return now })
	ids, err := ops.IDs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	id := ids.Encode(it.ID)
	stamp := until.Format(time.RFC3339)

	// A live claim.
	v, err := ops.Show(ctx, search.AllTenants, id, false)
	if err != nil || v.ClaimUntil == nil || !v.ClaimUntil.Equal(until) || v.ClaimLapsed {
		t.Fatalf("Show (live claim) = claimUntil %v lapsed %v, %v; want %v, not lapsed", v.ClaimUntil, v.ClaimLapsed, err, until)
	}
	_, err = ops.Cancel(ctx, "", id, "sent in error")
	if kind, issues := outcome.From(err); kind != outcome.Conflict || len(issues) != 1 ||
		!strings.Contains(issues[0].Message, "in flight") || !strings.Contains(issues[0].Message, stamp) {
		t.Errorf("Cancel (live claim) = %v, want a conflict naming the live claim until %s", err, stamp)
	}
	_, err = ops.Retry(ctx, "", id)
	if _, issues := outcome.From(err); len(issues) != 1 || !strings.Contains(issues[0].Message, stamp) {
		t.Errorf("Retry (live claim) = %v, want it to name the claim until %s", err, stamp)
	}
	_, err = ops.Cancel(ctx, "", ids.Encode(done), "sent in error")
	if _, issues := outcome.From(err); len(issues) != 1 || !strings.Contains(issues[0].Message, "delivered") ||
		strings.Contains(issues[0].Message, "this one is in flight") {
		t.Errorf("Cancel (delivered) = %v, want it to say delivered, not in flight", err)
	}

	// Ran out by this clock, but within store.ClaimGrace: the claiming
	// gateway's clock may be behind this one's, its worker still renewing
	// the claim. Not lapsed, and not cancelled.
	now = until.Add(store.ClaimGrace / 2)
	v, err = ops.Show(ctx, search.AllTenants, id, false)
	if err != nil || v.ClaimLapsed || strings.Contains(v.ClaimNote, "lapsed at") {
		t.Fatalf("Show (within the grace) = lapsed %v note %q, %v; want not lapsed", v.ClaimLapsed, v.ClaimNote, err)
	}
	// The refusals say what show says (stateNow is noteClaim's): from
	// when the claim counts as lapsed, not a claim held until a time past.
	lapses := until.Add(store.ClaimGrace).Format(time.RFC3339)
	_, err = ops.Cancel(ctx, "", id, "sent in error")
	if kind, issues := outcome.From(err); kind != outcome.Conflict || len(issues) != 1 ||
		strings.Contains(issues[0].Message, "lapsed at") || !strings.Contains(issues[0].Message, stamp) ||
		!strings.Contains(issues[0].Message, "may be cancelled, from "+lapses) {
		t.Errorf("Cancel (within the grace) = %v, want a conflict naming the claim's end %s and the lapse from %s", err, stamp, lapses)
	}
	_, err = ops.Retry(ctx, "", id)
	if _, issues := outcome.From(err); len(issues) != 1 || !strings.Contains(issues[0].Message, v.ClaimNote) {
		t.Errorf("Retry (within the grace) = %v, want it to say %q", err, v.ClaimNote)
	}

	// The claim lapsed: its gateway is gone.
	now = until.Add(time.Minute)
	v, err = ops.Show(ctx, search.AllTenants, id, false)
	if err != nil || v.ClaimUntil == nil || !v.ClaimLapsed || !strings.Contains(v.ClaimNote, "claim lapsed at "+stamp) {
		t.Fatalf("Show (lapsed) = %+v %v; want the claim lapsed at %s", v, err, stamp)
	}
	list, err := ops.List(ctx, search.AllTenants, store.DeliveryFilter{Status: store.StatusInFlight})
	if err != nil || len(list) != 1 || !list[0].ClaimLapsed || list[0].ClaimNote != v.ClaimNote {
		t.Fatalf("List (lapsed) = %+v %v; want the lapsed claim", list, err)
	}
	if _, err := ops.Cancel(ctx, "", id, "delivered before the restore"); err != nil {
		t.Fatalf("Cancel (lapsed) = %v", err)
	}
	v, err = ops.Show(ctx, search.AllTenants, id, false)
	if err != nil || v.Status != store.StatusDead || v.ClaimUntil != nil || v.ClaimNote != "" ||
		v.LastError != operator.CancelledPrefix+"delivered before the restore" {
		t.Fatalf("after the cancel: %+v %v", v, err)
	}
}

// TestCancelReasonSaysWhereItGoes: the refusal of a cancel without a
// reason says what becomes of the reason: it is kept with the delivery;
// the delivery-cancel AuditEvent says that it was cancelled, not why
// (p44 F4: it promised an audit of the reason).
func TestCancelReasonSaysWhereItGoes(t *testing.T) {
	_, issues := outcome.From(operator.CheckCancelReason(" "))
	if len(issues) != 1 {
		t.Fatalf("CheckCancelReason(blank) = %v", issues)
	}
	d := issues[0].Message
	if !strings.Contains(d, "kept with the delivery") || strings.Contains(d, "is audited") ||
		!strings.Contains(d, "not the reason") {
		t.Errorf("CheckCancelReason(blank) = %q, want it to say the reason is kept with the delivery, not in the AuditEvent", d)
	}
}
