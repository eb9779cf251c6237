package ingest

import (
	"encoding/json"
	"fmt"
	"reflect"
	"strings"

	fhir "github.com/samply/golang-fhir-models/fhir-models/fhir"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/engine"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/fhirwire"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/search"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
	"github.com/ketamine-gateway/ketamine-gateway/mapping"
)

// A record's new version is mapped in update mode: each resource a
// conditional update, each Observation amended (mapping.Options.Update),
// as the mapping has no prior state. What the new version does not change
// is left as it is (p40 F7): a resource whose only difference from the
// stored one is the status amended (and meta) keeps its version and its
// status (final stays final: a clinician sees as amended only what was),
// and the EHRs receive it with that status, as the conditional update it
// was mapped as (deliveredKept).

// keepUnchanged finds, once the stored resources are known (current, by
// entry: engine.Tx.RunChecked's check), the conditional updates of res,
// a record version mapped in update mode, that change nothing but an
// Observation's status to amended: it sets their documents' status (docs,
// by entry) back to the stored one and has the engine write them only when
// changed (engine.Entry.VersionWhenChanged, whose own unchanged check
// decides). It returns the stored status of each, by entry, and "final"
// for each Observation the version makes that the gateway did not hold
// (set in docs too: a resource made now was never final before, so it is
// not amended). A version that changes no resource (the same content
// under a new label, or one that only leaves a measurement out, which
// stays as stored) still writes each resource again, so that its
// Provenance names them, but with its stored status: nothing was amended
// (an EHR review: a version leaving out two measurements sent the four
// others to the EHR as amended).
func keepUnchanged(st store.Tx, res *mapping.Result, entries []*engine.Entry, docs []map[string]any, current []*store.Resource) (map[int]string, error) {
	logical := LogicalResolver(func(typ, system, value string) (*store.Resource, error) {
		rs, err := searchAll(st, typ, "identifier", search.Token(system, value))
		if err != nil || len(rs) != 1 {
			return nil, err
		}
		return rs[0], nil
	})
	ids := map[string]string{} // the entries' fullUrls, as the stored references name them
	for i, e := range res.Entries {
		if current[i] != nil && e.FullURL != "" {
			ids[e.FullURL] = current[i].Type + "/" + current[i].ID
		}
	}
	kept := map[int]string{}
	fresh := map[int]string{} // the Observations the version makes: final, never amended
	writes := false           // another entry writes
	for i, e := range res.Entries {
		switch {
		case e.ResourceType == "Patient":
			continue // matched, or made: never versioned by a record
		case e.Method == fhir.HTTPVerbPOST && current[i] != nil:
			continue // a conditional create that matched: writes nothing
		case e.ResourceType == "Observation" && current[i] == nil && docs[i] != nil && docs[i]["status"] == "amended":
			// Amended is "modified subsequent to being final" (R4
			// observation-status): one the gateway never held is final, here
			// and as the EHRs receive it (an EHR review).
			fresh[i] = "final"
			writes = true
			continue
		case e.Method != fhir.HTTPVerbPUT || current[i] == nil || docs[i] == nil:
			writes = true
			continue
		case !strings.Contains(e.URL, "?"):
			// Written by id (the AdverseEvent), in each version.
			writes = true
		default:
			status, same, err := sameButAmended(docs[i], current[i], ids, logical)
			if err != nil {
				return nil, err
			}
			if same {
				kept[i] = status
			} else {
				writes = true
			}
		}
		// A member that names what the stored one names, in another form
		// (a logical reference to the session's Procedure where the stored
		// one is literal), is stored as it was, in a resource this version
		// changes too: a nested record corrected on its own kept a literal
		// link to its session only where nothing else of it changed, and
		// lost it (to a reference by identifier, which a search by
		// reference does not find) where its severity or value changed (a
		// mapping developer's review). The EHRs receive it as mapped.
		if err := StoredForms(docs[i], current[i], logical); err != nil {
			return nil, err
		}
	}
	for i, status := range fresh {
		docs[i]["status"] = status
	}
	for i, status := range kept {
		if status != "" {
			docs[i]["status"] = status
		}
		if writes {
			entries[i].VersionWhenChanged()
		}
	}
	for i, status := range fresh {
		kept[i] = status // as the EHRs receive it too (deliveredKept)
	}
	return kept, nil
}

// sameButAmended reports whether doc, a mapped resource (its references
// to the record's entries still their fullUrls, ids maps them to the
// stored ids), is the stored resource cur but for meta and an
// Observation's status amended where cur's is final, amended or
// corrected; status is then cur's status ("" for another type).
//
// A reference is compared by what it names: a logical one (a type and an
// identifier, as a nested record sent on its own names its session's
// Procedure) and a literal one to the stored resource that identifier
// finds are the same (logical). Before, every measurement of a vitals
// record amended on its own counted as changed for its partOf, and was
// written again, amended, with the literal link to its session cut (a
// mapping developer's review).
func sameButAmended(doc map[string]any, cur *store.Resource, ids map[string]string, logical func(v any) (any, error)) (status string, same bool, err error) {
	var stored map[string]any
	if err := json.Unmarshal(cur.Body, &stored); err != nil {
		return "", false, fmt.Errorf("stored %s/%s: %w", cur.Type, cur.ID, err)
	}
	raw, err := json.Marshal(doc)
	if err != nil {
		return "", false, fmt.Errorf("mapped %s: %w", cur.Type, err)
	}
	var mapped map[string]any
	if err := json.Unmarshal(raw, &mapped); err != nil {
		return "", false, fmt.Errorf("mapped %s: %w", cur.Type, err)
	}
	mapped = resolveRefs(mapped, ids).(map[string]any)
	if cur.Type == "Observation" {
		status = str(stored, "status")
		switch {
		case mapped["status"] == "amended" && (status == "final" || status == "amended" || status == "corrected"):
			mapped["status"] = status
		case mapped["status"] != status:
			return "", false, nil
		}
	}
	for _, m := range []map[string]any{stored, mapped} {
		delete(m, "meta")
		delete(m, "id")
	}
	same, err = sameNamed(stored, mapped, logical)
	return status, same, err
}

