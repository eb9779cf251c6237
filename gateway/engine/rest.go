package engine

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.opentelemetry.io/otel/attribute"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/auditlog"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/fhirwire"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/outcome"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/search"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
	"github.com/ketamine-gateway/ketamine-gateway/schemas/r4"
)

// The RESTful interactions on one type or instance (http.html). Each
// checks the type and id, then the caller's scope, and only then reads the
// request body (Body), so an unauthorised client's body is never read.

// Body reads a request body when the engine needs it.
type Body func() ([]byte, error)

var (
	errTypeUnknown    = outcome.New(outcome.NotFound, "not-supported", "resource-type-unknown", typeUnknown)
	errResourceUnkown = outcome.New(outcome.NotFound, "not-found", "resource-unknown", "no such resource")
	errVersionUnknown = outcome.New(outcome.NotFound, "not-found", "version-unknown", "no such version")
	// errVersionForm answers a vread of a version id the gateway never
	// issues in that form (01, +1, a name) of a resource that exists.
	errVersionForm = outcome.New(outcome.NotFound, "not-found", "version-unknown",
		"no such version: the gateway's version ids are 1, 2, 3, ... written without sign or leading zeros")
	// errTypeNotRESTful answers a request on /fhir/Parameters: R4 gives
	// Parameters no RESTful endpoint (parameters.html), it is an
	// operation's input and output, never stored.
	errTypeNotRESTful = outcome.New(outcome.NotFound, "not-supported", "resource-type-not-restful",
		"Parameters has no RESTful endpoint in R4 (parameters.html): it carries an operation's parameters and is never "+
			"stored, read or searched; to validate a Parameters resource, POST it to /fhir/$validate")
)

// typeUnknown is the message of a type in a URL that is no R4 resource type.
const typeUnknown = "not a FHIR R4 resource type"

// notRESTful is the R4 resource type that has no RESTful endpoint.
const notRESTful = "Parameters"

// checkType checks a resource type named by the client.
func (e *Engine) checkType(typ string) error {
	switch {
	case !e.v.KnownType(typ):
		if hint := e.v.TypeHint(typ); hint != "" {
			// (an EHR engineer's review: a misspelt type in a body was
			// told the nearest, in a URL not)
			return outcome.New(outcome.NotFound, "not-supported", "resource-type-unknown", typeUnknown+hint)
		}
		return errTypeUnknown
	case typ == notRESTful:
		return errTypeNotRESTful
	}
	return nil
}

// checkInstance checks a type and id named by the client.
func (e *Engine) checkInstance(typ, id string) error {
	if err := e.checkType(typ); err != nil {
		return err
	}
	if !fhirwire.ValidID(id) {
		return errResourceUnkown
	}
	return nil
}

// checkWriteID checks a type and the id of a PUT or DELETE, whose
// resource may not exist: an id that is not a FHIR id is Invalid (the
// client must change it), not NotFound (which would say it only needs
// creating); so is, for a PUT (put), which may create the resource, an id
// a client may not write at (writableID). A DELETE may remove a resource
// an earlier build stored at such an id.
func (e *Engine) checkWriteID(typ, id string, put bool) error {
	if err := e.checkType(typ); err != nil {
		return err
	}
	if !fhirwire.ValidID(id) || put && !writableID(id) {
		return errIDInvalid(typ + ".id")
	}
	return nil
}

// Target returns the instance typ/id names when both are valid, for the
// audit record of a failed interaction (ok false otherwise).
func (e *Engine) Target(typ, id string) (string, string, bool) {
	return typ, id, typ != "" && id != "" && e.checkInstance(typ, id) == nil
}

// Read returns the current version of typ/id. A deleted resource is
// ErrGone with the deletion's version in the returned resource.
func (e *Engine) Read(ctx context.Context, sc *auditlog.Scope, typ, id string) (*store.Resource, error) {
	return e.read(ctx, sc, reads{}, typ, id)
}

