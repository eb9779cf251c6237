package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/search"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store/internal/sqlstore"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store/storetest"
)

func openTemp(t testing.TB, opts Options) (*Store, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "fhir.db")
	s, err := Open(context.Background(), path, opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	// Closed before t.TempDir's removal (cleanups run last first): the
	// checkpointer may still be writing the WAL when a test returns.
	t.Cleanup(func() { s.Close() })
	return s, path
}

func TestStore(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store {
		s, _ := openTemp(t, Options{})
		return s
	})
}

func TestReopenKeepsData(t *testing.T) {
	s, path := openTemp(t, Options{})
	var reopened *Store
	storetest.Reopen(t, s, func() (store.Store, error) {
		var err error
		reopened, err = Open(context.Background(), path, Options{})
		return reopened, err
	})
	defer reopened.Close()
	var n int
	if err := reopened.r.QueryRow(`SELECT COUNT(*) FROM schema_migrations`).Scan(&n); err != nil || n != schemaVersion {
		t.Fatalf("schema_migrations: %d rows, %v", n, err)
	}
}

// TestClock: the store takes its time from Options.Now.
func TestClock(t *testing.T) {
	storetest.Clock(t, func(t *testing.T, now func() time.Time) store.Store {
		s, _ := openTemp(t, Options{Now: now})
		return s
	})
}

// TestConcurrentOpen opens one new file from 4 goroutines (4 stores) at
// once: the migration runs once and every store can write.
func TestConcurrentOpen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "fhir.db")
	storetest.ConcurrentOpen(t, 4, func() (store.Store, error) { return Open(context.Background(), path, Options{}) })
}

