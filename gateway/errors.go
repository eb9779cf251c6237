package gateway

import (
	"fmt"
	"maps"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/outcome"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/search"
)

// The failures only the HTTP edge can find: the request's shape, media
// types, limits. Everything else comes classified from the application.
var (
	errRouteUnknown     = outcome.New(outcome.NotFound, "not-found", "route-unknown", "no such endpoint")
	errOperationUnknown = outcome.New(outcome.NotFound, "not-supported", "operation-unknown",
		"the gateway has no such operation here; its operations are $validate (POST /fhir, /fhir/{type}, /fhir/{type}/{id}), "+
			"$everything (GET or POST /fhir/Patient/{id}) and $export (GET /fhir, /fhir/Patient, /fhir/Group/{id})")
	errMethod = outcome.New(outcome.MethodNotAllowed, "not-supported", "method-not-allowed", "this endpoint does not support the method")
	// errSearchMethod answers GET (or PUT, DELETE...) /fhir/{type}/_search.
	errSearchMethod = &outcome.Error{Kind: outcome.MethodNotAllowed, Allow: []string{http.MethodPost}, Issues: []outcome.Issue{{
		Severity: "error", Code: "not-supported", Rule: "method-not-allowed",
		Message: "_search takes POST (search.html): send the parameters as an application/x-www-form-urlencoded body " +
			"(or in the URL), or search with GET /fhir/{type}?parameters"}}}
	// errValidateMethod answers $validate asked with another method than
	// POST, at any level (GET /fhir/Patient/{id}/$validate?mode=delete,
	// which R4 would allow as the operation does not affect state,
	// included): the gateway's $validate reads what it checks from the
	// body (a resource, or a Parameters), and a mode=delete on an instance
	// is a POST with no body.
	errValidateMethod = &outcome.Error{Kind: outcome.MethodNotAllowed, Allow: []string{http.MethodPost}, Issues: []outcome.Issue{{
		Severity: "error", Code: "not-supported", Rule: "method-not-allowed",
		Message: "$validate takes POST, with the resource (or a Parameters with resource, mode and profile) as the body: " +
			"POST /fhir/$validate, /fhir/{type}/$validate or /fhir/{type}/{id}/$validate; to check a delete send " +
			"POST /fhir/{type}/{id}/$validate?mode=delete with no body"}}}
	// errSystemSearchMethod answers GET /fhir?parameters: only a Bundle is
	// posted there.
	errSystemSearchMethod = &outcome.Error{Kind: outcome.MethodNotAllowed, Allow: []string{http.MethodPost}, Issues: []outcome.Issue{{
		Severity: "error", Code: "not-supported", Rule: "method-not-allowed",
		Message: "/fhir takes POST with a transaction or batch Bundle; the gateway does not search all types at once " +
			"(GET /fhir?parameters): search one type with GET /fhir/{type}?parameters or POST /fhir/{type}/_search"}}}
	// errExportMethod answers a bulk export's kick-off with another method
	// than GET (POST, which Bulk Data v2 makes optional, included), at
	// every level alike: the operation is there, its method is not. Allow
	// is the router's for those paths (it answers OPTIONS there).
	errExportMethod = &outcome.Error{Kind: outcome.MethodNotAllowed, Allow: []string{http.MethodOptions, http.MethodGet}, Issues: []outcome.Issue{{
		Severity: "error", Code: "not-supported", Rule: "method-not-allowed",
		Message: "the $export kick-off takes GET, with Prefer: respond-async and its parameters (_type, _since, " +
			"_typeFilter, _outputFormat) in the URL's query; no other method (a POST kick-off with a Parameters body " +
			"among them) is supported; a job is cancelled or deleted by DELETE on its status URL"}}}
	// errMetadataMethod answers /fhir/metadata asked with another method
	// than GET or HEAD (or OPTIONS, the Allow the router gives there too).
	errMetadataMethod = &outcome.Error{Kind: outcome.MethodNotAllowed, Allow: []string{http.MethodOptions, http.MethodGet, http.MethodHead},
		Issues: []outcome.Issue{{Severity: "error", Code: "not-supported", Rule: "method-not-allowed",
			Message: "the capability statement is read with GET /fhir/metadata; it cannot be written or deleted"}}}
	// errConditionalDelete answers DELETE /fhir/{type}?criteria; the
	// router's Allow lists the methods the type's URL takes.
	errConditionalDelete = outcome.New(outcome.MethodNotAllowed, "not-supported", "method-not-allowed",
		"conditional delete (DELETE /fhir/{type}?criteria) is not supported: find the resource with a search, "+
			"GET /fhir/{type}?criteria, and delete it by Type/id, DELETE /fhir/{type}/{id}")
	// errSystemSearch answers /fhir/_search.
	errSystemSearch = outcome.New(outcome.NotFound, "not-supported", "search-system-unsupported",
		"the gateway does not search all types at once (/fhir/_search): search one type with GET /fhir/{type}?parameters "+
			"or POST /fhir/{type}/_search")
	errBodyTooLarge    = outcome.New(outcome.TooLarge, "too-costly", "body-too-large", "the request body exceeds the size limit")
	errBodyUnreadable  = outcome.New(outcome.Invalid, "structure", "body-unreadable", "the request body could not be read")
	errContentType     = outcome.New(outcome.UnsupportedMedia, "not-supported", "content-type-unsupported", "the body must be FHIR JSON: application/fhir+json (or application/json, application/json+fhir, text/json)")
	errCharset         = outcome.New(outcome.UnsupportedMedia, "not-supported", "content-type-unsupported", "the body must be UTF-8 (charset=utf-8, or no charset): JSON is UTF-8")
	errContentEncoding = outcome.New(outcome.UnsupportedMedia, "not-supported", "content-encoding-unsupported",
		"the gateway reads request bodies without a Content-Encoding (gzip and the others are not supported): send the body as it is")
	errPatchContentType = outcome.New(outcome.UnsupportedMedia, "not-supported", "content-type-unsupported",
		"a PATCH body must be application/json-patch+json (a JSON Patch) or application/fhir+json (a FHIRPath Patch: a Parameters resource; "+
			"application/json and application/json+fhir are read as either, by the body)")
	errFormat = outcome.New(outcome.NotAcceptable, "not-supported", "format-unsupported", "only JSON is supported (_format=json)")
	errAccept = outcome.New(outcome.NotAcceptable, "not-supported", "format-unsupported", "only FHIR JSON is available: accept application/fhir+json (or application/json, text/json)")
	// The fhirVersion media type parameter (http.html#version-parameter)
	// naming another FHIR version than R4, in Accept or _format (406) or
	// in a body's Content-Type (415).
	errAcceptVersion = outcome.New(outcome.NotAcceptable, "not-supported", "fhir-version-unsupported",
		"only FHIR R4 is available: accept application/fhir+json without fhirVersion or with fhirVersion=4.0")
	errFormatVersion = outcome.New(outcome.NotAcceptable, "not-supported", "fhir-version-unsupported",
		"only FHIR R4 is available: give _format=json, or a fhirVersion of 4.0")
	errContentVersion = outcome.New(outcome.UnsupportedMedia, "not-supported", "fhir-version-unsupported",
		"the gateway reads FHIR R4 only: send the body as application/fhir+json without fhirVersion or with fhirVersion=4.0")
	errAuthNotEnabled     = outcome.New(outcome.NotFound, "not-found", "auth-not-configured", "this gateway runs in development mode without authentication")
	errConformanceUnknown = outcome.New(outcome.NotFound, "not-found", "resource-unknown",
		"without a database the gateway serves only its own conformance resources, and none with this type and id")
	errSearchFormType = outcome.New(outcome.UnsupportedMedia, "not-supported", "content-type-unsupported",
		"a POST search's body must be application/x-www-form-urlencoded (name=value&...), or empty with the "+
			"parameters in the URL")
	errSearchFormTooLarge = outcome.New(outcome.TooLarge, "too-costly", "search-form-too-large",
		"the search form exceeds 64 KiB; a search is a query string, not a document")
	errURITooLong = outcome.New(outcome.URITooLong, "too-long", "request-target-too-long",
		"the request's URL is longer than the gateway reads (64 KiB): send a long search as POST [base]/[type]/_search "+
			"with the parameters in an application/x-www-form-urlencoded body")
	errHeadTooLarge = outcome.New(outcome.HeadTooLarge, "too-long", "request-head-too-large",
		"the request's header fields are larger than the gateway reads (64 KiB in all): send fewer or shorter headers")
	errFramingAmbiguous = outcome.New(outcome.Invalid, "structure", "request-framing-ambiguous",
		"the request has both Content-Length and Transfer-Encoding; send one of them")
	errAuthorizationRepeated = outcome.New(outcome.Invalid, "security", "authorization-repeated",
		"the request has more than one Authorization header; send exactly one")
	// headerRepeated refuses a request that sends a header of
	// singleHeaders more than once (its name is the gateway's, not the
	// request's text).
	headerRepeated = func(name string) error {
		return outcome.New(outcome.Invalid, "structure", "header-repeated",
			"the request has more than one "+name+" header, which takes one value: send it once")
	}
	// errAuditUnavailable replaces an answer whose AuditEvent could not be
	// written (auditRequests, auditNow).
	errAuditUnavailable = &outcome.Error{Kind: outcome.Unavailable, RetryAfter: 5, Issues: []outcome.Issue{{Severity: "error",
		Code: "transient", Rule: "audit-unavailable", Message: "the request could not be audited and was not answered; retry later"}}}
	// errBusy is the answer when the gateway is at its concurrency bound.
	errBusy = &outcome.Error{Kind: outcome.Unavailable, RetryAfter: 1, Issues: []outcome.Issue{{Severity: "error", Code: "transient",
		Rule: "server-busy", Message: "the gateway is at its concurrency limit; retry shortly"}}}
)

