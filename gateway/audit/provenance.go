package audit

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Provenance codes and the gateway's extensions and identifier systems.
const (
	systemParticipant = "http://terminology.hl7.org/CodeSystem/provenance-participant-type"
	systemDataOp      = "http://terminology.hl7.org/CodeSystem/v3-DataOperation"
	// ExtContentHash carries "sha256:<hex>" of the source content a
	// Provenance entity stands for.
	ExtContentHash = "https://ketamine-gateway.org/fhir/StructureDefinition/content-hash"
	// ExtReceiptPatient names, on the gateway's receipt of a native record,
	// the Patient the record is about, also when the receipt targets no
	// Patient version (a later version of a record, or a record of a
	// patient stored before): reading or searching the receipt names that
	// patient in its AuditEvent.
	ExtReceiptPatient = "https://ketamine-gateway.org/fhir/StructureDefinition/receipt-patient"
	// SystemSource names clinic source systems in Provenance agents.
	SystemSource = "https://ketamine-gateway.org/fhir/sid/source-system"
	// SystemMappingVersion names the mapping version that assembled the
	// resources.
	SystemMappingVersion = "https://ketamine-gateway.org/fhir/sid/mapping-version"
	// ExtRecordKind and ExtRecordVersion carry a native record's kind and
	// version on its Provenance entity.
	ExtRecordKind    = "https://ketamine-gateway.org/fhir/StructureDefinition/record-kind"
	ExtRecordVersion = "https://ketamine-gateway.org/fhir/StructureDefinition/record-version"
)

// AnonymousClient names the client of development mode, which
// authenticates none, wherever the gateway records a client: the
// AuditEvent's requesting agent, the enterer of a gateway Provenance and
// the lineage. One name, so an auditor searching for it finds every
// record.
const AnonymousClient = "anonymous client (development mode)"

// UnauthenticatedClient names, in an AuditEvent's requesting agent, the
// caller of a request that did not authenticate in a deployment that
// authenticates its clients (a refused token, no token, a public route):
// not development mode, whose every caller has every permission.
const UnauthenticatedClient = "unauthenticated client"

// The gateway's own Provenance (of a native record, a mapping replay or a
// client's Bundle) is recognised by its agents: every one has an enterer
// naming the client in SystemClient (or AnonymousClient), a record's also
// the source system (SystemSource) and the mapping version
// (SystemMappingVersion). Clients may not write a Provenance that names
// such an agent, nor one at an id the gateway reserves for a record's
// Provenance (RecordProvenanceID), nor change or delete one of the
// gateway's (the engine refuses them); the lineage believes only these.

// recordProvenancePrefix starts the id of every record's Provenance.
const recordProvenancePrefix = "rec-"

// RecordProvenanceID is the id of the Provenance of one version of a
// native record of tenant: the same version always has the same one.
func RecordProvenanceID(tenant, source, kind, recordID, version string) string {
	sum := sha256.Sum256([]byte(tenant + "|" + source + "|" + kind + "|" + recordID + "|" + version))
	return recordProvenancePrefix + hex.EncodeToString(sum[:16])
}

// Versioned splits a versioned reference as a Provenance targets what a
// request wrote ("Observation/x/_history/3": "Observation/x", 3); ok is
// false for a reference without a version.
func Versioned(ref string) (unversioned string, version int64, ok bool) {
	unversioned, v, ok := strings.Cut(ref, "/_history/")
	n, err := strconv.ParseInt(v, 10, 64)
	if !ok || err != nil {
		return ref, 0, false
	}
	return unversioned, n, true
}

// ReservedProvenanceID reports whether id has the form of the ids the
// gateway gives the Provenance of native records ("rec-…").
func ReservedProvenanceID(id string) bool { return strings.HasPrefix(id, recordProvenancePrefix) }

// IsGatewayProvenance reports whether doc, a decoded Provenance, names one
// of the gateway's own agents: an agent identified in SystemClient,
// SystemSource or SystemMappingVersion, or the anonymous enterer of the
// development mode.
func IsGatewayProvenance(doc map[string]any) bool {
	agents, _ := doc["agent"].([]any)
	for _, a := range agents {
		agent, _ := a.(map[string]any)
		who, _ := agent["who"].(map[string]any)
		ident, _ := who["identifier"].(map[string]any)
		switch sys, _ := ident["system"].(string); sys {
		case SystemClient, SystemSource, SystemMappingVersion:
			return true
		}
		if d, _ := who["display"].(string); d == AnonymousClient {
			return true
		}
	}
	return false
}

// Nullifies reports whether body, a stored Provenance, records a NULLIFY
// activity: the receipt of a native record version that withdraws the
// record (source.status entered-in-error).
func Nullifies(body []byte) bool {
	var p struct {
		Activity struct {
			Coding []struct{ System, Code string }
		}
	}
	if json.Unmarshal(body, &p) != nil {
		return false
	}
	return slices.ContainsFunc(p.Activity.Coding, func(c struct{ System, Code string }) bool {
		return c.System == systemDataOp && c.Code == "NULLIFY"
	})
}

// activityDisplay are the v3-DataOperation displays.
var activityDisplay = map[string]string{"CREATE": "create", "UPDATE": "revise", "DELETE": "delete", "EXECUTE": "execute", "NULLIFY": "nullify"}

