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
	"sort"
	"strconv"
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
	ExtTraceID = "https://ketamine-gateway.org/fhir/StructureDefinition/trace-id"
	// SystemRequestID names X-Request-Id values in entity.what.identifier.
	SystemRequestID = "https://ketamine-gateway.org/fhir/sid/request-id"
	// SystemDelivery names deliveries to EHRs (the operator API's ids) in
	// entity.what.identifier.
	SystemDelivery = "https://ketamine-gateway.org/fhir/sid/delivery"
	// SystemDestination names the EHR destinations of the configuration
	// (by name) in the AuditEvent of a record sent to one.
	SystemDestination = "https://ketamine-gateway.org/fhir/sid/destination"
)

// Entity is one resource a request touched.
type Entity struct {
	Type, ID string
	Version  int64 // 0 when unknown (a search match, a failed write)
	// SHA256 is, for a version the request wrote whose stored form the
	// AuditEvent vouches for (the Provenance of an ingest, a Bundle or a
	// replay), the hex SHA-256 of its JSON as stored: entity.detail
	// DetailJSONSHA256, which `audit verify` compares with the stored
	// version. "" for every other entity.
	SHA256 string
}

// The entity.detail types (AuditEvent.entity.detail.type) the gateway
// records: of a Provenance version a request wrote, the SHA-256 of its
// stored JSON; of a delivery's attempt to send a record to an EHR
// (delivery-send, on the delivery's entity), the attempt's number, the
// EHR's HTTP status ("0": no answer), the SHA-256 of the payload sent
// and of the EHR's answer as the outbox records it, and the attempt's
// PHI-free error. Each value is a valueString; a SHA-256 is 64 lowercase
// hex digits. Records written before they were recorded have none.
const (
	DetailJSONSHA256    = "json-sha256"
	DetailAttempt       = "attempt"
	DetailHTTPStatus    = "http-status"
	DetailPayloadSHA256 = "payload-sha256"
	DetailAnswerSHA256  = "answer-sha256"
	DetailError         = "error"
)

// Attempt is, in the record of an attempt to send a record to an EHR
// (delivery-send), the attempt as the outbox records it, carried in the
// AuditEvent's hash chain so that the outbox's row can be checked against
// it (entity.detail of the delivery: see DetailAttempt).
type Attempt struct {
	N int
	// HTTPStatus is the EHR's status (0: no answer), not the status the
	// AuditEvent's outcome names (502 for none).
	HTTPStatus int
	// PayloadSHA256 and AnswerSHA256 are the hex SHA-256 of the payload
	// sent and of the EHR's answer as recorded (of nothing: no answer).
	PayloadSHA256, AnswerSHA256 string
	// Error is the attempt's PHI-free error ("http 503", "timeout"; ""
	// for none).
	Error string
}

// details are the attempt's entity.detail pairs (type, value), in order.
func (a *Attempt) details() [][2]string {
	d := [][2]string{{DetailAttempt, strconv.Itoa(a.N)}, {DetailHTTPStatus, strconv.Itoa(a.HTTPStatus)},
		{DetailPayloadSHA256, a.PayloadSHA256}, {DetailAnswerSHA256, a.AnswerSHA256}}
	if a.Error != "" {
		d = append(d, [2]string{DetailError, a.Error})
	}
	return d
}

