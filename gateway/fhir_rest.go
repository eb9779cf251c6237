package gateway

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"
	"go.opentelemetry.io/otel/attribute"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
)

// maxWriteAttempts bounds the retries of a transaction that lost a race
// on a unique key (store.ErrConflict).
const maxWriteAttempts = 8

// write runs fn in a store transaction, retrying it when a concurrent
// writer took a unique key first: the retry then sees that writer's result.
func (s *Server) write(ctx context.Context, fn func(tx store.Tx) error) error {
	var err error
	for attempt := 0; attempt < maxWriteAttempts; attempt++ {
		err = s.store.Write(ctx, fn)
		if !errors.Is(err, store.ErrConflict) {
			return err
		}
	}
	return err
}

// resourceType reads and checks the :type path parameter.
func (s *Server) resourceType(c echo.Context) (string, error) {
	typ := c.Param("type")
	if !s.pipeline.validator.KnownType(typ) {
		return "", errorf(http.StatusNotFound, "not-supported", "resource-type-unknown", "not a FHIR R4 resource type")
	}
	return typ, nil
}

// writableType reads the :type path parameter of a write: AuditEvents are
// written by the gateway only (405 for clients).
func (s *Server) writableType(c echo.Context) (string, error) {
	typ, err := s.resourceType(c)
	if err == nil {
		err = clientWritable(typ)
	}
	return typ, err
}

// clientWritable rejects client writes of the types only the gateway
// writes.
func clientWritable(typ string) error {
	if typ == "AuditEvent" {
		return errorf(http.StatusMethodNotAllowed, "forbidden", "audit-read-only",
			"AuditEvents are recorded by the gateway and cannot be created, changed or deleted")
	}
	return nil
}

// writableTypeAndID is typeAndID for a write (see writableType).
func (s *Server) writableTypeAndID(c echo.Context) (string, string, error) {
	typ, id, err := s.typeAndID(c)
	if err == nil {
		err = clientWritable(typ)
	}
	return typ, id, err
}

// typeAndID reads and checks the :type and :id path parameters.
func (s *Server) typeAndID(c echo.Context) (string, string, error) {
	typ, err := s.resourceType(c)
	if err != nil {
		return "", "", err
	}
	id, err := resourceID(c)
	return typ, id, err
}

// resourceID reads and checks the :id path parameter.
func resourceID(c echo.Context) (string, error) {
	id := c.Param("id")
	if !validID(id) {
		return "", errorf(http.StatusNotFound, "not-found", "resource-unknown", "no such resource")
	}
	return id, nil
}

// baseURL is the FHIR base the client used, for fullUrl and Location.
func (s *Server) baseURL(c echo.Context) string {
	if s.cfg.BaseURL != "" {
		return strings.TrimRight(s.cfg.BaseURL, "/")
	}
	return c.Scheme() + "://" + c.Request().Host + "/fhir"
}

// readBodyResource reads a request body that must be a resource of typ.
func (s *Server) readBodyResource(c echo.Context, typ string) (map[string]any, error) {
	ctx := c.Request().Context()
	rt := attribute.String("fhir.resource_type", typ)
	var body []byte
	err := s.stage(ctx, "fhir.decode", func(context.Context) error {
		var err error
		body, err = readBody(c, s.cfg.MaxBodyBytes)
		return err
	}, rt)
	if err != nil {
		return nil, err
	}
	var doc map[string]any
	err = s.stage(ctx, "fhir.validate", func(context.Context) error {
		doc, err = s.validateResource(body, typ, "")
		return err
	}, rt)
	return doc, err
}

// writeOne runs one write interaction in a retried store transaction and
// answers it.
func (s *Server) writeOne(c echo.Context, op func(tx store.Tx, now time.Time) (*result, error)) error {
	var res *result
	err := s.stage(c.Request().Context(), "store.transaction", func(ctx context.Context) error {
		return s.writeAudited(c, ctx, func(tx store.Tx) (int, error) {
			var err error
			if res, err = op(tx, s.now()); err != nil {
				return 0, err
			}
			auditOf(c).touch(res.Resource)
			return res.Status, nil
		})
	}, attribute.String("fhir.resource_type", c.Param("type")), attribute.String("fhir.interaction", interactionOf(c)))
	if err != nil {
		return err
	}
	return s.respondWrite(c, res)
}

