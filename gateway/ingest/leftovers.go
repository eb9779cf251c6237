package ingest

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	fhir "github.com/samply/golang-fhir-models/fhir-models/fhir"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/audit"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/fhirwire"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
	"github.com/ketamine-gateway/ketamine-gateway/mapping"
)

// A withdrawal retires everything the record wrote.
//
// A record's withdrawal (source.status entered-in-error) is mapped from
// the withdrawal version's content: it marks entered-in-error (or
// deletes, for an AdverseEvent) the resources that version would make.
// A resource only an earlier version made (a dosing weight a later
// version left out, the items of a PHQ-9 later sent as its total only, a
// measurement or an event a later session version no longer nests) would
// stay final, at the gateway and at every EHR, as if the clinic still
// vouched for it. So the ingest of a withdrawal also retires each
// resource a record Provenance of an earlier version of the record
// targets, as long as that Provenance's version is still the resource's
// current one (a nested record sent on its own since is its own record's
// now) and it is not retired already: the same Bundle, the same
// Provenance, the same deliveries. The record's Patient is never
// retired.

// retiredByStatus are the types the mappings write that a withdrawal
// retires with status entered-in-error (an AdverseEvent, which has no
// status, is deleted).
var retiredByStatus = map[string]bool{"Observation": true, "Procedure": true, "MedicationRequest": true,
	"MedicationAdministration": true, "Flag": true, "DetectedIssue": true}

// retireLeftovers returns res (and its parallel raws, docs and checked)
// with an entry retiring each resource an earlier version of rec wrote
// that res does not write (see above). Only for a withdrawal of a stored
// record.
//
// It also returns the records nested in earlier versions of rec (not in
// the withdrawal) whose resources it retires: the withdrawal's Provenance
// names them with the records it nests, so that the lineage of such a
// record shows the withdrawal that retired it (an EHR review).
func (s *Service) retireLeftovers(st store.Tx, rec record, res *mapping.Result, raws [][]byte, docs []map[string]any, checked []error) (*mapping.Result, [][]byte, []map[string]any, []error, []audit.NestedRecord, error) {
	left, err := leftovers(st, s.p.opts.IdentifierBase, rec, res)
	if err != nil || len(left) == 0 {
		return res, raws, docs, checked, nil, err
	}
	var retired []audit.NestedRecord
	for _, l := range left {
		if l.nested != nil && !slices.Contains(retired, *l.nested) {
			retired = append(retired, *l.nested)
		}
	}
	out := *res
	out.Entries = slices.Clone(res.Entries)
	raws, docs, checked = slices.Clone(raws), slices.Clone(docs), slices.Clone(checked)
	rw := newRewriter(st, res)
	for _, l := range left {
		// A leftover names another (a retired PHQ-9's Flag its item 9, an
		// event's Flag the event) by that one's entry in this Bundle, as
		// the mapping names them: never by identifier alone, which the
		// Flag's profile refuses (flag-detail needs a literal reference: a
		// withdrawal answered 500 and was not stored, a safety review).
		// An AdverseEvent is deleted: by its id, as the mapping names a
		// withdrawn event (no Bundle resolves the urn of a DELETE entry).
		to := "urn:uuid:" + l.uuid
		if l.r.Type == "AdverseEvent" {
			to = "AdverseEvent/" + l.uuid
		}
		rw.fullURL[l.system+"|"+l.value] = to
	}
	for _, l := range left {
		e := mapping.Entry{FullURL: "urn:uuid:" + l.uuid, ResourceType: l.r.Type, IdentifierSystem: l.system,
			IdentifierValue: l.value}
		var raw []byte
		var doc map[string]any
		if l.r.Type == "AdverseEvent" {
			e.Method, e.URL = fhir.HTTPVerbDELETE, "AdverseEvent/"+l.uuid
		} else {
			doc = l.doc
			if err := rw.portable(doc); err != nil {
				return nil, nil, nil, nil, nil, err
			}
			doc["status"] = "entered-in-error"
			delete(doc, "id")
			if meta, ok := doc["meta"].(map[string]any); ok {
				delete(meta, "versionId")
				delete(meta, "lastUpdated")
			}
			if raw, err = fhirwire.Marshal(doc); err != nil {
				return nil, nil, nil, nil, nil, fmt.Errorf("withdrawn %s/%s: %w", l.r.Type, l.r.ID, err)
			}
			e.Method, e.URL = fhir.HTTPVerbPUT, l.r.Type+"?identifier="+l.system+"|"+l.value
			e.Resource = json.RawMessage(raw)
		}
		out.Entries = append(out.Entries, e)
		raws = append(raws, raw)
		if docs != nil {
			docs = append(docs, doc)
		}
		if checked != nil {
			checked = append(checked, s.CheckProfile(len(out.Entries)-1, doc))
		}
	}
	return &out, raws, docs, checked, retired, nil
}

