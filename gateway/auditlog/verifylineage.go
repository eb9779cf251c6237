package auditlog

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/audit"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/operator"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/search"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
)

// The lineage's records beside the audit trail: a receipt (the
// Provenance a request wrote: the content hash of what the clinic sent,
// the versions it produced) and each delivery attempt (the EHR's status
// and answer, what was sent). Their rows are outside the hash chain, so the
// chained AuditEvent that wrote them carries their hashes (an ingest's,
// a Bundle's, a replay's: the Provenance version with the SHA-256 of its
// stored JSON; a delivery-send's: the attempt's number, HTTP status,
// error, the SHA-256 of the payload and of the answer, its period), and
// Verify compares every one a chained AuditEvent names with the row the
// database holds.

// LineageCheck says what Verify compared of the lineage's records with the
// chained AuditEvents that wrote them.
type LineageCheck struct {
	// Provenances and Attempts count the Provenance versions and delivery
	// attempts found as their AuditEvents recorded them.
	Provenances int `json:"provenances"`
	Attempts    int `json:"attempts"`
	// Faults counts those stored otherwise (each is in
	// AuditVerification.Faults, About naming it).
	Faults int `json:"faults"`
	// Unchecked counts the Provenance versions and attempts named by
	// AuditEvents written before their hashes were recorded (an older
	// gateway's): nothing to compare them with, not a fault.
	Unchecked int `json:"unchecked"`
	// RolledBack counts the Provenance versions named as written by the
	// AuditEvent of a write that failed (outcome not success): an earlier
	// build's record of a transaction that rolled back (its commit
	// failed), which named what the transaction had written though
	// nothing of it was stored. Not compared, and not a fault: the
	// receipt never existed, so none was deleted.
	RolledBack int `json:"rolledBack,omitempty"`
	// InProgress counts the attempts whose AuditEvent is committed while
	// the outbox has not recorded them yet (a worker between the two
	// writes, or one that stopped there: the next records the attempt as
	// interrupted). Not a fault.
	InProgress int `json:"inProgress,omitempty"`
	// Unaudited counts the delivery attempts the outbox holds that no
	// delivery-send AuditEvent names, begun after the trail's first one:
	// each is a fault (verifyunaudited.go). BeforeAuditing counts those
	// begun before it (a release before delivery auditing sent them): not
	// faults, said in the Note.
	Unaudited      int `json:"unaudited,omitempty"`
	BeforeAuditing int `json:"beforeAuditing,omitempty"`
	// NearAnchor counts, for a walk from an anchor, the attempts no
	// walked AuditEvent names begun within anchorMargin after the
	// anchor's AuditEvent was recorded: their delivery-send AuditEvent
	// may have been committed before the anchor's (a write queue's
	// delay, another replica's clock), not walked. Not checked now, not
	// faults, said in the Note.
	NearAnchor int `json:"nearAnchor,omitempty"`
	// UnnamedReceipts counts the Provenances stored that no chained
	// AuditEvent names and no named receipt lists: each is a fault
	// (verifyunnamed.go).
	UnnamedReceipts int `json:"unnamedReceipts,omitempty"`
	// LedgerEntries counts the native record versions of the ledger
	// checked for a receipt a chained AuditEvent names (for a walk from an
	// anchor, those received since it); UnreceiptedRecords those without:
	// each is a fault (verifyledger.go).
	LedgerEntries      int    `json:"ledgerEntries"`
	UnreceiptedRecords int    `json:"unreceiptedRecords,omitempty"`
	Note               string `json:"note,omitempty"`
}

