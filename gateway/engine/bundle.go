package engine

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"time"

	"go.opentelemetry.io/otel/attribute"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/auditlog"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/fhirwire"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/internal/cpuslots"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/outcome"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/search"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
	"github.com/ketamine-gateway/ketamine-gateway/schemas"
)

// entryResourcePointer matches a JSON pointer inside an entry's resource
// (not the entry's resource key itself).
var entryResourcePointer = regexp.MustCompile(`^/entry/[0-9]+/resource/`)

// Answer is how the client wants a write answered.
type Answer struct {
	// Base is the FHIR base URL the client used, for fullUrl and Location.
	Base string
	// Return is the client's return preference (Prefer: return=,
	// http.html#ops) for the entries that write: ReturnRepresentation
	// includes the resources written in a Bundle response,
	// ReturnOutcome an OperationOutcome per entry (entry.response.outcome:
	// what the entry did) instead; ReturnMinimal, "" (none sent) and any
	// other value neither. A GET entry always carries what it read.
	Return string
	// Security is what a GET metadata entry's CapabilityStatement says
	// of security.
	Security Security
	// Scope, when set, is the caller: Response leaves out each resource it
	// may not be shown (Visible) that the request did not write itself (a
	// GET entry's, a conditional create's match). Bundle sets it; the edge
	// sets it for every write, so an ingest's answer follows it too.
	Scope *auditlog.Scope
}

// Bundle processes a transaction or batch Bundle (http.html#transaction):
// body is validated (a transaction whole; a batch entry by entry, so that
// one bad entry fails only itself), every entry is checked against the
// caller's scopes, and the entries are run in one database transaction
// with the request's AuditEvent and a Provenance of what was written. A
// transaction fails whole with the first failing entry's error (an
// *outcome.EntryError); a batch answers each entry's outcome in its
// response. sc.Interaction becomes "batch" for a batch.
func (e *Engine) Bundle(ctx context.Context, sc *auditlog.Scope, body []byte, ans Answer) (*fhirwire.Bundle, error) {
	var typ string
	var decoded []any         // the entries of a Bundle validated whole
	var wire []fhirwire.Entry // or those of a batch validated entry by entry
	// In a CPU slot (package cpuslots): the parse leaves the write lane a
	// core.
	err := cpuslots.Run(ctx, len(body), func() error {
		return e.stage(ctx, "fhir.validate", func(context.Context) error {
			// Most Bundles are valid: one parse validates the whole Bundle
			// and decodes it.
			doc, verr := e.v.Decoded(body, "Bundle")
			if verr == nil {
				typ, _ = doc["type"].(string)
				decoded, _ = doc["entry"].([]any)
				return nil
			}
			b, err := decodeWire(body)
			if err != nil || b.ResourceType != "Bundle" || b.Type != fhirwire.TypeBatch {
				// A transaction fails as a whole, so the whole Bundle is
				// validated at once; the validator also names any syntax
				// problem precisely.
				return verr
			}
			// A batch whose entries are not all valid: one bad entry fails
			// only itself.
			if err := e.validateBatchShell(body); err != nil {
				return err
			}
			typ, wire = b.Type, b.Entry
			return nil
		})
	})
	if err != nil {
		return nil, err
	}
	batch := typ == fhirwire.TypeBatch
	if batch {
		sc.Interaction = "batch"
	}
	// One of decoded and wire holds the entries.
	if len(decoded)+len(wire) > e.maxEntries {
		return nil, outcome.New(outcome.Invalid, "too-costly", "bundle-too-many-entries",
			fmt.Sprintf("a Bundle may have at most %d entries", e.maxEntries))
	}
	// An entry's url may be absolute on the server's own base.
	bases := []string{ans.Base, sc.Base}
	entries := make([]*Entry, 0, len(decoded)+len(wire))
	for i, d := range decoded {
		m, _ := d.(map[string]any)
		entries = append(entries, e.decodedEntry(i, m, bases))
	}
	for i := range wire {
		entries = append(entries, e.parseEntry(i, &wire[i], bases))
	}
	switch typ {
	case fhirwire.TypeTransaction:
		return e.transaction(ctx, sc, body, entries, ans)
	case fhirwire.TypeBatch:
		return e.batch(ctx, sc, body, entries, ans)
	default:
		return nil, outcome.New(outcome.Invalid, "invalid", "bundle-type-unsupported",
			"POST /fhir takes a Bundle of type transaction or batch")
	}
}

