// Package ingest takes native clinic records into the gateway: the
// Pipeline validates a record against its JSON Schema, checks its clinical
// rules and maps it to FHIR; Service.DryRun gives the verdict ingest gives
// a record without a store (the dry run, the CLI's map and the console's
// playground answer through it); the Service stores a mapped record through the FHIR engine in one
// transaction with its ledger entry (idempotent per source record version),
// its Provenance, its AuditEvent and its deliveries to the EHRs.
package ingest

import (
	"fmt"
	"slices"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/engine"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/fhirwire"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/outcome"
	"github.com/ketamine-gateway/ketamine-gateway/mapping"
	"github.com/ketamine-gateway/ketamine-gateway/schemas"
)

// Pipeline validates and maps native records; every entry point answers the
// same input the same way through it.
type Pipeline struct {
	opts    mapping.Options
	schemas *schemas.Set
	v       *engine.Validator
	// profiles checks a rendered resource against the profiles it claims
	// (v.Profiles; a test puts a stricter check here).
	profiles func(doc map[string]any, expr string) error
}

// NewPipeline compiles the schemas once; v validates the mapped FHIR
// (engine.NewValidator() when nil).
func NewPipeline(opts mapping.Options, v *engine.Validator) (*Pipeline, error) {
	set, err := schemas.New()
	if err != nil {
		return nil, fmt.Errorf("compile schemas: %w", err)
	}
	if v == nil {
		v = engine.NewValidator()
	}
	return &Pipeline{opts: opts, schemas: set, v: v, profiles: v.Profiles}, nil
}

// ErrKindUnknown answers a record kind the gateway does not map.
var ErrKindUnknown = outcome.New(outcome.NotFound, "not-found", "kind-unknown",
	"unknown record kind; use assessment, vitals, infusion, adverse-event or session")

// KnownKind reports whether k is a native record kind.
func KnownKind(k mapping.Kind) bool {
	for _, known := range mapping.Kinds() {
		if k == known {
			return true
		}
	}
	return false
}

// ValidateRecord checks a native record against its kind's JSON Schema:
// ErrKindUnknown, or *schemas.ValidationError for a client mistake.
func (p *Pipeline) ValidateRecord(kind mapping.Kind, doc []byte) error {
	if !KnownKind(kind) {
		return ErrKindUnknown
	}
	return p.schemas.Validate(string(kind), doc)
}

// Decode decodes a record ValidateRecord accepted; an error is the
// gateway's (the schema admits only what decodes).
func Decode(kind mapping.Kind, doc []byte) (mapping.Record, error) {
	rec, err := mapping.Decode(kind, doc)
	if err != nil {
		return nil, fmt.Errorf("decode schema-valid %s record: %w", kind, err)
	}
	return rec, nil
}

// Marshal renders every resource a mapping produced as JSON, once, and
// checks it against the R4 definitions: the bytes returned (nil for an entry
// without a resource) are the bytes stored and delivered. A failure is the
// gateway's bug, not the client's (an Internal error; nothing is stored).
func (p *Pipeline) Marshal(res *mapping.Result) ([][]byte, error) {
	raws, _, err := p.MarshalDecoded(res)
	return raws, err
}

// MarshalDecoded is Marshal that also returns each rendered resource
// decoded (nil where raws is nil), from the parse that checked it.
func (p *Pipeline) MarshalDecoded(res *mapping.Result) ([][]byte, []map[string]any, error) {
	raws := make([][]byte, len(res.Entries))
	docs := make([]map[string]any, len(res.Entries))
	for i, e := range res.Entries {
		if e.Resource == nil {
			continue
		}
		raw, err := mapping.MarshalResource(e.Resource)
		if err != nil {
			return nil, nil, fmt.Errorf("marshal mapped entry %d: %w", i, err)
		}
		doc, err := p.v.Mapped(raw, e.ResourceType)
		if err != nil {
			return nil, nil, fmt.Errorf("mapped entry %d: %w", i, err)
		}
		raws[i], docs[i] = raw, doc
	}
	return raws, docs, nil
}

// Transaction renders a mapped record as its FHIR transaction Bundle from
// the resources Marshal rendered (raws), without marshalling them again.
// The Bundle is what the EHRs receive: its entries are conditional on
// identifiers (or PUT to deterministic ids), so a re-send never duplicates
// anything at the EHR.
func Transaction(res *mapping.Result, raws [][]byte) ([]byte, error) {
	return res.TransactionFrom(raws)
}

