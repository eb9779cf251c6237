package search

import "slices"

// The _include and _revinclude values a search accepts without :iterate,
// stated once: the parser checks a value by them, and the
// CapabilityStatement lists them (searchInclude, searchRevInclude), so
// what is advertised is what is accepted.

// pointsTo reports whether the reference parameter p may point to a
// resource of type target (a parameter without Targets may point to any).
func pointsTo(p Param, target string) bool {
	return p.Type == TypeReference && (len(p.Targets) == 0 || slices.Contains(p.Targets, target))
}

// Includes returns the _include values a search of resourceType accepts
// without :iterate, as "Type:param", sorted: its own reference parameters.
func Includes(resourceType string) []string {
	var out []string
	for _, p := range Params(resourceType) {
		if p.Type == TypeReference {
			out = append(out, resourceType+":"+p.Name)
		}
	}
	return out
}

// RevIncludes returns the _revinclude values a search of resourceType
// accepts without :iterate, as "Source:param", sorted: the reference
// parameters of every type that may point to resourceType (Observation:subject
// for Patient, say).
func RevIncludes(resourceType string) []string {
	if !isResourceType(resourceType) {
		return nil
	}
	var out []string
	for _, src := range r4Types {
		for _, p := range Params(src) {
			if pointsTo(p, resourceType) {
				out = append(out, src+":"+p.Name)
			}
		}
	}
	return out
}
