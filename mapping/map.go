// Package mapping turns validated native ketamine-clinic records into FHIR R4
// resources and a transaction Bundle. It is pure: no I/O, no clock, no HTTP,
// no SQL. The same record always maps to byte-identical output.
//
// The flow is Decode (JSON already validated against its schema by package
// schemas) -> Check (clinical rules, *RuleError) -> Map (resources).
// Codes come from the one table in codes.go.
package mapping

import (
	"encoding/json"
	"fmt"

	fhir "github.com/samply/golang-fhir-models/fhir-models/fhir"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/fhirwire"
)

// Version is the mapping version recorded with everything the gateway maps.
// Bump it whenever the output for an unchanged record changes.
const Version = "2.5.1"

// Options tune a mapping. The zero value is valid.
type Options struct {
	// IdentifierBase is the namespace of identifier systems
	// (default DefaultIdentifierBase).
	IdentifierBase string
	// Update marks a newer version of a record whose resources the receiver
	// already holds: clinical entries become conditional updates
	// (PUT Type?identifier=...) and Observations get status "amended".
	Update bool
	// UpdateNested marks, in a session, the nested records (by their
	// Entry.Record pointer, "/vitals/0") whose resources the receiver
	// already holds from an earlier version sent on its own: they are
	// mapped as in Update, the rest of the session as a first version.
	UpdateNested map[string]bool
	// Safety holds the thresholds of the safety signals (nil:
	// DefaultSafety()).
	Safety *Safety
	// SessionLater leaves out of Map's checks the one that a standalone
	// adverse event with causality names its session
	// (adverse-event.causality-without-session), for a caller that knows
	// the session the record is stored in (the ingest: a record stays in
	// its session) and checks it then (CheckSessionNamed). What Map makes
	// of such a record without its session is not meant to be used.
	SessionLater bool
}

func (o Options) base() string {
	if o.IdentifierBase == "" {
		return DefaultIdentifierBase
	}
	return o.IdentifierBase
}

// Record is a decoded native record of one kind.
type Record interface {
	// Kind is the record's kind.
	Kind() Kind
	// Env is the record's source and patient.
	Env() *Envelope
}

// Kind implements Record.
func (r *Assessment) Kind() Kind { return KindAssessment }

// Kind implements Record.
func (r *Vitals) Kind() Kind { return KindVitals }

// Kind implements Record.
func (r *Infusion) Kind() Kind { return KindInfusion }

// Kind implements Record.
func (r *AdverseEvent) Kind() Kind { return KindAdverseEvent }

// Kind implements Record.
func (r *Session) Kind() Kind { return KindSession }

// Env implements Record.
func (e *Envelope) Env() *Envelope { return e }

// ErrUnknownKind is returned by Decode for a kind that does not exist.
var ErrUnknownKind = fmt.Errorf("unknown record kind")

// Decode decodes a schema-valid document of the given kind. It returns
// ErrUnknownKind (wrapped) for an unknown kind and the json error otherwise;
// neither quotes record values.
func Decode(kind Kind, doc []byte) (Record, error) {
	var rec Record
	switch kind {
	case KindAssessment:
		rec = &Assessment{}
	case KindVitals:
		rec = &Vitals{}
	case KindInfusion:
		rec = &Infusion{}
	case KindAdverseEvent:
		rec = &AdverseEvent{}
	case KindSession:
		rec = &Session{}
	default:
		return nil, fmt.Errorf("decode %q: %w", kind, ErrUnknownKind)
	}
	if err := json.Unmarshal(doc, rec); err != nil {
		return nil, fmt.Errorf("decode %s record: %w", kind, err)
	}
	return rec, nil
}

