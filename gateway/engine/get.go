package engine

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/auditlog"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/fhirwire"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/outcome"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/search"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
)

// A Bundle's GET (and HEAD) entries may ask for what a client can GET at
// the top level (bundle.html: an entry's request.url is "relative to the
// root"), and each is answered by the code of that interaction, run inside
// the Bundle's database transaction (reads): a read or vread, a search, a
// compartment search, $everything, an instance, type or system history,
// or the CapabilityStatement. Their answer is the entry's resource, as at
// the top level: the resource, a searchset or a history Bundle.

// getKind is what a GET entry asks for.
type getKind int

const (
	getRead        getKind = iota // Type/id
	getVRead                      // Type/id/_history/vid
	getSearch                     // Type, Type?criteria
	getCompartment                // Patient/id/Type?criteria
	getEverything                 // Patient/id/$everything
	getHistory                    // Type/id/_history, Type/_history, _history
	getMetadata                   // metadata
)

// errGetURL answers a GET entry's url the gateway cannot answer.
var errGetURL = outcome.New(outcome.Invalid, "invalid", "bundle-entry-url-invalid",
	"a GET entry's url is one a client can GET from the FHIR base: Type, Type?criteria, Type/id, Type/id/_history, "+
		"Type/id/_history/vid, Type/_history, _history, Patient/id/Type?criteria, Patient/id/$everything or metadata, "+
		"relative to the base (or an absolute URL on it)")

// DefaultMaxBundleAnswer is the default bound on the resources a Bundle's
// GET entries answer in all.
const DefaultMaxBundleAnswer = 10000

// answered is what a Bundle's GET entries answered so far: resources,
// and the bytes of their JSON.
type answered struct{ resources, bytes int }

// maxAnswerBytes bounds the JSON of the resources a Bundle's GET entries
// answer in all: four pages' (search.Limits.PageBytes; an attacker's
// review: a 26 KB batch reading one 3 MB Observation 300 times was a
// 900 MB answer that grew the gateway by 5.7 GB).
func (e *Engine) maxAnswerBytes() int { return 4 * e.limits.PageBytes }

// answerFull reports whether a holds the bound of what a Bundle's GET
// entries answer: a later GET entry is refused without running.
func (e *Engine) answerFull(a answered) bool {
	return a.resources >= e.maxAnswer || a.bytes >= e.maxAnswerBytes()
}

// answerWithin adds the resources GET entry en answers to *a, or refuses
// the entry (which then answers nothing) where they would pass the
// engine's bounds (Config.MaxBundleAnswer resources, maxAnswerBytes of
// JSON): a Bundle of many large reads, searches or histories would
// otherwise hold them all in memory at once (and its AuditEvent would
// name them all). Other entries answer nothing that counts.
func (e *Engine) answerWithin(en *Entry, a *answered) error {
	if en.method != "GET" {
		return nil
	}
	n := *a
	add := func(rs ...*store.Resource) { n.resources, n.bytes = n.resources+len(rs), n.bytes+bodies(rs) }
	switch {
	case en.searched != nil:
		add(en.searched.Page.Matches...)
		add(en.searched.Page.Included...)
	case en.hist != nil:
		add(en.hist.Versions...)
	case en.res != nil && en.res.Resource != nil:
		add(en.res.Resource)
	}
	if n.resources <= e.maxAnswer && n.bytes <= e.maxAnswerBytes() {
		*a = n
		return nil
	}
	en.searched, en.hist, en.res = nil, nil, nil
	return e.errAnswerTooLarge()
}

// errAnswerTooLarge refuses a GET entry past the bounds of what a
// Bundle's GET entries answer in all.
func (e *Engine) errAnswerTooLarge() error {
	return outcome.New(outcome.Invalid, "too-costly", "bundle-answer-too-large", fmt.Sprintf(
		"the Bundle's GET entries answer more than %d resources, or %s of them, in all; ask for smaller pages "+
			"(_count) or send the reads and searches one by one and follow their next links", e.maxAnswer,
		search.Bytes(int64(e.maxAnswerBytes()))))
}

// errEntryFormat answers a GET entry whose _format is not JSON, as the
// top-level GET is answered (406).
var errEntryFormat = outcome.New(outcome.NotAcceptable, "not-supported", "format-unsupported",
	"only JSON is supported (_format=json): the entry's answer is part of the Bundle's JSON")