// leftover is a resource an earlier version of a record wrote, as stored
// now (doc decoded), with the identifier it is found by (and the
// mapping's name-based UUID of it: its fullUrl, an AdverseEvent's id).
type leftover struct {
	r             *store.Resource
	doc           map[string]any
	system, value string
	uuid          string
	// nested is the record an earlier session version nested that the
	// resource is a part of (its identifier that record's part), nil for
	// the record's own.
	nested *audit.NestedRecord
}

// receipt is what leftovers reads of a record's Provenance.
type receipt struct {
	Target []struct{ Reference string } `json:"target"`
	Entity []struct {
		Role string
		What struct {
			Identifier struct{ System, Value string }
		}
		Extension []struct{ URL, ValueString string }
	} `json:"entity"`
	gateway bool // the gateway's own (audit.IsGatewayProvenance), not a client's
}

// readReceipt decodes p, a Provenance.
func readReceipt(p *store.Resource) (*receipt, error) {
	var prov receipt
	if err := json.Unmarshal(p.Body, &prov); err != nil {
		return nil, fmt.Errorf("provenance %s: %w", p.ID, err)
	}
	doc, err := decode(p)
	if err != nil {
		return nil, err
	}
	prov.gateway = audit.IsGatewayProvenance(doc)
	return &prov, nil
}

