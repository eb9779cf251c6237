package engine

import (
	"encoding/json"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/auditlog"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/fhirwire"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/outcome"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/search"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
)

// Entry is one interaction of a transaction or batch: parsed from a Bundle
// entry (ParseEntry), or built by the application from typed values
// (NewEntry: native ingest hands the engine its mapped resources this way,
// without a Bundle to parse).
type Entry struct {
	index       int
	method      string
	typ, id     string // target type and id
	query       string // conditional PUT criteria, GET search
	vid         int64  // GET Type/id/_history/vid
	get         getKind
	head        bool   // a HEAD: answered as the GET, without the resource
	compType    string // a compartment search's type: GET Patient/id/compType?query
	fullURL     string
	doc         map[string]any
	bodyID      string // the resource's id as the client sent it
	ifNoneExist string
	// pre are the preconditions of a PUT, PATCH or DELETE (ifMatch,
	// ifNoneMatch; If-Unmodified-Since at the top level).
	pre conditions
	// ifNoneMatch and ifModifiedSince make a GET read entry conditional
	// (304 when the client's copy is current); sole says that the
	// version read is the only one of its resource written within
	// ifModifiedSince's span (getEntry: fhirwire.NotModified).
	ifNoneMatch     string
	ifModifiedSince fhirwire.Since
	sole            bool
	perr            error   // the entry could not be parsed
	patch           patcher // a PATCH entry's patch
	// resourceExpr is the FHIRPath of a Bundle entry's resource
	// ("Bundle.entry[2].resource"), "" for a REST interaction: where the
	// problems of a FHIRPath Patch in the entry are.
	resourceExpr string
	// guess is the entry's resource rendered ahead of the transaction
	// (Speculation.Apply), which it puts when the guess fits.
	guess *guess
	// client is set for an entry a client sent (a Bundle entry, a REST
	// write): the ids it chooses are subject to Config.UpdateCreate. The
	// application's own entries (NewEntry) are not.
	client bool
	// rest is set for a REST interaction's write (a create, update or
	// patch of one resource), which no Bundle holds: a urn: reference in
	// it names no entry and is kept as written.
	rest bool
	// mints is set for a client's entry whose caller may write the
	// identifiers the mappings mint (mayMint).
	mints bool

	// Resolved inside the transaction.
	matched  *store.Resource // POST ifNoneExist / PUT criteria matched this
	key      string          // conditional key to claim on create (keepKey: and on a conditional update)
	updating *search.Query   // the criteria of a conditional update that matched: its resource keeps their key while they select it
	criteria *search.Query   // conditional criteria that matched nothing: the new resource must match them
	chosen   bool            // the id is the client's (URL, body or _id criterion), not the server's
	pinned   bool            // the id is the one an _id criterion names
	again    bool            // an earlier entry of the Bundle has the same criteria and decided the id
	res      *Result
	params   url.Values       // a GET's parameters
	searched *SearchResult    // a GET search's, compartment search's or $everything's answer
	hist     *HistoryResult   // a GET history's answer
	gone     *store.Resource  // a GET read's deletion, for the ETag of its 410
	rendered *rendered        // version 1 of a POST, made ahead (render) or when stored
	ready    chan struct{}    // closed when render made rendered; nil when render does not make it
	rewrites fhirwire.Changes // what the last run rewrote in doc (restored before a run)
}

// Result is the outcome of one write interaction.
type Result struct {
	// Status is the interaction's outcome: fhirwire.StatusOK, StatusCreated
	// or StatusNoContent.
	Status int
	// Resource is the version written (or matched, or read); nil for a
	// delete of what did not exist.
	Resource *store.Resource
	// Created is true when the interaction made a new resource.
	Created bool
	// Withheld is set when Resource is one a conditional create matched
	// and the caller may not read (Visible): answer without its content.
	Withheld bool
	// Unchanged is set when an update or patch would have stored the
	// current version as it is: nothing was written, and Resource is that
	// version (Status StatusOK).
	Unchanged bool
	// Gone is, for a delete of a resource deleted already (nothing
	// written: Resource is nil), its deletion, the latest version: the
	// answer carries its ETag, as a read's 410 does.
	Gone *store.Resource
	// Was is, for a delete that wrote a deletion (Resource), the version
	// it deleted: whose patients the deletion concerns (the audit names
	// them; the deletion has no body).
	Was *store.Resource
}