// handleCreate is POST /fhir/{type}, honouring If-None-Exist.
func (s *Server) handleCreate(c echo.Context) error {
	typ, err := s.writableType(c)
	if err != nil {
		return err
	}
	if err := allow(c, typ, 'c'); err != nil {
		return err
	}
	doc, err := s.readBodyResource(c, typ)
	if err != nil {
		return err
	}
	return s.writeEntry(c, &txEntry{method: "POST", typ: typ, doc: doc,
		ifNoneExist: c.Request().Header.Get("If-None-Exist")})
}

// writeEntry runs a single create or conditional update through the
// transaction engine as a one-entry transaction, so a single request and a
// Bundle entry follow exactly the same rules (conditional matching, the
// exactly-once key, reference handling).
func (s *Server) writeEntry(c echo.Context, e *txEntry) error {
	e.bodyID, _ = e.doc["id"].(string)
	return s.writeOne(c, func(tx store.Tx, now time.Time) (*result, error) {
		if err := s.runTransaction(tx, []*txEntry{e}, now); err != nil {
			return nil, unwrapEntry(err)
		}
		return e.res, nil
	})
}

// handleUpdate is PUT /fhir/{type}/{id}: update, or create with the
// client's id.
func (s *Server) handleUpdate(c echo.Context) error {
	typ, id, err := s.writableTypeAndID(c)
	if err != nil {
		return err
	}
	if err := allow(c, typ, 'u'); err != nil {
		return err
	}
	doc, err := s.readBodyResource(c, typ)
	if err != nil {
		return err
	}
	if bid, _ := doc["id"].(string); bid != id {
		return errorf(http.StatusBadRequest, "invalid", "id-mismatch", "the resource id must equal the id in the URL")
	}
	ifMatch := c.Request().Header.Get("If-Match")
	return s.writeOne(c, func(tx store.Tx, now time.Time) (*result, error) {
		return s.update(tx, typ, id, doc, ifMatch, now)
	})
}

// handleConditionalUpdate is PUT /fhir/{type}?criteria.
func (s *Server) handleConditionalUpdate(c echo.Context) error {
	typ, err := s.writableType(c)
	if err != nil {
		return err
	}
	if err := allow(c, typ, 'u'); err != nil {
		return err
	}
	query := c.Request().URL.RawQuery
	if query == "" {
		return errorf(http.StatusBadRequest, "invalid", "conditional-criteria-missing", "PUT on a type needs search criteria (or use PUT /fhir/Type/id)")
	}
	doc, err := s.readBodyResource(c, typ)
	if err != nil {
		return err
	}
	return s.writeEntry(c, &txEntry{method: "PUT", typ: typ, query: query, doc: doc,
		ifMatch: c.Request().Header.Get("If-Match")})
}

// handleDelete is DELETE /fhir/{type}/{id}.
func (s *Server) handleDelete(c echo.Context) error {
	typ, id, err := s.writableTypeAndID(c)
	if err != nil {
		return err
	}
	if err := allow(c, typ, 'd'); err != nil {
		return err
	}
	var res *result
	err = s.writeAudited(c, c.Request().Context(), func(tx store.Tx) (int, error) {
		if res, err = s.remove(tx, typ, id, s.now()); err != nil {
			return 0, err
		}
		auditOf(c).touch(res.Resource)
		return http.StatusNoContent, nil
	})
	if err != nil {
		return err
	}
	if res.Resource != nil {
		c.Response().Header().Set("ETag", etag(res.Resource.Version))
	}
	return c.NoContent(http.StatusNoContent)
}