// transaction runs a transaction Bundle's parsed entries.
func (e *Engine) transaction(ctx context.Context, sc *auditlog.Scope, body []byte, entries []*Entry, ans Answer) (_ *fhirwire.Bundle, err error) {
	// The request's AuditEvent names what the entry that failed it
	// targeted, as a failed PUT or DELETE of its own would.
	defer func() { e.nameRefusedEntry(sc, entries, err) }()
	for _, en := range entries {
		if en.perr != nil {
			return nil, &outcome.EntryError{Index: en.index, Err: en.perr}
		}
	}
	if err := uniqueFullURLs(entries); err != nil {
		return nil, err
	}
	// One entry the caller may not perform fails the whole transaction.
	for _, en := range entries {
		err := allowNeed(sc, en)
		if err == nil {
			err = e.allowEntry(sc, en)
		}
		if err != nil {
			return nil, &outcome.EntryError{Index: en.index, Err: err}
		}
	}
	if err := e.indexAuditsFor(ctx, entries); err != nil {
		return nil, err
	}
	err = e.stage(ctx, "store.transaction", func(ctx context.Context) error {
		return e.Write(ctx, sc, func(tx *Tx) (int, error) {
			if err := tx.Run(entries); err != nil {
				return 0, err
			}
			sc.Description = fmt.Sprintf("transaction: %d entries", len(entries))
			return fhirwire.StatusOK, tx.Provenance(auditlog.BundleProvenance("transaction", body), Written(entries, nil))
		})
	}, attribute.String("fhir.bundle.type", "transaction"), attribute.Int("fhir.entry_count", len(entries)))
	if err != nil {
		return nil, locateTooLong(err, entries, true)
	}
	ans.Scope = sc
	b := e.Response(fhirwire.TypeTransactionResponse, entries, nil, ans)
	return &b, nil
}

// uniqueFullURLs fails a transaction two of whose entries have the same
// fullUrl: a fullUrl names the one entry references to it resolve to
// (bundle.html#references), and bdl-7 lets two through when their
// resources' meta.versionId differ (the versions of a history Bundle),
// which would leave it to the processing order which one a reference
// names. Invalid bundle-entry-fullurl-duplicate at the later one's fullUrl.
func uniqueFullURLs(entries []*Entry) error {
	first := map[string]int{}
	for _, en := range entries {
		if en.fullURL == "" {
			continue
		}
		if i, ok := first[en.fullURL]; ok {
			return &outcome.EntryError{Index: en.index, Err: outcome.New(outcome.Invalid, "invalid", "bundle-entry-fullurl-duplicate",
				fmt.Sprintf("entry %d has the same fullUrl; in a transaction a fullUrl names one entry, the one references "+
					"to it resolve to (bundle.html#references): give each entry its own fullUrl", i)).
				At(fmt.Sprintf("Bundle.entry[%d].fullUrl", en.index))}
		}
		first[en.fullURL] = en.index
	}
	return nil
}

