package replay

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/audit"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/auditlog"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/engine"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/fhirwire"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/ingest"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/outcome"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/search"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
	"github.com/ketamine-gateway/ketamine-gateway/mapping"
	"github.com/samply/golang-fhir-models/fhir-models/fhir"
)

// KindReplay is the job kind of a replay asked over HTTP.
const KindReplay = "replay"

// remapped is a stored record mapped again and matched with what is
// stored.
type remapped struct {
	l       *store.Ledger
	rec     mapping.Record // the record decoded
	res     *mapping.Result
	raws    [][]byte
	entries []*match
	removed []*store.Resource
	// refs are the record's last answer's locations ("Type/id"), by entry.
	refs []string
}

// match is one resource the mapping makes now and what is stored of it.
type match struct {
	i      int            // in res.Entries
	doc    map[string]any // the mapped resource, references rewritten to the stored ids
	stored *store.Resource
	// gone is, for a resource not stored (stored nil), the one the record
	// wrote that is deleted since ("Type/id"; goneAt), at version
	// goneVersion: a withdrawal or a client's DELETE, which a replay does
	// not undo. The other mapped resources' references to it name it, as
	// the stored ones do.
	gone        string
	goneVersion int64
	// changes are the differences (nil: unchanged, or added when stored
	// is nil); skipped why they are left as they are.
	changes []PathChange
	skipped string
}

// skippedOther is why a difference in a resource another source changed
// since is left as it is (what the reports say before it).
const skippedOther = "the resource was changed since by another source (a client's write or another record)"

// record replays one ledger entry: the latest version of a record.
func (s *Service) record(ctx context.Context, sc *auditlog.Scope, l *store.Ledger, opts Options) (RecordResult, error) {
	r := RecordResult{Tenant: l.Tenant, Source: l.RecordSource(), Kind: l.Kind, RecordID: l.RecordID, Version: l.Version,
		MappingVersion: l.MappingVersion}
	if s.beforeCompare != nil {
		s.beforeCompare(l)
	}
	if len(l.Input) == 0 {
		r.Status = StatusNoInput
		return r, nil
	}
	if withdraws(l.Input) {
		// A withdrawn record's resources are retired (entered-in-error,
		// deleted): a mapping change is nothing to correct in them, nor to
		// send to the EHRs (a mapping developer's review: an apply wrote
		// new versions of a withdrawn session's resources).
		r.Status = StatusWithdrawn
		return r, nil
	}
	m, refused, err := s.remap(ctx, l, opts.ShowValues)
	if err != nil {
		return r, err
	}
	if refused != nil {
		r.refuse(refused)
		return r, nil
	}
	for _, mt := range m.entries {
		if mt.stored != nil && mt.stored.Type == "Patient" {
			r.patient = "Patient/" + mt.stored.ID
			break
		}
	}
	if m.differs() {
		if err := s.guard(ctx, m); err != nil {
			return r, err
		}
	}
	r.Resources = m.diffs()
	r.Status = status(r.Resources)
	if r.Status == StatusChanged && !opts.Downgrade && newerMapping(l.MappingVersion, s.cfg.MappingVersion) {
		// Stored by a newer mapping (another build's replay, or records a
		// newer gateway stored): this build's would undo its corrections.
		r.Resources = nil
		r.refuse(outcome.New(outcome.Conflict, "conflict", "replay-newer-mapping", fmt.Sprintf(
			"the record was stored by mapping %s, newer than this build's %s: left as it is (replay with the newer "+
				"build, or pass --downgrade / downgrade=true to write this mapping's resources back)", l.MappingVersion, s.cfg.MappingVersion)))
		return r, nil
	}
	if r.Status == StatusChanged {
		// What an apply would write, checked as it would be, in a dry run
		// too: a profile the mapping's output breaks refuses the record
		// (the mapping is at fault; the issue names the element), not the
		// whole replay.
		if err := s.checkOutput(m); err != nil {
			if !slices.Contains(outcome.Rules(err), ingest.RuleMappingNonconformant) {
				return r, err
			}
			r.Resources = nil
			r.refuse(err)
			return r, nil
		}
	}
	if opts.Apply && r.Status == StatusChanged {
		if err := s.apply(ctx, sc, m, opts, &r); err != nil {
			if !recordFault(err) {
				return r, err
			}
			// What the record's resources break (a rule the engine
			// enforces on the write) refuses the record, written nothing:
			// the run goes on with the others (mapping.md §10).
			r.Resources = nil
			r.refuse(err)
		}
	}
	return r, nil
}