// Deleted is the deletion version a delete answers with: the one it wrote,
// or, for a resource deleted already, the one that deleted it (Gone); nil
// when there is none (the resource never existed here).
func (r *Result) Deleted() *store.Resource {
	switch {
	case r == nil:
		return nil
	case r.Resource != nil && r.Resource.Deleted:
		return r.Resource
	}
	return r.Gone
}

// VersionAlways has the entry, an update, write a new version even when
// it changes nothing: the resources of a native record's new version,
// each of which gets its own versions, Provenance and delivery, so that an
// auditor follows every record version to what the EHR received.
func (en *Entry) VersionAlways() { en.pre.versionAlways = true }

// VersionWhenChanged undoes VersionAlways: the entry, an update, writes
// no version when it changes nothing (Result.Unchanged), as a client's
// update. The application calls it from RunChecked's check, once it knows
// the stored resource: a native record's new version leaves a resource it
// does not change as it is.
func (en *Entry) VersionWhenChanged() { en.pre.versionAlways = false }

// Result returns the entry's outcome once its transaction ran (nil for a
// GET that searched).
func (en *Entry) Result() *Result { return en.res }

// NewEntry builds an entry from typed values, as if it were Bundle entry
// index with request method and url ("Type", "Type/id" or
// "Type?criteria"), fullUrl, the decoded resource doc (POST, PUT) and
// ifNoneExist. A malformed request is an Invalid error.
func (e *Engine) NewEntry(index int, method, url, fullURL string, doc map[string]any, ifNoneExist string) (*Entry, error) {
	en := &Entry{index: index, fullURL: fullURL, method: method, ifNoneExist: ifNoneExist}
	if err := e.parseURL(en, url); err != nil {
		return nil, err
	}
	if doc != nil {
		en.doc = doc
		en.bodyID, _ = doc["id"].(string)
	}
	return en, nil
}

// errEntrySearch answers a write entry's url Type/_search (a search POSTed
// the top level's way): in a Bundle a search is a GET entry.
var errEntrySearch = outcome.New(outcome.Invalid, "invalid", "bundle-entry-url-invalid",
	"Type/_search is a search, and in a Bundle a search is a GET entry: send method GET with the url "+
		"Type?criteria (POST Type/_search is the top level's form); a POST entry's url is the resource type")

// errEntryOperation answers a write entry's url naming an operation
// (Type/$validate, Patient/id/$everything): Bundle entries run the
// RESTful interactions, and the one operation a GET entry may ask for.
var errEntryOperation = outcome.New(outcome.Invalid, "invalid", "bundle-entry-url-invalid",
	"operations are not run as Bundle entries, other than a GET entry's Patient/id/$everything: send $validate "+
		"itself (POST /fhir/$validate, /fhir/Type/$validate or /fhir/Type/id/$validate); a POST entry's url is the "+
		"resource type")

