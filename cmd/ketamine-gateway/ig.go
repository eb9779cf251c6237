package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/conformance"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/profile"
)

// igCommand is ig package: the FHIR NPM package of the conformance
// resources.
func igCommand(args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 && (args[0] == "-h" || args[0] == "--help" || args[0] == "-help") {
		args = []string{"package", "-h"}
	}
	if len(args) < 1 || args[0] != "package" {
		return usageError("ig", "the subcommand is package")
	}
	fs := newFlags("ig package")
	out := fs.String("o", "", "the package `FILE` to write (- for standard output)")
	pos, err := parse(fs, "ig package", args[1:], stdout)
	if err != nil {
		return err
	}
	switch {
	case *out == "":
		return usageError("ig package", "-o FILE is required (- for standard output)")
	case len(pos) > 0:
		return usageError("ig package", "takes no arguments")
	}
	p, err := profile.New()
	if err != nil {
		return err
	}
	var buf bytes.Buffer
	if err := conformance.WritePackage(&buf, p); err != nil {
		return err
	}
	if *out == "-" {
		_, err := stdout.Write(buf.Bytes())
		return err
	}
	if err := os.WriteFile(*out, buf.Bytes(), 0o644); err != nil {
		return usageError("ig package", "cannot write %s: %v", *out, errors.Unwrap(err))
	}
	fmt.Fprintf(stderr, "wrote %s (%s %s, %d bytes)\n", *out, conformance.PackageName, profile.Version, buf.Len())
	return nil
}
