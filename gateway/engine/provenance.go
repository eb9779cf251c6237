package engine

import (
	"errors"
	"fmt"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/audit"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/outcome"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
)

// The gateway's own Provenance (of every native record stored, mapping
// replay and client Bundle: audit.IsGatewayProvenance) is an audit record,
// and the lineage is built from it: clients read it but do not write it.
// Other Provenance (Synthea's, an EHR's) stays an ordinary resource.

// errProvenanceReadOnly refuses a change to a stored Provenance the
// gateway wrote (of a native record, a replay or a client's Bundle: it
// names the gateway's agents), whatever its id; errProvenanceReserved a
// write at an id reserved for the gateway's Provenance of native records.
// One rule, two reasons: the message said "ids rec-… are reserved" for a
// Bundle's Provenance whose id is not one (p45 F2).
var (
	errProvenanceReadOnly = &outcome.Error{Kind: outcome.MethodNotAllowed, Allow: ReadOnlyMethods, Issues: []outcome.Issue{{
		Severity: "error", Code: "forbidden", Rule: "provenance-read-only",
		Message: "this Provenance is the gateway's own audit record (it names the gateway's agents): it cannot be changed or deleted; " +
			"to say more of the resources it covers, write a Provenance of your own"}}}
	errProvenanceReserved = &outcome.Error{Kind: outcome.MethodNotAllowed, Allow: ReadOnlyMethods, Issues: []outcome.Issue{{
		Severity: "error", Code: "forbidden", Rule: "provenance-read-only",
		Message: "ids beginning rec- are reserved for the gateway's Provenance of native records: a client cannot create, " +
			"change or delete one; write your own Provenance with another id"}}}
)

var errProvenanceAgent = &outcome.Error{Kind: outcome.Forbidden, Issues: []outcome.Issue{{
	Severity: "error", Code: "forbidden", Rule: "provenance-agent-reserved",
	Message: "a client's Provenance may not name the gateway's own agents (an agent identified in the systems " +
		"…/sid/client, …/sid/source-system or …/sid/mapping-version, or the anonymous development-mode client): " +
		"those are the gateway's audit records; name your own agents",
	Expression: "Provenance.agent"}}}

// clientWritableAt is clientWritable for a write at typ/id ("" for none
// yet): an id reserved for the gateway's Provenance is refused before the
// body is read.
func clientWritableAt(typ, id string) error {
	if typ == "Provenance" && audit.ReservedProvenanceID(id) {
		return errProvenanceReserved
	}
	return clientWritable(typ)
}

// provenanceWrite checks a client's write of a Provenance: at id (""
// for a create at an id the server chooses), with the new content doc
// (nil for a delete). Writing at a reserved id is errProvenanceReserved,
// over a Provenance the gateway wrote errProvenanceReadOnly; content
// naming the gateway's agents errProvenanceAgent.
func provenanceWrite(tx store.Tx, id string, doc map[string]any) error {
	if id != "" {
		if audit.ReservedProvenanceID(id) {
			return errProvenanceReserved
		}
		cur, err := tx.Read("Provenance", id)
		switch {
		case err == nil:
			stored, err := decodeJSON(cur.Body)
			if err != nil {
				return fmt.Errorf("stored Provenance/%s: %w", id, err)
			}
			if audit.IsGatewayProvenance(stored) {
				return errProvenanceReadOnly
			}
		case errors.Is(err, store.ErrNotFound), errors.Is(err, store.ErrGone):
		default:
			return err
		}
	}
	if doc != nil && audit.IsGatewayProvenance(doc) {
		return errProvenanceAgent
	}
	return nil
}
