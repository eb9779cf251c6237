package console

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/auditlog"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/ingest"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/operator"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/outcome"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/search"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
	"github.com/ketamine-gateway/ketamine-gateway/mapping"
)

// event is one step of a request's story, for the timeline.
type event struct {
	At       time.Time
	Kind     string // request | receipt | attempt
	Request  *auditlog.RequestView
	This     bool
	Receipt  *auditlog.Receipt
	Delivery *operator.View
	Attempt  *operator.AttemptView
	// Fate says what became of the attempt (attemptFate): a timeline's
	// line is read on its own, so it never tells the delivery's current
	// status, which the receipt shows once.
	Fate string
}

// requestData is the request page's data.
type requestData struct {
	Event    auditlog.RequestView
	Raw      string
	Timeline []event
	Receipts []auditlog.Receipt
}

// instant parses a stored instant (zero when it is not one).
func instant(s string) time.Time {
	t, _ := time.Parse(time.RFC3339Nano, s)
	return t
}

// requestPage shows one request: its AuditEvent, its trace, what it wrote
// (resources with versions, the Provenance) and every delivery attempt with
// the EHR's answer, as one timeline built from the trace's lineage.
func (c *Console) requestPage(rq *request) error {
	id := rq.r.PathValue("id")
	res, err := c.app.Engine.Read(rq.ctx(), rq.sc, "AuditEvent", id)
	if kind, _ := outcome.From(err); err != nil && kind == outcome.NotFound {
		// The page is a request's: say so, not the API's "no such resource".
		return outcome.New(outcome.NotFound, "not-found", "resource-unknown",
			"no such request: no AuditEvent has that id (open requests from the audit trail)")
	}
	if err != nil {
		return err
	}
	var doc map[string]any
	if err := json.Unmarshal(res.Body, &doc); err != nil {
		return fmt.Errorf("stored AuditEvent %s: %w", id, err)
	}
	d := requestData{Event: auditlog.ViewAuditEvent(doc), Raw: pretty(res.Body)}
	rq.sc.Concern(d.Event.Patients()...) // the AuditEvent shown names them
	var l *auditlog.Lineage
	if d.Event.TraceID != "" {
		l, err = auditlog.BuildLineage(rq.ctx(), c.app.Store, auditlog.LineageQuery{TraceID: d.Event.TraceID,
			IdentifierBase: c.app.IdentifierBase, Tenant: rq.sc.TenantOf()})
		if kind, _ := outcome.From(err); err != nil && kind != outcome.NotFound {
			return err
		}
	}
	d.Timeline = timeline(l, d.Event)
	rq.sc.Description = "console request page: no trace"
	if l != nil {
		d.Receipts = l.Receipts
		l.Audit(rq.sc)
		rq.sc.Description = l.Describe("console request page")
	}
	return rq.render("request", "Request "+id, d)
}

// timeline orders a lineage's requests, receipts and delivery attempts by
// time; this is the request the page is about.
func timeline(l *auditlog.Lineage, this auditlog.RequestView) []event {
	var out []event
	seen := map[string]bool{}
	add := func(r auditlog.RequestView) {
		if seen[r.AuditEvent] {
			return
		}
		seen[r.AuditEvent] = true
		out = append(out, event{At: instant(r.Recorded), Kind: "request", Request: &r, This: r.AuditEvent == this.AuditEvent})
	}
	add(this)
	if l != nil {
		for _, r := range l.Requests {
			add(r)
		}
		for i := range l.Receipts {
			rc := &l.Receipts[i]
			out = append(out, event{At: instant(rc.Received), Kind: "receipt", Receipt: rc})
			for j := range rc.Deliveries {
				dv := &rc.Deliveries[j]
				for k := range dv.History {
					out = append(out, event{At: dv.History[k].At, Kind: "attempt", Delivery: dv, Attempt: &dv.History[k],
						Fate: attemptFate(dv, k)})
				}
			}
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].At.Before(out[j].At) })
	return out
}

// attemptFate says what became of attempt i of delivery v, from what
// followed it: a later attempt (it was not delivered, or was interrupted,
// and was sent again), else the delivery's status now (delivered, to be
// retried, a dead letter, cancelled, being sent again). The line of a
// failed attempt must not read "now done" because a later one delivered
// the record (probe p16 F8); the words are the delivery-send AuditEvent's.
func attemptFate(v *operator.View, i int) string {
	a := v.History[i]
	what := "Not delivered"
	if strings.HasPrefix(a.Error, "interrupted:") { // the delivery worker's interruptedError
		what = "Interrupted: the gateway stopped before the EHR's answer was recorded, so the EHR may have received the record"
	}
	if i < len(v.History)-1 {
		return fmt.Sprintf("%s; sent again (attempt %d).", what, v.History[i+1].N)
	}
	switch v.Status {
	case store.StatusDone:
		return "Delivered."
	case store.StatusDead:
		if strings.HasPrefix(v.LastError, operator.CancelledPrefix) {
			return what + "; the delivery was then cancelled by an operator."
		}
		return what + ": a dead letter, not sent again unless retried."
	case store.StatusInFlight:
		return what + "; being sent again now."
	}
	return what + ", to be retried."
}