// withdraws reports whether a stored record version (its input)
// withdraws the record (source.status entered-in-error).
func withdraws(input []byte) bool {
	var in struct {
		Source struct{ Status string } `json:"source"`
	}
	return json.Unmarshal(input, &in) == nil && in.Source.Status == "entered-in-error"
}

// recordFault reports whether err, an apply's, is the record's: a rule
// its resources break as written, which refuses that record only. A
// failure of the gateway or the database (Internal, Unavailable, a
// context's end) stops the run.
func recordFault(err error) bool {
	if len(outcome.Rules(err)) == 0 {
		return false
	}
	switch k, _ := outcome.From(err); k {
	case outcome.Invalid, outcome.Unprocessable, outcome.PreconditionFailed, outcome.Conflict, outcome.NotFound, outcome.Gone:
		return true
	}
	return false
}

// refuse marks r refused by err's issues: each rule and where.
func (r *RecordResult) refuse(err error) {
	r.Status = StatusRefused
	_, issues := outcome.From(err)
	for _, i := range issues {
		r.Issues = append(r.Issues, Issue{Rule: i.Rule, Pointer: i.Pointer, Expression: i.Expression})
	}
}

// newerMapping reports whether mapping version stored (major.minor.patch)
// is newer than mine. A version either does not parse ("" for a record
// stored before versions were kept) is not newer.
func newerMapping(stored, mine string) bool {
	a, okA := semver(stored)
	b, okB := semver(mine)
	return okA && okB && slices.Compare(a, b) > 0
}

// semver is a major.minor.patch version's numbers.
func semver(v string) ([]int, bool) {
	parts := strings.Split(v, ".")
	if len(parts) != 3 {
		return nil, false
	}
	out := make([]int, 3)
	for i, p := range parts {
		n, err := strconv.Atoi(p)
		if err != nil || n < 0 {
			return nil, false
		}
		out[i] = n
	}
	return out, true
}

// remap maps the record's stored input again and matches each resource
// with the stored one. refused is the classified error of a record the
// schema or the rules refuse now; err a store error.
func (s *Service) remap(ctx context.Context, l *store.Ledger, values bool) (m *remapped, refused, err error) {
	kind := mapping.Kind(l.Kind)
	p := s.cfg.Ingest.Pipeline()
	if err := p.ValidateRecord(kind, l.Input); err != nil {
		return nil, err, nil
	}
	rec, err := ingest.Decode(kind, l.Input)
	if err != nil {
		return nil, err, nil
	}
	if rec, err = s.inSession(ctx, l, rec); err != nil {
		return nil, nil, err
	}
	mopts := s.cfg.Ingest.Options(l.Tenant)
	mopts.Update = false
	res, err := s.cfg.Map(rec, mopts)
	if err != nil {
		return nil, err, nil
	}
	m, refused, err = s.remapAs(ctx, l, rec, res, values)
	if err != nil || refused != nil {
		return nil, refused, err
	}
	// A new version of a record is stored in update mode, whose PHQ-9
	// and C-SSRS Observations always carry their Flag (inactive when no
	// longer positive): mapped as a first version, that stored Flag would
	// look like a resource the mapping no longer makes (m.removed). And a
	// signal a replay of the record raised (a Flag, a session's
	// DetectedIssue, under lowered thresholds) is stored without the
	// record's answer listing it: mapped as a first version, the record
	// would never retire it (a safety review). Update mode makes the
	// retiring entries.
	mopts.Update = true
	ures, err := s.cfg.Map(rec, mopts)
	if err != nil {
		return m, nil, nil // (the first version's mapping stands)
	}
	if len(m.removed) == 0 {
		// Matched again in update mode only where something only update
		// mode makes is stored (most records' update mode makes an
		// inactive Flag nobody stored): a search by its identifier, not
		// a second comparison of every resource.
		stored, err := s.storesMore(ctx, l.Tenant, res, ures)
		if err != nil || !stored {
			return m, nil, err
		}
	}
	u, refused, err := s.remapAs(ctx, l, rec, ures, values)
	if err != nil || refused != nil {
		return nil, refused, err
	}
	extra, stored := onlyUpdate(m, u)
	switch {
	case !stored:
	case len(u.removed) < len(m.removed):
		return u, nil, nil
	case len(extra) > 0 && len(m.removed) == 0:
		// Only what a replay of this record wrote last: a signal an
		// earlier version's ingest left as stored (a later version of a
		// corrected event, a session version that leaves its critical
		// pre-dose record out) stays so.
		raised, err := s.replayWrote(ctx, m, extra)
		if err != nil {
			return nil, nil, err
		}
		if raised {
			return u, nil, nil
		}
	}
	return m, nil, nil
}