// TestConcurrentOpenProcesses opens one new file from several processes
// at once: the migration runs once and every process can write.
func TestConcurrentOpenProcesses(t *testing.T) {
	path := filepath.Join(t.TempDir(), "fhir.db")
	const n = 4
	cmds := make([]*exec.Cmd, n)
	for i := range n {
		cmds[i] = exec.Command(os.Args[0], "-test.run=^TestHelperProcess$", "-test.count=1")
		cmds[i].Env = append(os.Environ(), "SQLITE_STORE_HELPER_DB="+path, fmt.Sprintf("SQLITE_STORE_HELPER_ID=%d", i))
		if err := cmds[i].Start(); err != nil {
			t.Fatal(err)
		}
	}
	for i, c := range cmds {
		if err := c.Wait(); err != nil {
			t.Errorf("process %d: %v", i, err)
		}
	}
	s, err := Open(context.Background(), path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	pg, err := s.Search(context.Background(), &search.Query{Type: "Basic", SummaryCount: true})
	if err != nil || pg.Total != n {
		t.Fatalf("Search: %v %v, want %d resources", pg, err, n)
	}
}

// TestHelperProcess is one process of TestConcurrentOpenProcesses.
func TestHelperProcess(t *testing.T) {
	path := os.Getenv("SQLITE_STORE_HELPER_DB")
	if path == "" {
		t.Skip("helper process of TestConcurrentOpenProcesses")
	}
	s, err := Open(context.Background(), path, Options{})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	defer s.Close()
	err = s.Write(context.Background(), func(tx store.Tx) error {
		return tx.Put(&store.Resource{Type: "Basic", ID: os.Getenv("SQLITE_STORE_HELPER_ID"), Version: 1, Body: []byte(`{}`)}, nil)
	})
	if err != nil {
		t.Fatalf("Write: %v", err)
	}
}

// TestPragmas checks the durability settings of both pools.
func TestPragmas(t *testing.T) {
	s, _ := openTemp(t, Options{BusyTimeout: 1234 * time.Millisecond})
	defer s.Close()
	s.c.wmu.Lock() // the write connection is the Store's
	defer s.c.wmu.Unlock()
	for _, db := range []querier{s.c.wc, s.r} {
		for pragma, want := range map[string]string{
			"journal_mode": "wal", "synchronous": "2", "foreign_keys": "0", "busy_timeout": "1234",
		} {
			var got string
			if err := db.QueryRowContext(context.Background(), "PRAGMA "+pragma).Scan(&got); err != nil || got != want {
				t.Errorf("PRAGMA %s = %q (%v), want %q", pragma, got, err, want)
			}
		}
	}
	var limit int64
	if err := s.c.wc.QueryRowContext(context.Background(), "PRAGMA journal_size_limit").Scan(&limit); err != nil || limit != walRestartBytes {
		t.Errorf("the write connection's journal_size_limit = %d (%v), want %d", limit, err, walRestartBytes)
	}
}

func TestNewerSchemaRefused(t *testing.T) {
	s, path := openTemp(t, Options{})
	if err := s.c.Autocommit(context.Background(), func(c sqlstore.Conn) error {
		_, err := c.Exec(context.Background(), `INSERT INTO schema_migrations (version, applied_at) VALUES (?, 0)`, schemaVersion+1)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	s.Close()
	for _, existing := range []bool{false, true} {
		s, err := Open(context.Background(), path, Options{Existing: existing})
		if err == nil {
			s.Close()
			t.Fatal("Open of a newer schema succeeded")
		}
		storetest.SchemaVersionRefused(t, err, schemaVersion+1, schemaVersion)
	}
}

func TestBusyIsUnavailable(t *testing.T) {
	ctx := context.Background()
	a, path := openTemp(t, Options{})
	defer a.Close()
	b, err := Open(ctx, path, Options{BusyTimeout: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	holding, release := make(chan struct{}), make(chan struct{})
	done := make(chan error)
	go func() {
		done <- a.Write(ctx, func(tx store.Tx) error {
			close(holding)
			<-release
			return nil
		})
	}()
	<-holding
	err = b.Write(ctx, func(tx store.Tx) error { return nil })
	_, nerr := b.UseNonce(ctx, "client:jti", time.Now().Add(time.Minute))
	close(release)
	if !errors.Is(err, store.ErrUnavailable) {
		t.Errorf("Write while another process writes: got %v, want ErrUnavailable", err)
	}
	if !errors.Is(nerr, store.ErrUnavailable) {
		t.Errorf("UseNonce while another process writes: got %v, want ErrUnavailable", nerr)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	// Reads are not blocked by a writer.
	if _, err := b.Read(ctx, "Patient", "x"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Read: %v", err)
	}
}

// TestProbeWrite: while another process holds the write lock, ProbeWrite
// says so (reads still answer, so Ping cannot), also while this store's
// own write waits for that lock; with the lock free, or held by this
// store's own transaction, it does not.
func TestProbeWrite(t *testing.T) {
	ctx := context.Background()
	a, path := openTemp(t, Options{})
	defer a.Close()
	b, err := Open(ctx, path, Options{BusyTimeout: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if err := b.ProbeWrite(ctx); err != nil {
		t.Fatalf("ProbeWrite with the lock free: %v", err)
	}
	hold := func(s *Store) (release func()) {
		holding, rel, done := make(chan struct{}), make(chan struct{}), make(chan error)
		go func() {
			done <- s.Write(ctx, func(store.Tx) error { close(holding); <-rel; return nil })
		}()
		<-holding
		return func() {
			close(rel)
			if err := <-done; err != nil {
				t.Error(err)
			}
		}
	}
	release := hold(b)
	if err := b.ProbeWrite(ctx); err != nil {
		t.Errorf("ProbeWrite during the store's own write: %v", err)
	}
	release()

	release = hold(a)
	if err := b.ProbeWrite(ctx); !errors.Is(err, store.ErrUnavailable) {
		t.Errorf("ProbeWrite while another process writes = %v, want ErrUnavailable", err)
	}
	if err := b.Ping(ctx); err != nil {
		t.Errorf("Ping while another process writes: %v", err)
	}
	// b's own write now waits for a's lock (its busy timeout is a minute):
	// once it has waited longer than probeWait, ProbeWrite says locked.
	waiting := make(chan error, 1)
	go func() { waiting <- b.Write(ctx, func(store.Tx) error { return nil }) }()
	deadline := time.Now().Add(30 * time.Second)
	for b.c.beginning.Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	for time.Now().Before(deadline) {
		if err := b.ProbeWrite(ctx); errors.Is(err, store.ErrUnavailable) {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err := b.ProbeWrite(ctx); !errors.Is(err, store.ErrUnavailable) {
		t.Errorf("ProbeWrite while the store's write waits for another process's lock = %v, want ErrUnavailable", err)
	}
	release()
	if err := <-waiting; err != nil {
		t.Errorf("the waiting write, once the lock was free: %v", err)
	}
	if err := b.ProbeWrite(ctx); err != nil {
		t.Errorf("ProbeWrite once the lock is free again: %v", err)
	}
}

// TestProbeWriteStaysLocked: once a probe has found the write lock held by
// another process, the write connection being in use (a write that has
// just begun waiting for that lock, a checkpoint) does not make ProbeWrite
// say ready; a write that gets the lock does (probe p7 F21).
func TestProbeWriteStaysLocked(t *testing.T) {
	ctx := context.Background()
	a, path := openTemp(t, Options{})
	defer a.Close()
	b, err := Open(ctx, path, Options{BusyTimeout: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	holding, rel, done := make(chan struct{}), make(chan struct{}), make(chan error)
	go func() {
		done <- a.Write(ctx, func(store.Tx) error { close(holding); <-rel; return nil })
	}()
	<-holding
	if err := b.ProbeWrite(ctx); !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("ProbeWrite while another process writes = %v, want ErrUnavailable", err)
	}
	b.c.wmu.Lock() // the write connection in use, not (yet) waiting long
	err = b.ProbeWrite(ctx)
	b.c.wmu.Unlock()
	if !errors.Is(err, store.ErrUnavailable) {
		t.Errorf("ProbeWrite with the connection in use, the lock still held elsewhere = %v, want ErrUnavailable", err)
	}
	close(rel)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if err := b.Write(ctx, func(store.Tx) error { return nil }); err != nil {
		t.Fatal(err)
	}
	b.c.wmu.Lock() // the store's own transaction
	err = b.ProbeWrite(ctx)
	b.c.wmu.Unlock()
	if err != nil {
		t.Errorf("ProbeWrite during the store's own write, once a write began: %v", err)
	}
}

func benchmarkPut(b *testing.B, perTx int) {
	s, _ := openTemp(b, Options{})
	defer s.Close()
	storetest.BenchmarkPut(b, s, perTx, 1)
}

// BenchmarkPut measures durable commits (synchronous=FULL): one resource
// per transaction, and 100 per transaction.
func BenchmarkPut(b *testing.B) {
	b.Run("1PerTx", func(b *testing.B) { benchmarkPut(b, 1) })
	b.Run("100PerTx", func(b *testing.B) { benchmarkPut(b, 100) })
}

// TestQueryPlan checks that the seeded planner statistics make a selective
// search an index lookup rather than a scan of the type's resources, also
// within a tenant, and that a tenant's listing reads only its rows.
func TestQueryPlan(t *testing.T) {
	s, _ := openTemp(t, Options{})
	defer s.Close()
	identifier := []search.Clause{{Param: "identifier", Type: search.TypeToken,
		Values: []search.Value{{System: "urn:x", Code: "1", HasSystem: true}}}}
	tests := []struct {
		name string
		q    *search.Query
		want []string
	}{
		{"identifier", &search.Query{Type: "Patient", Clauses: identifier},
			[]string{"USING INDEX sqlite_autoindex_current_1 (type=? AND id=?)", "USING INDEX idx_token_code"}},
		{"identifier by system alone", &search.Query{Type: "Patient", Clauses: []search.Clause{{Param: "identifier",
			Type: search.TypeToken, Values: []search.Value{{System: "urn:x", HasSystem: true}}}}},
			[]string{"USING INDEX sqlite_autoindex_current_1 (type=? AND id=?)", "USING INDEX idx_token_code (type=? AND param=?)"}},
		{"identifier in a tenant", &search.Query{Type: "Patient", Clauses: identifier, Tenant: "clinic-a"},
			[]string{"USING INDEX sqlite_autoindex_current_1 (type=? AND id=?)", "USING INDEX idx_token_code"}},
		{"listing of a tenant", &search.Query{Type: "Patient", Tenant: "clinic-a"},
			[]string{"USING INDEX current_tenant_type_lu (tenant=? AND type=?)"}},
		// The tenant indexes hold only named tenants' rows (schema 9):
		// the default tenant's listing reads the tenant-less one.
		{"listing of the default tenant", &search.Query{Type: "Patient"},
			[]string{"USING INDEX current_type_lu (type=?)"}},
		{"listing of every tenant", &search.Query{Type: "Patient", Tenant: search.AllTenants},
			[]string{"USING INDEX current_type_lu (type=?)"}},
		// Issue 13: a chain drives from the target's index entries through
		// the reference index; _has from the source's through its own.
		{"chain patient.identifier", &search.Query{Type: "Observation", Tenant: "clinic-a", Clauses: []search.Clause{{
			Param: "patient", Type: search.TypeReference, Modifier: "Patient",
			Chain: &search.Chain{TargetType: "Patient", Clause: identifier[0]}}}},
			[]string{"USING INDEX sqlite_autoindex_current_1 (type=? AND id=?)", "USING INDEX idx_token_code",
				"USING INDEX idx_reference_target (type=? AND param=? AND ref_id=? AND ref_type=?)"}},
		{"chain subject.name", &search.Query{Type: "Observation", Tenant: "clinic-a", Clauses: []search.Clause{{
			Param: "subject", Type: search.TypeReference, Modifier: "Patient",
			Chain: &search.Chain{TargetType: "Patient", Clause: search.Clause{Param: "name", Type: search.TypeString,
				Values: []search.Value{{Str: "ann"}}}}}}},
			[]string{"USING INDEX sqlite_autoindex_current_1 (type=? AND id=?)", "USING INDEX idx_string_norm",
				"USING INDEX idx_reference_target (type=? AND param=? AND ref_id=? AND ref_type=?)"}},
		{"_has:Observation:patient:code", &search.Query{Type: "Patient", Tenant: "clinic-a", Clauses: []search.Clause{{
			Param: "_has", Type: search.TypeReference, Has: &search.Has{Type: "Observation", Param: "patient",
				Clause: search.Clause{Param: "code", Type: search.TypeToken, Values: []search.Value{{Code: "8867-4"}}}}}}},
			[]string{"USING INDEX sqlite_autoindex_current_1 (type=? AND id=?)", "USING INDEX idx_token_code",
				"USING INDEX idx_reference_res (type=? AND id=?)"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			pageStmt, countStmt, err := sqlstore.SearchStatements(dialect, tc.q, time.Now())
			if err != nil {
				t.Fatal(err)
			}
			got := explain(t, s, pageStmt.SQL, pageStmt.Args...)
			count := explain(t, s, countStmt.SQL, countStmt.Args...)
			for _, want := range tc.want {
				if !strings.Contains(got, want) || !strings.Contains(count, want) {
					t.Errorf("plans lack %q:\n%s\ncount:\n%s", want, got, count)
				}
			}
			// No step reads every current row (of the type): each is an
			// index lookup.
			for _, plan := range []string{got, count} {
				for _, step := range strings.Split(plan, "\n") {
					if strings.HasPrefix(step, "SCAN c") || strings.Contains(step, "SCAN current") {
						t.Errorf("a step scans the resources: %q in\n%s", step, plan)
					}
				}
			}
		})
	}
}

// TestDateSortPlan: a search sorted first by a date walks that
// parameter's index rows in the order of the sort key (the earliest start
// ascending, idx_date_low; the latest end descending, idx_date_high) and
// stops when its page is full, also after a cursor and with criteria
// that match many; it sorts only the ties of one value (the right part
// of the order), never every match. With selective criteria (a patient)
// the matches are found by them and sorted. Before the walk every match's
// sort key was computed and sorted: a page cost as much as the matches.
func TestDateSortPlan(t *testing.T) {
	s, _ := openTemp(t, Options{})
	defer s.Close()
	tests := []struct {
		raw, want string
		cursor    bool
	}{
		{"_sort=-date", "USING INDEX idx_date_high (type=? AND param=? AND high>?)", false},
		{"_sort=date", "USING INDEX idx_date_low (type=? AND param=? AND low<?)", false},
		{"_sort=-date", "USING INDEX idx_date_high (type=? AND param=? AND high>? AND high<?)", true},
		{"_sort=date", "USING INDEX idx_date_low (type=? AND param=? AND low>? AND low<?)", true},
		{"_sort=-date,_id&code=8867-4", "USING INDEX idx_date_high (type=? AND param=? AND high>?)", false},
		{"_sort=date,-_lastUpdated&status=final&code=8867-4", "USING INDEX idx_date_low (type=? AND param=? AND low<?)", false},
		{"_sort=-date&patient=Patient/p1", "USING INDEX idx_reference_target", false},
		// A cursor among the matches without a date: they are read in
		// the order of the rest of the sort (current_type_lu), not all
		// sorted (a constant first in the order did that: 222 ms for
		// 2.3 ms over 30,000 Encounters).
		{"_sort=date", "USING INDEX current_type_lu", true},
		{"_sort=-date", "USING INDEX current_type_lu", true},
	}
	for i, tc := range tests {
		undated := i >= len(tests)-2
		t.Run(fmt.Sprintf("%s cursor %v undated %v", tc.raw, tc.cursor, undated), func(t *testing.T) {
			v, err := url.ParseQuery(tc.raw)
			if err != nil {
				t.Fatal(err)
			}
			q, err := search.Parse("Observation", v, false)
			if err != nil {
				t.Fatal(err)
			}
			q.Count = 20
			if tc.cursor {
				q.After = &search.Cursor{Keys: []int64{1.7e12}, LastUpdated: 1.7e12, Type: "Observation", ID: "o1"}
			}
			if undated {
				q.After.Keys[0] = math.MaxInt64
				if q.Sort[0].Descending {
					q.After.Keys[0] = math.MinInt64
				}
			}
			page, _, err := sqlstore.SearchStatements(dialect, q, time.Now())
			if err != nil {
				t.Fatal(err)
			}
			plan := explain(t, s, page.SQL, page.Args...)
			if !strings.Contains(plan, tc.want) {
				t.Errorf("page plan lacks %q:\n%s", tc.want, plan)
			}
			for _, step := range strings.Split(plan, "\n") {
				if undated {
					break // they are read from the type's resources
				}
				if strings.HasPrefix(step, "SCAN c") || strings.Contains(step, "SCAN current") {
					t.Errorf("a step scans the resources: %q in\n%s", step, plan)
				}
			}
			if strings.Contains(tc.raw, "patient") {
				return
			}
			if strings.Contains(plan, "USE TEMP B-TREE FOR ORDER BY") {
				t.Errorf("page plan sorts every match:\n%s", plan)
			}
		})
	}
}

// TestHistoryPlan: a named tenant's history reads its tenant index (a
// partial index since schema 9, usable only because the statement says
// the tenant is not the default one), the default tenant's and every
// tenant's the tenant-less one; a type's history, and the system's,
// sorts only the versions of one instant (by type and id), never all of
// them (the system's did, for every page, before HistoryStatements bound
// last_updated: 41-53 ms a page over 33,000 versions, 5 ms after).
func TestHistoryPlan(t *testing.T) {
	s, _ := openTemp(t, Options{})
	defer s.Close()
	tests := []struct {
		name string
		q    store.HistoryQuery
		want string
	}{
		{"type, a tenant", store.HistoryQuery{Tenant: "clinic-a", Type: "Patient"}, "INDEX resources_tenant_type_lu (tenant=? AND type=?)"},
		{"system, a tenant", store.HistoryQuery{Tenant: "clinic-a"}, "INDEX resources_tenant_"},
		{"type, the default tenant", store.HistoryQuery{Type: "Patient"}, "INDEX resources_type_lu (type=?)"},
		{"type, every tenant", store.HistoryQuery{Tenant: search.AllTenants, Type: "Patient"}, "INDEX resources_type_lu (type=?)"},
		{"system, the default tenant", store.HistoryQuery{}, "INDEX resources_lu"},
		{"system, every tenant", store.HistoryQuery{Tenant: search.AllTenants}, "INDEX resources_lu"},
		{"system since, the default tenant", store.HistoryQuery{Since: time.UnixMilli(1e12)}, "INDEX resources_lu"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.q.Count = 10
			countStmt, pageStmt, err := sqlstore.HistoryStatements(dialect, tc.q)
			if err != nil {
				t.Fatal(err)
			}
			page := explain(t, s, pageStmt.SQL, pageStmt.Args...)
			if !strings.Contains(page, tc.want) {
				t.Errorf("page plan lacks %q:\n%s", tc.want, page)
			}
			if strings.Contains(page, "USE TEMP B-TREE FOR ORDER BY") {
				t.Errorf("page plan sorts all the versions:\n%s", page)
			}
			// The count reads only the index.
			if count := explain(t, s, countStmt.SQL, countStmt.Args...); !strings.Contains(count, "COVERING "+tc.want) {
				t.Errorf("count plan lacks %q:\n%s", "COVERING "+tc.want, count)
			}
		})
	}
}

// explain returns the query plan of query, one step a line.
func explain(t *testing.T, s *Store, query string, args ...any) string {
	t.Helper()
	rows, err := s.r.Query(`EXPLAIN QUERY PLAN `+query, args...)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var plan []string
	for rows.Next() {
		var id, parent, unused int
		var detail string
		if err := rows.Scan(&id, &parent, &unused, &detail); err != nil {
			t.Fatal(err)
		}
		plan = append(plan, detail)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return strings.Join(plan, "\n")
}

// TestSearchAfterBulkLoad: the seeded planner statistics (see
// plannerStats) keep the plans of a fresh database right.
func TestSearchAfterBulkLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("loads 20,000 resources")
	}
	s, _ := openTemp(t, Options{})
	defer s.Close()
	storetest.SearchAfterBulkLoad(t, s, 500, "clinic-a", "clinic-b", "clinic-c", "clinic-d")
}

// TestOpenExisting: opened as an existing database (the read-only
// commands), a missing file, an empty file and a file that is no gateway
// database are store.ErrNoDatabase and are left as they were; a gateway
// database opens.
func TestOpenExisting(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	missing := filepath.Join(dir, "typo.db")
	if _, err := Open(ctx, missing, Options{Existing: true}); !errors.Is(err, store.ErrNoDatabase) {
		t.Errorf("Open(missing) = %v, want ErrNoDatabase", err)
	}
	if _, err := os.Stat(missing); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Open(missing) created %s", missing)
	}
	empty := filepath.Join(dir, "empty.db")
	if err := os.WriteFile(empty, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(ctx, empty, Options{Existing: true}); !errors.Is(err, store.ErrNoDatabase) {
		t.Errorf("Open(empty) = %v, want ErrNoDatabase", err)
	}
	if fi, _ := os.Stat(empty); fi.Size() != 0 {
		t.Errorf("Open(empty) wrote %d bytes", fi.Size())
	}
	good := filepath.Join(dir, "kg.db")
	st, err := Open(ctx, good, Options{})
	if err != nil {
		t.Fatal(err)
	}
	st.Close()
	st, err = Open(ctx, good, Options{Existing: true})
	if err != nil {
		t.Fatalf("Open(existing gateway database) = %v", err)
	}
	st.Close()
}

// TestOpenExistingReadOnlyCopy: a read-only copy of a database (an
// auditor's, a backup: no write access to the file or its directory) opens
// as an existing database and reads; writes are refused. Root may write
// anything, so the test needs another user.
func TestOpenExistingReadOnlyCopy(t *testing.T) {
	if os.Geteuid() == 0 {
		t.Skip("running as root, which may write a read-only file: run the tests as another user to check read-only copies")
	}
	ctx := context.Background()
	dir := t.TempDir()
	path := filepath.Join(dir, "kg.db")
	st, err := Open(ctx, path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	st.Close()
	if err := os.Chmod(path, 0o444); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o555); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.Chmod(dir, 0o755) })
	st, err = Open(ctx, path, Options{Existing: true})
	if err != nil {
		t.Fatalf("Open(read-only copy) = %v", err)
	}
	defer st.Close()
	if _, _, err := st.History(ctx, store.HistoryQuery{Tenant: search.AllTenants}); err != nil {
		t.Errorf("History on a read-only copy = %v", err)
	}
	if err := st.Write(ctx, func(tx store.Tx) error {
		return tx.PutLedger(&store.Ledger{Source: "s", Kind: "k", RecordID: "r", Version: "1"})
	}); err == nil {
		t.Error("a write to a read-only copy succeeded")
	}
}

// TestChainPlanAfterLoad: over 1,000 patients and 10,000 Observations,
// the chained and _has searches of issue 13 answer right, and their plans
// (page and count) look up index entries: no step scans the resources.
func TestChainPlanAfterLoad(t *testing.T) {
	s, _ := openTemp(t, Options{})
	defer s.Close()
	storetest.LoadChainPatients(t, s, "clinic-a")
	storetest.ChainSearches(t, s, "clinic-a")
	for _, cq := range storetest.ChainQueries("clinic-a") {
		pageStmt, countStmt, err := sqlstore.SearchStatements(dialect, cq.Query, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		page := explain(t, s, pageStmt.SQL, pageStmt.Args...)
		count := explain(t, s, countStmt.SQL, countStmt.Args...)
		for _, plan := range []string{page, count} {
			if !strings.Contains(plan, "USING INDEX idx_reference_") {
				t.Errorf("%s: the plan does not use the reference index:\n%s", cq.Name, plan)
			}
			for _, step := range strings.Split(plan, "\n") {
				if strings.HasPrefix(step, "SCAN ") {
					t.Errorf("%s: a step scans a table: %q in\n%s", cq.Name, step, plan)
				}
			}
		}
	}
}

// TestCheckIntegrityFinds: with foreign keys not enforced (see dsn), the
// shared suite's CheckIntegrity is what keeps the tables tied together in
// the tests; it finds each kind of row that breaks them.
func TestCheckIntegrityFinds(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name, stmt, want string
		enqueue          bool // an outbox item stored first
	}{
		{"current row without its version",
			`INSERT INTO current (type, id, version, last_updated) VALUES ('Patient', 'p-orphan', 1, 0)`,
			"a current row without its version: Patient/p-orphan", false},
		{"index row without its resource",
			`INSERT INTO idx_token (type, id, param, system, code, text) VALUES ('Observation', 'o-orphan', 'code', 's', 'c', '')`,
			"a row of idx_token without a current, non-deleted resource: Observation/o-orphan", false},
		{"delivery attempt without its outbox item",
			`INSERT INTO delivery_attempts (item_id, n, at, duration_ms, http_status, trace_id, error) VALUES (42, 1, 0, 0, 0, '', '')`,
			"a delivery attempt without its outbox item: 42/1", false},
		{"order key without its outbox item",
			`INSERT INTO outbox_keys (item_id, order_key, destination, tenant, live) VALUES (43, 'k', 'hosp', '', 1)`,
			"an order key without its outbox item: 43/1", false},
		{"outbox item without its order keys", `DELETE FROM outbox_keys`,
			"an outbox item without its order keys: ", true},
		{"order key live for an item done", `UPDATE outbox_keys SET live = 0`,
			"an order key whose live flag disagrees with its item's status: ", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, _ := openTemp(t, Options{})
			defer s.Close()
			if tc.enqueue {
				it := &store.OutboxItem{Destination: "hosp", OrderKey: "src|vitals|W", OrderKeys: []string{"src|session|S"},
					Patient: "src|P", Kind: "vitals", Source: "src", RecordID: "W", Version: "1", Payload: []byte(`{}`)}
				if err := s.Write(ctx, func(tx store.Tx) error { return tx.Enqueue(it) }); err != nil {
					t.Fatal(err)
				}
			}
			if err := s.CheckIntegrity(ctx); err != nil {
				t.Fatalf("a new database: %v", err)
			}
			s.c.wmu.Lock()
			_, err := s.c.wc.ExecContext(ctx, tc.stmt)
			s.c.wmu.Unlock()
			if err != nil {
				t.Fatalf("%s: %v", tc.stmt, err)
			}
			if err := s.CheckIntegrity(ctx); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("CheckIntegrity = %v, want %q", err, tc.want)
			}
		})
	}
}

// TestNoWritesAhead: a SQLite write transaction writes its rows at its
// next search, savepoint or commit only (its inserts run on the gateway's
// own cores: sending them ahead gained nothing), so a large one's resources
// are all made before they are put (engine's render).
func TestNoWritesAhead(t *testing.T) {
	s, _ := openTemp(t, Options{})
	ahead := true
	if err := s.Write(context.Background(), func(tx store.Tx) error { ahead = store.TxWritesAhead(tx); return nil }); err != nil {
		t.Fatal(err)
	}
	if ahead {
		t.Error("a write transaction writes ahead")
	}
}

func TestPoolStats(t *testing.T) {
	s, _ := openTemp(t, Options{MaxReadConns: 3, MaxQueue: 50})
	storetest.PoolStats(t, s, 3, 50, false)
}

// TestOutboxOldRelease: a process of a release before the order keys
// writes the outbox beside this one (a rolling upgrade, p38 F1 F2), as
// another connection to the same file.
func TestOutboxOldRelease(t *testing.T) {
	s, path := openTemp(t, Options{})
	db, err := sql.Open("sqlite", dsn(path, 5*time.Second, false))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	storetest.OutboxOldRelease(t, s, func(query string) error {
		_, err := db.ExecContext(context.Background(), query)
		return err
	})
}

// TestSchemaFloor: a database migrated past schema 17 (the order keys,
// which a gateway of an older schema must not outlive) has floor 17; a
// later release that raises the floor above this program's schema makes
// it too old (p38 F3: an older gateway kept serving once a newer one had
// migrated past schema 10).
func TestSchemaFloor(t *testing.T) {
	ctx := context.Background()
	path := buildAt(t, 9, nil)
	s, err := Open(ctx, path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	f, err := s.SchemaFloor(ctx)
	if want := (store.SchemaFloor{Database: schemaVersion, Floor: 17, Program: schemaVersion}); err != nil || f != want || f.TooOld() {
		t.Fatalf("SchemaFloor = %+v %v, want %+v", f, err, want)
	}
	db, err := sql.Open("sqlite", dsn(path, 5*time.Second, false))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	later := schemaVersion + 3
	if _, err := db.ExecContext(ctx, fmt.Sprintf(`INSERT INTO schema_migrations (version, applied_at) VALUES (%d, 0);
		UPDATE schema_floor SET version = %d`, later, later)); err != nil {
		t.Fatal(err)
	}
	if f, err := s.SchemaFloor(ctx); err != nil || f.Floor != later || f.Database != later || !f.TooOld() {
		t.Fatalf("SchemaFloor after a later release = %+v %v, want floor %d, too old", f, err, later)
	}
}

// TestMigrationProgress: Options.Progress hears of a migration before it
// runs (from, to, how many steps) and of each step as it starts, in order
// (p38 F5: a long migration logged nothing until it had committed).
func TestMigrationProgress(t *testing.T) {
	ctx := context.Background()
	path := buildAt(t, 17, nil)
	var got []store.MigrationStep
	s, err := Open(ctx, path, Options{Progress: func(m store.MigrationStep) { got = append(got, m) }})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	want := []store.MigrationStep{{From: 17, To: schemaVersion, Steps: schemaVersion - 17}}
	for _, m := range migrations[17:] {
		want = append(want, store.MigrationStep{From: 17, To: schemaVersion, Steps: schemaVersion - 17, Version: m.Version, Note: m.Note})
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("Progress got %+v,\nwant %+v", got, want)
	}
	// Reopened at the program's schema: nothing to hear.
	got = nil
	s2, err := Open(ctx, path, Options{Progress: func(m store.MigrationStep) { got = append(got, m) }})
	if err != nil {
		t.Fatal(err)
	}
	s2.Close()
	if len(got) != 0 {
		t.Errorf("Progress on a migrated database got %+v, want nothing", got)
	}
}
