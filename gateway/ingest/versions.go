package ingest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
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

// errVersionStaleFuture refuses a version older than a stored one whose
// source.lastUpdated is ahead of the gateway's clock by more than
// LastUpdatedAhead (stored before the gateway refused such times:
// RuleLastUpdatedFuture): no truthful version can be later than it until
// the clock passes it, so the message says so, and what to do.
func errVersionStaleFuture(ahead time.Duration) error {
	return &outcome.Error{Kind: outcome.Conflict, Issues: []outcome.Issue{staleFutureIssue(ahead)}}
}

// staleFutureIssue is errVersionStaleFuture's issue.
func staleFutureIssue(ahead time.Duration) outcome.Issue {
	return outcome.Issue{
		Severity: "error", Code: "conflict", Rule: RuleVersionStale, Pointer: "/source/lastUpdated", Expression: "source.lastUpdated",
		Message: fmt.Sprintf("a version of this record is stored with a source.lastUpdated %s ahead of the gateway's clock "+
			"(stored before the gateway refused times in the future; most often a local time sent with Z or with "+
			"another zone's offset), and this version's is earlier, so it is not applied. Do not send a false later "+
			"time: send this version again once the gateway's clock has passed the stored one's (in %s), or ask the "+
			"gateway's operator, who can see the record's versions (lineage)", roughly(ahead), roughly(ahead))}
}

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

// sameInstantVersion finds, for rec, a record without source.version
// whose version label (its source.lastUpdated) the ledger does not hold as
// written, a stored version labelled by a source.lastUpdated that is the
// same instant written otherwise (12:00:00Z, 07:00:00-05:00,
// 12:00:00.000Z): the same version. same reports whether its content is
// rec's but for how that instant is written (then l is the whole entry,
// whose answer is returned again); l is nil when there is none. Labels
// are compared as instants here rather than normalised when stored, so
// the ledger's existing labels stay as they are.
func sameInstantVersion(st store.Tx, rec record) (l *store.Ledger, same bool, err error) {
	src := rec.rec.Env().Source
	at, ok := instant(src.LastUpdated)
	if src.Version != "" || !ok {
		return nil, false, nil
	}
	versions, err := st.LedgerVersions(src.System, string(rec.kind), src.RecordID)
	if err != nil {
		return nil, false, err
	}
	for _, v := range versions {
		var in struct {
			Source struct{ Version, LastUpdated string } `json:"source"`
		}
		if len(v.Input) == 0 || json.Unmarshal(v.Input, &in) != nil || in.Source.Version != "" || in.Source.LastUpdated != v.Version {
			continue // labelled by source.version, or stored before the ledger kept inputs
		}
		if stored, ok := instant(v.Version); !ok || !stored.Equal(at) || v.Version == src.LastUpdated {
			continue
		}
		if !sameBut(v.Input, rec.body) {
			return v, false, nil
		}
		full, err := st.Ledger(src.System, string(rec.kind), src.RecordID, v.Version)
		return full, err == nil, err
	}
	return nil, false, nil
}

// sameBut reports whether two records are the same but for how their
// source.lastUpdated is written.
func sameBut(a, b []byte) bool {
	da, oka := decodeAny(a)
	db, okb := decodeAny(b)
	if !oka || !okb {
		return false
	}
	for _, d := range []map[string]any{da, db} {
		if src, ok := d["source"].(map[string]any); ok {
			delete(src, "lastUpdated")
		}
	}
	return reflect.DeepEqual(da, db)
}

// sameButNotation reports whether two records are the same content but
// for how their source.lastUpdated writes one instant (12:00:00Z,
// 07:00:00-05:00, 12:00:00.000Z) and how their text is composed (NFC or
// NFD: equivalent): a retry re-serialised by an integration engine. Numbers compare as the content hash compares them (76 and 76.0
// are the same); the clinical times stay as written, since they are
// charted as written.
func sameButNotation(a, b []byte) bool {
	da, oka := decodeRecord(a)
	db, okb := decodeRecord(b)
	return oka && okb && sameContent(da, db)
}

