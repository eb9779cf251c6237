package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/search"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
	"github.com/ketamine-gateway/ketamine-gateway/schemas/r4"
)

// reindexReport is what reindex prints on stdout.
type reindexReport struct {
	Type    string `json:"type,omitempty"`
	DryRun  bool   `json:"dryRun"`
	Checked int    `json:"checked"`
	Changed int    `json:"changed"`
	// ChangedTypes counts Changed by resource type.
	ChangedTypes map[string]int `json:"changedTypes,omitempty"`
	// Unreadable names the resources whose stored body could not be read
	// (their rows are left as they are), the first maxUnreadable of them.
	Unreadable      []string `json:"unreadable,omitempty"`
	UnreadableCount int      `json:"unreadableCount,omitempty"`
	Done            bool     `json:"done"`
	Seconds         float64  `json:"seconds"`
	// IndexVersion is the version the database records for its index
	// rows after the command (a complete pass records this build's,
	// BuildIndexVersion).
	IndexVersion      int `json:"indexVersion"`
	BuildIndexVersion int `json:"buildIndexVersion"`
}

// maxUnreadable bounds the resources the report names as unreadable.
const maxUnreadable = 100

// reindexCommand rebuilds the search index rows of the stored resources
// from their bodies (store.Reindexer), a batch per write transaction, with
// progress on stderr. --dry-run only counts the resources whose rows
// differ: exit 1 when there are some.
func reindexCommand(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := newFlags("reindex")
	db := dbFlag(fs, getenv)
	typ := fs.String("type", "", "only resources of this type (default: every type)")
	dryRun := fs.Bool("dry-run", false, "compare only: count the resources whose index rows differ, write nothing")
	batch := fs.Int("batch", store.DefaultReindexCount, "resources per transaction")
	pos, err := parse(fs, "reindex", args, stdout)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usageError("reindex", "takes no arguments (use flags)")
	}
	if *typ != "" && !r4.IsResourceType(*typ) {
		return usageError("reindex", "--type %q is not a FHIR R4 resource type", *typ)
	}
	if *batch < 1 || *batch > 10000 {
		return usageError("reindex", "--batch must be between 1 and 10000")
	}
	st, err := openExisting(ctx, "reindex", *db)
	if err != nil {
		return err
	}
	defer st.Close()

	total := int64(-1)
	if pg, err := st.Search(ctx, &search.Query{Type: *typ, Tenant: search.AllTenants, Total: true, Count: 1}); err == nil && pg.Total >= 0 {
		total = int64(pg.Total)
	}
	rep := reindexReport{Type: *typ, DryRun: *dryRun}
	extra := "changed"
	if *dryRun {
		extra = "to change"
	}
	bar := newProgress(stderr, "reindex", "resources", extra, total)
	start := time.Now()
	q := store.ReindexQuery{Type: *typ, Count: *batch, DryRun: *dryRun}
	for !rep.Done {
		b, err := st.Reindex(ctx, q)
		if err != nil {
			bar.finish()
			if ctx.Err() != nil {
				return &exitError{code: exitUnchecked, msg: fmt.Sprintf("reindex: interrupted after %d resources (%d changed); run it again to finish: resources already done only cost a read", rep.Checked, rep.Changed)}
			}
			code := exitInternal
			if errors.Is(err, store.ErrUnavailable) {
				code = exitUnchecked
			}
			return &exitError{code: code, msg: fmt.Sprintf("reindex: after %d resources (%d changed): %v", rep.Checked, rep.Changed, err)}
		}
		rep.Checked += b.Checked
		rep.Changed += b.Changed
		for typ, n := range b.ChangedTypes {
			if rep.ChangedTypes == nil {
				rep.ChangedTypes = map[string]int{}
			}
			rep.ChangedTypes[typ] += n
		}
		for _, k := range b.Unreadable {
			if len(rep.Unreadable) < maxUnreadable {
				rep.Unreadable = append(rep.Unreadable, k.Type+"/"+k.ID)
			}
			rep.UnreadableCount++
		}
		rep.Done = b.Done
		q.After = b.Last
		bar.set(int64(rep.Checked), int64(rep.Changed))
	}
	bar.finish()
	rep.Seconds = time.Since(start).Round(time.Millisecond).Seconds()
	// Every current resource's rows are now this build's, unless the
	// pass was partial or left some unread.
	if !*dryRun && *typ == "" && rep.UnreadableCount == 0 {
		if err := st.MarkIndexed(ctx, search.IndexVersion); err != nil {
			return &exitError{code: exitUnchecked, msg: fmt.Sprintf("reindex: every resource was checked (%d changed), but the index version could not be recorded: %v; run it again", rep.Changed, err)}
		}
	}
	rep.BuildIndexVersion = search.IndexVersion
	if v, err := st.IndexVersion(ctx); err == nil {
		rep.IndexVersion = v
	}
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
