// Package r4 validates FHIR R4 (4.0.1) JSON resources structurally, per
// resource type, without building a generic document tree or a monolithic
// JSON schema.
//
// A document is first scanned into a flat token tape (checking JSON
// syntax, UTF-8, duplicate property names and nesting depth), then walked
// against the R4 definition of its resourceType: element names, JSON
// kinds, cardinality (arrays for repeating elements, required elements),
// choice elements (value[x]), primitive formats, primitive extension
// siblings ("_birthDate"), codes of required bindings, reference formats,
// the safety of narrative XHTML, nested resources (contained,
// Bundle.entry.resource, Parameters.parameter.resource) and a table of
// FHIR invariants (ext-1, qty-3, obs-6, obs-7, bdl-1..12, ref-1, dom-2..5,
// per-1 and a few more, see invariants.go; those of data types such as
// rng-2, sqty-1, tim-1..10 and of clinical resources such as ait-1,
// con-4, mad-1, see invariants_clinical.go).
//
// Issues carry a stable rule id, a FHIR issue-type code and the FHIRPath of
// the offending element, and never quote document content: the gateway
// stores protected health information and issues end up in logs and
// OperationOutcomes. Unknown property names appear in paths only when
// shaped like FHIR element names (lowerCamelCase identifiers).
//
// Where the HL7 reference validator is lenient, this package follows it so
// that documents it accepts are accepted here: absolute reference URLs may
// have any path, a decimal written as a JSON string and a urn:uuid
// reference with a malformed UUID are warnings, not errors (except that
// ValidateDecoded, whose result callers store, refuses a decimal string:
// it is not FHIR JSON). It is stricter
// in that JSON comments are syntax errors and contained resources are
// always validated. A UTF-8 byte order mark is ignored.
//
// The definitions are generated from the FHIR R4 StructureDefinitions and
// ValueSets as packaged by FHIR.js (npm fhir@4.12.0, Apache-2.0) by
// internal/gen; see definitions_gen.go. Required bindings whose value set
// is not enumerable there (e.g. mimetypes, currencies, UCUM units) are not
// checked.
package r4

//go:generate go run ./internal/gen -profiles /tmp/npmchk/package/profiles -targets /tmp/mpdef/package/dist/fhir/r4 -out .