// replayWrote reports whether a replay of m's record wrote the current
// version of the resources stored of extra (the Provenance that lists
// that version names the record first): of at least one, and of each but
// those another record wrote last (a nested record's Flag that record's
// own replay raised: the session's other form's, which compare leaves to
// it; a mapping developer's review: such a Flag kept the session's own
// DetectedIssue from being retired). One the record's own ingest wrote
// last is left as stored.
func (s *Service) replayWrote(ctx context.Context, m *remapped, extra []*match) (bool, error) {
	self := mapping.RecordSystem(s.cfg.IdentifierBase, m.l.RecordSource(), mapping.Kind(m.l.Kind)) + "|" + m.l.RecordID
	own := 0
	for _, mt := range extra {
		ref := mt.stored.Type + "/" + mt.stored.ID
		provs, err := s.provenancesBy(ctx, m.l.Tenant, url.Values{"target": {ref}})
		if err != nil {
			return false, err
		}
		i := slices.IndexFunc(provs, func(p written) bool { return p.targets[ref] == mt.stored.Version })
		switch {
		case i < 0:
			return false, nil // no Provenance lists it: not the gateway's record's to judge
		case provs[i].of != self:
			continue // another record's (the record's other form's)
		case !provs[i].replay:
			return false, nil
		}
		own++
	}
	return own > 0, nil
}

// entryKey identifies a mapped entry's resource: its type and identifier.
func entryKey(e mapping.Entry) string {
	return e.ResourceType + "|" + e.IdentifierSystem + "|" + e.IdentifierValue
}

// storesMore reports whether tenant stores a resource u makes and first
// does not (found by its identifier).
func (s *Service) storesMore(ctx context.Context, tenant string, first, u *mapping.Result) (bool, error) {
	made := map[string]bool{}
	for _, e := range first.Entries {
		made[entryKey(e)] = true
	}
	for _, e := range u.Entries {
		if made[entryKey(e)] || e.IdentifierValue == "" {
			continue
		}
		r, err := s.find(ctx, tenant, e.ResourceType, e.IdentifierSystem+"|"+e.IdentifierValue)
		if err != nil || r != nil {
			return r != nil, err
		}
	}
	return false, nil
}

// remapAs matches res, rec mapped, with what is stored.
func (s *Service) remapAs(ctx context.Context, l *store.Ledger, rec mapping.Record, res *mapping.Result, values bool) (*remapped, error, error) {
	raws, err := s.cfg.Ingest.Pipeline().Marshal(res)
	if err != nil {
		return nil, err, nil
	}
	m := &remapped{l: l, rec: rec, res: res, raws: raws}
	if err := s.match(ctx, m, values, true); err != nil {
		return nil, nil, err
	}
	return m, nil, nil
}

// onlyUpdate returns the resources u, the record mapped in update mode,
// makes that m, the record mapped as a first version, does not; stored
// says that each of them is stored (a first version, stored without an
// inactive Flag, is not given one: u is then not how it was stored).
func onlyUpdate(m, u *remapped) (extra []*match, stored bool) {
	first := map[string]bool{}
	for _, e := range m.res.Entries {
		first[entryKey(e)] = true
	}
	for _, mt := range u.entries {
		if first[entryKey(u.res.Entries[mt.i])] {
			continue
		}
		if mt.stored == nil {
			return nil, false
		}
		extra = append(extra, mt)
	}
	return extra, true
}

// answerRefs are the locations ("Type/id") of a record's answer (a
// transaction-response Bundle), by entry ("" where none).
func answerRefs(response []byte) []string {
	var resp fhirwire.Bundle
	_ = json.Unmarshal(response, &resp) // an answer without entries matches nothing
	refs := make([]string, len(resp.Entry))
	for i, e := range resp.Entry {
		if e.Response == nil {
			continue
		}
		parts := strings.Split(e.Response.Location, "/")
		if len(parts) >= 2 {
			refs[i] = parts[0] + "/" + parts[1]
		}
	}
	return refs
}

// inSession is rec, the record l holds, in the session its stored
// resources are part of when it names none (ingest.InSession), as the
// ingest mapped it: a record stays in its session.
func (s *Service) inSession(ctx context.Context, l *store.Ledger, rec mapping.Record) (mapping.Record, error) {
	return ingest.InSession(rec, func() ([]*store.Resource, error) {
		found, err := s.cfg.Store.ReadCurrent(ctx, answerRefs(l.Response))
		if err != nil {
			return nil, err
		}
		var own []*store.Resource
		for _, r := range found {
			if r.Tenant == l.Tenant {
				own = append(own, r)
			}
		}
		return own, nil
	}, func(typ, id string) (*store.Resource, error) { return s.cfg.Store.Read(ctx, typ, id) })
}

