package auditlog

import (
	"context"
	"database/sql"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/audit"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/search"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store/sqlite"
	_ "modernc.org/sqlite"
)

// TestVerifyChainHead: the chain walked must reach the head the database
// keeps, with its hash; a cut tail, a changed head and a head moved back
// are broken chains, whatever the walk alone says.
func TestVerifyChainHead(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name       string
		tamper     []string
		wantAt     int64
		wantReason string
	}{
		{"intact", nil, 0, ""},
		{"tail cut", []string{`DELETE FROM audit_chain WHERE seq > 3`}, 4, "records 4 to 5 are missing"},
		{"tail cut and its AuditEvents too", []string{`DELETE FROM audit_chain WHERE seq > 4`,
			`DELETE FROM current WHERE type = 'AuditEvent' AND id = 'ae5'`,
			`DELETE FROM resources WHERE type = 'AuditEvent' AND id = 'ae5'`}, 5, "records 5 to 5 are missing"},
		{"head hash changed", []string{`UPDATE audit_chain_head SET hash = '00'`}, 5, "head's hash does not match record 5"},
		{"head moved back", []string{`UPDATE audit_chain_head SET seq = 3, hash = (SELECT hash FROM audit_chain WHERE seq = 3)`}, 4,
			"the chain head names record 3, but the chain goes on to record 5"},
		{"head row deleted", []string{`DELETE FROM audit_chain_head`}, 6, "head record is missing"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			db := filepath.Join(t.TempDir(), "kg.db")
			st, err := sqlite.Open(ctx, db, sqlite.Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer st.Close()
			for i := 1; i <= 5; i++ {
				id := fmt.Sprintf("ae%d", i)
				body := fmt.Appendf(nil, `{"resourceType":"AuditEvent","id":%q}`, id)
				appendAuditEvent(t, st, id, body)
			}
			raw, err := sql.Open("sqlite", "file:"+db+"?_pragma=busy_timeout(10000)") // the store writes meanwhile (its audit index)
			if err != nil {
				t.Fatal(err)
			}
			defer raw.Close()
			for _, q := range tc.tamper {
				if _, err := raw.Exec(q); err != nil {
					t.Fatalf("%s: %v", q, err)
				}
			}
			res, err := Verify(ctx, st, time.Now())
			if err != nil {
				t.Fatal(err)
			}
			if tc.wantAt == 0 {
				if !res.Intact || res.HeadSeq != 5 || res.Records != 5 {
					t.Errorf("Verify = %+v, want intact with 5 records", res)
				}
				return
			}
			if res.Intact || res.BrokenAt != tc.wantAt || !strings.Contains(res.Reason, tc.wantReason) {
				t.Errorf("Verify = %+v, want broken at %d: %s", res, tc.wantAt, tc.wantReason)
			}
		})
	}
}

