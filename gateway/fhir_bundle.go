package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"
	"go.opentelemetry.io/otel/attribute"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/search"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
)

// DefaultMaxBundleEntries is the default limit on Bundle entries.
const DefaultMaxBundleEntries = 20000

// txEntry is one entry of a transaction or batch being processed.
type txEntry struct {
	index       int
	method      string
	typ, id     string // target type and id
	query       string // conditional PUT criteria, GET search
	vid         int64  // GET Type/id/_history/vid
	fullURL     string
	doc         map[string]any
	bodyID      string // the resource's id as the client sent it
	ifNoneExist string
	ifMatch     string
	perr        error // the entry could not be parsed

	// Resolved inside the transaction.
	matched *store.Resource // POST ifNoneExist / PUT criteria matched this
	key     string          // conditional key to claim on create
	res     *result
	get     any // GET answer: a stored resource or a searchset
}

// entryError names the entry that failed.
type entryError struct {
	index int
	err   error
}

func (e *entryError) Error() string { return fmt.Sprintf("entry %d: %v", e.index, e.err) }
func (e *entryError) Unwrap() error { return e.err }

// wireEntry is an incoming Bundle entry.
type wireEntry struct {
	// validate asks parseEntry to validate the resource on its own (batch
	// entries, whose Bundle is validated without them).
	validate bool

	FullURL  string          `json:"fullUrl"`
	Resource json.RawMessage `json:"resource"`
	Request  *struct {
		Method      string `json:"method"`
		URL         string `json:"url"`
		IfNoneExist string `json:"ifNoneExist"`
		IfMatch     string `json:"ifMatch"`
	} `json:"request"`
}

// handleBundle is POST /fhir with a transaction or batch Bundle.
func (s *Server) handleBundle(c echo.Context) error {
	var body []byte
	err := s.stage(c.Request().Context(), "fhir.decode", func(context.Context) error {
		var err error
		body, err = readBody(c, s.cfg.MaxBodyBytes)
		return err
	})
	if err != nil {
		return err
	}
	var wb struct {
		ResourceType string      `json:"resourceType"`
		Type         string      `json:"type"`
		Entry        []wireEntry `json:"entry"`
	}
	err = s.stage(c.Request().Context(), "fhir.validate", func(context.Context) error {
		if err := json.Unmarshal(body, &wb); err != nil || wb.ResourceType != "Bundle" || wb.Type != "batch" {
			// A transaction fails as a whole, so the whole Bundle is validated
			// at once; the validator also names any syntax problem precisely.
			if res := s.pipeline.validator.ValidateAs(body, "Bundle"); !res.Valid() {
				return &Error{Status: http.StatusBadRequest, Issues: fhirIssues(res)}
			}
			if err != nil {
				return errorf(http.StatusBadRequest, "structure", "json-syntax", "the Bundle is not valid JSON")
			}
			return nil
		}
		if err := s.validateBatchShell(body); err != nil {
			return err
		}
		for i := range wb.Entry {
			wb.Entry[i].validate = true
		}
		return nil
	})
	if err != nil {
		return err
	}
	if wb.Type == "batch" {
		auditOf(c).interaction = "batch"
	}
	if len(wb.Entry) > s.cfg.MaxBundleEntries {
		return errorf(http.StatusBadRequest, "too-costly", "bundle-too-many-entries",
			fmt.Sprintf("a Bundle may have at most %d entries", s.cfg.MaxBundleEntries))
	}
	entries := make([]*txEntry, len(wb.Entry))
	for i := range wb.Entry {
		entries[i] = s.parseEntry(i, &wb.Entry[i])
	}
	now := s.now()
	ctx := c.Request().Context()
	switch wb.Type {
	case "transaction":
		for _, e := range entries {
			if e.perr != nil {
				return &entryError{e.index, e.perr}
			}
		}
		// One entry the caller may not perform fails the whole transaction.
		if err := allowEntries(c, entries); err != nil {
			return err
		}
		err = s.stage(ctx, "store.transaction", func(ctx context.Context) error {
			return s.writeAudited(c, ctx, func(tx store.Tx) (int, error) {
				if err := s.runTransaction(tx, entries, now); err != nil {
					return 0, err
				}
				touchEntries(c, entries, nil)
				auditOf(c).description = fmt.Sprintf("transaction: %d entries", len(entries))
				return http.StatusOK, s.bundleProvenance(c, tx, "transaction", body, written(entries, nil), now)
			})
		}, attribute.String("fhir.bundle.type", "transaction"), attribute.Int("fhir.entry_count", len(entries)))
		if err != nil {
			return err
		}
		return writeResource(c, http.StatusOK, s.responseBundle(c, "transaction-response", entries, nil))
	case "batch":
		for _, e := range entries {
			if e.perr == nil {
				e.perr = allow(c, e.typ, entryPerm(e))
			}
		}
		// One database transaction, each entry in a savepoint: an entry
		// fails alone, and the batch's AuditEvent and Provenance commit
		// with exactly the entries that succeeded.
		errs := make([]error, len(entries))
		err = s.stage(ctx, "store.transaction", func(ctx context.Context) error {
			return s.writeAudited(c, ctx, func(tx store.Tx) (int, error) {
				failed := 0
				for i, e := range entries {
					errs[i] = s.batchEntry(tx, e, now)
					if errors.Is(errs[i], store.ErrConflict) || errors.Is(errs[i], store.ErrUnavailable) {
						return 0, errs[i] // the transaction is lost: retry the batch
					}
					if errs[i] != nil {
						failed++
					}
				}
				touchEntries(c, entries, errs)
				auditOf(c).description = fmt.Sprintf("batch: %d entries, %d failed", len(entries), failed)
				return http.StatusOK, s.bundleProvenance(c, tx, "batch", body, written(entries, errs), now)
			})
		}, attribute.String("fhir.bundle.type", "batch"), attribute.Int("fhir.entry_count", len(entries)))
		if err != nil {
			return err
		}
		return writeResource(c, http.StatusOK, s.responseBundle(c, "batch-response", entries, errs))
	default:
		return errorf(http.StatusBadRequest, "invalid", "bundle-type-unsupported",
			"POST /fhir takes a Bundle of type transaction or batch")
	}
}

