package gateway

import (
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"

	fhir "github.com/samply/golang-fhir-models/fhir-models/fhir"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
	"github.com/ketamine-gateway/ketamine-gateway/mapping"
	"github.com/ketamine-gateway/ketamine-gateway/schemas"
	"github.com/ketamine-gateway/ketamine-gateway/schemas/r4"
)

// RuleSystem is the CodeSystem of the gateway's validation rule ids, used in
// OperationOutcome.issue.details.coding.
const RuleSystem = mapping.Canonical + "/CodeSystem/validation-rule"

// Issue is one problem to report in an OperationOutcome.
type Issue struct {
	Severity string // fatal | error | warning | information
	Code     string // FHIR issue-type code
	Rule     string // the gateway's rule id
	// Pointer is a JSON pointer into a native record; Expression a FHIRPath
	// (or, for native records, the same location in dotted form).
	Pointer, Expression string
	Message             string
}

// Error is an error the gateway answers with an HTTP status and an
// OperationOutcome. Its texts never quote request content.
type Error struct {
	Status int
	Issues []Issue
	// RetryAfter, in seconds, is sent as Retry-After when positive.
	RetryAfter int
}

func (e *Error) Error() string {
	if len(e.Issues) == 0 {
		return http.StatusText(e.Status)
	}
	return http.StatusText(e.Status) + ": " + e.Issues[0].Rule
}

// errorf builds a one-issue *Error.
func errorf(status int, code, rule, msg string) *Error {
	return &Error{Status: status, Issues: []Issue{{Severity: "error", Code: code, Rule: rule, Message: msg}}}
}

// Outcome turns any error into the HTTP status and the issues to report.
// Typed errors of the packages below become 4xx with their details; anything
// else is a 500 with a generic text (the cause is logged, never sent).
func Outcome(err error) (int, []Issue) {
	var (
		ge *Error
		ve *schemas.ValidationError
		re *mapping.RuleError
		fe *FHIRValidationError
	)
	var ee *entryError
	if errors.As(err, &ee) {
		status, issues := Outcome(ee.err)
		// A copy: issues may be those of a shared *Error value.
		issues = slices.Clone(issues)
		for i := range issues {
			issues[i].Expression = prefixExpr(fmt.Sprintf("Bundle.entry[%d]", ee.index), issues[i].Expression)
			issues[i].Message = fmt.Sprintf("Bundle entry %d: %s", ee.index, issues[i].Message)
		}
		return status, issues
	}
	if f, ok := isAuthFailure(err); ok {
		return authOutcome(f)
	}
	switch {
	case errors.As(err, &ge):
		return ge.Status, ge.Issues
	case errors.Is(err, store.ErrNotFound):
		return http.StatusNotFound, []Issue{{Severity: "error", Code: "not-found", Rule: "resource-unknown", Message: "no such resource"}}
	case errors.Is(err, store.ErrGone):
		return http.StatusGone, []Issue{{Severity: "error", Code: "deleted", Rule: "resource-deleted", Message: "the resource has been deleted"}}
	case errors.Is(err, store.ErrConflict):
		return http.StatusConflict, []Issue{{Severity: "error", Code: "conflict", Rule: "write-conflict", Message: "a concurrent write conflicted with this one; retry"}}
	case errors.Is(err, store.ErrUnavailable):
		return http.StatusServiceUnavailable, []Issue{{Severity: "error", Code: "transient", Rule: "store-unavailable", Message: "the database is unavailable; retry later"}}
	case errors.As(err, &ve):
		out := make([]Issue, 0, len(ve.Issues))
		status := http.StatusBadRequest
		for _, i := range ve.Issues {
			out = append(out, Issue{Severity: "error", Code: i.Code, Rule: i.Rule, Pointer: i.Pointer, Expression: i.Expression, Message: i.Message})
			if i.Rule == "json-too-large" {
				status = http.StatusRequestEntityTooLarge
			}
		}
		return status, out
	case errors.As(err, &re):
		out := make([]Issue, 0, len(re.Violations))
		for _, v := range re.Violations {
			out = append(out, Issue{Severity: "error", Code: "business-rule", Rule: v.Rule, Pointer: v.Pointer,
				Expression: v.Expression, Message: v.Message})
		}
		return http.StatusUnprocessableEntity, out
	case errors.As(err, &fe):
		return http.StatusBadRequest, fhirIssues(fe.Result)
	default:
		return http.StatusInternalServerError, []Issue{{Severity: "fatal", Code: "exception", Rule: "internal",
			Message: "the gateway failed to process the request; the failure has been logged"}}
	}
}

// FHIRValidationError reports a FHIR resource that failed validation.
type FHIRValidationError struct{ Result *r4.Result }

func (e *FHIRValidationError) Error() string { return "FHIR resource is not valid" }

// fhirIssues converts validator issues.
func fhirIssues(res *r4.Result) []Issue {
	out := make([]Issue, 0, len(res.Issues))
	for _, i := range res.Issues {
		out = append(out, Issue{Severity: string(i.Severity), Code: i.Code, Rule: i.Rule, Expression: i.Expression, Message: i.Message})
	}
	return out
}

// OperationOutcome renders issues as a FHIR OperationOutcome: one issue per
// problem, the rule id in details.coding, the JSON pointer in location and
// the path in expression.
func OperationOutcome(issues []Issue) fhir.OperationOutcome {
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

// Information returns a one-issue OperationOutcome saying all is well.
func Information(msg string) fhir.OperationOutcome {
	return fhir.OperationOutcome{Issue: []fhir.OperationOutcomeIssue{{
		Severity: fhir.IssueSeverityInformation, Code: fhir.IssueTypeInformational,
		Details: &fhir.CodeableConcept{Text: ptr(msg)},
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
