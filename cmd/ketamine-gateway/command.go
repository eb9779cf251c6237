package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/operator"
)

// Exit codes, the same for every command (README, "Exit status"), and the
// API status each stands for.
const (
	exitOK        = 0  // done; a check's verdict is yes                     (2xx)
	exitInvalid   = 1  // the verdict is no: invalid input, a broken chain    (400, 422)
	exitUsage     = 2  // the command line is wrong                          (-)
	exitUnchecked = 3  // could not check: no database there, unreachable    (503)
	exitNotFound  = 4  // no such delivery, record or resource               (404)
	exitConflict  = 5  // the state forbids it: retry of a non-dead letter   (409)
	exitInternal  = 70 // the gateway failed (EX_SOFTWARE)                   (500)
)

// exitError carries an exit code; msg (may be empty) goes to stderr.
type exitError struct {
	code int
	msg  string
}

func (e *exitError) Error() string { return e.msg }

// command is one CLI command as its help shows it.
type command struct {
	name     string
	summary  string // one line
	usage    string // the synopsis after "ketamine-gateway "
	detail   string // what it prints and its exit codes (may be empty)
	examples []string
}

// commands is the CLI on one page, in the order the help lists them.
var commands = []command{
	{name: "serve", summary: "run the gateway's HTTP API (and the console) on a database",
		usage: "serve [--addr HOST:PORT] [--db FILE_OR_URL] [--config FILE] [flags]",
		detail: "Listens on --addr (a loopback address unless authentication is configured) and serves until\n" +
			"interrupted. The database is created and migrated when needed. See docs/configuration.md.",
		examples: []string{"ketamine-gateway serve", "ketamine-gateway serve --config /etc/ketamine-gateway/config.json --db postgres://kg@db/kg"}},
	{name: "map", summary: "map a native record to its FHIR transaction Bundle, offline",
		usage: "map --kind KIND [--update] [--config FILE [--tenant T]] FILE",
		detail: "Prints the Bundle (exit 0), or the OperationOutcome naming each rule broken (exit 1), on stdout:\n" +
			"the verdict POST /ingest/{kind}?dryRun=true gives (the clock and the profiles checked too), with\n" +
			"the record's warnings on stderr and --config's safety thresholds. FILE may be - for standard input.",
		examples: []string{"ketamine-gateway map --kind session schemas/examples/session/routine-ketamine-iv-session.json"}},
	{name: "validate", summary: "validate a FHIR R4 resource or Bundle, offline",
		usage: "validate FILE",
		detail: "Prints an OperationOutcome, as POST /fhir/$validate answers without a profile parameter: the\n" +
			"profiles the resource (and each entry) claims are checked; to check one it does not claim, use\n" +
			"$validate?profile= on a running gateway. Exit 0 valid, 1 invalid. FILE may be - for standard input.",
		examples: []string{"ketamine-gateway validate mapping/testdata/session/iv-routine.golden.json"}},
	{name: "deliveries", summary: "list, show, retry, cancel and replay deliveries to EHRs, on the database",
		usage: "deliveries list|show|retry|cancel|replay [flags] [ID]",
		detail: "  list    [--status S] [--destination D] [--patient P] [--source SYS] [--kind K] [--record ID]\n" +
			"          [--since T] [--until T] [--limit N]   newest first; a withdrawal is marked \"withdrawal\": true\n" +
			"  show    ID [--payload]\n" +
			"  retry   ID                          put a dead letter back in the queue (or make a pending one due now)\n" +
			"  cancel  ID --reason TEXT            make a pending delivery or a dead letter a dead letter that is\n" +
			"                                      never sent, so the record's later versions go\n" +
			"  replay  --destination D --since T   deliver again everything since T\n" +
			"ID is a delivery's id as list shows it (13 letters and digits, e.g. k7q2xw4mbn3ra), the id the API and\n" +
			"the console show. Times are RFC 3339 (2026-12-01T08:00:00Z) or relative to now (90m, 24h, 7d). Output is JSON.",
		examples: []string{"ketamine-gateway deliveries list --status dead", "ketamine-gateway deliveries show k7q2xw4mbn3ra",
			"ketamine-gateway deliveries list --source serenity-clinic-emr --record SES-2026-0302-001",
			"ketamine-gateway deliveries cancel k7q2xw4mbn3ra --reason 'EHR refuses this version; corrected in v2'",
			"ketamine-gateway deliveries replay --destination ehr --since 24h"}},
	{name: "jobs", summary: "list the background jobs of every client, and cancel any of them, on the database",
		usage: "jobs list|cancel [flags] [ID]",
		detail: "  list    [--tenant T] [--owner CLIENT] [--kind K] [--status S] [--limit N]\n" +
			"  cancel  ID                          cancel a job whoever owns it, and delete its files\n" +
			"The jobs are the exports, imports, mapping replays and reindexes clients and console people asked for\n" +
			"(docs/bulk.md, Jobs): list shows each job's owner, tenant, status and progress (never its request or\n" +
			"result), newest first. A client cancels only its own jobs (DELETE /jobs/{id}); cancel is the\n" +
			"administrator's way to stop any, such as the import of a client that was removed (the serve process\n" +
			"running the job notices within a second and stops after the records it is storing; what it stored\n" +
			"stays).\n" +
			"Output is JSON. Exit status: 0 done, 2 usage, 3 no database there, 4 no such job, or cancelled already.",
		examples: []string{"ketamine-gateway jobs list --status running",
			"ketamine-gateway jobs list --owner clinicA-emr --kind import",
			"ketamine-gateway jobs cancel 01a24796c7858ef562a3dcb870371555"}},
	{name: "audit", summary: "check the audit trail's hash chain and the receipts and delivery attempts it vouches for",
		usage: "audit verify [--db FILE_OR_URL] [--from SEQ:HASH|@FILE] [--expect SEQ:HASH]... | audit export [--db FILE_OR_URL] [--since T] [--until T] [--out FILE] | audit verify-export [--expect SEQ:HASH]... FILE",
		detail: "Prints the result as JSON: exit 0 intact, exit 1 naming the first broken link or finding, exit 3\n" +
			"when the chain could not be checked (no database there, or it could not be read).\n" +
			"Besides the chain and how the AuditEvents are served, it checks the lineage beside the chain against\n" +
			"the chained AuditEvents that wrote it: each receipt (the Provenance an ingest, a Bundle or a replay\n" +
			"wrote: the SHA-256 of its stored JSON) and each delivery attempt (the EHR's HTTP status, the SHA-256\n" +
			"of its answer and of the payload sent, the error, the time). One stored otherwise is a finding naming\n" +
			"the AuditEvent (seq, id), the record and what differs. \"lineage\" counts what was checked, and as\n" +
			"\"unchecked\" what an older gateway's AuditEvents name without hashes (with a note on stderr).\n" +
			"The other way round, every receipt and delivery attempt stored must be named by a chained\n" +
			"AuditEvent: one that none names is a finding (the chain lost its AuditEvent: its tail cut), and so\n" +
			"is a record version the ledger holds whose receipt no chained AuditEvent names (the receipt deleted too).\n" +
			"Record the printed headSeq and headHash where the database's administrators cannot write, and give\n" +
			"them to a later verify as --expect headSeq:headHash: whoever can write the database can rewrite a\n" +
			"record and compute every later hash again, which only such an anchor shows (exit 1, the anchor not\n" +
			"held).\n" +
			"--from headSeq:headHash (or @verify.json, a verification saved with its head) verifies only from that\n" +
			"earlier head on, in time proportional to the records appended since: the chain must still hold that\n" +
			"record with that hash (else exit 1, nothing else checked); the records before it are not checked now,\n" +
			"the earlier verification vouches for them (stderr says so). Without it the whole chain is walked.\n" +
			"A walk (verify, export) of more than a few seconds shows its progress on stderr.\n" +
			"export writes the chain's records for a period (by recorded time; the slice is contiguous) as NDJSON,\n" +
			"each with its seq, prev and hash and its stored JSON as hashed, then a manifest line with the hash of\n" +
			"the record before the first and the chain head; verify-export checks such a file without the database\n" +
			"(exit 0 it links and holds the anchors given, one at least; 1 it does not link, an anchor is not\n" +
			"held, or none was given: without an anchor it prints \"intact\" but proves only that the file is\n" +
			"consistent with itself; 3 it could not be read). See docs/audit.md.",
		examples: []string{"ketamine-gateway audit verify",
			"ketamine-gateway audit verify --expect 166:c251ac437b85e72722c206a2c2430320d7d10c23e9ad1b4cad14157adf15d48f",
			"ketamine-gateway audit verify --from @audit-verify-2026-11.json",
			"ketamine-gateway audit export --since 2026-11-01 --until 2026-12-01 --out audit-2026-11.ndjson",
			"ketamine-gateway audit verify-export --expect 166:c251ac437b85e72722c206a2c2430320d7d10c23e9ad1b4cad14157adf15d48f audit-2026-11.ndjson"}},
	{name: "lineage", summary: "the story of a source record, resource or trace, as JSON",
		usage: "lineage [--db FILE_OR_URL] [--tenant T] (--source S --record ID [--kind K] | --resource Type/id | --trace TRACEID)",
		detail: "Each receipt (time, client, trace id, content hash), the resource versions it produced, every\n" +
			"delivery attempt with the EHR's answer, and the requests' AuditEvents (docs/audit.md). Without\n" +
			"--tenant the story spans every tenant (a record id two clinics share gives a receipt of each, each\n" +
			"naming its tenant); --tenant \"\" is the default tenant's alone.",
		examples: []string{"ketamine-gateway lineage --source serenity-clinic-emr --record INF-2026-0310-001",
			"ketamine-gateway lineage --tenant clinic-a --resource Observation/6231b0218d2d43adb0a6f46054209d61"}},
	{name: "import", summary: "load a clinic's history of native records, with progress and a report",
		usage: "import --kind KIND [--db FILE_OR_URL] [--tenant T [--new-tenant]] [--deliver [--config FILE]] [--report FILE] [--workers N] FILE|DIR|-",
		detail: "Loads native records of one kind through the same checks as POST /ingest/{kind} (schemas, clinical\n" +
			"rules, the ledger, Provenance, an AuditEvent per record): FILE holds one record per line (NDJSON), DIR a\n" +
			"record per *.json file (in name order), - reads NDJSON from standard input (as it comes, as FILE a named\n" +
			"pipe or <(...) is read). Progress goes to standard error; a summary to standard output; every rejected\n" +
			"record is listed in the report (NDJSON: its line or file, HTTP status, rule ids and pointers, never a\n" +
			"value). Run it again after an interruption: records already stored are recognised by the ledger and\n" +
			"change nothing. History is not sent to EHRs unless --deliver (then to the destinations of --config).\n" +
			"The database is created when needed. The tenant is checked: against the clients of --config, or without\n" +
			"one against the tenants the database holds (a misspelt --tenant, or none, in a database of named tenants'\n" +
			"records is exit 2, listing them; --new-tenant for a tenant's first records).\n" +
			"Exit status: 0 every record stored, 1 some rejected (see the report), 2 usage, 3 the database could not\n" +
			"be opened or failed, or the import was interrupted (run it again to continue). See docs/bulk.md.",
		examples: []string{"ketamine-gateway import --kind session --tenant clinic-a sessions.ndjson"}},
	{name: "replay", summary: "what this binary's mapping changes in the stored records; --apply writes and sends the corrections",
		usage: "replay [--db FILE_OR_URL] [--kind K] [--since T] [--tenant T] [--source S] [--apply --reason TEXT ([--config FILE] [--ehr-url URL] | --no-config)] [--show-values] [--downgrade] [--json]",
		detail: "Maps every stored native record (the latest version of each) again with this binary's mapping, without\n" +
			"writing, and reports per record: unchanged, changed (the element paths added, removed and changed; values\n" +
			"only with --show-values, which prints PHI), refused now (rule ids and pointers), diverged (differences left\n" +
			"alone) or no input (stored before inputs were kept). A summary groups the records by change; a table, or\n" +
			"JSON with --json; progress on standard error. --apply writes the changed resources as new versions\n" +
			"(Observations corrected) with a Provenance naming both mapping versions and --reason, and enqueues a\n" +
			"correction for each destination of --config that had the record; a second run changes nothing.\n" +
			"Exit status: 0 nothing (left) to change, also when no record matches; 1 records would change (dry run) or\n" +
			"are refused, diverged or in conflict; 2 usage, an unknown kind or tenant; 3 no database there, or it\n" +
			"failed. See docs/mapping.md §10.",
		examples: []string{"ketamine-gateway replay --kind session --since 2026-01-01T00:00:00Z",
			`ketamine-gateway replay --kind session --apply --reason "display of LOINC 8867-4 fixed" --config gw.json`}},
	{name: "reindex", summary: "rebuild the search index from the stored resources, after an upgrade that changed it",
		usage: "reindex [--db FILE_OR_URL] [--type TYPE] [--tenant T] [--dry-run] [--batch N]",
		detail: "Extracts the search index entries of every current resource from its stored body, as this build does on\n" +
			"write, and rewrites the rows of those whose stored rows differ (rows written by an older build, or by a\n" +
			"migration that could not extract them), a batch per write transaction; the others are only read. Safe\n" +
			"while a gateway serves the same database: a resource written meanwhile keeps its writer's rows. Progress\n" +
			"on standard error; the counts (by type) as JSON on standard output. docs/deployment.md says which upgrades\n" +
			"need it. A resource whose stored body cannot be read is left as it is and named in \"unreadable\". A pass\n" +
			"over every type of every tenant records this build's index version (serve warns while it is older).\n" +
			"POST /admin/reindex runs the same pass as a job.\n" +
			"Exit status: 0 done (with --dry-run: nothing to change), 1 --dry-run found rows to change, or a stored body\n" +
			"could not be read, 2 usage (also a --tenant that holds no resource), 3 no database there, it could not be\n" +
			"reached, or interrupted (run it again).",
		examples: []string{"ketamine-gateway reindex --dry-run", "ketamine-gateway reindex --db postgres://kg@db/kg --type Observation"}},
	{name: "client", summary: "make a SMART client's key pair and JWKS, and get an access token with it",
		usage: "client keygen --out FILE --jwks FILE [--kid K] | client token --key FILE --client-id ID --token-url URL [--scope S] [--kid K] [--bare | --assertion-only] [--timeout D]",
		detail: "  keygen  --out FILE --jwks FILE      a new EC P-384 key (ES384): the private key as PKCS #8 PEM (mode 0600)\n" +
			"                                      and its public key as a JWKS to register in auth.clients (jwksFile);\n" +
			"                                      kid is the key's JWK thumbprint (RFC 7638); no file is overwritten\n" +
			"  token   --key FILE --client-id ID --token-url URL [--scope S]\n" +
			"                                      signs a client assertion (iss = sub = ID, aud = URL, exp in 4 minutes, a\n" +
			"                                      new jti) and posts a client_credentials request with it (client_assertion_type\n" +
			"                                      urn:ietf:params:oauth:client-assertion-type:jwt-bearer), as SMART Backend\n" +
			"                                      Services does; prints the token response JSON (--bare: the access token only)\n" +
			"Use the token as Authorization: Bearer TOKEN; it lasts the gateway's tokenTTL (at most 5 minutes), then ask\n" +
			"again. See docs/security.md, \"Your first token\".\n" +
			"Exit status: 0 done, 1 the token endpoint refused (its error and what to check on stderr), 2 usage (a key that\n" +
			"cannot be read or used), 3 the token endpoint could not be reached or answered no token.",
		examples: []string{"ketamine-gateway client keygen --out client.key --jwks client.jwks",
			"ketamine-gateway client token --key client.key --client-id my-emr --token-url http://127.0.0.1:8080/auth/token --scope 'system/*.rs'",
			"curl -H \"Authorization: Bearer $(ketamine-gateway client token --bare --key client.key --client-id my-emr --token-url http://127.0.0.1:8080/auth/token)\" http://127.0.0.1:8080/fhir/Patient"}},
	{name: "clients", summary: "the access review: the registered clients, their tenants, scopes and key ids",
		usage: "clients list --config FILE",
		detail: "Prints, as JSON, each client the configuration registers (auth.clients: id, tenant, scopes, key ids)\n" +
			"and each external issuer (issuer, JWKS URL, scopes, tenants), as serve would load them, never a key.\n" +
			"GET /admin/clients answers the same to an auditor (a clinic's: its clinic's clients). See\n" +
			"docs/security.md, \"Access review\". Exit status: 0 listed, 2 usage or a configuration serve would refuse.",
		examples: []string{"ketamine-gateway clients list --config /etc/ketamine-gateway/config.json"}},
	{name: "codesystem", summary: "print one of the gateway's own CodeSystem resources",
		usage:    "codesystem [--id ID]",
		examples: []string{"ketamine-gateway codesystem --id validation-rule"}},
	{name: "ig", summary: "write the gateway's conformance resources as a FHIR NPM package",
		usage: "ig package -o FILE",
		detail: "The StructureDefinitions of the kg-* profiles and extensions, the ValueSets and CodeSystems, the\n" +
			"SearchParameters, the OperationDefinition of $validate and the ImplementationGuide, as a gzipped tarball\n" +
			"(package/package.json, package/.index.json, one JSON file per resource) for the HL7 validator (-ig FILE)\n" +
			"or HAPI FHIR (docs/conformance.md). FILE may be - for standard output.",
		examples: []string{"ketamine-gateway ig package -o ketamine-gateway.fhir.tgz"}},
	{name: "version", summary: "print the build's version and the mapping version", usage: "version",
		examples: []string{"ketamine-gateway version"}},
}

