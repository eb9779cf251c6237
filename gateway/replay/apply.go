package replay

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	fhir "github.com/samply/golang-fhir-models/fhir-models/fhir"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/audit"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/auditlog"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/auth"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/engine"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/fhirwire"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/ingest"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
	"github.com/ketamine-gateway/ketamine-gateway/mapping"
)

// errMoved aborts a record's apply whose input or stored resources
// changed between the comparison and the write (a concurrent ingest): the
// record is reported as a conflict, to replay again. It does not wrap
// store.ErrConflict: the engine must not retry the transaction, whose
// comparison is stale.
var errMoved = errors.New("the record or a compared resource changed before the replay wrote it")

// unmoved checks, in the apply's transaction, that what the record was
// compared with is still what is stored: the ledger's latest version of
// the record is still the one whose input was mapped (a walk reads the
// ledger a page ahead, and a version stored since was compared, if at
// all, with this older version's input: writing that would put the older
// version's content back over it), and every stored resource compared is
// still at the version compared. Else errMoved.
func unmoved(st store.Tx, m *remapped) error {
	l := m.l
	// The transaction is the record's tenant's: it namespaces the source.
	versions, err := st.LedgerVersions(l.RecordSource(), l.Kind, l.RecordID)
	if err != nil {
		return err
	}
	if len(versions) == 0 || latest(versions).Version != l.Version {
		return errMoved
	}
	for _, mt := range m.entries {
		if mt.stored == nil {
			continue
		}
		cur, err := st.Read(mt.stored.Type, mt.stored.ID)
		if errors.Is(err, store.ErrNotFound) || errors.Is(err, store.ErrGone) || err == nil && cur.Version != mt.stored.Version {
			return errMoved
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// written reports whether an apply writes mt: a resource the mapping adds
// (not one deleted since) or one it changes whose change is not skipped.
func (mt *match) written() bool {
	return mt.stored == nil && mt.gone == "" || mt.stored != nil && len(mt.changes) > 0 && mt.skipped == ""
}

// checkOutput checks what an apply of m would write against the profiles
// the gateway's output claims (as ingest checks a record's), each
// resource as written (an Observation corrected).
func (s *Service) checkOutput(m *remapped) error {
	for _, mt := range m.entries {
		if !mt.written() {
			continue
		}
		doc := corrected(m.res.Entries[mt.i].ResourceType, fhirwire.Copy(mt.doc).(map[string]any))
		if err := s.cfg.Ingest.CheckProfile(mt.i, doc); err != nil {
			return err
		}
	}
	return nil
}

// apply writes the record's applicable changes in one transaction: new
// versions of the changed resources (an Observation's status corrected)
// and the resources the mapping adds, a Provenance naming both mapping
// versions and the reason, the ledger entry's new mapping version, the
// record's AuditEvent, and a correction for each configured destination
// that had the record. It sets r's Applied, Written and Deliveries, or
// r.Status to StatusConflict.
func (s *Service) apply(ctx context.Context, sc *auditlog.Scope, m *remapped, opts Options, r *RecordResult) error {
	l := m.l
	src := l.RecordSource()
	dests, err := s.destinations(ctx, l, src)
	if err != nil {
		return err
	}
	var payloads map[string][]byte
	if len(dests) > 0 {
		if payloads, err = s.payloads(m, dests); err != nil {
			return err
		}
	}
	var p *auth.Principal
	if sc.Principal != nil {
		cp := *sc.Principal
		p = &cp
	} else {
		p = &auth.Principal{}
	}
	p.Tenant = l.Tenant // the write is the record's tenant's
	rsc := sc.Sub("mapping-replay", p)
	if rsc.TraceID == "" {
		// A replay without a caller's trace (the CLI, the job) gives each
		// record's correction a trace of its own, as a bulk import does:
		// its Provenance, AuditEvent and deliveries carry it.
		rsc.TraceID = store.NewID()
	}
	var entries []*engine.Entry
	var writes []*match
	record := mapping.RecordSystem(s.cfg.IdentifierBase, src, mapping.Kind(l.Kind))
	err = s.cfg.Engine.Write(ctx, rsc, func(tx *engine.Tx) (int, error) {
		st := tx.Store()
		// The source record by the identifier its Provenance (and its
		// ingest's AuditEvent) names it by: "every request about this
		// source record" finds its correction too. Each attempt starts
		// from a reset scope.
		rsc.NameRecord(record, l.RecordID)
		entries, writes = entries[:0], writes[:0]
		if err := unmoved(st, m); err != nil {
			return 0, err
		}
		for _, mt := range m.entries {
			if !mt.written() {
				continue // unchanged, skipped, or deleted since (a replay does not bring it back)
			}
			e := m.res.Entries[mt.i]
			doc := corrected(e.ResourceType, fhirwire.Copy(mt.doc).(map[string]any))
			var url string
			switch {
			case mt.stored == nil && e.Method == fhir.HTTPVerbPUT && !strings.Contains(e.URL, "?"):
				// A deterministic id, in the tenant's namespace (as ingest).
				typ, id, _ := strings.Cut(e.URL, "/")
				id = ingest.ResourceID(l.Tenant, id)
				url, doc["id"] = typ+"/"+id, id
			case mt.stored == nil:
				url = e.ResourceType + "?identifier=" + e.IdentifierSystem + "|" + e.IdentifierValue
				delete(doc, "id")
			default: // changed
				url, doc["id"] = mt.stored.Type+"/"+mt.stored.ID, mt.stored.ID
			}
			en, err := s.cfg.Engine.NewEntry(len(entries), "PUT", url, e.FullURL, doc, "")
			if err != nil {
				return 0, fmt.Errorf("replayed entry %d: %w", mt.i, err)
			}
			entries = append(entries, en)
			writes = append(writes, mt)
		}
		if err := tx.Run(entries); err != nil {
			return 0, err
		}
		reason := opts.Reason
		if reason == "" { // a job an older build accepted without one (Check needs one now)
			reason = "mapping " + s.cfg.MappingVersion + " replayed over the stored record"
		}
		err := tx.Provenance(audit.Provenance{
			Activity: "UPDATE", Source: src, MappingVersion: s.cfg.MappingVersion, PreviousMappingVersion: l.MappingVersion,
			Reason:     reason,
			WhatSystem: record, WhatValue: l.RecordID,
			WhatDisplay: fmt.Sprintf("%s record version %s, replayed with mapping %s", l.Kind, l.Version, s.cfg.MappingVersion),
			ContentHash: l.ContentHash, RecordKind: l.Kind, RecordVersion: l.Version,
			Nested:  ingest.NestedRecords(s.cfg.IdentifierBase, src, m.rec),
			Patient: r.patient, // as the ingest's receipt: reading this one names the patient
		}, engine.Written(entries, nil))
		if err != nil {
			return 0, err
		}
		if err := st.SetLedgerMapping(src, l.Kind, l.RecordID, l.Version, s.cfg.MappingVersion); err != nil {
			return 0, err
		}
		if len(dests) > 0 {
			if err := st.Enqueue(s.items(m, dests, payloads, rsc.TraceID)...); err != nil {
				return 0, err
			}
		}
		rsc.Description = fmt.Sprintf("%s record replayed with mapping %s: %d resources written, %d corrections enqueued",
			l.Kind, s.cfg.MappingVersion, len(entries), len(dests))
		return fhirwire.StatusOK, nil
	})
	if errors.Is(err, errMoved) {
		r.Status = StatusConflict
		return nil
	}
	if err != nil {
		return err
	}
	r.Applied, r.Deliveries = true, len(dests)
	// Each diff names the version written for it.
	k := 0
	for j := range r.Resources {
		d := &r.Resources[j]
		if d.Skipped != "" || k >= len(entries) {
			continue
		}
		if res := entries[k].Result(); res != nil && res.Resource != nil {
			w := res.Resource
			d.Written = fmt.Sprintf("%s/%s/_history/%d", w.Type, w.ID, w.Version)
		}
		k++
	}
	if len(dests) > 0 {
		s.cfg.Notify()
	}
	return nil
}

// destinations are the configured destinations that had the record,
// sorted: those with a delivery of it done, or pending or in flight (the
// correction follows it in the destination's order), or a dead letter the
// EHR may have applied (store.Outbox.MayHaveReached: a transaction-response
// with a failed entry, from an EHR that applied the others; a timeout),
// which holds the record's resources the correction changes. Any other
// dead letter is no delivery: one cancelled by an operator (sent to the
// wrong hospital), refused by the EHR, given up after its retries, or
// refused as the record was stored (store.Refused: another tenant holds
// its source system there). A destination whose deliveries of the record
// are all such dead letters never had it, and a correction would be the
// first, partial, thing it received of it: none is sent there.
func (s *Service) destinations(ctx context.Context, l *store.Ledger, src string) ([]string, error) {
	if len(s.cfg.Destinations) == 0 {
		return nil, nil
	}
	items, err := s.cfg.Store.Deliveries(ctx, store.DeliveryFilter{Source: src, Kind: l.Kind, RecordID: l.RecordID,
		Tenant: l.Tenant, Limit: 1000})
	if err != nil {
		return nil, err
	}
	var out []string
	for _, it := range items {
		if it.Status == store.StatusDead {
			reached, err := s.cfg.Store.MayHaveReached(ctx, it.ID)
			if err != nil {
				return nil, err
			}
			if !reached {
				continue
			}
		}
		if it.Tenant == l.Tenant && slices.Contains(s.cfg.Destinations, it.Destination) && !slices.Contains(out, it.Destination) {
			out = append(out, it.Destination)
		}
	}
	slices.Sort(out)
	return out, nil
}

// items are the outbox items of a record's correction: the record's own
// (ingest.OutboxItem), so that the correction follows the original in
// each destination's order.
func (s *Service) items(m *remapped, dests []string, payloads map[string][]byte, traceID string) []*store.OutboxItem {
	out := make([]*store.OutboxItem, len(dests))
	for i, d := range dests {
		out[i] = ingest.OutboxItem(d, mapping.Kind(m.l.Kind), m.rec, m.res, m.l.Version, payloads[d], traceID)
	}
	return out
}

// payloads are the transaction Bundles the destinations dests receive
// for the correction, by destination (each with only the MRNs it knows:
// ingest.TransactionFor, Config.MRNSystems): each changed resource as a conditional update on its
// identifier (an Observation corrected), each added one the same way, the
// Patient as the conditional create it always is (DECISIONS.md 7: a
// hospital's Patient is matched, never overwritten), and the unchanged
// resources those reference as conditional creates, which match what the
// destination holds and change nothing, so that every reference resolves.
func (s *Service) payloads(m *remapped, dests []string) (map[string][]byte, error) {
	byURL := map[string]int{}
	for i, e := range m.res.Entries {
		byURL[e.FullURL] = i
	}
	want := map[int]bool{}
	send := map[int]bool{} // written: changed or added
	gone := map[int]bool{} // deleted since: never sent again
	for _, mt := range m.entries {
		if mt.written() {
			want[mt.i], send[mt.i] = true, true
		}
		if mt.gone != "" {
			gone[mt.i] = true
		}
	}
	// The references of what is sent, transitively.
	for changed := true; changed; {
		changed = false
		for i := range want {
			for u, j := range byURL {
				if !want[j] && !gone[j] && strings.Contains(string(m.raws[i]), `"`+u+`"`) {
					want[j], changed = true, true
				}
			}
		}
	}
	if len(m.res.Entries) > 0 && m.res.Entries[0].ResourceType == "Patient" {
		want[0] = true
		// Matched at the EHR by the MRNs the gateway holds for the patient
		// too, as the record's own delivery is (a record without an MRN).
		for _, mt := range m.entries {
			if mt.i == 0 && mt.stored != nil && mt.stored.Type == "Patient" {
				patient, err := fhirwire.Decode(mt.stored.Body)
				if err != nil {
					return nil, fmt.Errorf("stored Patient/%s: %w", mt.stored.ID, err)
				}
				ingest.DeliverMatching(m.rec, m.res, patient)
			}
		}
	}
	sub := &mapping.Result{Kind: m.res.Kind, Source: m.res.Source}
	var raws [][]byte
	for i, e := range m.res.Entries {
		if !want[i] {
			continue
		}
		raw := m.raws[i]
		switch {
		case e.ResourceType != "Patient" && !send[i] && e.Method == fhir.HTTPVerbPUT && strings.Contains(e.URL, "?"):
			// Mapped in update mode (a new version): unchanged, it is sent
			// as a conditional create too, which changes nothing.
			typ, query, _ := strings.Cut(e.URL, "?")
			e.Method, e.URL, e.IfNoneExist = fhir.HTTPVerbPOST, typ, query
		case e.ResourceType == "Patient" || !send[i]:
			// As mapped: a conditional create (or, for a deterministic id, a
			// PUT of the same content).
		case e.Method == fhir.HTTPVerbPUT && !strings.Contains(e.URL, "?"):
			raw = remarshal(raw, e.ResourceType)
		default:
			e.Method, e.URL, e.IfNoneExist = fhir.HTTPVerbPUT, e.ResourceType+"?identifier="+e.IdentifierSystem+"|"+e.IdentifierValue, ""
			raw = remarshal(raw, e.ResourceType)
		}
		sub.Entries = append(sub.Entries, e)
		raws = append(raws, raw)
	}
	return ingest.Payloads(sub, raws, dests, func(d string) []string { return s.cfg.MRNSystems[d] })
}

// remarshal is a rendered resource with an Observation's status corrected.
func remarshal(raw []byte, typ string) []byte {
	if typ != "Observation" {
		return raw
	}
	doc, err := fhirwire.Decode(raw)
	if err != nil {
		return raw
	}
	out, err := json.Marshal(corrected(typ, doc))
	if err != nil {
		return raw
	}
	return out
}

// corrected sets an Observation's status to corrected (a new version of
// what was final, made by a corrected mapping); other resources keep
// theirs.
func corrected(typ string, doc map[string]any) map[string]any {
	if typ == "Observation" {
		switch doc["status"] {
		case "final", "amended", "corrected":
			doc["status"] = "corrected"
		}
	}
	return doc
}
