package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"runtime/debug"
	"slices"
	"strings"

	"github.com/ketamine-gateway/ketamine-gateway/mapping"
)

// run is the whole program: main only wires the process's environment in.
// A command's help is no error.
func run(ctx context.Context, args []string, getenv func(string) string,
	stdin io.Reader, stdout, stderr io.Writer) error {
	err := dispatch(ctx, args, getenv, stdin, stdout, stderr)
	if errors.Is(err, errHelp) {
		return nil
	}
	return err
}

// dispatch runs the command args[1] names.
func dispatch(ctx context.Context, args []string, getenv func(string) string,
	stdin io.Reader, stdout, stderr io.Writer) error {
	if len(args) < 2 {
		return usageError("", "no command given")
	}
	cmd, rest := args[1], args[2:]
	if len(rest) > 0 && (rest[0] == "-h" || rest[0] == "--help" || rest[0] == "-help") && cmd != "deliveries" && cmd != "audit" && cmd != "jobs" && cmd != "client" && cmd != "clients" {
		// Every command's help, even before its own flags are known.
		rest = rest[:1]
	}
	switch cmd {
	case "serve":
		return serve(ctx, rest, getenv, stdout, stderr)
	case "map":
		return mapCommand(rest, getenv, stdin, stdout, stderr)
	case "validate":
		return validateCommand(rest, stdin, stdout, stderr)
	case "deliveries":
		return deliveriesCommand(ctx, rest, getenv, stdout, stderr)
	case "jobs":
		return jobsCommand(ctx, rest, getenv, stdout)
	case "audit":
		return auditCommand(ctx, rest, getenv, stdout, stderr)
	case "lineage":
		return lineageCommand(ctx, rest, getenv, stdout, stderr)
	case "import":
		return importCommand(ctx, rest, getenv, stdin, stdout, stderr)
	case "replay":
		return replayCommand(ctx, rest, getenv, stdout, stderr)
	case "reindex":
		return reindexCommand(ctx, rest, getenv, stdout, stderr)
	case "client":
		return clientCommand(ctx, rest, stdout)
	case "clients":
		return clientsCommand(rest, getenv, stdout)
	case "codesystem":
		return codeSystemCommand(rest, stdout, stderr)
	case "ig":
		return igCommand(rest, stdout, stderr)
	case "version":
		pos, err := parse(newFlags("version"), "version", rest, stdout)
		if err != nil {
			return err
		}
		if len(pos) > 0 {
			return usageError("version", "takes no arguments")
		}
		fmt.Fprintf(stdout, "ketamine-gateway %s, mapping %s\n", version(), mapping.Version)
		return nil
	case "help", "-h", "--help", "-help":
		switch {
		case len(rest) == 0, len(rest) == 1 && slices.Contains([]string{"-h", "--help", "-help", "help"}, rest[0]):
			// "help -h" (or "help help") is help's own help: the overview.
			fmt.Fprintln(stdout, topUsage())
			return nil
		case len(rest) > 1:
			return usageError("help", "give one command (help COMMAND)")
		}
		if _, ok := lookup(rest[0]); !ok {
			return unknownCommand(rest[0])
		}
		return dispatch(ctx, []string{args[0], rest[0], "-h"}, getenv, stdin, stdout, stderr)
	default:
		return unknownCommand(cmd)
	}
}

// unknownCommand is the usage error of a command name that names none.
func unknownCommand(name string) error {
	names := make([]string, len(commands))
	for i, c := range commands {
		names[i] = c.name
	}
	return usageError("", "unknown command %q; the commands are %s", name, strings.Join(names, ", "))
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