// TestVerifyServedAsChained: the chain hashes version 1 of each AuditEvent,
// but reads and searches serve what current points at and find it by its
// index rows. A shadow version current points at, an AuditEvent hidden
// (current deleted, moved to another tenant, its lastUpdated moved), a
// search index row deleted or added, and an AuditEvent the chain does not
// hold are each reported with the record and AuditEvent they concern,
// while the chain's own links still verify (but where a record was
// deleted with its chain entry).
func TestVerifyServedAsChained(t *testing.T) {
	ctx := context.Background()
	const copyV1 = `INSERT INTO resources (type, id, version, last_updated, deleted, body, tenant)
		SELECT type, %s, %d, last_updated, 0, body, tenant FROM resources WHERE type = 'AuditEvent' AND id = '%s' AND version = 1`
	tests := []struct {
		name    string
		tamper  []string
		wantSeq int64 // 0: an AuditEvent the chain does not hold
		wantID  string
		want    []string // in the faults of wantID
	}{
		{"intact", nil, 0, "", nil},
		{"a shadow version current points at", []string{
			fmt.Sprintf(copyV1, "id", 2, "ae3"),
			`UPDATE current SET version = 2 WHERE type = 'AuditEvent' AND id = 'ae3'`,
		}, 3, "ae3", []string{"current row names version 2", "1 other version(s) stored"}},
		{"a shadow version only", []string{fmt.Sprintf(copyV1, "id", 5, "ae2")}, 2, "ae2", []string{"1 other version(s) stored"}},
		{"current deleted", []string{`UPDATE current SET deleted = 1 WHERE type = 'AuditEvent' AND id = 'ae4'`},
			4, "ae4", []string{"marks it deleted"}},
		{"current removed", []string{`DELETE FROM idx_reference WHERE type = 'AuditEvent' AND id = 'ae4'`,
			`DELETE FROM idx_token WHERE type = 'AuditEvent' AND id = 'ae4'`,
			`DELETE FROM idx_string WHERE type = 'AuditEvent' AND id = 'ae4'`,
			`DELETE FROM idx_date WHERE type = 'AuditEvent' AND id = 'ae4'`,
			`DELETE FROM idx_uri WHERE type = 'AuditEvent' AND id = 'ae4'`,
			`DELETE FROM current WHERE type = 'AuditEvent' AND id = 'ae4'`},
			4, "ae4", []string{"current row is missing"}},
		{"version 1 marked deleted", []string{`UPDATE resources SET deleted = 1 WHERE type = 'AuditEvent' AND id = 'ae1'`},
			1, "ae1", []string{"version 1 is marked deleted"}},
		{"moved to another tenant", []string{`UPDATE current SET tenant = 'clinic-b' WHERE type = 'AuditEvent' AND id = 'ae2'`},
			2, "ae2", []string{"tenant differs"}},
		{"lastUpdated moved", []string{`UPDATE current SET last_updated = last_updated - 86400000 WHERE type = 'AuditEvent' AND id = 'ae5'`},
			5, "ae5", []string{"lastUpdated differs"}},
		{"patient index row deleted", []string{`DELETE FROM idx_reference WHERE type = 'AuditEvent' AND id = 'ae3' AND param = 'patient'`},
			3, "ae3", []string{"search index rows differ", "idx_reference patient: 1 missing"}},
		{"patient index row added", []string{`INSERT INTO idx_reference (type, id, param, ref_type, ref_id, ref_url)
			VALUES ('AuditEvent', 'ae2', 'patient', 'Patient', 'someone-else', '')`},
			2, "ae2", []string{"idx_reference patient: 1 extra"}},
		{"a forged AuditEvent", []string{
			fmt.Sprintf(copyV1, "'forged'", 1, "ae2"),
			`INSERT INTO current (type, id, version, last_updated, deleted, tenant)
				SELECT type, 'forged', 1, last_updated, 0, tenant FROM current WHERE type = 'AuditEvent' AND id = 'ae2'`,
		}, 0, "forged", []string{"not in the audit chain"}},
		// Deleted with its chain record: the chain's gap, and the current
		// row left is named as what is left of a deletion, not a forgery.
		{"deleted with its chain record", []string{`DELETE FROM resources WHERE type = 'AuditEvent' AND id = 'ae3'`,
			`DELETE FROM audit_chain WHERE id = 'ae3'`}, 0, "ae3", []string{"neither its body nor its chain record is stored: it was deleted"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			db := filepath.Join(t.TempDir(), "kg.db")
			st, err := sqlite.Open(ctx, db, sqlite.Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer st.Close()
			at := time.Date(2026, 12, 5, 8, 0, 0, 0, time.UTC)
			for i := 1; i <= 5; i++ {
				ev := newEvent("clinic-a", audit.Record{ID: fmt.Sprintf("ae%d", i), Recorded: at.Add(time.Duration(i) * time.Second),
					Interaction: "delivery-read", Status: 200, ClientID: "auditor", ClientAddr: "127.0.0.1", Observer: "kg",
					Tenant: "clinic-a", Patients: []string{"Patient/p1"}, RequestID: "r", TraceID: "t", Description: "delivery 32: 1 attempt"})
				if err := st.Write(ctx, ev.put); err != nil {
					t.Fatal(err)
				}
			}
			if err := st.IndexAudits(ctx); err != nil {
				t.Fatal(err)
			}
			raw, err := sql.Open("sqlite", "file:"+db+"?_pragma=busy_timeout(10000)") // the store writes meanwhile (its audit index)
			if err != nil {
				t.Fatal(err)
			}
			defer raw.Close()
			for _, q := range tc.tamper {
				if _, err := raw.Exec(q); err != nil {
					t.Fatalf("%s: %v", q, err)
				}
			}
			res, err := Verify(ctx, st, time.Now())
			if err != nil {
				t.Fatal(err)
			}
			if !res.IndexChecked {
				t.Errorf("Verify: IndexChecked false (%s), want the index rows compared", res.IndexNote)
			}
			if slices.ContainsFunc(tc.tamper, func(q string) bool { return strings.Contains(q, "FROM audit_chain") }) {
				if res.BrokenAt == 0 {
					t.Errorf("Verify: the chain's links intact, want them broken where its record was deleted")
				}
			} else if res.BrokenAt != 0 || res.Records != 5 {
				t.Errorf("Verify = broken at %d (%s), %d records; want the chain's links intact, 5 records", res.BrokenAt, res.Reason, res.Records)
			}
			if tc.want == nil {
				if !res.Intact || res.FaultCount != 0 {
					t.Errorf("Verify = %+v, want intact without faults", res)
				}
				return
			}
			if res.Intact {
				t.Fatalf("Verify = intact; want the tampering with AuditEvent %s reported", tc.wantID)
			}
			var got []string
			for _, f := range res.Faults {
				if f.AuditEvent != tc.wantID || f.Seq != tc.wantSeq {
					t.Errorf("fault of AuditEvent %s (record %d): %s; want only faults of %s (record %d)", f.AuditEvent, f.Seq, f.Problem, tc.wantID, tc.wantSeq)
				}
				got = append(got, f.Problem)
			}
			all := strings.Join(got, "; ")
			for _, w := range tc.want {
				if !strings.Contains(all, w) {
					t.Errorf("faults = %q, want one saying %q", all, w)
				}
			}
			if res.FaultCount != len(res.Faults) {
				t.Errorf("FaultCount = %d, want %d (every fault listed)", res.FaultCount, len(res.Faults))
			}
			if sum := res.Summary(); !strings.Contains(sum, "AuditEvent "+tc.wantID) || strings.Contains(sum, "delivery 32") {
				t.Errorf("Summary() = %q, want it to name AuditEvent %s and nothing of its content", sum, tc.wantID)
			}
		})
	}
}

// TestVerifyAnchors: an anchor (a record's number and hash written down
// from an earlier verification) is held while the chain still has that
// record with that hash; a chain whose record has another hash (rewritten
// with every later hash computed again, which the chain's own links cannot
// show) or that no longer reaches the record is not intact.
func TestVerifyAnchors(t *testing.T) {
	ctx := context.Background()
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "kg.db"), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	var anchor Anchor
	for i := 1; i <= 5; i++ {
		id := fmt.Sprintf("ae%d", i)
		body := fmt.Appendf(nil, `{"resourceType":"AuditEvent","id":%q}`, id)
		appendAuditEvent(t, st, id, body)
		if i == 3 {
			res, err := Verify(ctx, st, time.Now())
			if err != nil || !res.Intact {
				t.Fatalf("Verify = %+v, %v", res, err)
			}
			anchor = Anchor{Seq: res.HeadSeq, Hash: res.HeadHash}
		}
	}
	other := Anchor{Seq: 3, Hash: strings.Repeat("ab", 32)}
	tests := []struct {
		name    string
		anchors []Anchor
		intact  bool
		problem string
	}{
		{"none", nil, true, ""},
		{"held", []Anchor{anchor}, true, ""},
		{"another hash", []Anchor{anchor, other}, false, "record 3 has another hash: the chain was rewritten at or before record 3"},
		{"past the end", []Anchor{{Seq: 9, Hash: anchor.Hash}}, false, "the chain holds no record 9 (it ends at record 5)"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			res, err := Verify(ctx, st, time.Now(), tc.anchors...)
			if err != nil {
				t.Fatal(err)
			}
			if res.Intact != tc.intact || len(res.Anchors) != len(tc.anchors) {
				t.Fatalf("Verify = %+v, want intact %t and %d anchors checked", res, tc.intact, len(tc.anchors))
			}
			if tc.problem != "" && (res.Anchors[len(res.Anchors)-1].Held || !strings.Contains(res.Summary(), tc.problem)) {
				t.Errorf("Verify = %+v (%s), want the last anchor not held: %s", res.Anchors, res.Summary(), tc.problem)
			}
		})
	}
	for _, bad := range []string{"3", "0:" + anchor.Hash, "x:" + anchor.Hash, "3:" + strings.ToUpper(anchor.Hash), "3:abc"} {
		if _, err := ParseAnchor(bad); err == nil {
			t.Errorf("ParseAnchor(%q) = nil error, want refused", bad)
		}
	}
	if a, err := ParseAnchor(fmt.Sprintf("%d:%s", anchor.Seq, anchor.Hash)); err != nil || a != anchor {
		t.Errorf("ParseAnchor of a verification's head = %v, %v", a, err)
	}
}

