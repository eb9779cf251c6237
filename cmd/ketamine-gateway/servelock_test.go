//go:build unix

package main

import (
	"path/filepath"
	"strings"
	"testing"
)

// TestOneServePerSQLiteFile (an operator's review: a second serve on a
// served SQLite file started without a word): while one serve holds the
// file's lock, serve and serve --migrate-only on it are refused (exit 2)
// naming the holder's pid, and once it is released the file is served.
func TestOneServePerSQLiteFile(t *testing.T) {
	db := filepath.Join(t.TempDir(), "kg.db")
	release, err := lockServe(db)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := lockServe(db); err == nil || !strings.Contains(err.Error(), "is being served already (pid ") {
		t.Errorf("a second lock = %v, want it refused naming the pid", err)
	}
	for _, args := range [][]string{{"serve", "--addr", "127.0.0.1:0", "--db", db}, {"serve", "--migrate-only", "--db", db}} {
		wantCLI(t, args, exitUsage, "a SQLite file is served by one gateway process")
	}
	release()
	again, err := lockServe(db)
	if err != nil {
		t.Fatalf("the lock after its release: %v", err)
	}
	again()
	if release, err := lockServe("postgres://u@h/db"); err != nil {
		t.Errorf("PostgreSQL locked: %v", err)
	} else {
		release()
	}
}
