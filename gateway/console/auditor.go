package console

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/audit"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/auditlog"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/internal/text"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/outcome"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/search"
)

// The auditor's search of AuditEvents. A search by patient identifier must
// not put the identifier into a URL (browser history, proxies): the form
// is POSTed, the criteria are kept in the session under an opaque id, and
// the browser is sent to GET /console/audit?q=<id>&page=<n>, so back,
// reload and paging work without PHI in any URL.

// auditSearch are the criteria of the AuditEvent search form.
type auditSearch struct {
	Patient, Client, Action, Outcome, Interaction, From, To string
	// Bound is the snapshot the search's first page was run at (the
	// engine's _lastUpdated=lt<instant>): every later page is run at it,
	// so that paging shows each AuditEvent once though every page view
	// is itself audited (docs/fhir.md, AuditEvent searches).
	Bound string
}

// pageSize is the AuditEvents per page; exportLimit bounds an export.
const (
	pageSize    = 25
	exportLimit = 10000
)

// dateLayouts are what the form's date and datetime-local inputs send.
// An RFC 3339 time (what the API and the CLI take) is read too.
var dateLayouts = []string{"2006-01-02", "2006-01-02T15:04", "2006-01-02T15:04:05", time.RFC3339Nano}

// parseDate reads a form date ("" zero).
func parseDate(v string) (time.Time, bool) {
	if v == "" {
		return time.Time{}, true
	}
	for _, l := range dateLayouts {
		if t, err := time.Parse(l, v); err == nil {
			return t, true
		}
	}
	return time.Time{}, false
}

// formDate is a form date with the instants it covers: a day the whole
// day, a date and minute the whole minute, a date and second the whole
// second (FHIR's date precision, search.html#date), an RFC 3339 time as
// given.
type formDate struct {
	low, high time.Time
	search    string // the FHIR search value, at the form's precision
}

// readFormDate reads a form date ("" the zero formDate).
func readFormDate(v string) (formDate, bool) {
	if v == "" {
		return formDate{}, true
	}
	for _, l := range []struct {
		layout, search string
		unit           time.Duration
	}{
		{"2006-01-02", "2006-01-02", 24 * time.Hour},
		{"2006-01-02T15:04", "2006-01-02T15:04Z", time.Minute},
		{"2006-01-02T15:04:05", "2006-01-02T15:04:05Z", time.Second},
	} {
		if t, err := time.Parse(l.layout, v); err == nil {
			return formDate{low: t, high: t.Add(l.unit - time.Millisecond), search: t.Format(l.search)}, true
		}
	}
	if t, err := time.Parse(time.RFC3339Nano, v); err == nil {
		t = t.UTC()
		return formDate{low: t, high: t, search: t.Format("2006-01-02T15:04:05.999999999Z")}, true
	}
	return formDate{}, false
}

// searchDate turns a form date into a FHIR search date at the form's
// precision, so that "ge" starts and "le" ends with the whole day, minute
// or second typed (search.html#prefix: le matches what the value's range
// ends at or after).
func searchDate(v string) string {
	d, _ := readFormDate(v)
	return d.search
}

// plainText reports whether a form value is short text without control
// characters.
func plainText(v string) bool {
	return text.OneLine(v, 200)
}

// validate returns a message per malformed field, by the field's name
// (the field's label, what is wanted; never the value): the page marks
// each field invalid and describes it by its message (probe p26 F2).
func (q *auditSearch) validate() map[string]string {
	bad := map[string]string{}
	for _, f := range []struct{ name, label, v string }{{"patient", "Patient identifier", q.Patient}, {"client", "Client", q.Client}} {
		if !plainText(f.v) {
			bad[f.name] = f.label + ": at most 200 characters, without control characters"
		}
	}
	// The identifier is searched as a FHIR token: what the token parser
	// refuses (| alone, two |) is named here, at the field, not by the
	// results page as a FHIR parameter the person never typed (probe p16
	// F10).
	if q.Patient != "" && plainText(q.Patient) && !patientToken(q.Patient) {
		bad["patient"] = "Patient identifier: a value, or system|value: at most one |, with a system or a value beside it"
	}
	if !slices.Contains([]string{"", "C", "R", "U", "D", "E"}, q.Action) {
		bad["action"] = "Action: choose one of the listed actions"
	}
	if !slices.Contains([]string{"", "0", "4", "8"}, q.Outcome) {
		bad["outcome"] = "Outcome: choose one of the listed outcomes"
	}
	if q.Interaction != "" && !audit.Known(q.Interaction) {
		bad["interaction"] = "Interaction: choose one of the listed interactions"
	}
	from, okFrom := readFormDate(q.From)
	to, okTo := readFormDate(q.To)
	if !okFrom {
		bad["from"] = "From: a date like 2026-11-25 (or a date and time)"
	}
	if !okTo {
		bad["to"] = "To: a date like 2026-11-25 (or a date and time)"
	}
	// "To" includes the whole day, minute or second typed.
	if okFrom && okTo && q.From != "" && q.To != "" && to.high.Before(from.low) {
		bad["to"] = "To: must not be before From"
	}
	return bad
}

