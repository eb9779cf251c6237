package gateway

import (
	"bytes"
	"fmt"
	"log/slog"
	"mime"
	"net/http"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/audit"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/auditlog"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/auth"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/console"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/engine"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/fhirwire"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/outcome"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/telemetry"
)

// logRequests writes one structured line per request: the route template
// (never the raw URL, which may carry identifiers in its query), the status
// and the duration.
func (s *Server) logRequests(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		start := time.Now()
		err := next(c)
		if err != nil {
			c.Error(err)
		}
		attrs := []any{"method", c.Request().Method, "route", c.Path(), "status", c.Response().Status,
			"bytes", c.Response().Size, "duration_ms", float64(time.Since(start).Microseconds()) / 1000}
		if rules := scopeOf(c).Rules; len(rules) > 0 {
			// The rule ids a rejected request broke: fixed strings of the
			// gateway, never request content.
			attrs = append(attrs, "rules", strings.Join(rules, ","))
		}
		if class, ok := c.Get(errorClassKey).(string); ok {
			// Why a 5xx was answered (ErrorClass: no error text).
			attrs = append(attrs, "error_class", class)
		}
		s.log.Log(c.Request().Context(), requestLevel(c.Response().Status), "request", attrs...)
		return nil
	}
}

// requestLevel is the level of a request's line: the gateway's own
// failures (5xx: the store unavailable, a timeout, a bug) at WARN and 500
// at ERROR, so that an operator filtering by level sees them; client
// mistakes and successes at INFO.
func requestLevel(status int) slog.Level {
	switch {
	case status == http.StatusInternalServerError:
		return slog.LevelError
	case status >= 500:
		return slog.LevelWarn
	}
	return slog.LevelInfo
}

// routeTemplate tells the tracing layer the matched route template, which
// names the server span (never the raw path, which may carry ids).
func (s *Server) routeTemplate(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		telemetry.SetRoute(c.Request().Context(), c.Path())
		return next(c)
	}
}

// recoverPanics turns a panic into a 500 OperationOutcome. The panic value
// is not logged (it may hold request data); the stack is.
func (s *Server) recoverPanics(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) (err error) {
		defer func() {
			if r := recover(); r != nil {
				if r == http.ErrAbortHandler {
					panic(r)
				}
				s.log.Error("panic", "route", c.Path(), "stack", string(debug.Stack()))
				err = fmt.Errorf("panic in handler for %s", c.Path())
			}
		}()
		return next(c)
	}
}

// fhirFormat enforces FHIR content negotiation: JSON only. An explicit
// _format or Accept that excludes JSON gets 406; one that asks for a
// generic JSON type (application/json, text/json) has the answer labelled
// with it (formatKey, http.html#mime). Before that, a FHIR request's query
// string must decode (engine.ParseQuery): echo would drop a malformed
// parameter silently.
func (s *Server) fhirFormat(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		if err := fhirPath(c); err != nil {
			return err
		}
		if err := operationOrMetadata(c); err != nil {
			return err
		}
		if r := c.Request(); strings.HasPrefix(c.Path(), "/fhir") && r.URL.RawQuery != "" {
			typ := c.Param("type")
			if comp := c.Param("compartment"); comp != "" {
				typ = comp
			}
			if _, err := engine.ParseQuery(typ, r.URL.RawQuery); err != nil {
				return err
			}
		}
		// _format overrides Accept (http.html#mime: for a client that
		// cannot set the header, such as a browser). The answer's media
		// type depends on Accept: a cache must not give one client's to
		// another.
		c.Response().Header().Add("Vary", "Accept")
		if f := c.QueryParam("_format"); f != "" {
			if err := useFormat(c, f); err != nil {
				return err
			}
		} else if a := strings.Join(c.Request().Header.Values("Accept"), ", "); rawBinaryRead(c, a) {
			c.Set(rawKey, a) // the Binary's own content (respondRead)
		} else if a != "" {
			mt, err := negotiate(a)
			if err != nil {
				return err
			}
			c.Set(formatKey, mt)
		}
		return next(c)
	}
}

