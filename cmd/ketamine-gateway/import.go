package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/user"
	"strings"
	"time"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/auditlog"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/auth"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/bulk"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/outcome"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/search"
	"github.com/ketamine-gateway/ketamine-gateway/mapping"
)

// maxImportWorkers bounds import --workers.
const maxImportWorkers = 64

// importCommand is the CLI bulk import (docs/bulk.md).
func importCommand(ctx context.Context, args []string, getenv func(string) string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := newFlags("import")
	kind := fs.String("kind", "", "record kind: "+kindList())
	db := dbFlag(fs, getenv)
	tenant := fs.String("tenant", "", "the tenant (clinic) the records belong to (default: the default tenant)")
	deliver := fs.Bool("deliver", false, "enqueue the stored records for the destinations of --config")
	newTenant := fs.Bool("new-tenant", false, "the --tenant is new to the database on purpose: its first records (without a --config naming "+
		"the tenants, an import into a database holding named tenants' records must name one of them)")
	configFile, base := appConfigFlags(fs, getenv)
	reportFile := fs.String("report", "import-rejected.ndjson", "where the rejected records are listed")
	workers := fs.Int("workers", 4, fmt.Sprintf("records ingested at once (1 to %d)", maxImportWorkers))
	pos, err := parse(fs, "import", args, stdout)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usageError("import", "give one FILE, DIR or - (standard input)")
	}
	if *kind == "" {
		return usageError("import", "--kind is required: the kind of the records (%s)", kindList())
	}
	if !knownKind(*kind) {
		return usageError("import", "--kind %q: the kinds are %s", *kind, kindList())
	}
	if *tenant == "*" {
		return usageError("import", "--tenant: records belong to one tenant, not every tenant (*)")
	}
	if search.Reserved(*tenant) {
		return usageError("import", "--tenant: a tenant begins with * only as * itself, which names every tenant (*all-tenants keeps the all-tenant clients' AuditEvents)")
	}
	if *workers < 1 || *workers > maxImportWorkers {
		return usageError("import", "--workers must be from 1 to %d", maxImportWorkers)
	}
	acfg, ndests, err := cliAppConfig(*configFile, *base, *deliver, getenv)
	if err != nil {
		return err
	}
	if *deliver && ndests == 0 {
		return usageError("import", "--deliver needs delivery destinations: --config FILE (or GATEWAY_EHR_URL)")
	}
	checkDBTenant := true
	if fc, err := readConfig(*configFile); err == nil {
		if err := importTenantError(fc, *kind, *tenant, *deliver, acfg.Routes); err != nil {
			return err
		}
		checkDBTenant = !checksAuthTenants(fc)
	}
	src, total, closeSrc, err := importSource(ctx, pos[0], stdin)
	if err != nil {
		return usageError("import", "%v", err)
	}
	defer closeSrc()
	// Interrupted while the first line was awaited (a silent pipe), or
	// while the database was opened: nothing was stored.
	interrupted := &exitError{code: exitUnchecked, msg: "import interrupted after 0 records (none was stored); run it again to continue"}
	if ctx.Err() != nil {
		return interrupted
	}
	if err := checkReport(*reportFile); err != nil {
		return usageError("import", "%v", err)
	}
	a, closeApp, err := openApp(ctx, acfg, "import", *db, dbCreate, slog.New(slog.NewJSONHandler(stderr, nil)))
	if err != nil && ctx.Err() != nil {
		return interrupted
	}
	if err != nil {
		return err
	}
	defer closeApp()
	if checkDBTenant {
		if err := dbTenantError(ctx, a.Store, *tenant, *newTenant); err != nil {
			return err
		}
	}

	// The report is created at the first rejected record (an import
	// without one leaves no file; checkReport made sure it can be); a
	// report that cannot be written all the same (a full disk) stops the
	// import (exit 3), the records before it stored.
	var (
		report  *os.File
		rw      *bufio.Writer
		written bool // every rejected record is in the report
		// otherKind is what the rejected records' first issue says of
		// their kind while every one is a valid record of the same other
		// kind (bulk.Rejection.OtherKind); mixed is set once one is not.
		otherKind string
		mixed     bool
	)
	defer func() {
		if report != nil {
			report.Close()
		}
	}()
	runID := runID("import")
	sc := auditlog.NewScope("ingest", &auth.Principal{ClientID: cliClient("import"), Tenant: *tenant,
		Scopes: auth.ParseScopes(auth.ScopeIngest)})
	sc.NoHTTP = true // no HTTP exchange: its AuditEvents claim no HTTP status
	bar := newProgress(stderr, "import", "records", "rejected", total)
	start := time.Now()
	counts, err := a.Bulk.Import(ctx, sc, src, bulk.ImportOptions{
		Kind: mapping.Kind(*kind), Deliver: *deliver, RunID: runID, Workers: *workers,
		Done: func(c bulk.ImportCounts) { bar.set(c.Records, c.Rejected) },
		Rejected: func(r bulk.Rejection) error {
			if k := r.OtherKind(); k == "" || otherKind != "" && k != otherKind {
				mixed = true
			} else {
				otherKind = k
			}
			b, err := json.Marshal(r)
			if err != nil {
				return err
			}
			if rw == nil {
				if report, err = os.Create(*reportFile); err != nil {
					return fmt.Errorf("--report: %w", err)
				}
				rw = bufio.NewWriter(report)
			}
			_, err = rw.Write(append(b, '\n'))
			return err
		},
	})
	bar.finish()
	if rw != nil {
		ferr := rw.Flush()
		if ferr == nil {
			ferr = report.Close()
		}
		report = nil
		if ferr != nil && err == nil {
			err = fmt.Errorf("--report: %w", ferr)
		}
		written = ferr == nil
	}
	elapsed := time.Since(start)
	already := ""
	if counts.AlreadyStored > 0 {
		already = fmt.Sprintf(", %d already stored (unchanged)", counts.AlreadyStored)
	}
	tenantName := fmt.Sprintf("tenant %q", *tenant)
	if *tenant == "" {
		tenantName = "the default tenant"
	}
	// The database named (a first-hour review: a misspelt --db, or
	// another directory, stored the records where serve never reads).
	fmt.Fprintf(stdout, "import %s (%s records, %s, into %s): %d read, %d stored%s, %d rejected in %s (%.0f records/s)\n",
		runID, *kind, tenantName, describeDB(*db), counts.Records, counts.Stored, already, counts.Rejected, elapsed.Round(time.Millisecond),
		float64(counts.Records)/max(elapsed.Seconds(), 1e-9))
	switch {
	case counts.Rejected > 0 && written:
		fmt.Fprintf(stdout, "rejected records are listed in %s\n", *reportFile)
	case counts.Rejected > 0:
		fmt.Fprintf(stdout, "the rejected records could not be listed in %s\n", *reportFile)
	}
	if counts.Rejected > 0 && !mixed && otherKind != "" {
		// Every one was sent as the wrong kind: say so, and how to import
		// them (a first-hour review: 400 rejected, and no word why).
		fmt.Fprintf(stdout, "every rejected record is of another kind: %s\n", otherKind)
	}
	if counts.AlreadyStored > 0 && *deliver {
		// deliveries replay re-sends only records delivered before: it
		// would re-send others and not these (it is no remedy here).
		fmt.Fprintf(stdout, "records already stored were not enqueued (an import that changes nothing queues nothing); "+
			"'deliveries replay' does not send them either, it re-sends only records delivered before. "+
			"A record stored without --deliver is not queued afterwards: import with --deliver the first time, "+
			"or have the clinic send the record again as a new version\n")
	}
	if err != nil {
		msg := fmt.Sprintf("import stopped after %d records: %v; run it again to continue (records already stored change nothing)",
			counts.Records, describe(err))
		if errors.Is(err, context.Canceled) {
			return &exitError{code: exitUnchecked, msg: "import interrupted after " + fmt.Sprint(counts.Records) + " records; run it again to continue"}
		}
		return &exitError{code: exitUnchecked, msg: msg}
	}
	if counts.Rejected > 0 {
		return &exitError{code: exitInvalid}
	}
	return nil
}