// note says what was not checked, when something was not.
func (c *LineageCheck) note() {
	var notes []string
	if c.Unchecked > 0 {
		notes = append(notes, fmt.Sprintf("%s (Provenance versions and delivery attempts) could not be checked: the AuditEvents that "+
			"name them were written before the gateway recorded their hashes", Counted(c.Unchecked, "lineage record")))
	}
	if c.RolledBack > 0 {
		were, they, them := "were", "they were", "them"
		if c.RolledBack == 1 {
			were, they, them = "was", "it was", "it"
		}
		notes = append(notes, fmt.Sprintf("%s named as written by the AuditEvent of a write that failed %s not looked for: "+
			"the write's transaction rolled back, so %s never stored (an earlier gateway named %s)",
			Counted(c.RolledBack, "Provenance version"), were, they, them))
	}
	if c.BeforeAuditing > 0 {
		notes = append(notes, fmt.Sprintf("%s no AuditEvent names began before the trail's first delivery-send AuditEvent: "+
			"a release that did not audit deliveries yet sent them (not a fault)", CountedAs(c.BeforeAuditing, "delivery attempt", "delivery attempts")))
	}
	if c.NearAnchor > 0 {
		notes = append(notes, fmt.Sprintf("%s no AuditEvent walked names began within %s after the anchor: their "+
			"delivery-send AuditEvents may precede it, so they were not checked now (a whole walk checks them)",
			CountedAs(c.NearAnchor, "delivery attempt", "delivery attempts"), anchorMargin))
	}
	c.Note = strings.Join(notes, "; ")
}

// lineageChecker compares, during Verify's walk, what the chained
// AuditEvents say of the lineage's records with the stored ones.
type lineageChecker struct {
	st  store.Store
	ids *deliveryIDs
	out *AuditVerification
	// deliveries caches outbox items and their attempts by public id (an
	// item's attempts are named by several AuditEvents).
	deliveries map[string]*checkedDelivery
	// cutOff are the attempts whose AuditEvent (not an interrupted one)
	// is contradicted only by the outbox recording that attempt as
	// interrupted: right when the worker stopped after the AuditEvent and
	// the next one recorded the attempt, with an interrupted attempt's
	// AuditEvent of its own, later in the chain. Those left at the end are
	// faults, but for a walk from an anchor (fromAt set).
	cutOff map[string]cutOffAttempt
	// interrupted are the attempts an interrupted attempt's AuditEvent
	// vouched for (a stalled worker's own AuditEvent of the attempt may
	// come after it). The walk fills it: from an anchor, it holds none of
	// those before the anchor.
	interrupted map[string]bool
	// firsts caches firstNamed's search by Provenance id: every
	// pre-hash Bundle that reads a receipt names it again.
	firsts map[string]firstNaming
	// fromAt is, for a walk from an anchor (VerifyOptions.From), when the
	// anchor's AuditEvent was recorded: an attempt begun before it may
	// have been recorded, and audited, as interrupted before the anchor,
	// by an AuditEvent the earlier verification checked and this walk
	// does not read, so it is no fault when left cut off.
	fromAt time.Time
	// hashed are the receipts chained AuditEvents name as written with
	// their hash (json-sha256): written by a release that audits its
	// deliveries (the hashes came after delivery auditing), so every
	// attempt to deliver their records is named by a delivery-send
	// AuditEvent, whatever time its row says (checkUnaudited).
	hashed receiptNames
	// unnamed are the Provenances checkUnnamed reported: a ledger entry
	// whose receipt is one of them is not reported again (checkLedger).
	unnamed map[string]bool
	// sent are the attempts the delivery-send AuditEvents walked name
	// (checkUnaudited).
	sent sentNames
	// receipts are the Provenances the AuditEvents walked name
	// (checkUnnamed).
	receipts receiptNames
}

// cutOffAttempt is an attempt of lineageChecker.cutOff: the fault it is
// if no AuditEvent of an interrupted attempt vouches for it, and when the
// attempt began.
type cutOffAttempt struct {
	fault AuditFault
	at    time.Time
}

// startAt notes e, the anchor a walk from an anchor starts at: when its
// AuditEvent was recorded (none known: every cut-off attempt left is a
// fault, as in a whole walk).
func (c *lineageChecker) startAt(e audit.ChainEntry) { c.fromAt = recordedOf(e.Body) }

// checkedDelivery is one outbox item as the store holds it (nil item: not
// stored).
type checkedDelivery struct {
	item     *store.OutboxItem
	attempts []*store.Attempt
}