// batchEntry runs one batch entry in a savepoint of tx.
func (s *Server) batchEntry(tx store.Tx, e *txEntry, now time.Time) error {
	if e.perr != nil {
		return e.perr
	}
	if urnReference(e.doc) {
		return errorf(http.StatusBadRequest, "invalid", "batch-interdependent",
			"batch entries may not reference each other by urn; use a transaction")
	}
	return tx.Savepoint(func() error { return s.runTransaction(tx, []*txEntry{e}, now) })
}

// parseEntry reads one entry's request; problems are kept in perr.
func (s *Server) parseEntry(i int, w *wireEntry) *txEntry {
	e := &txEntry{index: i, fullURL: w.FullURL}
	fail := func(rule, msg string) *txEntry {
		e.perr = errorf(http.StatusBadRequest, "invalid", rule, msg)
		return e
	}
	if w.Request == nil {
		return fail("bundle-entry-request-missing", "a transaction or batch entry needs a request")
	}
	e.method, e.ifNoneExist, e.ifMatch = w.Request.Method, w.Request.IfNoneExist, w.Request.IfMatch
	u := strings.TrimPrefix(w.Request.URL, "/")
	path, query, _ := strings.Cut(u, "?")
	parts := strings.Split(path, "/")
	e.typ, e.query = parts[0], query
	if !s.pipeline.validator.KnownType(e.typ) {
		return fail("bundle-entry-url-invalid", "the request url must start with a FHIR R4 resource type")
	}
	switch {
	case len(parts) == 2 && query == "":
		e.id = parts[1]
	case len(parts) == 4 && parts[2] == "_history" && query == "" && e.method == "GET":
		e.id = parts[1]
		v, err := strconv.ParseInt(parts[3], 10, 64)
		if err != nil || v < 1 {
			return fail("bundle-entry-url-invalid", "the version in the request url is not a number")
		}
		e.vid = v
	case len(parts) != 1:
		return fail("bundle-entry-url-invalid", "the request url is not Type, Type/id or Type?criteria")
	}
	if e.id != "" && !validID(e.id) {
		return fail("bundle-entry-url-invalid", "the id in the request url is not a valid FHIR id")
	}
	if e.method == "POST" || e.method == "PUT" || e.method == "DELETE" {
		if err := clientWritable(e.typ); err != nil {
			e.perr = err
			return e
		}
	}
	needsBody := e.method == "POST" || e.method == "PUT"
	switch e.method {
	case "POST":
		if e.id != "" || query != "" {
			return fail("bundle-entry-url-invalid", "a POST entry's url is the resource type")
		}
	case "PUT":
		if e.id == "" && query == "" {
			return fail("bundle-entry-url-invalid", "a PUT entry's url is Type/id or Type?criteria")
		}
	case "DELETE":
		if e.id == "" {
			return fail("bundle-entry-method-unsupported", "conditional delete is not supported; delete by Type/id")
		}
	case "GET", "HEAD":
		e.method = "GET"
	default:
		return fail("bundle-entry-method-unsupported", "entry methods are GET, POST, PUT and DELETE")
	}
	if needsBody {
		if len(w.Resource) == 0 {
			return fail("bundle-entry-resource-missing", "a POST or PUT entry needs a resource")
		}
		if w.validate {
			if _, err := s.validateResource(w.Resource, e.typ, fmt.Sprintf("Bundle.entry[%d].resource", i)); err != nil {
				e.perr = err
				return e
			}
		}
		doc, err := decodeJSON(w.Resource)
		if err != nil {
			return fail("json-syntax", "the entry's resource is not valid JSON")
		}
		if !w.validate {
			if err := profileError(checkProfiles(doc, fmt.Sprintf("Bundle.entry[%d].resource", i))); err != nil {
				e.perr = err
				return e
			}
		}
		if rt, _ := doc["resourceType"].(string); rt != e.typ {
			return fail("resource-type-mismatch", "the resource type differs from the type in the request url")
		}
		if e.id != "" {
			if bid, _ := doc["id"].(string); bid != e.id {
				return fail("id-mismatch", "the resource id must equal the id in the request url")
			}
		}
		e.doc = doc
		e.bodyID, _ = doc["id"].(string)
	}
	return e
}