// TestVerifyAnchorPastBreak: an anchor after the first broken link is not
// checked (the walk stops at the break), and is said so, not "cut off":
// its record is still there (probe p39 F2). An anchor before the break is
// checked; one past the end of a cut chain is still "cut off".
func TestVerifyAnchorPastBreak(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name    string
		tamper  string
		anchor  int64 // the anchored record (its hash from before the tamper)
		held    bool
		problem string
	}{
		{"after the break", `UPDATE audit_chain SET hash = '` + strings.Repeat("0", 64) + `' WHERE seq = 2`, 4, false,
			"anchor 4 not checked: the chain is broken at record 2, before this anchor"},
		{"at the break", `UPDATE audit_chain SET hash = '` + strings.Repeat("0", 64) + `' WHERE seq = 2`, 2, false,
			"anchor 2 not checked: the chain is broken at record 2, this anchor's record"},
		{"before the break", `UPDATE audit_chain SET hash = '` + strings.Repeat("0", 64) + `' WHERE seq = 3`, 2, true, ""},
		{"cut off", `DELETE FROM audit_chain WHERE seq > 3`, 4, false,
			"anchor 4 not held: the chain holds no record 4 (it ends at record 3): records were cut off"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			db := filepath.Join(t.TempDir(), "kg.db")
			st, err := sqlite.Open(ctx, db, sqlite.Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer st.Close()
			hashes := map[int64]string{}
			for i := 1; i <= 5; i++ {
				id := fmt.Sprintf("ae%d", i)
				body := fmt.Appendf(nil, `{"resourceType":"AuditEvent","id":%q}`, id)
				appendAuditEvent(t, st, id, body)
				res, err := Verify(ctx, st, time.Now())
				if err != nil || !res.Intact {
					t.Fatalf("Verify = %+v, %v", res, err)
				}
				hashes[res.HeadSeq] = res.HeadHash
			}
			raw, err := sql.Open("sqlite", "file:"+db+"?_pragma=busy_timeout(10000)") // the store writes meanwhile (its audit index)
			if err != nil {
				t.Fatal(err)
			}
			defer raw.Close()
			if _, err := raw.Exec(tc.tamper); err != nil {
				t.Fatalf("%s: %v", tc.tamper, err)
			}
			res, err := Verify(ctx, st, time.Now(), Anchor{Seq: tc.anchor, Hash: hashes[tc.anchor]})
			if err != nil {
				t.Fatal(err)
			}
			if res.Intact || len(res.Anchors) != 1 || res.Anchors[0].Held != tc.held {
				t.Fatalf("Verify = %+v, want not intact, the anchor held %t", res, tc.held)
			}
			if s := res.Summary(); tc.problem != "" && !strings.Contains(s, tc.problem) || tc.held && strings.Contains(s, "anchor") {
				t.Errorf("Verify(...).Summary() = %q, want %q", s, tc.problem)
			}
		})
	}
}