// errEntryVersion answers a GET entry whose _format names another FHIR
// version than R4 (fhirVersion), as the top-level GET is answered (406).
var errEntryVersion = outcome.New(outcome.NotAcceptable, "not-supported", "fhir-version-unsupported",
	"only FHIR R4 is available: give _format=json, or a fhirVersion of 4.0")

// parseGet reads the path of a GET entry's url (split at "/"; its query
// is in en.query).
func (e *Engine) parseGet(en *Entry, parts []string) error {
	switch {
	case len(parts) == 1 && parts[0] == "metadata":
		en.typ, en.get = "", getMetadata
		return nil
	case len(parts) == 1 && parts[0] == "_history":
		en.typ, en.get = "", getHistory
		return nil
	case strings.Contains(parts[0], ":"):
		return outcome.New(outcome.Invalid, "invalid", "bundle-entry-url-invalid", "the request url is an absolute "+
			"URL that is not on this server's FHIR base; send it relative to the base")
	case !e.v.KnownType(parts[0]):
		if hint := e.v.TypeHint(parts[0]); hint != "" {
			return outcome.New(outcome.Invalid, "invalid", "bundle-entry-url-invalid",
				"the request url's resource type is not an R4 resource type"+hint)
		}
		return errGetURL
	}
	op := func(s string) bool { return strings.HasPrefix(s, "$") }
	switch len(parts) {
	case 1:
		en.get = getSearch
	case 2:
		switch {
		case parts[1] == "_history":
			en.get = getHistory
		case parts[1] == "_search":
			return errEntrySearch
		case op(parts[1]):
			return errGetURL
		default:
			en.id, en.get = parts[1], getRead
		}
	case 3:
		en.id = parts[1]
		switch {
		case parts[2] == "_history":
			en.get = getHistory
		case parts[2] == "$everything":
			en.get = getEverything
		case parts[2] == "*" && parts[0] == "Patient":
			return errCompartmentAll
		case e.v.KnownType(parts[2]):
			en.compType, en.get = parts[2], getCompartment
		default:
			return errGetURL
		}
	case 4:
		if parts[2] != "_history" {
			return errGetURL
		}
		en.id, en.get = parts[1], getVRead
		// Version ids are 1, 2, ...: "01" is none of them, not version 1.
		v, err := strconv.ParseInt(parts[3], 10, 64)
		if err != nil || v < 1 || strconv.FormatInt(v, 10) != parts[3] {
			return outcome.New(outcome.Invalid, "invalid", "bundle-entry-url-invalid",
				"the version in the request url is not a version id of the gateway (1, 2, 3, ... without sign or leading zeros)")
		}
		en.vid = v
	default:
		return errGetURL
	}
	return nil
}

// getEntry answers a GET entry inside tx with the code of the interaction
// it asks for (reads{tx}): the resource read is kept in en.res, a search's
// or history's answer in en.searched or en.hist, to be shaped into the
// entry's resource by Response.
func (e *Engine) getEntry(tx store.Tx, sc *auditlog.Scope, en *Entry, ids map[string]string) error {
	// The transaction's reads have its own context.
	return e.getEntryIn(context.Background(), reads{tx: tx}, sc, en, ids)
}

// getEntryIn is getEntry reading with in: a transaction's reads, or the
// store's outside one (reads{}: each search in a slot of the caller's and
// under the search timeout, as a search of its own), with ctx.
func (e *Engine) getEntryIn(ctx context.Context, in reads, sc *auditlog.Scope, en *Entry, ids map[string]string) error {
	var err error
	if en.params, err = ParseQuery(en.queryType(), en.query); err != nil {
		return err
	}
	e.getPlaceholders(e.limitsFor(sc), en, ids)
	if f := en.params.Get("_format"); f != "" && !fhirwire.JSONFormat(f) {
		return errEntryFormat
	} else if v, ok := fhirwire.FHIRVersion(f); ok && !fhirwire.R4Version(v) {
		return errEntryVersion
	}
	en.gone = nil
	switch en.get {
	case getRead, getVRead:
		var r = new(Result)
		if en.get == getRead {
			r.Resource, err = e.read(ctx, sc, in, en.typ, en.id)
		} else {
			r.Resource, err = e.vread(ctx, sc, in, en.typ, en.id, strconv.FormatInt(en.vid, 10))
		}
		if err != nil {
			if IsGone(err) && r.Resource != nil && r.Resource.Deleted {
				en.gone = r.Resource // its ETag goes with the 410, as at the top level
			}
			return err
		}
		// A vread's version is all its URL ever had: a date in its span
		// came from it. A read's is, if no other version shares the span.
		en.sole = en.get == getVRead
		if !en.sole && !en.ifModifiedSince.IsZero() && en.ifModifiedSince.Compare(r.Resource.LastUpdated) == 0 {
			cur := r.Resource
			en.sole = soleIn(en.ifModifiedSince, cur, func(v int64) (*store.Resource, error) {
				return e.reader(sc, in).VRead(ctx, cur.Type, cur.ID, v)
			})
		}
		if r.Resource, err = e.Subset(r.Resource, en.params); err != nil {
			return err
		}
		r.Status, en.res = fhirwire.StatusOK, r
	case getSearch:
		en.searched, err = e.search(ctx, sc, in, en.typ, en.params, false, nil)
	case getCompartment:
		en.searched, err = e.searchCompartment(ctx, sc, in, en.typ, en.id, en.compType, en.params, false)
	case getEverything:
		en.searched, err = e.everything(ctx, sc, in, en.id, en.params)
	case getHistory:
		en.hist, err = e.history(ctx, sc, in, en.typ, en.id, en.params, false)
	case getMetadata:
		err = e.checkMetadata(en.params)
	}
	return err
}