// match finds the stored resource of each mapped entry, rewrites the
// mapped resources' references to the stored ids, and compares. A mapped
// entry is matched by its identifier with the resource at its own place
// in the record's last answer (with fast, the usual case, checked without
// decoding and confirmed when the resources differ), else with any
// resource of that answer, else by a search of the tenant.
func (s *Service) match(ctx context.Context, m *remapped, values, fast bool) error {
	refs := answerRefs(m.l.Response)
	m.refs = refs
	stored, err := s.cfg.Store.ReadCurrent(ctx, refs)
	if err != nil {
		return err
	}
	byRef := map[string]*store.Resource{}
	for _, r := range stored {
		if r.Tenant == m.l.Tenant {
			byRef[r.Type+"/"+r.ID] = r
		}
	}
	docs := map[*store.Resource]map[string]any{} // the stored resources decoded
	storedDoc := func(r *store.Resource) (map[string]any, error) {
		if d, ok := docs[r]; ok {
			return d, nil
		}
		d, err := engine.DecodeResource(r.Body)
		if err != nil {
			return nil, fmt.Errorf("stored %s/%s: %w", r.Type, r.ID, err)
		}
		docs[r] = d
		return d, nil
	}
	var byIdent map[string]*store.Resource // built when the fast match fails
	ids := map[string]string{}
	used := map[*store.Resource]bool{}
	for i, e := range m.res.Entries {
		if m.raws[i] == nil {
			continue
		}
		mt := &match{i: i}
		key := e.IdentifierSystem + "|" + e.IdentifierValue
		if fast && i < len(refs) {
			if r := byRef[refs[i]]; r != nil && r.Type == e.ResourceType && carries(r.Body, e.IdentifierSystem, e.IdentifierValue) {
				mt.stored = r
			}
		}
		if mt.stored == nil {
			if byIdent == nil {
				byIdent = map[string]*store.Resource{}
				for _, r := range byRef {
					d, err := storedDoc(r)
					if err != nil {
						return err
					}
					for _, k := range identifiers(d) {
						byIdent[r.Type+"|"+k] = r
					}
				}
			}
			mt.stored = byIdent[e.ResourceType+"|"+key]
		}
		if mt.stored == nil && e.IdentifierValue != "" {
			// Not in the record's last answer: a resource the mapping now
			// makes, which may be stored (by another record) already.
			if mt.stored, err = s.find(ctx, m.l.Tenant, e.ResourceType, key); err != nil {
				return err
			}
		}
		if mt.stored == nil && e.Withdraws {
			// An entry that only retires what an earlier version made (a
			// Flag no longer active, a DetectedIssue entered-in-error) is
			// nothing to make where none is stored, as the ingest drops it
			// (dropPhantoms): a withdrawn adverse event's Flag, say.
			continue
		}
		if mt.stored != nil {
			used[mt.stored] = true
			ids[e.FullURL] = mt.stored.Type + "/" + mt.stored.ID
		}
		m.entries = append(m.entries, mt)
	}
	for _, mt := range m.entries {
		if mt.stored != nil {
			continue
		}
		if mt.gone, mt.goneVersion, err = s.goneAt(ctx, m, mt); err != nil {
			return err
		}
		if mt.gone != "" {
			// Not written again: the references to it stay as stored.
			ids[m.res.Entries[mt.i].FullURL] = mt.gone
		}
	}
	rw := fhirwire.Rewriter{IDs: ids}
	logical := ingest.LogicalResolver(func(typ, system, value string) (*store.Resource, error) {
		return s.find(ctx, m.l.Tenant, typ, system+"|"+value)
	})
	for _, mt := range m.entries {
		doc, err := engine.DecodeResource(m.raws[mt.i])
		if err != nil {
			return fmt.Errorf("mapped resource: %w", err)
		}
		if err := rw.Rewrite(doc); err != nil {
			return err
		}
		mt.doc = doc
		if mt.stored == nil || same(mt.stored, doc) {
			continue
		}
		// A reference the mapping writes logically where the stored one
		// is literal (a nested record's session, kept as stored when the
		// record was amended on its own) names the same resource: no
		// difference, and an apply keeps the stored form.
		if err := ingest.StoredForms(doc, mt.stored, logical); err != nil {
			return err
		}
		if same(mt.stored, doc) {
			continue
		}
		sd, err := storedDoc(mt.stored)
		if err != nil {
			return err
		}
		e := m.res.Entries[mt.i]
		if fast && e.IdentifierValue != "" && !slices.Contains(identifiers(sd), e.IdentifierSystem+"|"+e.IdentifierValue) {
			// The quick match was wrong after all: match again, exactly.
			m.entries, m.removed = nil, nil
			return s.match(ctx, m, values, false)
		}
		mt.changes = diff(mt.stored.Type, sd, doc, values)
	}
	for _, r := range stored {
		if r.Tenant == m.l.Tenant && !used[r] {
			m.removed = append(m.removed, r)
		}
	}
	return nil
}

