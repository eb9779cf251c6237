package auditlog

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/audit"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store/sqlite"
)

// exportChain is a database whose chain holds six AuditEvents recorded at
// t0 plus these minutes (record 4 recorded before record 3: a request that
// committed late), and the chain's hashes by record.
func exportChain(t *testing.T, t0 time.Time) (store.Store, map[int64]string) {
	t.Helper()
	ctx := context.Background()
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "kg.db"), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	for i, min := range []int{0, 1, 2, 1, 3, 4} {
		id := fmt.Sprintf("ae%d", i+1)
		body := fmt.Appendf(nil, `{"resourceType":"AuditEvent","id":%q,"recorded":%q,"outcomeDesc":"a <b> & c"}`, id,
			t0.Add(time.Duration(min)*time.Minute).Format("2006-01-02T15:04:05.000Z"))
		appendAuditEvent(t, st, id, body)
	}
	hashes := map[int64]string{}
	if err := st.AuditChainAfter(ctx, 0, func(e audit.ChainEntry) error { hashes[e.Seq] = e.Hash; return nil }); err != nil {
		t.Fatal(err)
	}
	return st, hashes
}

// TestExport: a period's export is the chain's contiguous slice from the
// first record recorded in it to the last, in chain order (record 4,
// recorded before the period, is inside it), each line with its record
// number, prev and hash, its body as hashed, and a manifest linking it to
// the record before it and naming the head; VerifyExport checks it
// without the database and finds every change, cut and wrong anchor
// (p39 F6).
func TestExport(t *testing.T) {
	t0 := time.Date(2026, 12, 6, 8, 0, 0, 0, time.UTC)
	st, hashes := exportChain(t, t0)
	for _, tc := range []struct {
		name         string
		since, until time.Time
		seqs         []int64
	}{
		{"all", time.Time{}, time.Time{}, []int64{1, 2, 3, 4, 5, 6}},
		{"a period, a late record inside it", t0.Add(2 * time.Minute), t0.Add(4 * time.Minute), []int64{3, 4, 5}},
		{"a period whose last record committed late", t0.Add(time.Minute), t0.Add(2 * time.Minute), []int64{2, 3, 4}},
		{"nothing", t0.Add(time.Hour), time.Time{}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			m, err := Export(context.Background(), st, tc.since, tc.until, t0.Add(time.Hour), &buf, nil)
			if err != nil {
				t.Fatal(err)
			}
			lines := strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n")
			var got []int64
			for _, l := range lines[:len(lines)-1] {
				var e ExportLine
				if err := json.Unmarshal([]byte(l), &e); err != nil {
					t.Fatalf("line %s: %v", l, err)
				}
				if e.Hash != hashes[e.Seq] || e.Prev != hashes[e.Seq-1] || audit.Link(e.Prev, e.Resource) != e.Hash {
					t.Errorf("line %d = %s, want hash %s, prev %s, the resource as hashed", e.Seq, l, hashes[e.Seq], hashes[e.Seq-1])
				}
				got = append(got, e.Seq)
			}
			if fmt.Sprint(got) != fmt.Sprint(tc.seqs) {
				t.Errorf("records exported = %v, want %v", got, tc.seqs)
			}
			if !strings.HasPrefix(lines[len(lines)-1], `{"manifest":`) || m.HeadSeq != 6 || m.HeadHash != hashes[6] || m.Records != int64(len(tc.seqs)) {
				t.Errorf("manifest = %s, want records %d and head 6:%s", lines[len(lines)-1], len(tc.seqs), hashes[6])
			}
			if len(tc.seqs) > 0 && (m.Prev != hashes[tc.seqs[0]-1] || m.LastHash != hashes[tc.seqs[len(tc.seqs)-1]]) {
				t.Errorf("manifest prev %q last %q, want %q and %q", m.Prev, m.LastHash, hashes[tc.seqs[0]-1], hashes[tc.seqs[len(tc.seqs)-1]])
			}
			c, err := VerifyExport(bytes.NewReader(buf.Bytes()))
			if err != nil || !c.Intact {
				t.Errorf("VerifyExport = %+v, %v, want intact", c, err)
			}
		})
	}

	var buf bytes.Buffer
	if _, err := Export(context.Background(), st, t0.Add(time.Minute), t0.Add(4*time.Minute), t0, &buf, nil); err != nil {
		t.Fatal(err)
	}
	export := buf.String() // records 2 to 5, prev record 1's hash, head 6
	lines := strings.SplitAfter(export, "\n")
	anchor := func(seq int64, hash string) Anchor { return Anchor{Seq: seq, Hash: hash} }
	for _, tc := range []struct {
		name     string
		export   string
		anchors  []Anchor
		brokenAt int64
		reason   string
		held     []bool
	}{
		{"intact, anchored at the record before it and inside it", export,
			[]Anchor{anchor(1, hashes[1]), anchor(3, hashes[3])}, 0, "", []bool{true, true}},
		// The manifest's headHash is bound by no hash of the file: an
		// anchor at the head of an export that does not hold the head
		// would be held on an unchecked word.
		{"an anchor at the head, past the records", export, []Anchor{anchor(6, hashes[6])}, 0, "", []bool{false}},
		{"a changed record", strings.Replace(export, `"id":"ae3","recorded"`, `"id":"ae3","recorded" `, 1), nil, 3, "was changed", nil},
		{"a changed record with its hash recomputed", rehash(t, lines, 1), nil, 4, "prev is not record 3's hash", nil},
		{"a record left out", lines[0] + lines[2] + lines[3] + lines[4], nil, 4, "records 3 to 3 are missing", nil},
		{"cut off", lines[0] + lines[1], nil, 4, "no manifest", nil},
		{"an anchor it contradicts", export, []Anchor{anchor(1, hashes[2])}, 0, "", []bool{false}},
		{"an anchor it cannot show", export, []Anchor{anchor(5, hashes[5]), anchor(7, hashes[6])}, 0, "", []bool{true, false}},
		// Record 1 has nothing before it: a file whose record 1 links to
		// something was cut from another chain or relabelled.
		{"record 1 with a prev", forgedFirst(hashes[1]), nil, 1, "record 1's prev is not empty", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := VerifyExport(strings.NewReader(tc.export), tc.anchors...)
			if err != nil {
				t.Fatal(err)
			}
			if c.BrokenAt != tc.brokenAt || !strings.Contains(c.Reason, tc.reason) {
				t.Errorf("VerifyExport: broken at %d (%s), want %d (%s)", c.BrokenAt, c.Reason, tc.brokenAt, tc.reason)
			}
			var held []bool
			for _, a := range c.Anchors {
				held = append(held, a.Held)
			}
			if fmt.Sprint(held) != fmt.Sprint(tc.held) {
				t.Errorf("anchors held = %v (%+v), want %v", held, c.Anchors, tc.held)
			}
			want := tc.brokenAt == 0 && !strings.Contains(fmt.Sprint(tc.held), "false")
			if c.Intact != want {
				t.Errorf("intact = %t, want %t", c.Intact, want)
			}
			// Anchored: some anchor held, whatever else failed (an
			// export with none proves only its own consistency).
			if anchored := strings.Contains(fmt.Sprint(tc.held), "true"); c.Anchored != anchored {
				t.Errorf("anchored = %t, want %t", c.Anchored, anchored)
			}
		})
	}
}