// sameNamed reports whether a and b (decoded JSON) are equal, or equal once
// their logical references are made literal (logical, a LogicalResolver's).
func sameNamed(a, b any, logical func(v any) (any, error)) (bool, error) {
	if reflect.DeepEqual(a, b) {
		return true, nil
	}
	la, err := logical(a)
	if err != nil {
		return false, err
	}
	lb, err := logical(b)
	if err != nil {
		return false, err
	}
	return reflect.DeepEqual(la, lb), nil
}

// StoredForms gives doc, a mapped resource that cur is stored as (a
// resource a new version keeps as it is: keepUnchanged; a replay's
// comparison), each member that names what cur's names in another form (a
// logical reference where cur's is literal) in cur's form: a literal link
// to the session stays literal, the engine's own unchanged check finds
// nothing to write, and a replay no difference. The other members (meta
// among them) stay as mapped. logical is a LogicalResolver's.
func StoredForms(doc map[string]any, cur *store.Resource, logical func(v any) (any, error)) error {
	var stored map[string]any
	if err := json.Unmarshal(cur.Body, &stored); err != nil {
		return fmt.Errorf("stored %s/%s: %w", cur.Type, cur.ID, err)
	}
	for k, v := range doc {
		sv, ok := stored[k]
		if !ok || k == "meta" || k == "id" || k == "status" {
			continue
		}
		raw, err := json.Marshal(v) // as stored: numbers compared as JSON gives them
		if err != nil {
			return err
		}
		var mv any
		if err := json.Unmarshal(raw, &mv); err != nil || reflect.DeepEqual(mv, sv) {
			continue
		}
		if same, err := sameNamed(mv, sv, logical); err != nil {
			return err
		} else if same {
			doc[k] = sv
		}
	}
	return nil
}

// LogicalResolver returns a function giving a copy of a decoded resource
// with each logical reference (a Reference with a type and an identifier
// and no literal reference) that find resolves to a stored resource (nil:
// none, or not exactly one) made the literal reference to it ("Type/id"),
// for comparing references by what they name. Each is resolved once.
func LogicalResolver(find func(typ, system, value string) (*store.Resource, error)) func(v any) (any, error) {
	found := map[string]string{} // type|system|value -> "Type/id", "" when not exactly one
	var walk func(v any) (any, error)
	walk = func(v any) (any, error) {
		switch x := v.(type) {
		case map[string]any:
			out := make(map[string]any, len(x))
			typ, _ := x["type"].(string)
			ident, _ := x["identifier"].(map[string]any)
			if _, literal := x["reference"]; !literal && typ != "" && ident != nil {
				sys, val := str(ident, "system"), str(ident, "value")
				key := typ + "|" + sys + "|" + val
				ref, ok := found[key]
				if !ok && sys != "" && val != "" {
					r, err := find(typ, sys, val)
					if err != nil {
						return nil, err
					}
					if r != nil {
						ref = typ + "/" + r.ID
					}
					found[key] = ref
				}
				if ref != "" {
					return map[string]any{"reference": ref}, nil
				}
			}
			for k, e := range x {
				w, err := walk(e)
				if err != nil {
					return nil, err
				}
				out[k] = w
			}
			return out, nil
		case []any:
			out := make([]any, len(x))
			for i, e := range x {
				w, err := walk(e)
				if err != nil {
					return nil, err
				}
				out[i] = w
			}
			return out, nil
		}
		return v, nil
	}
	return walk
}

// resolveRefs is v with each reference to a fullUrl of ids replaced by
// the stored Type/id.
func resolveRefs(v any, ids map[string]string) any {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			if s, ok := e.(string); ok && k == "reference" && ids[s] != "" {
				x[k] = ids[s]
				continue
			}
			x[k] = resolveRefs(e, ids)
		}
	case []any:
		for i, e := range x {
			x[i] = resolveRefs(e, ids)
		}
	}
	return v
}

// deliveredKept is raws as the EHRs receive them: each entry that
// keepUnchanged kept (kept, by entry, with the stored status) carries the
// stored status, as the gateway stores it (written again or not: a
// difference of meta alone writes a new version with that status). Each
// stays the conditional update it was mapped as: an EHR that holds it
// finds nothing to change, and one whose copy is older (an earlier
// version's delivery was dead-lettered) is brought up to date. raws is not
// changed.
func deliveredKept(raws [][]byte, kept map[int]string) ([][]byte, error) {
	if len(kept) == 0 {
		return raws, nil
	}
	raws = append([][]byte(nil), raws...)
	for i, status := range kept {
		if status == "" {
			continue
		}
		doc, err := fhirwire.Decode(raws[i])
		if err != nil {
			return nil, fmt.Errorf("mapped entry %d: %w", i, err)
		}
		doc["status"] = status
		if raws[i], err = fhirwire.Marshal(doc); err != nil {
			return nil, fmt.Errorf("mapped entry %d: %w", i, err)
		}
	}
	return raws, nil
}
