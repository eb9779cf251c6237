// Package storetest is the backend-agnostic test suite of store.Store: every
// implementation (SQLite, PostgreSQL) runs the same Run from its own tests,
// which proves that they behave alike.
//
// The suite builds its index entries by hand (it does not depend on the
// extractor), so it also fixes the entry conventions the backends rely on:
// string entries carry the normalised form in Norm ("Müller" -> "muller")
// and the original in Exact; uri entries carry the uri in Exact; a date
// entry with a zero High is open-ended.
//
// The fixtures belong to the default tenant, but those of the Tenant tests,
// which load two clinics and the default tenant side by side.
package storetest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/search"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
)

// Run runs the tests of one store at a time (RunShared, NoncePurge, Clock,
// SearchAfterBulkLoad and the checks of open.go are run apart). open must return a new, empty store
// each time it is called (one per subtest); Run closes it when the subtest
// ends.
func Run(t *testing.T, open func(t *testing.T) store.Store) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s store.Store)
	}{
		{"CreateReadVRead", testCreateRead},
		{"VersionConflict", testVersionConflict},
		{"TxReadsOwnWrites", testTxReadsOwnWrites},
		{"SearchEach", testSearchEach},
		{"LargeTransaction", testLargeTransaction},
		{"Delete", testDelete},
		{"Rollback", testRollback},
		{"ClaimKey", testClaimKey},
		{"Ledger", testLedger},
		{"History", testHistory},
		{"PageBytes", testPageBytes},
		{"ConcurrentConditionalCreate", testConcurrentConditionalCreate},
		{"ConcurrentReadWrite", testConcurrentReadWrite},
		{"LostUpdate", testLostUpdate},
		{"IndexReplaced", testIndexReplaced},
		{"WriteDefaults", testWriteDefaults},
		{"SearchToken", testSearchToken},
		{"SearchString", testSearchString},
		{"SearchDate", testSearchDate},
		{"SearchLastUpdated", testSearchLastUpdated},
		{"SearchReference", testSearchReference},
		{"SearchQuantity", testSearchQuantity},
		{"SearchQuantityRanges", testSearchQuantityRanges},
		{"SearchNumber", testSearchNumber},
		{"SearchURI", testSearchURI},
		{"SearchID", testSearchID},
		{"SearchMissing", testSearchMissing},
		{"SystemSearch", testSystemSearch},
		{"SearchChain", testSearchChain},
		{"TenantChain", testTenantChain},
		{"TenantSharedChain", testTenantSharedChain},
		{"SearchCompartment", testSearchCompartment},
		{"SearchCarePeriod", testSearchCarePeriod},
		{"SearchPatientRows", testSearchPatientRows},
		{"SearchEveryday", testSearchEveryday},
		{"BadQueries", testBadQueries},
		{"NormalizedOnPut", testNormalizedOnPut},
		{"Sort", testSort},
		{"Paging", testPaging},
		{"DateSortPages", testDateSortPages},
		{"Include", testInclude},
		{"RevInclude", testRevInclude},
		{"Outbox", testOutbox},
		{"OutboxReplay", testOutboxReplay},
		{"OutboxLease", testOutboxLease},
		{"OutboxCancel", testOutboxCancel},
		{"OutboxCancelLapsed", testOutboxCancelLapsed},
		{"OutboxAttemptsAfter", testOutboxAttemptsAfter},
		{"CurrentAfter", testCurrentAfter},
		{"OutboxKeys", testOutboxKeys},
		{"OutboxReach", testOutboxReach},
		{"OutboxRetryLater", testOutboxRetryLater},
		{"DeliveryFilter", testDeliveryFilter},
		{"DeliveryIDKey", testDeliveryIDKey},
		{"AuditChain", testAuditChain},
		{"AuditEventBodies", testAuditEventBodies},
		{"AuditChainPaging", testAuditChainPaging},
		{"AuditChainSeek", testAuditChainSeek},
		{"AuditChainRollback", testAuditChainRollback},
		{"AuditChainConcurrent", testAuditChainConcurrent},
		{"AuditChainServed", testAuditChainServed},
		{"AuditIndex", testAuditIndex},
		{"AuditIndexBatched", testAuditIndexBatched},
		{"Savepoint", testSavepoint},
		{"FlushFailed", testFlushFailed},
		{"GroupCommit", testGroupCommit},
		{"GroupCommitSeesEarlier", testGroupCommitSeesEarlier},
		{"GroupCommitFlushConflict", testGroupCommitFlushConflict},
		{"GroupCommitFair", testGroupCommitFair},
		{"GroupCommitShare", testGroupCommitShare},
		{"GroupCommitJobLimit", testGroupCommitJobLimit},
		{"TenantSearch", testTenantSearch},
		{"TenantInclude", testTenantInclude},
		{"TenantHistory", testTenantHistory},
		{"TenantRead", testTenantRead},
		{"TenantOutbox", testTenantOutbox},
		{"Nonces", testNonces},
		{"ClientRecords", testClientRecords},
		{"NoncesConcurrent", testNoncesConcurrent},
		{"Jobs", testJobs},
		{"JobLease", testJobLease},
		{"JobClaimConcurrent", testJobClaimConcurrent},
		{"JobClaimFair", testJobClaimFair},
		{"Export", testExport},
		{"LedgerEntries", testLedgerEntries},
		{"SourceTenants", testSourceTenants},
		{"EnqueueDead", testEnqueueDead},
		{"Reindex", testReindex},
		{"ReindexKeys", testReindexKeys},
		{"ReindexConcurrent", testReindexConcurrent},
		{"ReindexRace", testReindexRace},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := open(t)
			t.Cleanup(func() {
				if err := s.Close(); err != nil {
					t.Errorf("Close: %v", err)
				}
			})
			tc.fn(t, s)
			checkIntegrity(t, s)
		})
	}
}