// batch runs a batch Bundle's parsed entries: one database transaction,
// each entry in a savepoint, so an entry fails alone and the batch's
// AuditEvent and Provenance commit with exactly the entries that succeeded.
func (e *Engine) batch(ctx context.Context, sc *auditlog.Scope, body []byte, entries []*Entry, ans Answer) (*fhirwire.Bundle, error) {
	for _, en := range entries {
		if en.perr == nil {
			en.perr = allowNeed(sc, en)
		}
		if en.perr == nil {
			en.perr = e.allowEntry(sc, en)
		}
	}
	if err := e.indexAuditsFor(ctx, entries); err != nil {
		return nil, err
	}
	if readsOnly(entries) {
		return e.batchReads(ctx, sc, entries, ans)
	}
	created := createdFullURLs(entries)
	base := e.limitsFor(sc).Base
	errs := make([]error, len(entries))
	err := e.stage(ctx, "store.transaction", func(ctx context.Context) error {
		return e.Write(ctx, sc, func(tx *Tx) (int, error) {
			// The GET entries of a batch that also writes run in its write
			// transaction (their AuditEvent commits with the writes), so
			// their time holds every tenant's writes: they run for the
			// search timeout in all, as a batch of reads does (runReads;
			// an attacker's review: one write entry beside 20,000
			// searches held the writes for minutes).
			failed, shown := 0, answered{}
			reads := newReadBudget(e.searchTimeout)
			for i, en := range entries {
				get := en.method == "GET" && en.perr == nil
				switch {
				case get && e.answerFull(shown):
					errs[i], failed = e.errAnswerTooLarge(), failed+1 // not run: nothing more fits
					continue
				default:
					// runTransaction charges the entry's searches to reads,
					// and refuses them once it is spent.
					errs[i] = e.batchEntry(tx, en, created, base, reads)
				}
				if errors.Is(errs[i], store.ErrConflict) || errors.Is(errs[i], store.ErrUnavailable) {
					return 0, errs[i] // the transaction is lost: retry the batch
				}
				if errs[i] == nil {
					errs[i] = e.answerWithin(en, &shown)
				}
				if errs[i] != nil {
					failed++
				}
			}
			e.touchEntries(sc, entries, errs)
			sc.Description = fmt.Sprintf("batch: %d entries, %d failed", len(entries), failed)
			return fhirwire.StatusOK, tx.Provenance(auditlog.BundleProvenance("batch", body), Written(entries, errs))
		})
	}, attribute.String("fhir.bundle.type", "batch"), attribute.Int("fhir.entry_count", len(entries)))
	if err != nil {
		return nil, err
	}
	ans.Scope = sc
	b := e.Response(fhirwire.TypeBatchResponse, entries, errs, ans)
	return &b, nil
}

// runReads answers the entries of a batch that only reads, each GET as
// a read or search of its own outside any write transaction, setting
// their errors in errs, and returns how many failed. An entry that would
// pass the answer's bound (Config.MaxBundleAnswer) is refused; once the
// answer holds the bound, or the entries have run for the search timeout
// in all (readBudget), the later ones are refused without running (an
// attacker's review: 20,000 searches of a 2.5 MB batch, each past the
// bound, were minutes of a core). A database that fails fails the batch.
func (e *Engine) runReads(ctx context.Context, sc *auditlog.Scope, entries []*Entry, errs []error) (int, error) {
	failed, shown := 0, answered{}
	budget := newReadBudget(e.searchTimeout)
	for i, en := range entries {
		switch {
		case en.perr != nil:
			errs[i] = en.perr
		case e.answerFull(shown):
			errs[i] = e.errAnswerTooLarge()
		default:
			errs[i] = budget.search(func() error { return e.getEntryIn(ctx, reads{}, sc, en, nil) })
			if errors.Is(errs[i], store.ErrUnavailable) || ctx.Err() != nil {
				return 0, cmp.Or(ctx.Err(), errs[i])
			}
			if errs[i] == nil {
				errs[i] = e.answerWithin(en, &shown)
			}
		}
		if errs[i] != nil {
			failed++
		}
	}
	return failed, nil
}

// readBudget is the time a Bundle's GET entries may still run: the search
// timeout, in all.
type readBudget struct{ left, budget time.Duration }

// newReadBudget is a budget of d.
func newReadBudget(d time.Duration) *readBudget { return &readBudget{left: d, budget: d} }

// search runs f, a search or searches, charging its time to the budget,
// or refuses it (errReadsTooCostly) once the budget is spent.
func (b *readBudget) search(f func() error) error {
	if b.left <= 0 {
		return errReadsTooCostly(b.budget)
	}
	start := time.Now()
	err := f()
	b.left -= time.Since(start)
	return err
}

