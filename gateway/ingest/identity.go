package ingest

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/outcome"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/search"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
	"github.com/ketamine-gateway/ketamine-gateway/mapping"
)

// One Patient per person per tenant (docs/mapping.md, "Patient matching"):
// a record's Patient is the stored Patient with its clinic identifier; a
// hospital MRN with a system belongs to at most one Patient, which the
// database enforces with a unique key claimed in the transaction that
// stores the record, as conditional create does. Nothing ever merges two
// Patients.

// RuleIdentityConflict is the rule id of a record whose MRN belongs to
// another Patient.
const RuleIdentityConflict = "patient.identity-conflict"

// The holders of an MRN a record's patient conflicts with, as the
// remedy of the conflict depends on them (identityConflict).
const (
	// holderSameSystem: the MRN's Patient carries a clinic patient id of
	// the record's source system (another patient.id of that system).
	holderSameSystem = iota
	// holderOtherSystem: it carries none of the record's source system:
	// made from another source system's records of the tenant, or written
	// through the FHIR API. Patient ids are per source system, so the
	// clinic has no patient id to send that the gateway would know.
	holderOtherSystem
	// holderKnownID: the record's patient id is known (its own Patient),
	// and the MRN belongs to another Patient.
	holderKnownID
)

// identityConflict refuses a record whose MRN belongs to another Patient
// (holder, one of the holder* cases), naming both fields and never their
// values (nor the other Patient), with what the clinic, or the gateway's
// administrator, can do about it.
func identityConflict(holder int) *outcome.Error {
	var msg string
	switch holder {
	case holderSameSystem:
		msg = "this patient id is not the one the gateway holds for this MRN: this source system sent the patient " +
			"with this MRN under another patient id; the gateway never merges patients: send the record with the " +
			"patient id the gateway knows (the one this source system used before), or correct the MRN"
	case holderOtherSystem:
		msg = "this MRN belongs to a patient the gateway holds from another source system of this tenant (or one " +
			"written through its FHIR API), and patient ids are per source system: no patient id of this source " +
			"system is linked to that patient. The gateway never merges patients on its own: if it is the same " +
			"person, the gateway's administrator links them by adding this record's patient identifier (system " +
			"<identifier base>/<source.system>/patient, value patient.id) to that Patient through the FHIR API " +
			"(PUT /fhir/Patient/<id>), then the record is accepted when sent again; otherwise correct the MRN"
	default:
		msg = "the gateway holds this patient id for one patient and this MRN for another; the gateway never merges " +
			"patients: correct the MRN, or, if the two are one person, ask the gateway's administrator to resolve it"
	}
	return &outcome.Error{Kind: outcome.Conflict, Issues: []outcome.Issue{
		{Severity: "error", Code: "conflict", Rule: RuleIdentityConflict, Pointer: "/patient/id", Expression: "patient.id",
			Message: msg},
		{Severity: "error", Code: "conflict", Rule: RuleIdentityConflict, Pointer: "/patient/mrn/value", Expression: "patient.mrn.value",
			Message: "this MRN (value and system) belongs to another patient of this tenant"},
	}}
}

// RuleIdentityAmbiguous is the rule id of a record whose clinic patient
// id more than one stored Patient carries.
const RuleIdentityAmbiguous = "patient.identity-ambiguous"

// errIdentityAmbiguous refuses a record whose clinic patient id more than
// one stored Patient carries: Patients written through the FHIR API in
// the gateway's own identifier namespace. The clinic cannot resolve it.
var errIdentityAmbiguous = &outcome.Error{Kind: outcome.Conflict, Issues: []outcome.Issue{
	{Severity: "error", Code: "conflict", Rule: RuleIdentityAmbiguous, Pointer: "/patient/id", Expression: "patient.id",
		Message: "more than one Patient stored at the gateway carries this patient id (written through its FHIR API), so the " +
			"record's patient is not known: the record is not stored; the gateway's administrator must remove or correct " +
			"the extra Patient, then send the record again"},
}}

