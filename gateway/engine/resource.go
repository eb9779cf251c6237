package engine

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/fhirwire"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/outcome"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/search"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
)

// clientWritable rejects client writes of the types only the gateway
// writes: AuditEvents, and the conformance resources it publishes.
func clientWritable(typ string) error {
	switch {
	case typ == "AuditEvent":
		return errAuditReadOnly
	case publishedTypes[typ]:
		return &outcome.Error{Kind: outcome.MethodNotAllowed, Allow: ReadOnlyMethods, Issues: []outcome.Issue{{
			Severity: "error", Code: "forbidden", Rule: "conformance-read-only",
			Message: typ + " resources are the gateway's own conformance resources, published read-only; they cannot be created, changed or deleted"}}}
	case typ == "Subscription":
		return errSubscriptionUnsupported
	}
	return nil
}

// errSubscriptionUnsupported refuses a Subscription's write: the gateway
// sends no notifications, so one it stored would stay "requested" for
// ever, its client waiting (a conformance review: it was stored, and the
// capability statement offered its writes). Refused as HAPI FHIR does
// with subscriptions turned off, before anything is stored.
var errSubscriptionUnsupported = &outcome.Error{Kind: outcome.MethodNotAllowed, Allow: ReadOnlyMethods, Issues: []outcome.Issue{{
	Severity: "error", Code: "not-supported", Rule: "subscription-unsupported",
	Message: "the gateway processes no Subscriptions and sends no notifications: it delivers the records it stores " +
		"to the EHRs its configuration names as destinations (docs/operations.md); a Subscription would never become active"}}}

// ReadOnlyMethods are what the type and instance endpoints of a type
// clients may not write allow (RFC 9110 15.5.6: a 405's Allow lists what
// the target supports, not the other write methods it refuses too).
var ReadOnlyMethods = []string{"GET", "HEAD"}

// publishedTypes are the types of the conformance resources the gateway
// publishes (engine.Seed); clients read and search them.
var publishedTypes = map[string]bool{"CodeSystem": true, "ValueSet": true, "StructureDefinition": true,
	"SearchParameter": true, "OperationDefinition": true, "ImplementationGuide": true}

var errAuditReadOnly = &outcome.Error{Kind: outcome.MethodNotAllowed, Allow: ReadOnlyMethods, Issues: []outcome.Issue{{
	Severity: "error", Code: "forbidden", Rule: "audit-read-only",
	Message: "AuditEvents are recorded by the gateway and cannot be created, changed or deleted"}}}

// ClientWritable reports whether clients may create, update and delete
// resources of typ (AuditEvents and the published conformance resources
// are the gateway's own).
func ClientWritable(typ string) bool { return clientWritable(typ) == nil }

// put stores version v of typ/id, made by an interaction of method that
// answers status (store.Resource.Method and Status: a history shows them).
func (e *Engine) put(tx store.Tx, typ, id string, v int64, doc map[string]any, now time.Time, method string, status int) (*store.Resource, error) {
	r, entries, err := store.NewVersionAtMost(typ, id, v, doc, now, search.MaxEntries)
	return putVersion(tx, r, entries, err, method, status)
}

// putVersion stores r, a version NewVersion made (err its error), as made
// by an interaction of method that answers status.
func putVersion(tx store.Tx, r *store.Resource, entries []search.Entry, err error, method string, status int) (*store.Resource, error) {
	if err != nil {
		return nil, err
	}
	r.Method, r.Status = method, status
	if err := tx.Put(r, entries); err != nil {
		return nil, fmt.Errorf("put %s/%s v%d: %w", r.Type, r.ID, r.Version, err)
	}
	return r, nil
}

// putRendered stores version 1 of a POST entry: the version render
// prepared, or one made now.
func (e *Engine) putRendered(tx store.Tx, en *Entry, now time.Time) (*store.Resource, error) {
	if en.ready != nil {
		<-en.ready
	}
	v := en.rendered
	if v == nil {
		r, entries, err := store.NewVersionAtMost(en.typ, en.id, 1, en.doc, now, search.MaxEntries)
		v = &rendered{r, entries, err}
		en.rendered = v // createdAlone reads its index entries
	}
	return putVersion(tx, v.res, v.entries, v.err, "POST", fhirwire.StatusCreated)
}

// rendered is a version NewVersion made ahead of its Put.
type rendered struct {
	res     *store.Resource
	entries []search.Entry
	err     error
}

