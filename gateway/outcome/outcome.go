// Package outcome is the gateway's vocabulary of failure: every error the
// application returns says what kind of failure happened (Kind) and which
// rules were broken where (Issues), never which HTTP status to send. The HTTP
// edge maps kinds to statuses in one table; the CLI maps them to exit codes.
//
// From turns any error of the packages below (schemas, mapping, store, auth,
// the R4 validator) into a kind and issues, so every entry point reports the
// same input the same way. Issue texts never quote request content.
package outcome

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	fhir "github.com/samply/golang-fhir-models/fhir-models/fhir"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/auth"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/search"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
	"github.com/ketamine-gateway/ketamine-gateway/mapping"
	"github.com/ketamine-gateway/ketamine-gateway/schemas"
	"github.com/ketamine-gateway/ketamine-gateway/schemas/r4"
)

// RuleSystem is the CodeSystem of the gateway's validation rule ids, used in
// OperationOutcome.issue.details.coding.
const RuleSystem = mapping.Canonical + "/CodeSystem/validation-rule"

// Kind says what kind of failure happened. The zero value is Internal, so
// an error nobody classified is never mistaken for a client's mistake.
type Kind uint8

// The kinds of failure.
const (
	Internal           Kind = iota // the gateway failed; the cause is logged, not reported
	Invalid                        // the request is malformed or breaks a structural rule
	Unauthorized                   // no valid credentials
	Forbidden                      // the credentials do not allow this
	NotFound                       // no such resource, endpoint or record
	MethodNotAllowed               // the target does not support the interaction
	NotAcceptable                  // no acceptable representation (only JSON is served)
	Conflict                       // the request conflicts with stored state
	Gone                           // the resource was deleted
	PreconditionFailed             // a condition (If-Match, conditional criteria) does not hold
	TooLarge                       // the request exceeds a size limit
	UnsupportedMedia               // the body's media type is not accepted
	Unprocessable                  // well-formed, but breaks a clinical or profile rule
	Throttled                      // too many requests
	NotImplemented                 // the deployment does not offer this
	Unavailable                    // a dependency (the database, the audit log) is unavailable or busy
	URITooLong                     // the request's target is longer than the server reads
	HeadTooLarge                   // the request's header fields are larger than the server reads
)

var kindNames = [...]string{"internal", "invalid", "unauthorized", "forbidden", "not-found", "method-not-allowed",
	"not-acceptable", "conflict", "gone", "precondition-failed", "too-large", "unsupported-media", "unprocessable",
	"throttled", "not-implemented", "unavailable", "uri-too-long", "head-too-large"}

// statuses is the one table from kinds to HTTP statuses and default
// OperationOutcome issue codes. The HTTP edge answers with it; the engine
// uses it for the entries of a batch-response, which FHIR reports as HTTP
// statuses (bundle.html#batch).
var statuses = [...]struct {
	status int
	code   string
}{
	Internal:           {500, "exception"},
	Invalid:            {400, "invalid"},
	Unauthorized:       {401, "login"},
	Forbidden:          {403, "forbidden"},
	NotFound:           {404, "not-found"},
	MethodNotAllowed:   {405, "not-supported"},
	NotAcceptable:      {406, "not-supported"},
	Conflict:           {409, "conflict"},
	Gone:               {410, "deleted"},
	PreconditionFailed: {412, "conflict"},
	TooLarge:           {413, "too-costly"},
	UnsupportedMedia:   {415, "not-supported"},
	Unprocessable:      {422, "business-rule"},
	Throttled:          {429, "throttled"},
	NotImplemented:     {501, "not-supported"},
	Unavailable:        {503, "transient"},
	URITooLong:         {414, "too-long"},
	HeadTooLarge:       {431, "too-long"},
}

// HTTPStatus is the HTTP status that answers a failure of kind k.
func (k Kind) HTTPStatus() int {
	if int(k) < len(statuses) {
		return statuses[k].status
	}
	return 500
}

// IssueCode is the OperationOutcome issue type of a failure of kind k when
// its issue names none.
func (k Kind) IssueCode() string {
	if int(k) < len(statuses) {
		return statuses[k].code
	}
	return "exception"
}

