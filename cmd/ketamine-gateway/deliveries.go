package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/operator"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
)

const deliveriesUsage = `usage: ketamine-gateway deliveries <list|show|retry|replay> [flags]

  list    [--status S] [--destination D] [--patient P] [--since T] [--until T] [--limit N]
  show    ID [--payload]
  retry   ID                      put a dead letter back in the queue
  replay  --destination D --since T   deliver again everything since T

All take --db (GATEWAY_DB). Times are RFC 3339. Output is JSON.`

// deliveriesCommand is the operator CLI over the database's outbox, the
// equivalent of the /admin/deliveries API.
func deliveriesCommand(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) < 1 {
		return usageError("%s", deliveriesUsage)
	}
	sub, args := args[0], args[1:]
	fs := flag.NewFlagSet("deliveries "+sub, flag.ContinueOnError)
	fs.SetOutput(stderr)
	db := fs.String("db", envOr(getenv, "GATEWAY_DB", "ketamine-gateway.db"), "SQLite file or postgres:// URL (GATEWAY_DB)")
	var f store.DeliveryFilter
	var since, until string
	fs.StringVar(&f.Status, "status", "", "pending, inflight, done or dead")
	fs.StringVar(&f.Destination, "destination", "", "destination name")
	fs.StringVar(&f.Patient, "patient", "", "patient key (source|clinic patient id)")
	fs.StringVar(&since, "since", "", "RFC 3339 time")
	fs.StringVar(&until, "until", "", "RFC 3339 time")
	fs.IntVar(&f.Limit, "limit", 100, "at most this many")
	payload := fs.Bool("payload", false, "show the FHIR payload (PHI)")
	// Flags may follow the positional id.
	var pos []string
	for len(args) > 0 {
		if err := fs.Parse(args); err != nil {
			return &exitError{code: exitUsage}
		}
		if fs.NArg() == 0 {
			break
		}
		pos, args = append(pos, fs.Arg(0)), fs.Args()[1:]
	}
	var err error
	if f.Since, err = parseTimeFlag(since); err != nil {
		return usageError("--since: %v", err)
	}
	if f.Until, err = parseTimeFlag(until); err != nil {
		return usageError("--until: %v", err)
	}
	st, err := openStore(ctx, *db)
	if err != nil {
		return &exitError{code: exitInvalid, msg: err.Error()}
	}
	defer st.Close()
	ob := st
	id := func() (int64, error) {
		if len(pos) != 1 {
			return 0, usageError("%s needs one delivery id", sub)
		}
		n, err := strconv.ParseInt(pos[0], 10, 64)
		if err != nil {
			return 0, usageError("delivery id must be a number")
		}
		return n, nil
	}
	switch sub {
	case "list":
		items, err := ob.Deliveries(ctx, f)
		if err != nil {
			return err
		}
		out := make([]operator.View, 0, len(items))
		for _, it := range items {
			out = append(out, operator.NewView(it, nil, false))
		}
		return printJSON(stdout, map[string]any{"deliveries": out})
	case "show":
		n, err := id()
		if err != nil {
			return err
		}
		it, attempts, err := ob.Delivery(ctx, n)
		if errors.Is(err, store.ErrNotFound) {
			return &exitError{code: exitInvalid, msg: fmt.Sprintf("no delivery %d", n)}
		} else if err != nil {
			return err
		}
		return printJSON(stdout, operator.NewView(it, attempts, *payload))
	case "retry":
		n, err := id()
		if err != nil {
			return err
		}
		if err := ob.Retry(ctx, n, time.Now()); errors.Is(err, store.ErrNotFound) {
			return &exitError{code: exitInvalid, msg: fmt.Sprintf("delivery %d is not a dead letter", n)}
		} else if err != nil {
			return err
		}
		return printJSON(stdout, map[string]any{"id": n, "status": store.StatusPending})
	case "replay":
		if f.Destination == "" || f.Since.IsZero() {
			return usageError("replay needs --destination and --since")
		}
		n, err := ob.Replay(ctx, f.Destination, f.Since, time.Now())
		if err != nil {
			return err
		}
		return printJSON(stdout, map[string]any{"destination": f.Destination, "replayed": n})
	default:
		return usageError("%s", deliveriesUsage)
	}
}

func parseTimeFlag(v string) (time.Time, error) {
	if v == "" {
		return time.Time{}, nil
	}
	return time.Parse(time.RFC3339Nano, v)
}