// carries reports whether a stored body holds the identifier system and
// value (a quick check, confirmed by a decode when the resources differ).
func carries(body []byte, system, value string) bool {
	sys, _ := json.Marshal(system)
	val, _ := json.Marshal(value)
	return bytes.Contains(body, append([]byte(`"value":`), val...)) && bytes.Contains(body, append([]byte(`"system":`), sys...))
}

// same reports whether doc, a mapped resource with its references
// resolved, is exactly the stored resource r: doc with r's id and version
// metadata (and, for an Observation, a status a new version or a
// correction gave it) renders as r's stored bytes. Most resources of a
// replay are unchanged; this spares decoding them.
func same(r *store.Resource, doc map[string]any) bool {
	c := maps.Clone(doc)
	c["id"] = r.ID
	meta, _ := c["meta"].(map[string]any)
	meta = maps.Clone(meta)
	if meta == nil {
		meta = map[string]any{}
	}
	meta["versionId"] = strconv.FormatInt(r.Version, 10)
	meta["lastUpdated"] = r.LastUpdated.UTC().Format("2006-01-02T15:04:05.000Z")
	c["meta"] = meta
	statuses := []any{c["status"]}
	if r.Type == "Observation" && c["status"] == "final" {
		statuses = append(statuses, "amended", "corrected")
	}
	for _, st := range statuses {
		if st != nil {
			c["status"] = st
		}
		b, err := json.Marshal(c)
		if err == nil && bytes.Equal(b, r.Body) {
			return true
		}
	}
	return false
}

// find returns the current resource of typ with identifier key
// ("system|value") in tenant, or nil.
func (s *Service) find(ctx context.Context, tenant, typ, key string) (*store.Resource, error) {
	q, err := search.ParseConditional(typ, "identifier="+key)
	if err != nil {
		return nil, nil // an identifier no search can name: nothing stored by it
	}
	q.Tenant = tenant
	page, err := s.cfg.Store.Search(ctx, q)
	if err != nil {
		return nil, err
	}
	if len(page.Matches) != 1 {
		return nil, nil
	}
	return page.Matches[0], nil
}

