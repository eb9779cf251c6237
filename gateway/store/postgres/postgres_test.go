package postgres

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/search"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store/internal/sqlstore"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store/storetest"
)

// testURL is the server the tests use, or skips the test.
func testURL(t testing.TB) string {
	t.Helper()
	u := os.Getenv("GATEWAY_TEST_POSTGRES_URL")
	if u == "" {
		t.Skip("GATEWAY_TEST_POSTGRES_URL not set: set it to a postgres:// URL of a role that may create databases (.ci/run does) to run the PostgreSQL tests")
	}
	return u
}

// freshDB creates an empty database on the test server and returns its
// URL; it is dropped when the test ends. A role that may not create
// databases gets a fresh schema of the URL's database instead (selected
// with search_path).
func freshDB(t testing.TB) string {
	t.Helper()
	base := testURL(t)
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, base)
	if err != nil {
		t.Fatalf("connect to GATEWAY_TEST_POSTGRES_URL: %v", err)
	}
	defer conn.Close(ctx)
	var rnd [6]byte
	_, _ = rand.Read(rnd[:])
	name := "kgt_" + hex.EncodeToString(rnd[:])
	u, err := url.Parse(base)
	if err != nil {
		t.Fatalf("GATEWAY_TEST_POSTGRES_URL must be a URL: %v", err)
	}
	_, err = conn.Exec(ctx, "CREATE DATABASE "+name)
	var pe *pgconn.PgError
	switch {
	case err == nil:
		u.Path = "/" + name
		t.Cleanup(func() { dropDB(t, base, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)") })
	case errors.As(err, &pe) && pe.Code == "42501": // insufficient_privilege
		if _, err := conn.Exec(ctx, "CREATE SCHEMA "+name); err != nil {
			t.Fatalf("create schema: %v", err)
		}
		q := u.Query()
		q.Set("search_path", name)
		u.RawQuery = q.Encode()
		t.Cleanup(func() { dropDB(t, base, "DROP SCHEMA IF EXISTS "+name+" CASCADE") })
	default:
		t.Fatalf("create database: %v", err)
	}
	return u.String()
}

// dropDB runs a DROP statement, retrying a few times: a non-superuser's
// DROP DATABASE ... WITH (FORCE) fails while an autovacuum worker is in the
// database. A scratch database left behind is logged, not a test failure.
func dropDB(t testing.TB, base, stmt string) {
	ctx := context.Background()
	var err error
	for attempt := range 10 {
		if attempt > 0 {
			time.Sleep(300 * time.Millisecond) // lets autovacuum finish
		}
		var conn *pgx.Conn
		if conn, err = pgx.Connect(ctx, base); err != nil {
			continue
		}
		_, err = conn.Exec(ctx, stmt)
		conn.Close(ctx)
		if err == nil {
			return
		}
	}
	t.Logf("cleanup: %s: %v", stmt, err)
}

// openFresh opens a store on a fresh database.
func openFresh(t testing.TB, opts Options) (*Store, string) {
	t.Helper()
	u := freshDB(t)
	s, err := Open(context.Background(), u, opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s, u
}

func TestStore(t *testing.T) {
	testURL(t)
	storetest.Run(t, func(t *testing.T) store.Store {
		u := freshDB(t)
		s, err := Open(context.Background(), u, Options{})
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		return s
	})
}

// TestConcurrentOpen opens one empty database from 4 goroutines (4 pools)
// at once: the migration runs once and every store can write.
func TestConcurrentOpen(t *testing.T) {
	u := freshDB(t)
	stores := storetest.ConcurrentOpen(t, 4, func() (store.Store, error) { return Open(context.Background(), u, Options{}) })
	var rows int
	if err := stores[0].(*Store).pool.QueryRow(context.Background(), `SELECT COUNT(*) FROM schema_migrations`).Scan(&rows); err != nil || rows != len(migrations) {
		t.Fatalf("schema_migrations: %d rows, %v", rows, err)
	}
}

func TestReopenKeepsData(t *testing.T) {
	s, u := openFresh(t, Options{})
	reopened := storetest.Reopen(t, s, func() (store.Store, error) {
		return Open(context.Background(), u, Options{})
	})
	reopened.Close()
}

// TestClock: the store takes its time from Options.Now.
func TestClock(t *testing.T) {
	testURL(t)
	storetest.Clock(t, func(t *testing.T, now func() time.Time) store.Store {
		s, err := Open(context.Background(), freshDB(t), Options{Now: now})
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		return s
	})
}

func TestNewerSchemaRefused(t *testing.T) {
	s, u := openFresh(t, Options{})
	if _, err := s.pool.Exec(context.Background(), `INSERT INTO schema_migrations (version, applied_at) VALUES ($1, 0)`, schemaVersion+1); err != nil {
		t.Fatal(err)
	}
	s.Close()
	for _, existing := range []bool{false, true} {
		s2, err := Open(context.Background(), u, Options{Existing: existing})
		if err == nil {
			s2.Close()
			t.Fatal("Open of a newer schema succeeded")
		}
		storetest.SchemaVersionRefused(t, err, schemaVersion+1, schemaVersion)
	}
}

// TestNoForeignKeysOnResources: schema 9 dropped the foreign keys of
// current and of the index tables (each cost a trigger query and a row
// lock per inserted row); CheckIntegrity, run after every test of the
// shared suite, checks what they guarded.
func TestNoForeignKeysOnResources(t *testing.T) {
	s, _ := openFresh(t, Options{})
	rows, err := s.pool.Query(context.Background(), `SELECT conrelid::regclass::text || ' ' || conname FROM pg_constraint
		WHERE contype = 'f' AND connamespace = current_schema()::regnamespace
		AND conrelid::regclass::text IN ('current', 'idx_token', 'idx_string', 'idx_date', 'idx_reference', 'idx_quantity', 'idx_uri')`)
	if err != nil {
		t.Fatal(err)
	}
	keys, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) > 0 {
		t.Errorf("foreign keys left: %v", keys)
	}
}

// TestConnectionSettings: the statement timeout reaches every connection;
// Options win over the URL. plan_cache_mode is auto, whatever the URL or
// the server says (see TestPlans).
func TestConnectionSettings(t *testing.T) {
	u := freshDB(t)
	for _, tc := range []struct {
		query string
		opts  Options
		want  string
	}{
		{"", Options{}, "30s"},
		{"statement_timeout=1500", Options{}, "1500ms"},
		{"statement_timeout=2min&pool_max_conns=3", Options{}, "2min"},
		{"statement_timeout=5s", Options{StatementTimeout: 7 * time.Second}, "7s"},
		{"statement_timeout=0", Options{}, "0"},
		{"", Options{StatementTimeout: -1}, "0"},
		{"plan_cache_mode=force_generic_plan", Options{}, "30s"}, // a server or role default is overridden
	} {
		uu := u
		if tc.query != "" {
			uu += sep(u) + tc.query
		}
		s, err := Open(context.Background(), uu, tc.opts)
		if err != nil {
			t.Fatalf("%s: Open: %v", tc.query, err)
		}
		var got, plans string
		err = s.single(context.Background(), func(q querier) error {
			return q.QueryRow(context.Background(), `SELECT current_setting('statement_timeout'), current_setting('plan_cache_mode')`).Scan(&got, &plans)
		})
		if err != nil || got != tc.want {
			t.Errorf("%q %+v: statement_timeout %q (%v), want %q", tc.query, tc.opts, got, err, tc.want)
		}
		if plans != "auto" {
			t.Errorf("%q: plan_cache_mode %q, want auto", tc.query, plans)
		}
		if strings.Contains(tc.query, "pool_max_conns=3") && s.pool.Config().MaxConns != 3 {
			t.Errorf("pool_max_conns: %d", s.pool.Config().MaxConns)
		}
		s.Close()
	}
}

// TestPlans: a search runs as an unnamed statement, planned for its values
// at every run, however often it runs; a conditional lookup and a read by
// id run as prepared statements, which PostgreSQL switches to their
// generic plans after five runs and then no longer plans (see conn.args).
func TestPlans(t *testing.T) {
	ctx := context.Background()
	s, _ := openFresh(t, Options{})
	statement := func(q *search.Query, err error) sqlstore.Stmt {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		page, _, err := sqlstore.SearchStatements(dialect, q, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		return page
	}
	find := statement(search.Parse("Observation", url.Values{"subject": {"Patient/p1"}, "code": {"http://loinc.org|8867-4"}}, false))
	lookup := statement(search.ParseConditional("Observation", "identifier=urn:x|1"))
	read := sqlstore.Stmt{SQL: s.ReadStatements()[0], Args: []any{"Observation", "o1"}}
	err := conns{s}.Read(ctx, func(c sqlstore.Conn) error { // one connection, as every read gets it
		for range 8 {
			for _, st := range []sqlstore.Stmt{find, lookup, read} {
				rows, err := c.Query(ctx, st.SQL, st.Args...)
				if err != nil {
					return err
				}
				rows.Close()
			}
		}
		rows, err := c.Query(ctx, `SELECT statement, generic_plans, custom_plans FROM pg_prepared_statements`)
		if err != nil {
			return err
		}
		type prepared struct {
			Statement                 string
			GenericPlans, CustomPlans int64
		}
		var all []prepared
		for rows.Next() {
			var p prepared
			if err := rows.Scan(&p.Statement, &p.GenericPlans, &p.CustomPlans); err != nil {
				rows.Close()
				return err
			}
			all = append(all, p)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		seen := map[string]bool{}
		for _, p := range all {
			seen[p.Statement] = true
			switch p.Statement {
			case find.SQL:
				t.Errorf("the search ran as a prepared statement: %d generic, %d custom plans", p.GenericPlans, p.CustomPlans)
			case lookup.SQL, read.SQL:
				if p.GenericPlans < 3 {
					t.Errorf("%.60s...: %d generic plans in 8 runs, want at least 3 (%d custom)", p.Statement, p.GenericPlans, p.CustomPlans)
				}
			}
		}
		for _, st := range []sqlstore.Stmt{lookup, read} {
			if !seen[st.SQL] {
				t.Errorf("not a prepared statement of the connection: %.60s...", st.SQL)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func sep(u string) string {
	if strings.Contains(u, "?") {
		return "&"
	}
	return "?"
}

// TestStatementTimeoutIsUnavailable: a write waiting longer than the
// statement timeout for a key another transaction holds fails with
// ErrUnavailable, and the store goes on working.
func TestStatementTimeoutIsUnavailable(t *testing.T) {
	ctx := context.Background()
	s, _ := openFresh(t, Options{StatementTimeout: 200 * time.Millisecond})
	holding, release := make(chan struct{}), make(chan struct{})
	done := make(chan error)
	go func() {
		done <- s.Write(ctx, func(tx store.Tx) error {
			if err := tx.ClaimKey("k", "Patient", "a"); err != nil {
				return err
			}
			if _, _, err := tx.KeyOwner("k"); err != nil { // flushes the claim: the key is held
				return err
			}
			close(holding)
			<-release
			return nil
		})
	}()
	<-holding
	err := s.Write(ctx, func(tx store.Tx) error { return tx.ClaimKey("k", "Patient", "b") })
	close(release)
	if !errors.Is(err, store.ErrUnavailable) {
		t.Errorf("Write waiting on a held key: got %v, want ErrUnavailable", err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	err = s.Write(ctx, func(tx store.Tx) error { return tx.ClaimKey("k", "Patient", "b") })
	if !errors.Is(err, store.ErrConflict) {
		t.Errorf("key held by a committed transaction: got %v, want ErrConflict", err)
	}
}

// TestAcquireTimeoutIsUnavailable: with every connection busy, an operation
// fails with ErrUnavailable after the acquire timeout.
func TestAcquireTimeoutIsUnavailable(t *testing.T) {
	ctx := context.Background()
	// Open's first acquire connects to the database within the same
	// timeout: under a loaded test run that took more than 100 ms once.
	s, _ := openFresh(t, Options{MaxConns: 1, AcquireTimeout: time.Second})
	holding, release := make(chan struct{}), make(chan struct{})
	done := make(chan error)
	go func() {
		done <- s.Write(ctx, func(tx store.Tx) error {
			close(holding)
			<-release
			return nil
		})
	}()
	<-holding
	_, err := s.Read(ctx, "Patient", "x")
	close(release)
	if !errors.Is(err, store.ErrUnavailable) || store.UnavailableCause(err) != store.CauseNoConn {
		t.Errorf("Read with the pool exhausted: got %v, want ErrUnavailable of cause %q", err, store.CauseNoConn)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if _, err := s.Read(ctx, "Patient", "x"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Read after release: %v", err)
	}
	// The caller's own deadline is not the database's fault.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := s.Read(cctx, "Patient", "x"); errors.Is(err, store.ErrUnavailable) || !errors.Is(err, context.Canceled) {
		t.Errorf("Read with a cancelled context: %v", err)
	}
}

// TestUnreachableIsUnavailable: Open on a port nothing listens on.
func TestUnreachableIsUnavailable(t *testing.T) {
	_, err := Open(context.Background(), "postgres://kguser:secret@127.0.0.1:1/kgdb?connect_timeout=2", Options{})
	if !errors.Is(err, store.ErrUnavailable) {
		t.Errorf("Open of an unreachable server: %v, want ErrUnavailable", err)
	}
	// The host and the database, never the password (nor the user).
	if err != nil && (strings.Contains(err.Error(), "secret") || strings.Contains(err.Error(), "kguser") ||
		!strings.Contains(err.Error(), `database "kgdb"`) || !strings.Contains(err.Error(), "127.0.0.1:1")) {
		t.Errorf("error: %v; want the host and the database only", err)
	}
	var ce *pgconn.ConnectError
	if !errors.As(err, &ce) {
		t.Errorf("error %v does not unwrap to pgconn's ConnectError", err)
	}
	if _, err := Open(context.Background(), "postgres://kg:secret@127.0.0.1:5432/kg?statement_timeout=soon", Options{}); err == nil ||
		strings.Contains(err.Error(), "secret") {
		t.Errorf("bad statement_timeout: %v", err)
	}
}

func pgError(code string) error {
	return fmt.Errorf("wrapped: %w", &pgconn.PgError{Code: code, Message: "test"})
}

// TestOpenExisting: opened as an existing database (the read-only
// commands), a database the gateway never set up is store.ErrNoDatabase
// and gets no tables; one it set up opens.
func TestOpenExisting(t *testing.T) {
	u := freshDB(t)
	ctx := context.Background()
	if _, err := Open(ctx, u, Options{Existing: true}); !errors.Is(err, store.ErrNoDatabase) {
		t.Fatalf("Open(never set up) = %v, want ErrNoDatabase", err)
	}
	conn, err := pgx.Connect(ctx, u)
	if err != nil {
		t.Fatal(err)
	}
	var n int
	err = conn.QueryRow(ctx, `SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = current_schema()`).Scan(&n)
	conn.Close(ctx)
	if err != nil || n != 0 {
		t.Errorf("Open(never set up) left %d tables (%v), want none", n, err)
	}
	s, err := Open(ctx, u, Options{})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	s, err = Open(ctx, u, Options{Existing: true})
	if err != nil {
		t.Fatalf("Open(set up) = %v", err)
	}
	s.Close()
}

// TestLZ4Compression: schema 13 has the server compress a resource's body
// (and the ledger's, outbox's and bulk export's large values) with lz4
// where it can; a large body is stored so and reads back the same.
func TestLZ4Compression(t *testing.T) {
	s, _ := openFresh(t, Options{})
	ctx := context.Background()
	var lz4 bool
	if err := s.pool.QueryRow(ctx, `SELECT 'lz4' = ANY(enumvals) FROM pg_settings WHERE name = 'default_toast_compression'`).Scan(&lz4); err != nil {
		t.Skipf("this server has no TOAST compression methods (PostgreSQL 13?): schema 13 leaves pglz: %v", err)
	}
	if !lz4 {
		t.Skip("this server was built without lz4: schema 13 leaves pglz")
	}
	rows, err := s.pool.Query(ctx, `SELECT attrelid::regclass::text || '.' || attname || '=' || attcompression::text FROM pg_attribute
		WHERE (attrelid = 'resources'::regclass AND attname = 'body') OR (attrelid = 'ledger'::regclass AND attname IN ('input', 'response'))
		OR (attrelid = 'outbox'::regclass AND attname = 'payload') OR (attrelid = 'job_parts'::regclass AND attname = 'data')
		ORDER BY 1`)
	if err != nil {
		t.Fatal(err)
	}
	got, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"job_parts.data=l", "ledger.input=l", "ledger.response=l", "outbox.payload=l", "resources.body=l"}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("column compression: %v, want %v", got, want)
	}

	// A body well over the 2 KB at which PostgreSQL compresses a row.
	body := []byte(`{"resourceType":"Basic","id":"big","text":{"div":"` + strings.Repeat("ketamine session note ", 500) + `"}}`)
	err = s.Write(ctx, func(tx store.Tx) error {
		return tx.Put(&store.Resource{Type: "Basic", ID: "big", Version: 1, Body: body}, nil)
	})
	if err != nil {
		t.Fatal(err)
	}
	var method string
	if err := s.pool.QueryRow(ctx, `SELECT pg_column_compression(body) FROM resources WHERE type = 'Basic' AND id = 'big'`).Scan(&method); err != nil {
		t.Fatal(err)
	}
	if method != "lz4" {
		t.Errorf("the body is stored compressed with %q, want lz4", method)
	}
	r, err := s.Read(ctx, "Basic", "big")
	if err != nil || string(r.Body) != string(body) {
		t.Fatalf("read back: %v (%d bytes, want %d)", err, len(r.Body), len(body))
	}
}

// TestWritesAhead: a PostgreSQL write transaction sends its rows ahead
// (store.WritesAhead), so that a large one's resources are put as they are
// made (engine's render).
func TestWritesAhead(t *testing.T) {
	s, _ := openFresh(t, Options{})
	var ahead bool
	if err := s.Write(context.Background(), func(tx store.Tx) error { ahead = store.TxWritesAhead(tx); return nil }); err != nil {
		t.Fatal(err)
	}
	if !ahead {
		t.Error("a write transaction does not write ahead")
	}
}

// TestWriteFenceHeld: a write transaction takes the write fence in its
// BEGIN's round trip; while an export's kick-off holds the fence
// exclusively longer than the lock timeout, a write fails with
// ErrUnavailable (CauseLocked), writes nothing, and the connections it
// used are usable again once the fence is free.
func TestWriteFenceHeld(t *testing.T) {
	ctx := context.Background()
	s, u := openFresh(t, Options{MaxConns: 2, LockTimeout: 200 * time.Millisecond})
	holder, err := pgx.Connect(ctx, u)
	if err != nil {
		t.Fatal(err)
	}
	defer holder.Close(ctx)
	htx, err := holder.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := htx.Exec(ctx, dialect.AwaitFence); err != nil {
		t.Fatal(err)
	}
	put := func(id string) error {
		return s.Write(ctx, func(tx store.Tx) error {
			return tx.Put(&store.Resource{Type: "Basic", ID: id, Version: 1, LastUpdated: time.Now(), Body: []byte(`{"resourceType":"Basic","id":"` + id + `"}`)}, nil)
		})
	}
	for _, id := range []string{"a", "b", "c"} { // more than the pool holds
		err := put(id)
		if !errors.Is(err, store.ErrUnavailable) || store.UnavailableCause(err) != store.CauseLocked {
			t.Fatalf("write while the fence is held: %v, want ErrUnavailable (locked)", err)
		}
	}
	if err := htx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"d", "e", "f"} {
		if err := put(id); err != nil {
			t.Fatalf("write after the fence is free: %v", err)
		}
	}
	if _, err := s.Read(ctx, "Basic", "a"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("a refused write's resource: %v, want ErrNotFound", err)
	}
	if err := s.AwaitWrites(ctx); err != nil {
		t.Errorf("AwaitWrites: %v", err)
	}
}

func TestPoolStats(t *testing.T) {
	testURL(t)
	s, _ := openFresh(t, Options{WriteLanes: 1, MaxQueue: 50})
	storetest.PoolStats(t, s, int64(s.pool.Config().MaxConns), 50, true)
}

// TestOutboxOldRelease: a process of a release before the order keys
// writes the outbox beside this one (a rolling upgrade, p38 F1 F2).
func TestOutboxOldRelease(t *testing.T) {
	s, _ := openFresh(t, Options{})
	storetest.OutboxOldRelease(t, s, func(query string) error {
		_, err := s.pool.Exec(context.Background(), query)
		return err
	})
}

// TestSchemaFloor: a new database has floor 19 (the order keys, which a
// gateway of an older schema must not outlive); a later release that
// raises it above this program's schema makes it too old (p38 F3).
func TestSchemaFloor(t *testing.T) {
	ctx := context.Background()
	s, _ := openFresh(t, Options{})
	f, err := s.SchemaFloor(ctx)
	if want := (store.SchemaFloor{Database: schemaVersion, Floor: 19, Program: schemaVersion}); err != nil || f != want || f.TooOld() {
		t.Fatalf("SchemaFloor = %+v %v, want %+v", f, err, want)
	}
	later := schemaVersion + 3
	if _, err := s.pool.Exec(ctx, fmt.Sprintf(`INSERT INTO schema_migrations (version, applied_at) VALUES (%d, 0)`, later)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.pool.Exec(ctx, fmt.Sprintf(`UPDATE schema_floor SET version = %d`, later)); err != nil {
		t.Fatal(err)
	}
	if f, err := s.SchemaFloor(ctx); err != nil || f.Floor != later || f.Database != later || !f.TooOld() {
		t.Fatalf("SchemaFloor after a later release = %+v %v, want floor %d, too old", f, err, later)
	}
}
