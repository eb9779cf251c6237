package test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// The commands and HTTP examples in README.md and docs/*.md run here, so a
// doc that drifts from the binary fails CI. A code block (indented or
// fenced) whose first line is a command (`ketamine-gateway ...`, `curl ...`,
// `go run ./cmd/ketamine-gateway ...`, optionally after a `$ ` prompt) is an
// example; every command of it runs in order, in the repository's root,
// against one gateway per document (development mode, its own database,
// started by the test): `--db kg.db`, or no --db (GATEWAY_DB is set), means
// that gateway's database, and 127.0.0.1:8080 (or 8090) its address. An example passes when each command
// exits 0 and, for curl, answers the HTTP status its block shows (an
// `HTTP/1.1 200 OK` line) or, without one, a status below 400.
//
// A synopsis (a line with placeholders: [optional], <value>, KIND, FILE,
// ...) is not run. A block that cannot run here is preceded by an HTML
// comment saying why, which the test requires: <!-- doctest: skip: needs
// PostgreSQL -->. Another status is declared the same way: <!-- doctest:
// exit 3 --> or <!-- doctest: status 422 -->.

// docExample is one runnable code block.
type docExample struct {
	file     string
	line     int
	commands []string // each a whole command (continuation lines joined)
	status   []int    // HTTP status shown after each curl command (0: none)
	skip     string   // the reason it is not run
	exit     int      // expected exit status of each command
	httpWant int      // expected HTTP status of each curl (0: below 400)
	// shown is the JSON a ```json block right after the example shows
	// for its last command: the real answer must have its top-level keys.
	shown []byte
}

var (
	commandStart = regexp.MustCompile(`^(\$ )?(ketamine-gateway |curl |go run \./cmd/ketamine-gateway)`)
	placeholder  = regexp.MustCompile(`\[[^\]]*\]|<[a-zA-Z ]+>|\.\.\.|(^|\s)(KIND|FILE|ID|FILE_OR_URL|URL|BYTES|TRACEID|S|T|D|P|N)(\s|$)|Type/id`)
	directive    = regexp.MustCompile(`^<!-- doctest: (skip: .+|exit \d+|status \d+) -->$`)
	httpStatus   = regexp.MustCompile(`^HTTP/[0-9.]+ (\d{3})`)
	dbFlagRE     = regexp.MustCompile(`--db [^ ]+\.db\b`)
)

// docExamples reads the runnable examples of a Markdown file.
func docExamples(t *testing.T, path string) []docExample {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var (
		out     []docExample
		lines   = strings.Split(string(b), "\n")
		pending string // a doctest directive waiting for its block
	)
	for i := 0; i < len(lines); i++ {
		l := lines[i]
		if m := directive.FindStringSubmatch(strings.TrimSpace(l)); m != nil {
			pending = m[1]
			continue
		}
		var block []string
		start := i
		switch {
		case strings.HasPrefix(l, "```"):
			for i++; i < len(lines) && !strings.HasPrefix(lines[i], "```"); i++ {
				block = append(block, lines[i])
			}
		case strings.HasPrefix(l, "    ") && (i == 0 || strings.TrimSpace(lines[i-1]) == "" || directive.MatchString(strings.TrimSpace(lines[i-1]))):
			for ; i < len(lines) && (strings.HasPrefix(lines[i], "    ") || strings.TrimSpace(lines[i]) == ""); i++ {
				block = append(block, strings.TrimPrefix(lines[i], "    "))
			}
			i--
		default:
			if strings.TrimSpace(l) != "" {
				pending = ""
			}
			continue
		}
		ex := parseExample(block)
		if ex == nil {
			pending = ""
			continue
		}
		ex.file, ex.line = path, start+1
		switch {
		case strings.HasPrefix(pending, "skip: "):
			ex.skip = strings.TrimPrefix(pending, "skip: ")
		case strings.HasPrefix(pending, "exit "):
			ex.exit, _ = strconv.Atoi(strings.TrimPrefix(pending, "exit "))
		case strings.HasPrefix(pending, "status "):
			ex.httpWant, _ = strconv.Atoi(strings.TrimPrefix(pending, "status "))
		}
		pending = ""
		// A ```json block right after the example shows its last answer.
		for j := i + 1; j < len(lines); j++ {
			if strings.TrimSpace(lines[j]) == "" {
				continue
			}
			if strings.HasPrefix(lines[j], "```json") {
				var js []string
				for j++; j < len(lines) && !strings.HasPrefix(lines[j], "```"); j++ {
					js = append(js, lines[j])
				}
				ex.shown = []byte(strings.Join(js, "\n"))
			}
			break
		}
		out = append(out, *ex)
	}
	return out
}