// guard marks the differing resources that another source wrote since the
// record did: their current version is not one a Provenance of this record
// (its ingest, or a replay of it) lists. A conditional create the record
// only matched (a Patient another record of the person wrote: no
// Provenance of this record lists it) is not the record's to compare: its
// differences are dropped and it counts as unchanged.
//
// A record nested in a session and the same record sent on its own are
// one record (docs/records.md, record identity): a resource whose current
// version the other form of the record wrote (the record sent on its own
// after the session that nests it, or a session nesting it after it was
// sent on its own) was written by a later version of the same record,
// not by another source. The replay of that later version compares it;
// this older version's differences are dropped too.
func (s *Service) guard(ctx context.Context, m *remapped) error {
	src := m.l.RecordSource()
	sys := mapping.RecordSystem(s.cfg.IdentifierBase, src, mapping.Kind(m.l.Kind))
	self := sys + "|" + m.l.RecordID
	provs, err := s.provenances(ctx, m.l.Tenant, sys, m.l.RecordID)
	if err != nil {
		return err
	}
	if len(provs) == 0 {
		// The audit trail was off (or the id names nothing a search can):
		// nothing tells another writer apart, but a resource deleted since
		// is still not made again.
		return s.deleted(ctx, m, nil, nil)
	}
	own := map[string]int64{}   // the versions this record wrote
	other := map[string]int64{} // the versions the record's other form wrote
	add := func(ps []written) {
		for _, p := range ps {
			into := other
			if p.of == self {
				into = own
			}
			for ref, v := range p.targets {
				if v > into[ref] {
					into[ref] = v
				}
			}
		}
	}
	// A standalone record's search finds the Provenances of the sessions
	// that nest it (they name their nested records); a session's nested
	// records sent on their own are found by their own identifiers.
	add(provs)
	if sess, ok := m.rec.(*mapping.Session); ok {
		searched := map[string]bool{}
		for _, mt := range m.entries {
			e := m.res.Entries[mt.i]
			if mt.stored == nil || len(mt.changes) == 0 || e.Record == "" || searched[e.Record] {
				continue
			}
			searched[e.Record] = true
			kind, id := nestedAt(sess, e.Record)
			if id == "" {
				continue
			}
			ps, err := s.provenances(ctx, m.l.Tenant, mapping.RecordSystem(s.cfg.IdentifierBase, src, kind), id)
			if err != nil {
				return err
			}
			add(ps)
		}
	}
	if err := s.deleted(ctx, m, own, other); err != nil {
		return err
	}
	// staleVitals: a nested vitals record's part is stored as its own
	// later version wrote it.
	staleVitals := false
	for _, mt := range m.entries {
		if mt.stored == nil || len(mt.changes) == 0 {
			continue
		}
		ref := mt.stored.Type + "/" + mt.stored.ID
		v, wrote := own[ref]
		if mt.stored.Type == "Patient" && !(wrote && v == 1 && mt.stored.Version == 1) {
			// Ingest writes a person's demographics once, with the Patient
			// the first record creates; later it changes only the Patient's
			// identifiers (an MRN added or changed, the demographics kept),
			// and an administrator corrects demographics through the FHIR
			// API (docs/mapping.md 8). So unless this record created the
			// current version, only its identifiers are the record's to
			// compare: a name it would map otherwise is no difference of
			// the record, and a client's correction no divergence.
			mt.changes = slices.DeleteFunc(mt.changes, func(c PathChange) bool { return !strings.HasPrefix(c.Path, "Patient.identifier") })
			if len(mt.changes) == 0 {
				continue
			}
			// Identifiers a later record of the person wrote (an MRN
			// changed) are that record's, compared when it is replayed.
			if !(wrote && v == mt.stored.Version) {
				later, err := s.patientWrittenByRecord(ctx, m.l.Tenant, src, ref, mt.stored.Version)
				if err != nil {
					return err
				}
				if later {
					mt.changes = nil
					continue
				}
			}
		}
		switch {
		case wrote && v == mt.stored.Version:
			// The record wrote what is stored: its differences stand.
		case other[ref] == mt.stored.Version:
			// A later version of the same record, in its other form, wrote
			// what is stored: compared when that version is replayed.
			mt.changes = nil
			if strings.HasPrefix(m.res.Entries[mt.i].Record, "/vitals/") {
				staleVitals = true // (see below)
			}
		case !wrote && m.res.Entries[mt.i].IfNoneExist != "":
			// A conditional create (the Patient) that matched what another
			// record of the person (or a client) had written: the record
			// never wrote it and never will (DECISIONS.md 7), so what it
			// would make differently is not a difference of the record.
			mt.changes = nil
		default:
			mt.skipped = skippedOther
		}
	}
	// A session's own safety signal (its DetectedIssue; a nested
	// record's Flag is that record's) stands on its pre-dose vitals:
	// where a nested vitals record's own later version (sent on its own)
	// changed what is stored, the session's copy of it is stale, and a
	// signal the replay derives from it would contradict the values
	// stored (a critical pre-dose pressure corrected upward on its own,
	// the issue retired from the session's older value: a review). Such a
	// signal is left as stored, reported; ingest keeps it so too
	// (session.critical-issue-stands). Another nested record changed on
	// its own (an adverse event, an assessment) plays no part in it: the
	// signal is compared (a review: frozen by an adverse event's
	// correction, it was reported diverged on every run, never raised).
	if _, ok := m.rec.(*mapping.Session); ok && staleVitals {
		for _, mt := range m.entries {
			e := m.res.Entries[mt.i]
			if mt.stored != nil && len(mt.changes) > 0 && mt.skipped == "" && e.Record == "" &&
				(mt.stored.Type == "DetectedIssue" || mt.stored.Type == "Flag") {
				mt.skipped = skippedStaleNested
			}
		}
	}
	return nil
}

// skippedStaleNested is why a session's safety signal is left as it is
// when a record it nests was changed since on its own.
const skippedStaleNested = "a pre-dose vitals record the session nests was changed since by a later version of its own, sent on its own: " +
	"the session's copy of it is stale, and so would this safety signal be; send the session document again with its pre-dose vitals as they now stand to have it rewritten"