// read is Read with what in reads from.
func (e *Engine) read(ctx context.Context, sc *auditlog.Scope, in reads, typ, id string) (*store.Resource, error) {
	if err := e.checkInstance(typ, id); err != nil {
		return nil, err
	}
	if err := allow(sc, typ, 'r'); err != nil {
		return nil, err
	}
	r, err := e.reader(sc, in).Read(ctx, typ, id)
	if errors.Is(err, store.ErrNotFound) && publishedTypes[typ] {
		return nil, outcome.New(outcome.NotFound, "not-found", "resource-unknown", "the gateway publishes no "+typ+
			" with this id; GET /fhir/"+typ+" lists those it publishes, ?url= finds one by its canonical url").At(typ + ".id")
	}
	if errors.Is(err, store.ErrGone) && !e.deletionShown(sc, readsAt{ctx, e.reader(sc, in)}, r) {
		return nil, errResourceUnkown
	}
	if err != nil {
		return r, err
	}
	if !e.Visible(sc, r) {
		return nil, errResourceUnkown
	}
	sc.Touch(r)
	return r, nil
}

// VRead returns version vid of typ/id. A version that is a deletion is
// Gone, with that version in the returned resource. A version the resource
// does not have is NotFound version-unknown; an unknown resource is
// resource-unknown.
func (e *Engine) VRead(ctx context.Context, sc *auditlog.Scope, typ, id, vid string) (*store.Resource, error) {
	return e.vread(ctx, sc, reads{}, typ, id, vid)
}

// vread is VRead with what in reads from.
func (e *Engine) vread(ctx context.Context, sc *auditlog.Scope, in reads, typ, id, vid string) (*store.Resource, error) {
	if err := e.checkInstance(typ, id); err != nil {
		return nil, err
	}
	if err := allow(sc, typ, 'r'); err != nil {
		return nil, err
	}
	st := e.reader(sc, in)
	// A resource whose read the caller gets (its current version, or its
	// deletion, shown) tells a wrong version from a wrong id
	// (version-unknown). One whose read is 404 is, in every version, as
	// one of another tenant (resource-unknown): a version-unknown for a
	// version it has, or had, would tell that it exists.
	cur, rerr := st.Read(ctx, typ, id)
	known := rerr == nil && e.Visible(sc, cur) || errors.Is(rerr, store.ErrGone) && e.deletionShown(sc, readsAt{ctx, st}, cur)
	if !known && (rerr == nil || errors.Is(rerr, store.ErrGone)) {
		return nil, errForeign
	}
	v, err := strconv.ParseInt(vid, 10, 64)
	switch canonical := err == nil && v >= 1 && strconv.FormatInt(v, 10) == vid; {
	case !canonical && known:
		return nil, errVersionForm
	case !canonical:
		// Neither the resource nor the version: the resource is what is
		// unknown (a conformance review: "no such version" said the
		// resource was there).
		return nil, errResourceUnkown
	}
	r, err := st.VRead(ctx, typ, id, v)
	switch {
	case errors.Is(err, store.ErrNotFound) && known:
		return nil, errVersionUnknown
	case errors.Is(err, store.ErrNotFound):
		return nil, errResourceUnkown
	}
	if err != nil {
		return nil, err
	}
	if r.Deleted && !e.deletionShown(sc, readsAt{ctx, st}, r) {
		return nil, errVersionUnknown
	}
	if r.Deleted {
		return r, outcome.New(outcome.Gone, "deleted", "resource-deleted", "this version is a deletion")
	}
	if !e.Visible(sc, r) {
		return nil, errVersionUnknown
	}
	sc.Touch(r)
	return r, nil
}

// writable checks the type of a client write.
func (e *Engine) writable(typ string) error {
	if err := e.checkType(typ); err != nil {
		return err
	}
	return clientWritable(typ)
}

// readResource reads and validates a write's body as a resource of typ
// (checkClientDoc: checkID for an update, not for a create, whose id is
// ignored).
func (e *Engine) readResource(ctx context.Context, typ string, body Body, checkID bool) (map[string]any, error) {
	raw, err := body()
	if err != nil {
		return nil, err
	}
	var doc map[string]any
	err = e.stage(ctx, "fhir.validate", func(context.Context) error {
		doc, err = e.v.Resource(raw, typ, "")
		return err
	}, attribute.String("fhir.resource_type", typ))
	if err != nil {
		return nil, err
	}
	if err := checkClientDoc(doc, typ, "", checkID); err != nil {
		return nil, err
	}
	return doc, nil
}

