package auditlog

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/audit"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
)

// The receipts' side of the other way round: a receipt (the gateway's
// Provenance of a native record, a client's Bundle or a mapping replay)
// is written in the transaction that chains its request's AuditEvent,
// which names it, so every receipt stored is named by a chained
// AuditEvent. One that none names outlived the AuditEvent that wrote it:
// someone with write access cut the chain's tail and moved the head back
// (an auditor's review, session 42: a cut tail, with the outbox rows of
// its deliveries deleted, verified intact, the receipts of the cut writes
// still served).

// receiptNames are the Provenances the AuditEvents walked name, as the
// first 16 bytes of the SHA-256 of their ids: a whole walk names every
// receipt of the trail, millions; a slice, sorted when first looked up,
// holds 16 bytes a receipt.
type receiptNames struct {
	named  [][16]byte
	sorted int // named[:sorted] is sorted and without repeats
	// first is when the earliest AuditEvent walked that names a
	// Provenance was recorded (zero: none).
	first time.Time
}

func receiptKey(id string) [16]byte {
	sum := sha256.Sum256([]byte(id))
	return [16]byte(sum[:16])
}

// add notes that an AuditEvent recorded at at names Provenance id.
func (r *receiptNames) add(id string, at time.Time) {
	r.named = append(r.named, receiptKey(id))
	if !at.IsZero() && (r.first.IsZero() || at.Before(r.first)) {
		r.first = at
	}
}

// has reports whether an AuditEvent names Provenance id.
func (r *receiptNames) has(id string) bool {
	if r.sorted < len(r.named) {
		slices.SortFunc(r.named, func(a, b [16]byte) int { return bytes.Compare(a[:], b[:]) })
		r.named = slices.Compact(r.named)
		r.sorted = len(r.named)
	}
	_, ok := slices.BinarySearchFunc(r.named, receiptKey(id), func(a, b [16]byte) int { return bytes.Compare(a[:], b[:]) })
	return ok
}

// nameReceipts notes the Provenances ev, an AuditEvent of a write that
// writes one (writesProvenance), names: the one it wrote, and any a
// Bundle read.
func (c *lineageChecker) nameReceipts(ev *chainedEvent) {
	at, _ := time.Parse(time.RFC3339Nano, ev.Recorded)
	for _, en := range ev.Entity {
		if rest, ok := strings.CutPrefix(en.What.Reference, "Provenance/"); ok {
			id, _, _ := strings.Cut(rest, "/_history/")
			c.receipts.add(id, at)
		}
	}
}

// checkUnnamed pages through the current Provenance rows (for a walk from
// an anchor, those written since it) and reports each receipt no
// AuditEvent names. Only the rows are read (an index), and the body of a
// Provenance none names, to tell a receipt from a client's own
// Provenance (which no AuditEvent names as a receipt). walkedTo is the
// last record the walk read: a receipt written while verify ran is named
// by an AuditEvent after it, read once the rows are.
func (c *lineageChecker) checkUnnamed(ctx context.Context, walkedTo int64) error {
	first, err := c.firstOf(ctx, c.receipts.first, "ingest,transaction,batch,mapping-replay")
	if err != nil {
		return err
	}
	lc := &c.out.Lineage
	var left []store.Listed
	var after *store.Listed
	for {
		page, err := c.st.CurrentAfter(ctx, "Provenance", after, c.fromAt, 1000)
		if err != nil {
			return err
		}
		for _, p := range page {
			if p.Deleted || c.receipts.has(p.ID) {
				continue
			}
			receipt, err := c.isReceipt(ctx, p.ID)
			if err != nil {
				return err
			}
			if receipt && c.held(p.At, first, &lc.ReceiptsBeforeNaming, &lc.ReceiptsNearAnchor) {
				left = append(left, p)
			}
		}
		if len(page) < 1000 {
			break
		}
		after = &page[len(page)-1]
	}
	if len(left) == 0 {
		return nil
	}
	// The AuditEvents committed since the walk (receipts written
	// meanwhile): names only.
	err = c.st.AuditChainAfter(ctx, walkedTo, func(e audit.ChainEntry) error {
		if !bytes.Contains(e.Body, markProvenance) {
			return nil
		}
		var ev chainedEvent
		if json.Unmarshal(e.Body, &ev) != nil || len(ev.Subtype) == 0 || !writesProvenance[ev.Subtype[0].Code] {
			return nil
		}
		c.nameReceipts(&ev)
		return nil
	})
	if err != nil {
		return err
	}
	for _, p := range left {
		if c.receipts.has(p.ID) {
			continue
		}
		lc.UnnamedReceipts++
		c.out.lineageFault(0, "", fmt.Sprintf("Provenance/%s/_history/%d", p.ID, p.Version), UnnamedReceiptProblem)
	}
	return nil
}

// isReceipt reports whether the current version of Provenance id is one
// of the gateway's (audit.IsGatewayProvenance), not a client's.
func (c *lineageChecker) isReceipt(ctx context.Context, id string) (bool, error) {
	r, err := c.st.Read(ctx, "Provenance", id)
	switch {
	case errors.Is(err, store.ErrNotFound), errors.Is(err, store.ErrGone):
		return false, nil // deleted since it was listed
	case err != nil:
		return false, err
	}
	var doc map[string]any
	if json.Unmarshal(r.Body, &doc) != nil {
		return audit.ReservedProvenanceID(id), nil
	}
	return audit.IsGatewayProvenance(doc) || audit.ReservedProvenanceID(id), nil
}

// UnnamedReceiptProblem is the fault of a receipt no AuditEvent names.
const UnnamedReceiptProblem = "no chained AuditEvent names this receipt, though the request that wrote it chained one naming it " +
	"in the same transaction: the audit chain lost that AuditEvent (its tail cut and the head moved back), or the receipt " +
	"was written behind the gateway's back"
