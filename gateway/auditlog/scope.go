// Package auditlog is the gateway's audit trail as the application keeps it:
// the per-request Scope that collects what a request did, the Log that turns
// each scope into one AuditEvent (inside the data's transaction for a write,
// group-committed before the answer leaves for anything else), the
// Provenance of stored records and Bundles, the lineage an auditor follows
// from a source record to the EHR's answer, and the check of the hash chain.
//
// The record formats themselves (AuditEvent, Provenance, the chain hash) are
// package audit's; this package decides when and what is recorded.
package auditlog

import (
	"bytes"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/audit"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/auth"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/search"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
)

// Scope is one request as the application sees it: who asks (Principal)
// and, filled in as the request is served, what it touched, for its one
// AuditEvent. The entry point (the HTTP edge, a CLI command) creates it and
// passes it explicitly to every application call the request makes; code
// inside a database transaction records into it and nothing else.
type Scope struct {
	// Interaction is the audited interaction (audit.Interactions); ""
	// means the request is not audited.
	Interaction string
	// Principal is the authenticated caller (nil before authentication).
	Principal *auth.Principal
	// ClientID and Tenant name the caller in the record (ClientID is also
	// set from a failed authentication that named a client). ClientID is
	// the principal's Key: an external issuer's client is
	// <issuer>|<client id>.
	ClientID, Tenant string
	// AuthRequired tells that the deployment authenticates its callers
	// (not development mode): a record without a ClientID then names an
	// unauthenticated client (audit.UnauthenticatedClient), not
	// development mode's anonymous one.
	AuthRequired bool
	// Addr is the client's network address; RequestID and TraceID tie the
	// record to the response and the trace.
	Addr, RequestID, TraceID string
	// Base is the FHIR base URL the request was served at (the configured
	// public base, else the one the client used; "" outside HTTP): the
	// base of the fullUrls the answer carries. A reference search value or
	// conditional criteria below it name this server's resources.
	Base string
	// NoHTTP tells that the request had no HTTP exchange: a CLI command
	// on the database (its AuditEvent names no HTTP status:
	// audit.Record.NoHTTP). Status is then the one the API's twin of the
	// command would answer.
	NoHTTP bool
	// Recipient is the destination the gateway sent data to (a
	// delivery-send, which has no client).
	Recipient string
	// Target is the instance a failed interaction named (zero: none).
	Target audit.Entity
	// Description says, in fixed words and counts, what was done.
	Description string
	// Disclosed says, in fixed words, how much of the data named the
	// answer disclosed ("payload not disclosed"), when the description
	// says it: each tenant's share of an all-tenant request repeats it
	// (the share's description replaces the request's).
	Disclosed string
	// Rules are the rule ids a failed request broke (they replace the
	// description in the record).
	Rules []string

	// entities are the resource versions the request touched, patients
	// the patients it concerned, each once.
	entities once[audit.Entity]
	// refused are the instances failed entries of a Bundle targeted (a
	// PUT, PATCH or DELETE refused, or the entry that failed a
	// transaction), and those a DELETE that deleted nothing aimed at: the
	// AuditEvent names them, unversioned, as it names a failed instance
	// interaction's Target, so that an attempt on a resource shows in its
	// trail also when it was made in a Bundle (p45 F1: a batch deleting an
	// AuditEvent named only the request) or found nothing to delete. They
	// stay named when the transaction rolls back.
	refused once[audit.Entity]
	// identified are the things named by identifier (a source record, a
	// delivery); action is AuditEvent.action when not the interaction's.
	identified []audit.Identified
	action     string
	// covered are the versions a Provenance of this request lists: the
	// AuditEvent names that Provenance instead of each of them.
	covered map[audit.Entity]bool
	// written are the SHA-256 (hex) of the stored JSON of the versions
	// whose stored form the AuditEvent vouches for (the Provenance the
	// request wrote): `audit verify` compares them with the stored
	// versions.
	written map[audit.Entity]string
	// attempt and periodStart, periodEnd are a delivery-send's attempt as
	// the outbox records it and when it ran (audit.Record).
	attempt                *audit.Attempt
	periodStart, periodEnd time.Time
	patients               once[string]
	// concerned are the patients recorded by Concern or ConcernIn (a
	// stored patient the request concerned), not by touching a version:
	// they stay named when the transaction rolls back (RolledBack).
	concerned once[string]
	committed bool
	// owners, for an all-tenant caller's request only, are the tenants
	// whose the entities, patients and identified things recorded are,
	// where known when recorded (the rest are looked up when the
	// AuditEvent is made): each of those tenants gets its share of the
	// AuditEvent (Log, shares).
	owners *owners
}

