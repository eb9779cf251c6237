package store

import (
	"context"
	"time"
)

// Instance is one gateway process as it last recorded itself in the
// database it shares with the others: its name (serve --instance), a
// fingerprint per group of settings that must agree between the
// gateways on one database (opaque hashes, never a setting's value) and
// when it last recorded them (its heartbeat).
type Instance struct {
	Name         string
	Fingerprints map[string]string
	Seen         time.Time
}

// InstanceRetention is how long the record of a gateway no longer seen
// is kept.
const InstanceRetention = 24 * time.Hour

// Instances is the part of a Store that keeps the gateways' records of
// themselves. Every method returns ErrUnavailable when the database
// cannot be reached.
type Instances interface {
	// PutInstance records in (replacing the record of its name), and
	// deletes the records not seen for InstanceRetention before in.Seen
	// (gateways stopped long ago).
	PutInstance(ctx context.Context, in Instance) error
	// ListInstances returns the instances seen at or after since, by name.
	ListInstances(ctx context.Context, since time.Time) ([]Instance, error)
	// DeleteInstance deletes the record of name (a gateway stopping
	// cleanly); none is not an error.
	DeleteInstance(ctx context.Context, name string) error
}