// searchFields are the search form's fields in their order on the page.
var searchFields = []string{"patient", "client", "interaction", "action", "outcome", "from", "to"}

// fieldError is one item of a form's error summary: the message and the
// id of the field it links to.
type fieldError struct{ ID, Message string }

// searchForm is the search page's data.
type searchForm struct {
	Q            auditSearch
	ID           string
	Errors       map[string]string // by field name (validate)
	Interactions []string
	Results      *searchResults
}

// ErrorList is Errors in the form's order, each with the id of its field,
// for the summary above the form.
func (f searchForm) ErrorList() []fieldError {
	var out []fieldError
	for _, k := range searchFields {
		if m, ok := f.Errors[k]; ok {
			out = append(out, fieldError{ID: "f-" + k, Message: m})
		}
	}
	return out
}

// searchResults is one page of matches.
type searchResults struct {
	Rows     []auditlog.RequestView
	Page     int
	From, To int
	Total    int  // every match (-1 not counted)
	More     bool // a next page has matches
	// Folded counts the tenants' shares of all-tenant requests on this
	// page left out because the request's whole record is on it: From,
	// To and Total count AuditEvents, Rows shows each request once
	// (auditlog.FoldShares).
	Folded    int
	NoPatient bool
	// Bound is the snapshot the engine ran the search at (SearchResult.Bound).
	Bound string
	// Params is the FHIR search run (without paging), for an export's
	// self link: patients by id, never by identifier.
	Params url.Values
}

// summary is what the search found, in a few words, for the page's title.
func (r *searchResults) summary() string {
	switch {
	case r.NoPatient:
		return "No patient has that identifier"
	case len(r.Rows) == 0 && r.Total > 0:
		// A page past the last (a bookmark, an edited page=): the search
		// matches, this page does not (p45: it read "No request matches").
		return fmt.Sprintf("Page %d is past the last of %d AuditEvents", r.Page, r.Total)
	case len(r.Rows) == 0:
		return "No request matches"
	case r.Total >= 0:
		return fmt.Sprintf("AuditEvents %d to %d of %d", r.From, r.To, r.Total)
	}
	return fmt.Sprintf("AuditEvents %d to %d", r.From, r.To)
}

// searchParams are params without the paging and counting ones.
func searchParams(params url.Values) url.Values {
	out := url.Values{}
	for k, vs := range params {
		if k != "_count" && k != "_offset" && k != "_total" {
			out[k] = vs
		}
	}
	return out
}

// formSearch reads the search form.
func formSearch(rq *request) auditSearch {
	f := rq.r.PostFormValue
	return auditSearch{Patient: strings.TrimSpace(f("patient")), Client: strings.TrimSpace(f("client")),
		Action: f("action"), Outcome: f("outcome"), Interaction: f("interaction"), From: f("from"), To: f("to")}
}

// auditSearchSubmit checks the form and keeps the criteria in the session.
func (c *Console) auditSearchSubmit(rq *request) error {
	q := formSearch(rq)
	if bad := q.validate(); len(bad) > 0 {
		rq.status = 400
		rq.sc.Rules = []string{"console-search-invalid"}
		return rq.render("audit", "Audit trail", searchForm{Q: q, Errors: bad, Interactions: audit.Interactions()})
	}
	rq.sc.Interaction = "" // nothing searched yet: the GET it leads to is the search
	return rq.seeOther(Prefix + "/audit?q=" + rq.sess.saveSearch(q))
}

// auditSearch shows the form, and with ?q= one page of the saved search.
func (c *Console) auditSearch(rq *request) error {
	form := searchForm{Interactions: audit.Interactions()}
	id := rq.r.URL.Query().Get("q")
	if id == "" {
		rq.sc.Interaction = ""
		return rq.render("audit", "Audit trail", form)
	}
	q, ok := rq.sess.search(id)
	if !ok {
		rq.sc.Interaction = ""
		return outcome.New(outcome.NotFound, "not-found", "console-search-unknown",
			"this search is no longer kept (searches last as long as your session); search again")
	}
	page, err := strconv.Atoi(rq.r.URL.Query().Get("page"))
	if err != nil || page < 1 {
		page = 1
	}
	form.Q, form.ID = q, id
	res, _, err := c.runSearch(rq, q, pageSize, (page-1)*pageSize, true)
	if err != nil {
		return err
	}
	if q.Bound == "" && res.Bound != "" {
		// The first page run: the later pages are run at its snapshot.
		rq.sess.boundSearch(id, res.Bound)
	}
	res.Page = page
	// The page shows each request once; an export keeps every AuditEvent
	// (the Bundle is what is stored, the CSV a row each).
	res.Rows, res.Folded = auditlog.FoldShares(res.Rows)
	form.Results = res
	rq.outcome = res.summary()
	return rq.render("audit", "Audit trail", form)
}

