package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/auditlog"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/ingest"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/outcome"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/replay"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
	"github.com/ketamine-gateway/ketamine-gateway/mapping"
)

// replayCommand is the CLI mapping replay (docs/mapping.md).
func replayCommand(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := newFlags("replay")
	db := dbFlag(fs, getenv)
	kind := fs.String("kind", "", "record kind (default: every kind): "+kindList())
	since := fs.String("since", "", "only records received since this time: RFC 3339, a date, or a duration before now (24h, 7d)")
	tenant := fs.String("tenant", "*", "only this tenant's records (default: every tenant's; \"\" is the default tenant)")
	source := fs.String("source", "", "only records of this clinic system")
	apply := fs.Bool("apply", false, "write the changes and enqueue the corrections")
	reason := fs.String("reason", "", "why the changes are applied (required with --apply; recorded in each correction's Provenance)")
	showValues := fs.Bool("show-values", false, "print the old and new values (PHI)")
	downgrade := fs.Bool("downgrade", false, "replay records a newer mapping stored too, writing this build's mapping back over them (to undo a replay); without it they are refused (replay-newer-mapping) and left as they are")
	asJSON := fs.Bool("json", false, "print the report as JSON")
	configFile, base := appConfigFlags(fs, getenv)
	ehrURL := fs.String("ehr-url", getenv("GATEWAY_EHR_URL"), "the EHR serve delivers to with --ehr-url: corrections are enqueued for it as destination \"ehr\" (GATEWAY_EHR_URL)")
	noConfig := fs.Bool("no-config", false, "with --apply: the gateway serves without --config and --ehr-url (default safety thresholds, no destinations); refused when the outbox has deliveries")
	pos, err := parse(fs, "replay", args, stdout)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usageError("replay", "takes no arguments (use flags)")
	}
	if *kind != "" && !knownKind(*kind) {
		return usageError("replay", "--kind %q: the kinds are %s", *kind, kindList())
	}
	opts := replay.Options{Kind: mapping.Kind(*kind), Tenant: *tenant, Source: *source, Apply: *apply, Reason: *reason,
		ShowValues: *showValues, Downgrade: *downgrade}
	if opts.Since, err = parseTimeFlag(*since, time.Now()); err != nil {
		return usageError("replay", "--since: %v", err)
	}
	if err := replay.CheckReason(opts); err != nil {
		_, issues := outcome.From(err)
		return usageError("replay", "%s", issues[0].Message)
	}
	configured := *configFile != "" || *ehrURL != ""
	switch {
	case *noConfig && configured:
		return usageError("replay", "--no-config with --config or --ehr-url (or GATEWAY_CONFIG, GATEWAY_EHR_URL): give one or the other")
	case *apply && !configured && !*noConfig:
		// An apply writes with this process's safety thresholds and
		// enqueues for its destinations: without the configuration serve
		// runs with, it would strip the tenant's interpretations and send
		// no correction, and a second run, finding nothing to change,
		// could not send them either.
		return usageError("replay", "--apply needs the configuration the gateway serves with: --config FILE (safety thresholds, destinations) and --ehr-url URL, as given to serve; "+
			"--no-config if serve runs with neither (default thresholds, no destinations)")
	}
	acfg, _, err := cliAppConfig(*configFile, *base, *apply, func(k string) string {
		if k == "GATEWAY_EHR_URL" {
			return *ehrURL
		}
		return getenv(k)
	})
	if err != nil {
		return err
	}
	// A dry run only reads: it stores no conformance resources either.
	use := dbWrite
	if !*apply {
		acfg.NoSeed, use = true, dbRead
		if *showValues {
			use = dbWrite // the report's AuditEvent is written
		}
	}
	a, closeApp, err := openApp(ctx, acfg, "replay", *db, use, nil)
	if err != nil {
		return err
	}
	defer closeApp()
	if *apply {
		if err := checkReplayDestinations(ctx, a.Store, acfg.Routes, stderr); err != nil {
			return err
		}
	}

	if err := a.Replay.Check(ctx, opts); err != nil {
		kind, issues := outcome.From(err)
		if kind == outcome.Invalid && len(issues) > 0 {
			return usageError("replay", "%s", issues[0].Message)
		}
		return &exitError{code: exitUnchecked, msg: fmt.Sprintf("replay: %v", err)}
	}
	sc := cliScope("replay", "mapping-replay")
	// A report with values is held until its AuditEvent, naming each
	// patient whose values it shows, is committed (as the API's download
	// of such a report is): in a file, as large as the report may grow.
	var held *os.File
	var values *valuesShown
	dst := stdout
	if opts.ShowValues {
		f, discard, err := holdReport()
		if err != nil {
			return &exitError{code: exitUnchecked, msg: fmt.Sprintf("replay: no file to hold the report with values until its AuditEvent is committed: %v", err)}
		}
		defer discard()
		held, values = f, newValuesShown(sc.RequestID, opts)
		dst = held
	}
	out := bufio.NewWriter(dst)
	defer out.Flush()
	rep := newReplayReport(out, *asJSON)
	bar := newProgress(stderr, "replay", "records", "changed", -1)
	changed := 0
	sum, err := a.Replay.Run(ctx, sc, opts, func(r replay.RecordResult) error {
		if r.Status == replay.StatusChanged {
			changed++
		}
		values.add(r)
		return rep.record(r)
	}, func(done int) { bar.set(int64(done), int64(changed)) })
	bar.finish()
	if sum != nil {
		if werr := rep.summary(sum, opts, err != nil); werr != nil && err == nil {
			err = werr
		}
	}
	if held != nil {
		// An applied run's corrections are made (a second run finds none
		// to make): its report is not shown, and the run is done.
		failed := auditFailed
		if opts.Apply {
			failed = changeAuditFailed
		}
		values.describe()
		if aerr := failed("replay", a.Audit.Append(values.sc, http.StatusOK)); aerr != nil {
			return aerr
		}
		ferr := out.Flush()
		if ferr == nil {
			_, ferr = held.Seek(0, io.SeekStart)
		}
		if ferr == nil {
			_, ferr = io.Copy(stdout, held)
		}
		if ferr != nil && err == nil {
			err = ferr
		}
	}
	if err != nil {
		if errors.Is(err, context.Canceled) {
			return &exitError{code: exitUnchecked, msg: "replay interrupted; run it again to continue"}
		}
		msg := fmt.Sprintf("replay stopped: %v", describe(err))
		if sum != nil {
			msg = fmt.Sprintf("replay stopped after %s: %v", auditlog.Counted(sum.Records, "record"), describe(err))
		}
		if errors.Is(err, store.ErrUnavailable) || errors.Is(err, context.DeadlineExceeded) {
			// A passing failure: the records replayed stay so, and a run
			// again goes on with the others.
			msg += "; run it again to continue"
		}
		return &exitError{code: exitUnchecked, msg: msg}
	}
	pending := sum.Refused + sum.Diverged + sum.Conflicts
	if opts.Apply {
		pending += sum.PartlyDiverged // (a dry run counts them among the changed)
	} else {
		pending += sum.Changed
	}
	if pending > 0 {
		return &exitError{code: exitInvalid}
	}
	return nil
}

