package bulk

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/engine"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/fhirwire"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/search"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
)

// A Group export discloses its members' data and nobody else's. A
// resource is in the export when it references a member (the patient
// compartment), but it may name other patients too: the Provenance of a
// transaction that wrote several patients' data targets all of them, the
// AuditEvent of a request that touched several names all of them, a Group
// lists its members. So every resource of a Group export but the members'
// Patients passes confiner.confine:
//
//   - a resource that names no Patient outside the Group is exported as it
//     is stored;
//   - a Provenance is exported as a copy that targets only the members' data
//     (each target's own version is read: it is kept when it is a member's
//     Patient, or a resource of this tenant that names no Patient outside the
//     Group), tagged SUBSETTED, without its narrative and signatures (both
//     were of the whole); left out when no target remains (target is 1..*),
//     or when one of its other references (agent, entity) is to something
//     outside the Group;
//   - any other resource that names a Patient outside the Group (an
//     AuditEvent, a Group, a resource of a client's naming two patients) is
//     left out.
//
// A Patient export is of every patient and a system export of everything:
// neither is confined.

// confiner decides what a Group export may hold of a resource.
type confiner struct {
	st      Store
	members map[string]bool // member Patient ids
	// inside caches resolve's answers by reference ("Type/id" or
	// "Type/id/_history/n"), within the tenant of the export.
	inside map[string]bool
}

// onlyMembers returns, of patients ("Patient/id" references), the
// Group's members.
func (c *confiner) onlyMembers(patients []string) []string {
	return slices.DeleteFunc(patients, func(p string) bool {
		id, _ := strings.CutPrefix(p, "Patient/")
		return !c.members[id]
	})
}

// maxConfineCache bounds confiner.inside: past it the cache starts again.
const maxConfineCache = 100_000

func newConfiner(st Store, members []string) *confiner {
	c := &confiner{st: st, members: make(map[string]bool, len(members)), inside: map[string]bool{}}
	for _, id := range members {
		c.members[id] = true
	}
	return c
}

// confine returns r as the export may hold it: r itself, a subsetted copy
// of a Provenance, or nil to leave it out. Errors are the store's.
func (c *confiner) confine(ctx context.Context, r *store.Resource) (*store.Resource, error) {
	if r.Type == "Patient" {
		// Only members' Patients are exported, and a Patient's references
		// to Patients (link) are to records of the same person.
		return r, nil
	}
	if r.Type != "Provenance" {
		if c.namesOutsider(r.Body) {
			return nil, nil
		}
		return r, nil
	}
	doc, err := engine.DecodeResource(r.Body)
	if err != nil {
		return nil, fmt.Errorf("Provenance/%s: %w", r.ID, err)
	}
	targets, _ := doc["target"].([]any)
	refs := references(doc, "target")
	var all []map[string]any
	for _, t := range targets {
		if m, ok := t.(map[string]any); ok {
			all = append(all, m)
		}
	}
	if err := c.resolve(ctx, r.Tenant, append(refs, all...)); err != nil {
		return nil, err
	}
	for _, ref := range refs {
		if !c.in(ref, false) {
			return nil, nil
		}
	}
	kept := make([]any, 0, len(targets))
	for _, t := range targets {
		if m, ok := t.(map[string]any); ok && c.in(m, true) {
			kept = append(kept, t)
		}
	}
	switch {
	case len(kept) == len(targets):
		return r, nil
	case len(kept) == 0:
		return nil, nil
	}
	doc["target"] = kept
	delete(doc, "text")      // a narrative of the whole
	delete(doc, "signature") // signatures of the whole
	engine.MarkSubsetted(doc)
	body, err := fhirwire.Marshal(doc)
	if err != nil {
		return nil, err
	}
	cp := *r
	cp.Body = body
	return &cp, nil
}

// namesOutsider reports whether body, a stored resource, has a reference
// to a Patient that is not a member: a literal reference to another
// Patient, or one that names a Patient it does not identify as a member
// (an absolute URL, a Reference.identifier). A body that cannot be
// decoded names one, for all anybody knows.
func (c *confiner) namesOutsider(body []byte) bool {
	if c.namesMembersOnly(body) {
		return false
	}
	doc, err := engine.DecodeResource(body)
	if err != nil {
		return true
	}
	return c.docNamesOutsider(doc)
}

// namesMembersOnly is namesOutsider's quick answer for most resources,
// without decoding body: true when every "Patient" in it is the start of
// a member's literal reference as the gateway stores it
// ("reference":"Patient/<id>" or ".../_history/<n>"). Without \u escapes
// a name decodes to the same bytes, so a reference to any other Patient,
// however written, has a "Patient" of another shape (false: decode).
func (c *confiner) namesMembersOnly(body []byte) bool {
	if bytes.Contains(body, []byte(`\u`)) {
		return false
	}
	const prefix = `"reference":"`
	for rest, off := body, 0; ; {
		i := bytes.Index(rest, []byte("Patient"))
		if i < 0 {
			return true
		}
		at := off + i
		if at < len(prefix) || string(body[at-len(prefix):at]) != prefix {
			return false
		}
		tail := body[at+len("Patient"):]
		end := bytes.IndexByte(tail, '"')
		if end < 0 {
			return false
		}
		e, ok := search.ReferenceEntry("Patient" + string(tail[:end]))
		if !ok || e.RefType != "Patient" || !c.members[e.RefID] {
			return false
		}
		rest, off = body[at+len("Patient"):], at+len("Patient")
	}
}

