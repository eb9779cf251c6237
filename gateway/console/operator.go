package console

import (
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/auditlog"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/operator"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/outcome"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/search"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
)

// deliveriesPerPage is the length of the deliveries listing.
const deliveriesPerPage = 50

// statuses are the delivery statuses an operator filters by.
var statuses = []string{store.StatusPending, store.StatusInFlight, store.StatusDead, store.StatusDone}

// deliveriesData is the deliveries page's data.
type deliveriesData struct {
	Ready                bool
	Backlog              []operator.Backlog
	Charts               []chart
	Status, Destination  string
	Statuses             []string
	Destinations         []string
	Rows                 []operator.View
	Page, Prev, Next     int
	ReplaySince, Checked string
	// ReplayDest and ReplaySince are the replay form's values: a default
	// start time, or what was sent, shown again with ReplayErrors (by
	// field: destination, since) when it was refused.
	ReplayDest   string
	ReplayErrors map[string]string
	// AllTenants tells that the person acts for every tenant (or in
	// development mode): only then are the destinations' backlog figures
	// (every tenant's deliveries) shown and the replay (which re-sends
	// every tenant's records) offered.
	AllTenants bool
	// CapabilityGaps is what the delivery worker's capability check found
	// wrong with the destinations (all-tenant operators only, as the
	// backlog: it names the destinations and their EHRs' configuration).
	CapabilityGaps []operator.CapabilityGap
}

// ReplayErrorList is ReplayErrors in the form's order, for the summary
// above it.
func (d deliveriesData) ReplayErrorList() []string {
	var out []string
	for _, k := range []string{"destination", "since"} {
		if m, ok := d.ReplayErrors[k]; ok {
			out = append(out, m)
		}
	}
	return out
}

// deliveries lists deliveries by status and destination, with each
// destination's backlog (now and over the last hours) and readiness.
func (c *Console) deliveries(rq *request) error {
	return c.deliveriesPage(rq, deliveriesData{})
}

// deliveriesPage renders the deliveries page; d holds the replay form's
// values and errors when it was refused.
func (c *Console) deliveriesPage(rq *request, d deliveriesData) error {
	q := rq.r.URL.Query()
	d.Status, d.Destination, d.Statuses = q.Get("status"), q.Get("destination"), statuses
	if d.Status != "" && !slices.Contains(statuses, d.Status) {
		return outcome.New(outcome.Invalid, "invalid", "parameter-invalid", "status: choose one of the listed statuses")
	}
	if !plainText(d.Destination) {
		return outcome.New(outcome.Invalid, "invalid", "parameter-invalid", "destination: at most 200 characters")
	}
	d.Page, _ = strconv.Atoi(q.Get("page"))
	d.Page = max(d.Page, 1)
	ready, err := c.app.Operator.Ready(rq.ctx())
	if err != nil {
		return err
	}
	now := c.now()
	d.Ready, d.Checked = ready.Ready, when(now)
	t := rq.sc.TenantOf()
	d.AllTenants = t == "" || t == search.AllTenants
	if d.AllTenants {
		d.Backlog, d.CapabilityGaps = ready.Backlog, ready.CapabilityGaps
		for _, b := range ready.Backlog {
			d.Destinations = append(d.Destinations, b.Destination)
		}
		hist := c.app.Operator.BacklogHistory()
		if ready.Ready {
			hist = append(hist, operator.BacklogSample{At: now, Destinations: ready.Backlog})
		}
		d.Charts = backlogCharts(hist, now)
	}
	filter := store.DeliveryFilter{Status: d.Status, Destination: d.Destination, Limit: deliveriesPerPage + 1,
		Offset: (d.Page - 1) * deliveriesPerPage}
	rows, err := c.app.Operator.List(rq.ctx(), rq.sc.TenantOf(), filter)
	if err != nil {
		return err
	}
	if len(rows) > deliveriesPerPage {
		rows, d.Next = rows[:deliveriesPerPage], d.Page+1
	}
	if d.Page > 1 {
		d.Prev = d.Page - 1
	}
	d.Rows = rows
	if d.ReplayErrors == nil {
		d.ReplaySince = now.Add(-time.Hour).UTC().Format("2006-01-02T15:04")
	}
	// The list shows each delivery's record and clinic patient id: its
	// AuditEvent names the patient of each delivery listed, as the API's
	// GET /admin/deliveries does, each in its tenant's share for an
	// all-tenant operator (probe p16 F13).
	if err := auditlog.NameDeliveryList(rq.ctx(), c.app.Store, rq.sc, c.app.IdentifierBase, rq.sc.TenantOf(), filter, rows); err != nil {
		return err
	}
	rq.sc.Description = "console " + rq.sc.Description
	return rq.render("deliveries", "Deliveries", d)
}

