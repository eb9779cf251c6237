package auditlog

import (
	"context"
	"database/sql"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store/sqlite"
	_ "modernc.org/sqlite"
)

// TestVerifyChainHead: the chain walked must reach the head the database
// keeps, with its hash; a cut tail, a changed head and a head moved back
// are broken chains, whatever the walk alone says.
func TestVerifyChainHead(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name       string
		tamper     []string
		wantAt     int64
		wantReason string
	}{
		{"intact", nil, 0, ""},
		{"tail cut", []string{`DELETE FROM audit_chain WHERE seq > 3`}, 4, "records 4 to 5 are missing"},
		{"tail cut and its AuditEvents too", []string{`DELETE FROM audit_chain WHERE seq > 4`,
			`DELETE FROM current WHERE type = 'AuditEvent' AND id = 'ae5'`,
			`DELETE FROM resources WHERE type = 'AuditEvent' AND id = 'ae5'`}, 5, "records 5 to 5 are missing"},
		{"head hash changed", []string{`UPDATE audit_chain_head SET hash = '00'`}, 5, "head's hash does not match record 5"},
		{"head moved back", []string{`UPDATE audit_chain_head SET seq = 3, hash = (SELECT hash FROM audit_chain WHERE seq = 3)`}, 4,
			"the chain head names record 3, but the chain goes on to record 5"},
		{"head row deleted", []string{`DELETE FROM audit_chain_head`}, 6, "head record is missing"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			db := filepath.Join(t.TempDir(), "kg.db")
			st, err := sqlite.Open(ctx, db, sqlite.Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer st.Close()
			for i := 1; i <= 5; i++ {
				id := fmt.Sprintf("ae%d", i)
				body := fmt.Appendf(nil, `{"resourceType":"AuditEvent","id":%q}`, id)
				err := st.Write(ctx, func(tx store.Tx) error {
					if err := tx.Put(&store.Resource{Type: "AuditEvent", ID: id, Version: 1, Body: body}, nil); err != nil {
						return err
					}
					return tx.AppendAudit(id, body, nil)
				})
				if err != nil {
					t.Fatal(err)
				}
			}
			raw, err := sql.Open("sqlite", db)
			if err != nil {
				t.Fatal(err)
			}
			defer raw.Close()
			for _, q := range tc.tamper {
				if _, err := raw.Exec(q); err != nil {
					t.Fatalf("%s: %v", q, err)
				}
			}
			res, err := Verify(ctx, st, time.Now())
			if err != nil {
				t.Fatal(err)
			}
			if tc.wantAt == 0 {
				if !res.Intact || res.HeadSeq != 5 || res.Records != 5 {
					t.Errorf("Verify = %+v, want intact with 5 records", res)
				}
				return
			}
			if res.Intact || res.BrokenAt != tc.wantAt || !strings.Contains(res.Reason, tc.wantReason) {
				t.Errorf("Verify = %+v, want broken at %d: %s", res, tc.wantAt, tc.wantReason)
			}
		})
	}
}
