package auditlog

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/audit"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
)

// An audit export is the audit chain's slice for a period, for a reviewer
// who verifies it without the database (docs/audit.md, "A verifiable
// export"): NDJSON, one ExportLine per chained AuditEvent in chain order,
// then one line {"manifest": ExportManifest}. Each line's hash is
// audit.Link(prev, resource's bytes), the chain's own formula; the
// manifest's prev links the slice to the record before it (an anchor a
// reviewer kept), and its head is the chain head when the export began.

// ExportLine is one chained AuditEvent of an export: its record number,
// id, the hash of the record before it, its own hash, and its stored JSON
// exactly as hashed (Resource; Body64, base64, instead for a stored body
// that is not one line of JSON, so that the bytes stay the hashed ones).
type ExportLine struct {
	Seq      int64           `json:"seq"`
	ID       string          `json:"id"`
	Prev     string          `json:"prev"`
	Hash     string          `json:"hash"`
	Resource json.RawMessage `json:"resource,omitempty"`
	Body64   []byte          `json:"body64,omitempty"`
}

// ExportManifest closes an export: what it holds and how it links.
type ExportManifest struct {
	Since      string `json:"since,omitempty"`
	Until      string `json:"until,omitempty"`
	ExportedAt string `json:"exportedAt"`
	Records    int64  `json:"records"`
	// FirstSeq and LastSeq are the records exported (0 when none); Prev
	// is the hash of record FirstSeq-1 ("" when FirstSeq is 1), LastHash
	// record LastSeq's.
	FirstSeq int64  `json:"firstSeq,omitempty"`
	LastSeq  int64  `json:"lastSeq,omitempty"`
	Prev     string `json:"prev"`
	LastHash string `json:"lastHash,omitempty"`
	// HeadSeq and HeadHash are the chain head when the export began (the
	// export's own AuditEvent comes after it).
	HeadSeq  int64  `json:"headSeq"`
	HeadHash string `json:"headHash"`
}

// exportSlack is how long after until the walk goes on looking for
// records recorded before until: records are chained in commit order, and
// a request's AuditEvent is recorded when the request ends, so concurrent
// requests' times interleave by up to a request's commit.
const exportSlack = 5 * time.Minute

// ExportableFrom is when a period ending at until can be exported: until
// plus the commit slack. Before then a record made just before until may
// commit after the export read the head, and it would be in neither this
// export nor the next (which starts at until), so callers refuse it.
func ExportableFrom(until time.Time) time.Time { return until.Add(exportSlack) }

// Export writes the audit chain's slice for [since, until) (a zero time:
// unbounded) to w: every record from the first recorded at or after
// since to the last recorded before until, in chain order, each whatever
// its own time (a slice is contiguous, or it would not link), then the
// manifest, which it also returns. It reads the chain as stored and
// checks nothing (Verify does; VerifyExport checks the export). A
// database that cannot be read is an error, as is w failing; an export
// cut off by one has no manifest, which VerifyExport reports. progress,
// if not nil, is told the number of chain records read so far, every
// 1,000 records and at the end.
func Export(ctx context.Context, st store.Store, since, until, now time.Time, w io.Writer, progress func(read int64)) (ExportManifest, error) {
	return export(ctx, st, since, until, now, w, progress, nil)
}