// maxSearchForm bounds the body of POST /fhir/{type}/_search, as
// MaxHeaderBytes bounds a query string in the URL.
const maxSearchForm = 64 << 10

// tooManyRequests is a Throttled error with Retry-After.
func tooManyRequests(wait time.Duration) error {
	secs := max(int(math.Ceil(wait.Seconds())), 1)
	return &outcome.Error{Kind: outcome.Throttled, RetryAfter: secs, Issues: []outcome.Issue{{Severity: "error", Code: "throttled",
		Rule: "rate-limited", Message: "too many requests; retry after " + strconv.Itoa(secs) + " s"}}}
}

// paramInvalid is an Invalid error for a query parameter the edge parses.
// bodyTooLargeHint says what to do with a JSON body over --max-body.
const bodyTooLargeHint = "a native record is far smaller (at most 10,000 JSON values): send one record per request, " +
	"and many records as NDJSON to POST /ingest/{kind}/$import or with the import command; split a larger FHIR Bundle"

// bodyTooLarge refuses a body over limit bytes (413), saying the limit,
// the serve flag that sets it and what to do (hint).
func bodyTooLarge(limit int64, flag, hint string) error {
	return outcome.New(outcome.TooLarge, "too-costly", "body-too-large", fmt.Sprintf("the request body is larger than "+
		"this gateway's limit of %s (serve %s): %s", search.Bytes(limit), flag, hint))
}

