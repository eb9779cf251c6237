package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store/internal/sqlstore"
)

// TestUnavailableCause: the SQLite result codes that say the database
// cannot take the request now (locked, disk full, read-only, I/O error,
// a file that cannot be opened), extended codes included, are causes of
// store.ErrUnavailable; the others (a constraint, a corrupt file, a
// statement error) are not.
func TestUnavailableCause(t *testing.T) {
	for _, tc := range []struct {
		name string
		code int
		want string
	}{
		{"SQLITE_BUSY", 5, store.CauseLocked},
		{"SQLITE_BUSY_SNAPSHOT", 517, store.CauseLocked},
		{"SQLITE_LOCKED", 6, store.CauseLocked},
		{"SQLITE_FULL", 13, store.CauseFull},
		{"SQLITE_READONLY", 8, store.CauseReadOnly},
		{"SQLITE_READONLY_DBMOVED", 1032, store.CauseReadOnly},
		{"SQLITE_IOERR", 10, store.CauseIO},
		{"SQLITE_IOERR_WRITE", 778, store.CauseIO},
		{"SQLITE_IOERR_FSYNC", 1034, store.CauseIO},
		{"SQLITE_CANTOPEN", 14, store.CauseCantOpen},
		{"SQLITE_ERROR", 1, ""},
		{"SQLITE_CORRUPT", 11, ""},
		{"SQLITE_CONSTRAINT_UNIQUE", 2067, ""},
		{"SQLITE_MISUSE", 21, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := unavailableCause(tc.code); got != tc.want {
				t.Errorf("unavailableCause(%d) = %q, want %q", tc.code, got, tc.want)
			}
		})
	}
}

// setMaxPages limits the database to n pages (0: its current size) on
// the write connection: the next write that needs a page fails with
// SQLITE_FULL, as on a full disk.
func setMaxPages(t *testing.T, s *Store, n int64) {
	t.Helper()
	ctx := context.Background()
	if err := s.c.Autocommit(ctx, func(c sqlstore.Conn) error {
		if n == 0 {
			if err := c.QueryRow(ctx, `PRAGMA page_count`).Scan(&n); err != nil {
				return err
			}
		}
		_, err := c.Exec(ctx, fmt.Sprintf(`PRAGMA max_page_count = %d`, n))
		return err
	}); err != nil {
		t.Fatal(err)
	}
}

// setPragma runs PRAGMA p on the write connection.
func setPragma(t *testing.T, s *Store, p string) {
	t.Helper()
	ctx := context.Background()
	if err := s.c.Autocommit(ctx, func(c sqlstore.Conn) error {
		_, err := c.Exec(ctx, `PRAGMA `+p)
		return err
	}); err != nil {
		t.Fatal(err)
	}
}

func putBig(ctx context.Context, s *Store, id string) error {
	return s.Write(ctx, func(tx store.Tx) error {
		return tx.Put(&store.Resource{Type: "Binary", ID: id, Version: 1, LastUpdated: time.Now(),
			Body: fmt.Appendf(nil, `{"resourceType":"Binary","id":%q,"data":%q}`, id, strings.Repeat("x", 1<<20))}, nil)
	})
}

// TestDiskFull: a write that finds no room (SQLITE_FULL) fails with
// store.ErrUnavailable of cause "disk full" (503 with Retry-After at the
// edge, not 500), and succeeds once there is room.
func TestDiskFull(t *testing.T) {
	ctx := context.Background()
	s, _ := openTemp(t, Options{})
	defer s.Close()
	setMaxPages(t, s, 0)
	err := putBig(ctx, s, "full")
	if !errors.Is(err, store.ErrUnavailable) || store.UnavailableCause(err) != store.CauseFull {
		t.Fatalf("Write on a full disk = %v (cause %q), want ErrUnavailable of cause %q", err, store.UnavailableCause(err), store.CauseFull)
	}
	setMaxPages(t, s, 1<<30)
	if err := putBig(ctx, s, "room"); err != nil {
		t.Errorf("Write once there is room again: %v", err)
	}
}

