package engine

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"mime"
	"slices"
	"strings"
	"time"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/auditlog"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/auth"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/fhirwire"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/outcome"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/search"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
)

// PATCH (http.html#patch): a JSON Patch or a FHIRPath Patch applied to the
// current version inside the write transaction, the result validated like
// any write (R4 structure and the profiles it claims) and stored as a new
// version. A patch never creates a resource, and never changes id, meta or
// resourceType.

// PatchFormat says how a PATCH body is written.
type PatchFormat int

const (
	// PatchDetect reads a JSON array as a JSON Patch and a Parameters
	// resource as a FHIRPath Patch (application/fhir+json or
	// application/json bodies).
	PatchDetect PatchFormat = iota
	// PatchJSON is a JSON Patch (application/json-patch+json).
	PatchJSON
)

// patchMediaTypes are the media types of a PATCH body and how each is
// read: the edge chooses by them, the CapabilityStatement lists them
// (patchFormat).
var patchMediaTypes = map[string]PatchFormat{
	"application/json-patch+json": PatchJSON,
	"application/fhir+json":       PatchDetect,
	"application/json":            PatchDetect,
	"application/json+fhir":       PatchDetect,
}

// PatchFormatOf returns how a PATCH body of mediaType (without parameters)
// is read; ok is false for a media type the gateway does not read.
func PatchFormatOf(mediaType string) (f PatchFormat, ok bool) {
	f, ok = patchMediaTypes[mediaType]
	return f, ok
}

// PatchFormats returns the media types of a PATCH body, sorted.
func PatchFormats() []string {
	return slices.Sorted(maps.Keys(patchMediaTypes))
}

// patcher is a parsed patch.
type patcher interface {
	// apply changes doc, a resource of typ, and returns the result; its
	// errors are Invalid and name the operation, or TooLarge
	// (errPatchTooLarge) when doc would grow by more than room bytes (a
	// patcher whose operations cannot add more than the patch holds may
	// leave that to the check of the result).
	apply(typ string, doc map[string]any, v *Validator, room int64) (map[string]any, error)
}

// errPatchTooLarge refuses a patch whose result would be larger than the
// largest resource the gateway takes (Config.MaxResourceBytes, the request
// body limit): operation i (-1: the result as a whole) made it so.
func errPatchTooLarge(i int) error {
	msg := "the patched resource would be larger than the largest resource this gateway accepts " +
		"(its request body limit, serve --max-body), as a PUT of it would be; patch a smaller part, " +
		"or remove elements in the same patch"
	if i < 0 {
		return outcome.New(outcome.TooLarge, "too-costly", "patch-result-too-large", msg)
	}
	e := outcome.New(outcome.TooLarge, "too-costly", "patch-result-too-large", fmt.Sprintf("JSON Patch operation %d: %s", i, msg))
	e.Issues[0].Pointer, e.Issues[0].Expression = fmt.Sprintf("/%d", i), fmt.Sprintf("Patch.operation[%d]", i)
	return e
}

// jsonSize is the size of v (a decoded JSON value) encoded compactly,
// counted up to limit: a value larger than limit may be answered with any
// size above it. Strings count their bytes and quotes (an escaped
// character is counted once: the result's exact size is checked when it
// is encoded).
func jsonSize(v any, limit int64) int64 {
	var n int64
	var walk func(v any)
	walk = func(v any) {
		if n > limit {
			return
		}
		switch x := v.(type) {
		case map[string]any:
			n += 2
			for k, m := range x {
				n += int64(len(k)) + 4 // "k": and a comma
				if walk(m); n > limit {
					return
				}
			}
		case []any:
			n += 2
			for _, m := range x {
				n++ // a comma
				if walk(m); n > limit {
					return
				}
			}
		case string:
			n += int64(len(x)) + 2
		case json.Number:
			n += int64(len(x))
		case nil, bool:
			n += 5
		default: // a float64 or another number
			n += 24
		}
	}
	walk(v)
	return n
}

// decodePatch parses a PATCH body.
func (e *Engine) decodePatch(raw []byte, format PatchFormat) (patcher, error) {
	if format == PatchJSON || bytes.HasPrefix(bytes.TrimSpace(raw), []byte("[")) {
		return parseJSONPatch(raw)
	}
	// Most bodies are valid Parameters: one parse validates and decodes.
	doc, verr := e.v.Decoded(raw, "Parameters")
	if verr == nil {
		return parseFHIRPathPatch(doc)
	}
	// Otherwise say what is wrong: not JSON, not a Parameters, or a
	// Parameters the R4 structure rejects.
	doc, err := decodeJSON(raw)
	if err != nil {
		return nil, outcome.New(outcome.Invalid, "structure", "json-syntax", "the patch is not valid JSON")
	}
	if rt, _ := doc["resourceType"].(string); rt != "Parameters" {
		return nil, outcome.New(outcome.Invalid, "invalid", "patch-invalid",
			"a PATCH body is a JSON Patch (application/json-patch+json) or a FHIRPath Patch (a Parameters resource)")
	}
	return nil, verr
}

