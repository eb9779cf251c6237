package sqlite

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/audit"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store/internal/sqlstore"
)

// TestAuditChainTamper changes the stored chain behind the store's back:
// the verifier names the first broken link.
func TestAuditChainTamper(t *testing.T) {
	tests := []struct {
		name       string
		tamper     func(t *testing.T, s *Store)
		wantSeq    int64
		wantReason string
	}{
		{"body byte changed", func(t *testing.T, s *Store) {
			var body []byte
			if err := s.r.QueryRow(`SELECT body FROM resources WHERE type = 'AuditEvent' AND id = 'ae3' AND version = 1`).Scan(&body); err != nil {
				t.Fatal(err)
			}
			body[len(body)/2] ^= 0x01
			execSQL(t, s, `UPDATE resources SET body = ? WHERE type = 'AuditEvent' AND id = 'ae3' AND version = 1`, body)
		}, 3, "changed"},
		{"packed body that does not unpack", func(t *testing.T, s *Store) {
			execSQL(t, s, `UPDATE resources SET body = ? WHERE type = 'AuditEvent' AND id = 'ae3' AND version = 1`, []byte{0x01, 0xff, 0xff})
		}, 3, "changed"},
		{"body deleted", func(t *testing.T, s *Store) {
			execSQL(t, s, `DELETE FROM current WHERE type = 'AuditEvent' AND id = 'ae4'`)
			execSQL(t, s, `DELETE FROM resources WHERE type = 'AuditEvent' AND id = 'ae4'`)
		}, 4, "its AuditEvent was deleted"},
		{"hash changed", func(t *testing.T, s *Store) {
			execSQL(t, s, `UPDATE audit_chain SET hash = ? WHERE seq = 2`, audit.Link("", []byte("forged")))
		}, 2, "changed"},
		{"entry deleted", func(t *testing.T, s *Store) {
			execSQL(t, s, `DELETE FROM audit_chain WHERE seq = 3`)
		}, 3, "missing"},
		{"entry deleted and the chain moved on", func(t *testing.T, s *Store) {
			execSQL(t, s, `DELETE FROM audit_chain WHERE seq = 5`)
			appendAudit(t, s, "ae6")
		}, 5, "missing"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, _ := openTemp(t, Options{})
			defer s.Close()
			for i := 1; i <= 5; i++ {
				appendAudit(t, s, fmt.Sprintf("ae%d", i))
			}
			if err := verify(t, s); err != nil {
				t.Fatalf("before tampering: %v", err)
			}
			tc.tamper(t, s)
			err := verify(t, s)
			var bl *audit.BrokenLink
			if !errors.As(err, &bl) || bl.Seq != tc.wantSeq || !strings.Contains(bl.Reason, tc.wantReason) {
				t.Errorf("verify = %v, want a broken link at %d (%s)", err, tc.wantSeq, tc.wantReason)
			}
		})
	}
}

// TestAuditEventsStoredPacked: an AuditEvent's body is stored packed
// (store.PackBody) and read as its JSON; one stored as JSON, as before
// schema 10, reads as it is and its chain entry still verifies.
func TestAuditEventsStoredPacked(t *testing.T) {
	s, _ := openTemp(t, Options{})
	defer s.Close()
	appendAudit(t, s, "ae1")
	appendAudit(t, s, "ae2")
	want := fmt.Appendf(nil, `{"resourceType":"AuditEvent","id":%q}`, "ae1")
	var stored []byte
	if err := s.r.QueryRow(`SELECT body FROM resources WHERE type = 'AuditEvent' AND id = 'ae1'`).Scan(&stored); err != nil {
		t.Fatal(err)
	}
	if len(stored) == 0 || stored[0] == '{' {
		t.Fatalf("stored body = %q, want it packed", stored)
	}
	execSQL(t, s, `UPDATE resources SET body = ? WHERE type = 'AuditEvent' AND id = 'ae1'`, want)
	for _, id := range []string{"ae1", "ae2"} {
		res, err := s.Read(context.Background(), "AuditEvent", id)
		if err != nil || !bytes.Equal(res.Body, fmt.Appendf(nil, `{"resourceType":"AuditEvent","id":%q}`, id)) {
			t.Errorf("Read %s = %v, %v; want its JSON", id, res, err)
		}
	}
	if err := verify(t, s); err != nil {
		t.Errorf("verify with one body stored as JSON: %v", err)
	}
}

func appendAudit(t *testing.T, s *Store, id string) {
	t.Helper()
	body := fmt.Appendf(nil, `{"resourceType":"AuditEvent","id":%q}`, id)
	err := s.Write(context.Background(), func(tx store.Tx) error {
		if err := tx.Put(&store.Resource{Type: "AuditEvent", ID: id, Version: 1, Body: body}, nil); err != nil {
			return err
		}
		return tx.AppendAudit(id, body, nil)
	})
	if err != nil {
		t.Fatalf("append %s: %v", id, err)
	}
}

func execSQL(t *testing.T, s *Store, q string, args ...any) {
	t.Helper()
	if err := s.c.Autocommit(context.Background(), func(c sqlstore.Conn) error {
		_, err := c.Exec(context.Background(), q, args...)
		return err
	}); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
}

// verify walks the chain and returns the verifier's first error.
func verify(t *testing.T, s *Store) error {
	t.Helper()
	var v audit.Verifier
	var broken error
	err := s.AuditChainAfter(context.Background(), 0, func(e audit.ChainEntry) error {
		if broken == nil {
			broken = v.Add(e)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("AuditChainAfter: %v", err)
	}
	return broken
}
