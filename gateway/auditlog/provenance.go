package auditlog

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"time"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/audit"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
)

// Provenance: every native record stored and every Bundle a client posts
// yields one Provenance, written in the same transaction, whose targets
// are the resource versions written (docs/audit.md).

// WriteProvenance stores p, listing targets, inside tx (which stamps the
// tenant) and records in sc that the Provenance covers them: the request's
// AuditEvent names the Provenance rather than repeating the list, with the
// SHA-256 of its stored JSON (audit.DetailJSONSHA256). It writes
// nothing without targets or with the audit trail off.
func (l *Log) WriteProvenance(tx store.Tx, sc *Scope, p audit.Provenance, targets []*store.Resource, now time.Time) error {
	if len(targets) == 0 || l.disabled {
		return nil
	}
	for _, r := range targets {
		p.Targets = append(p.Targets, audit.Entity{Type: r.Type, ID: r.ID, Version: r.Version})
	}
	p.Recorded = now
	p.TraceID = sc.TraceID
	p.ClientID = sc.ClientID
	if p.ID == "" {
		p.ID = store.NewID()
	}
	r, entries, err := store.NewVersion("Provenance", p.ID, 1, audit.ProvenanceResource(p), now)
	if err == nil {
		err = tx.Put(r, entries)
	}
	if err != nil {
		return fmt.Errorf("provenance: put Provenance/%s v1: %w", p.ID, err)
	}
	sc.cover(p.Targets)
	sc.Touch(r)
	sc.wrote(audit.Entity{Type: r.Type, ID: r.ID, Version: r.Version}, r.Body)
	return nil
}

// BundleProvenance is the Provenance of a transaction or batch Bundle (kind)
// whose bytes were body.
func BundleProvenance(kind string, body []byte) audit.Provenance {
	sum := sha256.Sum256(body)
	return audit.Provenance{Activity: "EXECUTE", WhatDisplay: kind + " Bundle", ContentHash: hex.EncodeToString(sum[:])}
}