// owners are the tenants the things an all-tenant request recorded belong
// to.
type owners struct {
	entities map[audit.Entity]string
	patients map[string]string
	// identified maps each thing named by identifier to every tenant it
	// was named in: identifiers are not unique across tenants (two clinics
	// may send records under the same source system and record id).
	identified map[audit.Identified][]string
}

// allTenants reports whether the request is an all-tenant caller's.
func (sc *Scope) allTenants() bool { return sc.Tenant == search.AllTenants }

// own records, for an all-tenant request, that the entity e (zero: none)
// and patients belong to tenant, unless recorded before. A resource kept
// in search.AllTenantsAudit (an all-tenant request's AuditEvent) is no
// tenant's (no share names it) and the patients it names are not known to
// be of that tenant: they are looked up.
func (sc *Scope) own(tenant string, e audit.Entity, patients []string) {
	if !sc.allTenants() || tenant == search.AllTenants {
		return
	}
	if sc.owners == nil {
		sc.owners = &owners{entities: map[audit.Entity]string{}, patients: map[string]string{}, identified: map[audit.Identified][]string{}}
	}
	if e.Type != "" {
		if _, ok := sc.owners.entities[e]; !ok {
			sc.owners.entities[e] = tenant
		}
	}
	if search.Reserved(tenant) {
		return
	}
	for _, p := range patients {
		if _, ok := sc.owners.patients[p]; !ok {
			sc.owners.patients[p] = tenant
		}
	}
}

// NewScope returns the scope of a request by p (nil: not yet
// authenticated) for interaction.
func NewScope(interaction string, p *auth.Principal) *Scope {
	sc := &Scope{Interaction: interaction}
	sc.SetPrincipal(p)
	return sc
}

// Sub is the scope of a part of sc's request that has an AuditEvent of
// its own (each record of a bulk import, each record a replay corrects),
// for interaction by p: the same request as sc's, by the same client
// (ClientID), from the same address, under its trace and request ids, with
// or without an HTTP exchange as sc. What sc recorded is not carried over.
func (sc *Scope) Sub(interaction string, p *auth.Principal) *Scope {
	sub := NewScope(interaction, p)
	sub.ClientID, sub.Addr, sub.TraceID, sub.RequestID, sub.NoHTTP = sc.ClientID, sc.Addr, sc.TraceID, sc.RequestID, sc.NoHTTP
	return sub
}

// SetPrincipal records the authenticated caller.
func (sc *Scope) SetPrincipal(p *auth.Principal) {
	sc.Principal = p
	if p != nil {
		sc.ClientID, sc.Tenant = p.Key(), p.Tenant
	}
}

// TenantOf is the tenant the request acts for ("" the default tenant;
// search.AllTenants an all-tenant operator).
func (sc *Scope) TenantOf() string {
	if sc.Principal != nil {
		return sc.Principal.Tenant
	}
	return ""
}

// Touch records resources the request touched (with their versions).
func (sc *Scope) Touch(rs ...*store.Resource) {
	for _, r := range rs {
		sc.TouchDoc(r, nil)
	}
}

// TouchDoc records one resource; doc is its decoded body when the caller
// has it at hand (nil: the patients are read from r.Body).
func (sc *Scope) TouchDoc(r *store.Resource, doc map[string]any) {
	if r == nil {
		return
	}
	e := audit.Entity{Type: r.Type, ID: r.ID, Version: r.Version}
	sc.entity(e)
	var patients []string
	switch {
	case r.Deleted:
	case doc != nil:
		patients = PatientsOf(r.Type, r.ID, doc)
	default:
		patients = PatientsIn(r.Type, r.ID, r.Body)
	}
	sc.patient(patients...)
	// A resource's patients are its tenant's; an AuditEvent's are not (a
	// refused request of nobody's, filed in the default tenant, names the
	// id it was sent: another clinic's patient, or one never held): they
	// are looked up, so that an all-tenant auditor's search puts each in
	// its own tenant's share, and a Patient no tenant holds in none (an
	// auditor's review: the default tenant's share named a clinic's).
	owned := patients
	if r.Type == "AuditEvent" {
		owned = nil
	}
	sc.own(r.Tenant, e, owned)
}

