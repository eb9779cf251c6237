package auditlog

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"net/url"
	"slices"
	"strings"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/audit"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/search"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
)

// The receipts' side of the other way round: a Provenance (the gateway's
// receipt of a native record, a client's Bundle or a mapping replay, or a
// client's own) is written in the transaction that chains its request's
// AuditEvent, which names it, or names the receipt that lists it. One that
// no chained AuditEvent vouches for outlived the AuditEvent that wrote it:
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
}

func receiptKey(id string) [16]byte {
	sum := sha256.Sum256([]byte(id))
	return [16]byte(sum[:16])
}

func compareKeys(a, b [16]byte) int { return bytes.Compare(a[:], b[:]) }

// add notes that an AuditEvent names Provenance id.
func (r *receiptNames) add(id string) { r.named = append(r.named, receiptKey(id)) }

// has reports whether an AuditEvent names Provenance id.
func (r *receiptNames) has(id string) bool {
	if r.sorted < len(r.named) {
		slices.SortFunc(r.named, compareKeys)
		r.named = slices.Compact(r.named)
		r.sorted = len(r.named)
	}
	_, ok := slices.BinarySearchFunc(r.named, receiptKey(id), compareKeys)
	return ok
}

// nameReceipts notes the Provenances ev, a chained AuditEvent, names: the
// receipt a write wrote, a client's Provenance a create or update wrote,
// one a request read (read after it was written, so later in the chain
// than the write that a tail cut would remove with it).
func (c *lineageChecker) nameReceipts(ev *chainedEvent) {
	for _, en := range ev.Entity {
		if rest, ok := strings.CutPrefix(en.What.Reference, "Provenance/"); ok {
			id, _, _ := strings.Cut(rest, "/_history/")
			c.receipts.add(id)
		}
	}
}

// checkUnnamed pages through the current Provenance rows (for a walk from
// an anchor, those written since it: an index, no body) and reports each
// one no chained AuditEvent names and no named receipt vouches for. A
// receipt is named by the AuditEvent of the write that stored it; a
// client's own Provenance by the AuditEvent of its create or update, or,
// written in a Bundle, by the Bundle's receipt, which lists it among its
// targets (vouched). Nothing the row or the body says of itself (its
// time, its agents) exempts it: whoever can cut the chain's tail can
// change those too (an auditor's review: receipts back-dated before the
// trail's first AuditEvent, or relabelled as a client's, hid a cut).
// walkedTo is the last record the walk read: a Provenance written while
// verify ran is named by an AuditEvent after it, read once the rows are.
func (c *lineageChecker) checkUnnamed(ctx context.Context, namedSince func() error) error {
	var left []store.Listed
	var after *store.Listed
	for {
		page, err := c.st.CurrentAfter(ctx, "Provenance", after, c.fromAt, 1000)
		if err != nil {
			return err
		}
		for _, p := range page {
			if !c.receipts.has(p.ID) {
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
	if err := namedSince(); err != nil {
		return err
	}
	for _, p := range left {
		if c.receipts.has(p.ID) {
			continue
		}
		ok, err := c.vouched(ctx, p.ID)
		if err != nil {
			return err
		}
		if !ok {
			if c.unnamed == nil {
				c.unnamed = map[string]bool{}
			}
			c.unnamed[p.ID] = true
			c.out.Lineage.UnnamedReceipts++
			c.out.lineageFault(0, "", fmt.Sprintf("Provenance/%s/_history/%d", p.ID, p.Version), UnnamedReceiptProblem)
		}
	}
	return nil
}

// namedSince returns a function that names the receipts of the
// AuditEvents committed since the walk's last record, walkedTo (written
// while verify ran), the first time it is called: names only.
func (c *lineageChecker) namedSince(ctx context.Context, walkedTo int64) func() error {
	done := false
	return func() error {
		if done {
			return nil
		}
		done = true
		return c.st.AuditChainAfter(ctx, walkedTo, func(e audit.ChainEntry) error {
			if !bytes.Contains(e.Body, markProvenance) {
				return nil
			}
			var ev chainedEvent
			if json.Unmarshal(e.Body, &ev) == nil {
				c.nameReceipts(&ev)
			}
			return nil
		})
	}
}

// vouched reports whether Provenance id, which no AuditEvent walked names,
// is listed among its targets by a receipt an AuditEvent walked names (a
// client's Provenance written in a Bundle: the receipt's body says so, as
// its AuditEvent's hash vouches; the index only finds it), or, for a walk
// from an anchor, is named by an AuditEvent the search index finds (one
// committed before the anchor's, not walked).
func (c *lineageChecker) vouched(ctx context.Context, id string) (bool, error) {
	ref := "Provenance/" + id
	by, err := searchAll(ctx, c.st, search.AllTenants, "Provenance", url.Values{"target": {ref}}, 20)
	if err != nil {
		return false, fmt.Errorf("the receipts of %s: %w", ref, err)
	}
	for _, r := range by {
		rid, _ := r["id"].(string)
		if rid == id || !c.receipts.has(rid) {
			continue
		}
		targets, _ := r["target"].([]any)
		for _, t := range targets {
			tr, _ := t.(map[string]any)
			if v, _ := tr["reference"].(string); v == ref || strings.HasPrefix(v, ref+"/_history/") {
				return true, nil
			}
		}
	}
	if c.fromAt.IsZero() {
		return false, nil
	}
	evs, err := searchAll(ctx, c.st, search.AllTenants, "AuditEvent", url.Values{"entity": {ref}}, 1)
	if err != nil {
		return false, fmt.Errorf("the AuditEvents naming %s: %w", ref, err)
	}
	return len(evs) > 0, nil
}

// UnnamedReceiptProblem is the fault of a Provenance no AuditEvent names.
const UnnamedReceiptProblem = "no chained AuditEvent names this Provenance, nor does a named receipt list it: the request " +
	"that wrote it chained an AuditEvent naming it in the same transaction, so the audit chain lost that AuditEvent " +
	"(its tail cut and the head moved back), or the Provenance was written behind the gateway's back"