// parseExample reads the commands of a code block, or nil when it is no
// runnable example (prose, JSON, a synopsis with placeholders).
func parseExample(block []string) *docExample {
	first := ""
	for _, l := range block {
		if strings.TrimSpace(l) != "" {
			first = strings.TrimSpace(l)
			break
		}
	}
	if !commandStart.MatchString(first) {
		return nil
	}
	ex := &docExample{}
	for j := 0; j < len(block); j++ {
		l := strings.TrimSpace(block[j])
		if !commandStart.MatchString(l) {
			if m := httpStatus.FindStringSubmatch(l); m != nil && len(ex.status) > 0 {
				ex.status[len(ex.status)-1], _ = strconv.Atoi(m[1])
			}
			continue // output shown after a command
		}
		cmd := strings.TrimPrefix(l, "$ ")
		for strings.HasSuffix(cmd, "\\") && j+1 < len(block) {
			j++
			cmd = strings.TrimSuffix(cmd, "\\") + " " + strings.TrimSpace(block[j])
		}
		if placeholder.MatchString(stripQuoted(cmd)) {
			return nil // a synopsis
		}
		ex.commands = append(ex.commands, cmd)
		ex.status = append(ex.status, 0)
	}
	return ex
}

// stripQuoted drops single-quoted parts (URLs with & and [ in them are
// arguments, not placeholders).
func stripQuoted(s string) string {
	var b strings.Builder
	in := false
	for _, r := range s {
		if r == '\'' {
			in = !in
			continue
		}
		if !in {
			b.WriteRune(r)
		}
	}
	return b.String()
}

func TestDocExamples(t *testing.T) {
	if _, err := exec.LookPath("curl"); err != nil {
		t.Skip("curl is not installed: the documented HTTP examples use it")
	}
	files, _ := filepath.Glob("../docs/*.md")
	files = append([]string{"../README.md"}, files...)
	ran := 0
	for _, f := range files {
		examples := docExamples(t, f)
		if len(examples) == 0 {
			continue
		}
		t.Run(filepath.Base(f), func(t *testing.T) {
			dir := t.TempDir()
			db := filepath.Join(dir, "kg.db")
			// The document's gateway; a second one on 8091 stands for the
			// hospital's FHIR server when the document delivers to one.
			var ehr *gateway
			for _, ex := range examples {
				for _, c := range ex.commands {
					if ex.skip == "" && strings.Contains(c, ":8091") && ehr == nil {
						ehr = start(t, "--db", filepath.Join(dir, "ehr.db"))
					}
				}
			}
			args := []string{"--db", db}
			if ehr != nil {
				args = append(args, "--ehr-url", ehr.base+"/fhir")
			}
			g := start(t, args...)
			work := mirrorRepo(t)
			for _, ex := range examples {
				if ex.skip != "" {
					t.Logf("%s:%d not run: %s", ex.file, ex.line, ex.skip)
					continue
				}
				for k, cmd := range ex.commands {
					if strings.Contains(cmd, " serve") && strings.Contains(cmd, "ketamine-gateway") {
						checkServe(t, ex, cmd)
						continue
					}
					runDocCommand(t, ex, k, cmd, work, g, ehr, db)
					t.Logf("%s:%d ran: %.100s", filepath.Base(ex.file), ex.line, cmd)
					ran++
				}
			}
		})
	}
	if ran < 5 {
		t.Errorf("only %d documented commands ran: the examples were not found", ran)
	}
}

