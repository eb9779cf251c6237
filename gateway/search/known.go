package search

import (
	"strings"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/internal/text"
)

// The parameters an error about an unknown one lists. The unknown name is
// never repeated (it may be a value, or PHI, typed where a name belongs:
// ShownName), but the names the gateway knows for the type are its own and
// tell the client what it could have meant.

// resultParams are the result parameters a client pages, sorts and shapes
// an answer with (search.html#return), in the order a reader looks for
// them; _cursor, _format and _pretty are left out (the gateway's links and
// the HTTP layer set them).
var resultParams = []string{"_count", "_offset", "_sort", "_summary", "_elements", "_total", "_include", "_revinclude"}

// KnownParams says which parameters a search of resourceType takes, for an
// error about a parameter that is not one of them: its search parameters
// (searchParams), the result parameters, and that the CapabilityStatement
// gives each one's type. No type has more than a few dozen search
// parameters, so all are listed. "" for an unknown type.
func KnownParams(resourceType string) string {
	if Params(resourceType) == nil {
		return ""
	}
	return searchParams(resourceType) + "; its result parameters " + text.JoinAnd(resultParams) +
		" (the CapabilityStatement lists each search parameter with its type)"
}

// SearchParams is searchParams, for a search that takes no result
// parameters (an export's _typeFilter) to say which it takes.
func SearchParams(resourceType string) string { return searchParams(resourceType) }

// searchParams says which search parameters resourceType has: their
// names, sorted, a date parameter named otherwise than the element it
// searches saying which (AuditEvent's "date (searches recorded)").
func searchParams(resourceType string) string {
	ps := Params(resourceType)
	names := make([]string, 0, len(ps))
	for _, p := range ps {
		names = append(names, withElement(p))
	}
	return resourceType + "'s search parameters are " + text.JoinAnd(names)
}

// sortableParams lists the parameters _sort takes for resourceType: _id
// and the date parameters.
func sortableParams(resourceType string) string {
	var names []string
	for _, p := range Params(resourceType) {
		if p.Type == TypeDate || p.Name == "_id" {
			names = append(names, withElement(p))
		}
	}
	return text.JoinAnd(names)
}

// referenceParams lists the reference parameters of resourceType (those
// _include, chains and _has take).
func referenceParams(resourceType string) string {
	var names []string
	for _, p := range Params(resourceType) {
		if p.Type == TypeReference {
			names = append(names, p.Name)
		}
	}
	if len(names) == 0 {
		return "none"
	}
	return text.JoinAnd(names)
}

// withElement is p's name, followed by the element it searches when that
// is a date parameter named otherwise ("date (searches recorded)",
// "birthdate (searches birthDate)", "date (searches effective[x])"): the
// element is what a client reading the resource sees and may try.
func withElement(p Param) string {
	if p.Type != TypeDate || strings.HasPrefix(p.Name, "_") || len(p.Paths) == 0 {
		return p.Name
	}
	el := p.Paths[0]
	for _, path := range p.Paths {
		if strings.ContainsAny(path, ".(") {
			return p.Name
		}
		for !strings.HasPrefix(path, el) {
			el = el[:len(el)-1]
		}
	}
	if len(p.Paths) > 1 {
		el += "[x]"
	}
	if el == p.Name || el == "" || el == "[x]" {
		return p.Name
	}
	return p.Name + " (searches " + el + ")"
}