// ehrIssue is one issue of an EHR's OperationOutcome, for reading.
type ehrIssue struct{ Severity, Code, Text string }

// attemptData is an attempt with the EHR's answer decoded.
type attemptData struct {
	operator.AttemptView
	Issues []ehrIssue
	Answer string
	// Fate says what became of the attempt (attemptFate).
	Fate string
}

// deliveryData is the delivery page's data.
type deliveryData struct {
	D        operator.View
	Attempts []attemptData
	Dead     bool
	// Full: the EHR's answers are shown in full (asked for with
	// ?answers=full, audited as disclosed); else summarised (no texts).
	Full bool
}

// showDelivery reads one delivery with its attempts; full shows the EHR's
// answers as received (they may hold PHI: a disclosure, audited as the
// API's payload=true is), else summarised without their texts.
func (c *Console) showDelivery(rq *request, full bool) (deliveryData, error) {
	v, err := c.app.Operator.Show(rq.ctx(), rq.sc.TenantOf(), rq.r.PathValue("id"), full)
	if err != nil {
		return deliveryData{}, err
	}
	d := deliveryData{D: v, Dead: v.Status == store.StatusDead, Full: full}
	for i, a := range v.History {
		d.Attempts = append(d.Attempts, attemptData{AttemptView: a, Issues: ehrIssues(a.Outcome), Answer: pretty(a.Outcome),
			Fate: attemptFate(&v, i)})
	}
	// The page shows the EHR's answers (in full or summarised), never the
	// payload: its AuditEvent says so.
	shown := auditlog.ShownSummary
	if full {
		shown = auditlog.ShownAnswers
	}
	if err := auditlog.NameDelivery(rq.ctx(), c.app.Store, rq.sc, c.app.IdentifierBase, v, shown); err != nil {
		return deliveryData{}, err
	}
	rq.sc.Description = "console " + rq.sc.Description
	return d, nil
}

// ehrIssues reads the issues of an OperationOutcome an EHR answered: the
// text of each, or, of a summarised answer (which has none), its rule
// codes and where (expression).
func ehrIssues(raw json.RawMessage) []ehrIssue {
	var oo struct {
		ResourceType string `json:"resourceType"`
		Issue        []struct {
			Severity, Code, Diagnostics string
			Details                     struct {
				Text   string
				Coding []struct{ Code string }
			}
			Expression []string
		}
	}
	if len(raw) == 0 || json.Unmarshal(raw, &oo) != nil || oo.ResourceType != "OperationOutcome" {
		return nil
	}
	var out []ehrIssue
	for _, is := range oo.Issue {
		text := is.Details.Text
		if text == "" {
			text = is.Diagnostics
		}
		if text == "" {
			var parts []string
			for _, c := range is.Details.Coding {
				if c.Code != "" {
					parts = append(parts, c.Code)
				}
			}
			if len(is.Expression) > 0 {
				parts = append(parts, "at "+strings.Join(is.Expression, ", "))
			}
			text = strings.Join(parts, " ")
		}
		out = append(out, ehrIssue{Severity: is.Severity, Code: is.Code, Text: text})
	}
	return out
}

// delivery shows one delivery: every attempt and the EHR's answer
// (summarised; in full with ?answers=full).
func (c *Console) delivery(rq *request) error {
	answers := rq.r.URL.Query().Get("answers")
	if answers != "" && answers != "full" {
		return outcome.New(outcome.Invalid, "invalid", "parameter-invalid", "answers: full, or leave it out")
	}
	d, err := c.showDelivery(rq, answers == "full")
	if err != nil {
		return err
	}
	return rq.render("delivery", "Delivery "+d.D.ID, d)
}

// retryConfirm asks before a dead letter is sent again.
func (c *Console) retryConfirm(rq *request) error {
	d, err := c.showDelivery(rq, false)
	if err != nil {
		return err
	}
	return rq.render("retry", "Retry delivery "+d.D.ID, d)
}

