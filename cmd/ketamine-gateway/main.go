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
	"syscall"
)

func main() {
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