// checkReport checks, before any record is ingested, that the report
// can be written at path: a file that can be created there (removed again:
// an import without rejected records leaves none) or an existing file that
// can be written (kept as it is until a record is rejected).
func checkReport(path string) error {
	if fi, err := os.Stat(path); err == nil {
		if fi.IsDir() {
			return fmt.Errorf("--report %s is a directory; give a file name", path)
		}
		f, err := os.OpenFile(path, os.O_WRONLY, 0)
		if err != nil {
			return fmt.Errorf("--report %s cannot be written: %v", path, errors.Unwrap(err))
		}
		return f.Close()
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o666)
	if err != nil {
		return fmt.Errorf("--report %s cannot be created: %v", path, errors.Unwrap(err))
	}
	f.Close()
	return os.Remove(path)
}

// maxRecord is the longest record line (or file) an import reads.
const maxRecord = 16 << 20

// importSource opens FILE (NDJSON), DIR or - (standard input), with the
// number of records when it can be known cheaply (-1 otherwise). A file
// that is not NDJSON but one JSON document over several lines (the shape
// of the example records) is refused with what to do, as is a stream
// (standard input, a named pipe, a process substitution <(...)) whose
// first line is "{" or "[" alone. A stream is read once, as it comes:
// it cannot be counted first nor read again.
func importSource(ctx context.Context, name string, stdin io.Reader) (bulk.Source, int64, func(), error) {
	if name == "-" {
		src, err := streamSource(ctx, "standard input", stdin)
		return src, -1, func() {}, err
	}
	fi, err := os.Stat(name)
	if err != nil {
		return nil, 0, nil, fmt.Errorf("read %s: %v", name, errors.Unwrap(err))
	}
	if fi.IsDir() {
		src, n, err := bulk.Dir(name, maxRecord)
		if err != nil {
			return nil, 0, nil, fmt.Errorf("read %s: %v", name, err)
		}
		return src, n, func() {}, nil
	}
	f, err := os.Open(name)
	if err != nil {
		return nil, 0, nil, fmt.Errorf("read %s: %v", name, errors.Unwrap(err))
	}
	if !fi.Mode().IsRegular() {
		// A named pipe, a character device, a socket: no seeking.
		src, err := streamSource(ctx, name, f)
		if err != nil {
			f.Close()
			return nil, 0, nil, err
		}
		return src, -1, func() { f.Close() }, nil
	}
	what, err := documentShape(f)
	if err == nil && what != "" {
		err = notNDJSON(name, what)
	}
	if err != nil {
		f.Close()
		return nil, 0, nil, err
	}
	total, err := bulk.CountLines(f)
	if err == nil {
		_, err = f.Seek(0, io.SeekStart)
	}
	if err != nil {
		f.Close()
		return nil, 0, nil, fmt.Errorf("read %s: %v", name, err)
	}
	return bulk.NDJSON(f, maxRecord), total, func() { f.Close() }, nil
}

