package main

import (
	"context"
	"fmt"
	"io"
	"runtime/debug"

	"github.com/ketamine-gateway/ketamine-gateway/mapping"
)

// Exit codes.
const (
	exitInvalid   = 1 // the input is not valid (map, validate, records rejected) or serving failed
	exitUsage     = 2 // the command line is wrong
	exitUnchecked = 3 // the work could not be done or checked: the database could not be opened or failed
)

// exitError carries an exit code; msg (may be empty) goes to stderr.
type exitError struct {
	code int
	msg  string
}

func (e *exitError) Error() string { return e.msg }

func usageError(format string, args ...any) error {
	return &exitError{code: exitUsage, msg: fmt.Sprintf(format, args...) + "\n" + usage}
}

const usage = `usage: ketamine-gateway <command> [flags]

commands:
  serve       run the gateway (--addr, --db; see serve -h)
  map         map a native record to a FHIR transaction Bundle: map --kind KIND FILE
  validate    validate a FHIR resource or Bundle: validate FILE
  deliveries  list, show, retry and replay deliveries to EHRs (deliveries -h)
  audit       audit verify: check the audit trail's hash chain (exit 1 when broken)
  lineage     the story of a source record, resource or trace as JSON (lineage -h)
  import      load native records in bulk, with progress and a report: import --kind KIND FILE|DIR|- (import -h)
  replay      what this mapping changes in the stored records; --apply sends the corrections (replay -h)
  codesystem  print the gateway's own CodeSystem resources
  version     print the version

FILE may be - for standard input.`

// run is the whole program: main only wires the process's environment in.
func run(ctx context.Context, args []string, getenv func(string) string,
	stdin io.Reader, stdout, stderr io.Writer) error {
	if len(args) < 2 {
		return usageError("no command given")
	}
	cmd, rest := args[1], args[2:]
	switch cmd {
	case "serve":
		return serve(ctx, rest, getenv, stdout, stderr)
	case "map":
		return mapCommand(rest, getenv, stdin, stdout, stderr)
	case "validate":
		return validateCommand(rest, stdin, stdout, stderr)
	case "deliveries":
		return deliveriesCommand(ctx, rest, getenv, stdout, stderr)
	case "audit":
		return auditCommand(ctx, rest, getenv, stdout, stderr)
	case "lineage":
		return lineageCommand(ctx, rest, getenv, stdout, stderr)
	case "import":
		return importCommand(ctx, rest, getenv, stdin, stdout, stderr)
	case "replay":
		return replayCommand(ctx, rest, getenv, stdout, stderr)
	case "codesystem":
		return codeSystemCommand(rest, stdout, stderr)
	case "version":
		fmt.Fprintf(stdout, "ketamine-gateway %s, mapping %s\n", version(), mapping.Version)
		return nil
	case "help", "-h", "--help":
		fmt.Fprintln(stdout, usage)
		return nil
	default:
		return usageError("unknown command %q", cmd)
	}
}

// version reports what the binary was built from: the module version the
// go command stamped (a release tag, or a pseudo-version from the checkout's
// revision, "+dirty" with uncommitted changes), else the VCS revision, else
// "devel" (go run, or a build with -buildvcs=false, stamps nothing).
func version() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "devel"
	}
	if v := bi.Main.Version; v != "" && v != "(devel)" {
		return v
	}
	var rev, dirty string
	for _, s := range bi.Settings {
		switch {
		case s.Key == "vcs.revision":
			rev = s.Value
		case s.Key == "vcs.modified" && s.Value == "true":
			dirty = "+dirty"
		}
	}
	if rev == "" {
		return "devel"
	}
	return "devel (revision " + rev[:min(len(rev), 12)] + dirty + ")"
}