// identity is what the store knows of a record's patient.
type identity struct {
	// patientID is the stored Patient with the record's clinic identifier
	// ("" for a new patient).
	patientID string
	// mrnKey is the unique key of the record's MRN ("" without an MRN that
	// has a system).
	mrnKey string
	// mrnNew: the stored Patient does not carry the record's MRN (added or
	// changed): a new version of the stored Patient is written with it
	// (nextPatient).
	mrnNew bool
	// stored is the stored Patient (patientID) decoded; nil for a new one.
	stored map[string]any
	// holder is the other Patient that holds the record's MRN (set with
	// identityConflict).
	holder string
	// unapplied are the demographics (Patient elements: name, birthDate,
	// gender) the record gives otherwise than the stored Patient holds
	// them: not applied (demographicsWarning).
	unapplied []string
}

// resolveIdentity finds the record's stored Patient and checks its MRN:
// identityConflict when another Patient holds it (the identity is
// returned with it, naming that holder). res.Entries[0] is the record's
// Patient.
func resolveIdentity(st store.Tx, rec mapping.Record, res *mapping.Result) (*identity, error) {
	pe := res.Entries[0]
	id := &identity{}
	found, err := searchAll(st, "Patient", "identifier", search.Token(pe.IdentifierSystem, pe.IdentifierValue))
	if err != nil {
		return nil, err
	}
	var stored map[string]any
	if len(found) > 1 {
		return nil, errIdentityAmbiguous
	}
	if len(found) > 0 {
		id.patientID = found[0].ID
		if stored, err = decode(found[0]); err != nil {
			return nil, err
		}
		id.stored = stored
		if id.unapplied, err = unapplied(pe.Resource, stored); err != nil {
			return nil, err
		}
	}
	mrn := rec.Env().Patient.MRN
	if mrn == nil || mrn.System == "" {
		return id, nil // an MRN without a system never identifies anyone
	}
	id.mrnKey = mrnKey(mrn.System, mrn.Value)
	holders, err := searchAll(st, "Patient", "identifier", search.Token(mrn.System, mrn.Value))
	if err != nil {
		return nil, err
	}
	clinicID := pe.IdentifierSystem + "|" + pe.IdentifierValue
	for _, h := range holders {
		if h.ID != id.patientID {
			id.holder = h.ID
			return id, conflictOrRace(st, h.ID, clinicID, pe.IdentifierSystem, id.patientID != "")
		}
	}
	switch typ, owner, err := st.KeyOwner(id.mrnKey); {
	case err == nil && (typ != "Patient" || owner != id.patientID):
		if typ == "Patient" {
			id.holder = owner
		}
		return id, conflictOrRace(st, owner, clinicID, pe.IdentifierSystem, id.patientID != "")
	case err != nil && !errors.Is(err, store.ErrNotFound):
		return nil, err
	}
	id.mrnNew = stored != nil && !ownResource(stored, map[string]bool{mrn.System + "|" + mrn.Value: true})
	return id, nil
}

// nextPatient is the new version of the stored Patient that a record
// adding or changing its MRN writes: the stored Patient with the MRN
// changed, and nothing else. mapped is the record's Patient as the
// mapping rendered it (decoded). Its identifiers (the clinic id and the
// MRN) and meta are the mapping's; every other element stays as stored
// (the first record's demographics, or what a client wrote through the FHIR
// API), so a record that leaves the demographics out does not erase them,
// and one that gives them otherwise does not apply them: the record's
// unapplied demographics are warned about as for any later record
// (demographicsWarning). The stored MRN of the record's MRN system is
// dropped, and so freed; every other stored identifier is kept (an MRN of
// another hospital, which an administrator linked).
func (id *identity) nextPatient(mapped map[string]any) map[string]any {
	next := map[string]any{}
	for k, v := range id.stored {
		switch k {
		case "id", "meta", "text", "identifier":
			continue
		}
		next[k] = v
	}
	next["resourceType"] = "Patient"
	if m, ok := mapped["meta"]; ok {
		next["meta"] = m
	}
	ids, _ := mapped["identifier"].([]any)
	ids = append([]any(nil), ids...)
	mine := map[string]bool{}
	mrnSystems := map[string]bool{} // the record's MRN's system
	for _, i := range ids {
		m, _ := i.(map[string]any)
		mine[str(m, "system")+"|"+str(m, "value")] = true
		if mapping.IsMRN(m) {
			mrnSystems[str(m, "system")] = true
		}
	}
	old, _ := id.stored["identifier"].([]any)
	for _, i := range old {
		m, _ := i.(map[string]any)
		if mine[str(m, "system")+"|"+str(m, "value")] || (mapping.IsMRN(m) && mrnSystems[str(m, "system")]) {
			continue
		}
		ids = append(ids, i)
	}
	next["identifier"] = ids
	return next
}