// TestProbeWriteAfterWriteFailure: after a write failed for want of a
// disk that takes it (here a read-only write connection: SQLITE_READONLY,
// as for a full disk the WAL cannot grow on), ProbeWrite (the readiness
// probe) reports that cause, though a transaction can still begin, until
// a write commits changes again: a commit that changes nothing does not
// end it, the probe's own write does once the database takes writes, and
// so does a client's.
func TestProbeWriteAfterWriteFailure(t *testing.T) {
	ctx := context.Background()
	s, _ := openTemp(t, Options{})
	defer s.Close()
	if err := s.ProbeWrite(ctx); err != nil {
		t.Fatalf("ProbeWrite before: %v", err)
	}
	setPragma(t, s, "query_only = 1")
	err := putBig(ctx, s, "a")
	if !errors.Is(err, store.ErrUnavailable) || store.UnavailableCause(err) != store.CauseReadOnly {
		t.Fatalf("Write on a read-only database = %v, want ErrUnavailable of cause %q", err, store.CauseReadOnly)
	}
	for range 2 { // the probe's own write fails too
		if err := s.ProbeWrite(ctx); store.UnavailableCause(err) != store.CauseReadOnly {
			t.Errorf("ProbeWrite after a write failed = %v, want cause %q", err, store.CauseReadOnly)
		}
	}
	setPragma(t, s, "query_only = 0")
	if err := s.Write(ctx, func(store.Tx) error { return nil }); err != nil {
		t.Fatal(err)
	}
	if got := s.c.writeFailure(); got != store.CauseReadOnly {
		t.Errorf("after a commit that changed nothing, the failure is %q, want %q", got, store.CauseReadOnly)
	}
	if err := s.ProbeWrite(ctx); err != nil {
		t.Errorf("ProbeWrite once the database takes writes again: %v", err)
	}
	if err := s.ProbeWrite(ctx); err != nil {
		t.Errorf("ProbeWrite again: %v", err)
	}

	setPragma(t, s, "query_only = 1")
	if err := putBig(ctx, s, "b"); store.UnavailableCause(err) != store.CauseReadOnly {
		t.Fatalf("Write on a read-only database = %v, want cause %q", err, store.CauseReadOnly)
	}
	setPragma(t, s, "query_only = 0")
	if err := putBig(ctx, s, "c"); err != nil {
		t.Fatal(err)
	}
	if got := s.c.writeFailure(); got != "" {
		t.Errorf("after a write committed, the failure is %q, want none", got)
	}
}

// holdWriteLock holds path's write lock from another connection, as a
// backup or an sqlite3 shell in a transaction does, until the returned
// function is called.
func holdWriteLock(t *testing.T, path string) (release func()) {
	t.Helper()
	ctx := context.Background()
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	c, err := db.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.ExecContext(ctx, `BEGIN EXCLUSIVE`); err != nil {
		t.Fatal(err)
	}
	return func() {
		_, _ = c.ExecContext(ctx, `ROLLBACK`)
		c.Close()
		db.Close()
	}
}

// TestOpenWhileLockedElsewhere: a database at the program's schema version
// opens while another process holds its write lock (nothing is to be
// migrated: it is only read), and its writes are then unavailable
// (locked) as for a running gateway; a database to be migrated waits and
// then fails with the cause "locked".
func TestOpenWhileLockedElsewhere(t *testing.T) {
	ctx := context.Background()
	s, path := openTemp(t, Options{})
	s.Close()
	release := holdWriteLock(t, path)
	defer release()
	s, err := Open(ctx, path, Options{BusyTimeout: 20 * time.Millisecond})
	if err != nil {
		t.Fatalf("Open of a current database while another process holds the write lock: %v", err)
	}
	defer s.Close()
	if _, err := s.Read(ctx, "Patient", "x"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Read: %v, want ErrNotFound", err)
	}
	if err := putBig(ctx, s, "x"); store.UnavailableCause(err) != store.CauseLocked {
		t.Errorf("Write while locked elsewhere = %v, want cause %q", err, store.CauseLocked)
	}
	if m := s.Migrated(); m.To != 0 {
		t.Errorf("Migrated() = %+v, want nothing", m)
	}

	old := filepath.Join(t.TempDir(), "old.db")
	db, err := sql.Open("sqlite", dsn(old, time.Second, false))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := migrateOnce(ctx, db, schemaVersion-1, time.Now); err != nil {
		t.Fatal(err)
	}
	db.Close()
	releaseOld := holdWriteLock(t, old)
	defer releaseOld()
	if s, err := Open(ctx, old, Options{BusyTimeout: 20 * time.Millisecond}); err == nil {
		s.Close()
		t.Error("Open of a database to migrate while another process holds the write lock succeeded")
	} else if store.UnavailableCause(err) != store.CauseLocked {
		t.Errorf("Open of a database to migrate while locked elsewhere = %v, want cause %q", err, store.CauseLocked)
	}
}

// TestMigratedReported: Open tells what it migrated, the schema version
// it found and the one it left; a new database is from 0, a current one
// nothing.
func TestMigratedReported(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "old.db")
	db, err := sql.Open("sqlite", dsn(path, time.Second, false))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := migrateOnce(ctx, db, schemaVersion-1, time.Now); err != nil {
		t.Fatal(err)
	}
	db.Close()
	for _, want := range []store.Migration{{From: schemaVersion - 1, To: schemaVersion}, {}} {
		s, err := Open(ctx, path, Options{})
		if err != nil {
			t.Fatal(err)
		}
		if got := s.Migrated(); got.From != want.From || got.To != want.To {
			t.Errorf("Migrated() = %+v, want %+v", got, want)
		}
		s.Close()
	}
	s, _ := openTemp(t, Options{})
	defer s.Close()
	if got, want := s.Migrated(), (store.Migration{From: 0, To: schemaVersion}); got.From != want.From || got.To != want.To || got.Applied != nil {
		t.Errorf("Migrated() of a new database = %+v, want %+v", got, want)
	}
}