// integrityChecker is a store that can check the invariants tying its
// tables together (the SQL stores: sqlstore.Store.CheckIntegrity).
type integrityChecker interface {
	CheckIntegrity(ctx context.Context) error
}

// checkIntegrity checks, after a test that passed, that the store's tables
// still hold together: no index row of a resource that is not current or
// is deleted, no current row without its version.
func checkIntegrity(t *testing.T, s store.Store) {
	t.Helper()
	c, ok := s.(integrityChecker)
	if !ok || t.Failed() {
		return
	}
	if err := c.CheckIntegrity(context.Background()); err != nil {
		t.Errorf("after the test: %v", err)
	}
}

// base is the fixed time the fixtures are laid out from.
var base = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)

// res is a resource version for put.
func res(typ, id string, version int64, lu time.Time) *store.Resource {
	return &store.Resource{
		Type: typ, ID: id, Version: version, LastUpdated: lu,
		Body: fmt.Appendf(nil, `{"resourceType":%q,"id":%q,"meta":{"versionId":"%d"}}`, typ, id, version),
	}
}

// deletion is a deletion version for put.
func deletion(typ, id string, version int64, lu time.Time) *store.Resource {
	return &store.Resource{Type: typ, ID: id, Version: version, LastUpdated: lu, Deleted: true}
}

// put writes one resource version in its own transaction.
func put(t *testing.T, s store.Store, r *store.Resource, entries ...search.Entry) {
	t.Helper()
	if err := s.Write(context.Background(), func(tx store.Tx) error { return tx.Put(r, entries) }); err != nil {
		t.Fatalf("put %s/%s v%d: %v", r.Type, r.ID, r.Version, err)
	}
}

// doc is a fixture resource: version 1 with its entries.
type doc struct {
	typ, id string
	entries []search.Entry
}