// String names the kind.
func (k Kind) String() string {
	if int(k) < len(kindNames) {
		return kindNames[k]
	}
	return "kind(" + strconv.Itoa(int(k)) + ")"
}

// Issue is one problem to report in an OperationOutcome.
type Issue struct {
	Severity string // fatal | error | warning | information ("" is error)
	Code     string // FHIR issue-type code (Kind.IssueCode when the issue is made for a kind alone)
	Rule     string // the gateway's rule id
	// Pointer is a JSON pointer into a native record; Expression a FHIRPath
	// (or, for native records, the same location in dotted form).
	Pointer, Expression string
	Message             string
}

// Error is a classified failure. Its texts never quote request content.
type Error struct {
	Kind   Kind
	Issues []Issue
	// RetryAfter, in seconds, tells the client when to retry (0: no advice).
	RetryAfter int
	// Allow lists the methods the target does support, for a
	// MethodNotAllowed failure whose target allows fewer than its route
	// (nil: the route's methods).
	Allow []string
}

func (e *Error) Error() string {
	if len(e.Issues) == 0 {
		return e.Kind.String()
	}
	return e.Kind.String() + ": " + e.Issues[0].Rule
}

// New builds a one-issue *Error.
func New(kind Kind, code, rule, msg string) *Error {
	return &Error{Kind: kind, Issues: []Issue{{Severity: "error", Code: code, Rule: rule, Message: msg}}}
}

// At returns a copy of e whose issues name expr as the element at fault.
func (e *Error) At(expr string) *Error {
	cp := *e
	cp.Issues = slices.Clone(e.Issues)
	for i := range cp.Issues {
		cp.Issues[i].Expression = expr
	}
	return &cp
}

// EntryError is the failure of one Bundle entry: From re-roots its issues'
// expressions at Bundle.entry[Index] and names the entry in the message.
type EntryError struct {
	Index int
	Err   error
}

func (e *EntryError) Error() string { return fmt.Sprintf("entry %d: %v", e.Index, e.Err) }
func (e *EntryError) Unwrap() error { return e.Err }

// Unentry returns the error an *EntryError wraps (err itself otherwise), as
// a batch-response entry reports it.
func Unentry(err error) error {
	var ee *EntryError
	if errors.As(err, &ee) {
		return ee.Err
	}
	return err
}

// FHIRInvalid reports a FHIR resource that failed structural validation.
type FHIRInvalid struct{ Result *r4.Result }

func (e *FHIRInvalid) Error() string { return "FHIR resource is not valid" }

// FHIRIssues converts the R4 validator's issues.
func FHIRIssues(res *r4.Result) []Issue {
	out := make([]Issue, 0, len(res.Issues))
	for _, i := range res.Issues {
		out = append(out, Issue{Severity: string(i.Severity), Code: i.Code, Rule: i.Rule, Expression: i.Expression, Message: i.Message})
	}
	return out
}

// RuleValueTooLong is the rule of a write refused because a value is too
// long for the database's search index (store.ErrValueTooLong).
const RuleValueTooLong = "value-too-long-to-index"

// RuleStoreBusy is the rule of a request refused for back-pressure: the
// store's write queue was full (store.ErrBusy), or it waited on a lock
// another database session held past the lock timeout (store.CauseLocked).
const RuleStoreBusy = "store-busy"

// RuleTooManyIndexValues is the rule of a resource with more values to
// index for search than search.MaxEntries (search.TooManyEntries).
const RuleTooManyIndexValues = "resource-too-many-index-values"

// RuleStoreUnavailable is the rule of a request the database could not
// serve (store.ErrUnavailable but a lock: unreachable, refused, timed
// out, the store's circuit breaker open).
const RuleStoreUnavailable = "store-unavailable"

