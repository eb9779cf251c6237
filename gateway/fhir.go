package gateway

import (
	"context"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/engine"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/fhirwire"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/outcome"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/telemetry/stage"
)

// The FHIR R4 RESTful API (http.html): each handler reads the request's
// plain values, calls one engine method and writes its result.

// baseURL is the FHIR base the client used, for fullUrl and Location:
// worked out once a request (the audit middleware keeps it in the
// request's scope).
func (s *Server) baseURL(c echo.Context) string {
	if b := scopeOf(c).Base; b != "" {
		return b
	}
	if s.cfg.BaseURL != "" {
		return strings.TrimRight(s.cfg.BaseURL, "/")
	}
	return c.Scheme() + "://" + c.Request().Host + "/fhir"
}

// answer is how the client wants a write answered; the resources the
// answer may carry are the caller's to see (engine.Answer.Scope), also in
// an ingest's transaction-response.
func (s *Server) answer(c echo.Context) engine.Answer {
	ret, _ := preference(preferHeader(c), "return")
	return engine.Answer{Base: s.baseURL(c), Return: ret, Security: s.security(), Scope: scopeOf(c)}
}

// security is what the CapabilityStatement says of security.
func (s *Server) security() engine.Security {
	return engine.Security{Enabled: s.cfg.Auth != nil, TokenURL: s.cfg.AuthTokenURL, CORS: s.cors.enabled()}
}

// body reads the request body when the engine asks for it, in the
// fhir.decode stage.
func (s *Server) body(c echo.Context) engine.Body {
	return func() ([]byte, error) {
		var b []byte
		err := stage.Run(c.Request().Context(), s.tracer(), "fhir.decode", func(context.Context) error {
			var err error
			b, err = readBody(c, s.cfg.MaxBodyBytes)
			return err
		})
		return b, err
	}
}

// handleBundle is POST /fhir with a transaction or batch Bundle.
func (s *Server) handleBundle(c echo.Context) error {
	body, err := s.body(c)()
	if err != nil {
		return err
	}
	b, err := s.app.Engine.Bundle(c.Request().Context(), scopeOf(c), body, s.answer(c))
	if err != nil {
		return err
	}
	return writeResource(c, http.StatusOK, b)
}

// handleCreate is POST /fhir/{type}, honouring If-None-Exist.
func (s *Server) handleCreate(c echo.Context) error {
	res, err := s.app.Engine.Create(c.Request().Context(), scopeOf(c), c.Param("type"), s.body(c), preconditions(c))
	if err != nil {
		return err
	}
	return s.respondWrite(c, res)
}

// handleUpdate is PUT /fhir/{type}/{id}: update, or create with the
// client's id.
func (s *Server) handleUpdate(c echo.Context) error {
	res, err := s.app.Engine.Update(c.Request().Context(), scopeOf(c), c.Param("type"), c.Param("id"), s.body(c),
		preconditions(c))
	if err != nil {
		return err
	}
	return s.respondWrite(c, res)
}

// handleConditionalUpdate is PUT /fhir/{type}?criteria.
func (s *Server) handleConditionalUpdate(c echo.Context) error {
	res, err := s.app.Engine.ConditionalUpdate(c.Request().Context(), scopeOf(c), c.Param("type"), c.Request().URL.RawQuery,
		s.body(c), preconditions(c))
	if err != nil {
		return err
	}
	return s.respondWrite(c, res)
}

// preconditions are the conditional headers of a create, update, patch or delete
// (RFC 9110 13.1), for the engine to evaluate inside the write's
// transaction (and If-None-Exist, which only a create takes); a header
// sent on several lines is one list, and one sent with no value is named
// in Empty (never taken as absent). If-Modified-Since applies to GET and
// HEAD only (RFC 9110 13.1.3) and is not read here.
func preconditions(c echo.Context) engine.Preconditions {
	h := c.Request().Header
	var empty []string
	value := func(name string) string {
		vs := h.Values(name)
		v := strings.Join(vs, ", ")
		if len(vs) > 0 && strings.TrimSpace(v) == "" {
			empty = append(empty, name)
		}
		return v
	}
	p := engine.Preconditions{
		IfMatch:           value("If-Match"),
		IfNoneMatch:       value("If-None-Match"),
		IfUnmodifiedSince: value("If-Unmodified-Since"),
		IfNoneExist:       value("If-None-Exist"),
	}
	p.Empty = strings.Join(empty, ", ")
	return p
}