// fhirPath refuses a path that is not a FHIR URL although a route took
// it: the router gives a route's last parameter the rest of the path
// (/fhir/Patient/x/_history/1/extra: version "1/extra") and an empty
// segment an empty parameter (/fhir/Patient//x); and metadata has no
// segment below it. Such a path is route-unknown, as /fhir/Patient/x/ is,
// never "no such resource" or "no such version", which would tell a client
// with a URL-building bug that the resource or version does not exist. A
// version id the gateway never issues in that form (01, +1) is the
// engine's to answer (vread): no such version of a resource that exists.
func fhirPath(c echo.Context) error {
	values := c.ParamValues()
	for i := range c.ParamNames() {
		if i >= len(values) {
			break
		}
		v := values[i]
		if v == "" || strings.Contains(v, "/") {
			return errRouteUnknown
		}
	}
	if c.Param("type") == "metadata" && c.Param("id") != "" {
		return errRouteUnknown
	}
	return nil
}

// operationOrMetadata refuses what a route's parameters took for a type,
// an id or a compartment but is an operation ("$name") the gateway does
// not have there, the capability statement ("metadata") asked with
// another method than GET, a type's _search asked with another method
// than POST, $validate asked with another method than POST, or a search
// of all types (/fhir/_search): a 404 naming the
// operations there are (never the name sent), or a 405 with Allow, instead
// of "no such resource" or "not a FHIR R4 resource type".
func operationOrMetadata(c echo.Context) error {
	if r := c.Request(); r.Method != http.MethodGet && exportPath(strings.Split(strings.TrimPrefix(r.URL.Path, "/fhir/"), "/")) {
		// POST /fhir/$export (or DELETE /fhir/Patient/$export...), which a
		// route took for a type or an id: the kick-off is a GET.
		return errExportMethod
	}
	for _, name := range []string{"type", "id", "compartment"} {
		if v := c.Param(name); strings.HasPrefix(v, "$") {
			if v == "$validate" && strings.HasSuffix(c.Path(), "/:"+name) {
				// $validate where the gateway has it (the URL's last
				// segment), asked with GET, HEAD, PUT...: only the method
				// is wrong.
				return errValidateMethod
			}
			return errOperationUnknown
		}
	}
	switch {
	case c.Param("type") == "metadata":
		return errMetadataMethod
	case c.Param("type") == "_search":
		return errSystemSearch
	case c.Param("id") == "_search" && c.Path() == "/fhir/:type/:id":
		return errSearchMethod
	}
	return nil
}

// answerTypes are the media types the gateway answers FHIR JSON with, in
// its order of preference: application/fhir+json, and the generic JSON
// types a client may ask for instead (http.html#mime: "If a client
// provides a generic mime type in the Accept header (application/xml,
// text/json, or application/json), the server SHOULD respond with the
// requested mime type").
var answerTypes = []string{"application/fhir+json", "application/json", "text/json"}