// renderPerWorker is how many resources a rendering goroutine takes on at
// least: below twice that, a transaction renders its resources as it puts
// them. A session record's 56 entries are rendered by two goroutines at
// 16 (by the one holding the transaction at 32): on SQLite's single write
// lane, where a transaction's time is every other writer's wait, that
// took session records at 32 clients from 83-91 a second to 89-102
// (issue 19, five interleaved pairs).
const renderPerWorker = 16

// renderChunk is how many resources a rendering goroutine takes at a
// time (and, streaming, hands over at once: see render).
const renderChunk = 16

// render makes, in parallel, version 1 of the resources the POST entries
// create (their ids decided and their references rewritten), so that a
// large transaction's marshalling and index extraction use every core and
// not only the one that holds the database transaction. Where the store
// writes ahead (store.TxWritesAhead: PostgreSQL sends what Put buffers
// while the transaction goes on), stream says so, and render returns at
// once: the transaction puts the resources as they are made, in Bundle
// order (putRendered waits for each), so that the database may already be
// inserting the first while the others are made. Otherwise render returns
// when all are made: on SQLite, whose inserts run on the gateway's own
// cores, putting them as they came was slower on Synthea in 9 of 12
// interleaved pairs (by 6% on average; issue 19). stop stops the
// goroutines and waits for them; the transaction calls it before it
// returns.
func render(entries []*Entry, now time.Time, stream bool) (stop func()) {
	var todo []*Entry
	for _, en := range entries {
		en.rendered, en.ready = nil, nil
		if en.method == "POST" && en.matched == nil && !en.pinned && !en.again && en.doc != nil {
			if en.rendered = en.fits(now); en.rendered == nil {
				todo = append(todo, en)
			}
		}
	}
	workers := min(runtime.GOMAXPROCS(0), len(todo)/renderPerWorker)
	if workers < 2 {
		return func() {}
	}
	// Streaming, the goroutines take renderChunk entries at a time and
	// hand each chunk over once: the transaction, which puts faster than
	// they make, waits once a chunk, not once a resource. Otherwise one at
	// a time, which shares them out most evenly.
	size, chunks := 1, len(todo)
	var ready []chan struct{}
	if stream {
		size = renderChunk
		chunks = (len(todo) + size - 1) / size
		ready = make([]chan struct{}, chunks)
		for c := range ready {
			ready[c] = make(chan struct{})
		}
		for i, en := range todo {
			en.ready = ready[i/size]
		}
	}
	var next atomic.Int64
	var stopped atomic.Bool
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for !stopped.Load() {
				c := int(next.Add(1)) - 1
				if c >= chunks {
					return
				}
				for _, en := range todo[c*size : min((c+1)*size, len(todo))] {
					r, ix, err := store.NewVersionAtMost(en.typ, en.id, 1, en.doc, now, search.MaxEntries)
					en.rendered = &rendered{r, ix, err}
				}
				if stream {
					close(ready[c])
				}
			}
		})
	}
	if !stream {
		wg.Wait()
		return func() {}
	}
	return func() {
		stopped.Store(true)
		wg.Wait()
	}
}

// update writes a new version of typ/id (update-as-create when it does not
// exist or was deleted) for an interaction of method (PUT, PATCH, or POST
// for a conditional create whose _id criterion names the id). When doc is
// the current version as it stands (unchanged), it writes nothing and
// answers that version, Result.Unchanged (unless pre.versionAlways). pre are the
// request's preconditions (If-Match, If-None-Match, If-Unmodified-Since),
// checked against the latest version, a deletion included: a false one is
// PreconditionFailed. create says whether the caller may
// create typ/id when its tenant holds no such resource; without it, and
// for an id another tenant holds, the answer is the same errIDTaken.
func (e *Engine) update(tx store.Tx, typ, id string, doc map[string]any, pre conditions, now time.Time, create bool, method string) (*Result, error) {
	cur, err := tx.Read(typ, id)
	var next int64 = 1
	exists := false
	var latest *store.Resource // the tenant's latest version, a deletion included
	switch {
	case errors.Is(err, errForeign):
		return nil, errIDTaken
	case (err == nil || errors.Is(err, store.ErrGone)) && !owns(tx, cur):
		return nil, errIDTaken // a shared conformance resource of another tenant
	case err == nil:
		next, exists, latest = cur.Version+1, true, cur
	case errors.Is(err, store.ErrGone):
		next, latest = cur.Version+1, cur
	case errors.Is(err, store.ErrNotFound):
		if !create {
			return nil, errIDTaken
		}
	default:
		return nil, err
	}
	if err := pre.check(latest, tx); err != nil {
		return nil, err
	}
	if exists && !pre.versionAlways && !pre.blind {
		same, err := unchanged(cur, doc)
		if err != nil {
			return nil, err
		}
		if same {
			return &Result{Status: fhirwire.StatusOK, Resource: cur, Unchanged: true}, nil
		}
	}
	status := fhirwire.StatusCreated
	if exists {
		status = fhirwire.StatusOK
	}
	r, err := e.put(tx, typ, id, next, doc, now, method, status)
	if err != nil {
		return nil, err
	}
	if exists {
		return &Result{Status: fhirwire.StatusOK, Resource: r}, nil
	}
	return &Result{Status: fhirwire.StatusCreated, Resource: r, Created: true}, nil
}