// handleDelete is DELETE /fhir/{type}/{id}.
func (s *Server) handleDelete(c echo.Context) error {
	res, err := s.app.Engine.Delete(c.Request().Context(), scopeOf(c), c.Param("type"), c.Param("id"), preconditions(c))
	if err != nil {
		return err
	}
	// The deletion's version: the one written, or the one that deleted
	// the resource before (the ETag a read's 410 carries).
	if r := res.Deleted(); r != nil {
		c.Response().Header().Set("ETag", fhirwire.ETag(r.Version))
	}
	return c.NoContent(http.StatusNoContent)
}

// handleRead is GET /fhir/{type}/{id}.
func (s *Server) handleRead(c echo.Context) error {
	r, err := s.app.Engine.Read(c.Request().Context(), scopeOf(c), c.Param("type"), c.Param("id"))
	if err != nil {
		if engine.IsGone(err) && r != nil {
			c.Response().Header().Set("ETag", fhirwire.ETag(r.Version))
		}
		return err
	}
	return s.respondRead(c, r, false)
}

// handleVRead is GET /fhir/{type}/{id}/_history/{vid}.
func (s *Server) handleVRead(c echo.Context) error {
	r, err := s.app.Engine.VRead(c.Request().Context(), scopeOf(c), c.Param("type"), c.Param("id"), c.Param("vid"))
	if err != nil {
		if engine.IsGone(err) && r != nil {
			c.Response().Header().Set("ETag", fhirwire.ETag(r.Version))
		}
		return err
	}
	return s.respondRead(c, r, true)
}

// respondRead answers a read or vread (version: the URL names r's
// version): 304 Not Modified with the version headers and no body when
// the client's copy is current (If-None-Match, If-Modified-Since:
// http.html#cread), else the resource, shaped by _summary or _elements.
// An If-Modified-Since date names a second, and versions are written
// milliseconds apart: a read whose date is r's second is 304 only when r
// is the only version written in it (engine.SoleIn); a vread's URL has
// only ever had r.
func (s *Server) respondRead(c echo.Context, r *store.Resource, version bool) error {
	h := c.Request().Header
	var since fhirwire.Since
	if v := h.Get("If-Modified-Since"); v != "" {
		t, _ := http.ParseTime(v) // an unreadable date is ignored (RFC 9110 13.1.3)
		since = fhirwire.HTTPDate(t)
	}
	sole := func() bool { return version || s.app.Engine.SoleIn(c.Request().Context(), scopeOf(c), r, since) }
	if fhirwire.NotModified(h.Get("If-None-Match"), since, r.Version, r.LastUpdated, sole) {
		setVersionHeaders(c, r)
		return c.NoContent(http.StatusNotModified)
	}
	if accept, ok := c.Get(rawKey).(string); ok && r.Type == "Binary" {
		return respondBinary(c, r, accept)
	}
	r, err := s.app.Engine.Subset(r, c.QueryParams())
	if err != nil {
		return err
	}
	return s.respondResource(c, http.StatusOK, r)
}

// handlePatch is PATCH /fhir/{type}/{id}: a JSON Patch
// (application/json-patch+json) or a FHIRPath Patch (a Parameters
// resource), honouring If-Match.
func (s *Server) handlePatch(c echo.Context) error {
	format, body := s.patchBody(c)
	res, err := s.app.Engine.Patch(c.Request().Context(), scopeOf(c), c.Param("type"), c.Param("id"), format, body,
		preconditions(c))
	if err != nil {
		return err
	}
	return s.respondWrite(c, res)
}

// handleConditionalPatch is PATCH /fhir/{type}?criteria.
func (s *Server) handleConditionalPatch(c echo.Context) error {
	format, body := s.patchBody(c)
	res, err := s.app.Engine.ConditionalPatch(c.Request().Context(), scopeOf(c), c.Param("type"), c.Request().URL.RawQuery,
		format, body, preconditions(c))
	if err != nil {
		return err
	}
	return s.respondWrite(c, res)
}

// patchBody reads a PATCH body: application/json-patch+json is a JSON
// Patch; a FHIR JSON body is a FHIRPath Patch (or a JSON Patch array).
func (s *Server) patchBody(c echo.Context) (engine.PatchFormat, engine.Body) {
	r := c.Request()
	mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	format, ok := engine.PatchFormatOf(mt)
	if !ok {
		return engine.PatchDetect, func() ([]byte, error) { return nil, errPatchContentType }
	}
	return format, func() ([]byte, error) {
		var b []byte
		err := stage.Run(r.Context(), s.tracer(), "fhir.decode", func(context.Context) error {
			var err error
			b, err = readBodyOf(c, s.cfg.MaxBodyBytes, mt)
			return err
		})
		return b, err
	}
}

