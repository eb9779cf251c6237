package auditlog

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/audit"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/search"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
)

// An all-tenant caller (an auditor, a compliance officer, an operator of
// every tenant) reads the data of many tenants in one request. Its
// AuditEvent is kept whole in search.AllTenantsAudit, which only
// all-tenant readers see; and each tenant whose data the request read or
// disclosed (a resource touched, a patient named, a delivery read) gets
// its share: an AuditEvent of the same request (the same client, action,
// outcome, time, request and trace ids), in that tenant, naming only that
// tenant's resources, patients and records. So a clinic's own
// AuditEvent?patient= finds every request that disclosed its patient,
// whoever asked, and never learns what else of other clinics the request
// read. All of a request's AuditEvents are appended together, to one
// hash chain.

// share is one tenant's part of an all-tenant request's record.
type share struct {
	Tenant string
	Record audit.Record
}

// shares splits first, the whole record of the all-tenant request sc, by
// tenant: the owner sc recorded for each entity, patient and identified
// thing, else the tenant of the stored resource (read; a resource gone
// names its tenant too, one never stored names none). Things of no tenant
// found, and things of search.AllTenantsAudit (an all-tenant request's
// own AuditEvent), are only in the whole record. Shares come in tenant
// order. Returns read's errors but store.ErrNotFound and store.ErrGone.
func (l *Log) shares(sc *Scope, first audit.Record, read func(typ, id string) (*store.Resource, error)) ([]share, error) {
	var known owners
	if sc.owners != nil {
		known = *sc.owners
	}
	looked := map[string]string{} // "Type/id": its tenant ("\x00": none)
	owner := func(typ, id string) (string, bool, error) {
		key := typ + "/" + id
		if t, ok := looked[key]; ok {
			return t, t != "\x00", nil
		}
		r, err := read(typ, id)
		switch {
		case r != nil && (err == nil || errors.Is(err, store.ErrGone)):
			looked[key] = r.Tenant
		case err == nil || errors.Is(err, store.ErrNotFound) || errors.Is(err, store.ErrGone):
			looked[key] = "\x00"
		default:
			return "", false, fmt.Errorf("the tenant of %s: %w", typ, err)
		}
		t := looked[key]
		if t == "\x00" || search.Reserved(t) {
			return "", false, nil
		}
		return t, true, nil
	}
	by := map[string]*audit.Record{}
	part := func(tenant string) *audit.Record {
		r := by[tenant]
		if r == nil {
			r = &audit.Record{}
			by[tenant] = r
		}
		return r
	}
	for _, p := range first.Patients {
		t, ok := known.patients[p]
		if !ok {
			var err error
			if t, ok, err = owner("Patient", strings.TrimPrefix(p, "Patient/")); err != nil {
				return nil, err
			}
		}
		if ok {
			part(t).Patients = append(part(t).Patients, p)
		}
	}
	for _, e := range first.Entities {
		key := e
		key.SHA256 = "" // recorded without it
		t, ok := known.entities[key]
		if !ok {
			var err error
			if t, ok, err = owner(e.Type, e.ID); err != nil {
				return nil, err
			}
		}
		if ok && !search.Reserved(t) {
			part(t).Entities = append(part(t).Entities, e)
		}
	}
	for _, id := range first.Identified {
		for _, t := range known.identified[id] {
			part(t).Identified = append(part(t).Identified, id)
		}
	}
	out := make([]share, 0, len(by))
	for _, t := range slices.Sorted(maps.Keys(by)) {
		p := by[t]
		r := first.SameRequest(store.NewID())
		r.Patients, r.Entities, r.Identified = p.Patients, p.Entities, p.Identified
		disclosed := ""
		if sc.Disclosed != "" {
			disclosed = sc.Disclosed + "; "
		}
		r.Description = fmt.Sprintf("%s (its data named here: %s, %s; %s"+
			"the whole record is the request's AuditEvent kept for all-tenant readers)",
			audit.ShareDescription(t), Counted(len(p.Entities), "resource"), Counted(len(p.Patients), "patient"), disclosed)
		if rules := failureDescription(first.Status, sc.Rules); rules != "" {
			r.Description = rules + "; " + r.Description
		}
		out = append(out, share{Tenant: t, Record: r})
	}
	return out, nil
}
