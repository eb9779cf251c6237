package ingest

import (
	"fmt"
	"net/url"
	"time"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/engine"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/search"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
	"github.com/ketamine-gateway/ketamine-gateway/mapping"
)

// The rules across records (docs/mapping.md §9): a record sent on its own
// that names a session is checked against the stored session, and a session
// against the records stored for it, with the rules a session document gets
// (mapping.CheckLinked, mapping.CheckStored). Both run inside the
// transaction that would store the record, on the tenant's data only.

// checkStored applies the rules across records to rec, mapped as res with
// opts; patientID is the stored Patient the record's patient resolves to
// ("" for a new one). A broken rule is a *mapping.RuleError; a withdrawn
// record is always accepted. The warnings are those of a drug given after
// a critical pre-dose measurement sent apart from its session (the
// cross-record form of the session document's DetectedIssue).
func checkStored(st store.Tx, rec mapping.Record, res *mapping.Result, opts mapping.Options, patientID string) ([]mapping.Violation, error) {
	if rec.Env().Source.Status == "entered-in-error" {
		return nil, nil
	}
	if id, ok := mapping.NamedSession(rec, opts); ok {
		return checkNamedSession(st, rec, id, opts, patientID)
	}
	if id, ok := mapping.OwnSession(rec, opts); ok {
		return checkSessionRecords(st, rec, res, id, opts, patientID)
	}
	return nil, nil
}

// checkNamedSession checks a record against the stored session it names;
// a session not stored yet has nothing to check (the record's reference
// by identifier links it when the session arrives).
func checkNamedSession(st store.Tx, rec mapping.Record, id mapping.SessionID, opts mapping.Options, patientID string) ([]mapping.Violation, error) {
	procs, err := searchAll(st, "Procedure", "identifier", search.Token(id.System, id.Value))
	if err != nil || len(procs) == 0 {
		return nil, err
	}
	doc, err := decode(procs[0])
	if err != nil {
		return nil, err
	}
	s := mapping.StoredSession{OtherPatient: !samePatient(doc, patientID), NotDone: str(doc, "status") == "not-done",
		Withdrawn: str(doc, "status") == "entered-in-error"}
	if status := str(doc, "status"); status != "not-done" && status != "entered-in-error" {
		period, _ := doc["performedPeriod"].(map[string]any)
		s.Window, s.HasWindow = mapping.WindowFrom(str(period, "start"), str(period, "end"))
	}
	// A critical pre-dose measurement of a session that gave its drug:
	// the session's administration, read once, says whether it did and
	// when its infusion ended.
	warnings := mapping.PreDoseWarnings(rec, opts)
	var med administration
	if s.HasWindow || len(warnings) > 0 {
		if med, err = storedAdministration(st, id); err != nil {
			return nil, err
		}
		if s.HasWindow {
			s.Window.InfusionEnd = med.end
		}
	}
	// CheckLinked refuses a record of another patient than the session's.
	if err := mapping.CheckLinked(rec, s); err != nil {
		return nil, err
	}
	// An adverse event the drug cannot have caused, named its suspect.
	suspect := mapping.SuspectWarnings(rec, s)
	if !med.dosed {
		return suspect, nil
	}
	return append(suspect, warnings...), nil
}

// administration is what the rules across records read from a stored
// session's MedicationAdministration (identifier <sessionId>-medication).
type administration struct {
	// end is when the infusion ended, the end of its effectivePeriod (the
	// infusion's infusionEnd); zero when it has none. The Procedure's
	// performedPeriod ends at monitoringEnd, so without it a discharge
	// measurement sent on its own was checked only against the start,
	// and a session document or a later session version against the
	// infusion's end: a discharge the gateway accepted then blocked every
	// later version of its session.
	end time.Time
	// dosed: the session gave its drug, its administration neither
	// not-done nor withdrawn and of a dose above 0
	// (mapping.OtherSessionOf).
	dosed bool
}

// storedAdministration reads the stored session's MedicationAdministration
// (one search, each match decoded once).
func storedAdministration(st store.Tx, id mapping.SessionID) (administration, error) {
	var a administration
	meds, err := searchAll(st, "MedicationAdministration", "identifier", search.Token(id.System, id.Value+"-medication"))
	if err != nil {
		return a, err
	}
	for _, m := range meds {
		doc, err := decode(m)
		if err != nil {
			return administration{}, err
		}
		if a.end.IsZero() {
			period, _ := doc["effectivePeriod"].(map[string]any)
			a.end, _ = time.Parse(time.RFC3339Nano, str(period, "end"))
		}
		if _, ok := mapping.OtherSessionOf(doc, id); ok {
			a.dosed = true
		}
	}
	return a, nil
}

