package gateway

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/outcome"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
)

// The failures only the HTTP edge can find: the request's shape, media
// types, limits. Everything else comes classified from the application.
var (
	errRouteUnknown     = outcome.New(outcome.NotFound, "not-found", "route-unknown", "no such endpoint")
	errMethod           = outcome.New(outcome.MethodNotAllowed, "not-supported", "method-not-allowed", "this endpoint does not support the method")
	errBodyTooLarge     = outcome.New(outcome.TooLarge, "too-costly", "body-too-large", "the request body exceeds the size limit")
	errBodyUnreadable   = outcome.New(outcome.Invalid, "structure", "body-unreadable", "the request body could not be read")
	errContentType      = outcome.New(outcome.UnsupportedMedia, "not-supported", "content-type-unsupported", "the body must be application/json or application/fhir+json")
	errPatchContentType = outcome.New(outcome.UnsupportedMedia, "not-supported", "content-type-unsupported",
		"a PATCH body must be application/json-patch+json (a JSON Patch) or application/fhir+json (a FHIRPath Patch: a Parameters resource)")
	errFormat             = outcome.New(outcome.NotAcceptable, "not-supported", "format-unsupported", "only JSON is supported (_format=json)")
	errAccept             = outcome.New(outcome.NotAcceptable, "not-supported", "format-unsupported", "only application/fhir+json is available")
	errAuthNotEnabled     = outcome.New(outcome.NotFound, "not-found", "auth-not-configured", "this gateway runs in development mode without authentication")
	errConformanceUnknown = outcome.New(outcome.NotFound, "not-found", "resource-unknown",
		"without a database the gateway serves only its own conformance resources, and none with this type and id")
	errSearchFormType = outcome.New(outcome.UnsupportedMedia, "not-supported", "content-type-unsupported",
		"a POST search's body must be application/x-www-form-urlencoded (name=value&...), or empty with the "+
			"parameters in the URL")
	errSearchFormTooLarge = outcome.New(outcome.TooLarge, "too-costly", "search-form-too-large",
		"the search form exceeds 64 KiB; a search is a query string, not a document")
	errFramingAmbiguous = outcome.New(outcome.Invalid, "structure", "request-framing-ambiguous",
		"the request has both Content-Length and Transfer-Encoding; send one of them")
	errAuthorizationRepeated = outcome.New(outcome.Invalid, "security", "authorization-repeated",
		"the request has more than one Authorization header; send exactly one")
	// errAuditUnavailable replaces an answer whose AuditEvent could not be
	// written (auditRequests, auditNow).
	errAuditUnavailable = &outcome.Error{Kind: outcome.Unavailable, RetryAfter: 5, Issues: []outcome.Issue{{Severity: "fatal",
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
func paramInvalid(msg string) error {
	return outcome.New(outcome.Invalid, "invalid", "parameter-invalid", msg)
}

// fromEchoError converts echo's routing errors.
func fromEchoError(he *echo.HTTPError) error {
	switch he.Code {
	case http.StatusNotFound:
		return errRouteUnknown
	case http.StatusMethodNotAllowed:
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

// errorClass describes an error without its text: the sentinel errors it
// wraps and the Go types along its chain (types carry no values).
func errorClass(err error) string {
	var parts []string
	for _, sentinel := range []error{store.ErrUnavailable, store.ErrConflict, store.ErrNotFound, store.ErrGone,
		store.ErrCorruptBody, context.Canceled, context.DeadlineExceeded} {
		if errors.Is(err, sentinel) {
			parts = append(parts, sentinel.Error())
		}
	}
	var types []string
	for e := err; e != nil && len(types) < 8; e = errors.Unwrap(e) {
		types = append(types, fmt.Sprintf("%T", e))
	}
	parts = append(parts, strings.Join(types, " > "))
	return strings.Join(parts, "; ")
}
