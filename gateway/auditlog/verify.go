package auditlog

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/audit"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/outcome"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/search"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
)

// AuditVerification is the result of checking the audit hash chain.
type AuditVerification struct {
	Intact   bool   `json:"intact"`
	Records  int64  `json:"records"`
	HeadSeq  int64  `json:"headSeq,omitempty"`
	HeadHash string `json:"headHash,omitempty"`
	// BrokenAt and Reason name the first broken link.
	BrokenAt int64  `json:"brokenAt,omitempty"`
	Reason   string `json:"reason,omitempty"`
	// Faults are the AuditEvents reads and searches would serve otherwise
	// than the chain holds them, and those the chain does not hold at all
	// (at most maxFaults of them; FaultCount counts every one). Any makes
	// the trail not intact.
	Faults     []AuditFault `json:"faults,omitempty"`
	FaultCount int          `json:"faultCount,omitempty"`
	// IndexChecked tells whether the AuditEvents' search index rows were
	// compared with those their bodies give: not while the index is an
	// older build's (IndexNote says so; reindex rewrites it).
	IndexChecked bool   `json:"indexChecked"`
	IndexNote    string `json:"indexNote,omitempty"`
	// StoredHead is, for a trail not intact, the chain head the database
	// holds (not verified: the head the broken chain claims), absent when
	// it holds none.
	StoredHead *Anchor `json:"storedHead,omitempty"`
	// Lineage says what of the lineage's records (receipts, delivery
	// attempts) was compared with the chained AuditEvents that wrote them;
	// each one stored otherwise is a fault (About naming it).
	Lineage LineageCheck `json:"lineage"`
	// Anchors are the anchors asked to be checked, each with whether the
	// chain still holds it; one it does not makes the trail not intact.
	Anchors []AnchorCheck `json:"anchors,omitempty"`
	// From is, for a verification from a trusted earlier head
	// (VerifyOptions.From), that head: the records after it were checked
	// now, those before it were not (an earlier verification did), and
	// Scope says so. Records counts the records checked now.
	From    *Anchor   `json:"from,omitempty"`
	Scope   string    `json:"scope,omitempty"`
	Checked time.Time `json:"checked"`

	// The faults by kind, for Describe: AuditEvents stored but not in the
	// chain, and the lineage's Provenance versions stored otherwise (the
	// rest of Lineage.Faults are delivery attempts; the rest of FaultCount
	// AuditEvents served otherwise than chained).
	unchained, provenanceFaults int
	// unauditedDeliveries are the first deliveries with an attempt no
	// AuditEvent names (Lineage.Unaudited), for Summary.
	unauditedDeliveries []string
}

// Anchor is a record of the chain and its hash as an auditor wrote them
// down from an earlier verification (its headSeq and headHash), kept where
// the database's administrators cannot write: the hash is not keyed and
// its formula is public, so whoever can write the database can rewrite
// any record and compute every later hash again, and only a hash recorded
// outside shows it.
type Anchor struct {
	Seq  int64  `json:"seq"`
	Hash string `json:"hash"`
}

// AnchorCheck is an anchor and whether the chain still holds it.
type AnchorCheck struct {
	Anchor
	Held bool `json:"held"`
	// NotChecked tells that the anchor was not checked: the chain is
	// broken at or before its record, and the walk stops at the first
	// broken link (Problem says where). It is not held either.
	NotChecked bool `json:"notChecked,omitempty"`
	// Problem says, when not held, what the chain holds instead, or why
	// the anchor was not checked.
	Problem string `json:"problem,omitempty"`
}

// ParseAnchor parses an anchor written <seq>:<hash> (the record's number
// and its 64 lowercase hexadecimal hash, as a verification prints them).
func ParseAnchor(s string) (Anchor, error) {
	seq, hash, ok := strings.Cut(s, ":")
	n, err := strconv.ParseInt(seq, 10, 64)
	if !ok || err != nil || n < 1 {
		return Anchor{}, errors.New("an anchor is <record number>:<hash>, as a verification printed headSeq and headHash (e.g. 166:c251ac43...)")
	}
	if len(hash) != 64 || strings.Trim(hash, "0123456789abcdef") != "" {
		return Anchor{}, errors.New("an anchor's hash is 64 lowercase hexadecimal digits, as a verification printed headHash")
	}
	return Anchor{Seq: n, Hash: hash}, nil
}