// setVersionHeaders sets ETag and Last-Modified of a stored version.
func setVersionHeaders(c echo.Context, r *store.Resource) {
	h := c.Response().Header()
	h.Set("ETag", fhirwire.ETag(r.Version))
	h.Set("Last-Modified", r.LastUpdated.UTC().Format(http.TimeFormat))
}

// respondResource writes a stored resource with its version headers.
func (s *Server) respondResource(c echo.Context, status int, r *store.Resource) error {
	setVersionHeaders(c, r)
	return writeRaw(c, status, r.Body)
}

// respondWrite answers a create or update, honouring Prefer: return=.
func (s *Server) respondWrite(c echo.Context, res *engine.Result) error {
	r := res.Resource
	setVersionHeaders(c, r)
	c.Response().Header().Set("Location", fmt.Sprintf("%s/%s/%s/_history/%d", s.baseURL(c), r.Type, r.ID, r.Version))
	if res.Withheld {
		return writeResource(c, res.Status, outcome.Information("an existing resource matched the conditional "+
			"criteria; the access token's scopes do not allow reading it"))
	}
	switch preferReturn(preferHeader(c)) {
	case engine.ReturnMinimal:
		return c.NoContent(res.Status)
	case engine.ReturnOutcome:
		return writeResource(c, res.Status, engine.WriteOutcome(c.Request().Method, res, true))
	default:
		return writeRaw(c, res.Status, r.Body)
	}
}

// preferReturn reads the return= preference (http.html#ops).
func preferReturn(prefer string) string {
	if v, ok := preference(prefer, "return"); ok {
		return v
	}
	return "representation"
}

// preferLenient reports Prefer: handling=lenient.
func preferLenient(prefer string) bool {
	v, _ := preference(prefer, "handling")
	return v == "lenient"
}

// preferHeader is every Prefer header of the request, as one list.
func preferHeader(c echo.Context) string {
	return strings.Join(c.Request().Header.Values("Prefer"), ",")
}

// preference is the value of the preference name in a Prefer header (RFC
// 7240 §2: comma-separated "token [= word]", the token case-insensitive,
// whitespace allowed around "=", the word possibly quoted, parameters
// after ";" ignored); the first one given wins.
func preference(prefer, name string) (string, bool) {
	for _, p := range strings.Split(prefer, ",") {
		p, _, _ = strings.Cut(p, ";")
		k, v, _ := strings.Cut(p, "=")
		if strings.EqualFold(strings.TrimSpace(k), name) {
			return strings.Trim(strings.TrimSpace(v), `"`), true
		}
	}
	return "", false
}

// handleSearch is GET /fhir/{type}?params and POST /fhir/{type}/_search.
func (s *Server) handleSearch(c echo.Context) error {
	params := c.QueryParams()
	typ := c.Param("type")
	if c.Request().Method == http.MethodPost {
		form, err := searchForm(c, typ)
		if err != nil {
			return err
		}
		for k, vs := range form {
			params[k] = append(params[k], vs...)
		}
		if f, ok := form["_format"]; ok {
			// The form's _format means what the URL's does (a conformance
			// review: it was ignored, and the paging links repeated it).
			if len(params["_format"]) > 1 {
				return paramInvalid("_format is given more than once (in the URL and the form, or twice): give it once")
			}
			if err := useFormat(c, f[0]); err != nil {
				return err
			}
		}
	}
	res, err := s.app.Engine.Search(c.Request().Context(), scopeOf(c), typ, params, preferLenient(preferHeader(c)))
	if err != nil {
		return err
	}
	return s.writeSearchset(c, typ, typ, params, res)
}