// chainedEvent is what the checker reads of a chained AuditEvent.
type chainedEvent struct {
	Recorded string `json:"recorded"`
	Outcome  string `json:"outcome"`
	Subtype  []struct {
		Code string `json:"code"`
	} `json:"subtype"`
	Period *struct {
		Start string `json:"start"`
		End   string `json:"end"`
	} `json:"period"`
	Entity []struct {
		What struct {
			Reference  string `json:"reference"`
			Identifier *struct {
				System string `json:"system"`
				Value  string `json:"value"`
			} `json:"identifier"`
		} `json:"what"`
		Detail []eventDetail `json:"detail"`
	} `json:"entity"`
}

// eventDetail is an AuditEvent entity's detail.
type eventDetail struct {
	Type        string `json:"type"`
	ValueString string `json:"valueString"`
}

// sentAttempt is what a delivery-send AuditEvent names: its delivery (the
// first entity naming one), that entity's details (the attempt's status
// and hashes), the attempt's number as written and read (numbered false:
// an older gateway's AuditEvent named none) and the destination.
type sentAttempt struct {
	delivery, destination string
	details               []eventDetail
	attempt               string
	n                     int
	numbered              bool
}

// sent reads ev, a delivery-send AuditEvent, once for nameSent and
// checkSent.
func (ev *chainedEvent) sent() sentAttempt {
	var s sentAttempt
	for _, en := range ev.Entity {
		switch id := en.What.Identifier; {
		case id == nil:
		case id.System == audit.SystemDelivery && s.delivery == "":
			s.delivery, s.details = id.Value, en.Detail
		case id.System == audit.SystemDestination:
			s.destination = id.Value
		}
	}
	s.attempt, s.numbered = detail(s.details, audit.DetailAttempt)
	if s.numbered {
		s.n, _ = strconv.Atoi(s.attempt)
	}
	return s
}

var (
	markProvenance = []byte(`"reference":"Provenance/`)
	markSent       = []byte(`"code":"delivery-send"`)
)

// writesProvenance are the interactions whose AuditEvent names the
// Provenance they wrote.
var writesProvenance = map[string]bool{"ingest": true, "transaction": true, "batch": true, "mapping-replay": true}

// readsProvenance are those of writesProvenance whose AuditEvent also
// names the Provenances the request only read (a Bundle's GET entries,
// its searches), alike: role and type are the same, and only a written
// one carries its hash (json-sha256), since this build.
var readsProvenance = map[string]bool{"transaction": true, "batch": true}

// check compares what chained AuditEvent e says of the lineage's records
// with the stored ones. Only the store's errors are returned.
func (c *lineageChecker) check(ctx context.Context, e audit.ChainEntry) error {
	sent := bytes.Contains(e.Body, markSent)
	if !sent && !bytes.Contains(e.Body, markProvenance) {
		return nil // most AuditEvents: not decoded
	}
	var ev chainedEvent
	if json.Unmarshal(e.Body, &ev) != nil {
		return nil // the chain's own check reports a changed body
	}
	c.nameReceipts(&ev)
	if len(ev.Subtype) == 0 {
		return nil
	}
	switch code := ev.Subtype[0].Code; {
	case code == "delivery-send":
		sent := ev.sent()
		if err := c.nameSent(ctx, ev.Recorded, sent); err != nil {
			return err
		}
		return c.checkSent(ctx, e, &ev, sent)
	case writesProvenance[code]:
		return c.checkProvenances(ctx, e, &ev, readsProvenance[code])
	}
	return nil
}

// detail returns the valueString of the detail of type typ.
func detail(ds []eventDetail, typ string) (string, bool) {
	for _, d := range ds {
		if d.Type == typ {
			return d.ValueString, true
		}
	}
	return "", false
}

// fault records a lineage fault of AuditEvent e about what.
func (c *lineageChecker) fault(e audit.ChainEntry, about, problem string) {
	c.out.lineageFault(e.Seq, e.ID, about, problem)
}