// TransactionFor renders the transaction Bundle a destination that knows
// only the MRNs of mrnSystems as its own (Route.MRNSystems) receives: each
// Patient (entry 0, as mapped) carries, in its identifiers and in its
// ifNoneExist, only the MRNs of those systems besides the clinic
// identifier, so that no EHR learns another hospital's MRN (a disclosure
// beyond need). nil mrnSystems: every MRN, as Transaction. The bytes
// rendered are what the destination's outbox item holds, sends and its
// delivery-send AuditEvent hashes.
func TransactionFor(res *mapping.Result, raws [][]byte, mrnSystems []string) ([]byte, error) {
	if mrnSystems == nil {
		return Transaction(res, raws)
	}
	r, rr, _, err := withMRNsOf(res, raws, mrnSystems)
	if err != nil {
		return nil, err
	}
	return Transaction(r, rr)
}

// withMRNsOf is res, rendered as raws, with every Patient entry carrying
// only the MRNs of mrnSystems (in its DeliverMRNs and its MR-typed
// identifiers), and whether that left any out (else res and raws
// themselves).
func withMRNsOf(res *mapping.Result, raws [][]byte, mrnSystems []string) (*mapping.Result, [][]byte, bool, error) {
	if len(raws) != len(res.Entries) {
		return nil, nil, false, fmt.Errorf("transaction of %d entries from %d resources", len(res.Entries), len(raws))
	}
	r, rr, dropped := res, raws, false
	for i := range res.Entries {
		if res.Entries[i].ResourceType != "Patient" {
			continue
		}
		var keep []mapping.MRN
		for _, m := range res.Entries[i].DeliverMRNs {
			if slices.Contains(mrnSystems, m.System) {
				keep = append(keep, m)
			}
		}
		patient, err := fhirwire.Decode(raws[i])
		if err != nil {
			return nil, nil, false, fmt.Errorf("mapped Patient: %w", err)
		}
		ids, _ := patient["identifier"].([]any)
		kept := make([]any, 0, len(ids))
		for _, id := range ids {
			m, _ := id.(map[string]any)
			if mapping.IsMRN(m) && !slices.Contains(mrnSystems, str(m, "system")) {
				continue
			}
			kept = append(kept, id)
		}
		if len(keep) == len(res.Entries[i].DeliverMRNs) && len(kept) == len(ids) {
			continue // nothing of another system
		}
		if !dropped { // copies, before the first change
			c := *res
			c.Entries = slices.Clone(res.Entries)
			r, rr, dropped = &c, slices.Clone(raws), true
		}
		r.Entries[i].DeliverMRNs = keep
		if len(kept) != len(ids) {
			patient["identifier"] = kept
			if rr[i], err = fhirwire.Marshal(patient); err != nil {
				return nil, nil, false, fmt.Errorf("mapped Patient: %w", err)
			}
		}
	}
	return r, rr, dropped, nil
}

// Payloads are the transaction Bundles dests receive of a mapped record
// (res, rendered as raws), by destination: each with only the MRNs of
// systems(dest) (nil: every MRN). The destinations that are sent every
// MRN the record has (no mrnSystems, or theirs leave none out) share one
// rendering.
func Payloads(res *mapping.Result, raws [][]byte, dests []string, systems func(dest string) []string) (map[string][]byte, error) {
	out := make(map[string][]byte, len(dests))
	var every []byte
	for _, d := range dests {
		if s := systems(d); s != nil {
			r, rr, dropped, err := withMRNsOf(res, raws, s)
			if err != nil {
				return nil, err
			}
			if dropped {
				if out[d], err = Transaction(r, rr); err != nil {
					return nil, err
				}
				continue
			}
		}
		if every == nil {
			var err error
			if every, err = Transaction(res, raws); err != nil {
				return nil, err
			}
		}
		out[d] = every
	}
	return out, nil
}

// UnknownProperties are the JSON pointers of the properties of doc, a
// record of kind, that its schema does not define
// (schemas.Set.UnknownProperties): the sender's text, for the sender's own
// tools (the CLI's map), never for an answer or a log.
func (p *Pipeline) UnknownProperties(kind mapping.Kind, doc []byte) []string {
	return p.schemas.UnknownProperties(string(kind), doc)
}