// TestVerifyIndexNote: when the index rows are not compared, the note
// says why and what to do: reindex after an upgrade (an older build's
// rows), the newer release's own check after a rollback (reindex would
// be refused).
func TestVerifyIndexNote(t *testing.T) {
	for _, tc := range []struct {
		name      string
		version   int
		want, not string
	}{
		{"older index", search.IndexVersion - 1, "(run reindex)", "newer release"},
		{"newer index", search.IndexVersion + 1, "a newer release wrote it: run that release's audit verify", "run reindex"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "kg.db"), sqlite.Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer st.Close()
			ev := newEvent("", audit.Record{ID: "ae1", Recorded: time.Now(), Interaction: "read", Status: 200, ClientID: "c",
				ClientAddr: "127.0.0.1", Observer: "kg", RequestID: "r", TraceID: "t"})
			if err := st.Write(ctx, ev.put); err != nil {
				t.Fatal(err)
			}
			if err := st.MarkIndexed(ctx, tc.version); err != nil {
				t.Fatal(err)
			}
			res, err := Verify(ctx, st, time.Now())
			if err != nil {
				t.Fatal(err)
			}
			if res.IndexChecked || !strings.Contains(res.IndexNote, tc.want) || strings.Contains(res.IndexNote, tc.not) {
				t.Errorf("Verify: IndexChecked %v, note %q; want not checked, saying %q and not %q", res.IndexChecked, res.IndexNote, tc.want, tc.not)
			}
		})
	}
}