// negotiate picks the media type of the answer to an Accept header: of
// answerTypes, the one with the highest q above 0, each taking its q from
// the most specific range that names it (the type, type/*, */*: RFC 9110
// 12.5.1), the gateway's order of preference between equals; a range
// whose fhirVersion is not R4's (http.html#version-parameter) names none.
// So application/fhir+json;q=0 refuses that type, and an answer may still
// be application/json or text/json where another range takes them. None:
// 406, errAcceptVersion when a JSON range was refused only for its
// fhirVersion, errAccept otherwise. application/json+fhir (the type
// before R4) is application/fhir+json.
func negotiate(accept string) (string, error) {
	type match struct {
		specificity int // 3 the type, 2 type/*, 1 */*; 0 no range names it
		q           float64
	}
	best := make([]match, len(answerTypes))
	version := false
	for part := range strings.SplitSeq(accept, ",") {
		mt, params, err := mime.ParseMediaType(strings.TrimSpace(part))
		if err != nil {
			continue
		}
		if mt == "application/json+fhir" {
			mt = "application/fhir+json"
		}
		q := 1.0
		if v, err := strconv.ParseFloat(params["q"], 64); err == nil { // a malformed q is ignored
			q = v
		}
		if v, has := params["fhirversion"]; has && !fhirwire.R4Version(v) {
			for _, t := range answerTypes {
				version = version || q > 0 && mediaRangeSpecificity(mt, t) > 0
			}
			continue
		}
		for i, t := range answerTypes {
			if sp := mediaRangeSpecificity(mt, t); sp > best[i].specificity {
				best[i] = match{sp, q}
			}
		}
	}
	chosen, q := -1, 0.0
	for i, m := range best {
		if m.specificity > 0 && m.q > q {
			chosen, q = i, m.q
		}
	}
	switch {
	case chosen >= 0:
		return answerTypes[chosen], nil
	case version:
		return "", errAcceptVersion
	}
	return "", errAccept
}

// mediaRangeSpecificity says how specifically the media range r of an
// Accept header names the media type t: 3 it is t, 2 t's type/*, 1 */*, 0
// it does not name t.
func mediaRangeSpecificity(r, t string) int {
	typ, _, _ := strings.Cut(t, "/")
	switch r {
	case t:
		return 3
	case typ + "/*":
		return 2
	case "*/*":
		return 1
	}
	return 0
}

// scopeKey is the echo context key of the request's *auditlog.Scope: the
// edge creates it once per request and passes it explicitly to every
// application call.
const scopeKey = "kg.scope"

// errorClassKey holds the ErrorClass of the error a request was answered
// a 5xx for, which its log line carries.
const errorClassKey = "kg.errorClass"

// scopeOf returns the request's scope (an unaudited one for a request the
// audit middleware did not see, so handlers never check).
func scopeOf(c echo.Context) *auditlog.Scope {
	if sc, ok := c.Get(scopeKey).(*auditlog.Scope); ok {
		return sc
	}
	sc := &auditlog.Scope{}
	c.Set(scopeKey, sc)
	return sc
}