// DeliverMatching sets the criteria the EHRs match the Patient (entry 0)
// of res, rec mapped, by: its clinic identifier, rec's MRN with a system,
// or any other MRN that stored, the record's stored Patient decoded (nil
// for none), holds (rec's MRN system's excepted, which the record's
// replaces: nextPatient). A record without an MRN is then charted at the
// EHR on the hospital's Patient the gateway knows by MRN, not on a second
// Patient made from the clinic identifier alone (DECISIONS.md 7). Only the
// Bundle the EHRs receive is concerned: the ingest's deliveries and a
// replay's corrections use it.
func DeliverMatching(rec mapping.Record, res *mapping.Result, stored map[string]any) {
	if len(res.Entries) == 0 || res.Entries[0].ResourceType != "Patient" {
		return
	}
	var mrns []mapping.MRN
	own := rec.Env().Patient.MRN
	if own != nil && own.System != "" {
		mrns = append(mrns, *own)
	}
	ids, _ := stored["identifier"].([]any)
	for _, i := range ids {
		m, _ := i.(map[string]any)
		system := str(m, "system")
		if !mapping.IsMRN(m) || system == "" || own != nil && own.System == system {
			continue
		}
		mrns = append(mrns, mapping.MRN{System: system, Value: str(m, "value")})
	}
	res.Entries[0].DeliverMatching(mrns)
}

// claim records the MRN as the Patient's, after the transaction wrote the
// Patient (patientID). The store reports a key held by another Patient
// (one whose write committed after resolveIdentity looked) as
// store.ErrConflict when the transaction flushes its writes, at the latest
// when it commits; the engine then runs the transaction again, and
// resolveIdentity finds the holder: the identity conflict, or the race
// with a write of the record's own patient.
func (id *identity) claim(st store.Tx, patientID string) error {
	if id.mrnKey == "" {
		return nil
	}
	return st.ClaimKey(id.mrnKey, "Patient", patientID)
}

// samePatientFound runs the transaction again (store.ErrConflict) when
// the Patient entry (current[0], what its conditional create or update
// matched) is another Patient than resolveIdentity found: one committed by
// a concurrent request after the identity was read (PostgreSQL's READ
// COMMITTED). Stored as it stands, the record's MRN would be claimed for
// a Patient that does not carry it (a first record of the patient that
// found no Patient sends none), and the Patient would lose it for good.
func samePatientFound(current []*store.Resource, id *identity) error {
	if len(current) == 0 || current[0] == nil || current[0].Type != "Patient" || current[0].ID == id.patientID {
		return nil
	}
	return fmt.Errorf("record's patient stored while the record's identity was read: %w", store.ErrConflict)
}

