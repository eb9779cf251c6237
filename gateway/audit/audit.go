// Package audit builds the AuditEvents the gateway records for every
// request (shaped after IHE Basic Audit Log Patterns, BALP) and the hash
// chain that makes the audit trail tamper-evident. It is pure: storing the
// events in the same transaction as the data they describe is the
// gateway's job.
package audit

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"time"
)

// Code systems of the AuditEvent codes.
const (
	systemEventType   = "http://terminology.hl7.org/CodeSystem/audit-event-type"
	systemInteraction = "http://hl7.org/fhir/restful-interaction"
	systemEntityType  = "http://terminology.hl7.org/CodeSystem/audit-entity-type"
	systemObjectRole  = "http://terminology.hl7.org/CodeSystem/object-role"
	systemSourceType  = "http://terminology.hl7.org/CodeSystem/security-source-type"
	systemAgentType   = "http://dicom.nema.org/resources/ontology/DCM"
	// ExtTraceID carries the OpenTelemetry trace id of the request.
	ExtTraceID = "https://ketamine-gateway.org/fhir/StructureDefinition/audit-trace-id"
	// SystemRequestID names X-Request-Id values in entity.what.identifier.
	SystemRequestID = "https://ketamine-gateway.org/fhir/sid/request-id"
)

// Entity is one resource a request touched.
type Entity struct {
	Type, ID string
	Version  int64 // 0 when unknown (a search match, a failed write)
}

// Record describes one request. Description must be PHI-free: it is built
// by the gateway from the interaction and counts, never from content.
type Record struct {
	ID          string // the AuditEvent id
	Recorded    time.Time
	Interaction string // create, read, vread, update, delete, search-type, history-*, transaction, batch, operation, ingest
	Status      int    // the HTTP status answered
	ClientID    string // from authentication; "" when anonymous (development mode)
	ClientAddr  string // the client's network address
	Observer    string // the gateway instance
	Tenant      string
	Patient     string // "Patient/id" when the request concerns one patient
	Entities    []Entity
	RequestID   string
	TraceID     string
	Description string
}

// actions maps interactions to AuditEvent.action.
var actions = map[string]string{
	"create": "C", "ingest": "C", "read": "R", "vread": "R", "history-instance": "R", "history-type": "R",
	"history-system": "R", "search-type": "E", "search-system": "E", "update": "U", "conditional-update": "U",
	"delete": "D", "transaction": "E", "batch": "E", "operation": "E",
}

// outcome maps an HTTP status to AuditEvent.outcome: 0 success, 4 minor
// failure (the client's mistake), 8 serious failure (the server's).
func outcome(status int) string {
	switch {
	case status < 400:
		return "0"
	case status < 500:
		return "4"
	default:
		return "8"
	}
}