// errReadsTooCostly refuses a Bundle's GET entry once its GET entries have
// run for the search timeout (budget) in all.
func errReadsTooCostly(budget time.Duration) error {
	return outcome.New(outcome.Invalid, "too-costly", "bundle-reads-too-costly", fmt.Sprintf(
		"the request's searches before this entry's (GET entries, conditional criteria and conditional references) ran "+
			"for %s (the search timeout) in all, the most one request may: this entry was not run; send it, and those "+
			"after it, in another Bundle", budget))
}

// readsOnly reports whether a batch's entries only read (GET), or fail
// before they run.
func readsOnly(entries []*Entry) bool {
	for _, en := range entries {
		if en.perr == nil && en.method != "GET" {
			return false
		}
	}
	return true
}

// batchReads runs a batch that only reads outside any write transaction:
// each entry as a read or search of its own (in one of the caller's search
// slots, under the search timeout), its AuditEvent committed by the edge
// as a search's is. In the write transaction its searches held the
// database's writes, every tenant's, for as long as they ran (an
// attacker's review: 8,000 searches held a clinic's create 7 s). Once the
// answer's bound is reached (Config.MaxBundleAnswer) the later entries
// are refused without running. A database that fails fails the batch.
func (e *Engine) batchReads(ctx context.Context, sc *auditlog.Scope, entries []*Entry, ans Answer) (*fhirwire.Bundle, error) {
	errs := make([]error, len(entries))
	failed, err := e.runReads(ctx, sc, entries, errs)
	if err != nil {
		return nil, err
	}
	e.touchEntries(sc, entries, errs)
	sc.Description = fmt.Sprintf("batch: %d entries, %d failed", len(entries), failed)
	ans.Scope = sc
	b := e.Response(fhirwire.TypeBatchResponse, entries, errs, ans)
	return &b, nil
}

// batchEntry runs one batch entry in a savepoint of tx. A batch resolves
// no reference between its entries (http.html#transaction: a reference to
// a resource another entry creates is non-conformant), so an entry whose
// references name a urn, or the fullUrl of another entry's POST (created:
// its resource gets a new id, and the reference would name none; a
// relative one made absolute against base or the entry's fullUrl, as in a
// transaction), fails alone: Invalid batch-interdependent at the reference.
func (e *Engine) batchEntry(tx *Tx, en *Entry, created map[string]bool, base string, searches *readBudget) error {
	if en.perr != nil {
		return en.perr
	}
	if en.doc != nil {
		// Without IDs the Rewriter changes nothing: it only checks (its
		// own fullUrl, which names its own resource, is not refused).
		chk := fhirwire.Rewriter{Refused: created, RefusedErr: errBatchInterdependent, Unresolved: errBatchInterdependent,
			FullURL: en.fullURL, Base: base}
		if err := chk.Rewrite(en.doc); err != nil {
			return en.linkAt(err)
		}
	}
	err := tx.st.Savepoint(func() error { return e.runTransaction(tx.st, tx.sc, []*Entry{en}, tx.now, nil, searches) })
	if errors.Is(err, store.ErrValueTooLong) || errors.As(err, new(*search.TooManyEntries)) {
		return outcome.Unentry(locateTooLong(err, []*Entry{en}, true))
	}
	return err
}

// errBatchInterdependent answers a batch entry that references another
// entry (batchEntry).
var errBatchInterdependent = outcome.New(outcome.Invalid, "invalid", "batch-interdependent",
	"a batch entry may not reference another entry of the batch (a urn, or the fullUrl of an entry that creates a "+
		"resource, which gets a new id): a batch resolves no reference between its entries; use a transaction")

// createdFullURLs returns the fullUrls of a batch's POST entries, whose
// resources get ids of the server's choosing.
func createdFullURLs(entries []*Entry) map[string]bool {
	out := map[string]bool{}
	for _, en := range entries {
		if en.fullURL != "" && en.method == "POST" && en.namesResource() {
			out[en.fullURL] = true
		}
	}
	return out
}

// The values of Answer.Return (Prefer: return=).
const (
	ReturnMinimal        = "minimal"
	ReturnRepresentation = "representation"
	ReturnOutcome        = "OperationOutcome"
)