// checkSessionRecords checks a session (an infusion or session record)
// against the adverse events and Observations stored for it
// (sessionLinked), leaving out the resources this record writes itself.
func checkSessionRecords(st store.Tx, rec mapping.Record, res *mapping.Result, id mapping.SessionID, opts mapping.Options, patientID string) ([]mapping.Violation, error) {
	linked, docs, stored, err := sessionLinked(st, id, ownIdentifiers(res))
	if err != nil {
		return nil, err
	}
	// A discharge measurement stored before its session's infusion end
	// (accepted on its own before that check read the infusion's end) does
	// not block a version that leaves the end where the stored one has it:
	// the clinic could otherwise not correct the session at all.
	var storedEnd time.Time
	if stored {
		med, err := storedAdministration(st, id)
		if err != nil {
			return nil, err
		}
		storedEnd = med.end
	}
	sameEnd := !storedEnd.IsZero() && storedEnd.Equal(infusionEndOf(rec))
	for i := range linked {
		if sameEnd && linked[i].Discharge.Before(storedEnd) {
			linked[i].Discharge = time.Time{}
		}
		linked[i].OtherPatient = !samePatient(docs[i], patientID)
	}
	if err := mapping.CheckStored(rec, linked); err != nil {
		return nil, err
	}
	return mapping.StoredCriticalWarnings(rec, linked, opts), nil
}

// sessionLinked returns the adverse events and Observations stored for
// the session id, as the rules across records read them (mapping.LinkedOf),
// with their decoded bodies (docs, one per linked): found by reference to
// its identifier (records sent before or after it on their own) and to its
// stored Procedure (records of earlier versions of its session document),
// each once, leaving out those entered-in-error and those carrying an
// identifier of own (the resources the record being written writes
// itself). stored reports whether the session's Procedure is stored.
func sessionLinked(st store.Tx, id mapping.SessionID, own map[string]bool) (linked []mapping.Linked, docs []map[string]any, stored bool, err error) {
	token := search.Token(id.System, id.Value)
	queries := [][3]string{
		{"AdverseEvent", "substance:identifier", token},
		{"Observation", "part-of:identifier", token},
	}
	procs, err := searchAll(st, "Procedure", "identifier", token)
	if err != nil {
		return nil, nil, false, err
	}
	if len(procs) > 0 {
		ref := "Procedure/" + procs[0].ID
		queries = append(queries, [3]string{"AdverseEvent", "substance", ref}, [3]string{"Observation", "part-of", ref})
	}
	seen := map[string]bool{}
	for _, q := range queries {
		found, err := searchAll(st, q[0], q[1], q[2])
		if err != nil {
			return nil, nil, false, err
		}
		for _, r := range found {
			if seen[r.Type+"/"+r.ID] {
				continue
			}
			seen[r.Type+"/"+r.ID] = true
			doc, err := decode(r)
			if err != nil {
				return nil, nil, false, err
			}
			if str(doc, "status") == "entered-in-error" || ownResource(doc, own) {
				continue
			}
			linked = append(linked, mapping.LinkedOf(doc))
			docs = append(docs, doc)
		}
	}
	return linked, docs, len(procs) > 0, nil
}

// ownIdentifiers is the set of the identifiers (system|value) of the
// resources res writes.
func ownIdentifiers(res *mapping.Result) map[string]bool {
	own := map[string]bool{}
	for _, e := range res.Entries {
		own[e.IdentifierSystem+"|"+e.IdentifierValue] = true
	}
	return own
}

// infusionEndOf is the infusionEnd of an infusion or session record (zero
// for none).
func infusionEndOf(rec mapping.Record) time.Time {
	var end string
	switch r := rec.(type) {
	case *mapping.Infusion:
		end = r.InfusionEnd
	case *mapping.Session:
		end = r.Infusion.InfusionEnd
	}
	t, _ := time.Parse(time.RFC3339Nano, end)
	return t
}