// writeOne runs one write interaction in a retried, audited transaction.
func (e *Engine) writeOne(ctx context.Context, sc *auditlog.Scope, typ, interaction string, op func(tx *Tx) (*Result, error)) (*Result, error) {
	var res *Result
	err := e.stage(ctx, "store.transaction", func(ctx context.Context) error {
		return e.Write(ctx, sc, func(tx *Tx) (int, error) {
			var err error
			if res, err = op(tx); err != nil {
				return 0, err
			}
			sc.Touch(res.Resource)
			if res.Unchanged {
				sc.Description = typ + " " + interaction + ": unchanged, no version written"
			}
			return res.Status, nil
		})
	}, attribute.String("fhir.resource_type", typ), attribute.String("fhir.interaction", interaction))
	return res, err
}

// writeEntry runs a single create, update or conditional update through the
// transaction engine as a one-entry transaction, so a single request and a
// Bundle entry follow exactly the same rules (conditional matching, the
// exactly-once key, reference handling).
func (e *Engine) writeEntry(ctx context.Context, sc *auditlog.Scope, en *Entry, interaction string) (*Result, error) {
	en.bodyID, _ = en.doc["id"].(string)
	res, err := e.writeOne(ctx, sc, en.typ, interaction, func(tx *Tx) (*Result, error) {
		if err := e.runTransaction(tx.st, tx.sc, []*Entry{en}, tx.now, nil, nil); err != nil {
			return nil, outcome.Unentry(err)
		}
		return en.res, nil
	})
	return res, locateTooLong(err, []*Entry{en}, false)
}

// Create creates a resource of typ (http.html#create), or, with
// pre.IfNoneExist, finds the one resource those criteria match
// (conditional create: StatusOK and that resource). pre holds nothing
// else: a create makes a new resource, which no other precondition can
// name, and a client that sent one meant a guard the create would not
// apply (Invalid precondition-unsupported).
func (e *Engine) Create(ctx context.Context, sc *auditlog.Scope, typ string, body Body, pre Preconditions) (*Result, error) {
	if err := e.writable(typ); err != nil {
		return nil, err
	}
	if err := allow(sc, typ, 'c'); err != nil {
		return nil, err
	}
	if err := pre.empty(); err != nil {
		return nil, err
	}
	ifNoneExist := pre.IfNoneExist
	if pre != (Preconditions{IfNoneExist: ifNoneExist}) {
		return nil, outcome.New(outcome.Invalid, "not-supported", "precondition-unsupported",
			"a create (POST) makes a new resource, which If-Match, If-None-Match and If-Unmodified-Since cannot name; "+
				"send If-None-Exist for a conditional create, or PUT the resource at its id with If-None-Match: * "+
				"to create it only if it does not exist")
	}
	if err := e.allowCriteria(sc, typ, ifNoneExist, false); err != nil {
		return nil, err
	}
	doc, err := e.readResource(ctx, typ, body, false)
	if err != nil {
		return nil, err
	}
	res, err := e.writeEntry(ctx, sc, &Entry{method: "POST", typ: typ, doc: doc, ifNoneExist: ifNoneExist, client: true, rest: true}, "create")
	if err == nil && !res.Created && !e.Visible(sc, res.Resource) {
		res.Withheld = true // an existing resource matched, which the caller may not read
	}
	return res, err
}

// Update writes a new version of typ/id, or creates it with the client's id
// (http.html#update), when the preconditions pre hold against its latest
// version (PreconditionFailed otherwise; a malformed one is Invalid). An
// id that is not a FHIR id is Invalid.
func (e *Engine) Update(ctx context.Context, sc *auditlog.Scope, typ, id string, body Body, pre Preconditions) (*Result, error) {
	if err := e.checkWriteID(typ, id, true); err != nil {
		return nil, err
	}
	if err := clientWritableAt(typ, id); err != nil {
		return nil, err
	}
	if err := allow(sc, typ, 'u'); err != nil {
		return nil, err
	}
	cond, err := pre.parse(false)
	if err != nil {
		return nil, err
	}
	doc, err := e.readResource(ctx, typ, body, true)
	if err != nil {
		return nil, err
	}
	if bid, _ := doc["id"].(string); bid != id {
		return nil, outcome.New(outcome.Invalid, "invalid", "id-mismatch", "the resource id must equal the id in the URL").At(typ + ".id")
	}
	// Through the transaction engine, as a create and a patch are: the
	// same references are rewritten (conditional ones resolved, those on
	// the own base made relative) and the same kept as written.
	return e.writeEntry(ctx, sc, &Entry{method: "PUT", typ: typ, id: id, doc: doc, pre: cond, client: true, rest: true}, "update")
}