// lookup returns the command named name.
func lookup(name string) (command, bool) {
	for _, c := range commands {
		if c.name == name {
			return c, true
		}
	}
	return command{}, false
}

// topUsage is the top-level help.
func topUsage() string {
	var b strings.Builder
	b.WriteString("usage: ketamine-gateway <command> [flags]\n\ncommands:\n")
	for _, c := range commands {
		fmt.Fprintf(&b, "  %-11s %s\n", c.name, c.summary)
	}
	b.WriteString("\nEach command has its own help: ketamine-gateway <command> -h\n")
	b.WriteString("Exit status: 0 done, 1 the verdict is no, 2 usage, 3 could not check, 4 not found, 5 conflict,\n" +
		"70 the gateway failed.")
	return b.String()
}

// usageError is a one-line complaint about command name's command line,
// pointing to its help ("" for the top level).
func usageError(name, format string, args ...any) error {
	msg := fmt.Sprintf(format, args...)
	if name == "" {
		return &exitError{code: exitUsage, msg: msg + "; see 'ketamine-gateway -h'"}
	}
	top, _, _ := strings.Cut(name, " ")
	return &exitError{code: exitUsage, msg: name + ": " + msg + "; see 'ketamine-gateway " + top + " -h'"}
}

// errHelp is returned by parse after printing a command's help: exit 0.
var errHelp = errors.New("help printed")