// methodOrder is the processing order of transaction entries (http.html#trules).
var methodOrder = map[string]int{"DELETE": 0, "POST": 1, "PUT": 2, "GET": 3}

// runTransaction processes entries atomically inside tx: it resolves
// conditional creates and updates, assigns ids, rewrites urn:uuid and
// conditional references, then executes DELETE, POST, PUT, GET in that
// order. Any failure aborts it with an *entryError.
func (s *Server) runTransaction(tx store.Tx, entries []*txEntry, now time.Time) error {
	ids := map[string]string{}     // fullUrl -> Type/id
	claimed := map[string]string{} // conditional key -> Type/id decided in this transaction
	fail := func(e *txEntry, err error) error { return &entryError{e.index, err} }

	// 1. Decide every entry's target.
	for _, e := range entries {
		e.matched, e.key, e.res, e.get = nil, "", nil, nil
		criteria := ""
		switch {
		case e.method == "POST" && e.ifNoneExist != "":
			criteria = e.ifNoneExist
		case e.method == "PUT" && e.id == "":
			criteria = e.query
		}
		if criteria != "" {
			q, err := search.ParseConditional(e.typ, criteria)
			if err != nil {
				return fail(e, searchError(err))
			}
			e.key = search.Key(e.typ, q)
			if ref, ok := claimed[e.key]; ok {
				// The same criteria earlier in this Bundle: the same resource.
				e.id = strings.TrimPrefix(ref, e.typ+"/")
			} else {
				page, err := tx.Search(q)
				if err != nil {
					return fail(e, err)
				}
				switch len(page.Matches) {
				case 0:
					if e.method == "PUT" && validID(e.bodyID) {
						e.id = e.bodyID
					}
					if e.id == "" {
						e.id = newID()
					}
				case 1:
					e.matched = page.Matches[0]
					if e.method == "PUT" && e.bodyID != "" && e.bodyID != e.matched.ID {
						return fail(e, errorf(http.StatusBadRequest, "invalid", "id-mismatch",
							"the resource id differs from the id of the resource the criteria select"))
					}
					e.id = e.matched.ID
				default:
					return fail(e, errorf(http.StatusPreconditionFailed, "multiple-matches", "conditional-multiple-matches",
						"the conditional criteria match more than one resource"))
				}
				claimed[e.key] = e.typ + "/" + e.id
			}
		}
		if e.method == "POST" && e.id == "" {
			e.id = newID()
		}
		if e.fullURL != "" && e.doc != nil {
			ids[e.fullURL] = e.typ + "/" + e.id
		}
	}

	// 2. Rewrite references.
	for _, e := range entries {
		if e.doc == nil {
			continue
		}
		if err := s.rewriteRefs(tx, e.doc, ids); err != nil {
			return fail(e, err)
		}
	}

	// 3. Execute in the spec's order; ties keep Bundle order.
	order := append([]*txEntry(nil), entries...)
	sort.SliceStable(order, func(i, j int) bool { return methodOrder[order[i].method] < methodOrder[order[j].method] })
	for _, e := range order {
		if err := s.execEntry(tx, e, now); err != nil {
			return fail(e, err)
		}
	}
	return nil
}