// ConditionalUpdate updates the one resource of typ that query selects, or
// creates one when none does (http.html#cond-update); pre are checked as
// for Update, against the resource matched (or none).
func (e *Engine) ConditionalUpdate(ctx context.Context, sc *auditlog.Scope, typ, query string, body Body, pre Preconditions) (*Result, error) {
	if err := e.writable(typ); err != nil {
		return nil, err
	}
	if err := allow(sc, typ, 'u'); err != nil {
		return nil, err
	}
	if query == "" {
		return nil, outcome.New(outcome.Invalid, "invalid", "conditional-criteria-missing", "PUT on a type needs search criteria (or use PUT /fhir/Type/id)")
	}
	if err := e.allowCriteria(sc, typ, query, false); err != nil {
		return nil, err
	}
	cond, err := pre.parse(false)
	if err != nil {
		return nil, err
	}
	doc, err := e.readResource(ctx, typ, body, true)
	if err != nil {
		return nil, err
	}
	return e.writeEntry(ctx, sc, &Entry{method: "PUT", typ: typ, query: query, doc: doc, pre: cond, client: true, rest: true}, "conditional-update")
}

// Delete deletes typ/id (http.html#delete); deleting what does not exist
// succeeds with no resource in the result; an id that is not a FHIR id is
// Invalid. The preconditions pre must hold (http.html#concurrency; see
// Preconditions): PreconditionFailed otherwise (If-Match: * for a
// resource that does not exist or is deleted); a malformed one is Invalid.
func (e *Engine) Delete(ctx context.Context, sc *auditlog.Scope, typ, id string, pre Preconditions) (*Result, error) {
	if err := e.checkWriteID(typ, id, false); err != nil {
		return nil, err
	}
	if err := clientWritableAt(typ, id); err != nil {
		return nil, err
	}
	if err := allow(sc, typ, 'd'); err != nil {
		return nil, err
	}
	cond, err := pre.parse(false)
	if err != nil {
		return nil, err
	}
	cond.blind = blindTo(sc, typ)
	var res *Result
	err = e.Write(ctx, sc, func(tx *Tx) (int, error) {
		if typ == "Provenance" {
			if err := provenanceWrite(tx.st, id, nil); err != nil {
				return 0, err
			}
		}
		st := tx.st
		if err := e.checkStored(st, sc, typ, id, 'd'); errors.Is(err, errForeign) {
			st = hiding{Tx: st, typ: typ, id: id}
		} else if err != nil {
			return 0, err
		}
		var err error
		if res, err = e.remove(st, typ, id, cond, tx.now); err != nil {
			return 0, err
		}
		sc.TouchDeletion(typ, id, res.Resource, res.Was)
		return fhirwire.StatusNoContent, nil
	})
	return res, err
}

// SearchResult is one page of a search.
type SearchResult struct {
	Query *search.Query
	// Page holds the matches and included resources the caller may be
	// shown (Visible); Page.Total counts every match.
	Page *store.Page
	// Withheld counts the resources of the page left out because the
	// caller may not see them (see WithheldEntry).
	Withheld int
	// Ignored are the parameter keys a lenient search ignored, as sent;
	// an answer names only those search.ShownName allows.
	Ignored []string
	// Warnings are issues the answer reports in an outcome entry: the
	// rounds of _include:iterate stopped at their bound.
	Warnings []outcome.Issue
	// Next is where the next page starts (its link's _cursor): the last
	// match of the page, shown or withheld, when more follow it
	// (store.Page.Next); nil otherwise.
	Next *search.Cursor
	// Paged says that the store looked one match past the page (an
	// ordered search): no Next means no next page, whatever the total
	// (counted at another moment) says. Without it (the offset pages of
	// $everything), a full page below the total has a next one.
	Paged bool
	// Taken is how many matches the store's page held, shown or withheld:
	// fewer than the _count where the page ended at its size bound, and
	// the next page's _offset numbers it after them.
	Taken int
	// NextOffset, when not 0, is where the next of the offset pages of
	// $everything starts: the page ended before its _count at its size
	// bound (search.Limits.PageBytes).
	NextOffset int
	// Bound is the _lastUpdated value (lt<instant>) the engine added to
	// a search of AuditEvents to make its pages a snapshot (auditSnapshot),
	// "" when it added none (another type, or the parameters held a
	// bound: the next link's). The searchset's links carry it as a
	// _lastUpdated parameter; a caller that pages by other means (the
	// console) passes it as one to make its pages that snapshot.
	Bound string
}

