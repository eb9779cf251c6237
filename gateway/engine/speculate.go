package engine

import (
	"bytes"
	"context"
	"fmt"
	"maps"
	"os"
	"reflect"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/auditlog"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/fhirwire"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/search"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
)

// A Speculation is version 1 of the resources a transaction's POST entries
// would create, rendered before the transaction runs (Engine.Speculate):
// each with the id it would be given and its references rewritten as a
// look at the store, outside the write transaction, says they will be. The
// transaction (runTransaction, given the guesses by Apply) puts a guess
// instead of rendering the resource again when the entry is created with
// the guessed id and its references are rewritten exactly as they were
// for the guess; only meta.lastUpdated, the transaction's own instant, is
// written into the guess (its place in the bytes found when the guess was
// made). Any other outcome (the entry matched
// a resource, a reference resolved otherwise, the document is not the one
// guessed from) renders the resource in the transaction, as without a
// guess: a guess can make a transaction faster, never different.
//
// Why (issue 19): on SQLite's single write lane a transaction's time is
// every other writer's wait, and a session record's 55 new resources were
// rendered inside it, on goroutines the lane waited for (15% of its time
// at 32 clients). Rendered ahead, and their rewriting replayed, session
// records at 32 clients went from 81-103 to 89-102 a second (5 of 6
// interleaved pairs won, the median ratio 1.06; docs/BENCHMARKS.md).
type Speculation struct {
	guesses []*guess // by the entry's index
	// ids are the identities the guesses' rewriting took the entries'
	// fullUrls to have (fhirwire.Rewriter.IDs).
	ids map[string]string
}

// guess is one entry's resource rendered ahead (Speculation).
type guess struct {
	doc     map[string]any // the document guessed from (the same map, not a copy)
	typ, id string
	// changes are the replacements rewriting doc made for the guess; the
	// transaction's rewriting must make the same.
	changes *fhirwire.Changes
	sp      *Speculation    // the speculation it is one of
	res     *store.Resource // rendered at a provisional instant
	entries []search.Entry
	at      int // where in res.Body the provisional meta.lastUpdated is written
	lu      int // which of entries is _lastUpdated (-1: none)
	used    bool
}

// checkGuesses, set by the environment variable
// GATEWAY_CHECK_SPECULATION=1 (the test runs of .ci/run), makes every
// record speculate (not only those whose write would wait), and every
// guess the transaction puts be rendered again and compared, every
// replayed rewriting rewritten again and compared: a guess that differs
// from what the transaction would make panics, so that the tests, not a
// clinic's records, find it.
var checkGuesses atomic.Bool

func init() { checkGuesses.Store(os.Getenv("GATEWAY_CHECK_SPECULATION") == "1") }

// Speculate renders, ahead of the write transaction, the resources that
// entries' POSTs would create (Speculation). lookups are the indexes of
// the entries whose conditional criteria are searched first (outside the
// transaction, so that they may be stale: the transaction searches them
// again), because other entries reference them (a record's Patient); every
// other POST is taken to create its resource. It returns nil when there is
// nothing to guess or the guess cannot be made (its searches failed, a
// criteria matched several resources). sc is the request's scope (its
// tenant and base). Nothing is written; the documents are left as they
// were.
func (e *Engine) Speculate(ctx context.Context, sc *auditlog.Scope, entries []*Entry, lookups []int) *Speculation {
	if !checkGuesses.Load() && !e.writesWait() {
		return nil
	}
	lim := e.limitsFor(sc)
	tenant := sc.TenantOf()
	matched := map[int]string{} // entry index -> the id of the one resource its criteria select
	for _, i := range lookups {
		if i < 0 || i >= len(entries) {
			return nil
		}
		en := entries[i]
		c := criteriaOf(en)
		if c == "" || en.method != "POST" {
			continue
		}
		q, err := lim.ParseConditional(en.typ, c)
		if err != nil || namesPlaceholder(q, nil) {
			return nil
		}
		if pinned, err := pinnedID(q); err != nil || pinned != "" {
			return nil
		}
		scopeQuery(q, tenant)
		page, err := e.store.Search(ctx, q)
		if err != nil {
			return nil
		}
		switch len(page.Matches) {
		case 0:
		case 1:
			matched[i] = page.Matches[0].ID
		default:
			return nil
		}
	}
	ids := map[string]string{}
	sp := &Speculation{guesses: make([]*guess, len(entries)), ids: ids}
	for i, en := range entries {
		if en.index != i {
			return nil
		}
		if en.fullURL == "" || !en.namesResource() {
			continue
		}
		switch {
		case en.method == "POST" && matched[i] != "":
			ids[en.fullURL] = en.typ + "/" + matched[i]
		case en.method == "POST" && en.id == "":
			sp.guesses[i] = &guess{doc: en.doc, typ: en.typ, id: store.NewID(), sp: sp}
			ids[en.fullURL] = en.typ + "/" + sp.guesses[i].id
		case en.method == "PUT" && en.query == "" && en.id != "":
			ids[en.fullURL] = en.typ + "/" + en.id
		}
	}
	rw := fhirwire.Rewriter{
		IDs: ids,
		Conditional: func(string, string) (string, error) {
			return "", errNotGuessed
		},
		Local:      func(ref string) string { return search.LocalReference(lim.Base, ref) },
		Base:       lim.Base,
		Unresolved: errNotGuessed,
		Versioned:  errNotGuessed,
	}
	// A provisional instant: the transaction writes its own in.
	now := time.Now().UTC().Truncate(time.Millisecond)
	var todo []int
	for i, g := range sp.guesses {
		if g != nil {
			todo = append(todo, i)
		}
	}
	// On several goroutines, as render does in the transaction (a guess's
	// rewriting and rendering change only its own document).
	var next atomic.Int64
	var wg sync.WaitGroup
	work := func() {
		for {
			j := int(next.Add(1)) - 1
			if j >= len(todo) {
				return
			}
			i := todo[j]
			if !sp.guesses[i].make(rw, entries[i], now) {
				sp.guesses[i] = nil
			}
		}
	}
	for range min(runtime.GOMAXPROCS(0), len(todo)/renderPerWorker) - 1 {
		wg.Go(work)
	}
	work()
	wg.Wait()
	if !slices.ContainsFunc(sp.guesses, func(g *guess) bool { return g != nil }) {
		return nil
	}
	return sp
}

