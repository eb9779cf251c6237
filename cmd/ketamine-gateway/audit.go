package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/auditlog"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/outcome"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/search"
)

// dbFlag adds --db (GATEWAY_DB) to fs.
func dbFlag(fs *flag.FlagSet, getenv func(string) string) *string {
	return fs.String("db", envOr(getenv, "GATEWAY_DB", "ketamine-gateway.db"), "the gateway's database: a SQLite `FILE` or a postgres:// URL (GATEWAY_DB)")
}

// auditCommand checks the audit chain of a database: exit 0 intact, 1
// broken, 3 could not check.
func auditCommand(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) > 0 && (args[0] == "-h" || args[0] == "--help" || args[0] == "-help") {
		args = []string{"verify", "-h"}
	}
	if len(args) > 0 && args[0] == "export" {
		return auditExportCommand(ctx, args[1:], getenv, stdout, stderr)
	}
	if len(args) > 0 && args[0] == "verify-export" {
		return auditVerifyExportCommand(args[1:], stdout, stderr)
	}
	if len(args) < 1 || args[0] != "verify" {
		return usageError("audit", "the subcommand is verify, export or verify-export")
	}
	fs := newFlags("audit verify")
	db := dbFlag(fs, getenv)
	var anchors []auditlog.Anchor
	anchorFlag(fs, &anchors, "an anchor, `SEQ:HASH`, the headSeq and headHash of an earlier verification kept outside the database: "+
		"the chain must still hold that record with that hash (repeatable); @FILE takes the head of a verification saved as JSON")
	var from []auditlog.Anchor
	fs.Func("from", "verify only from `SEQ:HASH`, a head an earlier verification recorded (kept outside the database), to the head: "+
		"the chain must hold that record with that hash, and the records after it are checked as the whole walk checks them, "+
		"in time proportional to them; the records before it are not checked now; @FILE takes the head of a verification saved as JSON "+
		"(default: the whole chain, from record 1); a verification that found the trail not intact is refused", anchorValue(&from, true))
	pos, err := parse(fs, "audit verify", args[1:], stdout)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usageError("audit verify", "takes no arguments")
	}
	opts := auditlog.VerifyOptions{Anchors: anchors}
	switch len(from) {
	case 0:
	case 1:
		opts.From = &from[0]
	default:
		return usageError("audit verify", "--from is given once")
	}
	if err := opts.Check(); err != nil {
		_, issues := outcome.From(err)
		return usageError("audit verify", "%s", issues[0].Message)
	}
	st, err := openExisting(ctx, "audit verify", *db, dbRead)
	if err != nil {
		return err
	}
	defer st.Close()
	total := int64(-1)
	if head, _, err := st.AuditChainHead(ctx); err == nil {
		total = head
		if opts.From != nil {
			total = max(head-opts.From.Seq+1, 0)
		}
	}
	bar := newProgress(stderr, "audit verify", "records", "", total)
	opts.Progress = func(n int64) { bar.set(n, 0) }
	res, err := auditlog.VerifyWith(ctx, st, time.Now(), opts)
	bar.finish()
	if err != nil {
		return &exitError{code: exitUnchecked, msg: fmt.Sprintf("audit verify: could not check: %v", err)}
	}
	if err := printJSON(stdout, res); err != nil {
		return err
	}
	if res.Scope != "" {
		fmt.Fprintf(stderr, "audit verify: %s\n", res.Scope)
	}
	if res.IndexNote != "" {
		fmt.Fprintf(stderr, "audit verify: %s\n", res.IndexNote)
	}
	if res.Lineage.Note != "" {
		fmt.Fprintf(stderr, "audit verify: %s\n", res.Lineage.Note)
	}
	if !res.Intact {
		return &exitError{code: exitInvalid, msg: res.Summary()}
	}
	return nil
}

// anchorFlag adds --expect SEQ:HASH (repeatable) to fs; --expect @FILE
// takes the head of the verification FILE holds (the JSON audit verify
// prints or GET /admin/audit/verify answers: headSeq and headHash).
func anchorFlag(fs *flag.FlagSet, anchors *[]auditlog.Anchor, usage string) {
	fs.Func("expect", usage, anchorValue(anchors, false))
}