// conflictOrRace tells an identity conflict from a race: the MRN's holder
// (the Patient holderID) is the record's own patient when it carries the
// record's clinic identifier (clinicID, system|value), written by a
// concurrent transaction that committed between this one's reads (PostgreSQL
// runs at READ COMMITTED). Then the transaction is run again
// (store.ErrConflict) and sees one consistent state; otherwise the MRN
// belongs to another person, and the conflict's remedy depends on whether
// the record's patient id is known (knownID) and whether the holder
// carries a patient id of the record's source system (clinicSystem).
func conflictOrRace(st store.Tx, holderID, clinicID, clinicSystem string, knownID bool) error {
	holder := holderOtherSystem
	h, err := st.Read("Patient", holderID)
	switch {
	case err == nil:
		doc, err := decode(h)
		if err != nil {
			return err
		}
		if ownResource(doc, map[string]bool{clinicID: true}) {
			return fmt.Errorf("patient identity read while a concurrent write committed: %w", store.ErrConflict)
		}
		if carriesSystem(doc, clinicSystem) {
			holder = holderSameSystem
		}
	case !errors.Is(err, store.ErrNotFound) && !errors.Is(err, store.ErrGone):
		return err
	}
	if knownID {
		holder = holderKnownID
	}
	return identityConflict(holder)
}

// carriesSystem reports whether a stored resource has an identifier of
// system.
func carriesSystem(doc map[string]any, system string) bool {
	ids, _ := doc["identifier"].([]any)
	for _, i := range ids {
		m, _ := i.(map[string]any)
		if str(m, "system") == system {
			return true
		}
	}
	return false
}

// mrnKey is the unique key of an MRN: a hash, so the key table holds no
// MRN (the engine's tenant transaction namespaces it per tenant).
func mrnKey(system, value string) string {
	sum := sha256.Sum256([]byte(system + "|" + value))
	return "Patient|mrn|" + hex.EncodeToString(sum[:])
}

// RulePatientChanged is the rule id of a record whose resources are
// stored for another patient: a new version of a stored record, or a
// session's nested record whose id another patient's record has.
const RulePatientChanged = "record-patient-changed"

// patientChanged is the message of a RulePatientChanged issue: what to do.
const patientChanged = "this record (the same source system, kind and record id) is stored for another patient, and a " +
	"new version may not change the patient it is about: if the stored record is about the wrong patient, withdraw it " +
	"(send it for the patient it was stored for, with a new version and source.status entered-in-error) and send the " +
	"record again under a new record id; otherwise correct patient.id"

// checkSamePatient refuses a record whose resources, as stored (current,
// by entry of res: engine.Tx.RunChecked), are about another Patient than
// patientID, the record's resolved Patient ("" for a new one): the same
// person is the same stored Patient, as the clinic id and the MRN resolve
// it (resolveIdentity). Nothing ever moves a record to another chart.
func checkSamePatient(res *mapping.Result, current []*store.Resource, patientID string) error {
	var issues []outcome.Issue // the nested records'
	own := false               // the record's own resources
	seen := map[string]bool{}
	for i, r := range current {
		if r == nil || i >= len(res.Entries) || res.Entries[i].ResourceType == "Patient" {
			continue
		}
		rec := res.Entries[i].Record
		if seen[rec] {
			continue
		}
		subject, err := subjectOf(r)
		if err != nil {
			return err
		}
		if subject == "" || subject == "Patient/"+patientID && patientID != "" {
			continue
		}
		seen[rec] = true
		if rec == "" {
			own = true
		} else {
			issues = append(issues, outcome.Issue{Severity: "error", Code: "conflict", Rule: RulePatientChanged,
				Pointer: rec + "/recordId", Expression: nestedExpression(rec) + ".recordId",
				Message: "this nested record's id is that of a record stored for another patient: if it is that " +
					"record, it belongs to that patient's session; otherwise give it a record id of its own"})
		}
	}
	if len(issues) == 0 && !own {
		return nil
	}
	msg := patientChanged
	if !own {
		msg = "records nested in this session (the issues after this one) are stored for another patient: a record " +
			"stays about its patient; correct patient.id, or give the nested records their own record ids"
	}
	issues = append([]outcome.Issue{{Severity: "error", Code: "conflict", Rule: RulePatientChanged,
		Pointer: "/patient/id", Expression: "patient.id", Message: msg}}, issues...)
	return &outcome.Error{Kind: outcome.Conflict, Issues: issues}
}