// sessionSpacing returns the warnings of a session that gave its drug
// against the same patient's other stored sessions that gave theirs
// (mapping.SessionSpacing): their MedicationAdministrations, which hold
// the infusion's period, its status and the dose given, found by one
// indexed search, by patient, by the identifier system of the source's
// sessions and by effective time (mapping.SpacingRange). Nothing for
// another record, a withdrawal, or a patient not stored yet (patientID
// "").
func sessionSpacing(st store.Tx, rec mapping.Record, opts mapping.Options, patientID string) ([]mapping.Violation, error) {
	id, ok := mapping.DosedSession(rec, opts)
	from, to, inRange := mapping.SpacingRange(rec, opts)
	if !ok || !inRange || patientID == "" {
		return nil, nil
	}
	// Only the administrations whose effective time shares time with the
	// range (a Period matches ge/le where it overlaps the value): not
	// every session the patient ever had, inside the write transaction.
	// Whole seconds, widened outwards.
	ge := from.UTC().Truncate(time.Second).Format(time.RFC3339)
	le := to.UTC().Add(time.Second - 1).Truncate(time.Second).Format(time.RFC3339)
	found, err := searchQuery(st, "MedicationAdministration", "patient="+url.QueryEscape("Patient/"+patientID)+
		"&identifier="+url.QueryEscape(search.Token(id.System, ""))+
		"&effective-time="+url.QueryEscape("ge"+ge)+"&effective-time="+url.QueryEscape("le"+le))
	if err != nil {
		return nil, err
	}
	var others []mapping.OtherSession
	for _, r := range found {
		doc, err := decode(r)
		if err != nil {
			return nil, err
		}
		if o, ok := mapping.OtherSessionOf(doc, id); ok {
			others = append(others, o)
		}
	}
	return mapping.SessionSpacing(rec, others, opts), nil
}

// searchAll returns every current resource of typ whose param matches
// value (a search value: a token built with search.Token, a reference),
// page by page.
func searchAll(st store.Tx, typ, param, value string) ([]*store.Resource, error) {
	out, err := searchQuery(st, typ, param+"="+url.QueryEscape(value))
	if err != nil {
		return nil, fmt.Errorf("search %s by %s: %w", typ, param, err)
	}
	return out, nil
}

// searchQuery returns every current resource of typ that the search query
// (name=value pairs, escaped) matches, page by page.
func searchQuery(st store.Tx, typ, query string) ([]*store.Resource, error) {
	q, err := search.ParseConditional(typ, query)
	if err != nil {
		return nil, err
	}
	q.Count = search.MaxCount
	var out []*store.Resource
	for {
		page, err := st.Search(q)
		if err != nil {
			return nil, err
		}
		out = append(out, page.Matches...)
		if len(page.Matches) < q.Count {
			return out, nil
		}
		q.Offset += len(page.Matches)
	}
}

// decode decodes a stored resource's body (engine.DecodeResource).
func decode(r *store.Resource) (map[string]any, error) {
	doc, err := engine.DecodeResource(r.Body)
	if err != nil {
		return nil, fmt.Errorf("stored %s/%s: %w", r.Type, r.ID, err)
	}
	return doc, nil
}

// samePatient reports whether a stored resource's subject is the Patient
// patientID ("" is a Patient not stored yet: never the same).
func samePatient(doc map[string]any, patientID string) bool {
	return samePatientOf(doc, "subject", patientID)
}

// samePatientOf is samePatient for a resource whose patient is its
// element elem (a DetectedIssue's patient).
func samePatientOf(doc map[string]any, elem, patientID string) bool {
	ref, _ := doc[elem].(map[string]any)
	return patientID != "" && str(ref, "reference") == "Patient/"+patientID
}

// ownResource reports whether a stored resource carries one of the
// identifiers (system|value) of the resources being written.
func ownResource(doc map[string]any, own map[string]bool) bool {
	for _, id := range identifiersOf(doc) {
		if own[id] {
			return true
		}
	}
	return false
}

// identifiersOf are the identifiers of a decoded resource, as
// system|value, in order.
func identifiersOf(doc map[string]any) []string {
	ids, _ := doc["identifier"].([]any)
	if one, ok := doc["identifier"].(map[string]any); ok { // AdverseEvent.identifier is single
		ids = []any{one}
	}
	out := make([]string, 0, len(ids))
	for _, i := range ids {
		m, _ := i.(map[string]any)
		out = append(out, str(m, "system")+"|"+str(m, "value"))
	}
	return out
}

func str(m map[string]any, k string) string {
	s, _ := m[k].(string)
	return s
}