// paramUnknown refuses a query parameter an endpoint does not take
// (known are those it takes): named when it is one of them spelt otherwise
// (dryrun, dry_run; recordId, as the answers name the record parameter's
// value: an EHR review), else not repeated, as a made-up name never is
// (docs/security.md).
func paramUnknown(name string, known []string) error {
	fold := func(s string) string { return strings.ToLower(strings.NewReplacer("_", "", "-", "").Replace(s)) }
	msg := fmt.Sprintf("a query parameter this endpoint does not take was sent, and nothing was done; it takes %s",
		strings.Join(known, ", "))
	for _, k := range known {
		if f := fold(name); fold(k) == f || fold(k)+"id" == f && !slices.Contains(known, k+"Id") {
			msg = fmt.Sprintf("a query parameter is spelt %s (names are case-sensitive), and nothing was done", k)
		}
	}
	return outcome.New(outcome.Invalid, "not-supported", "parameter-unknown", msg)
}

// queryParams refuses any query parameter but known (paramUnknown), and
// one of them given twice: a misspelt or repeated dryRun must never store
// a record.
func queryParams(c echo.Context, known ...string) error {
	q := c.QueryParams()
	names := slices.Sorted(maps.Keys(q))
	for _, name := range names {
		if !slices.Contains(known, name) {
			return paramUnknown(name, known)
		}
	}
	for _, name := range names {
		if len(q[name]) > 1 {
			return outcome.New(outcome.Invalid, "invalid", "parameter-invalid",
				name+" is given more than once; give it once").At(name)
		}
	}
	return nil
}