// mirrorRepo returns a new directory holding a symbolic link to every
// top-level entry of the repository: the documented commands run there, so
// that the paths they name (schemas/examples/...) resolve while the files
// they write (an IG package, a replay report) land in the test's temporary
// directory, not in the working tree.
func mirrorRepo(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	entries, err := os.ReadDir(root)
	if err != nil {
		t.Fatal(err)
	}
	work := t.TempDir()
	for _, e := range entries {
		if err := os.Symlink(filepath.Join(root, e.Name()), filepath.Join(work, e.Name())); err != nil {
			t.Fatal(err)
		}
	}
	return work
}

// runDocCommand runs one documented command in the directory work (see
// mirrorRepo) and checks its outcome.
func runDocCommand(t *testing.T, ex docExample, k int, cmd, work string, g, ehr *gateway, db string) {
	t.Helper()
	where := fmt.Sprintf("%s:%d: %s", ex.file, ex.line, cmd)
	cmd = strings.Replace(cmd, "go run ./cmd/ketamine-gateway", binary, 1)
	if strings.HasPrefix(cmd, "ketamine-gateway ") {
		cmd = binary + strings.TrimPrefix(cmd, "ketamine-gateway")
	}
	cmd = dbFlagRE.ReplaceAllString(cmd, "--db "+db)
	isCurl := strings.HasPrefix(cmd, "curl ")
	if isCurl {
		for _, a := range []string{"http://127.0.0.1:8080", "http://127.0.0.1:8090", "http://localhost:8080"} {
			cmd = strings.ReplaceAll(cmd, a, g.base)
		}
		if ehr != nil {
			cmd = strings.ReplaceAll(cmd, "http://127.0.0.1:8091", ehr.base)
		}
		cmd += ` -w '\n__status=%{http_code}\n'`
	}
	c := exec.Command("bash", "-c", cmd)
	c.Dir = work
	c.Env = append(os.Environ(), "GATEWAY_DB="+db)
	var out bytes.Buffer
	c.Stdout, c.Stderr = &out, &out
	err := c.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("%s: %v", where, err)
	}
	if code != ex.exit {
		t.Errorf("%s: exit %d, the doc says %d:\n%.2000s", where, code, ex.exit, out.String())
	}
	if !isCurl {
		return
	}
	if ex.shown != nil && k == len(ex.commands)-1 {
		checkShown(t, where, ex.shown, out.Bytes())
	}
	status := 0
	sc := bufio.NewScanner(&out)
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	for sc.Scan() {
		if s, ok := strings.CutPrefix(sc.Text(), "__status="); ok {
			status, _ = strconv.Atoi(s)
		}
	}
	switch want := ex.status[k]; {
	case want != 0 && status != want:
		t.Errorf("%s: HTTP %d, the doc shows %d", where, status, want)
	case ex.httpWant != 0 && status != ex.httpWant:
		t.Errorf("%s: HTTP %d, the doc says %d", where, status, ex.httpWant)
	case want == 0 && ex.httpWant == 0 && (status == 0 || status >= 400):
		t.Errorf("%s: HTTP %d", where, status)
	}
}

// checkServe runs a documented serve command's flags on a free loopback
// port and a database of its own, and checks that it comes up.
func checkServe(t *testing.T, ex docExample, cmd string) {
	t.Helper()
	args := strings.Fields(cmd)
	var flags []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "serve" || strings.Contains(a, "ketamine-gateway") || a == "go" || a == "run":
		case a == "--addr" || a == "--db":
			i++ // the test's own address and database
		default:
			flags = append(flags, strings.Trim(a, `'"`))
		}
	}
	start(t, flags...)
}

// checkShown checks that the answer has the top-level keys the document's
// JSON shows for it.
func checkShown(t *testing.T, where string, shown, got []byte) {
	t.Helper()
	var want map[string]any
	if err := json.Unmarshal(shown, &want); err != nil {
		t.Errorf("%s: the JSON the document shows is not JSON: %v", where, err)
		return
	}
	body, _, _ := bytes.Cut(got, []byte("\n__status="))
	var have map[string]any
	if err := json.Unmarshal(body, &have); err != nil {
		t.Errorf("%s: the answer is not a JSON object: %.300s", where, body)
		return
	}
	for k := range want {
		if _, ok := have[k]; !ok {
			t.Errorf("%s: the answer has no %q, which the document shows", where, k)
		}
	}
}