// runSearch runs one page of q through the engine (the page's scope
// records what it read) and returns the rows and the raw matches; with
// total, res.Total counts every match.
func (c *Console) runSearch(rq *request, q auditSearch, count, offset int, total bool) (*searchResults, [][]byte, error) {
	res := &searchResults{Total: -1}
	// Newest first by _lastUpdated, which for an AuditEvent is the instant
	// it was recorded (the gateway stores it so) and has an index of its
	// own; one match more than the page tells whether there is a next page.
	// The total (docs/console.md promises it) is counted only when asked:
	// for the page shown, and once per export, not for every chunk of
	// one (at 100,000 AuditEvents a count costs more than the page:
	// docs/BENCHMARKS.md).
	params := url.Values{"_sort": {"-_lastUpdated"}, "_count": {strconv.Itoa(count + 1)}, "_offset": {strconv.Itoa(offset)},
		"_total": {"none"}}
	if total {
		params.Set("_total", "accurate")
	}
	if q.Patient != "" {
		pats, err := c.app.Engine.Search(rq.ctx(), rq.sc, "Patient",
			url.Values{"identifier": {patientFieldToken(q.Patient)}, "_count": {"100"}, "_total": {"none"}}, false)
		if err != nil {
			return nil, nil, err
		}
		var refs []string
		for _, p := range pats.Page.Matches {
			refs = append(refs, "Patient/"+p.ID)
		}
		if len(refs) == 0 {
			res.NoPatient = true
			rq.sc.Description = "console AuditEvent search: no patient with that identifier"
			return res, nil, nil
		}
		params.Set("patient", strings.Join(refs, ","))
	}
	if q.Client != "" {
		params.Set("agent:identifier", search.Token(audit.SystemClient, q.Client))
	}
	if q.Action != "" {
		params.Set("action", q.Action)
	}
	if q.Outcome != "" {
		params.Set("outcome", q.Outcome)
	}
	if q.Interaction != "" {
		// What the interaction is stored as: login and logout under their
		// DICOM codes (audit.Subtype).
		params.Set("subtype", search.Token(audit.Subtype(q.Interaction)))
	}
	if q.From != "" {
		params.Add("date", "ge"+searchDate(q.From))
	}
	if q.To != "" {
		params.Add("date", "le"+searchDate(q.To))
	}
	if q.Bound != "" {
		params.Set("_lastUpdated", q.Bound)
	}
	sr, err := c.app.Engine.Search(rq.ctx(), rq.sc, "AuditEvent", params, false)
	if err != nil {
		return nil, nil, err
	}
	res.Bound = sr.Bound
	if res.Bound == "" {
		res.Bound = q.Bound
	}
	matches := sr.Page.Matches
	if total {
		res.Total = sr.Page.Total
	}
	res.Params = searchParams(params)
	if len(matches) > count {
		matches, res.More = matches[:count], true
	}
	raws := make([][]byte, 0, len(matches))
	for _, m := range matches {
		var doc map[string]any
		if err := json.Unmarshal(m.Body, &doc); err != nil {
			return nil, nil, fmt.Errorf("stored AuditEvent %s: %w", m.ID, err)
		}
		res.Rows = append(res.Rows, auditlog.ViewAuditEvent(doc))
		raws = append(raws, m.Body)
	}
	res.From, res.To = offset+1, offset+len(res.Rows)
	// The API's words (engine searchDescription): the matches in all,
	// when counted, and those on this page.
	rq.sc.Description = fmt.Sprintf("console AuditEvent search: %s on this page (total not counted)",
		auditlog.CountedAs(len(res.Rows), "match", "matches"))
	if res.Total >= 0 {
		rq.sc.Description = fmt.Sprintf("console AuditEvent search: %s in all, %d on this page",
			auditlog.CountedAs(res.Total, "match", "matches"), len(res.Rows))
	}
	return res, raws, nil
}

// patientToken reports whether v, the form's patient identifier, is a
// token the Patient search takes as runSearch sends it.
func patientToken(v string) bool {
	_, err := search.Parse("Patient", url.Values{"identifier": {patientFieldToken(v)}}, false)
	return err == nil
}