// handleRead is GET /fhir/{type}/{id}.
func (s *Server) handleRead(c echo.Context) error {
	typ, id, err := s.typeAndID(c)
	if err != nil {
		return err
	}
	if err := allow(c, typ, 'r'); err != nil {
		return err
	}
	r, err := s.storeFor(c).Read(c.Request().Context(), typ, id)
	if err != nil {
		if errors.Is(err, store.ErrGone) && r != nil {
			c.Response().Header().Set("ETag", etag(r.Version))
		}
		return err
	}
	auditOf(c).touch(r)
	return s.respondResource(c, http.StatusOK, r)
}

// handleVRead is GET /fhir/{type}/{id}/_history/{vid}.
func (s *Server) handleVRead(c echo.Context) error {
	typ, id, err := s.typeAndID(c)
	if err != nil {
		return err
	}
	if err := allow(c, typ, 'r'); err != nil {
		return err
	}
	vid, err := strconv.ParseInt(c.Param("vid"), 10, 64)
	if err != nil || vid < 1 {
		return errorf(http.StatusNotFound, "not-found", "version-unknown", "no such version")
	}
	r, err := s.storeFor(c).VRead(c.Request().Context(), typ, id, vid)
	if err != nil {
		return err
	}
	if r.Deleted {
		c.Response().Header().Set("ETag", etag(r.Version))
		return errorf(http.StatusGone, "deleted", "resource-deleted", "this version is a deletion")
	}
	auditOf(c).touch(r)
	return s.respondResource(c, http.StatusOK, r)
}

// etag is the weak ETag of a version.
func etag(v int64) string { return `W/"` + strconv.FormatInt(v, 10) + `"` }

// setVersionHeaders sets ETag and Last-Modified of a stored version.
func setVersionHeaders(c echo.Context, r *store.Resource) {
	h := c.Response().Header()
	h.Set("ETag", etag(r.Version))
	h.Set("Last-Modified", r.LastUpdated.UTC().Format(http.TimeFormat))
}

// respondResource writes a stored resource with its version headers.
func (s *Server) respondResource(c echo.Context, status int, r *store.Resource) error {
	setVersionHeaders(c, r)
	return c.Blob(status, ContentTypeFHIR, r.Body)
}

// respondWrite answers a create or update, honouring Prefer: return=.
func (s *Server) respondWrite(c echo.Context, res *result) error {
	r := res.Resource
	setVersionHeaders(c, r)
	c.Response().Header().Set("Location", fmt.Sprintf("%s/%s/%s/_history/%d", s.baseURL(c), r.Type, r.ID, r.Version))
	switch preferReturn(c.Request().Header.Get("Prefer")) {
	case "minimal":
		return c.NoContent(res.Status)
	case "OperationOutcome":
		msg := fmt.Sprintf("%s/%s version %d", r.Type, r.ID, r.Version)
		return writeResource(c, res.Status, Information(msg))
	default:
		return c.Blob(res.Status, ContentTypeFHIR, r.Body)
	}
}

// preferReturn reads the return= preference (http.html#ops).
func preferReturn(prefer string) string {
	for _, p := range strings.Split(prefer, ",") {
		p = strings.TrimSpace(p)
		if v, ok := strings.CutPrefix(p, "return="); ok {
			return strings.Trim(v, `"`)
		}
	}
	return "representation"
}

// preferLenient reports Prefer: handling=lenient.
func preferLenient(prefer string) bool {
	for _, p := range strings.Split(prefer, ",") {
		if strings.TrimSpace(p) == "handling=lenient" {
			return true
		}
	}
	return false
}

// nowFunc is the clock; tests may replace Config.Now.
func (s *Server) now() time.Time {
	if s.cfg.Now != nil {
		return s.cfg.Now()
	}
	return time.Now()
}

// interactionOf names the FHIR interaction of a write request.
func interactionOf(c echo.Context) string {
	switch {
	case c.Request().Method == http.MethodPost:
		return "create"
	case c.Param("id") == "":
		return "conditional-update"
	default:
		return "update"
	}
}

// handlePatch is PATCH /fhir/{type}/{id}: not supported (405, as the
// CapabilityStatement says by not listing patch).
func (s *Server) handlePatch(c echo.Context) error {
	return errorf(http.StatusMethodNotAllowed, "not-supported", "patch-unsupported",
		"PATCH is not supported; send the whole resource with PUT")
}