// parseURL reads an entry's request url and checks it against the method.
// A GET (or HEAD) may ask for what a client can GET at the top level
// (parseGet).
func (e *Engine) parseURL(en *Entry, rawURL string) error {
	fail := func(rule, msg string) error { return outcome.New(outcome.Invalid, "invalid", rule, msg) }
	if strings.Contains(rawURL, "#") {
		return fail("bundle-entry-url-invalid", "the request url has a fragment (#...), which a request never sends; "+
			"leave it out (a # in a search value is written %23)")
	}
	u := strings.TrimPrefix(rawURL, "/")
	path, query, _ := strings.Cut(u, "?")
	parts := strings.Split(path, "/")
	en.typ, en.query = parts[0], query
	if en.typ == notRESTful {
		return errTypeNotRESTful
	}
	if en.method == "GET" || en.method == "HEAD" {
		en.method, en.head = "GET", en.method == "HEAD"
		if err := e.parseGet(en, parts); err != nil {
			return err
		}
	} else {
		if !e.v.KnownType(en.typ) {
			if strings.HasPrefix(parts[0], "$") {
				return errEntryOperation // $validate at the system level
			}
			if strings.Contains(parts[0], ":") {
				return fail("bundle-entry-url-invalid", "the request url is an absolute URL that is not on this server's "+
					"FHIR base; send it relative to the base (Type, Type/id, Type?criteria)")
			}
			return fail("bundle-entry-url-invalid", "the request url must start with a FHIR R4 resource type")
		}
		switch {
		case len(parts) > 1 && parts[len(parts)-1] == "_search":
			return errEntrySearch
		case len(parts) > 1 && strings.HasPrefix(parts[len(parts)-1], "$"):
			return errEntryOperation
		case len(parts) == 2 && query == "":
			en.id = parts[1]
		case len(parts) != 1:
			return fail("bundle-entry-url-invalid", "the request url of a "+en.method+" entry is Type, Type/id or Type?criteria")
		}
	}
	if en.id != "" && !fhirwire.ValidID(en.id) {
		return fail("bundle-entry-url-invalid", "the id in the request url is not a valid FHIR id")
	}
	if en.id != "" && en.method == "PUT" && !writableID(en.id) {
		return errIDInvalid("request.url")
	}
	if en.method == "POST" || en.method == "PUT" || en.method == "PATCH" || en.method == "DELETE" {
		if err := clientWritable(en.typ); err != nil {
			return err
		}
	}
	switch en.method {
	case "POST":
		if en.id != "" || query != "" {
			return fail("bundle-entry-url-invalid", "a POST entry's url is the resource type")
		}
	case "PUT":
		if en.id == "" && query == "" {
			return fail("bundle-entry-url-invalid", "a PUT entry's url is Type/id or Type?criteria")
		}
	case "PATCH":
		if en.id == "" && query == "" {
			return fail("bundle-entry-url-invalid", "a PATCH entry's url is Type/id or Type?criteria")
		}
	case "DELETE":
		if en.id == "" {
			return fail("bundle-entry-method-unsupported", "conditional delete is not supported; delete by Type/id")
		}
	case "GET":
	default:
		return fail("bundle-entry-method-unsupported", "entry methods are GET, POST, PUT, PATCH and DELETE")
	}
	return nil
}

// parseEntry reads entry i of a batch Bundle that was validated without
// its entries (one bad entry fails only itself): the resource is validated
// on its own. Problems are kept in perr.
func (e *Engine) parseEntry(i int, w *fhirwire.Entry, bases []string) *Entry {
	en := &Entry{index: i, fullURL: w.FullURL, client: true}
	if !e.entryRequest(en, w.Request, bases) {
		return en
	}
	expr := fmt.Sprintf("Bundle.entry[%d].resource", i)
	if len(w.Resource) == 0 {
		return en.missingResource(expr)
	}
	if en.method == "PATCH" {
		doc, err := decodeJSON(w.Resource)
		if err != nil {
			en.perr = outcome.New(outcome.Invalid, "structure", "json-syntax", "the entry's resource is not valid JSON").At(expr)
			return en
		}
		rt, _ := doc["resourceType"].(string)
		if rt == "Binary" || rt == "Parameters" {
			if err := e.v.Structure(w.Resource, rt); err != nil {
				en.perr = err
				return en
			}
		}
		return e.readPatch(en, doc, expr)
	}
	doc, err := e.v.Resource(w.Resource, en.typ, expr)
	if err != nil {
		en.perr = err
		return en
	}
	return en.resource(doc, expr)
}