// searchForm reads the body of POST /fhir/{type}/_search: an
// application/x-www-form-urlencoded query string (search.html#search), at
// most maxSearchForm bytes, decoded by the rule of a URL's query. Any other
// media type is 415, never ignored (that would answer the search without its
// criteria); an empty body without a Content-Type is no parameters, the
// search being then in the URL alone.
func searchForm(c echo.Context, typ string) (url.Values, error) {
	r := c.Request()
	ct := r.Header.Get("Content-Type")
	mt, _, err := mime.ParseMediaType(ct)
	if ct != "" && (err != nil || mt != "application/x-www-form-urlencoded") {
		return nil, errSearchFormType
	}
	if r.ContentLength > maxSearchForm {
		return nil, errSearchFormTooLarge
	}
	b, err := io.ReadAll(http.MaxBytesReader(c.Response(), r.Body, maxSearchForm))
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &mbe):
		return nil, errSearchFormTooLarge
	case err != nil:
		return nil, errBodyUnreadable
	case ct == "" && len(b) > 0:
		return nil, errSearchFormType
	}
	return engine.ParseQuery(typ, string(b))
}

// handleCompartment is GET /fhir/Patient/{id}/{type}: a search of type
// within the patient's compartment.
func (s *Server) handleCompartment(c echo.Context) error {
	params := c.QueryParams()
	comp, id, typ := c.Param("type"), c.Param("id"), c.Param("compartment")
	res, err := s.app.Engine.SearchCompartment(c.Request().Context(), scopeOf(c), comp, id, typ, params,
		preferLenient(preferHeader(c)))
	if err != nil {
		return err
	}
	return s.writeSearchset(c, typ, comp+"/"+id+"/"+typ, params, res)
}

// handleEverything is GET /fhir/Patient/{id}/$everything, and POST with
// the parameters in a Parameters body (or none).
func (s *Server) handleEverything(c echo.Context) error {
	if c.Param("type") != "Patient" {
		return outcome.New(outcome.NotFound, "not-supported", "operation-unknown", "$everything is an operation on a Patient")
	}
	params := c.QueryParams()
	if c.Request().Method == http.MethodPost {
		var body []byte
		if r := c.Request(); r.Header.Get("Content-Type") != "" || r.ContentLength != 0 {
			var err error
			if body, err = s.body(c)(); err != nil {
				return err
			}
		}
		var err error
		if params, err = s.app.Engine.EverythingParameters(params, body); err != nil {
			return err
		}
	}
	res, err := s.app.Engine.Everything(c.Request().Context(), scopeOf(c), c.Param("id"), params)
	if err != nil {
		return err
	}
	return s.writeSearchset(c, "Patient", "Patient/"+c.Param("id")+"/$everything", params, res)
}

// writeSearchset answers a search of typ (at path below the FHIR base,
// for the paging links) with its searchset Bundle.
func (s *Server) writeSearchset(c echo.Context, typ, path string, params url.Values, res *engine.SearchResult) error {
	return writeResource(c, http.StatusOK, s.app.Engine.Searchset(s.baseURL(c), typ, path, params, res))
}

// handleHistory serves instance, type and system history.
func (s *Server) handleHistory(c echo.Context) error {
	params := c.QueryParams()
	res, err := s.app.Engine.History(c.Request().Context(), scopeOf(c), c.Param("type"), c.Param("id"), params,
		preferLenient(preferHeader(c)))
	if err != nil {
		return err
	}
	return writeResource(c, http.StatusOK, s.app.Engine.HistoryBundle(s.baseURL(c), params, res))
}

// handleValidate is POST /fhir/$validate, /fhir/{type}/$validate and
// /fhir/{type}/{id}/$validate: it validates a resource (the body, or a
// Parameters body's resource; the profile and mode parameters in the
// query or the Parameters) and answers an OperationOutcome with 200,
// whatever the verdict. A request without a body (a mode=delete on an
// instance needs none) passes no body.
func (s *Server) handleValidate(c echo.Context) error {
	var body engine.Body
	if r := c.Request(); r.Header.Get("Content-Type") != "" || r.ContentLength != 0 {
		body = s.body(c)
	}
	_, issues, err := s.app.Engine.Validate(c.Request().Context(), scopeOf(c), engine.ValidateRequest{
		Type: c.Param("type"), ID: c.Param("id"), Query: c.QueryParams(), Body: body})
	if err != nil {
		return err
	}
	if len(issues) == 0 {
		return writeResource(c, http.StatusOK, outcome.Information("the resource is valid"))
	}
	return writeResource(c, http.StatusOK, outcome.Resource(issues))
}

// handleMetadata is GET /fhir/metadata: a CapabilityStatement that says
// exactly what is implemented.
func (s *Server) handleMetadata(c echo.Context) error {
	cs, err := s.app.Engine.Metadata(s.baseURL(c), s.security(), c.QueryParams())
	if err != nil {
		return err
	}
	return writeResource(c, http.StatusOK, cs)
}