// execEntry performs one resolved entry.
func (s *Server) execEntry(tx store.Tx, e *txEntry, now time.Time) error {
	var err error
	switch e.method {
	case "DELETE":
		e.res, err = s.remove(tx, e.typ, e.id, now)
	case "POST":
		if e.matched != nil {
			e.res = &result{Status: http.StatusOK, Resource: e.matched}
			return nil
		}
		var r *store.Resource
		if r, err = s.put(tx, e.typ, e.id, 1, e.doc, now); err != nil {
			return err
		}
		if e.key != "" {
			if err = tx.ClaimKey(e.key, e.typ, e.id); err != nil {
				return err
			}
		}
		e.res = &result{Status: http.StatusCreated, Resource: r, Created: true}
	case "PUT":
		e.res, err = s.update(tx, e.typ, e.id, e.doc, e.ifMatch, now)
		if err == nil && e.key != "" && e.res.Created {
			err = tx.ClaimKey(e.key, e.typ, e.id)
		}
	case "GET":
		e.get, err = s.getEntry(tx, e)
	}
	return err
}

// getEntry answers a GET entry: a read, a vread or a search.
func (s *Server) getEntry(tx store.Tx, e *txEntry) (any, error) {
	if e.id == "" {
		vals, err := url.ParseQuery(e.query)
		if err != nil {
			return nil, errorf(http.StatusBadRequest, "invalid", "search-value-invalid", "the search query is malformed")
		}
		q, err := search.Parse(e.typ, vals, false)
		if err != nil {
			return nil, searchError(err)
		}
		page, err := tx.Search(q)
		if err != nil {
			return nil, err
		}
		b := bundle{ResourceType: "Bundle", Type: "searchset"}
		if page.Total >= 0 {
			b.Total = &page.Total
		}
		for _, r := range page.Matches {
			b.Entry = append(b.Entry, bundleEntry{FullURL: r.Type + "/" + r.ID, Resource: r.Body, Search: &entrySearch{Mode: "match"}})
		}
		return b, nil
	}
	r, err := tx.Read(e.typ, e.id)
	if err != nil {
		return nil, err
	}
	if e.vid != 0 && e.vid != r.Version {
		return nil, errorf(http.StatusNotFound, "not-found", "version-unknown", "only the current version can be read inside a transaction")
	}
	e.res = &result{Status: http.StatusOK, Resource: r}
	return r, nil
}

// rewriteRefs replaces references to Bundle entries (fullUrl) with the
// assigned Type/id and resolves conditional references (Type?criteria) to
// exactly one resource. A urn: reference that names no entry fails.
func (s *Server) rewriteRefs(tx store.Tx, node any, ids map[string]string) error {
	switch n := node.(type) {
	case map[string]any:
		for k, v := range n {
			if k == "reference" {
				ref, ok := v.(string)
				if !ok {
					continue
				}
				if to, ok := ids[ref]; ok {
					n[k] = to
					continue
				}
				if strings.HasPrefix(ref, "urn:uuid:") || strings.HasPrefix(ref, "urn:oid:") {
					return errorf(http.StatusBadRequest, "not-found", "reference-unresolved",
						"a reference names a urn that is not the fullUrl of any entry of the Bundle")
				}
				if typ, query, cond := strings.Cut(ref, "?"); cond && !strings.Contains(typ, "/") {
					to, err := s.resolveConditionalRef(tx, typ, query)
					if err != nil {
						return err
					}
					n[k] = to
				}
				continue
			}
			if err := s.rewriteRefs(tx, v, ids); err != nil {
				return err
			}
		}
	case []any:
		for _, v := range n {
			if err := s.rewriteRefs(tx, v, ids); err != nil {
				return err
			}
		}
	}
	return nil
}

