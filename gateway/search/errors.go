package search

import "strings"

// The rule ids of an *Error. All are client mistakes (400 Bad Request);
// the Unsupported ones suit an OperationOutcome issue "not-supported", the
// others "invalid".
const (
	// RuleParamUnknown is a parameter not defined for the resource type.
	RuleParamUnknown = "search-param-unknown"
	// RuleParamUnsupported is a FHIR parameter the gateway does not
	// implement (_elements, _tag, _text, _filter, ...), or a control
	// parameter where it is not allowed (conditional criteria).
	RuleParamUnsupported = "search-param-unsupported"
	// RuleValueInvalid is a value that does not parse for its parameter.
	RuleValueInvalid = "search-value-invalid"
	// RuleModifierUnsupported is a modifier the parameter does not allow.
	RuleModifierUnsupported = "search-modifier-unsupported"
	// RuleChainUnsupported is a chained parameter (subject.name) or _has.
	RuleChainUnsupported = "search-chain-unsupported"
	// RuleIncludeUnsupported is an _include/_revinclude of * or of a
	// parameter that is not a reference.
	RuleIncludeUnsupported = "search-include-unsupported"
	// RuleSortUnsupported is a _sort by a parameter that is not sortable.
	RuleSortUnsupported = "search-sort-unsupported"
	// RuleTypeUnknown is a resource type that is not an R4 resource type.
	RuleTypeUnknown = "search-type-unknown"
	// RuleTypeMismatch is conditional criteria in the Type?criteria form
	// whose Type is not the type of the interaction.
	RuleTypeMismatch = "search-type-mismatch"
	// RuleLimitExceeded is a search beyond the Limits: too many
	// parameters, repetitions, values, chain links or includes, or a page
	// with too many included resources. It suits an issue "too-costly".
	RuleLimitExceeded = "search-limit-exceeded"
)

// Error is a client mistake in a search or in conditional criteria. Param
// names the offending parameter (with its modifier) when there is one and
// the gateway knows it (ShownName); Rule is one of the Rule* ids; Message is
// safe to show to the client and to log: it never quotes a parameter value,
// since values may be PHI, nor a parameter name the gateway does not know.
type Error struct {
	Param   string
	Rule    string
	Message string
}

// Error returns the rule and message.
func (e *Error) Error() string {
	return e.Rule + ": " + e.Message
}

// ignorable reports whether handling=lenient drops the parameter key,
// failing with rule, instead of rejecting the search: an unknown or
// unsupported parameter (search.html#errors), or an unsupported _sort,
// _include or modifier of a result parameter, which only shapes the answer.
// A known search parameter with a modifier or chain the gateway cannot run
// stays an error, as a bad value does: dropping that criterion would widen
// the search to resources it was meant to exclude (R5 search.html#modifiers:
// "Servers SHALL reject any search request that contains a search
// parameter with an unsupported modifier").
func ignorable(key, rule string) bool {
	switch rule {
	case RuleParamUnknown, RuleParamUnsupported, RuleIncludeUnsupported, RuleSortUnsupported:
		return true
	case RuleModifierUnsupported, RuleChainUnsupported:
		return ResultParam(key)
	}
	return false
}

// ResultParam reports whether key (name[:modifier]) is a result parameter,
// which shapes the answer and selects nothing (search.html#return,
// paging and formats).
func ResultParam(key string) bool {
	name, _, _ := strings.Cut(key, ":")
	switch name {
	case "_count", "_offset", "_cursor", "_sort", "_summary", "_total", "_elements", "_include", "_revinclude", "_format", "_pretty",
		"_contained", "_containedType":
		return true
	}
	return false
}
