package delivery

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/fhirwire"
)

// Outcomes of an attempt (Result.Outcome, Observer.OnAttempt).
const (
	OutcomeDone  = "done"
	OutcomeRetry = "retry"
	OutcomeDead  = "dead"
	// OutcomeInterrupted is an attempt whose worker stopped (or could not
	// record it) before its answer was recorded: the destination may have
	// received the record. It is recorded, and audited, when the item is
	// claimed again, before the record is sent again.
	OutcomeInterrupted = "interrupted"
)

// interruptedError is the Error of an interrupted attempt's row.
const interruptedError = "interrupted: the gateway stopped during this attempt, or could not record it; the EHR may have received the record, which is sent again"

// Result is the classified outcome of one delivery attempt.
type Result struct {
	// Outcome is OutcomeDone, OutcomeRetry or OutcomeDead.
	Outcome string
	// HTTPStatus is the decisive HTTP status (0 without an answer).
	HTTPStatus int
	// Body is the decisive answer: the transaction-response (synthesized
	// from the entry responses in batch and single mode) on success, the
	// OperationOutcome or the body received on failure. Not truncated.
	Body []byte
	// Error is the PHI-free reason, empty when done.
	Error string
	// RetryAfter is the answer's Retry-After, a floor for the next try.
	RetryAfter time.Duration
	// DestinationWide marks failures of the destination as a whole
	// (unreachable, 429, 503, authorization): the worker then pauses the
	// destination, not just the item.
	DestinationWide bool
	// Outage marks a failure of an EHR that is down or overloaded (no
	// connection, a timeout, a 5xx, a 429), not a configuration problem
	// (authorization, TLS, a redirect): a probe of a destination on hold
	// that fails so does not count toward the record's attempt limit.
	Outage bool
	// EntryStatus is the status of the entry that failed when the EHR
	// answered a batch with a status per entry (HTTPStatus is then the
	// status of the answer itself, 200); 0 otherwise.
	EntryStatus int
	// Mode is the mode the attempt ended in (after fallbacks).
	Mode Mode
	// NotSent marks an attempt that ended before any request left: the
	// destination's filter refused the record, or it had nothing to send.
	// Nothing was disclosed, so it has no AuditEvent of a transmission.
	NotSent bool
}

func deadResult(reason string) Result { return Result{Outcome: OutcomeDead, Error: reason} }

// notSent is the dead letter of an attempt that sent nothing.
func notSent(reason string) Result { return Result{Outcome: OutcomeDead, Error: reason, NotSent: true} }

func netResult(err error) Result {
	ne := describe(err)
	return Result{Outcome: OutcomeRetry, Error: ne.reason, DestinationWide: ne.destWide, HTTPStatus: ne.status,
		Outage: ne.outage()}
}

// issueCode keeps an OperationOutcome issue code printable in a reason.
var issueCode = regexp.MustCompile(`^[a-z][a-z-]{0,31}$`)

// outcomeCode returns the first issue code of an OperationOutcome body.
func outcomeCode(body []byte) string {
	var oo struct {
		ResourceType string `json:"resourceType"`
		Issue        []struct {
			Code string `json:"code"`
		} `json:"issue"`
	}
	if json.Unmarshal(body, &oo) != nil || oo.ResourceType != "OperationOutcome" || len(oo.Issue) == 0 ||
		!issueCode.MatchString(oo.Issue[0].Code) {
		return ""
	}
	return oo.Issue[0].Code
}

// classifyStatus classifies a non-2xx status: whether to retry, and
// whether it concerns the whole destination.
func classifyStatus(code int) (outcome string, destWide bool) {
	switch {
	case code == http.StatusTooManyRequests, code == http.StatusServiceUnavailable,
		code == http.StatusUnauthorized:
		return OutcomeRetry, true
	case code >= 300 && code < 400:
		return OutcomeRetry, true // a redirect not followed: a configuration problem
	case code == http.StatusRequestTimeout, code == http.StatusConflict, code >= 500:
		return OutcomeRetry, false // a 409 up to ConflictAttempts (worker)
	case code >= 400:
		return OutcomeDead, false
	}
	return OutcomeRetry, false
}