// auditRequests guarantees the request's one AuditEvent. A request that
// wrote data has it committed with the data (by the engine); any other
// (a read, a search, a failure) gets it appended here before the answer
// leaves: the response is buffered and, when the audit cannot be written,
// replaced by a 503.
func (s *Server) auditRequests(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		rt := s.routeOf(c)
		interaction := "unknown-endpoint"
		switch {
		case rt != nil:
			interaction = rt.interaction
		case c.Request().Method == http.MethodOptions && len(s.allowed(c)) > 0:
			// The router's answer of the methods a served path allows (a
			// CORS preflight among them): no unknown endpoint (an
			// auditor's review: a 204 was filed as one).
			interaction = "options"
		}
		sc := scopeOf(c)
		sc.Base = s.baseURL(c)
		sc.AuthRequired = s.cfg.Auth != nil
		if !s.app.Audit.Enabled() || (rt != nil && rt.exempt) {
			return next(c)
		}
		s.requestFacts(c, sc)
		if rt != nil && rt.console {
			// The console audits each page itself, from these facts.
			c.SetRequest(c.Request().WithContext(console.WithScope(c.Request().Context(), sc)))
			return next(c)
		}
		sc.Interaction = interaction
		if s.app.Engine != nil {
			if typ, id, ok := s.app.Engine.Target(c.Param("type"), c.Param("id")); ok {
				sc.Target = audit.Entity{Type: typ, ID: id}
			}
		}
		res := c.Response()
		buf := &bufferedWriter{ResponseWriter: res.Writer}
		res.Writer = buf
		if err := next(c); err != nil {
			c.Error(err)
		}
		res.Writer = buf.ResponseWriter
		if !sc.Committed() {
			if err := s.app.Audit.Append(sc, res.Status); err != nil {
				class := store.ErrorClass(err)
				s.log.Log(c.Request().Context(), store.LogLevel(err), "audit write failed", "route", c.Path(),
					"method", c.Request().Method, "status", res.Status, "error_class", class)
				if slices.Contains(sc.Rules, outcome.RuleStoreBusy) || slices.Contains(sc.Rules, outcome.RuleStoreUnavailable) ||
					rt != nil && rt.disclosesNothing && res.Status < 400 {
					// A refusal for back-pressure, or for a database
					// that is not there, disclosed nothing and wrote
					// nothing (a write's data commits with its
					// AuditEvent): its answer leaves as it is, not
					// blamed on the audit trail (docs/audit.md); so
					// does an answer that discloses nothing (the
					// CapabilityStatement: route.disclosesNothing).
					buf.flush()
					return nil
				}
				// The answer must not leave unaudited: replace it.
				c.Set(errorClassKey, class)
				sc.Rules = []string{errAuditUnavailable.Issues[0].Rule}
				h := buf.Header()
				for _, k := range []string{"ETag", "Last-Modified", "Location", "Content-Length"} {
					h.Del(k)
				}
				h.Set("Content-Type", contentType(c))
				h.Set("Retry-After", strconv.Itoa(errAuditUnavailable.RetryAfter))
				res.Status = http.StatusServiceUnavailable
				buf.ResponseWriter.WriteHeader(http.StatusServiceUnavailable)
				body, _ := fhirwire.Marshal(outcome.Resource(errAuditUnavailable.Issues))
				n, _ := buf.ResponseWriter.Write(body)
				res.Size = int64(n) // the answer sent, not the one withheld
				return nil
			}
		}
		buf.flush()
		return nil
	}
}

// auditNow commits the request's AuditEvent, with status, before a
// streaming handler writes its answer, and lets the answer bypass
// auditRequests' buffer: it must not leave unaudited, and is not held back
// whole. An answer the handler gives instead (an error before it streams)
// is buffered and audited like any other.
func (s *Server) auditNow(c echo.Context, status int) error {
	sc := scopeOf(c)
	if s.app.Audit.Enabled() && sc.Interaction != "" && !sc.Committed() {
		if err := s.app.Audit.Append(sc, status); err != nil {
			s.log.Log(c.Request().Context(), store.LogLevel(err), "audit write failed", "route", c.Path(),
				"method", c.Request().Method, "status", status, "error_class", store.ErrorClass(err))
			return errAuditUnavailable
		}
		sc.MarkCommitted()
	}
	if b, ok := c.Response().Writer.(*bufferedWriter); ok {
		c.Response().Writer = b.ResponseWriter
	}
	return nil
}

// requestFacts reads the request's facts into its scope once: the client
// address, the trace and the request id (minted when the caller sent
// none).
func (s *Server) requestFacts(c echo.Context, sc *auditlog.Scope) {
	if c.Response().Header().Get(telemetry.RequestIDHeader) == "" {
		c.Response().Header().Set(telemetry.RequestIDHeader, store.NewID())
	}
	sc.Addr, sc.TraceID = c.RealIP(), telemetry.TraceID(c.Request().Context())
	sc.RequestID = c.Response().Header().Get(telemetry.RequestIDHeader)
}

// bufferedWriter holds a response until its audit record is committed.
type bufferedWriter struct {
	http.ResponseWriter
	status int
	body   bytes.Buffer
}

func (b *bufferedWriter) WriteHeader(code int) {
	if b.status == 0 {
		b.status = code
	}
}

func (b *bufferedWriter) Write(p []byte) (int, error) {
	if b.status == 0 {
		b.status = http.StatusOK
	}
	return b.body.Write(p)
}