// Event renders the record as an AuditEvent resource (JSON-ready).
func Event(r Record) map[string]any {
	action, ok := actions[r.Interaction]
	if !ok {
		action = "E"
	}
	client := map[string]any{
		"type":      cc(systemAgentType, "110153", "Source Role ID"),
		"requestor": true,
	}
	if r.ClientID != "" {
		client["who"] = map[string]any{"identifier": map[string]any{"value": r.ClientID}}
	} else {
		client["who"] = map[string]any{"display": "anonymous (development mode)"}
	}
	if r.ClientAddr != "" {
		client["network"] = map[string]any{"address": r.ClientAddr, "type": "2"}
	}
	server := map[string]any{
		"type":      cc(systemAgentType, "110152", "Destination Role ID"),
		"who":       map[string]any{"display": r.Observer},
		"requestor": false,
	}
	ev := map[string]any{
		"resourceType": "AuditEvent",
		"type":         coding(systemEventType, "rest", "RESTful Operation"),
		"subtype":      []any{coding(systemInteraction, r.Interaction, r.Interaction)},
		"action":       action,
		"recorded":     r.Recorded.UTC().Format("2006-01-02T15:04:05.000Z"),
		"outcome":      outcome(r.Status),
		"outcomeDesc":  fmt.Sprintf("HTTP %d %s", r.Status, http.StatusText(r.Status)),
		"agent":        []any{client, server},
		"source": map[string]any{
			"site":     r.Tenant,
			"observer": map[string]any{"display": r.Observer},
			"type":     []any{coding(systemSourceType, "4", "Application Server")},
		},
	}
	if r.ID != "" {
		ev["id"] = r.ID
	}
	if r.TraceID != "" {
		ev["extension"] = []any{map[string]any{"url": ExtTraceID, "valueString": r.TraceID}}
	}
	var entities []any
	if r.Patient != "" {
		entities = append(entities, map[string]any{
			"what": map[string]any{"reference": r.Patient},
			"type": coding(systemEntityType, "1", "Person"),
			"role": coding(systemObjectRole, "1", "Patient"),
		})
	}
	for _, e := range r.Entities {
		ref := e.Type + "/" + e.ID
		if e.Version > 0 {
			ref = fmt.Sprintf("%s/_history/%d", ref, e.Version)
		}
		entities = append(entities, map[string]any{
			"what": map[string]any{"reference": ref},
			"type": coding(systemEntityType, "2", "System Object"),
			"role": coding(systemObjectRole, "4", "Domain Resource"),
		})
	}
	if r.RequestID != "" {
		entities = append(entities, map[string]any{
			"what":        map[string]any{"identifier": map[string]any{"system": SystemRequestID, "value": r.RequestID}},
			"type":        coding(systemEntityType, "2", "System Object"),
			"description": "the request",
		})
	}
	if len(entities) > 0 {
		ev["entity"] = entities
	}
	if r.Description != "" {
		ev["outcomeDesc"] = ev["outcomeDesc"].(string) + ": " + r.Description
	}
	if r.Tenant == "" {
		delete(ev["source"].(map[string]any), "site")
	}
	return ev
}

func coding(system, code, display string) map[string]any {
	return map[string]any{"system": system, "code": code, "display": display}
}

func cc(system, code, display string) map[string]any {
	return map[string]any{"coding": []any{coding(system, code, display)}}
}

// Link is the chain hash of an audit record: SHA-256 over the previous
// record's hash and this record's stored bytes, hex-encoded. The first
// record links to "".
func Link(prev string, body []byte) string {
	h := sha256.New()
	h.Write([]byte(prev))
	h.Write([]byte{0})
	h.Write(body)
	return hex.EncodeToString(h.Sum(nil))
}

// ChainEntry is one stored link of the chain.
type ChainEntry struct {
	Seq  int64
	Hash string
	Body []byte
}

// BrokenLink reports where a chain fails to verify.
type BrokenLink struct {
	Seq    int64
	Reason string
}

func (b *BrokenLink) Error() string {
	return fmt.Sprintf("audit chain broken at record %d: %s", b.Seq, b.Reason)
}

// Verifier checks a chain entry by entry, in sequence order.
type Verifier struct {
	prev string
	next int64
	n    int64
}

// Add checks the next entry; it returns a *BrokenLink for the first entry
// that is out of sequence or whose hash does not match its body and the
// previous hash.
func (v *Verifier) Add(e ChainEntry) error {
	if v.next == 0 {
		v.next = 1
	}
	if e.Seq != v.next {
		return &BrokenLink{Seq: v.next, Reason: fmt.Sprintf("record %d is missing (next stored is %d)", v.next, e.Seq)}
	}
	if want := Link(v.prev, e.Body); want != e.Hash {
		return &BrokenLink{Seq: e.Seq, Reason: "the record or its hash was changed"}
	}
	v.prev, v.next, v.n = e.Hash, e.Seq+1, v.n+1
	return nil
}

// Verified is the number of entries verified so far.
func (v *Verifier) Verified() int64 { return v.n }