// ExportNaming is Export for a request whose AuditEvent (sc) names what
// the export disclosed, as a search of the same AuditEvents would: the
// patients each exported AuditEvent names, each in its tenant's share of
// an all-tenant request (the tenant the Patient is stored in; a Patient
// deleted or not stored is named in the whole AuditEvent only).
func ExportNaming(ctx context.Context, st store.Store, sc *Scope, since, until, now time.Time, w io.Writer) (ExportManifest, error) {
	seen := map[string]bool{}
	var patients []string
	m, err := export(ctx, st, since, until, now, w, nil, func(e audit.ChainEntry) {
		for _, p := range PatientsIn("AuditEvent", e.ID, e.Body) {
			if !seen[p] {
				seen[p] = true
				patients = append(patients, p)
			}
		}
	})
	if err != nil {
		return m, err
	}
	for len(patients) > 0 {
		batch := patients[:min(len(patients), 500)]
		patients = patients[len(batch):]
		stored, rerr := st.ReadCurrent(ctx, batch)
		if rerr != nil {
			return m, rerr
		}
		tenants := map[string]string{}
		for _, r := range stored {
			tenants["Patient/"+r.ID] = r.Tenant
		}
		for _, p := range batch {
			if t, ok := tenants[p]; ok {
				sc.ConcernIn(t, p)
			} else {
				sc.Concern(p)
			}
		}
	}
	return m, nil
}

// export is Export calling seen, when not nil, with each record written.
func export(ctx context.Context, st store.Store, since, until, now time.Time, w io.Writer, progress func(read int64), seen func(audit.ChainEntry)) (ExportManifest, error) {
	m := ExportManifest{ExportedAt: now.UTC().Format(time.RFC3339Nano)}
	if !since.IsZero() {
		m.Since = since.UTC().Format(time.RFC3339Nano)
	}
	if !until.IsZero() {
		m.Until = until.UTC().Format(time.RFC3339Nano)
	}
	var err error
	m.HeadSeq, m.HeadHash, err = st.AuditChainHead(ctx)
	headless := errors.Is(err, store.ErrNotFound) // the head's record is missing: Verify's finding
	if err != nil && !headless {
		return m, fmt.Errorf("audit export: chain head: %w", err)
	}
	bw := bufio.NewWriter(w)
	var (
		prev    string               // the hash of the record before the one walked
		started bool                 // a record of the period was met
		pending []audit.ChainEntry   // records after the last of the period so far
		pprev   string               // the hash before pending[0]
		stop    = errors.New("stop") // the walk is past the period
	)
	emit := func(e audit.ChainEntry, before string) error {
		if m.FirstSeq == 0 {
			m.FirstSeq, m.Prev = e.Seq, before
		}
		m.LastSeq, m.LastHash, m.Records = e.Seq, e.Hash, m.Records+1
		if seen != nil {
			seen(e)
		}
		return writeExportLine(bw, e, before)
	}
	// Where to start: the record before the period's first, whose hash
	// is the first line's prev (0: from record 1, for a period with no
	// start). The period's first record is the lowest seq whose stored
	// time is in it (store.AuditChainSeek): the records before it are not
	// in the period, so the walk from there skips them as a walk from
	// record 1 would, and writes the same lines. A period no record is in
	// is written as such a walk writes it, with no line but the manifest.
	var after int64
	if !since.IsZero() {
		before, ok, err := st.AuditChainSeek(ctx, since, until)
		switch {
		case err != nil:
			return m, fmt.Errorf("audit export: %w", err)
		case !ok:
			if progress != nil {
				progress(0)
			}
			return m, writeManifest(bw, m)
		case before > 0:
			after = before - 1
		}
	}
	// The lean walk: the export checks nothing (Verify does), so it
	// reads no index rows and no fault columns.
	var read int64
	err = st.AuditChainFrom(ctx, after, func(e audit.ChainEntry) error {
		if read++; progress != nil && read%1000 == 0 {
			progress(read)
		}
		if e.Seq > m.HeadSeq && !headless {
			return stop // appended since the export began
		}
		before := prev
		prev = e.Hash
		at := recordedOf(e.Body)
		inPeriod := (since.IsZero() || !at.Before(since)) && (until.IsZero() || at.Before(until))
		switch {
		case !started && !inPeriod:
			return nil
		case inPeriod:
			started = true
			for i, p := range pending {
				b := pprev
				if i > 0 {
					b = pending[i-1].Hash
				}
				if err := emit(p, b); err != nil {
					return err
				}
			}
			pending = nil
			return emit(e, before)
		case !until.IsZero() && !at.Before(until.Add(exportSlack)):
			return stop
		default:
			if len(pending) == 0 {
				pprev = before
			}
			pending = append(pending, e)
			return nil
		}
	})
	if progress != nil {
		progress(read)
	}
	if err != nil && !errors.Is(err, stop) {
		return m, fmt.Errorf("audit export: %w", err)
	}
	return m, writeManifest(bw, m)
}