// Flush is a no-op: nothing leaves before the audit commits.
func (b *bufferedWriter) Flush() {}

// Unwrap lets http.ResponseController reach the connection.
func (b *bufferedWriter) Unwrap() http.ResponseWriter { return b.ResponseWriter }

// flush sends the held response.
func (b *bufferedWriter) flush() {
	if b.status == 0 {
		return
	}
	b.ResponseWriter.WriteHeader(b.status)
	_, _ = b.ResponseWriter.Write(b.body.Bytes())
}

// singleHeaders are the request headers that take one value and are not
// lists (RFC 9110 5.3): sent twice, which one a proxy read is unknown, and
// the second would have been ignored (a conditional create's criteria,
// the body's media type).
var singleHeaders = []string{"Content-Type", "If-None-Exist", "If-Unmodified-Since", "If-Modified-Since"}

// checkRequest refuses a request whose head was too long for the server
// (marked by Listener, see maxHeadBytes), and requests whose meaning could differ between the
// gateway and a proxy in front of it: both Content-Length and
// Transfer-Encoding (marked by Listener; the connection is closed after
// the answer, since where the body ends is in doubt), and more than one
// Authorization header (which one a proxy checked is unknown), or of a
// header that takes one value (singleHeaders); and bodies
// with a Content-Encoding, which would otherwise be read as they are
// (a gzip body was a JSON syntax error).
func (s *Server) checkRequest(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		h := c.Request().Header
		if _, ok := h[framingHeader]; ok {
			c.Response().Header().Set("Connection", "close")
			return errFramingAmbiguous
		}
		if v, ok := h[headTooLongHeader]; ok {
			c.Response().Header().Set("Connection", "close")
			if len(v) == 1 && v[0] == "target" {
				return errURITooLong
			}
			return errHeadTooLarge
		}
		if len(h.Values("Authorization")) > 1 {
			return errAuthorizationRepeated
		}
		for _, name := range singleHeaders {
			if len(h.Values(name)) > 1 {
				return headerRepeated(name)
			}
		}
		for _, ce := range h.Values("Content-Encoding") {
			for _, coding := range strings.Split(ce, ",") {
				if coding = strings.TrimSpace(coding); coding != "" && !strings.EqualFold(coding, "identity") {
					// RFC 9110 15.5.16: 415, saying which codings it takes.
					c.Response().Header().Set("Accept-Encoding", "identity")
					return errContentEncoding
				}
			}
		}
		return next(c)
	}
}

// devPrincipal is the caller in development mode.
var devPrincipal = &auth.Principal{Scopes: auth.ParseScopes("system/*.cruds " + auth.ScopeIngest + " " + auth.ScopeOperator)}

// authenticate resolves the caller of every non-public route; a failure is
// a 401 (or 503) answered, and audited, like any error.
func (s *Server) authenticate(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		rt := s.routeOf(c)
		if rt == nil && s.cfg.Auth != nil {
			// No route: the answer is 404 or 405 (with Allow), which
			// reveals nothing a caller must authenticate for, so no token
			// is required; but a valid one names its client in the
			// request's AuditEvent (a credential probing /admin paths is
			// what an audit must attribute), and a refused one the client
			// it claimed, as a 401 does.
			if h := c.Request().Header.Get("Authorization"); h != "" {
				sc := scopeOf(c)
				if p, fail := s.cfg.Auth.Authenticate(c.Request().Context(), h); fail == nil {
					sc.SetPrincipal(p)
				} else {
					sc.ClientID = fail.ClientID
					if fail.Issuer != "" {
						sc.ClientID = fail.Issuer + auth.KeySeparator + fail.ClientID
					}
				}
			}
			return next(c)
		}
		if rt == nil || rt.public || rt.console {
			// Public, or no route (development mode): the console signs
			// its people in itself.
			return next(c)
		}
		sc := scopeOf(c)
		if s.cfg.Auth == nil {
			sc.Principal = devPrincipal
			return next(c)
		}
		p, fail := s.cfg.Auth.Authenticate(c.Request().Context(), c.Request().Header.Get("Authorization"))
		if fail != nil {
			sc.ClientID = fail.ClientID
			if fail.Issuer != "" {
				// The issuer's client (auth.Principal.Key).
				sc.ClientID = fail.Issuer + auth.KeySeparator + fail.ClientID
			}
			return fail
		}
		sc.SetPrincipal(p)
		if s.clientLimiter != nil {
			if ok, wait := s.clientLimiter.Allow("client:"+p.Key(), time.Now()); !ok {
				return tooManyRequests(wait)
			}
		}
		return next(c)
	}
}