// recordData is the source record page's data.
type recordData struct {
	Source, Record, Kind string
	Kinds                []string
	Asked                bool
	Receipts             []auditlog.Receipt
	Accesses             []auditlog.RequestView
	// Capped tells that more than maxAccesses requests touched the
	// record's resources: Accesses holds the newest maxAccesses of them.
	Capped bool
}

// maxAccesses bounds the requests a source record's page lists.
const maxAccesses = 100

// recordPage shows a source record: every version received, the resources
// each produced, their deliveries, and who touched those resources since:
// the record's own resources and Provenance, not its Patient, which every
// record of the patient shares (a search naming it would list the whole
// patient's trail as this record's: probe p39 F4); the page says where
// the patient's trail is.
// Source and record ids name a clinic's record, not a patient, so they may
// stand in the URL (the gateway logs only route templates anyway).
func (c *Console) recordPage(rq *request) error {
	q := rq.r.URL.Query()
	d := recordData{Source: q.Get("source"), Record: q.Get("record"), Kind: q.Get("kind")}
	for _, k := range mapping.Kinds() {
		d.Kinds = append(d.Kinds, string(k))
	}
	if d.Source == "" && d.Record == "" {
		rq.sc.Interaction = ""
		return rq.render("record", "Source record", d)
	}
	d.Asked = true
	if d.Kind != "" && !ingest.KnownKind(mapping.Kind(d.Kind)) {
		return outcome.New(outcome.Invalid, "invalid", "lineage-query-invalid", "kind: choose one of the listed kinds")
	}
	l, err := auditlog.BuildLineage(rq.ctx(), c.app.Store, auditlog.LineageQuery{Source: d.Source, RecordID: d.Record,
		Kind: d.Kind, IdentifierBase: c.app.IdentifierBase, Tenant: rq.sc.TenantOf()})
	if kind, _ := outcome.From(err); kind == outcome.NotFound {
		// The page says the gateway has received no such record.
		l, err = &auditlog.Lineage{Query: auditlog.LineageQuery{Source: d.Source, RecordID: d.Record, Kind: d.Kind,
			IdentifierBase: c.app.IdentifierBase}}, nil
	}
	if err != nil {
		return err
	}
	l.Audit(rq.sc)
	d.Receipts = l.Receipts
	refs := map[string]bool{}
	var list []string
	for _, rc := range l.Receipts {
		for _, r := range append([]string{rc.Provenance}, rc.Resources...) {
			if i := strings.Index(r, "/_history/"); i > 0 {
				r = r[:i]
			}
			if strings.HasPrefix(r, "Patient/") {
				continue
			}
			if !refs[r] {
				refs[r] = true
				list = append(list, r)
			}
		}
	}
	if len(list) > 0 {
		// As many references a search as a parameter may OR: a session
		// record's resources are often more (a session with a few more
		// assessments made 156, and the page answered 400, p45). The
		// newest maxAccesses+1 of the union are among each search's.
		per := c.app.Engine.Limits().Values
		var matches []*store.Resource
		seen := map[string]bool{}
		for chunk := range slices.Chunk(list, per) {
			sr, err := c.app.Engine.Search(rq.ctx(), rq.sc, "AuditEvent",
				url.Values{"entity": {strings.Join(chunk, ",")}, "_sort": {"-date"}, "_count": {strconv.Itoa(maxAccesses + 1)}, "_total": {"none"}}, false)
			if err != nil {
				return err
			}
			for _, m := range sr.Page.Matches {
				if !seen[m.ID] {
					seen[m.ID] = true
					matches = append(matches, m)
				}
			}
		}
		slices.SortStableFunc(matches, func(a, b *store.Resource) int { return b.LastUpdated.Compare(a.LastUpdated) })
		if len(matches) > maxAccesses { // one more than shown tells that the list is cut
			matches, d.Capped = matches[:maxAccesses], true
		}
		for _, m := range matches {
			var doc map[string]any
			if err := json.Unmarshal(m.Body, &doc); err != nil {
				return fmt.Errorf("stored AuditEvent %s: %w", m.ID, err)
			}
			d.Accesses = append(d.Accesses, auditlog.ViewAuditEvent(doc))
		}
	}
	// And the requests that named the record itself (versions re-sent or
	// refused, dry runs, lineage reads), newest first with the rest.
	shown := map[string]bool{}
	for _, a := range d.Accesses {
		shown[a.AuditEvent] = true
	}
	for _, r := range l.Requests {
		if !shown[r.AuditEvent] {
			d.Accesses = append(d.Accesses, r)
		}
	}
	sort.SliceStable(d.Accesses, func(i, j int) bool { return d.Accesses[i].Recorded > d.Accesses[j].Recorded })
	// Each request once: an all-tenant reader finds an all-tenant
	// request's whole record and its tenants' shares.
	d.Accesses, _ = auditlog.FoldShares(d.Accesses)
	rq.sc.Description = fmt.Sprintf("console record page: %s, %s", auditlog.Counted(len(d.Receipts), "receipt"),
		auditlog.CountedAs(len(d.Accesses), "access", "accesses"))
	return rq.render("record", "Source record", d)
}

