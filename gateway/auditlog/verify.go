package auditlog

import (
	"context"
	"errors"
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

// Verify walks the whole audit chain. A broken chain is reported in
// the result, not as an error; errors are the store's.
func Verify(ctx context.Context, st store.Store, now time.Time) (*AuditVerification, error) {
	var v audit.Verifier
	out := &AuditVerification{Intact: true, Checked: now.UTC()}
	err := st.AuditChain(ctx, func(e audit.ChainEntry) error {
		if err := v.Add(e); err != nil {
			return err
		}
		out.HeadSeq, out.HeadHash = e.Seq, e.Hash
		return nil
	})
	var bl *audit.BrokenLink
	switch {
	case errors.As(err, &bl):
		out.Intact, out.BrokenAt, out.Reason = false, bl.Seq, bl.Reason
	case err != nil:
		return nil, err
	}
	out.Records = v.Verified()
	return out, nil
}
