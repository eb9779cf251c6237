package main

import (
	"bytes"
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/conformance"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/profile"
)

const igUsage = `usage: ketamine-gateway ig package -o FILE

Writes the gateway's conformance resources as a FHIR NPM package (a gzipped
tarball: package/package.json, package/.index.json and one JSON file per
resource): the StructureDefinitions of the kg-* profiles and extensions, the
ValueSets and CodeSystems, the SearchParameters, the OperationDefinition of
$validate and the ImplementationGuide. Load it into the HL7 validator (-ig
FILE) or HAPI FHIR to check resources against the gateway's profiles
(docs/conformance.md). FILE may be - for standard output.

example:
  ketamine-gateway ig package -o ketamine-gateway.fhir-2.0.0.tgz
  java -jar validator_cli.jar observation.json -version 4.0.1 -ig ketamine-gateway.fhir-2.0.0.tgz`

// igCommand is ig package: the FHIR NPM package of the conformance
// resources.
func igCommand(args []string, stdout, stderr io.Writer) error {
	if len(args) < 1 || args[0] != "package" {
		return usageError("%s", igUsage)
	}
	fs := flag.NewFlagSet("ig package", flag.ContinueOnError)
	fs.SetOutput(stderr)
	out := fs.String("o", "", "the package file to write (- for standard output)")
	fs.Usage = func() { fmt.Fprintln(stderr, igUsage) }
	if err := fs.Parse(args[1:]); err != nil {
		return &exitError{code: exitUsage}
	}
	if *out == "" || fs.NArg() > 0 {
		return usageError("%s", igUsage)
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
		return &exitError{code: exitInvalid, msg: fmt.Sprintf("ig package: %v", err)}
	}
	fmt.Fprintf(stderr, "wrote %s (%s %s, %d bytes)\n", *out, conformance.PackageName, profile.Version, buf.Len())
	return nil
}
