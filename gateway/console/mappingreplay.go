package console

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/outcome"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/replay"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/search"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
	"github.com/ketamine-gateway/ketamine-gateway/mapping"
)

// The operator's mapping replay pages: start a replay of the current
// mapping over the stored records (a dry run, or applied after a
// confirmation), follow it, read its report. A replay is a job of the
// person who started it (POST /admin/replay in the API).

// reportRows is how many records of a report the page shows.
const reportRows = 200

// replaysData is the replay list page's data.
type replaysData struct {
	Version string
	Kinds   []mapping.Kind
	Jobs    []replayRow
	// Form is what the person sent, shown again with Errors (by field:
	// kind, since, reason) when it was refused.
	Form   replayForm
	Errors map[string]string
	// CanApply tells that the person may apply a replay: one acting for
	// every tenant runs dry runs only (it writes none).
	CanApply bool
}

// replayForm is the new replay form's fields as sent.
type replayForm struct {
	Kind, Since, Reason string
	Apply               bool
}

// check returns a message per malformed field (the field's label and what
// is wanted, never the value), and the start time.
func (f replayForm) check() (map[string]string, time.Time) {
	bad := map[string]string{}
	if f.Kind != "" && !slices.Contains(mapping.Kinds(), mapping.Kind(f.Kind)) {
		bad["kind"] = "Kind: choose one of the listed kinds"
	}
	since, ok := parseDate(f.Since)
	switch {
	case !ok:
		bad["since"] = "Received since: a date and time like 2026-11-25T08:00 (UTC), or nothing for every record"
	case since.After(time.Now()):
		// The replay refuses it (replay-since-future): no record was
		// received after it.
		bad["since"] = "Received since: the time is in the future, so no record was received after it (check the year)"
	}
	if !plainText(f.Reason) {
		bad["reason"] = "Reason: at most 200 characters, without control characters"
	}
	return bad, since
}

// ErrorList is Errors in the form's order, for the summary above it.
func (d replaysData) ErrorList() []fieldError {
	var out []fieldError
	for _, k := range []string{"kind", "since", "reason"} {
		if m, ok := d.Errors[k]; ok {
			out = append(out, fieldError{ID: "r-" + k, Message: m})
		}
	}
	return out
}

// replayRow is one replay job in the list.
type replayRow struct {
	ID, Status, Created, What string
	Done                      int64
}

// replays lists the person's replays and offers a new one.
func (c *Console) replays(rq *request) error {
	return c.replaysPage(rq, replaysData{})
}

// replaysPage renders the replay page with d's form and errors.
func (c *Console) replaysPage(rq *request, d replaysData) error {
	jobs, err := c.app.Jobs.List(rq.ctx(), store.JobFilter{Kind: replay.KindReplay, Tenant: rq.sc.TenantOf(), Owner: rq.sc.ClientID, Limit: 50})
	if err != nil {
		return err
	}
	d.Version, d.Kinds = c.app.Replay.MappingVersion(), mapping.Kinds()
	d.CanApply = rq.sc.TenantOf() != search.AllTenants
	for _, j := range jobs {
		if store.Withdrawn(j.Status) {
			continue
		}
		d.Jobs = append(d.Jobs, replayRow{ID: j.ID, Status: j.Status, Created: when(j.Created), Done: j.Done, What: replayWhat(j)})
	}
	rq.sc.Description = fmt.Sprintf("console replays: %d listed", len(d.Jobs))
	return rq.render("replays", "Mapping replay", d)
}

// replayWhat describes a replay job's request: dry run or apply, and its
// filter.
func replayWhat(j *store.Job) string {
	var req struct {
		Options struct {
			Kind, Tenant, Since string
			Apply               bool
		}
	}
	_ = json.Unmarshal(j.Request, &req)
	what := "dry run"
	if req.Options.Apply {
		what = "apply"
	}
	if req.Options.Kind != "" {
		what += ", " + req.Options.Kind + " records"
	}
	// "" is the default tenant: a single-tenant gateway's only one, shown
	// without a name like its records.
	if req.Options.Tenant != search.AllTenants && req.Options.Tenant != "" {
		what += fmt.Sprintf(", tenant %q", req.Options.Tenant)
	}
	if req.Options.Since != "" {
		what += ", since " + req.Options.Since
	}
	return what
}