// Patch applies a patch to typ/id (http.html#patch) when the
// preconditions pre hold (PreconditionFailed otherwise; a malformed one is
// Invalid). Returns NotFound for a resource
// the caller's tenant does not hold, Gone for a deleted one, Invalid for a
// patch that does not apply or touches id or meta (naming the operation)
// or whose result is not a valid resource, Unprocessable when the result
// breaks a profile it claims.
func (e *Engine) Patch(ctx context.Context, sc *auditlog.Scope, typ, id string, format PatchFormat, body Body, pre Preconditions) (*Result, error) {
	if err := e.checkInstance(typ, id); err != nil {
		return nil, err
	}
	return e.patch(ctx, sc, &Entry{method: "PATCH", typ: typ, id: id, client: true, rest: true}, format, body, pre)
}

// ConditionalPatch patches the one resource of typ that query selects:
// none is NotFound, several PreconditionFailed (http.html#patch); pre are
// checked against that resource, as for Patch.
func (e *Engine) ConditionalPatch(ctx context.Context, sc *auditlog.Scope, typ, query string, format PatchFormat, body Body, pre Preconditions) (*Result, error) {
	if err := e.checkType(typ); err != nil {
		return nil, err
	}
	if query == "" {
		return nil, outcome.New(outcome.Invalid, "invalid", "conditional-criteria-missing", "PATCH on a type needs search criteria (or use PATCH /fhir/Type/id)")
	}
	if err := clientWritableAt(typ, ""); err != nil {
		return nil, err
	}
	if err := allow(sc, typ, 'u'); err != nil { // before the criteria's s: the interaction's own scope first
		return nil, err
	}
	if err := e.allowCriteria(sc, typ, query, false); err != nil {
		return nil, err
	}
	return e.patch(ctx, sc, &Entry{method: "PATCH", typ: typ, query: query, client: true, rest: true}, format, body, pre)
}

// allowPatch checks the scopes a PATCH of typ needs: update (u), and read
// (r, or s, which reads the same resources by _id). A patch is computed on
// the stored content, which the client does not send: its result (the
// answer, and a patch that changes nothing answers the stored version as
// it is), and its failures (a JSON Patch test that fails is
// patch-test-failed) tell the client what is stored. SMART's u does not
// include reading, so without r or s the PATCH is 403 naming
// system/<Type>.r, before the patch is looked at: the same answer whether
// it would hold or not. The REST PATCH (patch) and a Bundle's PATCH entry
// (allowNeed) both come here.
func allowPatch(sc *auditlog.Scope, typ string) error {
	if err := allow(sc, typ, 'u'); err != nil {
		return err
	}
	if !mayRead(sc, typ) {
		return auth.InsufficientScope(sc.Principal.ClientID, "system/"+typ+".r")
	}
	return nil
}

// patch runs a PATCH entry, with the preconditions pre, as a one-entry
// transaction.
func (e *Engine) patch(ctx context.Context, sc *auditlog.Scope, en *Entry, format PatchFormat, body Body, pre Preconditions) (*Result, error) {
	if err := clientWritableAt(en.typ, en.id); err != nil {
		return nil, err
	}
	if err := allowPatch(sc, en.typ); err != nil {
		return nil, err
	}
	var err error
	if en.pre, err = pre.parse(false); err != nil {
		return nil, err
	}
	raw, err := body()
	if err != nil {
		return nil, err
	}
	if en.patch, err = e.decodePatch(raw, format); err != nil {
		return nil, err
	}
	return e.writeOne(ctx, sc, en.typ, "patch", func(tx *Tx) (*Result, error) {
		if err := e.runTransaction(tx.st, tx.sc, []*Entry{en}, tx.now, nil, nil); err != nil {
			return nil, outcome.Unentry(err)
		}
		return en.res, nil
	})
}

// entryPatch reads the resource of a PATCH entry: a Binary carrying a JSON
// Patch (contentType application/json-patch+json, parameters such as a
// charset allowed; the patch in data), or a Parameters resource (a FHIRPath
// Patch), as transaction.html#patch says. expr is the FHIRPath of the
// entry's resource ("Bundle.entry[2].resource"), which errors name.
func (e *Engine) entryPatch(doc map[string]any, expr string) (patcher, error) {
	switch doc["resourceType"] {
	case "Binary":
		ct, _ := doc["contentType"].(string)
		if mt, _, err := mime.ParseMediaType(ct); err != nil || mt != "application/json-patch+json" {
			return nil, outcome.New(outcome.Invalid, "invalid", "patch-invalid",
				"the PATCH entry's Binary has "+describeMediaType(ct)+"; a JSON Patch in a Binary needs contentType "+
					"application/json-patch+json (a FHIRPath Patch is sent as a Parameters resource)").At(expr + ".ofType(Binary).contentType")
		}
		data, _ := doc["data"].(string)
		raw, err := base64.StdEncoding.DecodeString(data)
		if err != nil || data == "" {
			found := "data that is not base64"
			if data == "" {
				found = "no data"
			}
			return nil, outcome.New(outcome.Invalid, "invalid", "patch-invalid",
				"the PATCH entry's Binary has "+found+"; it needs the JSON Patch in data, base64-encoded").
				At(expr + ".ofType(Binary).data")
		}
		return parseJSONPatch(raw)
	case "Parameters":
		return parseFHIRPathPatch(doc)
	}
	return nil, outcome.New(outcome.Invalid, "invalid", "patch-invalid",
		"a PATCH entry's resource is a Binary (JSON Patch) or a Parameters resource (FHIRPath Patch)").At(expr)
}