// leftovers are the resources earlier versions of rec wrote (their record
// Provenances' targets) that res does not write, whose current version
// one of them wrote and that are not retired, in a stable order.
func leftovers(st store.Tx, identifierBase string, rec record, res *mapping.Result) ([]leftover, error) {
	src := rec.rec.Env().Source
	wrote := map[string]map[int64]bool{} // Type/id -> the versions the record's versions wrote
	var nested []audit.NestedRecord      // the records the record's versions nested
	nestedAt := map[string]time.Time{}   // kind|record id -> when the latest version nesting it was received
	take := func(prov *receipt) {
		for _, e := range prov.Entity {
			for _, x := range e.Extension {
				n := audit.NestedRecord{System: e.What.Identifier.System, Value: e.What.Identifier.Value, Kind: x.ValueString}
				if e.Role == "source" && x.URL == audit.ExtRecordKind && n.Value != "" && !slices.Contains(nested, n) {
					nested = append(nested, n)
				}
			}
		}
		for _, t := range prov.Target {
			ref, n, ok := audit.Versioned(t.Reference)
			if !ok {
				continue
			}
			if wrote[ref] == nil {
				wrote[ref] = map[int64]bool{}
			}
			wrote[ref][n] = true
		}
	}
	for _, k := range recordKinds(rec.kind) {
		versions, err := st.LedgerVersions(src.System, string(k), src.RecordID)
		if err != nil {
			return nil, err
		}
		for _, v := range versions {
			var in storedInput
			if json.Unmarshal(v.Input, &in) == nil {
				for kind, list := range map[mapping.Kind][]struct{ RecordID string }{mapping.KindVitals: in.Vitals,
					mapping.KindAssessment: in.Assessments, mapping.KindAdverseEvent: in.AdverseEvents} {
					for _, r := range list {
						if key := string(kind) + "|" + r.RecordID; v.Received.After(nestedAt[key]) {
							nestedAt[key] = v.Received
						}
					}
				}
			}
		}
		// The record's receipts: one per version the ingest stored, and a
		// mapping replay's correction of a version, a receipt of its own
		// (a safety review: a session withdrawn after a replay left the
		// item 9 and the Flag the replay had rewritten standing, at the
		// gateway and at the EHR), found in one search. Only the gateway's
		// own Provenances whose first entity is the record are believed.
		system := mapping.RecordSystem(identifierBase, src.System, k)
		ps, err := searchAll(st, "Provenance", "entity:identifier", system+"|"+src.RecordID)
		if err != nil {
			return nil, err
		}
		for _, p := range ps {
			prov, err := readReceipt(p)
			if err != nil {
				return nil, err
			}
			if prov.gateway && len(prov.Entity) > 0 && prov.Entity[0].What.Identifier.System == system &&
				prov.Entity[0].What.Identifier.Value == src.RecordID {
				take(prov)
			}
		}
	}
	// A record nested in an earlier version and sent on its own since is
	// that record's now, all of it: a correction of it on its own
	// rewrote only what it changed, and its unchanged parts, last written
	// by the session, are no leftover of the session's (a safety review:
	// a withdrawal retired a PHQ-9's panel and items and left its total,
	// item 9 and Flag standing).
	apart := map[audit.NestedRecord]bool{}
	for _, n := range nested {
		versions, err := st.LedgerVersions(src.System, n.Kind, n.Value)
		if err != nil {
			return nil, err
		}
		for _, v := range versions {
			if v.Received.After(nestedAt[n.Kind+"|"+n.Value]) {
				apart[n] = true
			}
		}
	}
	own := ownIdentifiers(res)
	var out []leftover
	for _, ref := range slices.Sorted(maps.Keys(wrote)) {
		typ, id, _ := strings.Cut(ref, "/")
		if !retiredByStatus[typ] && typ != "AdverseEvent" { // never the Patient
			continue
		}
		r, err := st.Read(typ, id)
		if errors.Is(err, store.ErrNotFound) || errors.Is(err, store.ErrGone) {
			continue // deleted: nothing to retire
		}
		if err != nil {
			return nil, err
		}
		if !wrote[ref][r.Version] {
			continue // another record (or client) wrote it since
		}
		doc, err := decode(r)
		if err != nil {
			return nil, err
		}
		if ownResource(doc, own) || str(doc, "status") == "entered-in-error" {
			continue
		}
		system, value := gatewayIdentifier(doc)
		if value == "" {
			continue
		}
		l := leftover{r: r, doc: doc, system: system, value: value}
		for i, n := range nested {
			// A record's parts are identified in its kind's system by its
			// record id (an assessment's panel), or the id, a hyphen and a
			// code (the record's own system is that system with "-record").
			if system == strings.TrimSuffix(n.System, "-record") && (value == n.Value || strings.HasPrefix(value, n.Value+"-")) {
				l.nested = &nested[i]
				break
			}
		}
		if l.nested != nil && apart[*l.nested] {
			continue // its record's, sent on its own since
		}
		l.uuid = mapping.ResourceUUID(system, value) // as the mapping names it (fullUrl; an AdverseEvent's id)
		if r.Type == "Flag" {
			if other, err := causeElsewhere(st, doc, wrote); err != nil || other {
				if err != nil {
					return nil, err
				}
				continue
			}
		}
		out = append(out, l)
	}
	return out, nil
}

