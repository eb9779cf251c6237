package auditlog

import (
	"context"
	"fmt"
	"strings"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/audit"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/search"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
)

// The ledger's side: every native record version the ledger holds was
// stored by a write whose transaction wrote the version's receipt
// (audit.RecordProvenanceID) and chained the AuditEvent naming it. A
// ledger entry whose receipt no chained AuditEvent names outlived that
// AuditEvent: someone with write access cut the chain's tail, moved the
// head back and deleted the receipts too (with the outbox rows of their
// deliveries), which checkUnnamed alone does not see (an auditor's
// review, session 43), or wrote the entry behind the gateway's back.

// checkLedger pages through the ledger's keys (for a walk from an anchor,
// the entries received since it) and reports each entry whose receipt no
// chained AuditEvent names (for a walk from an anchor, nor the search
// index finds named: vouched), unless checkUnnamed reported that receipt,
// stored, already (the same cut, told once). namedSince names the receipts of the
// AuditEvents committed since the walk, once, when one is missing. A
// store that lists no ledger is not checked.
func (c *lineageChecker) checkLedger(ctx context.Context, namedSince func() error) error {
	bulk, ok := c.st.(store.Bulk)
	if !ok {
		return nil
	}
	q := store.LedgerQuery{Tenant: search.AllTenants, Since: c.fromAt, KeysOnly: true, Limit: 1000}
	var left []string
	for {
		page, err := bulk.LedgerEntries(ctx, q)
		if err != nil {
			return fmt.Errorf("the ledger: %w", err)
		}
		for _, l := range page {
			c.out.Lineage.LedgerEntries++
			id := audit.RecordProvenanceID(l.Tenant, l.RecordSource(), l.Kind, l.RecordID, l.Version)
			switch {
			case l.Source == l.RecordSource() && l.Tenant != "" || l.Tenant == "" && strings.HasPrefix(l.Source, "tenant:"):
				// Not in its tenant's namespace, as the gateway writes
				// every entry: relabelled (an auditor's review: a cut
				// record's entry relabelled onto another's named
				// receipt). The ledger's key (source, kind, record,
				// version) holds one entry a receipt otherwise.
				c.ledgerFault(id, MislabelledLedgerProblem)
			case !c.receipts.has(id):
				left = append(left, id)
			}
		}
		if len(page) < q.Limit {
			break
		}
		last := page[len(page)-1]
		q.After = store.LedgerKey{Source: last.Source, Kind: last.Kind, RecordID: last.RecordID, Version: last.Version}
	}
	if len(left) == 0 {
		return nil
	}
	if err := namedSince(); err != nil {
		return err
	}
	for _, id := range left {
		if c.receipts.has(id) || c.unnamed[id] { // named, or reported stored but unnamed
			continue
		}
		if !c.fromAt.IsZero() {
			ok, err := c.vouched(ctx, id)
			if err != nil {
				return err
			}
			if ok {
				continue
			}
		}
		c.ledgerFault(id, UnreceiptedRecordProblem)
	}
	return nil
}

// ledgerFault records the fault problem of a ledger entry whose receipt
// would be Provenance/id.
func (c *lineageChecker) ledgerFault(id, problem string) {
	c.out.Lineage.UnreceiptedRecords++
	c.out.lineageFault(0, "", "Provenance/"+id, problem)
}

// MislabelledLedgerProblem is the fault of a ledger entry the gateway
// cannot have written: its source outside its tenant's namespace.
const MislabelledLedgerProblem = "the ledger holds a native record version under a key the gateway does not write (its source " +
	"outside its tenant's namespace; this Provenance is the receipt the key names): the entry was relabelled, as hiding a " +
	"record whose receipt was deleted does, or written behind the gateway's back"

// UnreceiptedRecordProblem is the fault of a ledger entry whose receipt no
// chained AuditEvent names. The fault names the receipt the entry should
// have (Provenance/id), not the record: its ids are the clinic's.
const UnreceiptedRecordProblem = "the ledger holds a native record version whose receipt (this Provenance) no chained AuditEvent " +
	"names: the write that stored the record chained an AuditEvent naming its receipt in the same transaction, so the audit " +
	"chain lost that AuditEvent (its tail cut, the head moved back and the receipt deleted), or the ledger entry was " +
	"written behind the gateway's back"