// chainData is the audit chain page's data.
type chainData struct {
	Last *auditlog.AuditVerification
	By   string
	// Anchors is the anchors field: as typed when it was refused (Error
	// says why), else the last verification's anchors.
	Anchors string
	Error   string
	// CanVerify tells that the person may verify the chain (it needs one
	// acting for every tenant: the chain's length tells of every tenant).
	CanVerify bool
}

// maxAnchors is the most anchors one verification checks.
const maxAnchors = 20

// chainPage shows the last verification of the audit chain this process
// ran (a verification reads the whole chain, so it is an action, not a
// page view).
func (c *Console) chainPage(rq *request) error {
	d := c.chainData()
	d.CanVerify = mayVerify(rq)
	return rq.render("chain", "Audit chain", d)
}

// mayVerify tells that the person acts for every tenant (or in
// development mode, the default tenant): the chain's length tells of
// every tenant.
func mayVerify(rq *request) bool {
	t := rq.sc.TenantOf()
	return t == "" || t == search.AllTenants
}

func (c *Console) chainData() chainData {
	c.verifyMu.Lock()
	d := chainData{Last: c.lastVerify, By: c.lastBy}
	c.verifyMu.Unlock()
	if d.Last != nil {
		lines := make([]string, len(d.Last.Anchors))
		for i, a := range d.Last.Anchors {
			lines[i] = fmt.Sprintf("%d:%s", a.Seq, a.Hash)
		}
		d.Anchors = strings.Join(lines, "\n")
	}
	return d
}

// parseAnchors reads the anchors field: anchors written SEQ:HASH,
// separated by line breaks or spaces. The error names the field and what
// is wanted (never the value).
func parseAnchors(v string) ([]auditlog.Anchor, error) {
	fields := strings.Fields(v)
	if len(fields) > maxAnchors {
		return nil, fmt.Errorf("Anchors: at most %d at a time", maxAnchors)
	}
	var out []auditlog.Anchor
	for i, f := range fields {
		a, err := auditlog.ParseAnchor(f)
		if err != nil {
			return nil, fmt.Errorf("Anchors (anchor %d): %v", i+1, err)
		}
		out = append(out, a)
	}
	return out, nil
}

// chainVerify walks the audit chain; like GET /admin/audit/verify it needs
// an all-tenant person (the chain's length tells of every tenant).
func (c *Console) chainVerify(rq *request) error {
	if !mayVerify(rq) {
		return outcome.New(outcome.Forbidden, "forbidden", "tenant-audit-verify", "verifying the audit chain needs an all-tenant auditor")
	}
	typed := rq.r.PostForm.Get("anchors")
	anchors, err := parseAnchors(typed)
	if err != nil {
		// The page again, with what was typed and the error at the field;
		// nothing verified.
		rq.status = 400
		rq.sc.Rules = []string{"console-form-invalid"}
		d := c.chainData()
		d.CanVerify = true // past mayVerify above
		d.Anchors, d.Error = typed, err.Error()
		return rq.render("chain", "Audit chain", d)
	}
	// The walk grows with the chain (about 1 ms an AuditEvent): the
	// server's write deadline is lifted for this request, as for GET
	// /admin/audit/verify (a client that gives up still ends it).
	_ = http.NewResponseController(rq.w).SetWriteDeadline(time.Time{})
	res, err := auditlog.Verify(rq.ctx(), c.app.Store, c.now(), anchors...)
	if err != nil {
		return err
	}
	rq.sc.Description = res.Describe()
	who := rq.sess.principal.ClientID
	if who == "" {
		who = "development mode"
	}
	c.verifyMu.Lock()
	c.lastVerify, c.lastBy = res, who
	c.verifyMu.Unlock()
	rq.sess.setFlash(map[bool]string{true: "Chain intact", false: "Chain broken"}[res.Intact], "")
	return rq.seeOther(Prefix + "/audit/chain")
}