// Response builds the transaction-response or batch-response (typ) of
// processed entries, one entry per request in Bundle order; errs are a
// batch's per-entry failures (nil for a transaction). Resources are
// included for GET entries, and for the others with ans.Return
// ReturnRepresentation; with ReturnOutcome a write entry carries
// WriteOutcome instead. With ans.Scope, a resource the caller may not see
// is left out (a GET search's searchset says how many, WithheldEntry).
func (e *Engine) Response(typ string, entries []*Entry, errs []error, ans Answer) fhirwire.Bundle {
	b := fhirwire.Bundle{ResourceType: "Bundle", ID: store.NewID(), Type: typ, Timestamp: fhirwire.Instant(e.now())}
	shown := func(r *store.Resource) bool { return ans.Scope == nil || e.Visible(ans.Scope, r) }
	for i, en := range entries {
		var be fhirwire.Entry
		if errs != nil && errs[i] != nil {
			kind, issues := outcome.From(outcome.Unentry(errs[i]))
			oo, _ := fhirwire.Marshal(outcome.Resource(issues))
			be.Response = &fhirwire.Response{Status: fhirwire.StatusLine(kind.HTTPStatus()), Outcome: oo}
			if r := en.gone; r != nil && IsGone(errs[i]) {
				// A GET of a deleted resource: the deletion's version, as
				// the top-level 410 carries it (to restore with If-Match).
				be.Response.Etag, be.Response.LastModified = fhirwire.ETag(r.Version), fhirwire.Instant(r.LastUpdated)
			}
			b.Entry = append(b.Entry, be)
			continue
		}
		switch {
		case en.method == "GET" && en.res == nil:
			raw, _ := fhirwire.Marshal(e.getAnswer(en, ans))
			be.Resource = raw
			be.Response = &fhirwire.Response{Status: fhirwire.StatusLine(fhirwire.StatusOK)}
		case en.res != nil && en.res.Resource != nil && !en.res.Resource.Deleted:
			r := en.res.Resource
			be.FullURL = ans.Base + "/" + r.Type + "/" + r.ID
			be.Response = &fhirwire.Response{Status: fhirwire.StatusLine(en.res.Status), Etag: fhirwire.ETag(r.Version),
				LastModified: fhirwire.Instant(r.LastUpdated), Location: fmt.Sprintf("%s/%s/_history/%d", r.Type, r.ID, r.Version)}
			// What the request wrote is the caller's own; what it read or
			// matched is shown only if the caller may see it.
			written := en.method != "GET" && en.matched == nil
			if en.method == "GET" && shown(r) && fhirwire.NotModified(en.ifNoneMatch, en.ifModifiedSince, r.Version, r.LastUpdated, func() bool { return en.sole }) {
				be.Response.Status = fhirwire.StatusLine(fhirwire.StatusNotModified)
				break
			}
			if (ans.Return == ReturnRepresentation || en.method == "GET") && (written || shown(r)) {
				be.Resource = r.Body
			}
			if ans.Return == ReturnOutcome && en.method != "GET" {
				be.Response.Outcome, _ = fhirwire.Marshal(WriteOutcome(en.method, en.res, written || shown(r)))
			}
		default:
			be.Response = &fhirwire.Response{Status: fhirwire.StatusLine(fhirwire.StatusNoContent)}
			// A DELETE: the version that records the deletion (written
			// now, or earlier for a resource deleted already), as the
			// top-level DELETE's ETag.
			if r := en.res.Deleted(); r != nil {
				be.Response.Etag, be.Response.LastModified = fhirwire.ETag(r.Version), fhirwire.Instant(r.LastUpdated)
			}
			if ans.Return == ReturnOutcome {
				be.Response.Outcome, _ = fhirwire.Marshal(WriteOutcome(en.method, en.res, true))
			}
		}
		if en.head {
			be.Resource = nil // HEAD answers as GET, without the body (RFC 9110 9.3.2)
		}
		b.Entry = append(b.Entry, be)
	}
	return b
}