// writeManifest writes m's line and flushes w.
func writeManifest(w *bufio.Writer, m ExportManifest) error {
	line, err := json.Marshal(struct {
		Manifest ExportManifest `json:"manifest"`
	}{m})
	if err != nil {
		return err
	}
	w.Write(line)
	w.WriteByte('\n')
	return w.Flush()
}

// writeExportLine writes e as an ExportLine, its body's bytes as stored.
func writeExportLine(w *bufio.Writer, e audit.ChainEntry, prev string) error {
	l := ExportLine{Seq: e.Seq, ID: e.ID, Prev: prev, Hash: e.Hash}
	if json.Valid(e.Body) && !bytes.ContainsAny(e.Body, "\r\n") {
		l.Resource = e.Body
	} else {
		l.Body64 = e.Body
		if l.Body64 == nil {
			l.Body64 = []byte{} // missing: hashed as nothing, shown as ""
		}
	}
	// encoding/json would compact and escape a RawMessage; the bytes
	// hashed are written as they are instead.
	head, err := json.Marshal(struct {
		Seq  int64  `json:"seq"`
		ID   string `json:"id"`
		Prev string `json:"prev"`
		Hash string `json:"hash"`
	}{l.Seq, l.ID, l.Prev, l.Hash})
	if err != nil {
		return err
	}
	w.Write(head[:len(head)-1])
	if l.Resource != nil {
		w.WriteString(`,"resource":`)
		w.Write(l.Resource)
	} else {
		b64, _ := json.Marshal(l.Body64)
		w.WriteString(`,"body64":`)
		w.Write(b64)
	}
	_, err = w.WriteString("}\n")
	return err
}

// recordedOf is an AuditEvent body's recorded time (zero when it has
// none: such a record is in a period only when it is unbounded, or
// between records that are).
func recordedOf(body []byte) time.Time {
	var ae struct {
		Recorded string `json:"recorded"`
	}
	if json.Unmarshal(body, &ae) != nil {
		return time.Time{}
	}
	t, _ := time.Parse(time.RFC3339Nano, ae.Recorded)
	return t
}

// ExportCheck is what VerifyExport found.
type ExportCheck struct {
	Intact bool `json:"intact"`
	// Anchored is true when at least one anchor held. An export none
	// holds proves its internal consistency only: a file built from
	// another chain, or cut and its manifest edited, links as well.
	Anchored bool  `json:"anchored"`
	Records  int64 `json:"records"`
	// The manifest's links, as checked.
	FirstSeq int64  `json:"firstSeq,omitempty"`
	LastSeq  int64  `json:"lastSeq,omitempty"`
	Prev     string `json:"prev"`
	LastHash string `json:"lastHash,omitempty"`
	HeadSeq  int64  `json:"headSeq,omitempty"`
	HeadHash string `json:"headHash,omitempty"`
	// BrokenAt and Reason name the first thing that does not hold:
	// BrokenAt is the record where it starts (the one after the last
	// read, for a cut export; 0 when only the manifest's count of
	// records is wrong).
	BrokenAt int64  `json:"brokenAt,omitempty"`
	Reason   string `json:"reason,omitempty"`
	// Anchors are those asked to be checked: a record of the export or
	// the record before its first (prev). The manifest's head is not one:
	// no hash of the file binds headHash unless the head is its last
	// record, and then that record holds the anchor.
	Anchors []AnchorCheck `json:"anchors,omitempty"`
}