// newFlags returns a flag set for command name whose errors and help parse
// reports (it prints nothing by itself).
func newFlags(name string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	return fs
}

// parse parses args with fs, flags before, between and after the
// positional arguments (a "--" ends the flags), and returns the positional
// arguments. -h prints the help of command name to stdout and returns
// errHelp; a bad flag is a one-line usage error.
func parse(fs *flag.FlagSet, name string, args []string, stdout io.Writer) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				printHelp(stdout, fs, name)
				return nil, errHelp
			}
			return nil, usageError(name, "%v", err)
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return pos, nil
		}
		if len(args) > 0 && len(rest) < len(args) && args[len(args)-len(rest)-1] == "--" {
			return append(pos, rest...), nil // everything after "--" is positional
		}
		pos, args = append(pos, rest[0]), rest[1:]
	}
}

// printHelp writes command name's help: its synopsis, summary and detail,
// every flag with its default, and examples.
func printHelp(w io.Writer, fs *flag.FlagSet, name string) {
	top, _, _ := strings.Cut(name, " ")
	c, _ := lookup(top)
	fmt.Fprintf(w, "usage: ketamine-gateway %s\n\n%s.\n", c.usage, upperFirst(c.summary))
	if c.detail != "" {
		fmt.Fprintf(w, "\n%s\n", c.detail)
	}
	var flags []string
	fs.VisitAll(func(f *flag.Flag) {
		arg, usage := flag.UnquoteUsage(f)
		line := "  --" + f.Name
		if len(f.Name) == 1 {
			line = "  -" + f.Name // a one-letter flag, as its usage writes it (ig package -o FILE)
		}
		if arg != "" {
			line += " " + arg
		}
		line += "\n        " + usage
		if def := f.DefValue; def != "" && def != "0" && def != "false" && def != "-1" && !strings.Contains(usage, "default") {
			line += " (default " + def + ")"
		}
		flags = append(flags, line)
	})
	if len(flags) > 0 {
		sort.Strings(flags)
		fmt.Fprintf(w, "\nflags:\n%s\n", strings.Join(flags, "\n"))
	}
	if len(c.examples) > 0 {
		fmt.Fprintf(w, "\nexample:\n")
		for _, e := range c.examples {
			fmt.Fprintf(w, "  %s\n", e)
		}
	}
}

func upperFirst(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}

// oneOf checks a flag's value against the valid ones, listing them when it
// is not one.
func oneOf(name, flagName, v string, valid []string) error {
	for _, ok := range valid {
		if v == ok {
			return nil
		}
	}
	return usageError(name, "unknown %s %q; valid: %s", flagName, v, strings.Join(valid, ", "))
}

// parseTimeFlag reads a time flag as the admin API reads its time
// parameters (operator.ParseTime): RFC 3339, a date meaning its midnight
// UTC, or a duration before now (90m, 24h, 7d).
func parseTimeFlag(v string, now time.Time) (time.Time, error) {
	if v == "" {
		return time.Time{}, nil
	}
	if t, ok := operator.ParseTime(v, now); ok {
		return t, nil
	}
	return time.Time{}, fmt.Errorf("%q is not a time: use %s", v, operator.TimeHelp)
}