// getPlaceholders replaces, in the parameters of a GET entry that
// searches (a type's or a compartment's), each reference or uri value
// naming the fullUrl of an entry of the transaction (ids: fullUrl ->
// Type/id) by the identity that entry was given. GET entries run after
// every write (http.html#trules), so the search finds what the entry
// wrote, as conditional criteria naming a placeholder do
// (substitutePlaceholders), and the searchset's self link names the id.
// Token and string values equal to a fullUrl are data and stay, as do
// parameters the search would refuse (it reports them).
func (e *Engine) getPlaceholders(lim search.Limits, en *Entry, ids map[string]string) {
	if len(ids) == 0 || (en.get != getSearch && en.get != getCompartment) {
		return
	}
	q, _, err := lim.Parse(en.queryType(), en.params, true)
	if err != nil {
		return
	}
	named := map[string]bool{} // the parameters (name:modifier) whose values name a fullUrl
	_ = placeholderValues(q, func(c search.Clause, _ *search.Value, url string) error {
		if _, ok := ids[url]; ok {
			key := c.Param
			if c.Modifier != "" {
				key += ":" + c.Modifier
			}
			named[key] = true
		}
		return nil
	})
	for key, vs := range en.params {
		if !named[key] {
			continue
		}
		for i, v := range vs {
			parts := strings.Split(v, ",") // a URL or urn has no escaped comma (\,) to keep whole
			for j, p := range parts {
				if to, ok := ids[p]; ok {
					parts[j] = to
				}
			}
			vs[i] = strings.Join(parts, ",")
		}
	}
}

// queryType is the type a GET entry's parameters are read for ("" for
// the system: metadata, the system's history).
func (en *Entry) queryType() string {
	if en.get == getCompartment {
		return en.compType
	}
	return en.typ
}

// getAnswer is the resource answering a GET entry that read no single
// resource: the searchset, history Bundle or CapabilityStatement the
// top-level interaction answers, with links below ans.Base.
func (e *Engine) getAnswer(en *Entry, ans Answer) any {
	switch en.get {
	case getMetadata:
		cs, _ := e.Metadata(ans.Base, ans.Security, en.params) // checked by getEntry
		return cs
	case getHistory:
		return e.HistoryBundle(ans.Base, en.params, en.hist)
	case getCompartment:
		return e.Searchset(ans.Base, en.compType, "Patient/"+en.id+"/"+en.compType, en.params, en.searched)
	case getEverything:
		return e.Searchset(ans.Base, "Patient", "Patient/"+en.id+"/$everything", en.params, en.searched)
	default:
		return e.Searchset(ans.Base, en.typ, en.typ, en.params, en.searched)
	}
}

// indexAuditsFor makes the AuditEvents committed before a Bundle's GET
// searches findable by them inside its transaction, as they are by a
// top-level search (store.Tx.Search does not wait for their index).
func (e *Engine) indexAuditsFor(ctx context.Context, entries []*Entry) error {
	for _, en := range entries {
		if en.method == "GET" && en.perr == nil && (en.get == getSearch || en.get == getCompartment || en.get == getEverything) {
			return e.store.IndexAudits(ctx)
		}
	}
	return nil
}