// TouchDeletion records a deletion del of the version was: the deletion
// names the patients was concerned, so that a patient's audit trail shows
// who removed their data. del nil is a DELETE of typ/id that deleted
// nothing (an id never used, deleted already, or another tenant's: all
// answered alike): the AuditEvent names typ/id unversioned, as it names a
// refused request's target, so that the attempt shows in the trail of
// that id.
func (sc *Scope) TouchDeletion(typ, id string, del, was *store.Resource) {
	if del == nil {
		sc.NameRefused(typ, id)
		return
	}
	e := audit.Entity{Type: del.Type, ID: del.ID, Version: del.Version}
	sc.entity(e)
	var patients []string
	if was != nil && !was.Deleted {
		patients = PatientsIn(was.Type, was.ID, was.Body)
	}
	sc.patient(patients...)
	sc.own(del.Tenant, e, patients)
}

// NameRefused records that a failed entry of the request targeted typ/id
// (an instance the caller has checked is one: a known type, a valid id).
func (sc *Scope) NameRefused(typ, id string) { sc.refused.add(audit.Entity{Type: typ, ID: id}) }

// refer records a resource the request disclosed by reference without
// reading it here (a lineage's Provenance, the resource it is about).
func (sc *Scope) refer(e audit.Entity) { sc.entity(e) }

// entity records an entity once: a request that reads a resource many
// times (a batch of searches that overlap) names it once.
func (sc *Scope) entity(e audit.Entity) { sc.entities.add(e) }

// once holds values in the order first added, each once; a set indexes
// them once they are many (a downloaded export file names thousands of
// patients, a batch of searches as many resources).
type once[T comparable] struct {
	list []T
	set  map[T]bool
}

// add adds v unless it is held.
func (o *once[T]) add(v T) {
	switch {
	case o.set != nil:
		if o.set[v] {
			return
		}
		o.set[v] = true
	case slices.Contains(o.list, v):
		return
	case len(o.list) >= 32:
		o.set = make(map[T]bool, 2*len(o.list))
		for _, x := range o.list {
			o.set[x] = true
		}
		o.set[v] = true
	}
	o.list = append(o.list, v)
}

// cover records that a Provenance lists targets.
func (sc *Scope) cover(targets []audit.Entity) {
	if sc.covered == nil {
		sc.covered = map[audit.Entity]bool{}
	}
	for _, t := range targets {
		sc.covered[t] = true
	}
}

// wrote records that the request wrote e as body (its stored JSON): the
// AuditEvent names e with body's SHA-256.
func (sc *Scope) wrote(e audit.Entity, body []byte) {
	if sc.written == nil {
		sc.written = map[audit.Entity]string{}
	}
	sc.written[e] = audit.SHA256(body)
}

// patient records patients the request concerned, once each.
func (sc *Scope) patient(refs ...string) {
	for _, p := range refs {
		sc.patients.add(p)
	}
}

// Concern records patients ("Patient/id") the request concerned without
// touching a resource of theirs: the stored patient of a record re-sent
// or refused, the patients whose data a downloaded file holds, the
// patients a lineage answer is about.
func (sc *Scope) Concern(patients ...string) {
	refs := patientRefs(patients...)
	sc.patient(refs...)
	for _, p := range refs {
		sc.concerned.add(p)
	}
}

// ConcernIn is Concern for patients known to be tenant's (an all-tenant
// request's AuditEvent then needs not look them up for their tenant's
// share).
func (sc *Scope) ConcernIn(tenant string, patients ...string) {
	sc.Concern(patients...)
	sc.own(tenant, audit.Entity{}, patientRefs(patients...))
}