// Entry is one resource of a mapped record with the request that writes it.
type Entry struct {
	FullURL      string
	ResourceType string
	// Resource is the resource (a samply/golang-fhir-models value, or a
	// local type where samply's marshalling is wrong; see medAdmin).
	Resource any
	// IdentifierSystem and IdentifierValue identify the resource; a re-sent
	// record always yields the same pair.
	IdentifierSystem, IdentifierValue string
	// Method, URL and IfNoneExist form the Bundle entry request.
	// IfNoneExist is also what the gateway's own store matches on.
	Method      fhir.HTTPVerb
	URL         string
	IfNoneExist string
	// DeliverMRNs are the MRNs (each with a system) the entry request's
	// ifNoneExist in the transaction Bundle matches besides the clinic
	// identifier (DeliverCriteria), as DeliverMatching set them: an EHR
	// that knows only some hospitals' MRNs is sent only theirs. Not
	// otherwise part of the Bundle.
	DeliverMRNs []MRN
	// Record is the JSON pointer of the nested record of a session that
	// produced the resource ("/vitals/2"); "" for the record itself (and a
	// session's infusion). Not part of the Bundle.
	Record string
	// Instrument is, for the Observation that stands for an assessment
	// (its panel, or the score of an instrument without items), the
	// instrument's native name; "" otherwise. Not part of the Bundle.
	Instrument string
	// Withdraws marks an entry that only withdraws what an earlier
	// version of the record may have made (a DetectedIssue
	// entered-in-error, a Flag no longer active): the mapping cannot know
	// whether one is stored, so the ingest drops the entry where none is,
	// and a corrected or withdrawn record never makes one, and where the
	// stored one is retired already (entered-in-error, or of the entry's
	// status), so a later version does not write it again. Not part of
	// the Bundle.
	Withdraws bool
}

// Result is the mapped form of one record.
type Result struct {
	Kind Kind
	// Source is the record's source (system, record id, version).
	Source  Source
	Entries []Entry
	// Warnings are what the record leaves unknown that a clinician reading
	// it must know (an incomplete suicide screen): the record is mapped
	// and stored all the same, and the answer carries them as warning
	// issues. Never a value from the record.
	Warnings []Violation
}

// Map checks rec's clinical rules and maps it. It returns a *RuleError when a
// rule is broken; nothing else can fail for a schema-valid record.
func Map(rec Record, opts Options) (*Result, error) {
	if err := check(rec, opts.SessionLater); err != nil {
		return nil, err
	}
	m := newMapper(rec.Env(), opts)
	switch r := rec.(type) {
	case *Assessment:
		m.assessment(&r.AssessmentBody, r.Source.RecordID, "")
	case *Vitals:
		m.vitals(&r.VitalsBody, r.Source.RecordID, "")
		m.retireSessionIssue(&r.VitalsBody)
	case *Infusion:
		m.infusion(&r.InfusionBody, r.Source.RecordID, sessionExtras{})
	case *AdverseEvent:
		m.adverseEvent(&r.AdverseEventBody, r.Source.RecordID, nil)
	case *Session:
		m.session(r)
	}
	return &Result{Kind: rec.Kind(), Source: rec.Env().Source, Entries: m.entries, Warnings: warnings(rec, opts)}, nil
}

// warnings collects the warnings of a checked record, in pointer order.
// A withdrawal (source.status entered-in-error) has none: what a record
// leaves unknown or short of practice is nothing to act on once it is
// withdrawn.
func warnings(rec Record, opts Options) []Violation {
	if rec.Env().Source.Status == "entered-in-error" {
		return nil
	}
	var w violations
	switch r := rec.(type) {
	case *Assessment:
		assessmentWarnings(&r.AssessmentBody, "", &w)
	case *Infusion:
		infusionWarnings(&r.InfusionBody, "", &w)
	case *AdverseEvent:
		adverseEventWarnings(&r.AdverseEventBody, "", &w)
	case *Session:
		infusionWarnings(&r.Infusion, "/infusion", &w)
		sessionWarnings(r, opts.safety(), &w)
		for i := range r.Assessments {
			assessmentWarnings(&r.Assessments[i], fmt.Sprintf("/assessments/%d", i), &w)
		}
		for i := range r.AdverseEvents {
			adverseEventWarnings(&r.AdverseEvents[i], fmt.Sprintf("/adverseEvents/%d", i), &w)
		}
	}
	if len(w) == 0 {
		return nil
	}
	return w.err(rec.Kind()).(*RuleError).Violations
}