func paramInvalid(msg string) error {
	return outcome.New(outcome.Invalid, "invalid", "parameter-invalid", msg)
}

// exportPath reports whether the segments of a path below /fhir/ are a
// bulk export's kick-off: $export, Patient/$export, Group/{id}/$export.
func exportPath(segs []string) bool {
	switch len(segs) {
	case 1:
		return segs[0] == "$export"
	case 2:
		return segs[0] == "Patient" && segs[1] == "$export"
	case 3:
		return segs[0] == "Group" && segs[1] != "" && segs[2] == "$export"
	}
	return false
}

// fromEchoError converts echo's routing errors of request r.
func fromEchoError(he *echo.HTTPError, r *http.Request) error {
	switch he.Code {
	case http.StatusNotFound:
		return errRouteUnknown
	case http.StatusMethodNotAllowed:
		if strings.HasPrefix(r.URL.Path, "/fhir/") && strings.Contains(r.URL.Path, "//") {
			// An empty segment (/fhir/Patient//x) is no FHIR URL, whatever
			// route the router took it for (fhirPath).
			return errRouteUnknown
		}
		if p := strings.TrimSuffix(r.URL.Path, "/"); p == "/fhir" && (r.Method == http.MethodGet || r.Method == http.MethodHead) {
			return errSystemSearchMethod
		}
		rest, _ := strings.CutPrefix(r.URL.Path, "/fhir/")
		segs := strings.Split(rest, "/")
		switch {
		case !strings.HasPrefix(r.URL.Path, "/fhir/"):
		case exportPath(segs):
			return errExportMethod
		case len(segs) == 1 && segs[0] == "metadata":
			return errMetadataMethod
		case r.Method == http.MethodDelete && len(segs) == 1 && !strings.HasPrefix(segs[0], "_") && !strings.HasPrefix(segs[0], "$"):
			return errConditionalDelete
		case segs[len(segs)-1] == "$validate":
			return errValidateMethod
		case strings.HasPrefix(segs[len(segs)-1], "$") && !slices.Contains([]string{"$everything", "$export"}, segs[len(segs)-1]):
			// An operation the gateway does not have there (POST
			// /fhir/Patient/{id}/$nope), which the router took for a
			// compartment's type: the GET's answer, not "use GET".
			return errOperationUnknown
		}
		return errMethod
	case http.StatusRequestEntityTooLarge:
		return errBodyTooLarge
	}
	kinds := map[int]outcome.Kind{http.StatusUnauthorized: outcome.Unauthorized, http.StatusForbidden: outcome.Forbidden,
		http.StatusNotAcceptable: outcome.NotAcceptable, http.StatusConflict: outcome.Conflict,
		http.StatusUnsupportedMediaType: outcome.UnsupportedMedia, http.StatusTooManyRequests: outcome.Throttled}
	switch kind, ok := kinds[he.Code]; {
	case ok:
		return outcome.New(kind, "invalid", "http-error", http.StatusText(he.Code))
	case he.Code >= 400 && he.Code < 500:
		return outcome.New(outcome.Invalid, "invalid", "http-error", http.StatusText(he.Code))
	default:
		return fmt.Errorf("echo error %d", he.Code)
	}
}