// failure builds the Result of a non-2xx answer; what names the request
// ("" for the whole Bundle).
func (c *Client) failure(what string, resp *response, outcome []byte) Result {
	out, wide := classifyStatus(resp.status)
	reason := "http " + strconv.Itoa(resp.status)
	if resp.status >= 300 && resp.status < 400 {
		reason += " redirect not followed"
		if to := c.redirectTarget(resp.header); to != "" {
			reason += ": to " + to
		}
	}
	if outcome == nil {
		outcome = resp.body
	}
	if code := outcomeCode(outcome); code != "" {
		reason += " (" + code + ")"
	}
	if resp.status == http.StatusPreconditionFailed {
		// What the EHR's 412 means for the gateway's conditional requests,
		// and the remedy (docs/mapping.md §6).
		// The gateway sends no If-Match, so a conditional request's
		// criteria matching several resources is the likely cause, not a
		// certain one; a 412 to the whole Bundle names no entry (an EHR
		// review: stated as a fact, without saying which entry).
		likely := "most likely more than one resource at the EHR matches a conditional request's criteria"
		if what == "" {
			likely += " (the EHR's answer names no entry: its OperationOutcome may)"
		}
		reason += ": " + likely + " (for a Patient: one with the clinic identifier, another with the MRN); merge them at " +
			"the EHR, then retry the delivery (once a later version of the record is delivered there, it supersedes this one: " +
			"nothing is to retry)"
	}
	if what != "" {
		reason = what + ": " + reason
	}
	return Result{Outcome: out, HTTPStatus: resp.status, Body: outcome, Error: reason,
		RetryAfter: retryAfter(resp.header, c.clock.Now()), DestinationWide: wide,
		Outage: resp.status >= 500 || resp.status == http.StatusTooManyRequests}
}

func is2xx(code int) bool { return code >= 200 && code < 300 }

// Deliver sends one item's transaction Bundle in mode (the effective mode:
// see Capabilities.Mode; "" means the configured one) and classifies the
// answer. A transaction over MaxEntries, or answered 413, is sent in batch
// mode; a batch answered 413 in single mode. It never panics on any
// answer; errors are in the Result.
func (c *Client) Deliver(ctx context.Context, payload []byte, mode Mode) Result {
	var refused atomic.Int32
	r := c.deliver(context.WithValue(ctx, refusedKey{}, &refused), payload, mode)
	if n := refused.Load(); n > 0 {
		// The EHR received the payload (or an entry of it) more than once:
		// the attempt says so, also when it succeeded.
		note := fmt.Sprintf("%d request(s) refused with http 401 and sent again with a new token", n)
		if r.Error == "" {
			r.Error = note
		} else {
			r.Error += "; " + note
		}
	}
	return r
}

// refusedKey is the context key of the count of requests of one attempt
// the EHR refused with a 401 and the client sent again (Client.do).
type refusedKey struct{}

// deliver is Deliver without the note on refused requests.
func (c *Client) deliver(ctx context.Context, payload []byte, mode Mode) Result {
	b, err := parsePayload(payload)
	if err != nil {
		return deadResult(err.Error())
	}
	if mode == "" {
		mode = c.dest.Mode
	}
	if mode == ModeTransaction && c.dest.MaxEntries > 0 && len(b.Entry) > c.dest.MaxEntries {
		mode = ModeBatch
	}
	if mode == ModeTransaction {
		r := c.sendTransaction(ctx, payload, b)
		if r.HTTPStatus != http.StatusRequestEntityTooLarge {
			r.Mode = ModeTransaction
			return r
		}
		mode = ModeBatch
	}
	p, err := newPlan(b)
	if err != nil {
		return deadResult(err.Error())
	}
	if mode == ModeBatch {
		r := c.sendBatches(ctx, p)
		if r.HTTPStatus != http.StatusRequestEntityTooLarge {
			r.Mode = ModeBatch
			return r
		}
	}
	r := c.sendSingles(ctx, p)
	r.Mode = ModeSingle
	return r
}

func (c *Client) sendTransaction(ctx context.Context, payload []byte, b *fhirwire.Bundle) Result {
	resp, err := c.do(ctx, http.MethodPost, c.url(""), payload, http.Header{"Prefer": {"return=minimal"}})
	if err != nil {
		return netResult(err)
	}
	if !is2xx(resp.status) {
		return c.failure("", resp, nil)
	}
	rb, err := readResponseBundle(resp.body, "transaction-response", len(b.Entry))
	if err != nil {
		return Result{Outcome: OutcomeRetry, HTTPStatus: resp.status, Body: resp.body, Error: err.Error()}
	}
	// An EHR that answers a transaction 2xx with a failed entry did not
	// apply it atomically (or answered a DELETE of what is gone 404): each
	// entry is classified as in batch mode.
	r := c.entriesFailure(resp, rb, func(i int) (string, string) {
		req := b.Entry[i].Request
		return entryWhat(i, req.Method, entryType(req.URL)), req.Method
	})
	if r == nil {
		return Result{Outcome: OutcomeDone, HTTPStatus: resp.status, Body: resp.body}
	}
	applied := 0
	for _, e := range rb.Entry {
		if is2xx(fhirwire.StatusCode(e.Response.Status)) {
			applied++
		}
	}
	if applied > 0 {
		r.Error += fmt.Sprintf("; the EHR applied the transaction's other entries (%d of %d answered 2xx): it did not "+
			"process the transaction atomically, and holds them", applied, len(rb.Entry))
	}
	r.Body = resp.body // the transaction-response: every entry's status, the failed one's outcome
	return *r
}