// Transaction renders the result as a FHIR transaction Bundle in the
// gateway's wire types, each resource rendered once (MarshalResource).
func (r *Result) Transaction() (fhirwire.Bundle, error) {
	raws := make([][]byte, len(r.Entries))
	for i, e := range r.Entries {
		raw, err := MarshalResource(e.Resource)
		if err != nil {
			return fhirwire.Bundle{}, fmt.Errorf("marshal %s: %w", e.ResourceType, err)
		}
		raws[i] = raw
	}
	return r.bundle(raws), nil
}

// TransactionFrom renders the transaction Bundle as compact FHIR JSON from
// the entries' resources already rendered (raws[i] is Entries[i].Resource
// as MarshalResource renders it), without rendering them again.
func (r *Result) TransactionFrom(raws [][]byte) ([]byte, error) {
	if len(raws) != len(r.Entries) {
		return nil, fmt.Errorf("transaction of %d entries from %d resources", len(r.Entries), len(raws))
	}
	return fhirwire.Marshal(r.bundle(raws))
}

// MarshalResource renders a mapped resource as compact FHIR JSON, the way
// the gateway writes every resource (fhirwire.Marshal: resourceType first,
// no HTML escaping), in one pass over a resource that marshals itself
// (every samply resource does).
func MarshalResource(v any) ([]byte, error) { return fhirwire.Marshal(v) }

// bundle assembles the transaction Bundle.
func (r *Result) bundle(raws [][]byte) fhirwire.Bundle {
	b := fhirwire.Bundle{ResourceType: "Bundle", Type: fhirwire.TypeTransaction, Entry: make([]fhirwire.Entry, 0, len(r.Entries))}
	for i, e := range r.Entries {
		entry := fhirwire.Entry{FullURL: e.FullURL,
			Request: &fhirwire.Request{Method: e.Method.Code(), URL: e.URL, IfNoneExist: e.DeliverCriteria()}}
		if e.Method != fhir.HTTPVerbDELETE {
			entry.Resource = raws[i]
		}
		b.Entry = append(b.Entry, entry)
	}
	return b
}

// TransactionJSON renders the transaction Bundle as indented FHIR JSON.
func (r *Result) TransactionJSON() ([]byte, error) {
	b, err := r.Transaction()
	if err != nil {
		return nil, err
	}
	return fhirwire.MarshalIndent(b)
}

// mapper accumulates the entries of one record.
type mapper struct {
	opts      Options
	src       Source
	withdrawn bool
	patient   fhir.Reference
	entries   []Entry
}

func newMapper(env *Envelope, opts Options) *mapper {
	m := &mapper{opts: opts, src: env.Source, withdrawn: env.Source.Status == "entered-in-error"}
	if m.withdrawn {
		m.opts.Update = true
	}
	m.patientEntry(&env.Patient)
	return m
}

// ident returns the identifier of a thing the source system numbers.
func (m *mapper) ident(ns, value string) ident {
	return ident{System: identSystem(m.opts.base(), m.src.System, ns), Value: value}
}

// practitioner is a logical reference to a clinician of the source system.
func (m *mapper) practitioner(p *Person) *fhir.Reference {
	if p == nil {
		return nil
	}
	r := logical("Practitioner", m.ident(nsPractitioner, p.ID), p.Name)
	return &r
}

// add appends a clinical resource: created with a conditional create on its
// identifier, or, in update mode, written with a conditional update.
func (m *mapper) add(resourceType string, id ident, res any) {
	e := Entry{
		FullURL: id.fullURL(), ResourceType: resourceType, Resource: res,
		IdentifierSystem: id.System, IdentifierValue: id.Value,
	}
	if m.opts.Update {
		e.Method, e.URL = fhir.HTTPVerbPUT, resourceType+"?"+id.search()
	} else {
		e.Method, e.URL, e.IfNoneExist = fhir.HTTPVerbPOST, resourceType, id.search()
	}
	m.entries = append(m.entries, e)
}

// sessionRef references the infusion session Procedure: a literal reference
// when the session is in this Bundle, a logical one otherwise.
func (m *mapper) sessionRef(sessionID string, inBundle bool) *fhir.Reference {
	if sessionID == "" {
		return nil
	}
	id := m.ident(nsSession, sessionID)
	if inBundle {
		r := literal(id.fullURL())
		return &r
	}
	r := logical("Procedure", id, "")
	return &r
}