// VerifyExport checks an export read from r without the database: the
// lines are consecutive records, each linked to the one before it and
// hashed as the chain hashes (audit.Link), each line's id its resource's
// id and no field but those (every field of a line is hashed or checked
// against what is), the manifest closes them and agrees (its period too:
// the first and last records are recorded in it), and each anchor is
// held. An anchor is checked against the records exported and the record
// before the first (its prev), the hashes the lines bind; one elsewhere,
// the head included, is not held (the export cannot show it). It fails
// only when r cannot be read.
func VerifyExport(r io.Reader, anchors ...Anchor) (ExportCheck, error) {
	var out ExportCheck
	hashes := map[int64]string{} // of the records anchored, as read
	for _, a := range anchors {
		hashes[a.Seq] = ""
	}
	fail := func(at int64, format string, args ...any) {
		if out.Reason == "" {
			out.BrokenAt, out.Reason = at, fmt.Sprintf(format, args...)
		}
	}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 1<<20), 64<<20)
	var (
		n        int64
		last     *ExportLine
		firstAt  time.Time // the first record's recorded time
		lastBody []byte    // the last record's hashed body
		manifest *ExportManifest
	)
	for sc.Scan() {
		n++
		if len(bytes.TrimSpace(sc.Bytes())) == 0 {
			continue
		}
		if manifest != nil {
			fail(nextSeq(last), "line %d comes after the manifest: an export ends with its manifest (check each file on its own)", n)
			break
		}
		keys, err := lineKeys(sc.Bytes())
		var l struct {
			ExportLine
			Manifest *ExportManifest `json:"manifest"`
		}
		if err == nil {
			err = json.Unmarshal(sc.Bytes(), &l)
		}
		if err != nil {
			fail(nextSeq(last), "line %d is not JSON", n)
			break
		}
		if l.Manifest != nil {
			manifest = l.Manifest
			if k := otherKey(keys, "manifest"); k != "" {
				fail(nextSeq(last), "line %d, the manifest, has a field %q: a manifest line holds the manifest only", n, k)
			}
			continue
		}
		e := l.ExportLine
		body := []byte(e.Resource)
		if e.Resource == nil {
			body = e.Body64
		}
		switch {
		case e.Seq < 1:
			fail(nextSeq(last), "line %d holds record %d: records are numbered from 1", n, e.Seq)
		case last == nil:
			out.FirstSeq, out.Prev = e.Seq, e.Prev
			firstAt = recordedOf(body)
		case e.Seq >= out.FirstSeq && e.Seq <= last.Seq:
			// (The records before were consecutive from the first, or
			// the file already failed: this one was read before.)
			fail(e.Seq, "line %d repeats record %d: an export holds each record once", n, e.Seq)
		case e.Seq < last.Seq:
			fail(e.Seq, "line %d holds record %d after record %d: the records are out of order (an export holds them in chain order, each line the record after the line before)", n, e.Seq, last.Seq)
		case e.Seq != last.Seq+1:
			fail(e.Seq, "line %d holds record %d after record %d: records %d to %d are missing", n, e.Seq, last.Seq, last.Seq+1, e.Seq-1)
		case e.Prev != last.Hash:
			fail(e.Seq, "line %d: record %d's prev is not record %d's hash", n, e.Seq, last.Seq)
		}
		if e.Seq == 1 && e.Prev != "" {
			fail(1, "line %d: record 1's prev is not empty: nothing comes before record 1, so the file was cut from another chain or renumbered", n)
		}
		if k := lineFieldProblem(keys); k != "" {
			fail(e.Seq, "line %d %s", n, k)
		}
		if audit.Link(e.Prev, body) != e.Hash {
			fail(e.Seq, "line %d: record %d or its hash was changed (its hash is not SHA-256 of prev and its resource)", n, e.Seq)
		}
		// The id is not hashed as such: the resource's is, and the
		// line's must be it, or a reviewer keyed on it is misled.
		if id, ok := resourceID(body); !ok {
			fail(e.Seq, "line %d: record %d's resource has no id, so the line's id cannot be checked", n, e.Seq)
		} else if id != e.ID {
			fail(e.Seq, "line %d: its id is not record %d's resource's id (the id its hash binds)", n, e.Seq)
		}
		if h, anchored := hashes[e.Seq]; anchored && h == "" {
			hashes[e.Seq] = e.Hash
		}
		out.Records++
		last, lastBody = &e, body
	}
	if err := sc.Err(); err != nil {
		return out, fmt.Errorf("read the export: %w", err)
	}
	if last != nil {
		out.LastSeq, out.LastHash = last.Seq, last.Hash
	}
	switch m := manifest; {
	case m == nil:
		fail(nextSeq(last), "the export has no manifest line: it was cut off after record %d", out.LastSeq)
	default:
		out.HeadSeq, out.HeadHash = m.HeadSeq, m.HeadHash
		checkManifest(&out, m, fail)
		if out.Records > 0 {
			checkPeriod(m, out.FirstSeq, firstAt, out.LastSeq, recordedOf(lastBody), fail)
		}
		if out.LastSeq > 0 && out.LastSeq == m.HeadSeq && out.LastHash != m.HeadHash {
			fail(out.LastSeq, "the head is record %d, whose hash the manifest gives otherwise", m.HeadSeq)
		}
		if out.LastSeq > m.HeadSeq {
			fail(out.LastSeq, "the export holds record %d, past the head (record %d)", out.LastSeq, m.HeadSeq)
		}
	}
	for _, a := range anchors {
		c := AnchorCheck{Anchor: a}
		got := hashes[a.Seq]
		ok := got != ""
		switch {
		case ok:
		case out.FirstSeq > 0 && a.Seq == out.FirstSeq-1:
			got, ok = out.Prev, true
		}
		switch {
		case !ok:
			c.Problem = fmt.Sprintf("the export does not show record %d (it holds records %d to %d and the hash of the record before them): export a period that holds it or starts after it", a.Seq, out.FirstSeq, out.LastSeq)
		case got != a.Hash:
			c.Problem = fmt.Sprintf("the export gives record %d another hash: the chain was rewritten at or before it", a.Seq)
		default:
			c.Held, out.Anchored = true, true
		}
		out.Anchors = append(out.Anchors, c)
	}
	out.Intact = out.Reason == "" && !slicesHasUnheld(out.Anchors)
	return out, nil
}

