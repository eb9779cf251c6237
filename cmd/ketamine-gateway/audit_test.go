package main

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
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
	raw, err := sql.Open("sqlite", "file:"+db+"?_pragma=busy_timeout(10000)") // the store writes meanwhile (its audit index)
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

// TestAuditExportCLI: audit export writes the chain's slice for a period
// with its links and manifest (to --out or standard output); audit
// verify-export checks such a file without the database, exit 0 when it
// links and holds each --expect (one at least), 1 when a record was
// changed, an anchor is not held or none was given, 2 for a bad command line, 3 when the file cannot be read
// (p39 F6).
func TestAuditExportCLI(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	db := filepath.Join(dir, "kg.db")
	st, err := sqlite.Open(ctx, db, sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	for i, at := range []string{"2026-12-01T08:00:00.000Z", "2026-12-02T08:00:00.000Z", "2026-12-03T08:00:00.000Z"} {
		id := "ae" + string(rune('1'+i))
		body := []byte(`{"resourceType":"AuditEvent","id":"` + id + `","recorded":"` + at + `"}`)
		recorded, _ := time.Parse(time.RFC3339, at) // stored at its recorded time, as the audit log stores it
		err := st.Write(ctx, func(tx store.Tx) error {
			if err := tx.Put(&store.Resource{Type: "AuditEvent", ID: id, Version: 1, LastUpdated: recorded, Body: body}, nil); err != nil {
				return err
			}
			return tx.AppendAudit(id, body, nil)
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	st.Close()
	out, errOut, code := cli(t, "", "audit", "verify", "--db", db)
	var v struct{ HeadSeq int64 }
	if code != 0 || json.Unmarshal([]byte(out), &v) != nil || v.HeadSeq != 3 {
		t.Fatalf("audit verify = exit %d, %s %s", code, out, errOut)
	}
	file := filepath.Join(dir, "export.ndjson")
	if out, errOut, code := cli(t, "", "audit", "export", "--db", db, "--since", "2026-12-02", "--out", file); code != 0 || out != "" {
		t.Fatalf("audit export = exit %d, %q %s", code, out, errOut)
	}
	stdout, _, code := cli(t, "", "audit", "export", "--db", db, "--since", "2026-12-02")
	b, err := os.ReadFile(file)
	if err != nil || code != 0 {
		t.Fatal(code, err)
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[0], `{"seq":2,`) || !strings.HasPrefix(lines[2], `{"manifest":`) {
		t.Fatalf("export = %s, want records 2 and 3 and the manifest", b)
	}
	var l auditlog.ExportLine
	if err := json.Unmarshal([]byte(lines[0]), &l); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(stdout, `"manifest"`) || !strings.HasPrefix(stdout, lines[0]) {
		t.Errorf("audit export to standard output = %s, want the same lines", stdout)
	}
	// The verification saved as JSON anchors the export (--expect @FILE).
	verification := filepath.Join(dir, "verify.json")
	if err := os.WriteFile(verification, []byte(out), 0o600); err != nil {
		t.Fatal(err)
	}
	notJSON := filepath.Join(dir, "not.json")
	if err := os.WriteFile(notJSON, []byte("not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	changed := filepath.Join(dir, "changed.ndjson")
	if err := os.WriteFile(changed, []byte(strings.Replace(string(b), `"id":"ae3","recorded":"2026`, `"id":"ae3","recorded":"2025`, 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	// A line's id that is not its resource's (the hash binds the
	// resource's), and a manifest that alone is wrong (no record is at
	// fault: the message names none).
	bogusID := filepath.Join(dir, "bogus-id.ndjson")
	if err := os.WriteFile(bogusID, []byte(strings.Replace(string(b), `{"seq":3,"id":"ae3"`, `{"seq":3,"id":"bogus"`, 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	miscounted := filepath.Join(dir, "miscounted.ndjson")
	if err := os.WriteFile(miscounted, []byte(strings.Replace(string(b), `"records":2`, `"records":3`, 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{file}, exitInvalid, "not anchored: proves internal consistency only"},
		{[]string{"--expect", "1:" + l.Prev, bogusID}, exitInvalid, "broken at record 3: line 2: its id is not record 3's resource's id"},
		{[]string{"--expect", "1:" + l.Prev, miscounted}, exitInvalid, "audit verify-export: the manifest says 3 records, the file holds 2"},
		{[]string{file, "--expect", "1:" + l.Prev}, 0, `"anchored": true`},
		{[]string{"--expect", "2:" + l.Hash, file}, 0, `"held": true`},
		{[]string{file, "--expect", "1:" + l.Hash}, exitInvalid, "rewritten"},
		{[]string{changed}, exitInvalid, "record 3 or its hash was changed"},
		{[]string{filepath.Join(dir, "nope.ndjson")}, exitUnchecked, "could not read"},
		{[]string{}, exitUsage, "FILE"},
		{[]string{file, "--expect", "1:zz"}, exitUsage, "64 lowercase hexadecimal"},
		{[]string{"--expect", "@" + verification, file}, 0, `"anchored": true`},
		{[]string{"--expect", "@" + notJSON, file}, exitUsage, "not a verification's JSON"},
	} {
		out, errOut, code := cli(t, "", append([]string{"audit", "verify-export"}, tc.args...)...)
		if code != tc.code || !strings.Contains(out+errOut, tc.want) {
			t.Errorf("audit verify-export %v = exit %d, %s %s; want %d and %q", tc.args, code, out, errOut, tc.code, tc.want)
		}
	}
	if _, errOut, code := cli(t, "", "audit", "export", "--db", db, "--since", "soon"); code != exitUsage || !strings.Contains(errOut, "not a time") {
		t.Errorf("audit export --since soon = exit %d %s, want %d", code, errOut, exitUsage)
	}
	// A period that has not ended is refused, saying when it can be.
	if _, errOut, code := cli(t, "", "audit", "export", "--db", db, "--until", "1m"); code != exitUsage || !strings.Contains(errOut, "can be exported from") {
		t.Errorf("audit export --until 1m = exit %d %s, want %d saying when the period can be exported", code, errOut, exitUsage)
	}
}

// TestAuditVerifyFromCLI: audit verify --from a saved verification's head
// checks the records from it on (saying that those before were not
// checked now), finds a record changed after it (exit 1), refuses a head
// the chain does not hold (exit 1) and a malformed one or an --expect
// before it (exit 2).
func TestAuditVerifyFromCLI(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	db := filepath.Join(dir, "kg.db")
	st, err := sqlite.Open(ctx, db, sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	add := func(from, to int) {
		for i := from; i <= to; i++ {
			id := fmt.Sprintf("ae%d", i)
			body := []byte(`{"resourceType":"AuditEvent","id":"` + id + `"}`)
			err := st.Write(ctx, func(tx store.Tx) error {
				if err := tx.Put(&store.Resource{Type: "AuditEvent", ID: id, Version: 1, Body: body}, nil); err != nil {
					return err
				}
				return tx.AppendAudit(id, body, nil)
			})
			if err != nil {
				t.Fatal(err)
			}
		}
	}
	add(1, 4)
	saved, errOut, code := cli(t, "", "audit", "verify", "--db", db)
	if code != 0 {
		t.Fatalf("audit verify = exit %d, %s %s", code, saved, errOut)
	}
	verification := filepath.Join(dir, "verify.json")
	if err := os.WriteFile(verification, []byte(saved), 0o600); err != nil {
		t.Fatal(err)
	}
	var head struct {
		HeadSeq  int64
		HeadHash string
	}
	if err := json.Unmarshal([]byte(saved), &head); err != nil {
		t.Fatal(err)
	}
	// A verification that found the trail not intact, or a head without
	// its verdict, is no trusted start (--expect still takes its head).
	notIntact := filepath.Join(dir, "not-intact.json")
	noVerdict := filepath.Join(dir, "no-verdict.json")
	for file, verdict := range map[string]string{notIntact: `"intact":false,`, noVerdict: ""} {
		b := fmt.Sprintf(`{%s"records":4,"headSeq":%d,"headHash":%q,"faultCount":1}`, verdict, head.HeadSeq, head.HeadHash)
		if err := os.WriteFile(file, []byte(b), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	add(5, 7)
	st.Close()
	other := "4:" + strings.Repeat("ab", 32)
	for _, tc := range []struct {
		name      string
		args      []string
		code      int
		want, err string
	}{
		{"from a saved verification", []string{"--from", "@" + verification}, 0, `"records": 4`, "records 1 to 3 were not checked now"},
		{"from its head", []string{"--from", fmt.Sprintf("%d:%s", head.HeadSeq, head.HeadHash), "--expect", fmt.Sprintf("%d:%s", head.HeadSeq, head.HeadHash)},
			0, `"from": {`, "not checked now"},
		{"a head the chain does not hold", []string{"--from", other}, exitInvalid, `"brokenAt": 4`, "another hash than the anchor"},
		{"malformed", []string{"--from", "4"}, exitUsage, "", "an anchor is <record number>:<hash>"},
		{"an anchor before it", []string{"--from", "@" + verification, "--expect", "2:" + strings.Repeat("ab", 32)}, exitUsage, "", "an anchor before from"},
		{"twice", []string{"--from", "@" + verification, "--from", "@" + verification}, exitUsage, "", "given once"},
		{"a verification not intact", []string{"--from", "@" + notIntact}, exitUsage, "", "vouches for nothing"},
		{"a verification without its verdict", []string{"--from", "@" + noVerdict}, exitUsage, "", "vouches for nothing"},
		{"expecting a verification's head not intact", []string{"--expect", "@" + notIntact}, 0, `"held": true`, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, errOut, code := cli(t, "", append([]string{"audit", "verify", "--db", db}, tc.args...)...)
			if code != tc.code || !strings.Contains(out, tc.want) || !strings.Contains(errOut, tc.err) {
				t.Errorf("audit verify %v = exit %d, %s %s; want %d, %q and %q", tc.args, code, out, errOut, tc.code, tc.want, tc.err)
			}
		})
	}
	raw, err := sql.Open("sqlite", "file:"+db+"?_pragma=busy_timeout(10000)")
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	if _, err := raw.Exec(`UPDATE resources SET body = CAST('{"resourceType":"AuditEvent","id":"ae6","x":1}' AS BLOB) WHERE id = 'ae6'`); err != nil {
		t.Fatal(err)
	}
	if out, errOut, code := cli(t, "", "audit", "verify", "--db", db, "--from", "@"+verification); code != exitInvalid || !strings.Contains(errOut, "broken at record 6") {
		t.Errorf("audit verify --from after a record after it changed = exit %d, %s %s; want 1, broken at record 6", code, out, errOut)
	}
}

// TestAuditHelpNamesRealFlags: every "audit verify --FLAG" that the audit
// commands' help texts and messages tell a user to run is a flag audit
// verify takes (the help once said "audit verify --json", exit 2: p41 F5).
func TestAuditHelpNamesRealFlags(t *testing.T) {
	verifyHelp, _, _ := cli(t, "", "audit", "verify", "-h")
	dir := t.TempDir()
	notJSON := filepath.Join(dir, "not.json")
	if err := os.WriteFile(notJSON, []byte("{}"), 0o600); err != nil {
		t.Fatal(err)
	}
	var texts []string
	for _, args := range [][]string{
		{"audit", "verify", "-h"},
		{"audit", "export", "-h"},
		{"audit", "verify-export", "-h"},
		{"audit", "verify-export", "--expect", "@" + notJSON, "x.ndjson"},
		{"audit", "verify", "--db", filepath.Join(dir, "kg.db"), "--from", "@" + notJSON},
	} {
		out, errOut, _ := cli(t, "", args...)
		texts = append(texts, out+errOut)
	}
	mention := regexp.MustCompile(`audit verify (--[a-z-]+)`)
	for _, text := range texts {
		for _, m := range mention.FindAllStringSubmatch(text, -1) {
			if !strings.Contains(verifyHelp, "\n  "+m[1]+" ") && !strings.Contains(verifyHelp, "\n  "+m[1]+"\n") {
				t.Errorf("a help text or message says %q, a flag audit verify does not take (its flags:\n%s)", m[0], verifyHelp)
			}
		}
	}
	if !strings.Contains(strings.Join(texts, ""), "the output of audit verify") {
		t.Errorf("the messages no longer say where a verification's JSON comes from:\n%s", strings.Join(texts, "\n"))
	}
}
