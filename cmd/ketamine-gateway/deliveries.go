package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/auditlog"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/operator"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/outcome"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/search"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
)

var deliverySubcommands = []string{"list", "show", "retry", "cancel", "replay"}

// deliveriesCommand is the operator CLI over the database's outbox, the
// twin of the /admin/deliveries API, with the same outcomes (exit 4 for a
// delivery that does not exist, 5 for a retry of one that is not a dead
// letter or pending, or a cancel of one in flight or delivered).
func deliveriesCommand(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) < 1 || args[0] == "-h" || args[0] == "--help" || args[0] == "-help" {
		if len(args) == 1 {
			fs, _ := deliveryFlags("deliveries", getenv)
			printHelp(stdout, fs, "deliveries")
			return errHelp
		}
		return usageError("deliveries", "give a subcommand: %s", strings.Join(deliverySubcommands, ", "))
	}
	sub, args := args[0], args[1:]
	if err := oneOf("deliveries", "subcommand", sub, deliverySubcommands); err != nil {
		return err
	}
	name := "deliveries " + sub
	fs, d := deliveryFlags(name, getenv)
	db, f, payload := d.db, &d.filter, d.payload
	since, until := &d.since, &d.until
	pos, err := parse(fs, name, args, stdout)
	if err != nil {
		return err
	}
	now := time.Now()
	if f.Since, err = parseTimeFlag(*since, now); err != nil {
		return usageError(name, "--since: %v", err)
	}
	if f.Until, err = parseTimeFlag(*until, now); err != nil {
		return usageError(name, "--until: %v", err)
	}
	if f.Limit < 1 {
		f.Limit = -1 // 0 is the default for the API; here it is out of range
	}
	if err := operator.CheckValues(*f); err != nil {
		return opError(name, err)
	}
	if (sub == "list" || sub == "replay") && len(pos) > 0 {
		return usageError(name, "takes no arguments")
	}
	if sub == "replay" && (f.Destination == "" || f.Since.IsZero()) {
		return usageError(name, "needs --destination and --since")
	}
	var id string // a delivery's public id, as the list shows it (not the row's number)
	if sub == "cancel" {
		if err := operator.CheckCancelReason(*d.reason); err != nil {
			_, issues := outcomeOf(err)
			return usageError(name, "--%s", issues[0])
		}
	}
	if sub == "show" || sub == "retry" || sub == "cancel" {
		if len(pos) != 1 {
			return usageError(name, "give one delivery id (as deliveries list shows it)")
		}
		id = pos[0]
	}
	// dbWrite: every subcommand writes (list and show their AuditEvent).
	st, err := openExisting(ctx, name, *db, dbWrite)
	if err != nil {
		return err
	}
	defer st.Close()
	// The database's administrator acts for every tenant.
	ops := operator.New(st, nil, nil, time.Now) // List and Replay check the filter
	switch sub {
	case "list":
		out, err := ops.List(ctx, search.AllTenants, *f)
		if err != nil {
			return opError(name, err)
		}
		// Its AuditEvent is GET /admin/deliveries's (delivery-list).
		sc := cliScope("deliveries", "delivery-list")
		if err := nameDisclosed(ctx, st, name, sc, getenv, func(base string) error {
			return auditlog.NameDeliveryList(ctx, st, sc, base, search.AllTenants, *f, out)
		}); err != nil {
			return err
		}
		return printJSON(stdout, map[string]any{"deliveries": out})
	case "show":
		v, err := ops.Show(ctx, search.AllTenants, id, *payload)
		if err != nil {
			return opError(name, err)
		}
		// Its AuditEvent is GET /admin/deliveries/{id}'s (delivery-read),
		// which says whether the payload was disclosed.
		shown := auditlog.ShownSummary
		if *payload {
			shown = auditlog.ShownPayload
		}
		sc := cliScope("deliveries", "delivery-read")
		if err := nameDisclosed(ctx, st, name, sc, getenv, func(base string) error {
			return auditlog.NameDelivery(ctx, st, sc, base, v, shown)
		}); err != nil {
			return err
		}
		return printJSON(stdout, v)
	case "retry":
		// The database's administrator retries it as its tenant (the
		// operator service lets no caller acting for every tenant change
		// one). Its AuditEvent is POST /admin/deliveries/{id}/retry's.
		v, err := ops.Show(ctx, search.AllTenants, id, false)
		if err != nil {
			return opError(name, err)
		}
		waitingFor, err := ops.Retry(ctx, v.Tenant, id)
		if err != nil {
			return opError(name, err)
		}
		sc := cliScope("deliveries", "delivery-retry")
		desc := fmt.Sprintf("delivery %s queued again", v.ID)
		if waitingFor != "" {
			desc += "; it waits for delivery " + waitingFor
		}
		if err := nameChange(ctx, st, name, sc, getenv, v, desc); err != nil {
			return err
		}
		answer := map[string]any{"id": id, "status": store.StatusPending}
		if waitingFor != "" {
			answer["waitingFor"] = waitingFor
			answer["message"] = operator.WaitingMessage(waitingFor)
		}
		return printJSON(stdout, answer)
	case "cancel":
		// As retry; its AuditEvent is POST /admin/deliveries/{id}/cancel's.
		v, err := ops.Show(ctx, search.AllTenants, id, false)
		if err != nil {
			return opError(name, err)
		}
		last, err := ops.Cancel(ctx, v.Tenant, id, *d.reason)
		if err != nil {
			return opError(name, err)
		}
		sc := cliScope("deliveries", "delivery-cancel")
		if err := nameChange(ctx, st, name, sc, getenv, v, fmt.Sprintf("delivery %s cancelled (the reason is recorded with the delivery)", v.ID)); err != nil {
			return err
		}
		return printJSON(stdout, map[string]any{"id": id, "status": store.StatusDead, "lastError": last})
	default: // replay
		replayed, err := ops.Replay(ctx, search.AllTenants, f.Destination, f.Since)
		if err != nil {
			return opError(name, err)
		}
		// Its AuditEvent is POST /admin/deliveries/replay's.
		sc := cliScope("deliveries", "delivery-replay")
		sc.Description = "delivery replay: " + auditlog.CountedAs(replayed, "delivery", "deliveries") + " queued again"
		if err := recordCLIChange(st, name, sc, getenv); err != nil {
			return err
		}
		return printJSON(stdout, map[string]any{"destination": f.Destination, "since": f.Since, "replayed": replayed})
	}
}