// decodedEntry reads entry i of a Bundle that was validated whole and
// decoded (m is the entry object): the resource is checked against the
// gateway profiles it claims and used as decoded. Problems are kept in
// perr.
func (e *Engine) decodedEntry(i int, m map[string]any, bases []string) *Entry {
	en := &Entry{index: i, client: true}
	en.fullURL, _ = m["fullUrl"].(string)
	var req *fhirwire.Request
	if r, ok := m["request"].(map[string]any); ok {
		req = &fhirwire.Request{}
		req.Method, _ = r["method"].(string)
		req.URL, _ = r["url"].(string)
		req.IfNoneExist, _ = r["ifNoneExist"].(string)
		req.IfMatch, _ = r["ifMatch"].(string)
		req.IfNoneMatch, _ = r["ifNoneMatch"].(string)
		req.IfModifiedSince, _ = r["ifModifiedSince"].(string)
	}
	if !e.entryRequest(en, req, bases) {
		return en
	}
	expr := fmt.Sprintf("Bundle.entry[%d].resource", i)
	doc, _ := m["resource"].(map[string]any)
	if doc == nil {
		return en.missingResource(expr)
	}
	if en.method == "PATCH" {
		return e.readPatch(en, doc, expr)
	}
	if err := e.v.Profiles(doc, expr); err != nil {
		en.perr = err
		return en
	}
	return en.resource(doc, expr)
}

// entryRequest reads an entry's request into en; it reports whether the
// entry also needs its resource read (a valid POST, PUT or PATCH).
func (e *Engine) entryRequest(en *Entry, req *fhirwire.Request, bases []string) bool {
	if req == nil {
		en.fail("bundle-entry-request-missing", "a transaction or batch entry needs a request")
		return false
	}
	en.method, en.ifNoneExist = req.Method, req.IfNoneExist
	if v := req.IfModifiedSince; v != "" {
		t, err := time.Parse(time.RFC3339Nano, v)
		if err != nil {
			en.fail("bundle-entry-if-modified-since", "ifModifiedSince must be an instant")
			return false
		}
		en.ifModifiedSince = fhirwire.InstantSince(v, t)
	}
	if err := e.parseURL(en, relativeURL(req.URL, bases)); err != nil {
		en.perr = err
		return false
	}
	if err := en.preconditions(req); err != nil {
		en.perr = err
		return false
	}
	return en.method == "POST" || en.method == "PUT" || en.method == "PATCH"
}

// preconditions reads the conditions of an entry's request (its method
// and url read): ifNoneMatch and ifModifiedSince make a GET conditional
// (304); ifMatch and ifNoneMatch guard a PUT, PATCH or DELETE as the
// If-Match and If-None-Match headers do (Preconditions; bundle.html
// defines ifNoneMatch for GETs, but a PUT's ifNoneMatch "*" is the common
// way to say "create only", and taking it otherwise would overwrite what
// the client meant to keep). What a method has no use for is Invalid
// rather than ignored: the client meant to guard the entry with it.
func (en *Entry) preconditions(req *fhirwire.Request) error {
	unsupported := func(field, why string) error {
		return outcome.New(outcome.Invalid, "not-supported", "bundle-entry-precondition-unsupported",
			"a "+en.method+" entry takes no "+field+": "+why).At("request." + field)
	}
	switch en.method {
	case "GET":
		en.ifNoneMatch = req.IfNoneMatch
		return nil // ifMatch on a GET: not read (as the top-level read)
	case "POST":
		switch {
		case req.IfMatch != "":
			return unsupported("ifMatch", "a POST creates a new resource; ifNoneExist makes it a conditional create")
		case req.IfNoneMatch != "":
			return unsupported("ifNoneMatch", "a POST creates a new resource; ifNoneExist makes it a conditional create")
		}
	default:
		if req.IfNoneExist != "" {
			return unsupported("ifNoneExist", "it makes a POST a conditional create (http.html#ccreate); for a "+
				"conditional update put the criteria in the url (Type?criteria), to create only when the resource "+
				"does not exist send ifNoneMatch \"*\"")
		}
	}
	if req.IfModifiedSince != "" {
		return unsupported("ifModifiedSince", "it makes a GET conditional (http.html#cread); guard a write with "+
			"ifMatch (the version read) or ifNoneMatch \"*\" (create only)")
	}
	var err error
	en.pre, err = Preconditions{IfMatch: req.IfMatch, IfNoneMatch: req.IfNoneMatch}.parse(true)
	return err
}

