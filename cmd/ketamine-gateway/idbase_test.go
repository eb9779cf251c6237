package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestIdentifierBaseFromTheDatabase: the commands that map or look up a
// database's records use the identifier base they were stored with, and
// refuse another (replay without the serving gateway's --identifier-base
// added every patient and resource a second time; lineage found nothing).
func TestIdentifierBaseFromTheDatabase(t *testing.T) {
	raw, err := os.ReadFile("../../schemas/examples/vitals/pre-dose-baseline.json")
	if err != nil {
		t.Fatal(err)
	}
	var line bytes.Buffer
	if err := json.Compact(&line, raw); err != nil {
		t.Fatal(err)
	}
	db := filepath.Join(t.TempDir(), "kg.db")
	records := writeTemp(t, "vitals.ndjson", line.String()+"\n")
	const base, other = "https://hospital.example/sid", "https://other.example/sid"
	if out, errs, code := cli(t, "", "import", "--kind", "vitals", "--db", db, "--identifier-base", base, records); code != 0 {
		t.Fatalf("import: exit %d\n%s\n%s", code, out, errs)
	}
	for _, tc := range []struct {
		args []string
		code int
		want string // in stdout, or stderr when code is not 0
	}{
		{[]string{"replay", "--db", db}, 0, "1 unchanged, 0 would change"},
		{[]string{"replay", "--db", db, "--identifier-base", base + "/"}, 0, "1 unchanged, 0 would change"},
		{[]string{"replay", "--db", db, "--identifier-base", other}, exitUsage, "mapped with the identifier base " + base + ", not " + other},
		{[]string{"lineage", "--db", db, "--source", "serenity-clinic-emr", "--record", "VIT-2026-0310-001"}, 0, `"activity": "CREATE"`},
		{[]string{"lineage", "--db", db, "--source", "serenity-clinic-emr", "--record", "VIT-2026-0310-001", "--identifier-base", other}, exitUsage, "run with --identifier-base " + base},
		{[]string{"import", "--kind", "vitals", "--db", db, "--identifier-base", other, records}, exitUsage, "not " + other},
		{[]string{"replay", "--db", db, "--identifier-base", "not a url"}, exitUsage, "must be an absolute http or https URL"},
		{[]string{"map", "--kind", "vitals", "--identifier-base", "https://x.example/sid?q=1", records}, exitUsage, "no query"},
	} {
		out, errs, code := cli(t, "", tc.args...)
		got := out
		if tc.code != 0 {
			got = errs
		}
		if code != tc.code || !strings.Contains(got, tc.want) {
			t.Errorf("%v: exit %d, want %d with %q\nstdout: %s\nstderr: %s", tc.args, code, tc.code, tc.want, out, errs)
		}
	}
	if code, msg := serveRefused(t, "--addr", "127.0.0.1:0", "--db", db, "--identifier-base", other); code != exitUsage || !strings.Contains(msg, "not "+other) {
		t.Errorf("serve with another identifier base: exit %d %s; want %d naming the database's base", code, msg, exitUsage)
	}
}

// serveRefused runs serve with args, expecting it to refuse to start: it
// returns the exit code and message. A serve that started runs until a
// minute is up, then counts as exit 0.
func serveRefused(t *testing.T, args ...string) (code int, msg string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var out, errs bytes.Buffer
	err := run(ctx, append([]string{"ketamine-gateway", "serve"}, args...), func(string) string { return "" },
		strings.NewReader(""), &out, &errs)
	var ee *exitError
	if errors.As(err, &ee) {
		return ee.code, ee.msg
	}
	return 0, fmt.Sprint(err)
}