// checkProvenances checks each Provenance version e wrote with its hash;
// a successful write's Provenance named without one is an older record.
// A failed write wrote nothing (its transaction rolled back, p37 F2): the
// versions its AuditEvent names as written (an earlier build's) are
// counted as RolledBack, not looked for. Changing an AuditEvent's outcome
// to hide a deleted receipt breaks the chain, which vouches for its body.
//
// reads tells that e may also name Provenances its request only read (a
// Bundle's): without a hash, a written one and a read one look alike
// (p41 F4: any reader's batch of GETs of receipts was counted). A request
// that wrote a Provenance is the first to name it, so an unhashed one
// named earlier by another AuditEvent was read (firstNamed).
func (c *lineageChecker) checkProvenances(ctx context.Context, e audit.ChainEntry, ev *chainedEvent, reads bool) error {
	var unhashed []string
	hashed := false
	for _, en := range ev.Entity {
		ref := en.What.Reference
		rest, ok := strings.CutPrefix(ref, "Provenance/")
		if !ok {
			continue
		}
		id, v, ok := strings.Cut(rest, "/_history/")
		version, err := strconv.ParseInt(v, 10, 64)
		if !ok || err != nil {
			continue
		}
		want, ok := detail(en.Detail, audit.DetailJSONSHA256)
		if !ok {
			unhashed = append(unhashed, id)
			continue
		}
		hashed = true
		if ev.Outcome != "0" {
			// A failed write's: its transaction rolled back, nothing of
			// it is stored (this build names nothing written then).
			c.out.Lineage.RolledBack++
			continue
		}
		c.hashed.add(id)
		r, err := c.st.Read(ctx, "Provenance", id)
		switch {
		case errors.Is(err, store.ErrNotFound):
			c.fault(e, ref, "the Provenance this AuditEvent records as written is not stored: the receipt was deleted")
		case errors.Is(err, store.ErrGone):
			c.fault(e, ref, "the Provenance this AuditEvent records as written is marked deleted: the receipt is hidden")
		case err != nil:
			return err
		case r.Version != version:
			c.fault(e, ref, fmt.Sprintf("the Provenance's current version is %d, not the version %d this AuditEvent records as written: "+
				"reads, searches and the lineage serve a receipt the chain does not vouch for", r.Version, version))
		case audit.SHA256(r.Body) != want:
			c.fault(e, ref, "the Provenance's stored JSON is not the one this AuditEvent recorded (its SHA-256 differs): the receipt "+
				"(its content hash, client, targets or times) was changed")
		default:
			c.out.Lineage.Provenances++
		}
	}
	if hashed || ev.Outcome != "0" {
		return nil // this build's: what it wrote is hashed, the others it read
	}
	for _, id := range unhashed {
		if reads {
			first, err := c.firstNamed(ctx, e, ev, id)
			if err != nil {
				return err
			}
			if !first {
				continue // read: another AuditEvent named it before
			}
		}
		c.out.Lineage.Unchecked++
	}
	return nil
}

// firstNamed reports whether e, whose AuditEvent (ev) names
// Provenance/id without a hash, is the first AuditEvent to name it, as
// the request that wrote it is (lineage.go's receipt finds that request
// so): no AuditEvent naming it was recorded before ev. One recorded at
// the same instant is earlier if the chain holds it before e (a session's
// ingest moves the write clock some milliseconds ahead of the wall
// clock, and reads of its receipt right after it share its instant: they
// were counted as unchecked); one the index does not find is taken as not
// earlier: the version is counted as unchecked, as it was.
func (c *lineageChecker) firstNamed(ctx context.Context, e audit.ChainEntry, ev *chainedEvent, id string) (bool, error) {
	at, err := time.Parse(time.RFC3339Nano, ev.Recorded)
	if err != nil {
		return true, nil // the chain's own check reports a changed body
	}
	f, ok := c.firsts[id]
	if !ok {
		evs, err := searchAll(ctx, c.st, search.AllTenants, "AuditEvent",
			url.Values{"entity": {"Provenance/" + id}, "_sort": {"date"}}, 1)
		if err != nil {
			return false, fmt.Errorf("AuditEvents naming Provenance %s: %w", id, err)
		}
		if len(evs) > 0 {
			f.id, _ = evs[0]["id"].(string)
			recorded, _ := evs[0]["recorded"].(string)
			f.at, _ = time.Parse(time.RFC3339Nano, recorded)
		}
		if len(c.firsts) >= 10_000 || c.firsts == nil { // keep few: the pre-hash receipts read are many on a large trail
			c.firsts = map[string]firstNaming{}
		}
		c.firsts[id] = f
	}
	switch {
	case f.id == "" || f.id == e.ID || f.at.IsZero() || f.at.After(at):
		return true, nil
	case f.at.Before(at):
		return false, nil
	}
	if f.seq == 0 {
		seq, err := c.st.AuditChainSeq(ctx, f.id)
		if errors.Is(err, store.ErrNotFound) {
			return true, nil
		}
		if err != nil {
			return false, err
		}
		f.seq, c.firsts[id] = seq, firstNaming{id: f.id, at: f.at, seq: seq}
	}
	return f.seq > e.Seq, nil
}