// checkManifest reports where the manifest m disagrees with the records
// read (out), each difference for what it is: records missing from the
// file's start or end, a count or hash the lines do not give. BrokenAt is
// 0 when the manifest alone is wrong.
func checkManifest(out *ExportCheck, m *ExportManifest, fail func(int64, string, ...any)) {
	switch {
	case out.Records == 0 && m.Records+m.FirstSeq+m.LastSeq > 0:
		fail(max(m.FirstSeq, 1), "the file holds no record, the manifest names records %d to %d (%d)", m.FirstSeq, m.LastSeq, m.Records)
	case out.Records == 0:
		out.Prev = m.Prev
	case m.FirstSeq != out.FirstSeq:
		fail(min(max(m.FirstSeq, 1), out.FirstSeq), "the file starts at record %d, the manifest says it starts at record %d: "+
			"records were removed from the start, or added before it", out.FirstSeq, m.FirstSeq)
	case m.LastSeq != out.LastSeq:
		fail(min(m.LastSeq, out.LastSeq)+1, "the file ends at record %d, the manifest says it ends at record %d: "+
			"records were removed from the end, or added after it", out.LastSeq, m.LastSeq)
	case m.Records != out.Records:
		fail(0, "the manifest says %d records, the file holds %d (records %d to %d)", m.Records, out.Records, out.FirstSeq, out.LastSeq)
	case m.LastHash != out.LastHash:
		fail(out.LastSeq, "the manifest gives record %d's hash otherwise than its line", out.LastSeq)
	case m.Prev != out.Prev:
		fail(out.FirstSeq, "the manifest's prev is not record %d's prev", out.FirstSeq)
	}
}

