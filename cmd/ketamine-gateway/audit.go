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

const auditUsage = `usage: ketamine-gateway audit verify [--db DB]

Checks the hash chain of the audit trail from the first record to the last
and prints the result as JSON: exit 0 when intact, exit 1 naming the first
broken link, exit 3 when the chain could not be checked at all (the database
could not be opened or read): that is no verdict, not a broken chain. Record the printed headSeq and headHash somewhere the database's
administrators cannot write (a ticket, a WORM bucket): a later verify whose
chain no longer contains that head proves the tail was cut.`

// auditCommand checks the audit chain of a database.
func auditCommand(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) < 1 || args[0] != "verify" {
		return usageError("%s", auditUsage)
	}
	fs := flag.NewFlagSet("audit verify", flag.ContinueOnError)
	fs.SetOutput(stderr)
	db := fs.String("db", envOr(getenv, "GATEWAY_DB", "ketamine-gateway.db"), "SQLite file or postgres:// URL (GATEWAY_DB)")
	if err := fs.Parse(args[1:]); err != nil {
		return &exitError{code: exitUsage}
	}
	if fs.NArg() > 0 {
		return usageError("%s", auditUsage)
	}
	st, err := openStore(ctx, *db)
	if err != nil {
		return &exitError{code: exitUnchecked, msg: fmt.Sprintf("audit verify: could not check: %v", err)}
	}
	defer st.Close()
	res, err := auditlog.Verify(ctx, st, time.Now())
	if err != nil {
		return &exitError{code: exitUnchecked, msg: fmt.Sprintf("audit verify: could not check: %v", err)}
	}
	if err := printJSON(stdout, res); err != nil {
		return err
	}
	if !res.Intact {
		return &exitError{code: exitInvalid, msg: fmt.Sprintf("audit chain broken at record %d: %s", res.BrokenAt, res.Reason)}
	}
	return nil
}

const lineageUsage = `usage: ketamine-gateway lineage [--db DB] (--source S --record ID [--kind K] | --resource Type/id | --trace TRACEID)

Prints, as JSON, the whole story of a native source record, a FHIR resource or
a trace: each receipt (time, client, trace id, content hash), the resource
versions it produced, every delivery attempt with the EHR's answer, and the
AuditEvents of the requests (docs/audit.md). The output is PHI-bearing only
as far as ids are.`

// lineageCommand is the CLI twin of GET /admin/lineage.
func lineageCommand(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("lineage", flag.ContinueOnError)
	fs.SetOutput(stderr)
	db := fs.String("db", envOr(getenv, "GATEWAY_DB", "ketamine-gateway.db"), "SQLite file or postgres:// URL (GATEWAY_DB)")
	base := fs.String("identifier-base", envOr(getenv, "GATEWAY_IDENTIFIER_BASE", ""), "the gateway's identifier base, if not the default")
	var q auditlog.LineageQuery
	fs.StringVar(&q.Source, "source", "", "the record's source system")
	fs.StringVar(&q.RecordID, "record", "", "the record's id in its source system")
	fs.StringVar(&q.Kind, "kind", "", "the record's kind (optional)")
	fs.StringVar(&q.Resource, "resource", "", "a FHIR resource, Type/id")
	fs.StringVar(&q.TraceID, "trace", "", "a trace id (32 hex digits)")
	if err := fs.Parse(args); err != nil {
		return &exitError{code: exitUsage}
	}
	if fs.NArg() > 0 {
		return usageError("%s", lineageUsage)
	}
	q.IdentifierBase = *base
	q.Tenant = search.AllTenants // the database's administrator sees every tenant
	st, err := openStore(ctx, *db)
	if err != nil {
		return &exitError{code: exitInvalid, msg: err.Error()}
	}
	defer st.Close()
	l, err := auditlog.BuildLineage(ctx, st, q)
	if err != nil {
		kind, issues := outcome.From(err)
		if kind == outcome.Invalid && len(issues) > 0 {
			return usageError("lineage: %s\n\n%s", issues[0].Message, lineageUsage)
		}
		return &exitError{code: exitInvalid, msg: fmt.Sprintf("lineage: %v", err)}
	}
	return printJSON(stdout, l)
}
