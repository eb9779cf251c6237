package auditlog

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"
)

// TestVerifyExportCrafted: VerifyExport over files crafted from a real
// export. Every field of a line is hashed (prev, resource, body64) or
// checked against what is (id: the resource's id; seq: consecutive, from
// the anchor), so a changed id, a field the hash does not cover or a key
// given twice is a finding; and each kind of break is named for what it
// is: a duplicated line, records out of order, a file whose first or last
// record is missing against its manifest, records outside the manifest's
// period (p41 F7).
func TestVerifyExportCrafted(t *testing.T) {
	t0 := time.Date(2026, 12, 6, 8, 0, 0, 0, time.UTC)
	st, hashes := exportChain(t, t0)
	export := func(since, until time.Time) []string {
		t.Helper()
		var buf bytes.Buffer
		if _, err := Export(context.Background(), st, since, until, t0.Add(time.Hour), &buf, nil); err != nil {
			t.Fatal(err)
		}
		return strings.SplitAfter(strings.TrimSuffix(buf.String(), "\n"), "\n")
	}
	all := export(time.Time{}, time.Time{}) // records 1 to 6, the manifest
	first := export(time.Time{}, t0.Add(2*time.Minute))
	second := export(t0.Add(2*time.Minute), time.Time{})
	period := export(t0.Add(time.Minute), t0.Add(4*time.Minute)) // records 2 to 5
	join := func(ls ...[]string) string {
		var b strings.Builder
		for _, l := range ls {
			for _, s := range l {
				b.WriteString(strings.TrimSuffix(s, "\n") + "\n")
			}
		}
		return b.String()
	}
	edit := func(lines []string, i int, old, new string) []string {
		t.Helper()
		out := append([]string{}, lines...)
		if !strings.Contains(out[i], old) {
			t.Fatalf("line %d %s holds no %s", i, out[i], old)
		}
		out[i] = strings.Replace(out[i], old, new, 1)
		return out
	}
	for _, tc := range []struct {
		name     string
		export   string
		brokenAt int64
		reason   string
	}{
		{"intact", join(all), 0, ""},
		{"an id changed", join(edit(all, 2, `"id":"ae3","prev"`, `"id":"bogus","prev"`)), 3, "line 3: its id is not record 3's resource's id"},
		{"an id given twice", join(edit(all, 2, `"id":"ae3","prev"`, `"id":"bogus","id":"ae3","prev"`)), 3, `line 3 gives "id" twice`},
		{"a field the hash does not cover", join(edit(all, 2, `"id":"ae3","prev"`, `"id":"ae3","note":"reviewed","prev"`)), 3, `line 3 has a field "note"`},
		{"both resource and body64", join(edit(all, 2, `"resource":`, `"body64":"",  "resource":`)), 3, "line 3 has both resource and body64"},
		{"a manifest line with more", join(edit(all, 6, `{"manifest":`, `{"seq":7,"manifest":`)), 7, `line 7, the manifest, has a field "seq"`},
		{"a duplicated line", join(all[:2], all[1:]), 2, "line 3 repeats record 2: an export holds each record once"},
		{"records out of order", join(second[:len(second)-1], first), 1, "line 5 holds record 1 after record 6: the records are out of order"},
		{"a record left out", join(all[:2], all[3:]), 4, "records 3 to 3 are missing"},
		{"the first line dropped", join(all[1:]), 1, "the file starts at record 2, the manifest says it starts at record 1"},
		{"the last line dropped", join(all[:5], all[6:]), 6, "the file ends at record 5, the manifest says it ends at record 6"},
		{"the manifest's count edited", join(edit(all, 6, `"records":6`, `"records":7`)), 0, "the manifest says 7 records, the file holds 6"},
		{"the manifest's last hash edited", join(edit(all, 6, `"lastHash":"`+hashes[6], `"lastHash":"`+hashes[5])), 6, "the manifest gives record 6's hash otherwise"},
		{"no record, the manifest naming some", join(all[6:]), 1, "the file holds no record, the manifest names records 1 to 6"},
		// The first and last records of a period's export are recorded
		// in it (the slice runs from the first recorded in it to the
		// last): a manifest whose period was edited says otherwise.
		{"the period's start edited", join(edit(period, 4, `"since":"2026-12-06T08:01:00Z"`, `"since":"2026-12-06T08:02:00Z"`)), 2, "record 2, the first, was recorded at 2026-12-06T08:01:00Z, outside the manifest's period"},
		{"the period's end edited", join(edit(period, 4, `"until":"2026-12-06T08:04:00Z"`, `"until":"2026-12-06T08:03:00Z"`)), 5, "record 5, the last, was recorded at 2026-12-06T08:03:00Z, outside the manifest's period"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := VerifyExport(strings.NewReader(tc.export), Anchor{Seq: 1, Hash: hashes[1]})
			if err != nil {
				t.Fatal(err)
			}
			if c.BrokenAt != tc.brokenAt || !strings.Contains(c.Reason, tc.reason) || (tc.reason == "") != (c.Reason == "") {
				t.Errorf("VerifyExport: broken at %d (%s), want %d (%s)\n%s", c.BrokenAt, c.Reason, tc.brokenAt, tc.reason, tc.export)
			}
			if c.Intact != (tc.reason == "") {
				t.Errorf("VerifyExport: intact = %t, want %t", c.Intact, tc.reason == "")
			}
		})
	}
}