// checkReplayDestinations compares the destinations an apply enqueues
// corrections for (routes) with those the outbox names: with none
// configured while the outbox names some, the corrections would be
// stored and never sent, and no later run could send them (the records
// are then unchanged): a usage error naming them. Some configured and
// others not: a warning naming those that get no correction.
func checkReplayDestinations(ctx context.Context, st store.Outbox, routes []ingest.Route, stderr io.Writer) error {
	stats, err := st.Stats(ctx)
	if err != nil {
		return &exitError{code: exitUnchecked, msg: fmt.Sprintf("replay: %v", describe(err))}
	}
	var missing []string
	for _, s := range stats {
		if !slices.ContainsFunc(routes, func(r ingest.Route) bool { return r.Name == s.Destination }) {
			missing = append(missing, s.Destination)
		}
	}
	switch {
	case len(missing) == 0:
		return nil
	case len(routes) == 0:
		return usageError("replay", "the outbox holds deliveries to %s, and no destination is configured: the corrections would never be sent; "+
			"pass the destinations serve delivers to (--config FILE, --ehr-url URL)", strings.Join(missing, ", "))
	}
	fmt.Fprintf(stderr, "replay: the outbox holds deliveries to %s, which this configuration does not name: no correction is enqueued for them\n",
		strings.Join(missing, ", "))
	return nil
}