// make rewrites and renders en's document for g at the provisional
// instant now (rw without Changes: its own is set), and puts the document
// back as it was; false when it cannot (a reference the speculation does
// not resolve, a resource NewVersion refuses).
func (g *guess) make(rw fhirwire.Rewriter, en *Entry, now time.Time) bool {
	var ch fhirwire.Changes
	rw.Changes, rw.FullURL = &ch, en.fullURL
	err := rw.Rewrite(en.doc)
	g.changes = ch.Clone()
	if err == nil {
		// Rendered from a copy of the document's top level and meta,
		// which NewVersion stamps, so that the document is left as it was.
		doc := maps.Clone(en.doc)
		if meta, ok := doc["meta"].(map[string]any); ok {
			doc["meta"] = maps.Clone(meta)
		}
		g.res, g.entries, err = store.NewVersionAtMost(en.typ, g.id, 1, doc, now, search.MaxEntries)
	}
	ch.Restore()
	if err != nil {
		return false
	}
	needle := []byte(`"lastUpdated":"` + now.Format(store.LastUpdatedLayout) + `"`)
	at := bytes.Index(g.res.Body, needle)
	if at < 0 || bytes.LastIndex(g.res.Body, needle) != at {
		return false // not once: where the instant is written is not known
	}
	g.at = at + len(`"lastUpdated":"`)
	g.lu = slices.IndexFunc(g.entries, func(x search.Entry) bool {
		return x.Param == "_lastUpdated" && x.Type == search.TypeDate
	})
	return true
}

// writesWait reports whether a write now would wait for a write lane: all
// of them are busy, or writes are queued. Only then does a speculation
// pay: its work is done while the transaction waits, where otherwise it
// would be done in the transaction, on as many cores, and the pre-lane
// search for the Patient (its own read transaction) would be added to the
// request's time (session records at one client were 3.5% slower when
// every record speculated). A store that does not say speculates.
func (e *Engine) writesWait() bool {
	ws, ok := e.store.(interface{ WriteStats() store.PoolStats })
	if !ok {
		return true
	}
	st := ws.WriteStats()
	return st.WriteQueue > 0 || st.WriteLanesBusy >= st.WriteLanes
}

// errNotGuessed stops a guess's rewriting at a reference the speculation
// does not resolve (a conditional reference, a urn no entry has); the
// transaction resolves it.
var errNotGuessed = fmt.Errorf("engine: a reference is not resolved ahead of the transaction")