// nameDelivery names, in rq's scope, the delivery the path names, its
// source record and patient, as a read of it does: a retry refused for its
// form is audited naming what it would have retried, as the API's refused
// retry is (probe p16 F7). Only a delivery of the person's tenant is
// named (Show refuses any other as no delivery).
func (c *Console) nameDelivery(rq *request) error {
	v, err := c.app.Operator.Show(rq.ctx(), rq.sc.TenantOf(), rq.r.PathValue("id"), false)
	if err != nil {
		return err
	}
	return auditlog.NameDelivery(rq.ctx(), c.app.Store, rq.sc, c.app.IdentifierBase, v, auditlog.ShownSummary)
}

// retry puts a dead letter back in the queue (the form is the
// confirmation page's).
func (c *Console) retry(rq *request) error {
	v, err := c.app.Operator.Show(rq.ctx(), rq.sc.TenantOf(), rq.r.PathValue("id"), false)
	if err != nil {
		return err
	}
	if err := auditlog.NameDelivery(rq.ctx(), c.app.Store, rq.sc, c.app.IdentifierBase, v, auditlog.ShownSummary); err != nil {
		return err
	}
	waitingFor, err := c.app.Operator.Retry(rq.ctx(), rq.sc.TenantOf(), v.ID)
	if err != nil {
		return err
	}
	rq.sc.Description = fmt.Sprintf("console retry of delivery %s", v.ID)
	if waitingFor != "" {
		rq.sc.Description += "; it waits for delivery " + waitingFor
		rq.sess.setFlash("Waiting", fmt.Sprintf("Delivery %s is %s.", v.ID, operator.WaitingMessage(waitingFor)))
	} else {
		rq.sess.setFlash("Queued again", fmt.Sprintf("Delivery %s is queued again; it is sent with the next attempts.", v.ID))
	}
	return rq.seeOther(Prefix + "/deliveries/" + v.ID)
}

// replayData is the replay confirmation's data.
type replayData struct{ Destination, Since string }

// replay enqueues a destination's deliveries since a time again, after a
// confirmation page.
func (c *Console) replay(rq *request) error {
	dest, since := rq.r.PostFormValue("destination"), rq.r.PostFormValue("since")
	t, bad, err := c.checkReplay(rq, dest, since)
	if err != nil {
		return err
	}
	if len(bad) > 0 {
		// The deliveries page again, with what was typed and each error at
		// its field; nothing replayed. The rule is the API's for the same
		// parameters.
		rq.status = 400
		rq.sc.Rules = []string{"parameter-invalid"}
		if dest == "" || since == "" {
			rq.sc.Rules = []string{"parameter-missing"}
		}
		return c.deliveriesPage(rq, deliveriesData{ReplayDest: dest, ReplaySince: since, ReplayErrors: bad})
	}
	if rq.r.PostFormValue("confirm") != "yes" {
		rq.sc.Interaction = "" // only the question: nothing read or changed
		return rq.render("replay", "Replay deliveries", replayData{Destination: dest, Since: since})
	}
	n, err := c.app.Operator.Replay(rq.ctx(), rq.sc.TenantOf(), dest, t)
	if err != nil {
		return err
	}
	rq.sc.Description = fmt.Sprintf("console replay: %d deliveries", n)
	rq.sess.setFlash("Replayed", fmt.Sprintf("%s to %s %s queued again.", auditlog.CountedAs(n, "delivery", "deliveries"), dest,
		map[bool]string{true: "is", false: "are"}[n == 1]))
	return rq.seeOther(Prefix + "/deliveries")
}

// checkReplay checks the replay form with the operator's rules (those of
// the API and the CLI): a message per malformed or missing field (its label
// and what is wanted, never the value), and the start time.
func (c *Console) checkReplay(rq *request, dest, since string) (time.Time, map[string]string, error) {
	bad := map[string]string{}
	if dest == "" || !plainText(dest) {
		bad["destination"] = "Destination: choose one of the listed destinations"
	} else if err := c.app.Operator.CheckFilter(rq.ctx(), store.DeliveryFilter{Destination: dest}); err != nil {
		if kind, _ := outcome.From(err); kind != outcome.Invalid {
			return time.Time{}, nil, err
		}
		bad["destination"] = "Destination: choose one of the listed destinations (it names none)"
	}
	t, ok := parseDate(since)
	switch {
	case since == "":
		bad["since"] = "Since: a start time is needed, a date and time like 2026-11-25T08:00 (UTC)"
	case !ok:
		bad["since"] = "Since: a date and time like 2026-11-25T08:00 (UTC), or an RFC 3339 time"
	case c.app.Operator.CheckSince(t) != nil:
		bad["since"] = "Since: the time is in the future, so no delivery was created after it (check the year)"
	}
	return t, bad, nil
}