// streamSource reads NDJSON from r, a stream named name, once. A read
// waiting for the stream's writer gives way when ctx is done (Ctrl-C).
func streamSource(ctx context.Context, name string, r io.Reader) (bulk.Source, error) {
	in := bufio.NewReaderSize(interruptible(ctx, r), 64<<10)
	if what := firstLineShape(in); what != "" {
		return nil, notNDJSON(name, what)
	}
	return bulk.NDJSON(in, maxRecord), nil
}

// firstLineShape is bulk.Shape of r's first bytes: "array" for a JSON
// array of records (on one line or several), "object" for a
// pretty-printed record, else "". It only peeks at r.
func firstLineShape(r *bufio.Reader) string {
	head, _ := r.Peek(64)
	return bulk.Shape(head)
}

// documentShape is firstLineShape for a file, and also "object" or "array"
// when the file's first JSON value spans several lines (one pretty-printed
// record or array); f is read from its start and left there.
func documentShape(f *os.File) (string, error) {
	what := firstLineShape(bufio.NewReaderSize(f, 64))
	if what == "" {
		if _, err := f.Seek(0, io.SeekStart); err != nil {
			return "", fmt.Errorf("read %s: %v", f.Name(), err)
		}
		var first json.RawMessage
		if json.NewDecoder(io.LimitReader(f, maxRecord)).Decode(&first) == nil && bytes.ContainsRune(first, '\n') {
			what = map[byte]string{'{': "object", '[': "array"}[first[0]]
		}
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return "", fmt.Errorf("read %s: %v", f.Name(), err)
	}
	return what, nil
}