// requireScope checks a gateway scope (ingest, operator, auditor); the
// operator's scope grants the auditor's reads too. A refusal names the
// scope the route needs.
func requireScope(name string) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			p := scopeOf(c).Principal
			if p == nil || !(p.Scopes.Has(name) || name == auth.ScopeAuditor && p.Scopes.Has(auth.ScopeOperator)) {
				id := ""
				if p != nil {
					id = p.ClientID
				}
				return auth.InsufficientScope(id, name)
			}
			return next(c)
		}
	}
}

// limitIP applies the per-address rate limit to every request but the
// health probes, before authentication (so a flood of bad tokens is
// limited too).
func (s *Server) limitIP(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		if p := c.Path(); s.ipLimiter == nil || p == "/healthz" || p == "/readyz" {
			return next(c)
		}
		if ok, wait := s.ipLimiter.Allow("ip:"+c.RealIP(), time.Now()); !ok {
			return tooManyRequests(wait)
		}
		return next(c)
	}
}

// boundConcurrency answers 503 when MaxInFlight requests are already being
// served and no slot frees within a short wait.
func (s *Server) boundConcurrency(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		if p := c.Path(); p == "/healthz" {
			return next(c)
		}
		select {
		case s.inFlight <- struct{}{}: // the usual case: a free slot, no timer
		default:
			t := time.NewTimer(250 * time.Millisecond)
			defer t.Stop()
			select {
			case s.inFlight <- struct{}{}:
			case <-t.C:
				return errBusy
			case <-c.Request().Context().Done():
				return errBusy
			}
		}
		defer func() { <-s.inFlight }()
		return next(c)
	}
}

// readOnlyOptions answers an OPTIONS of the type or an instance of a type
// clients may not write (AuditEvent, the published conformance resources)
// with the methods it supports, GET and HEAD, where the router lists
// every method of the route template (a conformance review: OPTIONS of a
// ValueSet listed PUT, PATCH and DELETE, which it refuses).
func (s *Server) readOnlyOptions(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		// The router gives an OPTIONS no parameters: the type is the
		// path's second segment.
		if c.Request().Method == http.MethodOptions && (c.Path() == "/fhir/:type" || c.Path() == "/fhir/:type/:id") &&
			!engine.ClientWritable(strings.Split(strings.TrimPrefix(c.Request().URL.Path, "/fhir/"), "/")[0]) {
			allow := strings.Join(append([]string{http.MethodOptions}, engine.ReadOnlyMethods...), ", ")
			c.Response().Before(func() { c.Response().Header().Set("Allow", allow) })
		}
		return next(c)
	}
}

// useFormat makes f, a _format value (in the URL, or in a POST _search's
// form body, which means what the URL would: search.html), the answer's
// media type, overriding Accept.
func useFormat(c echo.Context, f string) error {
	mt, ok := fhirwire.FormatMediaType(f)
	if !ok {
		return errFormat
	}
	if v, ok := fhirwire.FHIRVersion(f); ok && !fhirwire.R4Version(v) {
		return errFormatVersion
	}
	c.Set(formatKey, mt)
	return nil
}
