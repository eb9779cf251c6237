package main

import (
	"context"
	"flag"
	"fmt"
	"io"
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
	if len(args) < 1 || args[0] != "verify" {
		return usageError("audit", "the subcommand is verify")
	}
	fs := newFlags("audit verify")
	db := dbFlag(fs, getenv)
	var anchors []auditlog.Anchor
	fs.Func("expect", "an anchor, `SEQ:HASH`, the headSeq and headHash of an earlier verification kept outside the database: "+
		"the chain must still hold that record with that hash (repeatable)", func(v string) error {
		a, err := auditlog.ParseAnchor(v)
		if err != nil {
			return err
		}
		anchors = append(anchors, a)
		return nil
	})
	pos, err := parse(fs, "audit verify", args[1:], stdout)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usageError("audit verify", "takes no arguments")
	}
	st, err := openExisting(ctx, "audit verify", *db, dbRead)
	if err != nil {
		return err
	}
	defer st.Close()
	res, err := auditlog.Verify(ctx, st, time.Now(), anchors...)
	if err != nil {
		return &exitError{code: exitUnchecked, msg: fmt.Sprintf("audit verify: could not check: %v", err)}
	}
	if err := printJSON(stdout, res); err != nil {
		return err
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
	st, err := openExisting(ctx, "lineage", *db, dbRead)
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
	return printJSON(stdout, l)
}
