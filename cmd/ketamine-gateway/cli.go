package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"slices"
	"strings"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/conformance"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/engine"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/fhirwire"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/ingest"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/outcome"
	"github.com/ketamine-gateway/ketamine-gateway/mapping"
	"github.com/ketamine-gateway/ketamine-gateway/schemas"
)

// readInput reads FILE, or standard input for "-"; a file that cannot be
// read is a one-line usage error of command name.
func readInput(name, file string, stdin io.Reader) ([]byte, error) {
	var (
		b   []byte
		err error
	)
	if file == "-" {
		b, err = io.ReadAll(stdin)
	} else {
		b, err = os.ReadFile(file)
	}
	var pe *fs.PathError
	switch {
	case errors.As(err, &pe):
		return nil, usageError(name, "cannot read %s: %v", file, pe.Err)
	case err != nil:
		return nil, usageError(name, "cannot read %s: %v", file, err)
	}
	return b, nil
}

// printJSON writes v indented to w, as the API writes FHIR JSON: a
// resource's resourceType first, & < > unescaped.
func printJSON(w io.Writer, v any) error {
	b, err := fhirwire.MarshalIndent(v)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(w, "%s\n", b)
	return err
}

// exitCode is the exit code of a classified failure (the CLI's twin of the
// API's status).
func exitCode(kind outcome.Kind) int {
	switch kind {
	case outcome.NotFound, outcome.Gone:
		return exitNotFound
	case outcome.Conflict, outcome.PreconditionFailed:
		return exitConflict
	case outcome.Unavailable:
		return exitUnchecked
	case outcome.Internal:
		return exitInternal
	default:
		return exitInvalid
	}
}

// printOutcome prints the OperationOutcome for err on stdout and returns
// the exit error of its kind; the gateway's own failure stays an error.
func printOutcome(stdout io.Writer, err error) error {
	kind, issues := outcome.From(err)
	if perr := printJSON(stdout, outcome.Resource(issues)); perr != nil {
		return perr
	}
	if kind == outcome.Internal {
		return err
	}
	return &exitError{code: exitCode(kind)}
}

// kindNames lists the native record kinds.
func kindNames() []string {
	var out []string
	for _, k := range mapping.Kinds() {
		out = append(out, string(k))
	}
	return out
}

// mapCommand: map --kind KIND FILE prints the transaction Bundle (exit 0) or
// the OperationOutcome (exit 1, on stdout), with the verdict ingest gives
// the record (ingest.Service.DryRun): the clock and the profiles are
// checked too, the safety thresholds are --config's (--tenant's), and the
// warnings a stored record would be answered with are printed on stderr.
func mapCommand(args []string, getenv func(string) string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := newFlags("map")
	kind := fs.String("kind", "", "record kind: "+strings.Join(kindNames(), ", "))
	base := fs.String("identifier-base", getenv("GATEWAY_IDENTIFIER_BASE"), "namespace of minted identifier systems (GATEWAY_IDENTIFIER_BASE)")
	update := fs.Bool("update", false, "map as a newer version of a record already sent (conditional updates, amended)")
	configFile := fs.String("config", getenv("GATEWAY_CONFIG"), "configuration file whose safety thresholds to map with, as serve does (GATEWAY_CONFIG; docs/configuration.md)")
	tenant := fs.String("tenant", "", "map with this tenant's safety thresholds (safety.tenants of --config)")
	pos, err := parse(fs, "map", args, stdout)
	if err != nil {
		return err
	}
	switch {
	case *kind == "":
		return usageError("map", "--kind is required (%s)", strings.Join(kindNames(), ", "))
	case len(pos) != 1:
		return usageError("map", "give one FILE (or - for standard input), not %d", len(pos))
	}
	if err := oneOf("map", "kind", *kind, kindNames()); err != nil {
		return err
	}
	fc, err := readConfig(*configFile)
	if err != nil {
		return usageError("map", "%v", err)
	}
	allSafety, tenantSafety, err := safety(fc)
	if err != nil {
		return usageError("map", "%v", err)
	}
	if _, ok := tenantSafety[*tenant]; *tenant != "" && !ok {
		return usageError("map", "--tenant %s has no safety thresholds of its own in --config (safety.tenants); leave it out to map with the gateway's", *tenant)
	}
	doc, err := readInput("map", pos[0], stdin)
	if err != nil {
		return err
	}
	if err := ingest.CheckIdentifierBase(*base); err != nil {
		return usageError("map", "--identifier-base: %v", err)
	}
	p, err := ingest.NewPipeline(mapping.Options{IdentifierBase: *base, Safety: allSafety}, nil)
	if err != nil {
		return err
	}
	svc := ingest.New(ingest.Config{Pipeline: p, Safety: tenantSafety})
	v, err := svc.DryRun(context.Background(), *tenant, mapping.Kind(*kind), doc, *update)
	if err != nil {
		if slices.Contains(outcome.Rules(err), schemas.RuleAdditionalProperty) {
			// The OperationOutcome never names a stray key (it may be
			// data); the developer's own file, read here, may.
			for _, ptr := range p.UnknownProperties(mapping.Kind(*kind), doc) {
				fmt.Fprintf(stderr, "%s: the %s schema does not define the property at %s (named here only, on your "+
					"own file: the gateway's answers never repeat a property name)\n", schemas.RuleAdditionalProperty, *kind, ptr)
			}
		}
		return printOutcome(stdout, err)
	}
	for _, w := range v.Warnings {
		fmt.Fprintf(stderr, "warning %s at %s: %s\n", w.Rule, w.Pointer, w.Message)
	}
	_, err = fmt.Fprintf(stdout, "%s\n", v.Bundle)
	return err
}

// validateCommand: validate FILE checks a FHIR resource or Bundle and prints
// an OperationOutcome (exit 0 when valid, 1 when not).
func validateCommand(args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := newFlags("validate")
	pos, err := parse(fs, "validate", args, stdout)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usageError("validate", "give one FILE (or - for standard input), not %d", len(pos))
	}
	doc, err := readInput("validate", pos[0], stdin)
	if err != nil {
		return err
	}
	// The OperationOutcome POST /fhir/$validate answers: warnings and
	// information issues too (a claimed profile the gateway does not know
	// is profile.not-checked), not only the errors.
	valid, issues := engine.NewValidator().Check(doc, "")
	if len(issues) == 0 {
		return printJSON(stdout, outcome.Information("the resource is valid"))
	}
	if err := printJSON(stdout, outcome.Resource(issues)); err != nil {
		return err
	}
	if !valid {
		return &exitError{code: exitInvalid}
	}
	return nil
}

// codeSystemCommand prints one of the gateway's CodeSystems (--id:
// ketamine-gateway, the default, or validation-rule).
func codeSystemCommand(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("codesystem")
	id := fs.String("id", "ketamine-gateway", "the CodeSystem's id: "+strings.Join(conformance.CodeSystemIDs(), ", "))
	pos, err := parse(fs, "codesystem", args, stdout)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usageError("codesystem", "takes no arguments (use --id)")
	}
	if err := oneOf("codesystem", "CodeSystem id", *id, conformance.CodeSystemIDs()); err != nil {
		return err
	}
	for _, cs := range conformance.CodeSystems() {
		if cs.Id != nil && *cs.Id == *id {
			return printJSON(stdout, cs)
		}
	}
	return nil
}

// outcomeOf classifies err and returns its issues' messages.
func outcomeOf(err error) (outcome.Kind, []string) {
	kind, issues := outcome.From(err)
	msgs := make([]string, 0, len(issues))
	for _, i := range issues {
		msgs = append(msgs, i.Message)
	}
	return kind, msgs
}
