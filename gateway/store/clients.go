package store

import "time"

// ClientRecord is a registered SMART client as the gateway last recorded
// it in the database (table client_registrations): its id, the digest of
// its registration and the registration itself as the recorder wrote it
// (opaque to the store: its tenant, scopes and key ids with their
// thumbprints, never key material), and when it was recorded. A gateway
// compares the clients it is configured with to these at start and audits
// every difference (auditlog.Log.RecordClients).
type ClientRecord struct {
	ID, Digest   string
	Registration []byte
	Recorded     time.Time
}