// Name records something the request concerned that is named by
// identifier (once).
func (sc *Scope) Name(id audit.Identified) {
	if !slices.Contains(sc.identified, id) {
		sc.identified = append(sc.identified, id)
	}
}

// NameIn is Name for something of tenant: an all-tenant request's
// AuditEvent names it in tenant's share too (what Name records, of no
// known tenant, only the whole AuditEvent names).
func (sc *Scope) NameIn(tenant string, id audit.Identified) {
	sc.Name(id)
	if !sc.allTenants() || search.Reserved(tenant) || tenant == search.AllTenants {
		return
	}
	sc.own(tenant, audit.Entity{}, nil)
	if !slices.Contains(sc.owners.identified[id], tenant) {
		sc.owners.identified[id] = append(sc.owners.identified[id], tenant)
	}
}

// NameRecord records the native source record the request concerned,
// by the identifier its Provenance names it by (system | record id).
func (sc *Scope) NameRecord(system, recordID string) {
	sc.Name(recordIdentified(system, recordID))
}

// NameRecordIn is NameRecord for a record of tenant (NameIn).
func (sc *Scope) NameRecordIn(tenant, system, recordID string) {
	sc.NameIn(tenant, recordIdentified(system, recordID))
}

// recordIdentified names a source record by its identifier.
func recordIdentified(system, recordID string) audit.Identified {
	return audit.Identified{System: system, Value: recordID, Description: "the source record"}
}

// SetAction sets the AuditEvent's action (C, R, U, D or E) where it is
// not the interaction's own.
func (sc *Scope) SetAction(action string) { sc.action = action }

// Patients returns the patients recorded so far.
func (sc *Scope) Patients() []string { return sc.patients.list }

// Identified returns what was named by identifier so far.
func (sc *Scope) Identified() []audit.Identified { return sc.identified }

// Reset forgets what an earlier attempt of the request's transaction
// recorded: each attempt records what it does afresh.
func (sc *Scope) Reset() {
	sc.refused = once[audit.Entity]{}
	sc.entities, sc.patients, sc.concerned, sc.covered, sc.written, sc.identified, sc.action = once[audit.Entity]{}, once[string]{}, once[string]{}, nil, nil, nil, ""
	sc.owners = nil
}

// RolledBack forgets what the request's transaction wrote, once it ended
// without committing (its fn failed, or its commit did: a connection
// terminated at COMMIT): the versions it touched (written or not, they
// are not stored as recorded), the Provenance it wrote and what that
// covers, and the patients known only from those versions (a Patient
// minted there was never stored). The request's AuditEvent, written
// after it, then names nothing as written: `audit verify` would otherwise
// look for a receipt that never existed and report it deleted (p37 F2).
// What the request concerned otherwise stays named: the records it named
// by identifier, the stored patients it concerned (Concern), its Target.
func (sc *Scope) RolledBack() {
	sc.entities, sc.covered, sc.written = once[audit.Entity]{}, nil, nil
	sc.patients = once[string]{}
	for _, p := range sc.concerned.list {
		sc.patients.add(p)
	}
}

// Committed reports whether the request's AuditEvent was committed with
// its data.
func (sc *Scope) Committed() bool { return sc.committed }

// MarkCommitted records that the AuditEvent was committed with the data
// (the caller's transaction that ran AppendTx committed).
func (sc *Scope) MarkCommitted() { sc.committed = true }

// auditTenant is the tenant a request's AuditEvent belongs to: the
// client's, or search.AllTenantsAudit for an all-tenant caller (whose
// AuditEvent all-tenant readers see, and no one tenant: each touched
// tenant gets its share, Log.shares).
func (sc *Scope) auditTenant() string {
	if sc.allTenants() {
		return search.AllTenantsAudit
	}
	return sc.Tenant
}