// checkPeriod reports a first or last record recorded outside the
// manifest's period: an export runs from the first record recorded in
// its period to the last (those between may be recorded at any time), so
// a manifest whose since or until says otherwise was edited.
func checkPeriod(m *ExportManifest, firstSeq int64, firstAt time.Time, lastSeq int64, lastAt time.Time, fail func(int64, string, ...any)) {
	since, err1 := parseBound(m.Since)
	until, err2 := parseBound(m.Until)
	if err1 != nil || err2 != nil {
		fail(0, "the manifest's period is not RFC 3339 times")
		return
	}
	in := func(at time.Time) bool {
		return (since.IsZero() || !at.Before(since)) && (until.IsZero() || at.Before(until))
	}
	for _, r := range []struct {
		seq  int64
		at   time.Time
		what string
	}{{firstSeq, firstAt, "first"}, {lastSeq, lastAt, "last"}} {
		if !in(r.at) {
			fail(r.seq, "record %d, the %s, was recorded at %s, outside the manifest's period [%s, %s): the first and last records of an export are recorded in its period",
				r.seq, r.what, r.at.UTC().Format(time.RFC3339Nano), m.Since, m.Until)
			return
		}
	}
}

// parseBound parses a manifest's since or until ("": unbounded).
func parseBound(s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	return time.Parse(time.RFC3339Nano, s)
}

// lineKeys is the top-level keys of a JSON object line, in order, with
// repeats (encoding/json keeps a repeated key's last value; another
// reader may keep its first).
func lineKeys(line []byte) ([]string, error) {
	dec := json.NewDecoder(bytes.NewReader(line))
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return nil, errors.New("not a JSON object")
	}
	var keys []string
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return nil, err
		}
		k, _ := t.(string)
		keys = append(keys, k)
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return nil, err
		}
	}
	return keys, nil
}

// otherKey is the first of keys that is not want, or given twice.
func otherKey(keys []string, want string) string {
	seen := false
	for _, k := range keys {
		if k != want || seen {
			return k
		}
		seen = true
	}
	return ""
}

// lineFieldProblem says what is wrong with a record line's fields ("" for
// nothing): each of seq, id, prev and hash once, and one of resource or
// body64, nothing else (a field the hash does not bind and nothing checks
// would be an unchecked word in a verified file).
func lineFieldProblem(keys []string) string {
	seen := map[string]bool{}
	for _, k := range keys {
		switch {
		case seen[k]:
			return fmt.Sprintf("gives %q twice", k)
		case k != "seq" && k != "id" && k != "prev" && k != "hash" && k != "resource" && k != "body64":
			return fmt.Sprintf("has a field %q, which an export line does not have", k)
		}
		seen[k] = true
	}
	switch {
	case seen["resource"] && seen["body64"]:
		return "has both resource and body64: a record's bytes are given once"
	case !seen["resource"] && !seen["body64"]:
		return "has neither resource nor body64"
	}
	for _, k := range []string{"seq", "id", "prev", "hash"} {
		if !seen[k] {
			return fmt.Sprintf("has no %q", k)
		}
	}
	return ""
}

// resourceID is the id of the resource body holds (false when it is no
// JSON object with a string id).
func resourceID(body []byte) (string, bool) {
	var r struct {
		ID *string `json:"id"`
	}
	if json.Unmarshal(body, &r) != nil || r.ID == nil {
		return "", false
	}
	return *r.ID, true
}

// nextSeq is the record after l (1 when there is none).
func nextSeq(l *ExportLine) int64 {
	if l == nil {
		return 1
	}
	return l.Seq + 1
}

func slicesHasUnheld(as []AnchorCheck) bool {
	for _, a := range as {
		if !a.Held {
			return true
		}
	}
	return false
}
