package operator

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/audit"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/fhirwire"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/search"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
)

// Correction marks the delivery of a mapping replay's correction: it
// sends the record version its original delivery sent, as the mapping
// MappingVersion now makes it (PreviousMappingVersion made the version
// corrected). The outbox item does not say so; the replay's Provenance
// does, found by the delivery's trace id (each corrected record's trace is
// its own, and its delivery, and a re-send of it, carries it).
type Correction struct {
	MappingVersion         string `json:"mappingVersion"`
	PreviousMappingVersion string `json:"previousMappingVersion,omitempty"`
}

// String is the correction's marker in a listing: "correction, mapping
// 2.3.0 -> 2.3.1".
func (c *Correction) String() string {
	from := c.PreviousMappingVersion
	if from == "" {
		from = "?"
	}
	return fmt.Sprintf("correction, mapping %s -> %s", from, c.MappingVersion)
}

// mark sets what the outbox items do not say on the views (those tenant
// may see): Correction and Withdrawal, each from the Provenances of the
// record versions delivered.
func (s *Service) mark(ctx context.Context, tenant string, vs []View) error {
	if err := s.markCorrections(ctx, tenant, vs); err != nil {
		return err
	}
	return s.markWithdrawals(ctx, tenant, vs)
}

// markWithdrawals sets Withdrawal on the views that deliver a withdrawal:
// the record version whose Provenance (audit.RecordProvenanceID: one per
// record version received) records it as NULLIFY. One search of those
// Provenances by id for the page. A replay's correction of a record
// version delivers that version again, and is marked as it is.
func (s *Service) markWithdrawals(ctx context.Context, tenant string, vs []View) error {
	byProv := map[string][]int{}
	var provs []string
	for i, v := range vs {
		id := audit.RecordProvenanceID(v.Tenant, v.Source, v.Kind, v.RecordID, v.Version)
		if byProv[id] == nil {
			provs = append(provs, id)
		}
		byProv[id] = append(byProv[id], i)
	}
	return s.provenances(ctx, tenant, "_id", provs, func(r *store.Resource) error {
		if audit.Nullifies(r.Body) {
			for _, i := range byProv[r.ID] {
				vs[i].Withdrawal = true
			}
		}
		return nil
	})
}

// WithheldWithdrawal tells, of a delivery about to be sent, whether it is
// a withdrawal (its record version's Provenance records a NULLIFY) whose
// record never reached the destination: every earlier delivery of the
// record there a dead letter the EHR applied none of (refused, cancelled
// before it took it, given up on errors that left nothing there:
// store.Outbox.EarlierReached). Sent, it would give the EHR the patient
// and the record's values, marked withdrawn, which it never had. Its
// reason is then the dead letter's, store.Withheld, as the ingest's; ""
// to send it. The ingest decides this when the withdrawal is stored, but an
// earlier delivery pending then may die after (an EHR review: a
// withdrawal sent, demographics and all, to an EHR that had refused the
// record; and to one the operator had said was the wrong destination).
func (s *Service) WithheldWithdrawal(ctx context.Context, it *store.OutboxItem) (string, error) {
	r, err := s.store.Read(ctx, "Provenance", audit.RecordProvenanceID(it.Tenant, it.Source, it.Kind, it.RecordID, it.Version))
	switch {
	case errors.Is(err, store.ErrNotFound), errors.Is(err, store.ErrGone):
		return "", nil // no record version's Provenance (a replay's copy of one without): not a withdrawal it can tell
	case err != nil:
		return "", err
	case !audit.Nullifies(r.Body):
		return "", nil
	}
	reached, err := s.store.EarlierReached(ctx, it.ID)
	if err != nil || reached {
		return "", err
	}
	return store.Withheld, nil
}