// PatientsIn returns the patients a stored resource is about: itself for a
// Patient, else its subject or patient reference when that is a Patient.
// Only those two members are decoded (this runs for every search match).
//
// A Provenance, an AuditEvent and a Group are about the patients R4 says
// they are (their patient search parameter, the patient compartment): the
// Patients a Provenance targets, an AuditEvent's entities and agents that
// are Patients, a Group's members that are Patients (aboutPatients). So
// are the types whose patient parameter (search.PatientsParam) is
// elsewhere than a top-level subject or patient: a Coverage's
// beneficiary, a Task's for, an Appointment's participant.actor, ...
// (search.PatientReferences, which decodes the whole body).
func PatientsIn(typ, id string, body []byte) []string {
	if typ == "Patient" {
		return []string{"Patient/" + id}
	}
	if listsPatients[typ] {
		return aboutPatients(typ, body)
	}
	if deepPatients()[typ] {
		var doc map[string]any
		d := json.NewDecoder(bytes.NewReader(body))
		d.UseNumber()
		if d.Decode(&doc) != nil {
			return nil
		}
		return search.PatientReferences(typ, doc)
	}
	if subject, patient, ok := topRefs(body); ok {
		return patientRefs(subject, patient)
	}
	var refs struct {
		Subject, Patient struct {
			Reference string `json:"reference"`
		}
	}
	_ = json.Unmarshal(body, &refs) // a member of another shape is just not a patient
	return patientRefs(refs.Subject.Reference, refs.Patient.Reference)
}

// topRefs reads, from body, a stored resource (valid JSON), the
// references of its members subject and patient as json.Unmarshal into
// PatientsIn's struct would, without decoding the rest: a search reads it
// for every match, and encoding/json checked and scanned the whole body
// into reflection for two members (29 µs an audited read, issue 19). ok
// is false for anything it leaves to json.Unmarshal: a body that is not
// an object, escapes in a key or in a reference, a key that matches
// subject, patient or reference only without regard to case, a reference
// that is not valid UTF-8.
func topRefs(body []byte) (subject, patient string, ok bool) {
	sc := jsonScan{b: body}
	err := sc.object(func(key []byte) error {
		var dst *string
		switch {
		case string(key) == "subject":
			dst = &subject
		case string(key) == "patient":
			dst = &patient
		case bytes.EqualFold(key, []byte("subject")) || bytes.EqualFold(key, []byte("patient")):
			return errScan
		default:
			return sc.skip()
		}
		if sc.peek() != '{' {
			return sc.skip() // not a Reference: json.Unmarshal leaves the field too
		}
		return sc.object(func(key []byte) error {
			switch {
			case string(key) == "reference":
				if sc.peek() != '"' {
					return sc.skip()
				}
				v, err := sc.str()
				if err != nil || bytes.IndexByte(v, '\\') >= 0 || !utf8.Valid(v) {
					return errScan
				}
				*dst = string(v)
				return nil
			case bytes.EqualFold(key, []byte("reference")):
				return errScan
			}
			return sc.skip()
		})
	})
	return subject, patient, err == nil
}

// errScan stops a jsonScan: the input is left to encoding/json.
var errScan = errors.New("not scanned")

// jsonScan walks a JSON text that is known to be valid, skipping what it
// does not need; anything unexpected is errScan.
type jsonScan struct {
	b []byte
	i int
}

// peek skips white space and returns the next byte (0 at the end).
func (s *jsonScan) peek() byte {
	for s.i < len(s.b) {
		switch c := s.b[s.i]; c {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return c
		}
	}
	return 0
}

// str reads a string and returns its raw content, escapes included.
func (s *jsonScan) str() ([]byte, error) {
	if s.peek() != '"' {
		return nil, errScan
	}
	start := s.i + 1
	for i := start; i < len(s.b); i++ {
		switch s.b[i] {
		case '\\':
			i++
		case '"':
			s.i = i + 1
			return s.b[start:i], nil
		}
	}
	return nil, errScan
}

// object reads an object, calling member with each key, positioned at
// the key's value, which member must read.
func (s *jsonScan) object(member func(key []byte) error) error {
	if s.peek() != '{' {
		return errScan
	}
	s.i++
	if s.peek() == '}' {
		s.i++
		return nil
	}
	for {
		key, err := s.str()
		if err != nil || bytes.IndexByte(key, '\\') >= 0 {
			return errScan
		}
		if s.peek() != ':' {
			return errScan
		}
		s.i++
		if err := member(key); err != nil {
			return err
		}
		switch s.peek() {
		case ',':
			s.i++
		case '}':
			s.i++
			return nil
		default:
			return errScan
		}
	}
}

