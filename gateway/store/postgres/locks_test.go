package postgres

import (
	"context"
	"net/url"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/store/postgres/pgtest"
)

// TestOutboxLockPerSchema: the outbox's and the bounded job submit's
// advisory locks are per schema: gateways of two schemas of one database
// never wait for each other's claims of a destination they both name
// (CI's packages ran their PostgreSQL tests, each in a schema of its own
// and each with a destination "ehr", at once: a claim waited for another
// package's). In the schema public the keys are those of before, so that
// gateways of two releases exclude each other during a rolling upgrade.
func TestOutboxLockPerSchema(t *testing.T) {
	ctx := context.Background()
	dsnA, _ := pgtest.Schema(t, "kg_lock_a", "the advisory locks' test")
	dsnB, _ := pgtest.Schema(t, "kg_lock_b", "the advisory locks' test")
	u, err := url.Parse(dsnA)
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	q.Set("search_path", "public")
	u.RawQuery = q.Encode()
	dsnPublic := u.String()

	// hold opens a connection on dsn and takes, in a transaction held
	// until the test ends, the lock stmt on key (waiting at most 5 s).
	hold := func(dsn, stmt, key string) {
		t.Helper()
		c, err := pgx.Connect(ctx, dsn)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close(ctx) })
		tx, err := c.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := tx.Exec(ctx, `SET LOCAL lock_timeout = '5s'`); err != nil {
			t.Fatal(err)
		}
		if _, err := tx.Exec(ctx, strings.Replace(stmt, "?", "$1", 1), key); err != nil {
			t.Fatalf("taking the lock (held by another of this test's connections?): %v", err)
		}
	}
	// free reports whether the lock stmt on key can be taken on dsn now:
	// it waits at most 300 ms (lock_timeout) for it.
	free := func(dsn, stmt, key string) bool {
		t.Helper()
		c, err := pgx.Connect(ctx, dsn)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close(ctx)
		tx, err := c.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer tx.Rollback(ctx)
		if _, err := tx.Exec(ctx, `SET LOCAL lock_timeout = '300ms'`); err != nil {
			t.Fatal(err)
		}
		_, err = tx.Exec(ctx, strings.Replace(stmt, "?", "$1", 1), key)
		if err != nil && !strings.Contains(err.Error(), "55P03") {
			t.Fatalf("taking the lock: %v", err)
		}
		return err == nil
	}
	key := "ehr\x1fk"
	for _, stmt := range []string{dialect.Lock, dialect.JobLock} {
		hold(dsnA, stmt, key)
		if !free(dsnB, stmt, key) {
			t.Errorf("%s: schema b waited for schema a's lock on the same key", stmt)
		}
		if free(dsnA, stmt, key) {
			t.Errorf("%s: a second gateway of schema a did not wait for the first's lock", stmt)
		}
		if !free(dsnA, stmt, "other") {
			t.Errorf("%s: another key waited", stmt)
		}
	}
	// public: the keys of the release before (hashtext of the key alone).
	hold(dsnPublic, dialect.Lock, key)
	hold(dsnPublic, dialect.JobLock, key)
	for first, stmt := range map[string]string{"kg-outbox": dialect.Lock, "kg-jobs": dialect.JobLock} {
		before := `SELECT pg_advisory_xact_lock(hashtext('` + first + `'), hashtext(?))`
		if free(dsnPublic, before, key) {
			t.Errorf("%s: the release before's lock on the same key was not held in public", first)
		}
		if !free(dsnA, before, "other") {
			t.Errorf("%s: the release before's lock on another key waited", first)
		}
		if free(dsnPublic, stmt, key) {
			t.Errorf("%s: a second gateway of public did not wait", first)
		}
	}
}