// deleted finds, for each resource the mapping makes that is not stored,
// whether the record wrote it and it is deleted since (its place in the
// record's last answer, or its deterministic id, reads as gone): a
// replay does not bring a deleted resource back. A deletion that a later
// version of the record wrote (a withdrawal, in either form of the
// record: own and other are the versions its Provenances list) is the
// record's own: nothing to report; one by another writer (a client's
// DELETE) is reported, left as it is.
func (s *Service) deleted(ctx context.Context, m *remapped, own, other map[string]int64) error {
	nested := map[string]int64{}  // the versions the nested records' Provenances list
	searched := map[string]bool{} // the nested records (pointers) whose Provenances are in nested
	for _, mt := range m.entries {
		if mt.stored != nil || mt.gone == "" {
			continue
		}
		e := m.res.Entries[mt.i]
		if sess, ok := m.rec.(*mapping.Session); ok && e.Record != "" && !searched[e.Record] {
			searched[e.Record] = true
			if kind, rid := nestedAt(sess, e.Record); rid != "" {
				ps, err := s.provenances(ctx, m.l.Tenant, mapping.RecordSystem(s.cfg.IdentifierBase, m.l.RecordSource(), kind), rid)
				if err != nil {
					return err
				}
				for _, p := range ps {
					for ref, v := range p.targets {
						nested[ref] = max(nested[ref], v)
					}
				}
			}
		}
		if v := mt.goneVersion; own[mt.gone] != v && other[mt.gone] != v && nested[mt.gone] != v {
			mt.skipped = skippedDeleted
		}
	}
	return nil
}

// goneAt returns the resource the record wrote for mt, a mapped resource
// not stored, when it is deleted since ("Type/id" and the deletion's
// version; "" when it is not): the resource at mt's place in the record's
// last answer, or at its deterministic id, that reads as gone in the
// record's tenant.
func (s *Service) goneAt(ctx context.Context, m *remapped, mt *match) (string, int64, error) {
	e := m.res.Entries[mt.i]
	var typ, id string
	if mt.i < len(m.refs) {
		if t, i, _ := strings.Cut(m.refs[mt.i], "/"); t == e.ResourceType {
			typ, id = t, i
		}
	}
	if id == "" && e.Method == fhir.HTTPVerbPUT && !strings.Contains(e.URL, "?") {
		t, i, _ := strings.Cut(e.URL, "/")
		typ, id = t, ingest.ResourceID(m.l.Tenant, i)
	}
	if id == "" {
		return "", 0, nil
	}
	r, err := s.cfg.Store.Read(ctx, typ, id)
	switch {
	case errors.Is(err, store.ErrGone):
	case err != nil && !errors.Is(err, store.ErrNotFound):
		return "", 0, err
	default:
		return "", 0, nil
	}
	if r == nil || r.Tenant != m.l.Tenant {
		return "", 0, nil
	}
	return typ + "/" + id, r.Version, nil
}

// skippedDeleted is why a resource deleted since by another writer is
// not made again.
const skippedDeleted = "the resource was deleted since by another source (a client's DELETE); a replay does not bring it back"

// written is what one Provenance says: the record it is of (its first
// entity's identifier, "system|value") and the resource versions it
// lists ("Type/id" to version).
type written struct {
	of      string
	targets map[string]int64
	// replay says it is a mapping replay's (an entity names the mapping
	// version it replaced).
	replay bool
}

// patientWrittenByRecord reports whether version v of the Patient ref
// was written by the ingest of a record of source (any kind): a later
// record of the person that changed its identifiers.
func (s *Service) patientWrittenByRecord(ctx context.Context, tenant, source, ref string, v int64) (bool, error) {
	provs, err := s.provenancesBy(ctx, tenant, url.Values{"target": {ref}})
	if err != nil {
		return false, err
	}
	for _, p := range provs {
		if p.targets[ref] != v {
			continue
		}
		system, _, _ := strings.Cut(p.of, "|")
		for _, k := range mapping.Kinds() {
			if system == mapping.RecordSystem(s.cfg.IdentifierBase, source, k) {
				return true, nil
			}
		}
	}
	return false, nil
}

// provenances returns the Provenances in tenant that name the record
// system|value as an entity: those of the record itself and of the
// sessions that nest it. None for an id no search can name.
func (s *Service) provenances(ctx context.Context, tenant, system, value string) ([]written, error) {
	return s.provenancesBy(ctx, tenant, url.Values{"entity:identifier": {system + "|" + value}})
}