// anchorValue parses a flag's SEQ:HASH or @FILE (the head of a saved
// verification) and appends it to anchors. trusted (--from) takes the
// head of a verification that found the trail intact only: one that did
// not vouches for none of the records up to its head.
func anchorValue(anchors *[]auditlog.Anchor, trusted bool) func(string) error {
	return func(v string) error {
		if file, ok := strings.CutPrefix(v, "@"); ok {
			a, err := verificationHead(file, trusted)
			if err != nil {
				return err
			}
			*anchors = append(*anchors, a)
			return nil
		}
		a, err := auditlog.ParseAnchor(v)
		if err != nil {
			return err
		}
		*anchors = append(*anchors, a)
		return nil
	}
}

// verificationHead is the anchor of the head a saved verification names.
// intact requires the verification to have found the trail intact (its
// "intact": true): the head of one that did not is still the head the
// chain held then (an anchor to expect), but no trusted start.
func verificationHead(file string, intact bool) (auditlog.Anchor, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return auditlog.Anchor{}, fmt.Errorf("read the verification: %w", err)
	}
	var v struct {
		Intact   *bool  `json:"intact"`
		HeadSeq  int64  `json:"headSeq"`
		HeadHash string `json:"headHash"`
	}
	if err := json.Unmarshal(b, &v); err != nil || v.HeadSeq < 1 {
		return auditlog.Anchor{}, fmt.Errorf("%s is not a verification's JSON with a head (headSeq, headHash: the output of audit verify, which prints JSON, or GET /admin/audit/verify, saved)", file)
	}
	if intact && (v.Intact == nil || !*v.Intact) {
		found := "found the trail not intact"
		if v.Intact == nil {
			found = "does not say the trail was intact (no \"intact\")"
		}
		return auditlog.Anchor{}, fmt.Errorf("%s %s: a verification that found the trail not intact vouches for nothing: "+
			"its faults, unchained AuditEvents or anchors not held may lie before its head; verify the whole chain (without --from), "+
			"or start from the head of a verification that found the trail intact", file, found)
	}
	return auditlog.ParseAnchor(fmt.Sprintf("%d:%s", v.HeadSeq, v.HeadHash))
}

// auditExportCommand is the CLI twin of GET /admin/audit/export: the
// chain's slice for a period, with its links and manifest, as NDJSON.
func auditExportCommand(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := newFlags("audit export")
	db := dbFlag(fs, getenv)
	since := fs.String("since", "", "the period's start `T`: RFC 3339, a date or a duration before now (90m, 24h, 7d); none: from record 1")
	until := fs.String("until", "", "the period's end `T` (excluded), as --since, at least 5 minutes ago (records are chained as they commit); none: up to the chain head")
	out := fs.String("out", "", "write the export to `FILE` (created, or replaced once complete) instead of standard output")
	pos, err := parse(fs, "audit export", args, stdout)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usageError("audit export", "takes no arguments")
	}
	now := time.Now()
	from, err := parseTimeFlag(*since, now)
	if err != nil {
		return usageError("audit export", "--since: %v", err)
	}
	to, err := parseTimeFlag(*until, now)
	if err != nil {
		return usageError("audit export", "--until: %v", err)
	}
	if !from.IsZero() && !to.IsZero() && !to.After(from) {
		return usageError("audit export", "--until must be after --since")
	}
	if from := auditlog.ExportableFrom(to); !to.IsZero() && now.Before(from) {
		return usageError("audit export", "--until has not passed by the commit slack (5 minutes): records made before it may still be chained; the period can be exported from %s", from.UTC().Format(time.RFC3339))
	}
	st, err := openExisting(ctx, "audit export", *db, dbRead)
	if err != nil {
		return err
	}
	defer st.Close()
	w := stdout
	var f *os.File
	if *out != "" {
		if f, err = os.CreateTemp(filepath.Dir(*out), ".audit-export-*"); err != nil {
			return &exitError{code: exitUnchecked, msg: fmt.Sprintf("audit export: %v", err)}
		}
		defer os.Remove(f.Name())
		defer f.Close()
		w = f
	}
	bar := newProgress(stderr, "audit export", "records", "", -1)
	_, err = auditlog.Export(ctx, st, from, to, now, w, func(n int64) { bar.set(n, 0) })
	bar.finish()
	if err != nil {
		return &exitError{code: exitUnchecked, msg: fmt.Sprintf("audit export: could not export: %v", err)}
	}
	if f != nil {
		if err := f.Close(); err != nil {
			return &exitError{code: exitUnchecked, msg: fmt.Sprintf("audit export: %v", err)}
		}
		if err := os.Rename(f.Name(), *out); err != nil {
			return &exitError{code: exitUnchecked, msg: fmt.Sprintf("audit export: %v", err)}
		}
	}
	return nil
}