// provenances calls each with every Provenance of tenant whose param (one
// value a Provenance, at most two: _id, trace-id) is one of values: a
// search of up to MaxCount/2 values ORed in one parameter at a time,
// beyond what a client's search may OR (search.Parse's default limits
// refused it: a page of 101 to 1,000 deliveries answered 500, p45).
func (s *Service) provenances(ctx context.Context, tenant, param string, values []string, each func(*store.Resource) error) error {
	for len(values) > 0 {
		batch := values[:min(len(values), search.MaxCount/2)]
		values = values[len(batch):]
		q, _, err := search.Limits{Values: search.MaxCount / 2}.Parse("Provenance", url.Values{param: {strings.Join(batch, ",")},
			"_count": {strconv.Itoa(search.MaxCount)}}, false)
		if err != nil {
			return fmt.Errorf("provenances by %s: %w", param, err)
		}
		q.Tenant = tenant
		page, err := s.store.Search(ctx, q)
		if err != nil {
			return err
		}
		for _, r := range page.Matches {
			if err := each(r); err != nil {
				return err
			}
		}
	}
	return nil
}

// markCorrections sets Correction on the views (those tenant may see) that
// deliver a mapping replay's correction: one search of the Provenances of
// their traces for the whole page, not one a delivery. Returns the store's
// errors (ErrUnavailable).
func (s *Service) markCorrections(ctx context.Context, tenant string, vs []View) error {
	var traces []string
	seen := map[string]bool{}
	for _, v := range vs {
		if v.TraceID != "" && !seen[v.TraceID] && !strings.ContainsAny(v.TraceID, ",|\\$") {
			seen[v.TraceID] = true
			traces = append(traces, v.TraceID)
		}
	}
	// A record's receipt and its replays' Provenances: a trace holds one
	// or two (at most MaxCount for a batch of MaxCount/2).
	byTrace := map[string]*Correction{}
	err := s.provenances(ctx, tenant, "trace-id", traces, func(r *store.Resource) error {
		trace, c, err := correctionIn(r.Body)
		if err != nil {
			return fmt.Errorf("stored Provenance/%s: %w", r.ID, err)
		}
		if c != nil {
			byTrace[trace] = c
		}
		return nil
	})
	if err != nil {
		return err
	}
	for i := range vs {
		if c := byTrace[vs[i].TraceID]; c != nil {
			cp := *c
			vs[i].Correction = &cp
		}
	}
	return nil
}

// correctionIn is correctionOf of body, a stored Provenance. Most of those
// a trace finds are receipts, not a replay's: a body without a revision
// entity's role (the gateway writes its Provenances with encoding/json,
// which escapes no letter) is not one, and is not decoded.
func correctionIn(body []byte) (string, *Correction, error) {
	if !bytes.Contains(body, []byte(`"revision"`)) {
		return "", nil, nil
	}
	doc, err := fhirwire.Decode(body)
	if err != nil {
		return "", nil, err
	}
	trace, c := correctionOf(doc)
	return trace, c, nil
}

// correctionOf is the trace and correction of doc, a stored Provenance, if
// it is a mapping replay's: the gateway's mapping version as an agent and
// the version it corrected as a revision entity.
func correctionOf(doc map[string]any) (string, *Correction) {
	trace := ""
	exts, _ := doc["extension"].([]any)
	for _, e := range exts {
		m, _ := e.(map[string]any)
		if m["url"] == audit.ExtTraceID {
			trace, _ = m["valueString"].(string)
		}
	}
	c := &Correction{}
	agents, _ := doc["agent"].([]any)
	for _, a := range agents {
		if sys, val := identifierOf(a, "who"); sys == audit.SystemMappingVersion {
			c.MappingVersion = val
		}
	}
	revision := false
	entities, _ := doc["entity"].([]any)
	for _, e := range entities {
		m, _ := e.(map[string]any)
		if m["role"] != "revision" {
			continue
		}
		if sys, val := identifierOf(e, "what"); sys == audit.SystemMappingVersion {
			c.PreviousMappingVersion, revision = val, true
		}
	}
	if trace == "" || !revision || c.MappingVersion == "" {
		return "", nil
	}
	return trace, c
}

// identifierOf is the identifier (system, value) of x's member (a
// Reference).
func identifierOf(x any, member string) (string, string) {
	m, _ := x.(map[string]any)
	ref, _ := m[member].(map[string]any)
	id, _ := ref["identifier"].(map[string]any)
	sys, _ := id["system"].(string)
	val, _ := id["value"].(string)
	return sys, val
}
