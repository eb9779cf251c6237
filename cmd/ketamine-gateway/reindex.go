package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/outcome"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/reindex"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/search"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
)

// reindexCommand rebuilds the search index rows of the stored resources
// from their bodies (store.Reindexer), a batch per write transaction, with
// progress on stderr. --dry-run only counts the resources whose rows
// differ: exit 1 when there are some.
func reindexCommand(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := newFlags("reindex")
	db := dbFlag(fs, getenv)
	typ := fs.String("type", "", "only resources of this type (default: every type)")
	tenant := fs.String("tenant", search.AllTenants, "only this tenant's resources (default: every tenant's; \"\" is the default tenant)")
	dryRun := fs.Bool("dry-run", false, "compare only: count the resources whose index rows differ, write nothing")
	batch := fs.Int("batch", store.DefaultReindexCount, "resources per transaction (at most 10000)")
	pos, err := parse(fs, "reindex", args, stdout)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usageError("reindex", "takes no arguments (use flags)")
	}
	opts := reindex.Options{Type: *typ, Tenant: *tenant, DryRun: *dryRun, Batch: *batch}
	if *batch < 1 {
		opts.Batch = -1 // 0 is the default for the API; here it is out of range
	}
	if err := opts.Check(); err != nil {
		// The message begins with the option's name.
		_, issues := outcome.From(err)
		return usageError("reindex", "--%s", issues[0].Message)
	}
	use := dbWrite
	if *dryRun {
		use = dbRead
	}
	st, err := openExisting(ctx, "reindex", *db, use)
	if err != nil {
		return err
	}
	defer st.Close()
	if err := reindex.CheckTenant(ctx, st, *tenant); err != nil {
		if k, issues := outcome.From(err); k == outcome.Invalid {
			return usageError("reindex", "--%s", issues[0].Message)
		}
		return &exitError{code: exitUnchecked, msg: fmt.Sprintf("reindex: %v", err)}
	}

	total := int64(-1)
	if pg, err := st.Search(ctx, &search.Query{Type: *typ, Tenant: *tenant, Total: true, Count: 1}); err == nil && pg.Total >= 0 {
		total = int64(pg.Total)
	}
	var rep reindex.Report
	extra := "changed"
	if *dryRun {
		extra = "to change"
	}
	bar := newProgress(stderr, "reindex", "resources", extra, total)
	start := time.Now()
	err = reindex.Pass(ctx, st, opts, &rep, func(r *reindex.Report) error {
		bar.set(int64(r.Checked), int64(r.Changed))
		return nil
	})
	bar.finish()
	if err != nil {
		if ctx.Err() != nil {
			return &exitError{code: exitUnchecked, msg: fmt.Sprintf("reindex: interrupted after %d resources (%d changed); run it again to finish: resources already done only cost a read", rep.Checked, rep.Changed)}
		}
		code := exitInternal
		if errors.Is(err, store.ErrUnavailable) {
			code = exitUnchecked
		}
		return &exitError{code: code, msg: fmt.Sprintf("reindex: after %d resources (%d changed): %v", rep.Checked, rep.Changed, err)}
	}
	rep.Seconds = time.Since(start).Round(time.Millisecond).Seconds()
	if err := printJSON(stdout, rep); err != nil {
		return err
	}
	if rep.UnreadableCount > 0 {
		what := fmt.Sprintf("the stored bodies of %d resources", rep.UnreadableCount)
		if rep.UnreadableCount == 1 {
			what = "the stored body of 1 resource"
		}
		return &exitError{code: exitInvalid, msg: "reindex: " + what + " could not be read (\"unreadable\" names them); their index rows were left as they were"}
	}
	if *dryRun && rep.Changed > 0 {
		return &exitError{code: exitInvalid, msg: fmt.Sprintf("reindex: the index rows of %d of %d resources are not this build's; run reindex without --dry-run", rep.Changed, rep.Checked)}
	}
	return nil
}
