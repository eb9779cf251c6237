package main

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestSynopsisNamesFlags: a command whose synopsis lists its flags (no
// "[flags]") lists every flag its help describes, so that the synopsis is
// not a partial list (p20 F10: replay's left out --ehr-url and
// --no-config, one of which --apply needs).
func TestSynopsisNamesFlags(t *testing.T) {
	flagLine := regexp.MustCompile(`(?m)^  (--?[a-z][a-z0-9-]*)`)
	for _, c := range commands {
		if strings.Contains(c.usage, "[flags]") {
			continue
		}
		out, _, _ := cli(t, "", c.name, "-h")
		for _, m := range flagLine.FindAllStringSubmatch(out, -1) {
			name := m[1] // as the help writes it: -o, --kind
			// --identifier-base is the deployment's (GATEWAY_IDENTIFIER_BASE),
			// described by every command that maps and named by none.
			if name == "-h" || name == "--help" || name == "--identifier-base" {
				continue
			}
			if !regexp.MustCompile(regexp.QuoteMeta(name) + `\b`).MatchString(c.usage) {
				t.Errorf("%s: the synopsis %q does not name %s, which its help describes", c.name, c.usage, name)
			}
		}
	}
}

// TestExamplesUseDefaultDB: the help's and the docs' examples of the
// commands that open a database use the database serve creates by default
// (no --db, or ketamine-gateway.db), so that each runs as shown after the
// README's quick start (p34 F5: every example said --db kg.db, exit 3 on
// the README's setup).
func TestExamplesUseDefaultDB(t *testing.T) {
	dbFile := regexp.MustCompile(`--db +([^ ]+\.db)\b`)
	check := func(where, example string) {
		for _, m := range dbFile.FindAllStringSubmatch(example, -1) {
			// A path in a directory is a deliberate place (a restored copy,
			// a server's volume); a bare name is the reader's database.
			if !strings.Contains(m[1], "/") && m[1] != "ketamine-gateway.db" {
				t.Errorf("%s: %q uses --db %s; serve's default database is ketamine-gateway.db (omit --db)", where, example, m[1])
			}
		}
	}
	for _, c := range commands {
		for _, e := range c.examples {
			check(c.name+" -h", e)
		}
	}
	docs, _ := filepath.Glob("../../docs/*.md")
	for _, f := range append(docs, "../../README.md") {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for i, l := range strings.Split(string(b), "\n") {
			if strings.Contains(l, "ketamine-gateway ") {
				check(fmt.Sprintf("%s:%d", filepath.Base(f), i+1), strings.TrimSpace(l))
			}
		}
	}
}