// rehash changes line i's record and computes its hash again: the next
// record's prev no longer links.
func rehash(t *testing.T, lines []string, i int) string {
	t.Helper()
	var e ExportLine
	if err := json.Unmarshal([]byte(lines[i]), &e); err != nil {
		t.Fatal(err)
	}
	body := bytes.Replace(e.Resource, []byte(`a <b>`), []byte(`a <B>`), 1)
	l := fmt.Sprintf(`{"seq":%d,"id":%q,"prev":%q,"hash":%q,"resource":%s}`+"\n", e.Seq, e.ID, e.Prev, audit.Link(e.Prev, body), body)
	out := append([]string{}, lines...)
	out[i] = l
	return strings.Join(out, "")
}

// forgedFirst is an export of one record numbered 1 whose prev is not
// empty, its hash and manifest consistent with that prev.
func forgedFirst(prev string) string {
	body := `{"resourceType":"AuditEvent","id":"x","recorded":"2026-12-06T08:00:00.000Z"}`
	h := audit.Link(prev, []byte(body))
	return fmt.Sprintf(`{"seq":1,"id":"x","prev":%q,"hash":%q,"resource":%s}`+"\n", prev, h, body) +
		fmt.Sprintf(`{"manifest":{"exportedAt":"2026-12-06T09:00:00Z","records":1,"firstSeq":1,"lastSeq":1,"prev":%q,"lastHash":%q,"headSeq":1,"headHash":%q}}`+"\n", prev, h, h)
}
