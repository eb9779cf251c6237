package auditlog

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/audit"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/operator"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
	"github.com/ketamine-gateway/ketamine-gateway/mapping"
)

// What the gateway's own answers disclose, named in the request's
// AuditEvent like the resources of a FHIR read: the patients (role
// Patient), the resources and Provenances shown, and what is named by
// identifier (a source record, a delivery). "Who has seen this patient's
// data" then finds a lineage read or a delivery read too.

// Counted is n and the noun, in the plural (noun+"s") unless n is 1
// ("1 receipt", "2 receipts").
func Counted(n int, noun string) string {
	return CountedAs(n, noun, noun+"s")
}

// CountedAs is Counted for a noun with a plural of its own.
func CountedAs(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return strconv.Itoa(n) + " " + many
}

// Audit records, in sc, what l discloses: the patients of its resources
// and requests, the Provenance of each receipt, the resource queried, and
// the source record queried (by the identifier its Provenance names it
// by, in the query's identifier namespace).
func (l *Lineage) Audit(sc *Scope) {
	sc.Concern(l.patients...)
	for _, rc := range l.Receipts {
		for _, r := range rc.Resources {
			if strings.HasPrefix(r, "Patient/") {
				sc.ConcernIn(rc.Tenant, r)
			}
		}
		if rc.Request != nil {
			sc.Concern(rc.Request.patients...)
		}
		if id, ok := strings.CutPrefix(rc.Provenance, "Provenance/"); ok {
			sc.refer(audit.Entity{Type: "Provenance", ID: id})
		}
	}
	for _, rs := range [][]RequestView{l.Requests, l.Accesses} {
		for _, r := range rs {
			sc.Concern(r.patients...)
		}
	}
	q := l.Query
	if typ, id, ok := strings.Cut(q.Resource, "/"); ok {
		sc.refer(audit.Entity{Type: typ, ID: id})
	}
	if q.RecordID == "" {
		// A trace or resource query shows receipts too: it names their
		// source records, so that "every request about this record"
		// finds it (p16 F14).
		for _, rc := range l.Receipts {
			if rc.RecordID != "" && rc.recordSystem != "" {
				sc.NameRecord(rc.recordSystem, rc.RecordID)
				sc.NameRecordIn(rc.Tenant, rc.recordSystem, rc.RecordID)
			}
		}
		return
	}
	// The record by the identifiers its receipts and requests name it by
	// (the kind it was sent as); a record nothing named, by those asked.
	ids := l.records
	if len(ids) == 0 {
		kinds := mapping.Kinds()
		if q.Kind != "" {
			kinds = mapping.SameRecord(mapping.Kind(q.Kind))
		}
		for _, k := range kinds {
			ids = append(ids, mapping.RecordSystem(q.IdentifierBase, q.Source, k)+"|"+q.RecordID)
		}
	}
	// A record's receipts say whose it is (two tenants may hold records
	// of one id: each is named in its tenant's share).
	for _, id := range ids {
		sys, val, _ := strings.Cut(id, "|")
		sc.NameRecord(sys, val)
		for _, rc := range l.Receipts {
			sc.NameRecordIn(rc.Tenant, sys, val)
		}
	}
}

// Describe is the PHI-free description of a lineage answer: what was
// asked (what) and how much was shown.
func (l *Lineage) Describe(what string) string {
	d := fmt.Sprintf("%s: %s, %s", what, Counted(len(l.Receipts), "receipt"), Counted(len(l.Requests), "request"))
	if l.Query.Resource != "" {
		d += ", " + CountedAs(len(l.Accesses), "access", "accesses")
	}
	return d
}

// Shown is what a delivery's page or answer disclosed beyond its status
// and attempts.
type Shown int

const (
	// ShownSummary: the EHR's answers summarised (no texts), no payload.
	ShownSummary Shown = iota
	// ShownAnswers: the EHR's answers as received, no payload (the
	// console's delivery page in full).
	ShownAnswers
	// ShownPayload: the payload (the FHIR Bundle) and the EHR's answers as
	// received (GET /admin/deliveries/{id}?payload=true).
	ShownPayload
)

// describe names what was disclosed, for an AuditEvent's description.
func (s Shown) describe() string {
	switch s {
	case ShownAnswers:
		return "the EHR's answers disclosed; payload not disclosed"
	case ShownPayload:
		return "payload (the FHIR Bundle) and the EHR's answers disclosed"
	}
	return "payload not disclosed"
}

// NameDelivery records, in sc, what reading delivery v disclosed: the
// delivery (by id), the source record it delivers, the patients of that
// record version (from its Provenance's targets) and, in the description,
// what was shown of it (the payload, the FHIR Bundle, is the patient's
// data; the EHR's answers as received may hold PHI too). base is the
// deployment's identifier namespace ("" the default). Returns store
// errors (ErrUnavailable) unchanged.
func NameDelivery(ctx context.Context, st store.Store, sc *Scope, base string, v operator.View, shown Shown) error {
	if err := nameDelivered(ctx, st, sc, base, v.ID, v.Tenant, v.Source, v.Kind, v.RecordID, v.Version); err != nil {
		return err
	}
	sc.Description = fmt.Sprintf("delivery %s: %s; %s", v.ID, Counted(len(v.History), "attempt"), shown.describe())
	sc.Disclosed = shown.describe()
	return nil
}