// load writes fixture resources in one transaction, last_updated one hour
// apart in order from base.
func load(t *testing.T, s store.Store, docs ...doc) {
	t.Helper()
	err := s.Write(context.Background(), func(tx store.Tx) error {
		for i, d := range docs {
			if err := tx.Put(res(d.typ, d.id, 1, base.Add(time.Duration(i)*time.Hour)), d.entries); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("load: %v", err)
	}
}

// Entry constructors.

func tok(param, system, code string) search.Entry {
	return search.Entry{Param: param, Type: search.TypeToken, System: system, Code: code}
}

func tokText(param, system, code, text string) search.Entry {
	e := tok(param, system, code)
	e.Text = strings.ToLower(text)
	return e
}

func str(param, exact, norm string) search.Entry {
	return search.Entry{Param: param, Type: search.TypeString, Exact: exact, Norm: norm}
}

func date(param string, r [2]time.Time) search.Entry {
	return search.Entry{Param: param, Type: search.TypeDate, Low: r[0], High: r[1]}
}

func ref(param, typ, id string) search.Entry {
	return search.Entry{Param: param, Type: search.TypeReference, RefType: typ, RefID: id}
}

func refURL(param, url string) search.Entry {
	return search.Entry{Param: param, Type: search.TypeReference, RefURL: url}
}

func qty(param string, n float64, system, code, unit string) search.Entry {
	return search.Entry{Param: param, Type: search.TypeQuantity, Number: n, System: system, Code: code, Unit: unit}
}

func num(param string, n float64) search.Entry {
	return search.Entry{Param: param, Type: search.TypeNumber, Number: n}
}

func uri(param, u string) search.Entry {
	return search.Entry{Param: param, Type: search.TypeURI, Exact: u}
}

// Date ranges, as the extractor and the parser make them.

func day(y int, m time.Month, d int) [2]time.Time {
	lo := time.Date(y, m, d, 0, 0, 0, 0, time.UTC)
	return [2]time.Time{lo, lo.AddDate(0, 0, 1).Add(-time.Millisecond)}
}

func month(y int, m time.Month) [2]time.Time {
	lo := time.Date(y, m, 1, 0, 0, 0, 0, time.UTC)
	return [2]time.Time{lo, lo.AddDate(0, 1, 0).Add(-time.Millisecond)}
}

func year(y int) [2]time.Time {
	lo := time.Date(y, 1, 1, 0, 0, 0, 0, time.UTC)
	return [2]time.Time{lo, lo.AddDate(1, 0, 0).Add(-time.Millisecond)}
}

func instant(t time.Time) [2]time.Time { return [2]time.Time{t, t} }

func period(a, b [2]time.Time) [2]time.Time { return [2]time.Time{a[0], b[1]} }

// Query constructors.

func query(typ string, clauses ...search.Clause) *search.Query {
	return &search.Query{Type: typ, Clauses: clauses, Count: 100}
}

func clause(param string, typ search.Type, mod string, values ...search.Value) search.Clause {
	return search.Clause{Param: param, Type: typ, Modifier: mod, Values: values}
}

func missing(param string, typ search.Type, m bool) search.Clause {
	return search.Clause{Param: param, Type: typ, Modifier: "missing", Missing: &m}
}

func vCode(code string) search.Value { return search.Value{Code: code} }

func vSys(system, code string) search.Value {
	return search.Value{System: system, Code: code, HasSystem: true}
}

func vStr(s string) search.Value { return search.Value{Str: s} }

func vDate(p search.Prefix, r [2]time.Time) search.Value {
	return search.Value{Prefix: p, Low: r[0], High: r[1]}
}

func vRef(typ, id string) search.Value { return search.Value{RefType: typ, RefID: id} }

func vNum(p search.Prefix, n, precision float64) search.Value {
	return search.Value{Prefix: p, Number: n, Precision: precision}
}

func vQty(p search.Prefix, n, precision float64, system, code string) search.Value {
	return search.Value{Prefix: p, Number: n, Precision: precision, System: system, Code: code}
}

// ids are the ids of resources, in order.
func ids(rs []*store.Resource) []string {
	out := []string{}
	for _, r := range rs {
		out = append(out, r.ID)
	}
	return out
}

func sorted(ss []string) []string {
	out := append([]string{}, ss...)
	sort.Strings(out)
	return out
}

// search runs q with Store.Search and fails the test on error.
func doSearch(t *testing.T, s store.Store, q *search.Query) *store.Page {
	t.Helper()
	pg, err := s.Search(context.Background(), q)
	if err != nil {
		t.Fatalf("Search: %v", err)
	}
	return pg
}

// expect checks that q matches exactly want (in any order), with
// Store.Search and with Tx.Search.
func expect(t *testing.T, s store.Store, name string, q *search.Query, want ...string) {
	t.Helper()
	pg, err := s.Search(context.Background(), q)
	if err != nil {
		t.Errorf("%s: Search: %v", name, err)
		return
	}
	if got := sorted(ids(pg.Matches)); !slices.Equal(got, sorted(want)) {
		t.Errorf("%s: got %v, want %v", name, got, sorted(want))
	}
	var txIDs []string
	err = s.Write(context.Background(), func(tx store.Tx) error {
		pg, err := tx.Search(q)
		if err != nil {
			return err
		}
		txIDs = ids(pg.Matches)
		return nil
	})
	if err != nil {
		t.Errorf("%s: Tx.Search: %v", name, err)
	} else if got := sorted(txIDs); !slices.Equal(got, sorted(want)) {
		t.Errorf("%s: Tx.Search got %v, want %v", name, got, sorted(want))
	}
}

// expectSome checks that q matches every id of in and none of out.
func expectSome(t *testing.T, s store.Store, name string, q *search.Query, in, out []string) {
	t.Helper()
	got := ids(doSearch(t, s, q).Matches)
	for _, id := range in {
		if !slices.Contains(got, id) {
			t.Errorf("%s: %s missing from %v", name, id, got)
		}
	}
	for _, id := range out {
		if slices.Contains(got, id) {
			t.Errorf("%s: %s unexpected in %v", name, id, got)
		}
	}
}

// expectOrder checks that q matches exactly want, in order.
func expectOrder(t *testing.T, s store.Store, name string, q *search.Query, want ...string) {
	t.Helper()
	if got := ids(doSearch(t, s, q).Matches); !slices.Equal(got, want) {
		t.Errorf("%s: got %v, want %v", name, got, want)
	}
}

// isErr checks errors.Is(err, target).
func isErr(t *testing.T, name string, err, target error) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Errorf("%s: got error %v, want %v", name, err, target)
	}
}
