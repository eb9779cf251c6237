package search

import "github.com/ketamine-gateway/ketamine-gateway/schemas/r4"

// r4Types are the 146 R4 resource types, sorted (from the definitions the
// validator is generated from, so both packages agree).
var r4Types = r4.ResourceTypes()

// isResourceType reports whether name is an R4 resource type.
func isResourceType(name string) bool { return r4.IsResourceType(name) }