// From classifies any error: the kind and the issues to report. Typed errors
// of the packages below keep their details; anything else is Internal with
// a generic text (the cause is logged by the caller, never sent).
func From(err error) (Kind, []Issue) {
	var (
		ge *Error
		ee *EntryError
		ve *schemas.ValidationError
		re *mapping.RuleError
		fe *FHIRInvalid
		af *auth.Failure
		tm *search.TooManyEntries
	)
	switch {
	case err == nil:
		return Internal, nil
	case errors.As(err, &ee):
		kind, issues := From(ee.Err)
		// A copy: issues may be those of a shared *Error value.
		issues = slices.Clone(issues)
		entry := fmt.Sprintf("Bundle.entry[%d]", ee.Index)
		for i := range issues {
			// An expression that already names the entry is kept as it is.
			if rest, ok := strings.CutPrefix(issues[i].Expression, entry); !ok || rest != "" && rest[0] != '.' {
				issues[i].Expression = PrefixExpr(entry, issues[i].Expression)
			}
			issues[i].Message = fmt.Sprintf("Bundle entry %d: %s", ee.Index, issues[i].Message)
		}
		return kind, issues
	case errors.As(err, &af):
		return authOutcome(af)
	case errors.As(err, &ge):
		return ge.Kind, ge.Issues
	case errors.Is(err, store.ErrNotFound):
		return NotFound, []Issue{{Severity: "error", Code: "not-found", Rule: "resource-unknown", Message: "no such resource"}}
	case errors.Is(err, store.ErrGone):
		return Gone, []Issue{{Severity: "error", Code: "deleted", Rule: "resource-deleted", Message: "the resource has been deleted"}}
	case errors.Is(err, store.ErrConflict):
		return Conflict, []Issue{{Severity: "error", Code: "conflict", Rule: "write-conflict", Message: "a concurrent write conflicted with this one; retry"}}
	case errors.As(err, &tm):
		return TooLarge, []Issue{{Severity: "error", Code: "too-costly", Rule: RuleTooManyIndexValues, Expression: tm.Path,
			Message: tm.Error() + "; nothing was written"}}
	case errors.Is(err, store.ErrValueTooLong):
		return Unprocessable, []Issue{{Severity: "error", Code: "too-long", Rule: RuleValueTooLong, Message: "a searchable value " +
			"of the resource (an identifier, a code, a string or a URI) is too long for the database's search index: on " +
			"PostgreSQL an indexed value holds some 2,700 bytes once compressed (some 2,000 characters of varied text); " +
			"shorten it, or keep it in an element the gateway does not index (a note, an extension); nothing was written"}}
	case errors.Is(err, store.ErrBusy):
		return Unavailable, []Issue{{Severity: "error", Code: "transient", Rule: "store-busy", Message: "too many writes are waiting for the database; retry later"}}
	case errors.Is(err, store.ErrUnavailable) && store.UnavailableCause(err) == store.CauseLocked:
		// The database is there, but what the request reads or writes was
		// locked by another session past the lock timeout (a LOCK TABLE,
		// a long ALTER TABLE, a migration): busy, as a full write queue.
		return Unavailable, []Issue{{Severity: "error", Code: "transient", Rule: RuleStoreBusy, Message: "the data this request needs is locked by another database session; retry later"}}
	case errors.Is(err, store.ErrUnavailable):
		return Unavailable, []Issue{{Severity: "error", Code: "transient", Rule: RuleStoreUnavailable, Message: "the database is unavailable; retry later"}}
	case errors.As(err, &ve):
		out := make([]Issue, 0, len(ve.Issues))
		kind := Invalid
		for _, i := range ve.Issues {
			out = append(out, Issue{Severity: "error", Code: i.Code, Rule: i.Rule, Pointer: i.Pointer, Expression: i.Expression, Message: i.Message})
			if i.Rule == schemas.RuleJSONTooLarge {
				kind = TooLarge
			}
		}
		return kind, out
	case errors.As(err, &re):
		out := make([]Issue, 0, len(re.Violations))
		for _, v := range re.Violations {
			out = append(out, Issue{Severity: "error", Code: "business-rule", Rule: v.Rule, Pointer: v.Pointer,
				Expression: v.Expression, Message: v.Message})
		}
		return Unprocessable, out
	case errors.As(err, &fe):
		return Invalid, FHIRIssues(fe.Result)
	default:
		return Internal, []Issue{{Severity: "fatal", Code: "exception", Rule: "internal",
			Message: "the gateway failed to process the request; the failure has been logged"}}
	}
}

