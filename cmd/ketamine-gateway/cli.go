package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/conformance"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/engine"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/ingest"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/outcome"
	"github.com/ketamine-gateway/ketamine-gateway/mapping"
)

// readInput reads FILE, or standard input for "-".
func readInput(name string, stdin io.Reader) ([]byte, error) {
	if name == "-" {
		return io.ReadAll(stdin)
	}
	return os.ReadFile(name)
}

// printJSON writes v indented to w.
func printJSON(w io.Writer, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(w, "%s\n", b)
	return err
}

// printOutcome prints the OperationOutcome for err on stdout and returns the
// exit error: 1 for invalid input, the error itself for anything else.
func printOutcome(stdout io.Writer, err error) error {
	kind, issues := outcome.From(err)
	if perr := printJSON(stdout, outcome.Resource(issues)); perr != nil {
		return perr
	}
	if kind == outcome.Internal {
		return err
	}
	return &exitError{code: exitInvalid}
}

// mapCommand: map --kind KIND FILE prints the transaction Bundle (exit 0) or
// the OperationOutcome (exit 1, on stdout).
func mapCommand(args []string, getenv func(string) string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("map", flag.ContinueOnError)
	fs.SetOutput(stderr)
	kind := fs.String("kind", "", "record kind: assessment, vitals, infusion, adverse-event, session")
	base := fs.String("identifier-base", getenv("GATEWAY_IDENTIFIER_BASE"), "namespace of minted identifier systems")
	update := fs.Bool("update", false, "map as a newer version of a record already sent (conditional updates, amended)")
	if err := fs.Parse(args); err != nil {
		return &exitError{code: exitUsage}
	}
	if *kind == "" || fs.NArg() != 1 {
		return usageError("usage: ketamine-gateway map --kind KIND FILE")
	}
	doc, err := readInput(fs.Arg(0), stdin)
	if err != nil {
		return &exitError{code: exitUsage, msg: fmt.Sprintf("read %s: %v", fs.Arg(0), errors.Unwrap(err))}
	}
	p, err := ingest.NewPipeline(mapping.Options{IdentifierBase: *base, Update: *update}, nil)
	if err != nil {
		return err
	}
	res, err := p.Map(mapping.Kind(*kind), doc)
	if err != nil {
		return printOutcome(stdout, err)
	}
	bundle, err := res.Transaction()
	if err != nil {
		return err
	}
	return printJSON(stdout, bundle)
}

// validateCommand: validate FILE checks a FHIR resource or Bundle and prints
// an OperationOutcome (exit 0 when valid, 1 when not).
func validateCommand(args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("validate", flag.ContinueOnError)
	fs.SetOutput(stderr)
	if err := fs.Parse(args); err != nil {
		return &exitError{code: exitUsage}
	}
	if fs.NArg() != 1 {
		return usageError("usage: ketamine-gateway validate FILE")
	}
	doc, err := readInput(fs.Arg(0), stdin)
	if err != nil {
		return &exitError{code: exitUsage, msg: fmt.Sprintf("read %s: %v", fs.Arg(0), errors.Unwrap(err))}
	}
	if err := engine.NewValidator().Document(doc); err != nil {
		return printOutcome(stdout, err)
	}
	return printJSON(stdout, outcome.Information("the resource is valid"))
}

// codeSystemCommand prints one of the gateway's CodeSystems (--id:
// ketamine-gateway, the default, or validation-rule).
func codeSystemCommand(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("codesystem", flag.ContinueOnError)
	fs.SetOutput(stderr)
	id := fs.String("id", "ketamine-gateway", "CodeSystem id")
	if err := fs.Parse(args); err != nil {
		return &exitError{code: exitUsage}
	}
	for _, cs := range conformance.CodeSystems() {
		if cs.Id != nil && *cs.Id == *id {
			return printJSON(stdout, cs)
		}
	}
	return usageError("no CodeSystem %q", *id)
}