// describeMediaType names the contentType a client sent, for an error: the
// media type when it is one (without its parameters: a media type is no
// record's value), else only that it is none.
func describeMediaType(ct string) string {
	mt, _, err := mime.ParseMediaType(ct)
	switch {
	case ct == "":
		return "no contentType"
	case err != nil || len(mt) > 100 || strings.Count(mt, "/") != 1 || strings.HasPrefix(mt, "/") || strings.HasSuffix(mt, "/"):
		return "a contentType that is not a media type (type/subtype)"
	}
	return "contentType " + mt
}

// resolvePatchTarget finds the one resource a conditional PATCH's criteria
// select.
// Criteria naming the fullUrl of an entry processed before it search for
// the id that entry was given (substitutePlaceholders: ids, full).
func (e *Engine) resolvePatchTarget(tx store.Tx, sc *auditlog.Scope, lim search.Limits, en *Entry, ids map[string]string, full map[string]bool) error {
	q, err := lim.ParseConditional(en.typ, en.query)
	if err != nil {
		return searchError(err)
	}
	if en.client {
		if err := restrict(sc, q); err != nil { // as lookUp: only what the caller's search finds
			return err
		}
	}
	if err := substitutePlaceholders(q, ids, full, "request.url"); err != nil {
		return err
	}
	page, err := tx.Search(q)
	if err != nil {
		return err
	}
	switch len(page.Matches) {
	case 0:
		return outcome.New(outcome.NotFound, "not-found", "conditional-patch-unmatched", "the conditional criteria match no resource to patch")
	case 1:
		en.id = page.Matches[0].ID
		return nil
	}
	return outcome.New(outcome.PreconditionFailed, "multiple-matches", "conditional-multiple-matches",
		"the conditional criteria match more than one resource")
}

// patchEntry applies a PATCH entry inside tx: the current version, the
// patch, references rewritten (rw), the result validated and stored.
func (e *Engine) patchEntry(tx store.Tx, en *Entry, rw *fhirwire.Rewriter, now time.Time) (*Result, error) {
	cur, err := tx.Read(en.typ, en.id)
	switch {
	case errors.Is(err, store.ErrGone):
		return nil, outcome.New(outcome.Gone, "deleted", "resource-deleted", "the resource has been deleted; a patch cannot bring it back")
	case err != nil:
		return nil, err
	case !owns(tx, cur):
		return nil, errIDTaken
	}
	if err := en.pre.check(cur, tx); err != nil {
		return nil, err
	}
	doc, err := decodeJSON(cur.Body)
	if err != nil {
		return nil, fmt.Errorf("patch %s/%s: stored body: %w", en.typ, en.id, err)
	}
	if doc, err = en.patch.apply(en.typ, doc, e.v, e.maxResource-int64(len(cur.Body))); err != nil {
		if _, ok := en.patch.(fhirpathPatch); ok && en.resourceExpr != "" {
			// Parameters.parameter[0] is the entry's resource's.
			err = nestedAt(err, en.resourceExpr, "Parameters")
		}
		return nil, err
	}
	if rw != nil {
		if err := rw.Rewrite(doc); err != nil {
			return nil, err
		}
	}
	raw, err := fhirwire.Marshal(doc)
	if err != nil {
		return nil, fmt.Errorf("patch %s/%s: %w", en.typ, en.id, err)
	}
	if int64(len(raw)) > e.maxResource {
		return nil, errPatchTooLarge(-1)
	}
	if doc, err = e.v.Resource(raw, en.typ, ""); err != nil {
		return nil, err
	}
	if i := subsettedAt(doc); i >= 0 {
		return nil, errPatchSubsetted(en.typ, i)
	}
	if err := checkBundleType(doc, en.typ, en.typ+".type"); err != nil {
		return nil, err // a stored document patched into a transaction
	}
	if en.client && en.typ == "Provenance" {
		if err := provenanceWrite(tx, "", doc); err != nil {
			return nil, err
		}
	}
	if err := e.reservedIdentifier(en, doc, cur); err != nil {
		return nil, err
	}
	en.doc = doc
	return e.update(tx, en.typ, en.id, doc, en.pre, now, false, "PATCH")
}

// nestedAt re-roots the expressions of err's issues, found in a resource
// of typ validated on its own, at the element expr that holds it
// (nestedExpr); other errors are returned as they are.
func nestedAt(err error, expr, typ string) error {
	var oe *outcome.Error
	if !errors.As(err, &oe) {
		return err
	}
	c := *oe
	c.Issues = slices.Clone(oe.Issues)
	for i := range c.Issues {
		c.Issues[i].Expression = nestedExpr(expr, typ, c.Issues[i].Expression)
	}
	return &c
}