// skip skips one value.
func (s *jsonScan) skip() error {
	switch s.peek() {
	case '"':
		_, err := s.str()
		return err
	case '{', '[':
		depth := 0
		for ; s.i < len(s.b); s.i++ {
			switch s.b[s.i] {
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					s.i++
					return nil
				}
			case '"':
				if _, err := s.str(); err != nil {
					return err
				}
				s.i-- // at the closing quote: the loop steps past it
			}
		}
		return errScan
	case 0:
		return errScan
	}
	for ; s.i < len(s.b); s.i++ { // a number, true, false or null
		switch s.b[s.i] {
		case ',', '}', ']', ' ', '\t', '\n', '\r':
			return nil
		}
	}
	return nil
}

// listsPatients are the types whose patients are a list of references
// (aboutPatients), not their subject or patient.
var listsPatients = map[string]bool{"Provenance": true, "AuditEvent": true, "Group": true}

// aboutPatients are the patients a Provenance, AuditEvent or Group (body)
// is about, as R4's patient search parameters and patient compartment
// give them: Provenance.target, AuditEvent.agent.who and
// AuditEvent.entity.what, Group.member.entity, where they are Patients.
func aboutPatients(typ string, body []byte) []string {
	type ref struct {
		Reference string `json:"reference"`
	}
	var r struct {
		Target    []ref `json:"target"`
		Extension []struct {
			URL            string `json:"url"`
			ValueReference ref    `json:"valueReference"`
		} `json:"extension"`
		Agent []struct {
			Who ref `json:"who"`
		} `json:"agent"`
		Entity []struct {
			What ref `json:"what"`
		} `json:"entity"`
		Member []struct {
			Entity ref `json:"entity"`
		} `json:"member"`
	}
	_ = json.Unmarshal(body, &r) // a member of another shape is just not a patient
	var refs []string
	switch typ {
	case "Provenance":
		for _, t := range r.Target {
			refs = append(refs, t.Reference)
		}
		for _, x := range r.Extension { // a receipt's patient (audit.ExtReceiptPatient)
			if x.URL == audit.ExtReceiptPatient {
				refs = append(refs, x.ValueReference.Reference)
			}
		}
	case "AuditEvent":
		for _, a := range r.Agent {
			refs = append(refs, a.Who.Reference)
		}
		for _, e := range r.Entity {
			refs = append(refs, e.What.Reference)
		}
	case "Group":
		for _, m := range r.Member {
			refs = append(refs, m.Entity.Reference)
		}
	}
	out := patientRefs(refs...)
	slices.Sort(out)
	return slices.Compact(out)
}

// deepPatients are the types whose patients are neither a list
// (listsPatients) nor at a top-level subject or patient: those of their
// search.PatientsParam, at its paths.
var deepPatients = sync.OnceValue(func() map[string]bool {
	m := map[string]bool{}
	for _, t := range search.Types() {
		paths := search.PatientPaths(t)
		if !listsPatients[t] && len(paths) > 0 && !(len(paths) == 1 && (paths[0] == "subject" || paths[0] == "patient")) {
			m[t] = true
		}
	}
	return m
})

// PatientsOf is PatientsIn for a decoded resource.
func PatientsOf(typ, id string, doc map[string]any) []string {
	if typ == "Patient" {
		return []string{"Patient/" + id}
	}
	if listsPatients[typ] {
		body, err := json.Marshal(doc)
		if err != nil {
			return nil
		}
		return aboutPatients(typ, body)
	}
	if deepPatients()[typ] {
		return search.PatientReferences(typ, doc)
	}
	ref := func(k string) string {
		m, _ := doc[k].(map[string]any)
		r, _ := m["reference"].(string)
		return r
	}
	return patientRefs(ref("subject"), ref("patient"))
}

// patientRefs keeps the references to a Patient, without their version.
func patientRefs(refs ...string) []string {
	var out []string
	for _, ref := range refs {
		if !strings.HasPrefix(ref, "Patient/") {
			continue
		}
		if i := strings.Index(ref, "/_history/"); i > 0 {
			ref = ref[:i]
		}
		out = append(out, ref)
	}
	return out
}
