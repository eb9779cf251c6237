package gateway_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ketamine-gateway/ketamine-gateway/gateway"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/app"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/audit"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/auditlog"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store/sqlite"
)

// commitFails is a store whose next armed write runs its transaction in
// full and then fails to commit it (the database connection was
// terminated at COMMIT): what the transaction wrote is rolled back and
// the write answers ErrUnavailable. Later writes (the failure's own
// AuditEvent) commit.
type commitFails struct {
	store.Store
	armed atomic.Bool
}

var errCommitLost = errors.New("commit lost")

func (c *commitFails) Write(ctx context.Context, fn func(store.Tx) error) error {
	if !c.armed.CompareAndSwap(true, false) {
		return c.Store.Write(ctx, fn)
	}
	err := c.Store.Write(ctx, func(tx store.Tx) error {
		if err := fn(tx); err != nil {
			return err
		}
		return errCommitLost // fn ran to its end: roll it all back
	})
	if errors.Is(err, errCommitLost) {
		return store.Unavailable(store.CauseUnreachable, err)
	}
	return err
}

// TestRolledBackWriteNamesNothingWritten (p37 F2): a transaction Bundle
// whose commit fails is answered 503, and its AuditEvent (a failure)
// names no version of the rolled-back transaction (no Provenance with a
// json-sha256 detail, no resource version that was never stored): the
// audit trail verifies intact, where it used to report the receipt
// deleted.
func TestRolledBackWriteNamesNothingWritten(t *testing.T) {
	st := tempSQLite(t, sqlite.Options{})
	cf := &commitFails{Store: st}
	s := newServer(t, app.Config{Store: cf}, gateway.Config{RateLimit: -1})
	bundle := `{"resourceType":"Bundle","type":"transaction","entry":[
	 {"fullUrl":"urn:uuid:0b8a1c52-7a0c-4d33-9f4e-9d1b2f8f6a11","resource":{"resourceType":"Patient","gender":"female"},"request":{"method":"POST","url":"Patient"}}]}`
	cf.armed.Store(true)
	rec := do(s, http.MethodPost, "/fhir", gateway.ContentTypeFHIR, []byte(bundle))
	if rec.Code != http.StatusServiceUnavailable {
		t.Fatalf("transaction whose commit fails = %d %s, want 503", rec.Code, rec.Body)
	}
	var failed []audit.ChainEntry
	if err := st.AuditChainAfter(context.Background(), 0, func(e audit.ChainEntry) error {
		if strings.Contains(string(e.Body), `"outcome":"8"`) {
			failed = append(failed, e)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(failed) != 1 {
		t.Fatalf("AuditEvents of a failure = %d, want 1", len(failed))
	}
	body := string(failed[0].Body)
	for _, never := range []string{audit.DetailJSONSHA256, `"Provenance/`, `"Patient/`} {
		if strings.Contains(body, never) {
			t.Errorf("the rolled-back write's AuditEvent names %s: %s", never, body)
		}
	}
	res, err := auditlog.Verify(context.Background(), st, time.Now())
	if err != nil || !res.Intact {
		t.Errorf("Verify after a rolled-back write = %+v, %v, want intact", res, err)
	}
}

// runsTwice is a store that runs each write's fn twice in one
// transaction, the first run in a savepoint rolled back (as the group
// commit does when another write of the batch failed: the batch runs
// again with a savepoint each), and commits the second.
type runsTwice struct{ store.Store }

var errOtherFailed = errors.New("another write of the batch failed")

func (r runsTwice) Write(ctx context.Context, fn func(store.Tx) error) error {
	return r.Store.Write(ctx, func(tx store.Tx) error {
		if err := tx.Savepoint(func() error {
			if err := fn(tx); err != nil {
				return err
			}
			return errOtherFailed
		}); !errors.Is(err, errOtherFailed) {
			return err
		}
		return fn(tx)
	})
}

// TestRerunWriteNamesOnlyCommitted (p37 F2): a write whose fn ran twice
// (the first run rolled back) names as written only the Provenance of the
// run that committed, and verify finds it intact.
func TestRerunWriteNamesOnlyCommitted(t *testing.T) {
	st := tempSQLite(t, sqlite.Options{})
	s := newServer(t, app.Config{Store: runsTwice{st}}, gateway.Config{RateLimit: -1})
	bundle := `{"resourceType":"Bundle","type":"transaction","entry":[
	 {"fullUrl":"urn:uuid:0b8a1c52-7a0c-4d33-9f4e-9d1b2f8f6a12","resource":{"resourceType":"Patient","gender":"male"},"request":{"method":"POST","url":"Patient"}}]}`
	if rec := do(s, http.MethodPost, "/fhir", gateway.ContentTypeFHIR, []byte(bundle)); rec.Code != http.StatusOK {
		t.Fatalf("transaction = %d %s, want 200", rec.Code, rec.Body)
	}
	var provenances int
	if err := st.AuditChainAfter(context.Background(), 0, func(e audit.ChainEntry) error {
		provenances += strings.Count(string(e.Body), `"reference":"Provenance/`)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if provenances != 1 {
		t.Errorf("Provenances named by the AuditEvents = %d, want 1 (the committed run's)", provenances)
	}
	res, err := auditlog.Verify(context.Background(), st, time.Now())
	if err != nil || !res.Intact || res.Lineage.Provenances != 1 {
		t.Errorf("Verify after a rerun write = %+v, %v, want intact with 1 Provenance checked", res, err)
	}
}