// AuditFault is an AuditEvent served otherwise than the chain holds it:
// its record's seq (0 for one the chain does not hold), its id and what is
// wrong, in fixed words (never its content); or, About set, a record of
// the lineage (a Provenance version, a delivery attempt) stored otherwise
// than the chained AuditEvent that wrote it says.
type AuditFault struct {
	Seq        int64  `json:"seq,omitempty"`
	AuditEvent string `json:"auditEvent"`
	// About names the lineage's record ("Provenance/rec-…/_history/1",
	// "delivery k7q2xw4mbn3ra attempt 1"); "" for the AuditEvent itself.
	About   string `json:"about,omitempty"`
	Problem string `json:"problem"`
}

// maxFaults bounds the faults a verification lists.
const maxFaults = 100

// fault records a fault of AuditEvent id (record seq).
func (v *AuditVerification) fault(seq int64, id, problem string) { v.faultAbout(seq, id, "", problem) }

// faultAbout records a fault of about, a record of the lineage AuditEvent
// id (record seq) names ("": of the AuditEvent itself).
func (v *AuditVerification) faultAbout(seq int64, id, about, problem string) {
	v.Intact = false
	v.FaultCount++
	if len(v.Faults) < maxFaults {
		v.Faults = append(v.Faults, AuditFault{Seq: seq, AuditEvent: id, About: about, Problem: problem})
	}
}

// lineageFault records a fault of about, a Provenance version or a
// delivery attempt of the lineage that AuditEvent id (record seq) names.
func (v *AuditVerification) lineageFault(seq int64, id, about, problem string) {
	v.Lineage.Faults++
	if strings.HasPrefix(about, "Provenance/") {
		v.provenanceFaults++
	}
	v.faultAbout(seq, id, about, problem)
}

// unchainedFault records an AuditEvent stored that the chain does not
// hold: its body (a forgery: the gateway did not write it), or, bodyless,
// only its current row, what is left of one deleted (an auditor's review:
// a row deleted with its chain entry was called a forgery).
func (v *AuditVerification) unchainedFault(id string, body bool) {
	v.unchained++
	if !body {
		v.fault(0, id, "listed (its current row remains), but neither its body nor its chain record is stored: it was "+
			"deleted after it was written, with its chain record (where the chain is broken tells which)")
		return
	}
	v.fault(0, id, "stored, but not in the audit chain: the gateway did not write it")
}

// Describe is the verification in counts, for the audit-verify
// AuditEvent's description (the API's, the console's): whether the trail
// is intact, the records verified, where the chain broke, and each kind
// of fault with its count. It names no record's content.
func (v *AuditVerification) Describe() string {
	parts := []string{fmt.Sprintf("audit chain intact=%t, %s verified", v.Intact, Counted(int(v.Records), "record"))}
	if v.From != nil {
		parts[0] += fmt.Sprintf(" from record %d (a trusted earlier head; those before it not checked now)", v.From.Seq)
	}
	if v.BrokenAt > 0 {
		parts = append(parts, fmt.Sprintf("broken at record %d", v.BrokenAt))
	}
	notHeld, unchecked := 0, 0
	for _, a := range v.Anchors {
		switch {
		case a.NotChecked:
			unchecked++
		case !a.Held:
			notHeld++
		}
	}
	for _, k := range []struct {
		n         int
		one, many string
	}{
		{v.FaultCount - v.unchained - v.Lineage.Faults, "AuditEvent served otherwise than chained", "AuditEvents served otherwise than chained"},
		{v.unchained, "AuditEvent stored but not in the chain", "AuditEvents stored but not in the chain"},
		{v.provenanceFaults - v.Lineage.UnnamedReceipts - v.Lineage.UnreceiptedRecords, "Provenance version stored otherwise than its AuditEvent says",
			"Provenance versions stored otherwise than their AuditEvents say"},
		{v.Lineage.UnnamedReceipts, "receipt no AuditEvent names", "receipts no AuditEvent names"},
		{v.Lineage.UnreceiptedRecords, "record version received whose receipt no AuditEvent names",
			"record versions received whose receipts no AuditEvent names"},
		{v.Lineage.Faults - v.provenanceFaults - v.Lineage.Unaudited, "delivery attempt stored otherwise than its AuditEvent says",
			"delivery attempts stored otherwise than their AuditEvents say"},
		{v.Lineage.Unaudited, "delivery attempt no AuditEvent names", "delivery attempts no AuditEvent names"},
		{notHeld, "anchor not held", "anchors not held"},
		{unchecked, "anchor not checked", "anchors not checked"},
	} {
		if k.n > 0 {
			parts = append(parts, CountedAs(k.n, k.one, k.many))
		}
	}
	return strings.Join(parts, ", ")
}