// docNamesOutsider is namesOutsider for a decoded resource.
func (c *confiner) docNamesOutsider(doc map[string]any) bool {
	for _, ref := range references(doc, "") {
		if id, patient := patientRef(ref); patient && !c.members[id] {
			return true
		}
	}
	return false
}

// in reports whether ref, a Reference of a Provenance, names only the
// members' data (resolve has run on it): a member's Patient, a resource
// of the export's tenant that names no Patient outside the Group, a
// contained resource, or, but for a target, something named by identifier
// alone that is not a Patient (a client, a source record). A target must
// be shown to be the members' data: one named by identifier alone is not.
func (c *confiner) in(ref map[string]any, target bool) bool {
	if id, patient := patientRef(ref); patient {
		return c.members[id]
	}
	s, _ := ref["reference"].(string)
	switch key, local := localRef(s); {
	case strings.HasPrefix(s, "#"):
		return true
	case s == "":
		return !target
	case !local:
		return false // another server's, or a urn: nothing says whose
	default:
		return c.inside[key]
	}
}

// resolve reads the resources refs name (those not cached yet), of tenant,
// and caches whether each names no Patient outside the Group. A resource
// that does not exist, is deleted or is another tenant's is not inside.
func (c *confiner) resolve(ctx context.Context, tenant string, refs []map[string]any) error {
	if len(c.inside) > maxConfineCache {
		clear(c.inside)
	}
	var current []string
	versioned := map[string]int64{}
	for _, ref := range refs {
		s, _ := ref["reference"].(string)
		key, local := localRef(s)
		if _, patient := patientRef(ref); !local || patient {
			continue
		}
		if _, ok := c.inside[key]; ok {
			continue
		}
		c.inside[key] = false // until read
		typ, id, version := splitRef(key)
		current = append(current, typ+"/"+id)
		if version > 0 {
			versioned[key] = version
		}
	}
	if len(current) == 0 {
		return nil
	}
	rs, err := c.st.ReadCurrent(ctx, current)
	if err != nil {
		return err
	}
	byRef := make(map[string]*store.Resource, len(rs))
	for _, r := range rs {
		byRef[r.Type+"/"+r.ID] = r
	}
	for _, ref := range current {
		if r := byRef[ref]; r != nil {
			c.inside[ref] = c.insideOf(tenant, r)
		}
	}
	for key, v := range versioned {
		typ, id, _ := splitRef(key)
		r := byRef[typ+"/"+id]
		if r == nil || r.Version != v {
			r, err = c.st.VRead(ctx, typ, id, v)
			if errors.Is(err, store.ErrNotFound) {
				continue
			}
			if err != nil {
				return err
			}
		}
		c.inside[key] = c.insideOf(tenant, r)
	}
	return nil
}

// insideOf reports whether r, a version read for a reference, is of
// tenant, not a deletion, and names no Patient outside the Group.
func (c *confiner) insideOf(tenant string, r *store.Resource) bool {
	if r.Deleted || r.Tenant != tenant {
		return false
	}
	if r.Type == "Patient" {
		return c.members[r.ID]
	}
	return !c.namesOutsider(r.Body)
}

// references returns the Reference objects in doc (objects with a
// reference string or a type string: a Reference may name its resource by
// identifier, or only say its type and display), contained resources'
// included, except those under doc's member skip.
func references(doc map[string]any, skip string) []map[string]any {
	var out []map[string]any
	var walk func(v any, depth int)
	walk = func(v any, depth int) {
		if depth > 1000 {
			return
		}
		switch t := v.(type) {
		case map[string]any:
			_, literal := t["reference"].(string)
			_, typed := t["type"].(string)
			if literal || typed {
				out = append(out, t)
			}
			for k, e := range t {
				if depth == 0 && k == skip {
					continue
				}
				walk(e, depth+1)
			}
		case []any:
			for _, e := range t {
				walk(e, depth+1)
			}
		}
	}
	walk(doc, 0)
	return out
}

// patientRef reports whether ref is a reference to a Patient, and the
// Patient's id when it is a literal reference to one of this server
// ("Patient/id", "Patient/id/_history/n"); id is "" for a Patient named
// otherwise (an absolute URL, a urn, or Reference.type Patient with an
// identifier or a display).
func patientRef(ref map[string]any) (id string, patient bool) {
	s, _ := ref["reference"].(string)
	if e, ok := search.ReferenceEntry(s); ok && e.RefType == "Patient" {
		return e.RefID, true
	}
	typ, _ := ref["type"].(string)
	if typ == "Patient" || strings.HasSuffix(typ, "/Patient") {
		return "", true
	}
	return "", false
}

// localRef returns the key of a literal reference to a resource of this
// server ("Type/id" or "Type/id/_history/n"), and whether s is one.
func localRef(s string) (key string, ok bool) {
	e, literal := search.ReferenceEntry(s)
	if !literal || e.RefID == "" {
		return "", false
	}
	key = e.RefType + "/" + e.RefID
	if _, v, ok := strings.Cut(s, "/_history/"); ok {
		if n, err := strconv.ParseInt(v, 10, 64); err == nil && n > 0 {
			key += "/_history/" + v
		}
	}
	return key, true
}

// splitRef splits a localRef key.
func splitRef(key string) (typ, id string, version int64) {
	parts := strings.Split(key, "/")
	if len(parts) == 4 {
		version, _ = strconv.ParseInt(parts[3], 10, 64)
	}
	return parts[0], parts[1], version
}