// TestVerificationDescribe: the audit-verify AuditEvent's description
// names each kind of fault with its count: an AuditEvent served otherwise
// than chained is not a Provenance or a delivery attempt stored otherwise
// (probe p39 F8: "1 AuditEvents served otherwise than chained" counted a
// delivery payload's fault).
func TestVerificationDescribe(t *testing.T) {
	tests := []struct {
		name  string
		build func(v *AuditVerification)
		want  string
	}{
		{"intact", func(*AuditVerification) {}, "audit chain intact=true, 24 records verified"},
		{"from a trusted head", func(v *AuditVerification) { v.From = &Anchor{Seq: 166} },
			"audit chain intact=true, 24 records verified from record 166 (a trusted earlier head; those before it not checked now)"},
		{"an attempt", func(v *AuditVerification) {
			v.lineageFault(3, "ae3", "delivery k7q2xw4mbn3ra attempt 1", "payload differs")
		}, "audit chain intact=false, 24 records verified, 1 delivery attempt stored otherwise than its AuditEvent says"},
		{"each kind", func(v *AuditVerification) {
			v.BrokenAt = 25
			v.fault(4, "ae4", "shadow version")
			v.fault(5, "ae5", "index row")
			v.unchainedFault("ae9", true)
			v.lineageFault(3, "ae3", "Provenance/rec-1/_history/1", "differs")
			v.lineageFault(6, "ae6", "delivery k7q2xw4mbn3ra attempt 2", "differs")
			v.lineageFault(7, "ae7", "delivery k7q2xw4mbn3ra attempt 3", "differs")
			v.Anchors = []AnchorCheck{{Held: true}, {}, {NotChecked: true}, {NotChecked: true}}
		}, "audit chain intact=false, 24 records verified, broken at record 25, 2 AuditEvents served otherwise than chained, " +
			"1 AuditEvent stored but not in the chain, 1 Provenance version stored otherwise than its AuditEvent says, " +
			"2 delivery attempts stored otherwise than their AuditEvents say, 1 anchor not held, 2 anchors not checked"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			v := &AuditVerification{Intact: true, Records: 24}
			tc.build(v)
			if v.BrokenAt > 0 || len(v.Anchors) > 1 {
				v.Intact = false
			}
			if got := v.Describe(); got != tc.want {
				t.Errorf("Describe() = %q, want %q", got, tc.want)
			}
		})
	}
}

// appendAuditEvent stores the AuditEvent body as id and chains it, as the
// audit log does, in one write.
func appendAuditEvent(t *testing.T, st store.Store, id string, body []byte) {
	t.Helper()
	if err := st.Write(context.Background(), func(tx store.Tx) error { return putAuditEvent(tx, id, body) }); err != nil {
		t.Fatal(err)
	}
}

// putAuditEvent stores an AuditEvent in tx and chains it.
func putAuditEvent(tx store.Tx, id string, body []byte) error {
	// Stored at its recorded time, as the audit log stores it (a body
	// without one: at no time).
	r := &store.Resource{Type: "AuditEvent", ID: id, Version: 1, LastUpdated: recordedOf(body), Body: body}
	if err := tx.Put(r, nil); err != nil {
		return err
	}
	return tx.AppendAudit(id, body, nil)
}