// sameContent reports whether two decoded records (decodeRecord) are the
// same content, their source.lastUpdated compared as instants.
func sameContent(a, b map[string]any) bool {
	var at [2]time.Time
	var bare [2]map[string]any
	for i, d := range []map[string]any{a, b} {
		bare[i] = d
		src, _ := d["source"].(map[string]any)
		lu, ok := src["lastUpdated"].(string)
		if !ok {
			continue
		}
		if at[i], ok = instant(lu); !ok {
			return false
		}
		// Copies without it: d is not changed.
		s := make(map[string]any, len(src))
		for k, v := range src {
			if k != "lastUpdated" {
				s[k] = v
			}
		}
		c := make(map[string]any, len(d))
		for k, v := range d {
			c[k] = v
		}
		c["source"] = s
		bare[i] = c
	}
	return at[0].Equal(at[1]) && equivalent(bare[0], bare[1])
}

// decodeAny decodes a JSON object, numbers as written.
func decodeAny(b []byte) (map[string]any, bool) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var m map[string]any
	return m, dec.Decode(&m) == nil
}

// checkNotStale refuses rec, a version not received before, when its
// source.lastUpdated is earlier than a stored version's (errVersionStale).
// Versions are compared only when both carry source.lastUpdated; a new
// version label with the same lastUpdated is a new version.
func checkNotStale(ledgers *nestedLedgers, rec record, now time.Time) error {
	src := rec.rec.Env().Source
	at, ok := instant(src.LastUpdated)
	if !ok {
		return nil
	}
	for _, kind := range mapping.SameRecord(rec.kind) {
		if newer, err := newerStored(ledgers, src.System, kind, src.RecordID, at, nil); err != nil || !newer.IsZero() {
			return cmpErr(err, newer, now)
		}
	}
	return nil
}

// storedInput is what the version checks read of a stored record version:
// its lastUpdated and, for a session, the ids of its nested records.
type storedInput struct {
	Source struct {
		LastUpdated string `json:"lastUpdated"`
	} `json:"source"`
	Vitals        []struct{ RecordID string } `json:"vitals"`
	Assessments   []struct{ RecordID string } `json:"assessments"`
	AdverseEvents []struct{ RecordID string } `json:"adverseEvents"`
}

// nests reports whether a stored session version nests the record of
// kind with id recordID.
func (in *storedInput) nests(kind mapping.Kind, recordID string) bool {
	list := map[mapping.Kind][]struct{ RecordID string }{mapping.KindVitals: in.Vitals,
		mapping.KindAssessment: in.Assessments, mapping.KindAdverseEvent: in.AdverseEvents}[kind]
	for _, r := range list {
		if r.RecordID == recordID {
			return true
		}
	}
	return false
}

// newerStored returns the latest source.lastUpdated of the stored
// versions of (source, kind, recordID) that pass keep (nil: every one)
// when it is later than at, else the zero time.
func newerStored(ledgers *nestedLedgers, source string, kind mapping.Kind, recordID string, at time.Time, keep func(*storedInput) bool) (time.Time, error) {
	versions, err := ledgers.versions(source, kind, recordID)
	if err != nil {
		return time.Time{}, err
	}
	return newerIn(versions, at, keep), nil
}

// newerIn returns the latest source.lastUpdated of versions that pass
// keep (nil: every one) when it is later than at, else the zero time.
func newerIn(versions []*store.Ledger, at time.Time, keep func(*storedInput) bool) time.Time {
	var newest time.Time
	for _, l := range versions {
		var in storedInput
		if len(l.Input) == 0 || json.Unmarshal(l.Input, &in) != nil {
			continue // written before the ledger kept inputs
		}
		if stored, ok := instant(in.Source.LastUpdated); ok && at.Before(stored) && stored.After(newest) && (keep == nil || keep(&in)) {
			newest = stored
		}
	}
	return newest
}

// nestedLedgers are the ledger versions of the records a transaction
// attempt reads before it writes its own ledger entry: the record's (its
// main resource's lookup, storedMain, and the staleness check,
// checkNotStale) and those of the records a session nests (the
// update-mode decision, storedNested, and checkNestedNotStale), each read
// once: the attempt writes no ledger entry of theirs until the end.
type nestedLedgers struct {
	st   store.Tx
	read map[[3]string][]*store.Ledger // by source, kind, record id
}