// replayReport prints a replay's report: a table, or JSON
// ({"records": [...], "summary": {...}}, the records as they come).
type replayReport struct {
	w    *bufio.Writer
	json bool
	n    int // records printed
}

func newReplayReport(w *bufio.Writer, asJSON bool) *replayReport {
	return &replayReport{w: w, json: asJSON}
}

// record prints one record: every record as JSON, those not unchanged in
// the table.
func (p *replayReport) record(r replay.RecordResult) error {
	if p.json {
		b, err := json.Marshal(r)
		if err != nil {
			return err
		}
		sep := ",\n  "
		if p.n == 0 {
			sep = "{\"records\": [\n  "
		}
		p.n++
		_, err = fmt.Fprintf(p.w, "%s%s", sep, b)
		return err
	}
	if r.Status == replay.StatusUnchanged {
		return nil
	}
	p.n++
	name := fmt.Sprintf("%s %s %s version %s", r.Source, r.Kind, r.RecordID, r.Version)
	if r.Tenant != "" {
		name = "[" + r.Tenant + "] " + name
	}
	status := r.Status
	if r.Applied {
		status += ", written"
	}
	if r.Deliveries > 0 {
		status += fmt.Sprintf(", %d corrections enqueued", r.Deliveries)
	}
	fmt.Fprintf(p.w, "%s: %s\n", name, status)
	for _, i := range r.Issues {
		switch {
		case i.Rule == "replay-newer-mapping":
			fmt.Fprintf(p.w, "    %s: stored by mapping %s, newer than this build's; left as it is (--downgrade writes this build's back)\n",
				i.Rule, r.MappingVersion)
		case i.Expression != "" && i.Pointer == "":
			fmt.Fprintf(p.w, "    %s at %s (in the mapping's output: the mapping is at fault, not the record)\n", i.Rule, i.Expression)
		default:
			fmt.Fprintf(p.w, "    %s at %s\n", i.Rule, orRoot(i.Pointer))
		}
	}
	for _, d := range r.Resources {
		if d.Change != replay.OpChanged {
			fmt.Fprintf(p.w, "    %s %s%s\n", d.Resource, d.Change, skippedNote(d))
			continue
		}
		fmt.Fprintf(p.w, "    %s%s\n", d.Resource, skippedNote(d))
		for _, c := range d.Changes {
			line := c.Path + " " + c.Op
			if c.Old != nil || c.New != nil {
				line += fmt.Sprintf(": %s -> %s", valueText(c.Old), valueText(c.New))
			}
			fmt.Fprintf(p.w, "        %s\n", line)
		}
	}
	return nil
}

func orRoot(pointer string) string {
	if pointer == "" {
		return "the record"
	}
	return pointer
}

func skippedNote(d replay.ResourceDiff) string {
	if d.Skipped != "" {
		return " (left as it is: " + d.Skipped + ")"
	}
	return ""
}

func valueText(v any) string {
	if v == nil {
		return "(none)"
	}
	b, _ := json.Marshal(v)
	return string(b)
}

