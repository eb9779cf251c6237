package ingest

import (
	"encoding/json"
	"time"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/outcome"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
	"github.com/ketamine-gateway/ketamine-gateway/mapping"
)

// A record's versions (docs/records.md, record identity): the same version
// again is idempotent (the ledger answers it), the same version with other
// content is record-version-reused, and a new version updates the record
// unless the clinic says it is older than one already stored: its
// source.lastUpdated earlier than a stored version's. An integration engine
// that retries or reorders messages then cannot roll the record back (or
// withdraw it) with a version it sent before.

// RuleVersionStale is the rule id of a new record version older than a
// stored one.
const RuleVersionStale = "record-version-stale"

// errVersionStale refuses a version older than one stored, naming its
// source.lastUpdated and never its value.
var errVersionStale = &outcome.Error{Kind: outcome.Conflict, Issues: []outcome.Issue{{
	Severity: "error", Code: "conflict", Rule: RuleVersionStale, Pointer: "/source/lastUpdated", Expression: "source.lastUpdated",
	Message: "a newer version of this record is already stored (its source.lastUpdated is later than this one's), so this " +
		"older version is not applied; if it is a late retry, nothing needs to be done, else send the record as it is " +
		"now with a new version and a later source.lastUpdated"}}}

// RuleVersionReused is the rule id of a record version received before
// with other content.
const RuleVersionReused = "record-version-reused"

// errVersionReused refuses a version received before with other content,
// naming the element that tells versions apart: source.version, or
// source.lastUpdated for a record without a version label (byLastUpdated).
func errVersionReused(byLastUpdated bool) error {
	pointer, expr := "/source/version", "source.version"
	if byLastUpdated {
		pointer, expr = "/source/lastUpdated", "source.lastUpdated"
	}
	return &outcome.Error{Kind: outcome.Conflict, Issues: []outcome.Issue{{
		Severity: "error", Code: "conflict", Rule: RuleVersionReused, Pointer: pointer, Expression: expr,
		Message: "this version of the record was already received with different content; a version is never " +
			"changed: send the changed record as a new version (a new source.version and a later source.lastUpdated)"}}}
}

// sameRecordKinds are the kinds whose records of one record id are one
// record: an infusion and the session document of that infusion write the
// same resources.
var sameRecordKinds = map[mapping.Kind][]mapping.Kind{
	mapping.KindInfusion: {mapping.KindInfusion, mapping.KindSession},
	mapping.KindSession:  {mapping.KindSession, mapping.KindInfusion},
}

// checkNotStale refuses rec, a version not received before, when its
// source.lastUpdated is earlier than a stored version's (errVersionStale).
// Versions are compared only when both carry source.lastUpdated; a new
// version label with the same lastUpdated is a new version.
func checkNotStale(st store.Tx, rec record) error {
	src := rec.rec.Env().Source
	at, ok := instant(src.LastUpdated)
	if !ok {
		return nil
	}
	kinds := sameRecordKinds[rec.kind]
	if kinds == nil {
		kinds = []mapping.Kind{rec.kind}
	}
	for _, kind := range kinds {
		versions, err := st.LedgerVersions(src.System, string(kind), src.RecordID)
		if err != nil {
			return err
		}
		for _, l := range versions {
			var in struct {
				Source struct {
					LastUpdated string `json:"lastUpdated"`
				} `json:"source"`
			}
			if len(l.Input) == 0 || json.Unmarshal(l.Input, &in) != nil {
				continue // written before the ledger kept inputs
			}
			if stored, ok := instant(in.Source.LastUpdated); ok && at.Before(stored) {
				return errVersionStale
			}
		}
	}
	return nil
}

// instant parses a record's instant (schema format: seconds and time
// zone); ok is false for none.
func instant(s string) (time.Time, bool) {
	if s == "" {
		return time.Time{}, false
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	return t, err == nil
}
