package gateway

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/audit"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/telemetry"
)

// Provenance: every native record stored and every Bundle a client posts
// yields one Provenance, written in the same transaction, whose targets
// are the resource versions written (see docs/audit.md).

// written returns the resource versions a processed Bundle wrote: a
// conditional create that matched, a GET and a failed batch entry write
// nothing.
func written(entries []*txEntry, errs []error) []*store.Resource {
	var out []*store.Resource
	for i, e := range entries {
		if errs != nil && errs[i] != nil {
			continue
		}
		if e.method == "GET" || e.res == nil || e.res.Resource == nil || (e.method == "POST" && e.matched != nil) {
			continue
		}
		out = append(out, e.res.Resource)
	}
	return out
}

// putProvenance stores a Provenance for targets inside tx and records it
// in the request's audit scope. It writes nothing without targets.
func (s *Server) putProvenance(c echo.Context, tx store.Tx, p audit.Provenance, targets []*store.Resource, now time.Time) error {
	if len(targets) == 0 || s.noAudit {
		return nil
	}
	for _, r := range targets {
		p.Targets = append(p.Targets, audit.Entity{Type: r.Type, ID: r.ID, Version: r.Version})
	}
	p.Recorded = now
	p.TraceID = telemetry.TraceID(c.Request().Context())
	p.ClientID = auditOf(c).clientID
	if p.ID == "" {
		p.ID = newID()
	}
	r, err := s.put(tx, "Provenance", p.ID, 1, audit.ProvenanceResource(p), now)
	if err != nil {
		return fmt.Errorf("provenance: %w", err)
	}
	// The request's AuditEvent names the Provenance, which lists every
	// version written, rather than repeating the list.
	sc := auditOf(c)
	if sc.covered == nil {
		sc.covered = map[audit.Entity]bool{}
	}
	for _, t := range p.Targets {
		sc.covered[t] = true
	}
	sc.touch(r)
	return nil
}

// bundleProvenance is the Provenance of a transaction or batch Bundle.
func (s *Server) bundleProvenance(c echo.Context, tx store.Tx, kind string, body []byte, targets []*store.Resource, now time.Time) error {
	sum := sha256.Sum256(body)
	return s.putProvenance(c, tx, audit.Provenance{
		Activity:    "EXECUTE",
		WhatDisplay: kind + " Bundle",
		ContentHash: hex.EncodeToString(sum[:]),
	}, targets, now)
}

// touchEntries records a processed Bundle's entries in the audit scope.
func touchEntries(c echo.Context, entries []*txEntry, errs []error) {
	sc := auditOf(c)
	for i, e := range entries {
		if errs != nil && errs[i] != nil || e.res == nil {
			continue
		}
		var doc map[string]any
		if e.method != "GET" && e.matched == nil {
			doc = e.doc // the document just stored: no need to decode it again
		}
		sc.touchDoc(e.res.Resource, doc)
	}
}
