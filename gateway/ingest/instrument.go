package ingest

import (
	"encoding/json"
	"fmt"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/outcome"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
	"github.com/ketamine-gateway/ketamine-gateway/mapping"
)

// RuleInstrumentChanged is the rule id of a new version of an assessment
// that names another instrument than the stored version.
const RuleInstrumentChanged = "record-instrument-changed"

// instrumentChanged is the message of a RuleInstrumentChanged issue: what
// to do.
const instrumentChanged = "the instrument of a record cannot change: this assessment (the same source system and record " +
	"id) is stored with another instrument, whose panel, items and score would stay beside this one's; send this " +
	"assessment under a new record id, and if the stored one was sent in error, withdraw it (send it again as it was " +
	"stored, with a new version and source.status entered-in-error)"

// checkSameInstrument refuses a record whose assessments, as stored
// (current, by entry of res: engine.Tx.RunChecked), are of another
// instrument: the Observation that stands for an assessment (its panel,
// or a single score) keeps its id across versions, and its stored code
// names the instrument. A stored code the mapping no longer gives (an
// earlier mapping version's) is not compared.
func checkSameInstrument(res *mapping.Result, current []*store.Resource) error {
	var issues []outcome.Issue
	for i, r := range current {
		if r == nil || i >= len(res.Entries) || res.Entries[i].Instrument == "" {
			continue
		}
		var doc struct {
			Code struct {
				Coding []struct{ System, Code string }
			}
		}
		if err := json.Unmarshal(r.Body, &doc); err != nil {
			return fmt.Errorf("stored %s/%s: %w", r.Type, r.ID, err)
		}
		for _, c := range doc.Code.Coding {
			if stored, ok := mapping.InstrumentCoded(c.System, c.Code); ok && stored != res.Entries[i].Instrument {
				e := res.Entries[i]
				expr := "instrument"
				if e.Record != "" {
					expr = nestedExpression(e.Record) + ".instrument"
				}
				issues = append(issues, outcome.Issue{Severity: "error", Code: "conflict", Rule: RuleInstrumentChanged,
					Pointer: e.Record + "/instrument", Expression: expr, Message: instrumentChanged})
				break
			}
		}
	}
	if len(issues) == 0 {
		return nil
	}
	return &outcome.Error{Kind: outcome.Conflict, Issues: issues}
}