// entriesFailure classifies the entries of rb, the 2xx batch- or
// transaction-response resp, as entryFailure does each (name gives entry
// i's name and request method): the first dead letter (permanent:
// retrying the others cannot help), else the first failure to retry; nil
// when every entry is complete.
func (c *Client) entriesFailure(resp *response, rb *fhirwire.Bundle, name func(i int) (what, method string)) *Result {
	var retry *Result
	for i, e := range rb.Entry {
		what, method := name(i)
		r := c.entryFailure(what, method, resp, e.Response)
		switch {
		case r == nil:
		case r.Outcome == OutcomeDead:
			return r
		case retry == nil:
			retry = r
		}
	}
	return retry
}

// entryFailure classifies one entry's answer (e, of the entry that what
// names, whose request method is method) in resp, a 2xx batch- or
// transaction-response: nil when it completes the entry (entryOK); else
// what the same status would be for a request of its own (failure: a 4xx
// a dead letter, a 412 with its remedy, a 5xx or 429 retried), recording
// the status the EHR answered (HTTPStatus) and the entry's (EntryStatus).
func (c *Client) entryFailure(what, method string, resp *response, e *fhirwire.Response) *Result {
	code := fhirwire.StatusCode(e.Status)
	if entryOK(method, code) {
		return nil
	}
	r := c.failure(what, &response{status: code, header: resp.header}, e.Outcome)
	r.HTTPStatus, r.EntryStatus = resp.status, code // the EHR answered 2xx; the entry failed
	if r.Body == nil {
		r.Body = resp.body
	}
	return &r
}

// entryOK reports whether code completes an entry whose request method
// is method: 2xx, or 404/410 for a DELETE (already gone: a re-sent
// delete).
func entryOK(method string, code int) bool {
	return is2xx(code) || (method == http.MethodDelete && (code == http.StatusNotFound || code == http.StatusGone))
}

// entryWhat names entry index of a payload (its request's method, and the
// resource type typ) in a reason.
func entryWhat(index int, method, typ string) string {
	return fmt.Sprintf("Bundle.entry[%d] (%s %s)", index, method, typ) // FHIRPath: counted from 0
}

// entryType is the resource type of a request URL ("Patient",
// "Observation?identifier=..." and "AdverseEvent/<id>" name theirs).
func entryType(u string) string {
	typ, _, _ := strings.Cut(u, "?")
	typ, _, _ = strings.Cut(typ, "/")
	return typ
}

func (s *step) what() string { return entryWhat(s.index, s.entry.Request.Method, s.typ) }

func (c *Client) sendBatches(ctx context.Context, p *plan) Result {
	size := c.dest.MaxEntries
	for _, wave := range p.waves {
		for start := 0; start < len(wave); {
			n := len(wave) - start
			if size > 0 {
				n = min(n, size)
			}
			if r := c.sendBatch(ctx, p, wave[start:start+n]); r.Outcome != OutcomeDone {
				return p.partial(r, wave[start:start+n])
			}
			start += n
		}
	}
	return Result{Outcome: OutcomeDone, HTTPStatus: http.StatusOK, Body: p.responseBundle()}
}