// replayStart starts a replay; an apply asks for a confirmation first.
func (c *Console) replayStart(rq *request) error {
	f := rq.r.PostForm
	form := replayForm{Kind: f.Get("kind"), Since: f.Get("since"), Reason: f.Get("reason"), Apply: f.Get("apply") == "yes"}
	bad, since := form.check()
	if len(bad) > 0 {
		// The form again, with what was typed and each error at its
		// field; nothing started.
		rq.status = 400
		rq.sc.Rules = []string{"console-replay-invalid"}
		return c.replaysPage(rq, replaysData{Form: form, Errors: bad})
	}
	// Every tenant the person may see (Submit confines a tenant's person
	// to its tenant).
	opts := replay.Options{Kind: mapping.Kind(form.Kind), Tenant: search.AllTenants, Apply: form.Apply,
		Reason: form.Reason, Since: since}
	if opts.Apply && f.Get("confirm") != "yes" {
		rq.sc.Interaction = "" // only the question: nothing read or changed
		return rq.render("replay-confirm", "Apply the mapping replay", map[string]any{"Form": f, "Version": c.app.Replay.MappingVersion()})
	}
	if opts.Apply && strings.TrimSpace(opts.Reason) == "" {
		// The changes are sent to hospitals' EHRs: their Provenance says
		// why. The question again, asking for it; nothing started.
		rq.status = 400
		rq.sc.Rules = []string{"console-replay-invalid"}
		return rq.render("replay-confirm", "Apply the mapping replay", map[string]any{"Form": f,
			"Version": c.app.Replay.MappingVersion(), "Error": "Reason: say why the changes are applied (it is recorded with them)"})
	}
	j, err := c.app.Replay.Submit(rq.ctx(), rq.sc, opts, "")
	if err != nil {
		return err
	}
	rq.sess.setFlash("Replay started", "The replay has started; this page shows its progress and, when it is done, its report.")
	return rq.seeOther(Prefix + "/replays/" + j.ID)
}

// replayJobData is a replay's page data.
type replayJobData struct {
	ID, Status, What, Created, Error string
	Done                             int64
	Running                          bool
	Summary                          *replay.Summary
	Records                          []replay.RecordResult
	More                             int
}

// replayJob shows a replay: its progress, then its summary and the
// records that are not unchanged.
func (c *Console) replayJob(rq *request) error {
	j, err := c.app.Jobs.Job(rq.ctx(), rq.sc, rq.r.PathValue("id"))
	if err != nil {
		return err
	}
	if j.Kind != replay.KindReplay {
		return outcome.New(outcome.NotFound, "not-found", "job-unknown", "no such replay")
	}
	d := replayJobData{ID: j.ID, Status: j.Status, What: replayWhat(j), Created: when(j.Created), Done: j.Done, Error: j.Error,
		Running: j.Status == store.JobQueued || j.Status == store.JobRunning}
	if j.Status == store.JobDone {
		var res replay.JobResult
		if err := json.Unmarshal(j.Result, &res); err == nil {
			d.Summary = &res.Summary
		}
		err := c.app.Jobs.File(rq.ctx(), rq.sc, j.ID, 1, func(part []byte) error {
			sc := bufio.NewScanner(bytes.NewReader(part))
			sc.Buffer(nil, len(part)+1)
			for sc.Scan() {
				var r replay.RecordResult
				if json.Unmarshal(sc.Bytes(), &r) != nil || r.Status == replay.StatusUnchanged {
					continue
				}
				if len(d.Records) < reportRows {
					d.Records = append(d.Records, r)
				} else {
					d.More++
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	rq.sc.Description = fmt.Sprintf("console replay %s: %s", j.ID, j.Status)
	return rq.render("replay-job", "Mapping replay", d)
}