// subjectOf returns a stored resource's subject reference ("" for none).
func subjectOf(r *store.Resource) (string, error) {
	var doc struct {
		Subject struct {
			Reference string `json:"reference"`
		} `json:"subject"`
	}
	if err := json.Unmarshal(r.Body, &doc); err != nil {
		return "", fmt.Errorf("stored %s/%s: %w", r.Type, r.ID, err)
	}
	return doc.Subject.Reference, nil
}

// nestedExpression is the FHIRPath-like path of a nested record's pointer
// ("/vitals/2" -> "vitals[2]").
func nestedExpression(pointer string) string {
	name, i, _ := strings.Cut(strings.TrimPrefix(pointer, "/"), "/")
	return name + "[" + i + "]"
}

// RuleDemographicsNotApplied is the rule id of the warning that a record's
// patient demographics differ from the stored Patient's and were not
// applied.
const RuleDemographicsNotApplied = "patient.demographics-not-applied"

// demographics are the Patient elements a record's envelope gives
// (patient.name, patient.birthDate, patient.gender), by the pointer and
// expression of the envelope field.
var demographics = []struct{ element, pointer, expression string }{
	{"name", "/patient/name", "patient.name"},
	{"birthDate", "/patient/birthDate", "patient.birthDate"},
	{"gender", "/patient/gender", "patient.gender"},
}

// unapplied lists the demographics that patient, a record's mapped
// Patient, gives otherwise than stored, the stored Patient, holds them:
// the gateway keeps the Patient the first record made (only an MRN added
// or changed makes a new version), so they are not applied. A field the
// record leaves out is not listed; text composed otherwise (NFC, NFD) is
// the same (equivalent).
func unapplied(patient any, stored map[string]any) ([]string, error) {
	raw, err := json.Marshal(patient)
	if err != nil {
		return nil, fmt.Errorf("mapped Patient: %w", err)
	}
	var mine map[string]any
	if err := json.Unmarshal(raw, &mine); err != nil {
		return nil, fmt.Errorf("mapped Patient: %w", err)
	}
	var out []string
	for _, d := range demographics {
		if v, ok := mine[d.element]; ok && !equivalent(v, stored[d.element]) {
			out = append(out, d.element)
		}
	}
	return out, nil
}

// demographicsWarning is the warning, in the answer, that the record's
// demographics (elements, as unapplied lists them) were not applied: the
// record is stored; the sender is told, and how to correct the Patient.
//
// stored is the stored Patient decoded: a field it does not have at all is
// said so (an EHR review: "differs from the patient the gateway holds"
// read as though it held another value).
func demographicsWarning(elements []string, stored map[string]any) []outcome.Issue {
	var issues []outcome.Issue
	for _, d := range demographics {
		if !slices.Contains(elements, d.element) {
			continue
		}
		msg := "the record is stored, but this field differs from the patient the gateway holds for this patient id " +
			"and was not applied: the gateway keeps the demographics of the first record it stored for the patient " +
			"(only an MRN added or changed updates its Patient), and hospitals that hold the patient keep theirs; " +
			"to correct the gateway's Patient, update it through the gateway's FHIR API or ask the gateway's operator"
		if _, held := stored[d.element]; !held {
			msg = "the record is stored, but the patient the gateway holds for this patient id has no such field (the " +
				"first record stored for the patient gave none), and a later record's is not added: the gateway keeps the " +
				"demographics of the first record it stored for the patient (only an MRN added or changed updates its " +
				"Patient); to add it, update the Patient through the gateway's FHIR API or ask the gateway's operator"
		}
		issues = append(issues, outcome.Issue{Severity: "warning", Code: "business-rule", Rule: RuleDemographicsNotApplied,
			Pointer: d.pointer, Expression: d.expression, Message: msg})
	}
	return issues
}