func (c *Client) sendBatch(ctx context.Context, p *plan, chunk []*step) Result {
	out := fhirwire.Bundle{ResourceType: "Bundle", Type: "batch"}
	for _, s := range chunk {
		res, err := p.resource(s)
		if err != nil {
			return deadResult(err.Error())
		}
		out.Entry = append(out.Entry, fhirwire.Entry{FullURL: s.entry.FullURL, Resource: res, Request: s.entry.Request})
	}
	body, err := json.Marshal(out)
	if err != nil {
		return deadResult("cannot encode the batch Bundle")
	}
	resp, err := c.do(ctx, http.MethodPost, c.url(""), body, http.Header{"Prefer": {"return=minimal"}})
	if err != nil {
		return netResult(err)
	}
	if !is2xx(resp.status) {
		return c.failure("batch", resp, nil)
	}
	rb, err := readResponseBundle(resp.body, "batch-response", len(chunk))
	if err != nil {
		return Result{Outcome: OutcomeRetry, HTTPStatus: resp.status, Body: resp.body, Error: err.Error()}
	}
	for i, e := range rb.Entry {
		chunk[i].entry.Response = e.Response
	}
	if r := c.entriesFailure(resp, rb, func(i int) (string, string) {
		return chunk[i].what(), chunk[i].entry.Request.Method
	}); r != nil {
		return *r
	}
	for i, e := range rb.Entry {
		if r := c.resolve(ctx, p, chunk[i], e.Response.Location, e.Resource); r != nil {
			return *r
		}
	}
	return Result{Outcome: OutcomeDone, HTTPStatus: resp.status}
}

func (c *Client) sendSingles(ctx context.Context, p *plan) Result {
	for _, wave := range p.waves {
		for _, s := range wave {
			if r := c.sendSingle(ctx, p, s); r != nil {
				return p.partial(*r, []*step{s})
			}
		}
	}
	return Result{Outcome: OutcomeDone, HTTPStatus: http.StatusOK, Body: p.responseBundle()}
}

func (c *Client) sendSingle(ctx context.Context, p *plan, s *step) *Result {
	req := s.entry.Request
	hdr := http.Header{}
	for k, v := range map[string]string{"If-None-Exist": req.IfNoneExist, "If-Match": req.IfMatch,
		"If-None-Match": req.IfNoneMatch, "If-Modified-Since": req.IfModifiedSince} {
		if v != "" {
			hdr.Set(k, v)
		}
	}
	var body []byte
	if req.Method == http.MethodPost || req.Method == http.MethodPut || req.Method == http.MethodPatch {
		res, err := p.resource(s)
		if err != nil {
			r := deadResult(err.Error())
			return &r
		}
		body = res
	}
	resp, err := c.do(ctx, req.Method, c.url(req.URL), body, hdr)
	if err != nil {
		r := netResult(err)
		r.Error = s.what() + ": " + r.Error
		return &r
	}
	if !entryOK(s.entry.Request.Method, resp.status) {
		r := c.failure(s.what(), resp, nil)
		return &r
	}
	loc := resp.header.Get("Location")
	if loc == "" {
		loc = resp.header.Get("Content-Location")
	}
	s.entry.Response = &fhirwire.Response{Status: strconv.Itoa(resp.status) + " " + http.StatusText(resp.status), Location: loc,
		Etag: resp.header.Get("ETag"), LastModified: resp.header.Get("Last-Modified")}
	return c.resolve(ctx, p, s, loc, resp.body)
}

// redirectTarget names a redirect's Location (resolved against the base
// URL) for the error and the log: its scheme, host and port, and where its
// path lies against the configured base's (the base's path itself, below
// it, or another path), so the engineer can tell a moved base (fix baseUrl)
// from a login redirect (fix auth); "" if there is none. No part of the
// target's path, query, fragment or user info is quoted: an EHR or its
// sign-on proxy may put anything there (a resource's id, a patient's MRN
// or name, in any case: /ehr/patients/mrn-1234/chart).
func (c *Client) redirectTarget(h http.Header) string {
	loc := h.Get("Location")
	if loc == "" {
		return ""
	}
	base, err := url.Parse(c.dest.BaseURL)
	if err != nil {
		return ""
	}
	u, err := base.Parse(loc)
	if err != nil || u.Host == "" {
		return ""
	}
	to := (&url.URL{Scheme: u.Scheme, Host: u.Host}).String()
	if len(to) > 200 {
		to = to[:200] + "..."
	}
	bp, p := strings.TrimSuffix(base.Path, "/"), strings.TrimSuffix(u.Path, "/")
	switch {
	case p == bp:
		return to + " (the base's path)"
	case strings.HasPrefix(p, bp+"/"):
		return to + " (a path below the base's)"
	}
	return to + " (another path than the base's)"
}

// ConflictAttempts is the attempt at which a 409 makes a record a dead
// letter. A 409 is mostly a transient version conflict at a FHIR server,
// or the EHR still processing an earlier attempt that timed out (two
// conditional writes of the same identifiers at once): it is retried, not
// before the destination's timeout has passed, until then.
const ConflictAttempts = 5