// ParseQuery decodes the raw query string of a request on typ (the
// resource type searched or operated on; "" for the system level) by
// search.ParseQuery, the rule every entry point applies. Returns an Invalid
// error (search-value-invalid, naming the parameter when the gateway knows
// it) if a name or value is not percent-encoded UTF-8.
func ParseQuery(typ, raw string) (url.Values, error) {
	vals, err := search.ParseQuery(typ, raw)
	if err != nil {
		return nil, searchError(err)
	}
	return vals, nil
}

// Search searches typ (search.html). lenient ignores unknown parameters
// (Prefer: handling=lenient) and lists them in Ignored. The search is
// parsed within the engine's search.Limits (search-limit-exceeded beyond
// them), runs in one of the caller's search slots (429
// search-concurrency-limit when it has none free) and under the search
// timeout (503 search-too-costly when it takes longer). Every match and
// included resource passes Visible; the others are left out and counted
// in Withheld.
func (e *Engine) Search(ctx context.Context, sc *auditlog.Scope, typ string, params url.Values, lenient bool) (*SearchResult, error) {
	if err := e.checkType(typ); err != nil {
		return nil, err
	}
	return e.search(ctx, sc, reads{}, typ, params, lenient, nil)
}

// search runs a search of typ with params and the clauses extra (a
// compartment's) added, with what in reads from.
func (e *Engine) search(ctx context.Context, sc *auditlog.Scope, in reads, typ string, params url.Values, lenient bool, extra []search.Clause) (*SearchResult, error) {
	if err := allow(sc, typ, 's'); err != nil {
		return nil, err
	}
	out := &SearchResult{}
	params, out.Bound = e.auditSnapshot(typ, params)
	var err error
	if out.Query, out.Ignored, err = e.limitsFor(sc).Parse(typ, params, lenient); err != nil {
		return nil, searchError(err)
	}
	out.Query.MaxBytes = e.limits.PageBytes // a client's page (the gateway's own searches read every match)
	if err := allowLinked(sc, out.Query); err != nil {
		return nil, err
	}
	if err := e.checkSubset(typ, out.Query.Elements); err != nil {
		return nil, err
	}
	out.Query.Clauses = append(out.Query.Clauses, extra...)
	if err := restrict(sc, out.Query); err != nil {
		return nil, err
	}
	err = e.queryIn(ctx, sc, in, func(ctx context.Context, st reader) error {
		var err error
		if out.Page, err = st.Search(ctx, out.Query); err != nil {
			return err
		}
		if out.Query.SummaryCount {
			if err := concernCriteria(ctx, sc, st, out.Query); err != nil {
				return err
			}
		}
		return e.include(ctx, sc, st, out)
	})
	if err != nil {
		return nil, searchError(err) // (IncludedTooLarge)
	}
	out.Next = out.Page.Next
	out.Paged = out.Query.Ordered()
	out.Taken = len(out.Page.Matches)
	var wm int
	out.Page.Matches, wm = e.Disclose(sc, out.Page.Matches)
	out.Withheld += wm
	sc.Touch(out.Page.Matches...)
	sc.Touch(out.Page.Included...)
	sc.Description = searchDescription(typ, out)
	out.Page.Matches = e.subsetAll(out.Query, out.Page.Matches)
	if typ == "AuditEvent" && len(out.Page.Matches) == 0 && agentByID(params) {
		out.Warnings = append(out.Warnings, errAgentByID)
	}
	return out, nil
}

// agentByID reports whether params search AuditEvent.agent by a bare id
// (agent=emr-b), which finds the agents referenced by resource id: the
// gateway names its clients by identifier (agent:identifier=emr-b).
func agentByID(params url.Values) bool {
	for _, v := range params["agent"] {
		for x := range strings.SplitSeq(v, ",") {
			if x != "" && !strings.Contains(x, "/") {
				return true
			}
		}
	}
	return false
}