// validateBatchShell validates a batch Bundle without its entries'
// resources, which are validated one by one so that one bad entry fails
// only itself. Each resource is replaced by a stub (its type, id and
// meta.versionId, which the Bundle's own rules read: bdl-7), and issues
// located inside an entry's resource are left to that entry. Without the
// resource, an entry with a resource and nothing else was told it had
// none (bdl-5), and one with neither fullUrl was told it was empty (a
// conformance review).
func (e *Engine) validateBatchShell(body []byte) error {
	// The shell is checked re-encoded from its decoded form, which keeps
	// the last of two repeated keys: a key repeated outside the entries'
	// resources (an entry's request given twice, a method twice) would
	// run what a proxy keeping the first reads differently (an attacker's
	// review: a GET it logged, a DELETE the gateway ran). Refused as a
	// transaction's are; one inside a resource fails its entry alone.
	for _, is := range schemas.CheckJSON(body, 0) {
		if is.Rule == schemas.RuleJSONDuplicateKey && !entryResourcePointer.MatchString(is.Pointer) {
			return outcome.New(outcome.Invalid, "structure", is.Rule, "a property name is repeated in this object: "+
				"a key may appear only once (RFC 8259 leaves the meaning of a repeated one open); nothing was done").
				At("Bundle." + is.Expression)
		}
	}
	doc, err := decodeJSON(body)
	if err != nil {
		return e.v.Structure(body, "Bundle")
	}
	if entries, ok := doc["entry"].([]any); ok {
		for _, en := range entries {
			m, ok := en.(map[string]any)
			if !ok {
				continue
			}
			r, ok := m["resource"].(map[string]any)
			if !ok {
				continue // the entry's own validation reports it
			}
			stub := map[string]any{"resourceType": r["resourceType"]}
			if id, ok := r["id"]; ok {
				stub["id"] = id
			}
			if meta, ok := r["meta"].(map[string]any); ok && meta["versionId"] != nil {
				stub["meta"] = map[string]any{"versionId": meta["versionId"]}
			}
			m["resource"] = stub
		}
	}
	shell, err := json.Marshal(doc)
	if err != nil {
		return err
	}
	err = e.v.Structure(shell, "Bundle")
	var oe *outcome.Error
	if !errors.As(err, &oe) {
		return err
	}
	kept := make([]outcome.Issue, 0, len(oe.Issues))
	failed := false
	for _, is := range oe.Issues {
		if entryResourceIssue.MatchString(is.Expression) {
			continue
		}
		kept = append(kept, is)
		failed = failed || is.Severity == "error" || is.Severity == "fatal"
	}
	if !failed {
		return nil
	}
	out := *oe
	out.Issues = kept
	return &out
}

// entryResourceIssue matches the location of an issue inside a Bundle
// entry's resource.
var entryResourceIssue = regexp.MustCompile(`^Bundle\.entry\[\d+\]\.resource($|[.\[])`)

// WriteOutcome is the OperationOutcome that answers a write of method
// (POST, PUT, PATCH, DELETE) with result res when the client asked for one
// (Prefer: return=OperationOutcome, http.html#ops): one information issue
// saying what was done to which resource and version. shown is false for
// a resource a conditional create matched that the caller may not read:
// the outcome then does not name it.
func WriteOutcome(method string, res *Result, shown bool) any {
	if res == nil || res.Resource == nil {
		return outcome.Information("nothing was deleted: the resource does not exist or was deleted already")
	}
	r := res.Resource
	switch {
	case !shown:
		return outcome.Information("an existing resource matched the conditional criteria; nothing was created, and " +
			"the access token's scopes do not allow reading it")
	}
	what := fmt.Sprintf("%s/%s version %d", r.Type, r.ID, r.Version)
	switch {
	case r.Deleted:
		return outcome.Information("deleted " + r.Type + "/" + r.ID + "; version " + fmt.Sprint(r.Version) + " records the deletion")
	case res.Created:
		return outcome.Information("created " + what)
	case method == "POST":
		return outcome.Information("an existing resource matched the conditional criteria, " + what + "; nothing was created")
	case res.Unchanged:
		verb := "update"
		if method == "PATCH" {
			verb = "patch"
		}
		return outcome.Information("unchanged: " + what + " is already what the " + verb +
			" would store; no new version was written")
	case method == "PATCH":
		return outcome.Information("patched " + what)
	default:
		return outcome.Information("updated " + what)
	}
}