// resolveConditionalRef resolves Type?criteria to the one matching resource.
func (s *Server) resolveConditionalRef(tx store.Tx, typ, query string) (string, error) {
	if !s.pipeline.validator.KnownType(typ) {
		return "", errorf(http.StatusBadRequest, "invalid", "reference-format", "a conditional reference must start with a resource type")
	}
	q, err := search.ParseConditional(typ, query)
	if err != nil {
		return "", searchError(err)
	}
	page, err := tx.Search(q)
	if err != nil {
		return "", err
	}
	switch len(page.Matches) {
	case 1:
		return typ + "/" + page.Matches[0].ID, nil
	case 0:
		return "", errorf(http.StatusBadRequest, "not-found", "conditional-reference-unresolved", "a conditional reference matches no resource")
	default:
		return "", errorf(http.StatusPreconditionFailed, "multiple-matches", "conditional-multiple-matches", "a conditional reference matches more than one resource")
	}
}

// urnReference reports whether a document references a urn: (an entry of
// the same Bundle).
func urnReference(node any) bool {
	switch n := node.(type) {
	case map[string]any:
		for k, v := range n {
			if ref, ok := v.(string); ok && k == "reference" && strings.HasPrefix(ref, "urn:") {
				return true
			}
			if urnReference(v) {
				return true
			}
		}
	case []any:
		for _, v := range n {
			if urnReference(v) {
				return true
			}
		}
	}
	return false
}

// responseBundle builds the transaction-response or batch-response, one
// entry per request in Bundle order. Resources are included with
// Prefer: return=representation; by default only the outcome is.
func (s *Server) responseBundle(c echo.Context, typ string, entries []*txEntry, errs []error) bundle {
	withBody := preferReturn(c.Request().Header.Get("Prefer")) == "representation" && c.Request().Header.Get("Prefer") != ""
	b := bundle{ResourceType: "Bundle", ID: newID(), Type: typ, Timestamp: instant(s.now())}
	for i, e := range entries {
		var be bundleEntry
		if errs != nil && errs[i] != nil {
			status, issues := Outcome(unwrapEntry(errs[i]))
			oo, _ := json.Marshal(OperationOutcome(issues))
			be.Response = &entryResponse{Status: statusLine(status), Outcome: oo}
			b.Entry = append(b.Entry, be)
			continue
		}
		switch {
		case e.method == "GET" && e.res == nil:
			raw, _ := json.Marshal(e.get)
			be.Resource = raw
			be.Response = &entryResponse{Status: statusLine(http.StatusOK)}
		case e.res != nil && e.res.Resource != nil && !e.res.Resource.Deleted:
			r := e.res.Resource
			be.FullURL = s.baseURL(c) + "/" + r.Type + "/" + r.ID
			be.Response = &entryResponse{Status: statusLine(e.res.Status), Etag: etag(r.Version), LastModified: instant(r.LastUpdated),
				Location: fmt.Sprintf("%s/%s/_history/%d", r.Type, r.ID, r.Version)}
			if withBody || e.method == "GET" {
				be.Resource = r.Body
			}
		default:
			be.Response = &entryResponse{Status: statusLine(http.StatusNoContent)}
		}
		b.Entry = append(b.Entry, be)
	}
	return b
}

func unwrapEntry(err error) error {
	var ee *entryError
	if errors.As(err, &ee) {
		return ee.err
	}
	return err
}

// statusLine renders "201 Created".
func statusLine(code int) string { return strconv.Itoa(code) + " " + http.StatusText(code) }

// validateBatchShell validates a batch Bundle without its entries'
// resources, which are validated one by one so that one bad entry fails
// only itself.
func (s *Server) validateBatchShell(body []byte) error {
	doc, err := decodeJSON(body)
	if err != nil {
		_, verr := s.validateResource(body, "Bundle", "")
		return verr
	}
	if entries, ok := doc["entry"].([]any); ok {
		for _, e := range entries {
			if m, ok := e.(map[string]any); ok {
				delete(m, "resource")
			}
		}
	}
	shell, err := json.Marshal(doc)
	if err != nil {
		return err
	}
	_, err = s.validateResource(shell, "Bundle", "")
	return err
}