// provenancesBy returns the Provenances in tenant the search params
// select (at most 1000), as written.
func (s *Service) provenancesBy(ctx context.Context, tenant string, params url.Values) ([]written, error) {
	params.Set("_count", "1000")
	q, err := search.Parse("Provenance", params, false)
	if err != nil {
		return nil, nil
	}
	q.Tenant = tenant
	page, err := s.cfg.Store.Search(ctx, q)
	if err != nil {
		return nil, err
	}
	var out []written
	for _, p := range page.Matches {
		var prov struct {
			Target []struct {
				Reference string `json:"reference"`
			} `json:"target"`
			Entity []struct {
				What struct {
					Identifier struct{ System, Value string } `json:"identifier"`
				} `json:"what"`
			} `json:"entity"`
		}
		if err := json.Unmarshal(p.Body, &prov); err != nil {
			continue
		}
		w := written{targets: map[string]int64{}}
		if len(prov.Entity) > 0 {
			w.of = prov.Entity[0].What.Identifier.System + "|" + prov.Entity[0].What.Identifier.Value
		}
		for _, e := range prov.Entity {
			w.replay = w.replay || e.What.Identifier.System == audit.SystemMappingVersion
		}
		for _, t := range prov.Target {
			if ref, n, ok := audit.Versioned(t.Reference); ok && n > w.targets[ref] {
				w.targets[ref] = n
			}
		}
		out = append(out, w)
	}
	return out, nil
}

// nestedAt is the kind and record id of the record a session nests at
// pointer ("/assessments/2", mapping.Entry.Record); "" for none.
func nestedAt(sess *mapping.Session, pointer string) (mapping.Kind, string) {
	member, i, ok := strings.Cut(strings.TrimPrefix(pointer, "/"), "/")
	n, err := strconv.Atoi(i)
	if !ok || err != nil || n < 0 {
		return "", ""
	}
	switch {
	case member == "vitals" && n < len(sess.Vitals):
		return mapping.KindVitals, sess.Vitals[n].RecordID
	case member == "assessments" && n < len(sess.Assessments):
		return mapping.KindAssessment, sess.Assessments[n].RecordID
	case member == "adverseEvents" && n < len(sess.AdverseEvents):
		return mapping.KindAdverseEvent, sess.AdverseEvents[n].RecordID
	}
	return "", ""
}

// differs reports whether anything the mapping makes differs from what is
// stored.
func (m *remapped) differs() bool {
	for _, mt := range m.entries {
		if mt.stored == nil || len(mt.changes) > 0 {
			return true
		}
	}
	return len(m.removed) > 0
}

// diffs lists the differences, resource by resource.
func (m *remapped) diffs() []ResourceDiff {
	var out []ResourceDiff
	for _, mt := range m.entries {
		switch {
		case mt.gone != "" && mt.skipped == "":
			// deleted since by a later version of the record: its own
		case mt.gone != "":
			out = append(out, ResourceDiff{Resource: mt.gone, Change: OpAdded, Skipped: mt.skipped})
		case mt.stored == nil:
			out = append(out, ResourceDiff{Resource: m.res.Entries[mt.i].ResourceType, Change: OpAdded})
		case len(mt.changes) > 0:
			out = append(out, ResourceDiff{Resource: mt.stored.Type + "/" + mt.stored.ID, Change: OpChanged,
				Changes: mt.changes, Skipped: mt.skipped})
		}
	}
	for _, r := range m.removed {
		out = append(out, ResourceDiff{Resource: r.Type + "/" + r.ID, Change: OpRemoved,
			Skipped: "the mapping no longer makes this resource; a replay does not delete it"})
	}
	return out
}

// status is a record's status from its differences (remapped.diffs).
func status(diffs []ResourceDiff) string {
	any, applicable := false, false
	for _, d := range diffs {
		any = true
		if d.Skipped == "" {
			applicable = true
		}
	}
	switch {
	case applicable:
		return StatusChanged
	case any:
		return StatusDiverged
	}
	return StatusUnchanged
}

// identifiers are a resource's identifiers as "system|value" (R4 has
// identifier as a list, and as one object on a few types).
func identifiers(doc map[string]any) []string {
	var out []string
	add := func(v any) {
		id, _ := v.(map[string]any)
		sys, _ := id["system"].(string)
		val, _ := id["value"].(string)
		if val != "" {
			out = append(out, sys+"|"+val)
		}
	}
	switch v := doc["identifier"].(type) {
	case []any:
		for _, x := range v {
			add(x)
		}
	case map[string]any:
		add(v)
	}
	return out
}