// relativeURL is an entry's request url relative to the server's FHIR
// base: an absolute URL on one of bases (the base the client used, the
// configured one) loses it; any other url is returned as it is.
func relativeURL(u string, bases []string) string {
	for _, b := range bases {
		b = strings.TrimRight(b, "/")
		if b == "" {
			continue
		}
		if rest, ok := cutBase(u, b); ok && (rest == "" || rest[0] == '/' || rest[0] == '?') {
			if strings.HasPrefix(rest, "//") {
				return rest // an empty segment (base//Type): parseURL refuses it, as Type//id
			}
			return strings.TrimPrefix(rest, "/")
		}
	}
	return u
}

// cutBase cuts the base b off u, its scheme and host compared without
// regard to case (RFC 3986 6.2.2.1: HTTP://Example.org is http://example.org),
// its path exactly.
func cutBase(u, b string) (string, bool) {
	if len(u) < len(b) {
		return "", false
	}
	split := len(b)
	if i := strings.Index(b, "://"); i >= 0 {
		if j := strings.IndexByte(b[i+3:], '/'); j >= 0 {
			split = i + 3 + j
		}
	}
	if !strings.EqualFold(u[:split], b[:split]) || u[split:len(b)] != b[split:] {
		return "", false
	}
	return u[len(b):], true
}

// missingResource keeps the problem of a POST, PUT or PATCH entry without
// a resource.
func (en *Entry) missingResource(expr string) *Entry {
	if en.method == "PATCH" {
		en.perr = outcome.New(outcome.Invalid, "invalid", "bundle-entry-resource-missing",
			"a PATCH entry needs a resource: a Binary with a JSON Patch or a Parameters with a FHIRPath Patch").At(expr)
		return en
	}
	return en.fail("bundle-entry-resource-missing", "a POST or PUT entry needs a resource")
}

// readPatch reads a PATCH entry's decoded resource, at expr: its patch
// (entryPatch).
func (e *Engine) readPatch(en *Entry, doc map[string]any, expr string) *Entry {
	var err error
	en.resourceExpr = expr
	if en.patch, err = e.entryPatch(doc, expr); err != nil {
		en.perr = err
	}
	return en
}

// resource checks an entry's decoded resource, at expr, against its
// request (and checkClientDoc) and keeps it.
func (en *Entry) resource(doc map[string]any, expr string) *Entry {
	if rt, _ := doc["resourceType"].(string); rt != en.typ {
		return en.fail("resource-type-mismatch", "the resource type differs from the type in the request url")
	}
	if err := checkClientDoc(doc, en.typ, expr, en.method != "POST"); err != nil {
		en.perr = err
		return en
	}
	if en.id != "" {
		if bid, _ := doc["id"].(string); bid != en.id {
			en.perr = outcome.New(outcome.Invalid, "invalid", "id-mismatch",
				"the resource id must equal the id in the request url").At(en.idExpr())
			return en
		}
	}
	if err := en.fullURLAgrees(doc); err != nil {
		en.perr = err
		return en
	}
	en.doc = doc
	en.bodyID, _ = doc["id"].(string)
	return en
}

