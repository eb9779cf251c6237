// Package delivery sends what the gateway stores to hospital EHRs (FHIR R4
// servers), durably and exactly once in effect.
//
// # Model
//
// The gateway maps each native clinic record to a FHIR transaction Bundle
// whose entries are idempotent at any FHIR server (conditional creates with
// ifNoneExist, conditional updates, PUTs and DELETEs of deterministic ids).
// In the database transaction that stores the record, the storage layer
// enqueues one outbox item (a [store.OutboxItem]) per [Destination] that
// [Destination.Accepts] the record. A [Worker] claims due items from the
// [Outbox] (the store's own outbox: the SQLite and PostgreSQL stores
// implement it as they are), sends them and records every attempt as a
// [store.Attempt] with [Outbox.Complete]. Because every entry is idempotent,
// an item may be sent more than once (a crash after the EHR committed but
// before Complete, a lost response) without creating duplicates: delivery
// is at least once on the wire and exactly once in the EHR's data.
//
// # Ordering
//
// Items share an OrderKey (source|kind|recordId) within a tenant when they
// are versions of the same record. [Outbox.Claim] hands out only the head
// of each tenant and order key (no earlier item of it pending or in
// flight), so an amendment never overtakes its original. Dead letters do
// not block later items of their key, and nothing blocks other keys or
// other tenants.
//
// # Sending
//
// A destination is sent transaction Bundles (Mode transaction), batch
// Bundles (Mode batch) or one request per entry (Mode single). The mode is
// lowered, never raised, by the EHR's CapabilityStatement (transaction ->
// batch -> single), by a Bundle larger than Destination.MaxEntries and by a
// 413 answer. The same check warns of each resource type the destination
// is sent (WorkerOptions.Resources: mapping.Writes) that the statement
// does not list with the interactions the deliveries use, or without
// declaring true the flags they rely on (conditionalCreate,
// conditionalUpdate, updateCreate: Capabilities.Unsupported); nothing is
// held for it. In batch and single mode the urn:uuid references between
// entries are resolved by the gateway: entries are sent in dependency order
// and references are rewritten to the ids the EHR assigned. Only the
// configured base URL is ever contacted: Location headers and URLs in
// records or responses are recorded, never fetched, and redirects to other
// hosts are not followed.
//
// # Failures
//
// A 2xx answer with a well-formed transaction-response (or batch-response
// with every entry 2xx) completes the item. 408, 429, 5xx, 401 after a token
// refresh, redirects, network errors, timeouts and malformed success
// answers are retried with exponential backoff and full jitter, with any
// Retry-After as a floor, until WorkerOptions.MaxAttempts or MaxAge; other
// 4xx answers make the item a dead letter at once, with the EHR's
// OperationOutcome recorded. The recorded store.Attempt.Error is always
// free of PHI, tokens and keys.
//
// # Authorization
//
// A destination takes no credentials, a static bearer token, or SMART
// Backend Services: a client_credentials grant authenticated with a client
// assertion JWT (private_key_jwt, RS384 or ES384) signed with go-jose. A
// destination's rate limit is a golang.org/x/time/rate token bucket on the
// worker's Clock.
package delivery