// auditVerifyExportCommand checks an export file without the database:
// exit 0 it links and holds every anchor (one at least), 1 it does not
// or no anchor was given, 3 it could not be read.
func auditVerifyExportCommand(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("audit verify-export")
	var anchors []auditlog.Anchor
	anchorFlag(fs, &anchors, "an anchor, `SEQ:HASH`, kept outside the database (an earlier verify's headSeq and headHash, or an "+
		"earlier export's lastSeq and lastHash): the export must hold that record or the one before its first with that hash (repeatable); "+
		"@FILE takes the head of a verification saved as JSON (audit verify > FILE, or GET /admin/audit/verify); "+
		"without one held the exit is 1, as the file then proves its internal consistency only")
	pos, err := parse(fs, "audit verify-export", args, stdout)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usageError("audit verify-export", "takes one argument, the export FILE (- for standard input is not taken: name the file)")
	}
	f, err := os.Open(pos[0])
	if err != nil {
		return &exitError{code: exitUnchecked, msg: fmt.Sprintf("audit verify-export: could not read %s: %v", pos[0], err)}
	}
	defer f.Close()
	res, err := auditlog.VerifyExport(f, anchors...)
	if err != nil {
		return &exitError{code: exitUnchecked, msg: fmt.Sprintf("audit verify-export: could not read %s: %v", pos[0], err)}
	}
	if err := printJSON(stdout, res); err != nil {
		return err
	}
	if !res.Intact {
		msg := "audit verify-export: " + res.Reason
		for _, a := range res.Anchors {
			if !a.Held {
				msg = fmt.Sprintf("audit verify-export: anchor %d not held: %s", a.Seq, a.Problem)
				break
			}
		}
		switch {
		case res.Reason != "" && res.BrokenAt > 0:
			msg = fmt.Sprintf("audit verify-export: broken at record %d: %s", res.BrokenAt, res.Reason)
		case res.Reason != "": // the manifest alone is wrong: no record is at fault
			msg = "audit verify-export: " + res.Reason
		}
		return &exitError{code: exitInvalid, msg: msg}
	}
	if !res.Anchored {
		return &exitError{code: exitInvalid, msg: "audit verify-export: not anchored: proves internal consistency only (a file built from another chain, or cut and its manifest edited, links as well): give --expect SEQ:HASH, a hash kept outside the database"}
	}
	return nil
}

// lineageCommand is the CLI twin of GET /admin/lineage.
func lineageCommand(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := newFlags("lineage")
	db := dbFlag(fs, getenv)
	base := fs.String("identifier-base", envOr(getenv, "GATEWAY_IDENTIFIER_BASE", ""), "the gateway's identifier base, if not the default (GATEWAY_IDENTIFIER_BASE)")
	var q auditlog.LineageQuery
	fs.StringVar(&q.Source, "source", "", "the record's source system")
	fs.StringVar(&q.RecordID, "record", "", "the record's id in its source system")
	fs.StringVar(&q.Kind, "kind", "", "the record's kind (optional)")
	fs.StringVar(&q.Resource, "resource", "", "a FHIR resource, Type/id")
	fs.StringVar(&q.TraceID, "trace", "", "a trace id (32 hex digits)")
	tenant := fs.String("tenant", search.AllTenants, "only this tenant's story (default: every tenant's, each receipt naming its tenant; \"\" is the default tenant)")
	pos, err := parse(fs, "lineage", args, stdout)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usageError("lineage", "takes no arguments (use --source and --record, --resource or --trace)")
	}
	q.IdentifierBase = *base
	q.Tenant = *tenant // the database's administrator may see every tenant
	if err := q.Check(); err != nil {
		_, issues := outcome.From(err)
		return usageError("lineage", "%s", issues[0].Message)
	}
	// dbWrite: its AuditEvent is written, as GET /admin/lineage's is.
	st, err := openExisting(ctx, "lineage", *db, dbWrite)
	if err != nil {
		return err
	}
	defer st.Close()
	if q.IdentifierBase, err = identifierBase(ctx, "lineage", st, q.IdentifierBase); err != nil {
		return err
	}
	l, err := auditlog.BuildLineage(ctx, st, q)
	if err != nil {
		kind, _ := outcome.From(err)
		return &exitError{code: exitCode(kind), msg: "lineage: " + describe(err)}
	}
	sc := cliScope("lineage", "lineage")
	l.Audit(sc)
	sc.Description = l.Describe("lineage")
	if err := recordCLI(st, "lineage", sc, getenv); err != nil {
		return err
	}
	return printJSON(stdout, l)
}