// firstAbout is what the first fault of problem is about ("" when the
// faults kept hold none).
func (v *AuditVerification) firstAbout(problem string) string {
	for _, f := range v.Faults {
		if f.Problem == problem {
			return f.About
		}
	}
	return ""
}

// Summary is the verdict in one line: "audit trail intact", or the first
// broken link and how many findings of AuditEvents served otherwise than
// chained there are, naming the first.
func (v *AuditVerification) Summary() string {
	var parts []string
	if v.BrokenAt > 0 {
		parts = append(parts, fmt.Sprintf("audit chain broken at record %d: %s", v.BrokenAt, v.Reason))
	}
	if served := v.FaultCount - v.Lineage.Faults; served > 0 {
		parts = append(parts, v.firstFault(false, served, "of AuditEvents served otherwise than the audit chain holds them"))
	}
	if n := v.Lineage.Faults - v.Lineage.Unaudited - v.Lineage.UnnamedReceipts - v.Lineage.UnreceiptedRecords; n > 0 {
		parts = append(parts, v.firstFault(true, n,
			"of receipts or delivery attempts stored otherwise than the chained AuditEvents that wrote them say"))
	}
	if n := v.Lineage.Unaudited; n > 0 {
		named := strings.Join(v.unauditedDeliveries, ", ")
		if n > len(v.unauditedDeliveries) {
			named += ", ..."
		}
		parts = append(parts, fmt.Sprintf("%s that no delivery-send AuditEvent names (deliveries %s): the audit chain lost "+
			"their AuditEvents (its tail cut and the head moved back), or a gateway that did not audit them sent those records "+
			"(a release from before delivery auditing left running past an upgrade: stop every gateway older than the "+
			"database's schema)", CountedAs(n, "delivery attempt", "delivery attempts"), named))
	}
	if n := v.Lineage.UnnamedReceipts; n > 0 {
		parts = append(parts, fmt.Sprintf("%s that no chained AuditEvent names (first: %s): the audit chain lost the AuditEvents "+
			"of the writes that stored them (its tail cut and the head moved back), or they were written behind the gateway's back",
			CountedAs(n, "receipt", "receipts"), v.firstAbout(UnnamedReceiptProblem)))
	}
	if n := v.Lineage.UnreceiptedRecords; n > 0 {
		parts = append(parts, fmt.Sprintf("%s in the ledger whose receipt no chained AuditEvent names (first: %s): the "+
			"audit chain lost the AuditEvents of the writes that stored them (its tail cut, the head moved back and the "+
			"receipts deleted), or the ledger entries were written behind the gateway's back",
			CountedAs(n, "record version", "record versions"), v.firstAbout(UnreceiptedRecordProblem)))
	}
	for _, a := range v.Anchors {
		switch {
		case a.NotChecked:
			parts = append(parts, "anchor "+strconv.FormatInt(a.Seq, 10)+" "+a.Problem)
		case !a.Held:
			parts = append(parts, "anchor "+strconv.FormatInt(a.Seq, 10)+" not held: "+a.Problem)
		}
	}
	if len(parts) == 0 {
		return "audit trail intact"
	}
	return strings.Join(parts, "; ")
}

