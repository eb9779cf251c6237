package main

import (
	"context"
	"database/sql"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/auditlog"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/operator"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store/sqlite"
	_ "modernc.org/sqlite"
)

// TestAuditVerifyAttempt: a delivery attempt rewritten in the outbox (a
// failure passed off as delivered) is a finding of audit verify, exit 1,
// naming the delivery's attempt and what differs; untouched, the attempt
// is counted as checked (p16 F3).
func TestAuditVerifyAttempt(t *testing.T) {
	ctx := context.Background()
	db := filepath.Join(t.TempDir(), "kg.db")
	st, err := sqlite.Open(ctx, db, sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	err = st.Write(ctx, func(tx store.Tx) error {
		return tx.Enqueue(&store.OutboxItem{Destination: "ehr", OrderKey: "emr|session|S-1", Kind: "session", Source: "emr",
			RecordID: "S-1", Version: "1", Payload: []byte(`{"resourceType":"Bundle"}`)})
	})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().Add(time.Hour) // after the store's clock, which dated the item
	its, err := st.Claim(ctx, "ehr", now, time.Minute, 1)
	if err != nil || len(its) != 1 {
		t.Fatalf("Claim = %v, %v", its, err)
	}
	ids, err := operator.LoadIDs(ctx, st)
	if err != nil {
		t.Fatal(err)
	}
	l := auditlog.New(st, auditlog.Config{})
	l.Start()
	a := &store.Attempt{ItemID: its[0].ID, N: 1, At: now, Duration: 40 * time.Millisecond, HTTPStatus: 500,
		Outcome: []byte(`{"resourceType":"OperationOutcome"}`), Error: "http 500"}
	err = l.AppendSent(ctx, st, "", auditlog.Sent{Delivery: ids.Encode(its[0].ID), Destination: "ehr", Item: its[0], Attempt: a, Outcome: "retry"})
	if err == nil {
		err = st.Complete(ctx, a, store.StatusPending, now.Add(time.Minute))
	}
	l.Close()
	st.Close()
	if err != nil {
		t.Fatal(err)
	}
	if out, errOut, code := cli(t, "", "audit", "verify", "--db", db); code != 0 || !strings.Contains(out, `"attempts": 1`) {
		t.Fatalf("audit verify = exit %d, %s %s; want 0, the attempt checked", code, out, errOut)
	}
	raw, err := sql.Open("sqlite", db)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	if _, err := raw.Exec(`UPDATE delivery_attempts SET http_status = 200, error = '', outcome = NULL`); err != nil {
		t.Fatal(err)
	}
	out, errOut, code := cli(t, "", "audit", "verify", "--db", db)
	about := "delivery " + ids.Encode(its[0].ID) + " attempt 1"
	if code != exitInvalid || !strings.Contains(out, `"about": "`+about+`"`) ||
		!strings.Contains(errOut, "receipts or delivery attempts stored otherwise") || !strings.Contains(errOut, "its HTTP status is 200 where the AuditEvent says 500") {
		t.Errorf("audit verify of a rewritten attempt = exit %d, %s %s; want %d naming %s", code, out, errOut, exitInvalid, about)
	}
}