// causeElsewhere reports whether a Flag (doc) stands on a resource, its
// flag-detail, whose current version no version of the record wrote
// (wrote: the versions each resource's versions the record wrote): a
// record nested in the session and sent on its own since with the same
// signal (a positive PHQ-9 item 9, suicidal ideation) rewrote its
// Observation or event but left the Flag as it stood. The Flag is then
// that record's, and stays, as its cause does: retiring it would retire a
// signal whose cause stands, and naming its cause by identifier (no entry
// of the Bundle writes it) is refused by the Flag's profile (a withdrawal
// answered 500, a safety review).
func causeElsewhere(st store.Tx, doc map[string]any, wrote map[string]map[int64]bool) (bool, error) {
	exts, _ := doc["extension"].([]any)
	for _, x := range exts {
		ext, _ := x.(map[string]any)
		if str(ext, "url") != mapping.ExtFlagDetail {
			continue
		}
		ref, _ := ext["valueReference"].(map[string]any)
		typ, id, ok := strings.Cut(str(ref, "reference"), "/")
		if !ok {
			continue
		}
		r, err := st.Read(typ, id)
		if errors.Is(err, store.ErrNotFound) || errors.Is(err, store.ErrGone) {
			continue
		}
		if err != nil {
			return false, err
		}
		if !wrote[typ+"/"+id][r.Version] {
			return true, nil
		}
	}
	return false, nil
}

// gatewayIdentifier is the first identifier of doc with a system and a
// value (the one the mapping minted: the mappings give each resource one).
func gatewayIdentifier(doc map[string]any) (system, value string) {
	for _, id := range identifiersOf(doc) {
		if s, v, _ := strings.Cut(id, "|"); s != "" && v != "" {
			return s, v
		}
	}
	return "", ""
}

// rewriter makes the references of stored resources portable (portable),
// for the entries of one Bundle, res: each reference is read once.
type rewriter struct {
	st      store.Tx
	fullURL map[string]string         // the fullUrl of res's entry writing each identifier (system|value)
	done    map[string]map[string]any // each reference's rewrite, nil to leave it
}

func newRewriter(st store.Tx, res *mapping.Result) *rewriter {
	rw := &rewriter{st: st, fullURL: map[string]string{}, done: map[string]map[string]any{}}
	for _, e := range res.Entries {
		if e.Method != fhir.HTTPVerbDELETE && e.IdentifierValue != "" {
			rw.fullURL[e.IdentifierSystem+"|"+e.IdentifierValue] = e.FullURL
		}
	}
	return rw
}

// portable rewrites the literal references of doc, a stored resource
// ("Patient/<id>": ids of the gateway's, which no EHR knows), into what
// the Bundle's receivers resolve, as the mapping writes them: the fullUrl
// of the Bundle's entry that writes the resource referenced (the record's
// Patient, its session's Procedure), found by identifier, else a logical
// reference by the resource's identifier. A reference to a resource that
// is gone or has no identifier stays as it is.
func (rw *rewriter) portable(doc any) error {
	switch v := doc.(type) {
	case []any:
		for _, x := range v {
			if err := rw.portable(x); err != nil {
				return err
			}
		}
	case map[string]any:
		if ref, ok := v["reference"].(string); ok {
			to, err := rw.ref(ref)
			if err != nil {
				return err
			}
			if to != nil {
				delete(v, "reference")
				maps.Copy(v, to)
			}
		}
		for k, x := range v {
			if k != "identifier" {
				if err := rw.portable(x); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// ref is the rewrite of one reference (portable): the members that
// replace "reference", nil to leave it.
func (rw *rewriter) ref(ref string) (map[string]any, error) {
	if to, ok := rw.done[ref]; ok {
		return to, nil
	}
	typ, id, ok := strings.Cut(ref, "/")
	if !ok || strings.ContainsAny(typ, ":#") || typ == "" || typ[0] < 'A' || typ[0] > 'Z' {
		return nil, nil // urn:uuid, #contained, an absolute URL: portable already
	}
	id, _, _ = strings.Cut(id, "/_history/")
	var to map[string]any
	r, err := rw.st.Read(typ, id)
	switch {
	case errors.Is(err, store.ErrNotFound) || errors.Is(err, store.ErrGone):
	case err != nil:
		return nil, err
	default:
		d, err := decode(r)
		if err != nil {
			return nil, err
		}
		for _, ident := range identifiersOf(d) {
			if u, ok := rw.fullURL[ident]; ok {
				to = map[string]any{"reference": u}
				break
			}
		}
		if system, value := gatewayIdentifier(d); to == nil && value != "" {
			to = map[string]any{"type": typ, "identifier": map[string]any{"system": system, "value": value}}
		}
	}
	rw.done[ref] = to
	return to, nil
}