// firstNaming is the first AuditEvent to name a Provenance (id "": none
// found; at zero: its recorded time unreadable).
type firstNaming struct {
	id  string
	at  time.Time
	seq int64 // its chain entry's, once looked up (0: not yet)
}

// checkSent checks the attempt delivery-send AuditEvent ev recorded (sent,
// read of it) against the outbox's row (and the item's payload).
func (c *lineageChecker) checkSent(ctx context.Context, e audit.ChainEntry, ev *chainedEvent, sent sentAttempt) error {
	delivery, destination, ds, n := sent.delivery, sent.destination, sent.details, sent.n
	if !sent.numbered {
		c.out.Lineage.Unchecked++
		return nil
	}
	about := fmt.Sprintf("delivery %s attempt %d", delivery, n)
	d, err := c.delivery(ctx, delivery)
	if err != nil {
		return err
	}
	if d.item == nil {
		c.fault(e, about, "the delivery this AuditEvent records an attempt of is not in the outbox: its row was deleted")
		return nil
	}
	var a *store.Attempt
	for _, x := range d.attempts {
		if x.N == n {
			a = x
		}
	}
	if a == nil {
		if d.item.Attempts < n && (d.item.Status == store.StatusInFlight || strings.HasPrefix(d.item.LastError, store.LeaseEnded)) {
			c.out.Lineage.InProgress++ // its worker is recording it, or stopped: the next records it
			return nil
		}
		if d.item.Attempts+1 == n && d.item.Status == store.StatusDead && strings.HasPrefix(d.item.LastError, operator.CancelledPrefix) {
			// Its worker stopped after this AuditEvent, and an operator
			// cancelled the delivery once its claim lapsed (p44 F2),
			// before any gateway recorded the attempt cut off.
			c.out.Lineage.InProgress++
			return nil
		}
		c.fault(e, about, "the attempt this AuditEvent records is not in the outbox: its row was deleted")
		return nil
	}
	var differs []string
	status, _ := detail(ds, audit.DetailHTTPStatus)
	if strconv.Itoa(a.HTTPStatus) != status {
		differs = append(differs, fmt.Sprintf("its HTTP status is %d where the AuditEvent says %s", a.HTTPStatus, status))
	}
	if h, _ := detail(ds, audit.DetailAnswerSHA256); audit.SHA256(a.Outcome) != h {
		differs = append(differs, "the EHR's answer is not the one recorded (its SHA-256 differs)")
	}
	if msg, _ := detail(ds, audit.DetailError); textOf(a.Error) != textOf(msg) {
		differs = append(differs, "its error is not the one recorded")
	}
	if d.item.Destination != destination {
		differs = append(differs, "the delivery's destination is not the one recorded")
	}
	if h, _ := detail(ds, audit.DetailPayloadSHA256); audit.SHA256(d.item.Payload) != h {
		differs = append(differs, "the delivery's payload is not what was sent (its SHA-256 differs)")
	}
	if ev.Period != nil {
		start, err := time.Parse(time.RFC3339Nano, ev.Period.Start)
		if err != nil || !start.Equal(a.At) {
			differs = append(differs, "its time is not the one recorded (period.start)")
		}
		if ev.Period.End != "" {
			end, err := time.Parse(time.RFC3339Nano, ev.Period.End)
			if err != nil || !end.Equal(a.At.Add(a.Duration)) {
				differs = append(differs, "its duration is not the one recorded (period.end)")
			}
		}
	}
	key := delivery + "#" + sent.attempt
	interrupted := strings.HasPrefix(a.Error, "interrupted")
	msg, _ := detail(ds, audit.DetailError)
	switch {
	case len(differs) == 0:
		c.out.Lineage.Attempts++
		if interrupted {
			delete(c.cutOff, key) // the attempt cut off is recorded, and audited, as interrupted
			if c.interrupted == nil {
				c.interrupted = map[string]bool{}
			}
			c.interrupted[key] = true
		}
	case interrupted && a.HTTPStatus == 0 && len(a.Outcome) == 0 && !strings.HasPrefix(msg, "interrupted") && c.interrupted[key]:
		c.out.Lineage.Attempts++ // its worker stalled past its lease: the next recorded the attempt, before this AuditEvent
	case interrupted && a.HTTPStatus == 0 && len(a.Outcome) == 0 && !strings.HasPrefix(msg, "interrupted"):
		// This AuditEvent was committed, then its worker stopped before
		// the attempt's row: the next worker recorded the attempt as
		// interrupted, with an AuditEvent of its own that must follow.
		if c.cutOff == nil {
			c.cutOff = map[string]cutOffAttempt{}
		}
		c.cutOff[key] = cutOffAttempt{at: a.At, fault: AuditFault{Seq: e.Seq, AuditEvent: e.ID, About: about,
			Problem: "the outbox records this attempt as interrupted, but no AuditEvent of an interrupted attempt says so: " + strings.Join(differs, "; ")}}
		c.out.Lineage.Attempts++
	default:
		c.fault(e, about, "the attempt is recorded otherwise than this AuditEvent says: "+strings.Join(differs, "; "))
	}
	return nil
}