// notNDJSON refuses an input (name) that holds one JSON document (what:
// "object" or "array") rather than one record per line, saying what to do.
func notNDJSON(name, what string) error {
	if what == "array" {
		return fmt.Errorf("%s looks like one JSON array, not NDJSON (one record per line): "+
			"put one record per line, e.g. jq -c '.[]' FILE > records.ndjson", name)
	}
	return fmt.Errorf("%s looks like one JSON document spread over several lines, not NDJSON (one record per line): "+
		"give the directory that holds it (one record per .json file), or compact it to one line, e.g. "+
		"jq -c . FILE > records.ndjson", name)
}

// knownKind reports whether kind is a native record kind.
func knownKind(kind string) bool {
	for _, k := range mapping.Kinds() {
		if string(k) == kind {
			return true
		}
	}
	return false
}

// kindList names the record kinds.
func kindList() string {
	var ks []string
	for _, k := range mapping.Kinds() {
		ks = append(ks, string(k))
	}
	return strings.Join(ks, ", ")
}

// cliClient names the person running a command in audit records:
// "cli-<command>:<OS user>".
func cliClient(command string) string {
	name := "unknown"
	if u, err := user.Current(); err == nil && u.Username != "" {
		name = u.Username
	}
	return "cli-" + command + ":" + name
}

// describe is an error for a person: its kind's message for a classified
// one, the error's text otherwise (a CLI's own errors name no PHI).
func describe(err error) string {
	kind, issues := outcome.From(err)
	if kind != outcome.Internal && len(issues) > 0 {
		return issues[0].Message
	}
	return err.Error()
}

// interruptReader reads a stream in a goroutine of its own, so that a read
// blocked on it (a pipe whose writer is slow or silent: a network stream,
// ssh host cat) gives way when ctx is done: Read then returns ctx's error
// and the import stops at once, as Ctrl-C asks. The goroutine ends at the
// stream's end or error, or when the caller closes the stream (a named
// pipe's read then returns); on standard input it may stay blocked until
// the process exits.
type interruptReader struct {
	ctx  context.Context
	ch   chan readChunk
	rest []byte // what is left of the last chunk
	err  error  // the stream's error, once met
}

type readChunk struct {
	b   []byte
	err error
}

func interruptible(ctx context.Context, r io.Reader) *interruptReader {
	ir := &interruptReader{ctx: ctx, ch: make(chan readChunk)}
	go func() {
		for {
			b := make([]byte, 64<<10)
			n, err := r.Read(b)
			select {
			case ir.ch <- readChunk{b[:n], err}:
			case <-ctx.Done():
				return
			}
			if err != nil {
				return
			}
		}
	}()
	return ir
}

// Read implements io.Reader.
func (ir *interruptReader) Read(p []byte) (int, error) {
	for len(ir.rest) == 0 && ir.err == nil {
		select {
		case c := <-ir.ch:
			ir.rest, ir.err = c.b, c.err
		case <-ir.ctx.Done():
			return 0, ir.ctx.Err()
		}
	}
	if len(ir.rest) > 0 {
		n := copy(p, ir.rest)
		ir.rest = ir.rest[n:]
		return n, nil
	}
	return 0, ir.err
}
