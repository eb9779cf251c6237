// Command ketamine-gateway is the ketamine-therapy FHIR gateway: it serves
// the HTTP API (serve) and lets developers map and validate records from the
// command line (map, validate, codesystem, version).
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"
)

func main() {
	tuneGC(os.Getenv)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args, os.Getenv, os.Stdin, os.Stdout, os.Stderr)
	stop()
	if err != nil {
		var ee *exitError
		if errors.As(err, &ee) {
			if ee.msg != "" {
				fmt.Fprintln(os.Stderr, "ketamine-gateway:", ee.msg)
			}
			os.Exit(ee.code)
		}
		// Not classified: the gateway's own failure.
		fmt.Fprintln(os.Stderr, "ketamine-gateway:", err)
		os.Exit(exitInternal)
	}
}

// defaultGCPercent is the garbage collector's heap growth target when the
// environment sets none (Go's own default is 100): the heap may grow to
// three times what is live before a collection instead of twice. Storing a
// Bundle allocates some 50 KB per resource (its decoded form, index
// entries, the bodies written), and at Go's default the collector's own
// workers took an eighth of the gateway's CPU on Synthea Bundles; at 200
// the in-process Synthea benchmark stores 10-20% more resources a second,
// for about a tenth more resident memory (docs/deployment.md, "Memory").
const defaultGCPercent = 200

// tuneGC sets defaultGCPercent unless GOGC is set (the operator's choice
// stands; GOMEMLIMIT is applied by the runtime in any case). It returns
// the percent it set, or -1.
func tuneGC(getenv func(string) string) int {
	if getenv("GOGC") != "" {
		return -1
	}
	debug.SetGCPercent(defaultGCPercent)
	return defaultGCPercent
}