// nameDelivered records, in sc, the delivery with public id delivery
// (in tenant) and what it delivers: the source record, the Provenance of
// that record version and the patients it names. Returns store errors
// (ErrUnavailable) unchanged.
func nameDelivered(ctx context.Context, st store.Store, sc *Scope, base, delivery, tenant, source, kind, recordID, version string) error {
	sc.NameIn(tenant, audit.Identified{System: audit.SystemDelivery, Value: delivery, Description: "the delivery"})
	if source == "" || recordID == "" || kind == "" {
		return nil
	}
	sc.NameRecordIn(tenant, mapping.RecordSystem(base, source, mapping.Kind(kind)), recordID)
	return nameRecordPatients(ctx, st, sc, tenant, source, kind, recordID, version, true)
}

// nameDeliveredPatients records, in sc, the patients of the record
// version v delivers and, when refer, its Provenance (nameRecordPatients).
func nameDeliveredPatients(ctx context.Context, st store.Store, sc *Scope, v operator.View, refer bool) error {
	if v.Source == "" || v.RecordID == "" || v.Kind == "" {
		return nil
	}
	return nameRecordPatients(ctx, st, sc, v.Tenant, v.Source, v.Kind, v.RecordID, v.Version, refer)
}

// nameRecordPatients records, in sc, the patients of a record version:
// those its Provenance names (recordPatients), in its tenant, and, when
// refer, that Provenance. A record without its Provenance names none.
// Returns store errors (ErrUnavailable) unchanged.
func nameRecordPatients(ctx context.Context, st store.Store, sc *Scope, tenant, source, kind, recordID, version string, refer bool) error {
	id := audit.RecordProvenanceID(tenant, source, kind, recordID, version)
	p, err := st.Read(ctx, "Provenance", id)
	switch {
	case errors.Is(err, store.ErrNotFound) || errors.Is(err, store.ErrGone):
		return nil
	case err != nil:
		return err
	}
	if refer {
		sc.refer(audit.Entity{Type: "Provenance", ID: id})
	}
	patients, err := recordPatients(ctx, st, p.Body)
	if err != nil {
		return err
	}
	sc.ConcernIn(p.Tenant, patients...) // a record's patients are its tenant's
	return nil
}

// NameDeliveryList records, in sc, what a list of deliveries by f
// disclosed: how many were listed, the patient of each delivery listed
// (as a delivery read names it: the patients of the record version it
// delivers; the list shows each one's clinic patient id), and, for a list
// by patient (f.Patient, <source system>|<clinic patient id>), that
// patient's stored Patients in tenant (the caller's), so that
// AuditEvent?patient= finds who looked up or saw the patient's
// deliveries. Patients beyond 1,000 go to further AuditEvents of the
// request, as for an export. base is the deployment's identifier
// namespace. Returns store errors (ErrUnavailable) unchanged.
func NameDeliveryList(ctx context.Context, st store.Store, sc *Scope, base, tenant string, f store.DeliveryFilter, listed []operator.View) error {
	sc.Description = "deliveries: " + CountedAs(len(listed), "delivery", "deliveries") + " listed"
	seen := map[string]bool{} // a record version's deliveries to several destinations name its patients once
	for _, v := range listed {
		key := audit.RecordProvenanceID(v.Tenant, v.Source, v.Kind, v.RecordID, v.Version)
		if seen[key] {
			continue
		}
		seen[key] = true
		if err := nameDeliveredPatients(ctx, st, sc, v, false); err != nil {
			return err
		}
	}
	source, id, ok := strings.Cut(f.Patient, "|")
	if !ok || source == "" || id == "" {
		return nil
	}
	sc.Description += " of one patient"
	if strings.ContainsAny(id, ",$|\\") || strings.ContainsAny(source, ",$|\\") {
		return nil // no clinic patient id the gateway stored has these (identifiers it mints never do)
	}
	found, err := searchStored(ctx, st, tenant, "Patient", url.Values{"identifier": {mapping.PatientSystem(base, source) + "|" + id}}, 100)
	if err != nil {
		return err
	}
	for _, p := range found {
		sc.ConcernIn(p.Tenant, "Patient/"+p.ID)
	}
	return nil
}

// recordPatients are the patients of the record version whose stored
// Provenance is body: the Patients it targets (the record created or
// changed its Patient) and the patients of the resources it targets (their
// subject or patient, as a read of them names), so that a record of a
// patient stored before, whose Provenance targets no Patient, still names
// its patient. A target no longer stored names nothing. Returns store
// errors (ErrUnavailable) unchanged.
func recordPatients(ctx context.Context, st store.Store, body []byte) ([]string, error) {
	var p struct {
		Target []struct {
			Reference string `json:"reference"`
		} `json:"target"`
	}
	if json.Unmarshal(body, &p) != nil {
		return nil, nil
	}
	var out []string
	for _, t := range p.Target {
		if strings.HasPrefix(t.Reference, "Patient/") {
			ref, _, _ := strings.Cut(strings.TrimPrefix(t.Reference, "Patient/"), "/")
			out = append(out, "Patient/"+ref)
		}
	}
	for _, t := range p.Target {
		typ, rest, ok := strings.Cut(t.Reference, "/")
		id, _, _ := strings.Cut(rest, "/") // a versioned reference: the resource's patient does not change
		if !ok || typ == "Patient" || id == "" {
			continue
		}
		r, err := st.Read(ctx, typ, id)
		switch {
		case errors.Is(err, store.ErrNotFound) || errors.Is(err, store.ErrGone):
			continue
		case err != nil:
			return nil, err
		}
		if ps := PatientsIn(r.Type, r.ID, r.Body); len(ps) > 0 {
			// A record is about one patient: its first resource that
			// names one names it.
			return append(out, ps...), nil
		}
	}
	return out, nil
}