// errAgentByID is the note of an AuditEvent search by agent=<bare id> that
// found nothing (an auditor's review: an empty trail, and no word that the
// clients are named by identifier).
var errAgentByID = outcome.Issue{Severity: "information", Code: "informational", Rule: "audit-agent-by-identifier",
	Expression: "agent", Message: "agent finds an agent referenced by resource id (a Practitioner, a Device); the " +
		"gateway names its clients by identifier: search agent:identifier=<client id> to find a client's AuditEvents"}

// HistoryResult is one page of a history.
type HistoryResult struct {
	Query    store.HistoryQuery
	Versions []*store.Resource
	Total    int
	// Ignored are the parameter keys a lenient history ignored, as sent.
	Ignored []string
	// Taken is how many versions of the history the page took, shown or
	// not: fewer than Query.Count where the page ended at its size bound
	// (search.Limits.PageBytes), and the next page starts after them.
	Taken int
}

// History returns versions of the system (typ and id ""), a type (id "")
// or an instance, newest first (http.html#history), paged by _count and
// _offset and bounded by _since in params (historyParams: other parameters
// are Invalid, or with lenient ignored and listed in the result).
func (e *Engine) History(ctx context.Context, sc *auditlog.Scope, typ, id string, params url.Values, lenient bool) (*HistoryResult, error) {
	return e.history(ctx, sc, reads{}, typ, id, params, lenient)
}

// history is History with what in reads from.
func (e *Engine) history(ctx context.Context, sc *auditlog.Scope, in reads, typ, id string, params url.Values, lenient bool) (*HistoryResult, error) {
	q := store.HistoryQuery{Count: 50, MaxBytes: e.limits.PageBytes}
	if typ != "" {
		if err := e.checkType(typ); err != nil {
			return nil, err
		}
		q.Type = typ
	}
	if id != "" {
		if !fhirwire.ValidID(id) {
			return nil, errResourceUnkown
		}
		q.ID = id
	}
	scopeType := q.Type
	if scopeType == "" {
		scopeType = "*" // the whole system's history needs a system/*.r scope
	}
	if err := allow(sc, scopeType, 'r'); err != nil {
		return nil, err
	}
	ignored, err := historyParams(&q, typ, params, lenient)
	if err != nil {
		return nil, err
	}
	if typ == "" && len(q.Types) == 0 {
		// Every request records an AuditEvent, each a version: in the
		// system's history a poll would find those of the polls before it
		// and never "nothing new". They are the record of who did what,
		// not the data: /fhir/AuditEvent/_history, or _type=AuditEvent.
		q.Exclude = []string{"AuditEvent"}
	}
	countOnly := q.Count == 0
	if countOnly {
		q.Count = 1 // the store pages at least one; none is answered
	}
	restricted := q.Type != "" && restrictedFor(sc, q.Type, "rs")
	if restricted && q.ID == "" {
		// The versions of a type are not indexed by their content: their
		// total and pages could not be confined to the restriction.
		return nil, unenforceable("the access token reads " + q.Type + " through granular scopes only (restricted " +
			"by search parameters), and the history of every " + q.Type + " cannot be confined to them: read the " +
			"history of each resource (" + q.Type + "/{id}/_history) or search " + q.Type + " with _lastUpdated")
	}
	var versions []*store.Resource
	var total int
	err = e.queryIn(ctx, sc, in, func(ctx context.Context, st reader) error {
		var err error
		if restricted {
			versions, total, err = restrictedHistory(ctx, e, sc, st, q)
			return err
		}
		versions, total, err = st.History(ctx, q)
		return err
	})
	if err != nil {
		return nil, err
	}
	if q.ID != "" && total == 0 {
		// None since _since is an empty history of a resource that
		// exists (a client polling for changes), not an unknown one: the
		// versions are counted again without it.
		exists := false
		if !q.Since.IsZero() {
			all := q
			all.Since, all.Count, all.Offset = time.Time{}, 1, 0
			err := e.queryIn(ctx, sc, in, func(ctx context.Context, st reader) error {
				var n int
				var err error
				if restricted {
					_, n, err = restrictedHistory(ctx, e, sc, st, all)
				} else {
					_, n, err = st.History(ctx, all)
				}
				exists = n > 0
				return err
			})
			if err != nil {
				return nil, err
			}
		}
		if !exists {
			return nil, errResourceUnkown
		}
	}
	// The scope check above covers every version's type; Disclose keeps
	// the one decision in one place (and the tenant check twice).
	// restrictedHistory decided already, deletions included.
	if countOnly {
		versions, q.Count = nil, 0
	}
	taken := len(versions)
	if !restricted {
		versions, _ = e.Disclose(sc, versions)
	}
	sc.Touch(versions...)
	sc.Description = fmt.Sprintf("%d versions", len(versions))
	return &HistoryResult{Query: q, Versions: versions, Total: total, Ignored: ignored, Taken: taken}, nil
}