// nameDisclosed records, in sc, what command name is about to show (named,
// given the database's identifier base) and commits its AuditEvent
// (recordCLI) before anything is shown.
func nameDisclosed(ctx context.Context, st store.Store, name string, sc *auditlog.Scope, getenv func(string) string, named func(base string) error) error {
	base, err := identifierBase(ctx, name, st, "")
	if err != nil {
		return err
	}
	if err := named(base); err != nil {
		return auditFailed(name, err)
	}
	return recordCLI(st, name, sc, getenv)
}

// nameChange records, in sc, the delivery v a retry or cancel changed, as
// its API twin names it (the delivery, its source record, Provenance and
// patient), with the description desc, and commits its AuditEvent: a
// failure of either is changeAuditFailed, as recordCLIChange's.
func nameChange(ctx context.Context, st store.Store, name string, sc *auditlog.Scope, getenv func(string) string, v operator.View, desc string) error {
	base, err := identifierBase(ctx, name, st, "")
	if err == nil {
		err = auditlog.NameDelivery(ctx, st, sc, base, v, auditlog.ShownSummary)
	}
	if err == nil {
		sc.Description = desc
		err = appendCLI(st, sc, getenv)
	}
	return changeAuditFailed(name, err)
}

// deliveryArgs are the flags of the deliveries subcommands.
type deliveryArgs struct {
	db           *string
	filter       store.DeliveryFilter
	since, until string
	payload      *bool
	reason       *string
}

// deliveryFlags are the flags of the deliveries subcommands (one set: a
// subcommand ignores those it does not use), for parsing and for help.
func deliveryFlags(name string, getenv func(string) string) (*flag.FlagSet, *deliveryArgs) {
	fs := newFlags(name)
	d := &deliveryArgs{db: dbFlag(fs, getenv)}
	fs.StringVar(&d.filter.Status, "status", "", "list: one of "+strings.Join(operator.Statuses, ", "))
	fs.StringVar(&d.filter.Destination, "destination", "", "list, replay: a destination's name (configured, or delivered to)")
	fs.StringVar(&d.filter.Patient, "patient", "", "list: patient key (source|clinic patient id)")
	fs.StringVar(&d.filter.Source, "source", "", "list: the records' clinic system (source.system)")
	fs.StringVar(&d.filter.Kind, "kind", "", "list: the records' kind: "+kindList())
	fs.StringVar(&d.filter.RecordID, "record", "", "list: one record's id in its clinic system (source.recordId): its every version")
	fs.StringVar(&d.since, "since", "", "list, replay: from this time: RFC 3339, a date, or a duration before now (24h, 7d)")
	fs.StringVar(&d.until, "until", "", "list: before this time: RFC 3339, a date, or a duration before now")
	fs.IntVar(&d.filter.Limit, "limit", operator.DefaultLimit, fmt.Sprintf("list: at most this many (1 to %d)", operator.MaxLimit))
	d.reason = fs.String("reason", "", "cancel: why the delivery is cancelled (required; one line, at most 200 characters)")
	d.payload = fs.Bool("payload", false, "show: include the FHIR payload and the EHR's whole answers (PHI; without it the answers are summarised)")
	return fs, d
}

// opError turns an operator failure into the command's exit: the kind's
// exit code and its message.
func opError(name string, err error) error {
	var ee *exitError
	if errors.As(err, &ee) {
		return err
	}
	kind, issues := outcomeOf(err)
	msg := err.Error()
	if len(issues) > 0 {
		msg = issues[0]
	}
	if _, is := outcome.From(err); kind == outcome.Invalid && len(is) > 0 && is[0].Rule == "parameter-invalid" {
		// A parameter the operator service refused (its message starts
		// with the parameter's name, the flag's): the command line is wrong.
		return usageError(name, "--%s", msg)
	}
	return &exitError{code: exitCode(kind), msg: fmt.Sprintf("%s: %s", name, msg)}
}

// warnUnconfigured logs, when serve starts, each destination with
// deliveries pending that this gateway does not have (renamed or removed
// from the configuration, or queued by an import with another
// configuration): no worker sends them, and /readyz marks them
// notConfigured.
func warnUnconfigured(ctx context.Context, ops *operator.Service, logger *slog.Logger) {
	stale, err := ops.Unconfigured(ctx)
	if err != nil {
		logger.Warn("delivery: could not check the outbox for destinations not configured", "error", err)
		return
	}
	for _, b := range stale {
		logger.Warn("delivery: deliveries are pending for a destination that is not configured; nothing sends them "+
			"until a destination of that name is configured again (deliveries list --destination shows them)",
			"destination", b.Destination, "pending", b.Pending)
	}
}
