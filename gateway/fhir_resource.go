package gateway

import (
	"bytes"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/search"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
)

// result is the outcome of one write interaction.
type result struct {
	Status   int
	Resource *store.Resource
	// Created is true when the interaction made a new resource.
	Created bool
}

// decodeJSON decodes a resource keeping numbers exact.
func decodeJSON(doc []byte) (map[string]any, error) {
	d := json.NewDecoder(bytes.NewReader(doc))
	d.UseNumber()
	var m map[string]any
	if err := d.Decode(&m); err != nil {
		return nil, err
	}
	return m, nil
}

// newID returns a server-assigned resource id (random, 32 hex characters).
func newID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return fmt.Sprintf("%x", b)
}

// instant formats a time as a FHIR instant with millisecond precision.
func instant(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05.000Z") }

// prepare validates a resource for a write and turns it into a stored
// version: server-assigned id, meta.versionId and meta.lastUpdated
// (client-sent values are ignored), canonical JSON and index entries.
func (s *Server) prepare(typ, id string, version int64, doc map[string]any, now time.Time) (*store.Resource, []search.Entry, error) {
	doc["resourceType"] = typ
	doc["id"] = id
	meta, _ := doc["meta"].(map[string]any)
	if meta == nil {
		meta = map[string]any{}
	}
	meta["versionId"] = strconv.FormatInt(version, 10)
	meta["lastUpdated"] = instant(now)
	doc["meta"] = meta
	body, err := json.Marshal(doc)
	if err != nil {
		return nil, nil, fmt.Errorf("marshal %s: %w", typ, err)
	}
	return &store.Resource{Type: typ, ID: id, Version: version, LastUpdated: now.UTC().Truncate(time.Millisecond), Body: body},
		search.Extract(typ, doc), nil
}

// validateResource checks a resource body against the R4 definitions and
// that its type is the one expected; it returns the decoded document.
func (s *Server) validateResource(doc []byte, typ string, expr string) (map[string]any, error) {
	res := s.pipeline.validator.ValidateAs(doc, typ)
	if !res.Valid() {
		issues := fhirIssues(res)
		if expr != "" {
			for i := range issues {
				issues[i].Expression = prefixExpr(expr, issues[i].Expression)
			}
		}
		return nil, &Error{Status: http.StatusBadRequest, Issues: issues}
	}
	m, err := decodeJSON(doc)
	if err != nil {
		return nil, errorf(http.StatusBadRequest, "structure", "json-syntax", "the resource is not valid JSON")
	}
	if expr == "" {
		expr = typ
	}
	if err := profileError(checkProfiles(m, expr)); err != nil {
		return nil, err
	}
	return m, nil
}

// prefixExpr re-roots a FHIRPath found inside a Bundle entry.
func prefixExpr(prefix, expr string) string {
	if expr == "" {
		return prefix
	}
	return prefix + "." + expr
}

// put stores version v of typ/id.
func (s *Server) put(tx store.Tx, typ, id string, v int64, doc map[string]any, now time.Time) (*store.Resource, error) {
	r, entries, err := s.prepare(typ, id, v, doc, now)
	if err != nil {
		return nil, err
	}
	if err := tx.Put(r, entries); err != nil {
		return nil, fmt.Errorf("put %s/%s v%d: %w", typ, id, v, err)
	}
	return r, nil
}

// update writes a new version of typ/id (update-as-create when it does not
// exist or was deleted). ifMatch is the If-Match header ("" for none): a
// mismatch is 412.
func (s *Server) update(tx store.Tx, typ, id string, doc map[string]any, ifMatch string, now time.Time) (*result, error) {
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
		want, ok := parseETag(ifMatch)
		if !ok || !exists || cur.Version != want {
			return nil, errorf(http.StatusPreconditionFailed, "conflict", "version-mismatch",
				"If-Match does not name the current version")
		}
	}
	r, err := s.put(tx, typ, id, next, doc, now)
	if err != nil {
		return nil, err
	}
	if exists {
		return &result{Status: http.StatusOK, Resource: r}, nil
	}
	return &result{Status: http.StatusCreated, Resource: r, Created: true}, nil
}

// remove deletes typ/id (a new, deleted version). Deleting what does not
// exist or is already deleted succeeds (idempotent, http.html#delete).
func (s *Server) remove(tx store.Tx, typ, id string, now time.Time) (*result, error) {
	cur, err := tx.Read(typ, id)
	switch {
	case err == nil:
	case errors.Is(err, store.ErrGone), errors.Is(err, store.ErrNotFound):
		return &result{Status: http.StatusNoContent}, nil
	default:
		return nil, err
	}
	del := &store.Resource{Type: typ, ID: id, Version: cur.Version + 1, LastUpdated: now.UTC().Truncate(time.Millisecond), Deleted: true}
	if err := tx.Put(del, nil); err != nil {
		return nil, fmt.Errorf("delete %s/%s: %w", typ, id, err)
	}
	return &result{Status: http.StatusNoContent, Resource: del}, nil
}

// parseETag reads W/"n" (or "n", or n).
func parseETag(s string) (int64, bool) {
	s = strings.TrimSpace(s)
	s = strings.TrimPrefix(s, "W/")
	s = strings.Trim(s, `"`)
	v, err := strconv.ParseInt(s, 10, 64)
	return v, err == nil && v > 0
}

// validID reports whether s is a valid FHIR id.
func validID(s string) bool {
	if len(s) == 0 || len(s) > 64 {
		return false
	}
	for _, c := range s {
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '.') {
			return false
		}
	}
	return true
}

// searchError converts a search parse error into a 400.
func searchError(err error) error {
	var se *search.Error
	if errors.As(err, &se) {
		e := errorf(http.StatusBadRequest, "invalid", se.Rule, se.Message)
		if se.Param != "" {
			e.Issues[0].Expression = se.Param
		}
		return e
	}
	return err
}