// textOf is s as both a store's text column (PostgreSQL's keeps no NUL
// and no invalid UTF-8) and the AuditEvent's JSON keep it: each run of
// invalid bytes, NULs and U+FFFD one U+FFFD.
func textOf(s string) string {
	s = strings.ReplaceAll(strings.ToValidUTF8(s, "\uFFFD"), "\x00", "\uFFFD")
	for strings.Contains(s, "\uFFFD\uFFFD") {
		s = strings.ReplaceAll(s, "\uFFFD\uFFFD", "\uFFFD")
	}
	return s
}

// finish reports the attempts recorded as interrupted that no AuditEvent
// of an interrupted attempt vouches for, and the note. From an anchor,
// an attempt begun before the anchor's AuditEvent is left out: the one
// that vouches for it may be before the anchor, not walked.
func (c *lineageChecker) finish() {
	left := slices.SortedFunc(maps.Values(c.cutOff), func(a, b cutOffAttempt) int { return cmp.Compare(a.fault.Seq, b.fault.Seq) })
	for _, x := range left {
		if !c.fromAt.IsZero() && x.at.Before(c.fromAt) {
			continue
		}
		f := x.fault
		c.out.Lineage.Attempts--
		c.out.lineageFault(f.Seq, f.AuditEvent, f.About, f.Problem)
	}
	c.out.Lineage.note()
}

// delivery returns the outbox item of public id (its item nil when no
// item has that id).
func (c *lineageChecker) delivery(ctx context.Context, public string) (*checkedDelivery, error) {
	if d, ok := c.deliveries[public]; ok {
		return d, nil
	}
	if len(c.deliveries) >= 64 || c.deliveries == nil { // payloads may be large: keep few
		c.deliveries = map[string]*checkedDelivery{}
	}
	d := &checkedDelivery{}
	ids, err := c.ids.get(ctx)
	if err != nil {
		return nil, err
	}
	if row, ok := ids.Decode(public); ok {
		d.item, d.attempts, err = c.st.Delivery(ctx, row)
		if errors.Is(err, store.ErrNotFound) {
			d.item, err = nil, nil
		}
		if err != nil {
			return nil, err
		}
	}
	c.deliveries[public] = d
	return d, nil
}