// historyParams reads the parameters of a history of typ ("" for the
// system) into q, by the rules of search where they overlap: _count (0:
// the total only; above search.MaxCount taken as it), _offset, _since (an
// instant), each at most once; _format and _pretty are the edge's. R4's
// _at and _list, and any other parameter, are not supported: an error
// (search-param-unsupported, search-param-unknown), or with lenient
// ignored and returned, as a lenient search does.
func historyParams(q *store.HistoryQuery, typ string, params url.Values, lenient bool) ([]string, error) {
	bad := func(key, msg string) error {
		return outcome.New(outcome.Invalid, "invalid", search.RuleValueInvalid, msg).At(key)
	}
	var ignored []string
	for _, key := range slices.Sorted(maps.Keys(params)) {
		vals := params[key]
		switch key {
		case "_count", "_offset", "_since":
			if len(vals) > 1 {
				return nil, bad(key, key+" is given more than once")
			}
		}
		v := vals[0]
		switch key {
		case "_count":
			n, ok := search.NonNegative(v)
			if !ok {
				return nil, bad(key, "_count must be a non-negative integer")
			}
			q.Count = min(n, search.MaxCount)
		case "_offset":
			n, ok := search.NonNegative(v)
			if !ok {
				return nil, bad(key, "_offset must be a non-negative integer")
			}
			q.Offset = n
		case "_since":
			t, msg := search.ParseSince(v)
			if msg != "" {
				return nil, bad(key, msg)
			}
			q.Since = t
		case "_type":
			if typ != "" {
				return nil, outcome.New(outcome.Invalid, "not-supported", search.RuleParamUnsupported,
					"_type belongs to the system's history (/fhir/_history); a type's history is of its type").At(key)
			}
			if len(vals) > 1 {
				return nil, bad(key, key+" is given more than once")
			}
			for t := range strings.SplitSeq(v, ",") {
				if !r4.IsResourceType(t) {
					return nil, bad(key, "_type must be a comma-separated list of R4 resource types")
				}
				if !slices.Contains(q.Types, t) {
					q.Types = append(q.Types, t)
				}
			}
		case "_format", "_pretty":
		default:
			if lenient {
				ignored = append(ignored, key)
				continue
			}
			name, _, _ := strings.Cut(key, ":")
			if historyUnsupported[name] {
				return nil, outcome.New(outcome.Invalid, "not-supported", search.RuleParamUnsupported,
					"history supports _count, _offset and _since, not "+name+"; send Prefer: handling=lenient to "+
						"have it ignored").At(name)
			}
			return nil, outcome.New(outcome.Invalid, "not-supported", search.RuleParamUnknown,
				"history supports _count, _offset and _since only; send Prefer: handling=lenient to have other "+
					"parameters ignored").At(search.ShownName(typ, key))
		}
	}
	return ignored, nil
}

// historyUnsupported are the R4 parameters history does not support (its
// own _at and _list, and the search result parameters, as HAPI FHIR
// honours _summary and _elements there): a client sending one is told it
// is not supported, search-param-unsupported, not that it is unknown (a
// conformance review).
var historyUnsupported = map[string]bool{"_at": true, "_list": true, "_summary": true, "_elements": true,
	"_sort": true, "_total": true, "_include": true, "_revinclude": true, "_contained": true, "_containedType": true}

// IsGone reports a deleted resource (for the version headers of a 410).
func IsGone(err error) bool {
	var oe *outcome.Error
	return errors.Is(err, store.ErrGone) || errors.As(err, &oe) && oe.Kind == outcome.Gone
}