// patientFieldToken is the form's patient field as an identifier token:
// the characters that separate values (`,` `$`) and the escape itself are
// escaped (search.html#escaping), but not `|`, which the person types to
// name a system ("system|value"), unlike search.Token, which escapes a
// known system and value each.
func patientFieldToken(v string) string {
	r := strings.NewReplacer(`\`, `\\`, `,`, `\,`, `$`, `\$`)
	return r.Replace(v)
}

// auditExport answers the saved search as CSV or as a searchset Bundle
// (at most exportLimit AuditEvents).
func (c *Console) auditExport(rq *request) error {
	q, ok := rq.sess.search(rq.r.PostFormValue("q"))
	if !ok {
		return outcome.New(outcome.NotFound, "not-found", "console-search-unknown",
			"this search is no longer kept (searches last as long as your session); search again")
	}
	format := rq.r.PostFormValue("format")
	if format != "csv" && format != "bundle" {
		return outcome.New(outcome.Invalid, "invalid", "console-export-format", "choose CSV or FHIR Bundle")
	}
	var rows []auditlog.RequestView
	var raws [][]byte
	total := -1
	var params url.Values
	for off := 0; off < exportLimit; off += 1000 {
		res, r, err := c.runSearch(rq, q, 1000, off, off == 0)
		if err != nil {
			return err
		}
		if off == 0 {
			total, params = res.Total, res.Params
		}
		rows, raws = append(rows, res.Rows...), append(raws, r...)
		if !res.More {
			break
		}
	}
	rq.sc.Description = fmt.Sprintf("console AuditEvent export (%s): %d records", format, len(rows))
	stamp := c.now().UTC().Format("20060102-150405")
	if format == "csv" {
		rq.download = &download{name: "audit-events-" + stamp + ".csv", contentType: "text/csv; charset=utf-8", body: auditCSV(rows)}
		return nil
	}
	body, err := searchsetBundle(rq.fhirBase(), params, total, raws)
	if err != nil {
		return err
	}
	rq.download = &download{name: "audit-events-" + stamp + ".json", contentType: "application/fhir+json", body: body}
	return nil
}

// fhirBase is the FHIR base the export's fullUrls are under: the one the
// HTTP edge worked out for the request (the configured public base, else
// the address the client used, its scheme from a trusted proxy only), as
// the API's fullUrls are; without the edge (the console's own tests) the
// connection's.
func (rq *request) fhirBase() string {
	if rq.sc.Base != "" {
		return rq.sc.Base
	}
	scheme := "http"
	if rq.r.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + rq.r.Host + "/fhir"
}

// searchsetBundle wraps stored AuditEvents in a searchset Bundle with
// absolute fullUrls under base (Bundle.entry.fullUrl is "the absolute URL
// for the resource") and a self link naming the search run (params;
// patients by id); total counts every match (-1: the AuditEvents given).
func searchsetBundle(base string, params url.Values, total int, raws [][]byte) ([]byte, error) {
	type link struct {
		Relation string `json:"relation"`
		URL      string `json:"url"`
	}
	type entry struct {
		FullURL  string          `json:"fullUrl"`
		Resource json.RawMessage `json:"resource"`
		Search   map[string]any  `json:"search"`
	}
	entries := make([]entry, 0, len(raws))
	for _, r := range raws {
		var id struct{ ID string }
		if err := json.Unmarshal(r, &id); err != nil {
			return nil, err
		}
		entries = append(entries, entry{FullURL: base + "/AuditEvent/" + id.ID, Resource: r, Search: map[string]any{"mode": "match"}})
	}
	if total < 0 {
		total = len(raws)
	}
	self := base + "/AuditEvent"
	if len(params) > 0 {
		self += "?" + params.Encode()
	}
	return json.MarshalIndent(map[string]any{"resourceType": "Bundle", "type": "searchset", "total": total,
		"link": []link{{Relation: "self", URL: self}}, "entry": entries}, "", "  ")
}

// auditCSV renders rows as CSV; a cell a spreadsheet would take for a
// formula gets a leading apostrophe.
func auditCSV(rows []auditlog.RequestView) []byte {
	var b bytes.Buffer
	w := csv.NewWriter(&b)
	_ = w.Write([]string{"recorded", "auditEvent", "interaction", "action", "outcome", "description", "client",
		"address", "tenant", "traceId", "requestId", "entities"})
	for _, r := range rows {
		_ = w.Write(safeCells(r.Recorded, r.AuditEvent, r.Interaction, r.Action, r.Outcome, r.Description, r.Client,
			r.Address, r.Tenant, r.TraceID, r.RequestID, strings.Join(r.Entities, " ")))
	}
	w.Flush()
	return b.Bytes()
}

// safeCells neutralises spreadsheet formulas.
func safeCells(cells ...string) []string {
	for i, c := range cells {
		if c != "" && strings.ContainsRune("=+-@\t\r", rune(c[0])) {
			cells[i] = "'" + c
		}
	}
	return cells
}
