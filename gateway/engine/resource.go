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
// writes: AuditEvents.
func clientWritable(typ string) error {
	if typ == "AuditEvent" {
		return errAuditReadOnly
	}
	return nil
}

var errAuditReadOnly = outcome.New(outcome.MethodNotAllowed, "forbidden", "audit-read-only",
	"AuditEvents are recorded by the gateway and cannot be created, changed or deleted")

// ClientWritable reports whether clients may create, update and delete
// resources of typ (AuditEvents are the gateway's own).
func ClientWritable(typ string) bool { return clientWritable(typ) == nil }

// put stores version v of typ/id.
func (e *Engine) put(tx store.Tx, typ, id string, v int64, doc map[string]any, now time.Time) (*store.Resource, error) {
	r, entries, err := store.NewVersion(typ, id, v, doc, now)
	if err != nil {
		return nil, err
	}
	if err := tx.Put(r, entries); err != nil {
		return nil, fmt.Errorf("put %s/%s v%d: %w", typ, id, v, err)
	}
	return r, nil
}

// putRendered stores version 1 of a POST entry: the version render
// prepared, or one made now.
func (e *Engine) putRendered(tx store.Tx, en *Entry, now time.Time) (*store.Resource, error) {
	v := en.rendered
	en.rendered = nil
	if v == nil {
		return e.put(tx, en.typ, en.id, 1, en.doc, now)
	}
	if v.err != nil {
		return nil, v.err
	}
	if err := tx.Put(v.res, v.entries); err != nil {
		return nil, fmt.Errorf("put %s/%s v1: %w", en.typ, en.id, err)
	}
	return v.res, nil
}

// rendered is a version NewVersion made ahead of its Put.
type rendered struct {
	res     *store.Resource
	entries []search.Entry
	err     error
}

// renderPerWorker is how many resources a rendering goroutine takes on at
// least: below twice that, a transaction renders its resources as it puts
// them.
const renderPerWorker = 32

// render makes, in parallel, version 1 of the resources the POST entries
// create (their ids decided and their references rewritten), so that a
// large transaction's marshalling and index extraction use every core and
// not only the one that holds the database transaction.
func render(entries []*Entry, now time.Time) {
	var todo []*Entry
	for _, en := range entries {
		en.rendered = nil
		if en.method == "POST" && en.matched == nil && en.doc != nil {
			todo = append(todo, en)
		}
	}
	workers := min(runtime.GOMAXPROCS(0), len(todo)/renderPerWorker)
	if workers < 2 {
		return
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= len(todo) {
					return
				}
				en := todo[i]
				r, ix, err := store.NewVersion(en.typ, en.id, 1, en.doc, now)
				en.rendered = &rendered{r, ix, err}
			}
		})
	}
	wg.Wait()
}

// update writes a new version of typ/id (update-as-create when it does not
// exist or was deleted). ifMatch is the If-Match value ("" for none): a
// mismatch is PreconditionFailed.
func (e *Engine) update(tx store.Tx, typ, id string, doc map[string]any, ifMatch string, now time.Time) (*Result, error) {
	cur, err := tx.Read(typ, id)
	var next int64 = 1
	exists := false
	switch {
	case errors.Is(err, errForeign):
		return nil, errIDTaken
	case err == nil:
		next, exists = cur.Version+1, true
	case errors.Is(err, store.ErrGone):
		next = cur.Version + 1
	case errors.Is(err, store.ErrNotFound):
	default:
		return nil, err
	}
	if ifMatch != "" {
		want, ok := fhirwire.ParseETag(ifMatch)
		if !ok || !exists || cur.Version != want {
			return nil, outcome.New(outcome.PreconditionFailed, "conflict", "version-mismatch",
				"If-Match does not name the current version")
		}
	}
	r, err := e.put(tx, typ, id, next, doc, now)
	if err != nil {
		return nil, err
	}
	if exists {
		return &Result{Status: fhirwire.StatusOK, Resource: r}, nil
	}
	return &Result{Status: fhirwire.StatusCreated, Resource: r, Created: true}, nil
}

// remove deletes typ/id (a new, deleted version). Deleting what does not
// exist or is already deleted succeeds (idempotent, http.html#delete).
func (e *Engine) remove(tx store.Tx, typ, id string, now time.Time) (*Result, error) {
	cur, err := tx.Read(typ, id)
	switch {
	case err == nil:
	case errors.Is(err, store.ErrGone), errors.Is(err, store.ErrNotFound):
		return &Result{Status: fhirwire.StatusNoContent}, nil
	default:
		return nil, err
	}
	del := &store.Resource{Type: typ, ID: id, Version: cur.Version + 1, LastUpdated: now.UTC().Truncate(time.Millisecond), Deleted: true}
	if err := tx.Put(del, nil); err != nil {
		return nil, fmt.Errorf("delete %s/%s: %w", typ, id, err)
	}
	return &Result{Status: fhirwire.StatusNoContent, Resource: del}, nil
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