// fullURLAgrees checks that the entry's fullUrl, when a RESTful URL
// ([base]/Type/id), names the resource it carries (Bundle.entry.fullUrl:
// "The fullUrl SHALL NOT disagree with the id in the resource"): its type,
// and its id when the resource has one (a POST's, or a conditional
// update's, may have none). A urn: fullUrl names no id. A disagreeing one
// is Invalid bundle-entry-fullurl-mismatch: references to the fullUrl
// would otherwise be rewritten to a resource of another id.
func (en *Entry) fullURLAgrees(doc map[string]any) error {
	_, typ, id, ok := fhirwire.RESTfulURL(en.fullURL)
	if !ok {
		return nil
	}
	rt, _ := doc["resourceType"].(string)
	bid, _ := doc["id"].(string)
	if typ == rt && (bid == "" || bid == id) {
		return nil
	}
	return outcome.New(outcome.Invalid, "invalid", "bundle-entry-fullurl-mismatch",
		"the entry's fullUrl names another resource type or id than its resource has; the fullUrl shall not "+
			"disagree with the resource's id (Bundle.entry.fullUrl): make them agree, or use a urn:uuid fullUrl").
		At(fmt.Sprintf("Bundle.entry[%d].fullUrl", en.index))
}

// fail keeps an Invalid problem of the entry.
func (en *Entry) fail(rule, msg string) *Entry {
	en.perr = outcome.New(outcome.Invalid, "invalid", rule, msg)
	return en
}

// idExpr is the FHIRPath of the id of the entry's resource: Type.id for a
// REST write (and the application's own entries), inside the Bundle entry
// for a client's Bundle entry.
func (en *Entry) idExpr() string {
	if en.rest || !en.client {
		return en.typ + ".id"
	}
	return nestedExpr(fmt.Sprintf("Bundle.entry[%d].resource", en.index), en.typ, en.typ+".id")
}

// need is the scope permission an entry needs and the type it needs it on
// ("*": the whole system); perm 0 when it needs none (metadata).
func (en *Entry) need() (typ string, perm byte) {
	switch en.method {
	case "POST":
		return en.typ, 'c'
	case "PUT", "PATCH":
		return en.typ, 'u'
	case "DELETE":
		return en.typ, 'd'
	}
	switch en.get {
	case getMetadata:
		return "", 0
	case getHistory:
		if en.typ == "" {
			return "*", 'r'
		}
		return en.typ, 'r'
	case getEverything:
		return "Patient", 'r'
	case getCompartment:
		return en.compType, 's'
	case getSearch:
		return en.typ, 's'
	}
	return en.typ, 'r'
}

// allowNeed checks that the caller may do what en needs (need).
func allowNeed(sc *auditlog.Scope, en *Entry) error {
	if en.method == "PATCH" {
		return allowPatch(sc, en.typ)
	}
	typ, perm := en.need()
	if perm == 0 {
		return nil
	}
	return allow(sc, typ, perm)
}

// Written returns the resource versions processed entries wrote (errs,
// when not nil, are a batch's per-entry failures): a conditional create
// that matched, an update or patch that changed nothing (Result.Unchanged),
// a GET and a failed batch entry write nothing.
func Written(entries []*Entry, errs []error) []*store.Resource {
	var out []*store.Resource
	for i, en := range entries {
		if errs != nil && errs[i] != nil {
			continue
		}
		if en.method == "GET" || en.res == nil || en.res.Resource == nil || (en.method == "POST" && en.matched != nil) || en.res.Unchanged {
			continue
		}
		out = append(out, en.res.Resource)
	}
	return out
}

// decodeWire decodes a Bundle's entries, keeping resources raw.
func decodeWire(body []byte) (*fhirwire.Bundle, error) {
	var b fhirwire.Bundle
	if err := json.Unmarshal(body, &b); err != nil {
		return nil, err
	}
	return &b, nil
}