// firstFault says how many findings (n) of the kind there are (lineage:
// with About) and names the first listed.
func (v *AuditVerification) firstFault(lineage bool, n int, what string) string {
	s := Counted(n, "finding") + " " + what
	for _, f := range v.Faults {
		if (f.About != "") != lineage || f.Problem == UnauditedProblem || f.Problem == UnnamedReceiptProblem { // said apart
			continue
		}
		where := "not in the chain"
		if f.Seq > 0 {
			where = fmt.Sprintf("record %d", f.Seq)
		}
		if f.About != "" {
			where += ", " + f.About
		}
		return fmt.Sprintf("%s (first: AuditEvent %s, %s: %s)", s, f.AuditEvent, where, f.Problem)
	}
	return s
}

// Verify walks the whole audit chain and compares it with the chain head
// the store keeps (read first: the walk, which may see later entries too,
// must reach that head's record with that hash). A broken chain is
// reported in the result, not as an error: a changed, missing or
// misplaced record, or a chain that ends before its head (a cut tail) or
// whose head names another hash (a changed head or tail). So are the
// faults of how the store serves the chained AuditEvents (their current
// rows, other versions, search index rows: store.Store.AuditChainAfter) and
// every AuditEvent stored that the chain does not hold. Errors are the
// store's.
//
// Each anchor is checked too: the chain must still hold its record with
// its hash (AuditVerification.Anchors). An anchor at or after the first
// broken link, where the walk stops, is not checked (NotChecked), and
// not held.
//
// So is the lineage beside the chain: every Provenance version and
// delivery attempt a chained AuditEvent names with its hashes (the
// AuditEvent of the ingest, Bundle or replay that wrote the Provenance;
// the delivery-send of the attempt) is compared with the stored one
// (AuditVerification.Lineage); AuditEvents written before those hashes
// were recorded are counted as unchecked. And every delivery attempt the
// outbox holds must be named by a delivery-send AuditEvent: one that none
// names is a fault (LineageCheck.Unaudited), unless it began before the
// trail's first delivery-send (LineageCheck.BeforeAuditing).
func Verify(ctx context.Context, st store.Store, now time.Time, anchors ...Anchor) (*AuditVerification, error) {
	return VerifyWith(ctx, st, now, VerifyOptions{Anchors: anchors})
}

// VerifyOptions are a verification's: the anchors to check, where to
// start and whom to tell how far it got.
type VerifyOptions struct {
	Anchors []Anchor
	// From, if set, is a head recorded from an earlier verification (its
	// headSeq and headHash, kept outside the database): the walk starts
	// at that record instead of record 1, so its time is proportional to
	// the records appended since. The chain must still hold that record
	// with that hash, its body linking to the hash of the record before
	// it; if it does not, nothing else is checked and the trail is not
	// intact (BrokenAt names the record): the chain was rewritten at or
	// before it, or the anchor is not this chain's. What it proves: the
	// records after From are those the chain linked to From's hash, and
	// served as chained; the records before it, and the receipts
	// (Provenance versions) and delivery attempts they vouch for, are
	// vouched for by the earlier verification only (not compared again
	// now). Anchors before From are refused (Check).
	From *Anchor
	// Progress, if not nil, is called with the number of records walked
	// so far, every 1,000 records and at the end.
	Progress func(walked int64)
}

// Check returns the Invalid *outcome.Error (parameter-invalid, at
// expect) of options no verification honours, or nil: an anchor before
// From, which a verification from From would not check. The one check of
// the API and the CLI, which needs no database; VerifyWith returns it too.
func (o VerifyOptions) Check() error {
	if o.From == nil {
		return nil
	}
	for _, a := range o.Anchors {
		if a.Seq < o.From.Seq {
			return outcome.New(outcome.Invalid, "invalid", "parameter-invalid", fmt.Sprintf("expect: an anchor before from "+
				"(record %d, from record %d): a verification from a head checks only the records from it on", a.Seq, o.From.Seq)).At("expect")
		}
	}
	return nil
}

