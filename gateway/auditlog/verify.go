package auditlog

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/audit"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
)

// AuditVerification is the result of checking the audit hash chain.
type AuditVerification struct {
	Intact   bool   `json:"intact"`
	Records  int64  `json:"records"`
	HeadSeq  int64  `json:"headSeq,omitempty"`
	HeadHash string `json:"headHash,omitempty"`
	// BrokenAt and Reason name the first broken link.
	BrokenAt int64     `json:"brokenAt,omitempty"`
	Reason   string    `json:"reason,omitempty"`
	Checked  time.Time `json:"checked"`
}

// Verify walks the whole audit chain and compares it with the chain head
// the store keeps (read first: the walk, which may see later entries too,
// must reach that head's record with that hash). A broken chain is
// reported in the result, not as an error: a changed, missing or
// misplaced record, or a chain that ends before its head (a cut tail) or
// whose head names another hash (a changed head or tail); errors are the
// store's.
func Verify(ctx context.Context, st store.Store, now time.Time) (*AuditVerification, error) {
	var v audit.Verifier
	out := &AuditVerification{Intact: true, Checked: now.UTC()}
	headSeq, headHash, err := st.AuditChainHead(ctx)
	headMissing := errors.Is(err, store.ErrNotFound)
	if err != nil && !headMissing {
		return nil, err
	}
	var atHead string // the walked hash of record headSeq
	err = st.AuditChain(ctx, func(e audit.ChainEntry) error {
		if err := v.Add(e); err != nil {
			return err
		}
		out.HeadSeq, out.HeadHash = e.Seq, e.Hash
		if e.Seq == headSeq {
			atHead = e.Hash
		}
		return nil
	})
	var bl *audit.BrokenLink
	switch {
	case errors.As(err, &bl):
		out.Intact, out.BrokenAt, out.Reason = false, bl.Seq, bl.Reason
	case err != nil:
		return nil, err
	case headMissing:
		out.Intact, out.BrokenAt, out.Reason = false, out.HeadSeq+1, "the chain head record is missing from the database"
	case out.HeadSeq < headSeq:
		out.Intact, out.BrokenAt = false, out.HeadSeq+1
		out.Reason = fmt.Sprintf("records %d to %d are missing: the chain ends at record %d, its head names record %d",
			out.HeadSeq+1, headSeq, out.HeadSeq, headSeq)
	case headSeq > 0 && atHead != headHash:
		out.Intact, out.BrokenAt = false, headSeq
		out.Reason = fmt.Sprintf("the chain head's hash does not match record %d: the head or the chain's tail was changed", headSeq)
	default:
		// The head only moves on: read again, it must have reached the end
		// of the walk.
		after, _, err := st.AuditChainHead(ctx)
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return nil, err
		}
		if after < out.HeadSeq {
			out.Intact, out.BrokenAt = false, after+1
			out.Reason = fmt.Sprintf("the chain head names record %d, but the chain goes on to record %d: the head was moved back", after, out.HeadSeq)
		}
	}
	out.Records = v.Verified()
	return out, nil
}