// authOutcome classifies an authentication or authorisation failure.
func authOutcome(f *auth.Failure) (Kind, []Issue) {
	kind, code, rule := Invalid, "security", "auth-"+f.Reason
	switch {
	case f.Status == 401:
		kind, code = Unauthorized, "login"
	case f.Status == 403:
		kind, code, rule = Forbidden, "forbidden", "scope-insufficient"
	case f.Status == 404:
		kind = NotFound
	case f.Status == 429:
		kind = Throttled
	case f.Status == 503:
		kind, code = Unavailable, "transient"
	case f.Status >= 500:
		kind, code = Internal, "transient"
	}
	msg := f.Description
	if f.Status == 403 {
		msg = "the access token's scopes do not allow this (" + f.Scope + " is needed)"
		if scopes := strings.Fields(f.Scope); len(scopes) > 1 {
			msg = "the access token's scopes do not allow this (" + strings.Join(scopes[:len(scopes)-1], ", ") +
				" and " + scopes[len(scopes)-1] + " are needed)"
		}
	}
	return kind, []Issue{{Severity: "error", Code: code, Rule: rule, Message: msg}}
}

// Rules lists the distinct rule ids of an error's issues, in order: fixed
// strings of the gateway, never request content.
func Rules(err error) []string {
	_, issues := From(err)
	rules := make([]string, 0, len(issues))
	for _, i := range issues {
		if i.Rule != "" && !slices.Contains(rules, i.Rule) {
			rules = append(rules, i.Rule)
		}
	}
	return rules
}

// PrefixExpr re-roots a FHIRPath found inside a Bundle entry.
func PrefixExpr(prefix, expr string) string {
	if expr == "" {
		return prefix
	}
	return prefix + "." + expr
}

// Resource renders issues as a FHIR OperationOutcome: one issue per problem,
// the rule id in details.coding, the message in details.text and again in
// diagnostics, the JSON pointer in location and the path in expression.
// The message is in diagnostics too because clients built on HAPI FHIR
// show only that (OperationOutcomeUtil.getFirstIssueDetails); it is the
// same text, which never quotes request content.
func Resource(issues []Issue) fhir.OperationOutcome {
	oo := fhir.OperationOutcome{Issue: make([]fhir.OperationOutcomeIssue, 0, len(issues))}
	for _, i := range issues {
		oi := fhir.OperationOutcomeIssue{
			Severity: severity(i.Severity),
			Code:     issueType(i.Code),
			Details: &fhir.CodeableConcept{
				Coding: []fhir.Coding{{System: ptr(RuleSystem), Code: ptr(i.Rule)}},
				Text:   ptr(i.Message),
			},
		}
		if i.Message != "" {
			oi.Diagnostics = ptr(i.Message)
		}
		if i.Pointer != "" {
			oi.Location = []string{i.Pointer}
		}
		if i.Expression != "" {
			oi.Expression = []string{i.Expression}
		}
		oo.Issue = append(oo.Issue, oi)
	}
	return oo
}

// Information returns a one-issue OperationOutcome saying all is well,
// msg in details.text and diagnostics (as Resource).
func Information(msg string) fhir.OperationOutcome {
	return fhir.OperationOutcome{Issue: []fhir.OperationOutcomeIssue{{
		Severity: fhir.IssueSeverityInformation, Code: fhir.IssueTypeInformational,
		Details: &fhir.CodeableConcept{Text: ptr(msg)}, Diagnostics: ptr(msg),
	}}}
}

func ptr[T any](v T) *T { return &v }

// severity converts explicitly: samply enums marshal their zero value as the
// first code ("fatal"), so nothing may rely on a zero value.
func severity(s string) fhir.IssueSeverity {
	switch s {
	case "fatal":
		return fhir.IssueSeverityFatal
	case "warning":
		return fhir.IssueSeverityWarning
	case "information":
		return fhir.IssueSeverityInformation
	default:
		return fhir.IssueSeverityError
	}
}

// issueType converts a FHIR issue-type code, falling back to "invalid".
func issueType(code string) fhir.IssueType {
	var t fhir.IssueType
	if err := t.UnmarshalJSON([]byte(strconv.Quote(code))); err != nil {
		return fhir.IssueTypeInvalid
	}
	return t
}