// Provenance describes where a set of resource versions came from: a
// native record the gateway mapped, or a Bundle a client posted.
type Provenance struct {
	ID       string
	Recorded time.Time
	// Targets are the resource versions written.
	Targets []Entity
	// Activity is a v3-DataOperation code: CREATE, UPDATE, DELETE,
	// NULLIFY (a native record withdrawn) or EXECUTE (a Bundle of
	// several).
	Activity string
	// Source is the clinic system of a native record ("" for a Bundle).
	Source string
	// MappingVersion is the mapping that assembled a native record.
	MappingVersion string
	// ClientID is the authenticated client that sent the content; ""
	// when anonymous (development mode).
	ClientID string
	// Patient is the Patient a native record is about ("Patient/id"; ""
	// for a Bundle): ExtReceiptPatient.
	Patient string
	// What identifies the source content: the native record's identifier
	// (system, value) or, for a Bundle, its identifier when it has one.
	WhatSystem, WhatValue string
	// WhatDisplay describes the content without PHI ("assessment record
	// version 3", "transaction Bundle").
	WhatDisplay string
	// RecordKind and RecordVersion are the native record's kind and
	// version ("" for a Bundle).
	RecordKind, RecordVersion string
	// ContentHash is the hex SHA-256 of the source content.
	ContentHash string
	TraceID     string
	// PreviousMappingVersion is, for resources a mapping replay corrected,
	// the mapping version that assembled the versions they replace (an
	// entity with role revision); Reason why they were corrected.
	PreviousMappingVersion string
	Reason                 string
	// Nested are the records a session record nests, which keep their own
	// identity (docs/records.md): each is an entity with role source after
	// the session's, so that the lineage of a nested record finds the
	// session that brought it.
	Nested []NestedRecord
}

// NestedRecord is a record nested in a session: its identifier (as
// WhatSystem, WhatValue) and kind.
type NestedRecord struct {
	System, Value, Kind string
}

// ProvenanceResource renders p as a Provenance resource (JSON-ready).
func ProvenanceResource(p Provenance) map[string]any {
	targets := make([]any, 0, len(p.Targets))
	for _, t := range p.Targets {
		ref := t.Type + "/" + t.ID
		if t.Version > 0 {
			ref = fmt.Sprintf("%s/_history/%d", ref, t.Version)
		}
		targets = append(targets, map[string]any{"reference": ref})
	}
	var agents []any
	if p.Source != "" {
		agents = append(agents, map[string]any{
			"type": cc(systemParticipant, "author", "Author"),
			"who": map[string]any{"identifier": map[string]any{"system": SystemSource, "value": p.Source},
				"display": "source system " + p.Source},
		})
	}
	if p.MappingVersion != "" {
		agents = append(agents, map[string]any{
			"type": cc(systemParticipant, "assembler", "Assembler"),
			"who": map[string]any{"identifier": map[string]any{"system": SystemMappingVersion, "value": p.MappingVersion},
				"display": "ketamine-gateway mapping " + p.MappingVersion},
		})
	}
	client := map[string]any{"display": AnonymousClient}
	if p.ClientID != "" {
		client = map[string]any{"identifier": map[string]any{"system": SystemClient, "value": p.ClientID}}
	}
	agents = append(agents, map[string]any{"type": cc(systemParticipant, "enterer", "Enterer"), "who": client})
	what := map[string]any{"display": p.WhatDisplay}
	if p.WhatValue != "" {
		id := map[string]any{"value": p.WhatValue}
		if p.WhatSystem != "" {
			id["system"] = p.WhatSystem
		}
		what["identifier"] = id
	}
	entity := map[string]any{"role": "source", "what": what}
	var exts []any
	for _, x := range []struct{ url, v string }{
		{ExtRecordKind, p.RecordKind}, {ExtRecordVersion, p.RecordVersion}, {ExtContentHash, p.ContentHash},
	} {
		if x.v == "" {
			continue
		}
		if x.url == ExtContentHash {
			x.v = "sha256:" + x.v
		}
		exts = append(exts, map[string]any{"url": x.url, "valueString": x.v})
	}
	if exts != nil {
		entity["extension"] = exts
	}
	entities := []any{entity}
	for _, n := range p.Nested {
		entities = append(entities, map[string]any{"role": "source", "what": map[string]any{
			"identifier": map[string]any{"system": n.System, "value": n.Value},
			"display":    n.Kind + " record nested in the session"},
			"extension": []any{map[string]any{"url": ExtRecordKind, "valueString": n.Kind}}})
	}
	if p.PreviousMappingVersion != "" {
		entities = append(entities, map[string]any{"role": "revision", "what": map[string]any{
			"identifier": map[string]any{"system": SystemMappingVersion, "value": p.PreviousMappingVersion},
			"display":    "ketamine-gateway mapping " + p.PreviousMappingVersion}})
	}
	doc := map[string]any{
		"resourceType": "Provenance",
		"target":       targets,
		"recorded":     p.Recorded.UTC().Format("2006-01-02T15:04:05.000Z"),
		"activity":     cc(systemDataOp, p.Activity, activityDisplay[p.Activity]),
		"agent":        agents,
		"entity":       entities,
	}
	if p.Reason != "" {
		doc["reason"] = []any{map[string]any{"text": p.Reason}}
	}
	if p.ID != "" {
		doc["id"] = p.ID
	}
	var top []any
	if p.TraceID != "" {
		top = append(top, map[string]any{"url": ExtTraceID, "valueString": p.TraceID})
	}
	if p.Patient != "" {
		top = append(top, map[string]any{"url": ExtReceiptPatient, "valueReference": map[string]any{"reference": p.Patient}})
	}
	if top != nil {
		doc["extension"] = top
	}
	return doc
}