// Apply gives entries, the transaction's entries made of the same
// documents as those Speculate was given, their guesses: a POST entry gets
// the guess made from its own document (the same map), of its type; no
// other entry gets one, so that replay and fits need not ask again.
// Nothing else about the guess is trusted: runTransaction checks that it
// fits (Entry.fits) before it puts it. sp may be nil.
func (sp *Speculation) Apply(entries []*Entry) {
	if sp == nil {
		return
	}
	for _, en := range entries {
		en.guess = nil
		if en.index < 0 || en.index >= len(sp.guesses) {
			continue
		}
		g := sp.guesses[en.index]
		if g != nil && en.method == "POST" && en.typ == g.typ && sameMap(en.doc, g.doc) {
			en.guess = g
		}
	}
}

// CheckGuesses turns on or off what GATEWAY_CHECK_SPECULATION=1 turns on
// (checkGuesses), for a test that needs every record to speculate; it
// returns a function that puts back the setting before.
func CheckGuesses(on bool) (restore func()) {
	was := checkGuesses.Swap(on)
	return func() { checkGuesses.Store(was) }
}

// Used returns how many guesses transactions put (the store.transaction
// span's ingest.rendered_ahead).
func (sp *Speculation) Used() int {
	n := 0
	if sp != nil {
		for _, g := range sp.guesses {
			if g != nil && g.used {
				n++
			}
		}
	}
	return n
}

// sameMap reports whether a and b are the same map (not equal maps).
func sameMap(a, b map[string]any) bool {
	return a != nil && b != nil && reflect.ValueOf(a).UnsafePointer() == reflect.ValueOf(b).UnsafePointer()
}

// newID returns the id a POST entry creating its resource is given: its
// guess's, when it has one (the transaction may then put the guess).
func (en *Entry) newID() string {
	if en.guess != nil {
		return en.guess.id
	}
	return store.NewID()
}

// agreed returns the speculation of entries' guesses when it took every
// fullUrl to the identity the transaction gives it (ids): rewriting a
// guessed document then makes the replacements its guess's rewriting
// made (replay). nil otherwise.
func agreed(entries []*Entry, ids map[string]string) *Speculation {
	for _, en := range entries {
		if en.guess != nil {
			if sp := en.guess.sp; maps.Equal(sp.ids, ids) {
				return sp
			}
			return nil
		}
	}
	return nil
}

// replay rewrites en's document as its guess's was rewritten, without
// walking it, when the guess is one of sp (agreed), and reports whether
// it did: the transaction's rewriting would make the same replacements
// (recorded in en.rewrites, as rewriting records them). The rewriting
// depends on nothing else the speculation and the transaction could see
// otherwise: a guess was made only of a document without conditional
// references and urns no entry has, in the same scope.
func (en *Entry) replay(sp *Speculation) bool {
	g := en.guess
	if sp == nil || g == nil || g.sp != sp {
		return false
	}
	return g.changes.Replay(&en.rewrites)
}

// fits returns en's resource from its guess, as the transaction at now
// would render it, or nil when the guess does not fit: en is to create
// its resource (render's condition) with the guessed id, its document
// (the one guessed from: Apply) rewritten exactly as for the guess. The
// document is stamped as rendering stamps it.
func (en *Entry) fits(now time.Time) *rendered {
	g := en.guess
	if g == nil || en.id != g.id || !g.changes.Same(&en.rewrites) {
		return nil
	}
	stamp := now.UTC().Format(store.LastUpdatedLayout)
	if len(stamp) != len(store.LastUpdatedLayout) {
		return nil // a year past 9999 or before 0: rendered afresh
	}
	low, high, ok := search.DateRange(stamp)
	if !ok {
		return nil
	}
	// The first put writes the instant into the guess itself; a later run
	// of the transaction (after a conflict), into a copy, as the first
	// put's may still be held.
	res, entries := *g.res, g.entries
	if g.used {
		res.Body, entries = slices.Clone(res.Body), slices.Clone(entries)
	}
	copy(res.Body[g.at:], stamp)
	res.LastUpdated = now.UTC().Truncate(time.Millisecond)
	if g.lu >= 0 {
		entries[g.lu].Low, entries[g.lu].High = low, high
	}
	store.Stamp(en.typ, en.id, 1, en.doc, now)
	if checkGuesses.Load() {
		want, wentries, err := store.NewVersionAtMost(en.typ, en.id, 1, en.doc, now, search.MaxEntries)
		if err != nil || !bytes.Equal(want.Body, res.Body) || !reflect.DeepEqual(wentries, entries) || !want.LastUpdated.Equal(res.LastUpdated) {
			panic(fmt.Sprintf("engine: the guess of entry %d (%s) differs from its rendering (GATEWAY_CHECK_SPECULATION)", en.index, en.typ))
		}
	}
	g.used = true
	return &rendered{&res, entries, nil}
}