// SHA256 is the hex SHA-256 of b, as entity.detail values carry it.
func SHA256(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// Identified is something a request concerned that is no resource of
// this server, named by an identifier: a native source record (the system
// and value its Provenance names it by), a delivery, a background job.
type Identified struct {
	System, Value string
	// Description says what it is in fixed words ("the source record"),
	// never content.
	Description string
}

// Record describes one request. Description must be PHI-free: it is built
// by the gateway from the interaction, counts and rule ids, never from
// content.
type Record struct {
	ID       string // the AuditEvent id
	Recorded time.Time
	// Interaction is a FHIR restful-interaction code (create, read, vread,
	// update, delete, history-instance, history-type, history-system,
	// search-type, search-system, capabilities, transaction, batch,
	// operation) or one of the gateway's own (see Interactions).
	Interaction string
	// Status is the HTTP status answered; for a record of no HTTP
	// exchange (NoHTTP) the one whose class (2xx done, 4xx refused, 5xx
	// failed) is its outcome (0: done).
	Status   int
	ClientID string // from authentication; "" when anonymous (development mode) or unauthenticated
	// Unauthenticated tells, for a record without a ClientID, that the
	// deployment authenticates its clients and this caller did not
	// (UnauthenticatedClient); false: development mode (AnonymousClient).
	Unauthenticated bool
	ClientAddr      string // the client's network address
	Observer        string // the gateway instance
	Tenant          string
	// Patients are "Patient/id" references of the patients the request
	// concerned.
	Patients []string
	Entities []Entity
	// Identified are the things the request concerned that are named by
	// identifier (entities after Entities, before the request's).
	Identified []Identified
	// Action is AuditEvent.action when it is not the interaction's own
	// (an ingest's: C a new record, U a new version, R a version re-sent,
	// E a dry run); "" for the interaction's.
	Action string
	// Recipient is, for a record the gateway sent (delivery-send), the
	// destination that received it: the gateway is then the requesting
	// agent (by Observer) and Recipient the other one (no client).
	Recipient   string
	RequestID   string
	TraceID     string
	Description string
	// NoHTTP tells that the request had no HTTP exchange (a CLI command
	// on the database, a change the gateway found at start): its
	// outcomeDesc then says what was done without an HTTP status
	// (outcomeText), and outcome still follows Status's class (2xx done,
	// 4xx refused, 5xx failed).
	NoHTTP bool
	// PeriodStart and PeriodEnd are AuditEvent.period, when the activity
	// happened where that is not when it was recorded (an attempt to send
	// a record to an EHR: from its start to its answer; an interrupted
	// one's only its start, when it was claimed). Zero: no period.
	PeriodStart, PeriodEnd time.Time
	// Attempt is, for a delivery-send, the attempt as the outbox records
	// it (nil: none).
	Attempt *Attempt
	// ByGateway tells that the gateway itself acted, no client (a change
	// of the registered clients it found at start: client-registration):
	// it is the requesting agent, by Observer.
	ByGateway bool
}

// SameRequest is a record of the same request as r (a further part of
// its AuditEvent, a tenant's share of it) under id: who asked, when,
// what, with what outcome, and the request and trace ids, and nothing of
// what r names (patients, entities, identified things, the attempt) or
// says (Description).
func (r Record) SameRequest(id string) Record {
	return Record{ID: id, Recorded: r.Recorded, Interaction: r.Interaction, Status: r.Status, NoHTTP: r.NoHTTP, ClientID: r.ClientID,
		Unauthenticated: r.Unauthenticated, ClientAddr: r.ClientAddr, Observer: r.Observer, Tenant: r.Tenant,
		Action: r.Action, Recipient: r.Recipient, RequestID: r.RequestID, TraceID: r.TraceID,
		PeriodStart: r.PeriodStart, PeriodEnd: r.PeriodEnd, ByGateway: r.ByGateway}
}

// anonymous is the display of a record's client without a ClientID.
func (r *Record) anonymous() string {
	if r.Unauthenticated {
		return UnauthenticatedClient
	}
	return AnonymousClient
}

// Code systems of the gateway's own audit codes.
const (
	// SystemGatewayInteraction holds the interactions that are not FHIR
	// REST interactions (native ingest, operator endpoints, login).
	SystemGatewayInteraction = "https://ketamine-gateway.org/fhir/CodeSystem/audit-interaction"
	// SystemClient names authenticated clients in agent.who.identifier.
	SystemClient = "https://ketamine-gateway.org/fhir/sid/client"
)

// kind describes how an interaction is recorded.
type kind struct {
	action  string // AuditEvent.action: C R U D E
	gateway bool   // subtype from SystemGatewayInteraction
	login   bool   // type DCM 110114 User Authentication
	// security: type DCM 110137 User Security Attributes Changed (a
	// registered client's tenant, scopes or keys)
	security bool
	export   bool // type DCM 110106 Export (the gateway sends data out)
	display  string
}

// interactions are the interactions the gateway records.
var interactions = map[string]kind{
	"create":             {action: "C", display: "create"},
	"read":               {action: "R", display: "read"},
	"vread":              {action: "R", display: "vread"},
	"update":             {action: "U", display: "update"},
	"delete":             {action: "D", display: "delete"},
	"patch":              {action: "U", display: "patch"},
	"history-instance":   {action: "R", display: "history-instance"},
	"history-type":       {action: "R", display: "history-type"},
	"history-system":     {action: "R", display: "history-system"},
	"search-type":        {action: "E", display: "search-type"},
	"search-system":      {action: "E", display: "search-system"},
	"search-compartment": {action: "E", display: "search-compartment"},
	"capabilities":       {action: "R", display: "capabilities"},
	"transaction":        {action: "E", display: "transaction"},
	"batch":              {action: "E", display: "batch"},
	"operation":          {action: "E", display: "operation"},

	"ingest":           {action: "C", gateway: true, display: "native record ingest"},
	"delivery-list":    {action: "R", gateway: true, display: "list deliveries"},
	"delivery-read":    {action: "R", gateway: true, display: "read a delivery"},
	"delivery-retry":   {action: "U", gateway: true, display: "retry a delivery"},
	"delivery-cancel":  {action: "U", gateway: true, display: "cancel a delivery"},
	"delivery-replay":  {action: "E", gateway: true, display: "replay deliveries"},
	"delivery-send":    {action: "R", gateway: true, export: true, display: "send a record to an EHR"},
	"lineage":          {action: "R", gateway: true, display: "lineage query"},
	"audit-verify":     {action: "E", gateway: true, display: "verify the audit chain"},
	"audit-export":     {action: "R", gateway: true, display: "export the audit chain"},
	"client-list":      {action: "R", gateway: true, display: "list the registered clients"},
	"smart-config":     {action: "R", gateway: true, display: "SMART configuration"},
	"bulk-export":      {action: "E", gateway: true, display: "bulk data export kick-off"},
	"bulk-import":      {action: "C", gateway: true, display: "bulk import of native records"},
	"mapping-replay":   {action: "E", gateway: true, display: "mapping replay"},
	"reindex":          {action: "E", gateway: true, display: "rebuild the search index"},
	"job-status":       {action: "R", gateway: true, display: "status of a background job"},
	"job-cancel":       {action: "D", gateway: true, display: "cancel or delete a background job"},
	"job-download":     {action: "R", gateway: true, display: "download a file of a background job"},
	"unknown-endpoint": {action: "E", gateway: true, display: "request to no endpoint"},
	"options":          {action: "R", gateway: true, display: "the methods an endpoint allows (OPTIONS)"},
	"login":            {action: "E", login: true, display: "Login"},
	"logout":           {action: "E", login: true, display: "Logout"},
	// A registered client added (C), changed (U) or removed (D), as the
	// gateway found at start (auditlog.Log.RecordClients).
	"client-registration": {action: "U", gateway: true, security: true, display: "registered client added, changed or removed"},
}

// Interactions lists the interaction codes Event knows, sorted.
func Interactions() []string {
	out := make([]string, 0, len(interactions))
	for k := range interactions {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// Known reports whether Event knows the interaction.
func Known(interaction string) bool {
	_, ok := interactions[interaction]
	return ok
}

// Subtype is the AuditEvent.subtype coding (system, code) the gateway
// records an interaction with: most interactions under their own code,
// login and logout under DICOM's 110122 Login and 110123 Logout. A search
// by interaction searches this token (search.Token(Subtype(i))).
func Subtype(interaction string) (system, code string) {
	_, _, st := classify(interaction)
	return st[0], st[1]
}

// InteractionOf is the interaction a stored AuditEvent's subtype coding
// (system, code) records, the inverse of Subtype: 110122 is "login". A
// coding the gateway does not record is returned as its code.
func InteractionOf(system, code string) string {
	for in := range interactions {
		if s, c := Subtype(in); s == system && c == code {
			return in
		}
	}
	return code
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

// outcomeText is r's AuditEvent.outcomeDesc: outcomeDesc, or for a
// request of no HTTP exchange (NoHTTP) the description alone (the
// outcome's class when there is none), which claims no HTTP status.
func (r Record) outcomeText() string {
	switch {
	case !r.NoHTTP:
		return outcomeDesc(r.Status, r.Description)
	case r.Description != "":
		return r.Description
	case r.Status >= 500:
		return "failed"
	case r.Status >= 400:
		return "rejected"
	}
	return "succeeded"
}

// Event renders the record as an AuditEvent resource (JSON-ready: only
// strings, bools, []any and map[string]any). An unknown interaction is
// recorded as "operation". It is the readable definition of the AuditEvent
// the gateway stores; Render, which the audit log uses, writes the same
// bytes and index entries directly, and the tests hold it to Event.
func Event(r Record) map[string]any {
	k, typ, subtype := classify(r.Interaction)
	client := map[string]any{
		"type":      cc(systemAgentType, "110153", "Source Role ID"),
		"requestor": true,
	}
	switch {
	case r.ClientID != "":
		client["who"] = map[string]any{"identifier": map[string]any{"system": SystemClient, "value": r.ClientID}}
	case r.Recipient != "" || r.ByGateway:
		client["who"] = map[string]any{"display": r.Observer} // the gateway sent it
	default:
		client["who"] = map[string]any{"display": r.anonymous()}
	}
	if r.ClientAddr != "" {
		client["network"] = map[string]any{"address": r.ClientAddr, "type": "2"}
	}
	server := map[string]any{
		"type":      cc(systemAgentType, "110152", "Destination Role ID"),
		"who":       map[string]any{"display": r.destination()},
		"requestor": false,
	}
	desc := r.outcomeText()
	source := map[string]any{
		"observer": map[string]any{"display": r.Observer},
		"type":     []any{coding(systemSourceType, "4", "Application Server")},
	}
	if r.Tenant != "" {
		source["site"] = r.Tenant
	}
	ev := map[string]any{
		"resourceType": "AuditEvent",
		"type":         coding(typ[0], typ[1], typ[2]),
		"subtype":      []any{coding(subtype[0], subtype[1], subtype[2])},
		"action":       r.action(k),
		"recorded":     r.Recorded.UTC().Format("2006-01-02T15:04:05.000Z"),
		"outcome":      outcome(r.Status),
		"outcomeDesc":  desc,
		"agent":        []any{client, server},
		"source":       source,
	}
	if r.ID != "" {
		ev["id"] = r.ID
	}
	if r.TraceID != "" {
		ev["extension"] = []any{map[string]any{"url": ExtTraceID, "valueString": r.TraceID}}
	}
	if !r.PeriodStart.IsZero() {
		period := map[string]any{"start": formatInstant(r.PeriodStart)}
		if !r.PeriodEnd.IsZero() {
			period["end"] = formatInstant(r.PeriodEnd)
		}
		ev["period"] = period
	}
	var entities []any
	for _, p := range r.Patients {
		entities = append(entities, map[string]any{
			"what": map[string]any{"reference": p},
			"type": coding(systemEntityType, "1", "Person"),
			"role": coding(systemObjectRole, "1", "Patient"),
		})
	}
	for _, e := range r.Entities {
		entity := map[string]any{
			"what": map[string]any{"reference": e.reference()},
			"type": coding(systemEntityType, "2", "System Object"),
			"role": coding(systemObjectRole, "4", "Domain Resource"),
		}
		if e.SHA256 != "" {
			entity["detail"] = details([][2]string{{DetailJSONSHA256, e.SHA256}})
		}
		entities = append(entities, entity)
	}
	attempt := r.Attempt
	for _, id := range r.identified() {
		entity := map[string]any{
			"what":        map[string]any{"identifier": map[string]any{"system": id.System, "value": id.Value}},
			"type":        coding(systemEntityType, "2", "System Object"),
			"description": id.Description,
		}
		if attempt != nil && id.System == SystemDelivery {
			entity["detail"] = details(attempt.details())
			attempt = nil // on the first delivery named
		}
		entities = append(entities, entity)
	}
	if len(entities) > 0 {
		ev["entity"] = entities
	}
	return ev
}

// destination is who received the request or the data: the recipient of
// what the gateway sent, else the gateway itself.
func (r Record) destination() string {
	if r.Recipient != "" {
		return r.Recipient
	}
	return r.Observer
}

// action is the record's AuditEvent.action: Action when set, else the
// interaction's (k).
func (r Record) action(k kind) string {
	if r.Action != "" {
		return r.Action
	}
	return k.action
}

// identified are the entities named by identifier: Identified, then the
// request.
func (r Record) identified() []Identified {
	if r.RequestID == "" {
		return r.Identified
	}
	return append(r.Identified[:len(r.Identified):len(r.Identified)], Identified{System: SystemRequestID, Value: r.RequestID, Description: "the request"})
}

// classify returns the interaction's kind (an unknown one is recorded as
// "operation") and the AuditEvent's type and subtype codings (system,
// code, display).
func classify(interaction string) (kind, [3]string, [3]string) {
	k, ok := interactions[interaction]
	if !ok {
		interaction, k = "operation", interactions["operation"]
	}
	typ, subtype := [3]string{systemEventType, "rest", "RESTful Operation"}, [3]string{systemInteraction, interaction, k.display}
	switch {
	case k.login && interaction == "logout":
		typ, subtype = [3]string{systemAgentType, "110114", "User Authentication"}, [3]string{systemAgentType, "110123", "Logout"}
	case k.login:
		typ, subtype = [3]string{systemAgentType, "110114", "User Authentication"}, [3]string{systemAgentType, "110122", "Login"}
	case k.export:
		typ, subtype = [3]string{systemAgentType, "110106", "Export"}, [3]string{SystemGatewayInteraction, interaction, k.display}
	case k.security:
		typ, subtype = [3]string{systemAgentType, "110137", "User Security Attributes Changed"}, [3]string{SystemGatewayInteraction, interaction, k.display}
	case k.gateway:
		subtype = [3]string{SystemGatewayInteraction, interaction, k.display}
	}
	return k, typ, subtype
}

// outcomeDesc is AuditEvent.outcomeDesc of a request with an HTTP
// exchange: the HTTP status and the record's PHI-free description (one of
// no HTTP exchange: Record.outcomeText).
func outcomeDesc(status int, description string) string {
	desc := "HTTP " + strconv.Itoa(status) + " " + http.StatusText(status)
	if description != "" {
		desc += ": " + description
	}
	return desc
}

// reference is the entity's literal reference, with its version when known.
func (e Entity) reference() string {
	if e.Version > 0 {
		return e.Type + "/" + e.ID + "/_history/" + strconv.FormatInt(e.Version, 10)
	}
	return e.Type + "/" + e.ID
}

// details are entity.detail elements of (type, valueString) pairs.
func details(pairs [][2]string) []any {
	out := make([]any, len(pairs))
	for i, p := range pairs {
		out[i] = map[string]any{"type": p[0], "valueString": p[1]}
	}
	return out
}

// formatInstant is t as the AuditEvent's instants are written (UTC, ms).
func formatInstant(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05.000Z") }

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
	ID   string // the AuditEvent id
	Seq  int64
	Hash string
	Body []byte
	// Faults name, in short PHI-free sentences, what the store found
	// wrong with how it serves AuditEvent/ID besides Body, which the hash
	// covers: its current row, other versions, its search index rows
	// (none: nothing). The Verifier does not look at them: each is a
	// finding of its own, not a broken link.
	Faults []string
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
	if len(e.Body) == 0 {
		// The chain row stands, the AuditEvent it hashes does not (an
		// auditor's review: it read "changed").
		return &BrokenLink{Seq: e.Seq, Reason: "the record is missing: its AuditEvent was deleted, the chain still holds its hash"}
	}
	if want := Link(v.prev, e.Body); want != e.Hash {
		return &BrokenLink{Seq: e.Seq, Reason: "the record or its hash was changed"}
	}
	v.prev, v.next, v.n = e.Hash, e.Seq+1, v.n+1
	return nil
}

// Resume makes v go on from entry seq, whose stored hash is hash (a
// verification from a record checked before: the next entry Add takes is
// seq+1). seq 0 is the start of the chain.
func (v *Verifier) Resume(seq int64, hash string) {
	v.prev, v.next = hash, seq+1
}

// Verified is the number of entries verified so far.
func (v *Verifier) Verified() int64 { return v.n }