func newNestedLedgers(st store.Tx) *nestedLedgers { return &nestedLedgers{st: st} }

// versions are the ledger versions of (source, kind, recordID), oldest
// first.
func (n *nestedLedgers) versions(source string, kind mapping.Kind, recordID string) ([]*store.Ledger, error) {
	key := [3]string{source, string(kind), recordID}
	if v, ok := n.read[key]; ok {
		return v, nil
	}
	v, err := n.st.LedgerVersions(source, string(kind), recordID)
	if err != nil {
		return nil, err
	}
	if n.read == nil {
		n.read = map[[3]string][]*store.Ledger{}
	}
	n.read[key] = v
	return v, nil
}

// checkNestedNotStale applies checkNotStale across a session and the
// records it nests, which keep their identity (docs/records.md): a session
// version is refused when a record it nests has a later version stored on
// its own, and a record sent on its own when the stored session version
// that nests it is later. current are the stored targets of res's entries
// (engine.Tx.RunChecked).
func checkNestedNotStale(st store.Tx, nested *nestedLedgers, rec record, res *mapping.Result, current []*store.Resource, now time.Time) error {
	src := rec.rec.Env().Source
	at, ok := instant(src.LastUpdated)
	if !ok {
		return nil
	}
	if s, ok := rec.rec.(*mapping.Session); ok {
		var issues []outcome.Issue
		var latest time.Time // the latest newer source.lastUpdated of a nested record
		ptrs := nestedPointers(s)
		for j, n := range s.Nested() {
			versions, err := nested.versions(src.System, n.Kind, n.RecordID)
			if err != nil {
				return err
			}
			if newer := newerIn(versions, at, nil); !newer.IsZero() {
				if newer.After(latest) {
					latest = newer
				}
				ptr := ptrs[j]
				issues = append(issues, outcome.Issue{Severity: "error", Code: "conflict", Rule: RuleVersionStale,
					Pointer: ptr + "/recordId", Expression: nestedExpression(ptr) + ".recordId",
					Message: "a version of this nested record stored on its own has a later source.lastUpdated than " +
						"this session's"})
			}
		}
		if len(issues) == 0 {
			return nil
		}
		if ahead := latest.Sub(now); ahead > LastUpdatedAhead {
			return &outcome.Error{Kind: outcome.Conflict, Issues: append([]outcome.Issue{staleFutureIssue(ahead)}, issues...)}
		}
		return &outcome.Error{Kind: outcome.Conflict, Issues: append([]outcome.Issue{{Severity: "error", Code: "conflict",
			Rule: RuleVersionStale, Pointer: "/source/lastUpdated", Expression: "source.lastUpdated",
			Message: "records nested in this session (the issues after this one) have newer versions stored on their " +
				"own (a later source.lastUpdated than this session's), so this session is not applied: send it as it " +
				"is now with a later source.lastUpdated, or with those records as they are stored now"}}, issues...)}
	}
	// A record on its own: the session (its stored Procedure) that its
	// stored resources are part of, when a session document wrote them.
	for i, r := range current {
		if r == nil || i >= len(res.Entries) || res.Entries[i].ResourceType == "Patient" || res.Entries[i].Record != "" {
			continue
		}
		proc, err := sessionProcedure(r)
		if err != nil || proc == "" {
			return err
		}
		p, err := st.Read("Procedure", proc)
		if errors.Is(err, store.ErrNotFound) || errors.Is(err, store.ErrGone) {
			return nil
		}
		if err != nil {
			return err
		}
		sid, err := sessionID(p)
		if err != nil || sid == "" {
			return err
		}
		newer, err := newerStored(nested, src.System, mapping.KindSession, sid, at, func(in *storedInput) bool {
			return in.nests(rec.kind, src.RecordID)
		})
		return cmpErr(err, newer, now)
	}
	return nil
}

// nestedMember is the member of a session that nests records of a kind.
var nestedMember = map[mapping.Kind]string{mapping.KindVitals: "vitals", mapping.KindAssessment: "assessments",
	mapping.KindAdverseEvent: "adverseEvents"}

