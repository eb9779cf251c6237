// Package pgtest gives tests a fresh PostgreSQL schema on the server
// GATEWAY_TEST_POSTGRES_URL names (.ci/run sets it), dropped when the test
// ends; without the variable the test is skipped, so a fresh clone passes.
package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/url"
	"os"
	"testing"

	"github.com/jackc/pgx/v5"
)

// Schema creates a schema named prefix_<random> and returns a URL that
// selects it (search_path) and its name. what says what the skip leaves
// untested ("the delivery tests").
func Schema(t testing.TB, prefix, what string) (dsn, schema string) {
	t.Helper()
	base := os.Getenv("GATEWAY_TEST_POSTGRES_URL")
	if base == "" {
		t.Skip("GATEWAY_TEST_POSTGRES_URL not set: set it to a postgres:// URL (.ci/run does) to run " + what + " on PostgreSQL")
	}
	u, err := url.Parse(base)
	if err != nil {
		t.Fatalf("GATEWAY_TEST_POSTGRES_URL must be a URL: %v", err)
	}
	var rnd [6]byte
	_, _ = rand.Read(rnd[:])
	schema = prefix + "_" + hex.EncodeToString(rnd[:])
	exec := func(sql string) error {
		ctx := context.Background()
		conn, err := pgx.Connect(ctx, base)
		if err != nil {
			return err
		}
		defer conn.Close(ctx)
		_, err = conn.Exec(ctx, sql)
		return err
	}
	if err := exec("CREATE SCHEMA " + schema); err != nil {
		t.Fatalf("create schema: %v", err)
	}
	t.Cleanup(func() {
		if err := exec("DROP SCHEMA IF EXISTS " + schema + " CASCADE"); err != nil {
			t.Logf("drop schema %s: %v", schema, err)
		}
	})
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	return u.String(), schema
}