// VerifyWith is Verify with options (VerifyOptions): with From, an
// incremental verification from a trusted earlier head. Options that
// fail their Check are its error.
func VerifyWith(ctx context.Context, st store.Store, now time.Time, opts VerifyOptions) (*AuditVerification, error) {
	if err := opts.Check(); err != nil {
		return nil, err
	}
	var v audit.Verifier
	anchors := opts.Anchors
	out := &AuditVerification{Intact: true, Checked: now.UTC()}
	walked := map[int64]string{} // the walked hash of each anchored record
	for _, a := range anchors {
		walked[a.Seq] = ""
	}
	iv, err := st.IndexVersion(ctx)
	if err != nil {
		return nil, err
	}
	out.IndexChecked = iv == search.IndexVersion
	if !out.IndexChecked {
		what := "run reindex"
		if iv > search.IndexVersion { // a rollback: this build's reindex refuses the database
			what = "a newer release wrote it: run that release's audit verify"
		}
		out.IndexNote = fmt.Sprintf("the AuditEvents' search index rows were not compared: the index was written by index version %d, "+
			"this build's is %d (%s)", iv, search.IndexVersion, what)
	}
	headSeq, headHash, err := st.AuditChainHead(ctx)
	headMissing := errors.Is(err, store.ErrNotFound)
	if err != nil && !headMissing {
		return nil, err
	}
	var atHead string // the walked hash of record headSeq
	lc := &lineageChecker{st: st, ids: &deliveryIDs{st: st}, out: out}
	var after, count int64 // the walk starts after record after; count records walked
	if f := opts.From; f != nil {
		out.From = f
		out.Scope = fmt.Sprintf("from record %d: the records after it were checked now, linking to the hash it was given; "+
			"records 1 to %d were not checked now (the earlier verification whose head it is vouches for them), "+
			"nor the receipts (Provenance versions) and delivery attempts they vouch for: those were not compared again now", f.Seq, f.Seq-1)
		var done bool
		if after, done, err = startFrom(ctx, st, &v, *f, out); err != nil || done {
			return out, err
		}
	}
	err = st.AuditChainAfter(ctx, after, func(e audit.ChainEntry) error {
		if count++; opts.Progress != nil && count%1000 == 0 {
			opts.Progress(count)
		}
		if err := v.Add(e); err != nil {
			return err
		}
		if f := opts.From; f != nil && e.Seq == f.Seq {
			if e.Hash != f.Hash {
				return &audit.BrokenLink{Seq: e.Seq, Reason: fmt.Sprintf("the chain holds record %d with another hash than the anchor verified from: "+
					"the chain was rewritten at or before record %d, or the anchor is not this chain's (verify the whole chain)", e.Seq, e.Seq)}
			}
			lc.startAt(e)
		}
		if err := lc.check(ctx, e); err != nil {
			return err
		}
		for _, f := range e.Faults {
			out.fault(e.Seq, e.ID, f)
		}
		out.HeadSeq, out.HeadHash = e.Seq, e.Hash
		if _, ok := walked[e.Seq]; ok {
			walked[e.Seq] = e.Hash
		}
		if e.Seq == headSeq {
			atHead = e.Hash
		}
		return nil
	})
	if opts.Progress != nil {
		opts.Progress(count)
	}
	var bl *audit.BrokenLink
	stopped := errors.As(err, &bl) // the walk stopped at a broken link
	if f := opts.From; f != nil && err == nil && out.HeadSeq < f.Seq {
		// The record after which the walk began was read, so this is
		// the one the anchor names being gone.
		err = &audit.BrokenLink{Seq: f.Seq, Reason: fmt.Sprintf("the chain holds no record %d, the anchor verified from: records were cut off (verify the whole chain)", f.Seq)}
		stopped = errors.As(err, &bl)
	}
	switch {
	case stopped:
		out.Intact, out.BrokenAt, out.Reason = false, bl.Seq, bl.Reason
	case err != nil:
		return nil, err
	case headMissing:
		out.Intact, out.BrokenAt, out.Reason = false, out.HeadSeq+1, "the chain head record is missing from the database"
	case out.HeadSeq < headSeq:
		out.Intact, out.BrokenAt = false, out.HeadSeq+1
		out.Reason = fmt.Sprintf("records %d to %d are missing: the chain ends at record %d, its head names record %d",
			out.HeadSeq+1, headSeq, out.HeadSeq, headSeq)
	case headSeq > 0 && atHead != headHash:
		out.Intact, out.BrokenAt = false, headSeq
		out.Reason = fmt.Sprintf("the chain head's hash does not match record %d: the head or the chain's tail was changed", headSeq)
	default:
		// The head only moves on: read again, it must have reached the end
		// of the walk.
		after, _, err := st.AuditChainHead(ctx)
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return nil, err
		}
		if after < out.HeadSeq {
			out.Intact, out.BrokenAt = false, after+1
			out.Reason = fmt.Sprintf("the chain head names record %d, but the chain goes on to record %d: the head was moved back", after, out.HeadSeq)
		}
	}
	out.Records = v.Verified()
	if !stopped {
		// A broken chain was not walked to its end: the attempts its
		// AuditEvents after the break name would all look unnamed.
		if err := lc.checkUnaudited(ctx, out.HeadSeq); err != nil {
			return nil, err
		}
		since := lc.namedSince(ctx, out.HeadSeq)
		if err := lc.checkUnnamed(ctx, since); err != nil {
			return nil, err
		}
		if err := lc.checkLedger(ctx, since); err != nil {
			return nil, err
		}
	}
	lc.finish()
	for _, a := range anchors {
		c := AnchorCheck{Anchor: a}
		switch h := walked[a.Seq]; {
		case h == a.Hash:
			c.Held = true
		case h == "" && stopped && a.Seq == out.BrokenAt:
			c.NotChecked = true
			c.Problem = fmt.Sprintf("not checked: the chain is broken at record %d, this anchor's record", out.BrokenAt)
		case h == "" && stopped && a.Seq > out.BrokenAt:
			// The walk stopped at the break: the record may well be
			// there, so it was not cut off, only not reached.
			c.NotChecked = true
			c.Problem = fmt.Sprintf("not checked: the chain is broken at record %d, before this anchor", out.BrokenAt)
		case h == "":
			c.Problem = fmt.Sprintf("the chain holds no record %d (it ends at record %d): records were cut off", a.Seq, out.HeadSeq)
		default:
			c.Problem = fmt.Sprintf("record %d has another hash: the chain was rewritten at or before record %d", a.Seq, a.Seq)
		}
		if !c.Held {
			out.Intact = false
		}
		out.Anchors = append(out.Anchors, c)
	}
	ids, n, err := st.UnchainedAudits(ctx, maxFaults)
	if err != nil {
		return nil, err
	}
	for _, id := range ids {
		_, err := st.Read(ctx, "AuditEvent", id)
		if err != nil && !errors.Is(err, store.ErrNotFound) && !errors.Is(err, store.ErrGone) {
			return nil, err
		}
		out.unchainedFault(id, !errors.Is(err, store.ErrNotFound))
	}
	if extra := n - len(ids); extra > 0 {
		out.FaultCount += extra // past maxFaults: counted, not listed
		out.unchained += extra
		out.Intact = false
	}
	if !out.Intact && !headMissing {
		out.StoredHead = &Anchor{Seq: headSeq, Hash: headHash}
	}
	return out, nil
}