// nestedPointers are the JSON pointers ("/vitals/0") of the records s
// nests, one for each of s.Nested(), in its order.
func nestedPointers(s *mapping.Session) []string {
	index := map[mapping.Kind]int{}
	var out []string
	for _, n := range s.Nested() {
		out = append(out, fmt.Sprintf("/%s/%d", nestedMember[n.Kind], index[n.Kind]))
		index[n.Kind]++
	}
	return out
}

// recordKinds are the kinds a record of kind is in the ledger and its
// receipts: an infusion and its session are one record (docs/records.md).
func recordKinds(kind mapping.Kind) []mapping.Kind {
	if kind == mapping.KindInfusion || kind == mapping.KindSession {
		return []mapping.Kind{mapping.KindInfusion, mapping.KindSession}
	}
	return []mapping.Kind{kind}
}

// cmpErr is err, else, when newer (a stored version's later
// source.lastUpdated) is not zero, errVersionStale, or
// errVersionStaleFuture when newer is ahead of now.
func cmpErr(err error, newer, now time.Time) error {
	switch {
	case err != nil || newer.IsZero():
		return err
	case newer.Sub(now) > LastUpdatedAhead:
		return errVersionStaleFuture(newer.Sub(now))
	}
	return errVersionStale
}

// sessionProcedure returns the id of the Procedure a stored Observation
// is part of, or a stored AdverseEvent names as suspect entity or, when
// its session's drug cannot have caused it, as its related session
// (mapping.ExtRelatedSession), by literal reference (as a session
// document's resources are written); "" for none.
func sessionProcedure(r *store.Resource) (string, error) {
	proc, _, err := sessionLink(r)
	return proc, err
}

// sessionLink is sessionProcedure (proc), and else the record id of the
// session such a reference names by identifier (logical: its
// infusion-session identifier's value, as the resources of a record sent
// on its own naming its session are written); both "" for none.
func sessionLink(r *store.Resource) (proc, logical string, err error) {
	type ref struct {
		Reference  string
		Type       string
		Identifier struct{ System, Value string }
	}
	var doc struct {
		PartOf        []ref `json:"partOf"`
		SuspectEntity []struct {
			Instance ref `json:"instance"`
		} `json:"suspectEntity"`
		Extension []struct {
			URL            string `json:"url"`
			ValueReference ref
		} `json:"extension"`
	}
	if err := json.Unmarshal(r.Body, &doc); err != nil {
		return "", "", fmt.Errorf("stored %s/%s: %w", r.Type, r.ID, err)
	}
	refs := append([]ref(nil), doc.PartOf...)
	for _, s := range doc.SuspectEntity {
		refs = append(refs, s.Instance)
	}
	for _, x := range doc.Extension {
		if x.URL == mapping.ExtRelatedSession {
			refs = append(refs, x.ValueReference)
		}
	}
	for _, ref := range refs {
		if id, ok := strings.CutPrefix(ref.Reference, "Procedure/"); ok {
			return id, "", nil
		}
	}
	for _, ref := range refs {
		// The session's Procedure: its MedicationAdministration (an
		// event's suspect) has an identifier in the same system, the
		// session's id and "-medication" (a safety review: an event
		// homed in "S-medication" named "S-medication-medication").
		if ref.Reference == "" && ref.Type == "Procedure" && strings.HasSuffix(ref.Identifier.System, "/infusion-session") &&
			ref.Identifier.Value != "" {
			return "", ref.Identifier.Value, nil
		}
	}
	return "", "", nil
}

// sessionID returns a stored session Procedure's record id (its
// infusion-session identifier's value).
func sessionID(p *store.Resource) (string, error) {
	var doc struct {
		Identifier []struct{ System, Value string } `json:"identifier"`
	}
	if err := json.Unmarshal(p.Body, &doc); err != nil {
		return "", fmt.Errorf("stored %s/%s: %w", p.Type, p.ID, err)
	}
	for _, id := range doc.Identifier {
		if strings.HasSuffix(id.System, "/infusion-session") {
			return id.Value, nil
		}
	}
	return "", nil
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
