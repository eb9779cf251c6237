package store

import (
	"context"
	"time"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/search"
)

// ExportQuery selects one page of the current, non-deleted resources of
// one type for a bulk export, in id order after After: a page at a time,
// however large the result, and every resource exactly once even while
// others are written (a resource updated during the walk keeps its place
// and comes with its version at the time its page is read).
type ExportQuery struct {
	Type string
	// Tenant restricts the resources to one tenant's, as in search.Query
	// ("" the default tenant, search.AllTenants every tenant's).
	Tenant string
	// Since, when not zero, keeps the resources last updated after it.
	Since time.Time
	// After is the id the page starts after ("" from the first).
	After string
	// Filters, when any, keep the resources matching at least one of them
	// (each a set of search clauses ANDed, on Type; their Type, Tenant,
	// paging and includes are ignored).
	Filters []*search.Query
	// ChangedAfter, when not zero and Filters are given, keeps too the
	// resources last updated after it, whether their current version
	// matches the filters or not: a bulk export decides on their version
	// as of its transaction time itself.
	ChangedAfter time.Time
	// Limit is the page size (default 1000).
	Limit int
	// Deleted selects the resources whose current version is a deletion
	// instead (the deletion version, without a body; Since then compares
	// the time of the deletion). Filters must be empty: a deleted
	// resource has no index rows.
	Deleted bool
}

// LedgerQuery selects ledger entries, in key order (source, kind, record
// id, version) after After.
type LedgerQuery struct {
	// Tenant filters by tenant ("" the default tenant, search.AllTenants
	// every tenant's); Kind when set.
	Tenant, Kind string
	// Since, when not zero, keeps the entries received at or after it.
	Since time.Time
	// After is the key of the last entry of the previous page (zero: from
	// the first).
	After LedgerKey
	// Limit is the page size (default 500).
	Limit int
	// KeysOnly leaves out what the entries hold beyond their key, tenant
	// and time received (ContentHash, Response, MappingVersion, Input):
	// a listing of every record version received (audit verify) reads no
	// answer or record.
	KeysOnly bool
}

// SourceTenant is a tenant that stored native records of a kind of a
// source system, and when it stored its first one (Tx.SourceTenants).
type SourceTenant struct {
	Tenant, Kind string
	First        time.Time
}

// LedgerKey is the key of a ledger entry, its source as stored.
type LedgerKey struct {
	Source, Kind, RecordID, Version string
}

// Bulk is the part of a Store that bulk exports and replays read: pages
// of current resources, many resources by id, and the ledger. Every method
// returns ErrUnavailable when the database cannot be reached.
type Bulk interface {
	// Export returns one page of q: the current versions of the resources
	// it selects, in id order. A filter the store cannot run is an error.
	Export(ctx context.Context, q ExportQuery) ([]*Resource, error)
	// ReadCurrent returns the current versions of the resources refs names
	// ("Type/id"), in no particular order, of whichever tenant (the caller
	// compares Tenant); deleted and absent ones are left out.
	ReadCurrent(ctx context.Context, refs []string) ([]*Resource, error)
	// LedgerEntries returns one page of the ledger entries q selects, in
	// key order, with their inputs.
	LedgerEntries(ctx context.Context, q LedgerQuery) ([]*Ledger, error)
	// LedgerTenants returns the tenants of the ledger's entries, sorted.
	LedgerTenants(ctx context.Context) ([]string, error)
}