// summary prints the summary (and closes the JSON document); stopped
// when the replay stopped on an error before its end.
func (p *replayReport) summary(s *replay.Summary, opts replay.Options, stopped bool) error {
	if p.json {
		b, err := json.MarshalIndent(s, "  ", "  ")
		if err != nil {
			return err
		}
		if p.n == 0 {
			fmt.Fprint(p.w, "{\"records\": [")
		} else {
			fmt.Fprint(p.w, "\n")
		}
		_, err = fmt.Fprintf(p.w, "],\n  \"summary\": %s\n}\n", b)
		return err
	}
	if p.n > 0 {
		fmt.Fprintln(p.w)
	}
	tw := tabwriter.NewWriter(p.w, 0, 4, 2, ' ', 0)
	defer tw.Flush()
	if s.Records == 0 && !stopped {
		fmt.Fprintf(tw, "No stored record matches the filter: nothing to replay (mapping %s).\n", s.MappingVersion)
		return nil
	}
	verb := "would change"
	if opts.Apply {
		verb = "changed (written)"
	}
	if s.PartlyDiverged > 0 {
		verb += fmt.Sprintf(" (%d of them partly diverged: resources another source changed since are left as they are)",
			s.PartlyDiverged)
	}
	fmt.Fprintf(tw, "Mapping %s over %s: %d unchanged, %d %s, %d refused now, %d diverged, %d without a stored input",
		s.MappingVersion, auditlog.Counted(s.Records, "record"), s.Unchanged, s.Changed, verb, s.Refused, s.Diverged, s.NoInput)
	if s.Withdrawn > 0 {
		fmt.Fprintf(tw, ", %d withdrawn (left as they are)", s.Withdrawn)
	}
	if s.Conflicts > 0 {
		fmt.Fprintf(tw, ", %d changed concurrently (run again)", s.Conflicts)
	}
	if opts.Apply {
		fmt.Fprintf(tw, "; %d corrections enqueued", s.Deliveries)
	}
	fmt.Fprintln(tw, ".")
	if len(s.Groups) > 0 {
		fmt.Fprintln(tw, "\nCHANGE\tRECORDS")
		for _, g := range s.Groups {
			fmt.Fprintf(tw, "%s\t%d\n", strings.TrimSpace(g.Change), g.Records)
		}
	}
	return nil
}

// runID names one run of a CLI command that writes (import, replay) in its
// AuditEvents' request ids: unique per run, as two runs in one second are
// two requests (the time in milliseconds and 80 random bits).
func runID(command string) string {
	return command + "-" + store.NewID()
}

// valuesShown is the AuditEvent of a replay report that shows the records'
// old and new values (--show-values), as that of the API's download of
// such a report: each patient whose values it shows, in the record's
// tenant, and a description saying they were disclosed. A nil
// *valuesShown records nothing.
type valuesShown struct {
	sc      *auditlog.Scope
	what    string // dry run, apply
	records int    // records shown with values
}

// newValuesShown is the report's AuditEvent, of the run requestID.
func newValuesShown(requestID string, opts replay.Options) *valuesShown {
	sc := cliScope("replay", "mapping-replay")
	sc.RequestID = requestID
	what := "dry run"
	if opts.Apply {
		what = "apply"
	}
	sc.Disclosed = replay.ValuesDisclosed
	return &valuesShown{sc: sc, what: what}
}

// holdReport creates the file that holds a report with values (PHI) until
// its AuditEvent is committed: in the temporary directory, readable by its
// owner only (os.CreateTemp's 0600), and unlinked at once where the system
// allows it (the open file stays usable), so that nothing is left behind
// even by a process killed; discard closes it (and removes it where it
// could not be unlinked at once), also after an error or an interrupt.
func holdReport() (f *os.File, discard func(), err error) {
	f, err = os.CreateTemp("", "ketamine-gateway-replay-*")
	if err != nil {
		return nil, nil, err
	}
	unlinked := os.Remove(f.Name()) == nil
	return f, func() {
		f.Close()
		if !unlinked {
			os.Remove(f.Name())
		}
	}, nil
}

// describe says how many records the report shows with values (once
// every record is reported, before its AuditEvent is appended).
func (v *valuesShown) describe() {
	v.sc.Description = fmt.Sprintf("mapping replay (%s) report: %s shown with values; %s", v.what,
		auditlog.Counted(v.records, "record"), v.sc.Disclosed)
}

// add names r's patient, if its values are shown.
func (v *valuesShown) add(r replay.RecordResult) {
	if v == nil {
		return
	}
	if p := r.DisclosedPatient(); p != "" {
		v.sc.ConcernIn(r.Tenant, p)
		v.records++
	}
}
