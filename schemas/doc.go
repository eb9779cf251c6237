// Package schemas validates native records — the JSON documents clinics post
// to the gateway — against the JSON Schemas (draft-07) embedded in this
// package, and reports problems as a list of [Issue] values.
//
// There is one schema per record kind (see [Kinds]): assessment, vitals,
// infusion, adverse-event and session. The shared building blocks (the
// envelope's source and patient, identifiers, instants, persons) live in
// common.schema.json. The schemas mirror the Go types in package mapping one
// to one; clinical rules that a schema cannot express (totals, dose
// arithmetic, time order, ...) are checked afterwards by the mapping rule
// engine and are documented, with the schema rules, in docs/records.md.
//
// Validation happens in two stages:
//
//  1. [CheckJSON] looks at the raw bytes: empty body, syntax, invalid UTF-8,
//     duplicate object keys, nesting depth, numbers out of range and a
//     top-level value that is not an object; Validate also caps the number
//     of values ([MaxValues]). These are problems that a JSON decoder would
//     silently accept, reject with an unhelpful message, or that could
//     exhaust resources.
//  2. The kind's schema. Errors reported by gojsonschema are turned into
//     issues with a stable rule id, a FHIR issue-type code, an RFC 6901 JSON
//     pointer and a FHIRPath-like expression; summary errors (allOf, if/then)
//     are dropped so that one mistake yields one issue. Integer fields must
//     be written as plain digits (6, not 6.0), because that is what the Go
//     types can decode.
//
// Records contain protected health information. No message produced by this
// package ever quotes a value from the document: messages name the rule that
// was broken and where, using property names from the schema. The only
// document-controlled text that can appear in an issue is an object key in
// Pointer and Expression, for unknown and duplicate properties.
package schemas