// unchanged reports whether doc, stored as a new version of cur (the
// current version, not a deletion), would be the same resource: rendered
// as cur's own version and lastUpdated it is byte for byte cur's body. An
// update that changes nothing writes no version (as HAPI FHIR and Medplum
// do: an integration engine re-sending what it sent before churns no
// versions, history or Provenance). Anything else, even a difference of
// form only (an order of keys an earlier build stored), is a change: it
// costs a version, never a lost change.
func unchanged(cur *store.Resource, doc map[string]any) (bool, error) {
	body, err := store.VersionBody(cur.Type, cur.ID, cur.Version, doc, cur.LastUpdated)
	if err != nil {
		return false, err
	}
	return bytes.Equal(body, cur.Body), nil
}

// createAt creates typ/id for a conditional create or update whose _id
// criterion names id and matched nothing: a resource living at id (its
// other criteria did not match) cannot be replaced by a create, so that is
// PreconditionFailed; a deleted one of the tenant's is created anew; pre,
// create and method are as for update.
func (e *Engine) createAt(tx store.Tx, typ, id string, doc map[string]any, pre conditions, now time.Time, create bool, method string) (*Result, error) {
	cur, err := tx.Read(typ, id)
	switch {
	case err == nil && owns(tx, cur):
		return nil, outcome.New(outcome.PreconditionFailed, "conflict", "conditional-id-taken",
			"the _id criterion names a resource that the other criteria do not match; it cannot be created again")
	case err == nil, errors.Is(err, errForeign), errors.Is(err, store.ErrGone), errors.Is(err, store.ErrNotFound):
		return e.update(tx, typ, id, doc, pre, now, create, method)
	default:
		return nil, err
	}
}

// owns reports whether the tenant of tx may write r (a shared conformance
// resource is readable by every tenant but written only by its own).
func owns(tx store.Tx, r *store.Resource) bool {
	if h, ok := tx.(hiding); ok {
		tx = h.Tx
	}
	if tt, ok := tx.(tenantTx); ok && r != nil {
		return r.Tenant == tt.tenant
	}
	return true
}

// remove deletes typ/id (a new, deleted version). Deleting what does not
// exist or is already deleted succeeds (idempotent, http.html#delete), and
// so does deleting what the tenant may read but not write (a shared
// conformance resource of another tenant), which changes nothing. pre
// are checked as for update.
func (e *Engine) remove(tx store.Tx, typ, id string, pre conditions, now time.Time) (*Result, error) {
	cur, err := tx.Read(typ, id)
	exists := err == nil && owns(tx, cur)
	if err != nil && !errors.Is(err, store.ErrGone) && !errors.Is(err, store.ErrNotFound) {
		return nil, err
	}
	var latest *store.Resource
	if cur != nil && (err == nil || errors.Is(err, store.ErrGone)) && owns(tx, cur) {
		latest = cur
	}
	if err := pre.check(latest, tx); err != nil {
		return nil, err
	}
	if !exists {
		res := &Result{Status: fhirwire.StatusNoContent}
		if latest != nil && latest.Deleted && !pre.blind {
			res.Gone = latest
		}
		return res, nil
	}
	del := &store.Resource{Type: typ, ID: id, Version: cur.Version + 1, LastUpdated: now.UTC().Truncate(time.Millisecond), Deleted: true,
		Method: "DELETE", Status: fhirwire.StatusNoContent}
	if err := tx.Put(del, nil); err != nil {
		return nil, fmt.Errorf("delete %s/%s: %w", typ, id, err)
	}
	return &Result{Status: fhirwire.StatusNoContent, Resource: del, Was: cur}, nil
}

// sameContent compares two resources ignoring meta.
func sameContent(a, b []byte) bool {
	strip := func(x []byte) []byte {
		var m map[string]any
		if json.Unmarshal(x, &m) != nil {
			return nil
		}
		delete(m, "meta")
		out, _ := json.Marshal(m)
		return out
	}
	return bytes.Equal(strip(a), strip(b))
}