// startFrom prepares v to verify the chain from anchor f: the walk (after
// the returned seq) takes record f.Seq first and links it to the stored
// hash of the entry before it, read here. done is true when the chain
// cannot start there (it holds no record before f.Seq as numbered), out
// then saying why.
func startFrom(ctx context.Context, st store.Store, v *audit.Verifier, f Anchor, out *AuditVerification) (after int64, done bool, err error) {
	if f.Seq == 1 {
		return 0, false, nil
	}
	hash, err := st.AuditChainHash(ctx, f.Seq-1)
	switch {
	case errors.Is(err, store.ErrNotFound):
		out.Intact, out.BrokenAt = false, f.Seq
		out.Reason = fmt.Sprintf("the chain holds no record %d, the one before the anchor verified from: records were deleted or cut off (verify the whole chain)", f.Seq-1)
		// The anchor's own record gone too is what to say first (an
		// auditor's review: the reason named only the one before it).
		if _, aerr := st.AuditChainHash(ctx, f.Seq); errors.Is(aerr, store.ErrNotFound) {
			out.Reason = fmt.Sprintf("the chain holds no record %d, the anchor verified from, nor record %d before it: records were deleted or cut off (verify the whole chain)", f.Seq, f.Seq-1)
		} else if aerr != nil {
			return 0, false, aerr
		}
		return 0, true, nil
	case err != nil:
		return 0, false, err
	}
	v.Resume(f.Seq-1, hash)
	return f.Seq - 1, false, nil
}
