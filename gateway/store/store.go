// Package store persists FHIR resources with every version kept and their
// search index entries, the transactional outbox of records to deliver,
// the one-time values of client assertions, the audit hash chain and
// durable background jobs with their files, behind one interface (Store,
// with Tx for write transactions) that the SQLite and PostgreSQL
// implementations (gateway/store/sqlite, gateway/store/postgres) implement
// in full. Nothing SQL leaves the implementations.
//
// Outbox, Nonces, Jobs, Bulk and OutboxTx are parts of Store and Tx, named
// so that a consumer can declare the narrow dependency it uses.
package store

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/audit"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/search"
)

// Errors every implementation returns (wrapped with %w).
var (
	// ErrNotFound: no such resource (or version).
	ErrNotFound = errors.New("not found")
	// ErrGone: the resource's current version is a deletion.
	ErrGone = errors.New("gone")
	// ErrConflict: a unique key was taken by a concurrent writer (a
	// conditional create key, a resource version, a ledger entry); the
	// caller retries the whole transaction.
	ErrConflict = errors.New("conflict")
	// ErrUnavailable: the database cannot be reached or is overloaded.
	ErrUnavailable = errors.New("database unavailable")
	// ErrLimit: a bounded insert (CreateJob with a JobLimit) found the
	// bound reached, and wrote nothing.
	ErrLimit = errors.New("limit reached")
	// ErrNoDatabase: opened as an existing database (the read-only
	// commands do), there is none: no such SQLite file, a database the
	// gateway never set up, or one whose schema is older than the
	// program's (serve migrates it).
	ErrNoDatabase = errors.New("no gateway database there")
	// ErrNewerRelease: a newer release than this program has upgraded the
	// database (its schema, as SchemaVersionError says, or its search
	// index): running this program on it is a rollback, which it refuses
	// before changing anything.
	ErrNewerRelease = errors.New("a newer release has upgraded it")
	// ErrInvalidSettings: Open refused the database's settings (a
	// PostgreSQL URL that cannot be read unambiguously, a setting of its
	// query out of range, a CA file that is missing or holds no
	// certificate): a configuration mistake no retry mends.
	ErrInvalidSettings = errors.New("invalid database settings")
	// ErrBusy: too many writes are waiting already (the store's write
	// queue is full); it is an ErrUnavailable whose cause (ErrorClass) is
	// CauseQueueFull. Retry in a moment.
	ErrBusy error = &UnavailableError{Cause: CauseQueueFull, Err: errors.New("too many writes waiting")}
	// ErrValueTooLong: a value of the resource written is too long for
	// the database's search index (PostgreSQL's B-tree entries hold some
	// 2,700 bytes; SQLite has no such limit): the client's to shorten,
	// nothing written.
	ErrValueTooLong = errors.New("a value too long for the database's search index")
)

// Resource is one version of a resource.
type Resource struct {
	Type        string
	ID          string
	Version     int64
	LastUpdated time.Time // UTC, millisecond precision
	Deleted     bool
	// Tenant is the tenant (clinic, hospital) the version belongs to; ""
	// is the default tenant. Type/ID is one resource across all tenants:
	// the store keys resources by type and id alone, so Read, VRead and
	// Tx.Read return a resource whatever its tenant, and the caller
	// compares Tenant (Search and History filter by tenant: see
	// search.Query.Tenant and HistoryQuery.Tenant).
	Tenant string
	// Method is the HTTP method of the interaction that wrote the version
	// (POST, PUT, PATCH or DELETE, also for a Bundle entry, an ingest or
	// a replay) and Status the status it answered for it (201 when it
	// created the resource, 200, 204): a history shows how each version
	// was made (Bundle.entry.request and response). "" and 0 for a
	// version whose writer did not say, and for every version stored
	// before the stores kept them (SQLite schema 13, PostgreSQL 15).
	Method string
	Status int
	// Body is the resource JSON (id and meta already set by the caller);
	// nil for a deletion. The stores keep some bodies packed (PackBody)
	// and give them back as JSON.
	Body []byte

	packed []byte // Body packed by Pack (see PackBody)
}

// Page is one page of search results.
type Page struct {
	Matches []*Resource
	// Included are the _include/_revinclude resources (current versions).
	Included []*Resource
	// Total is the number of matches, or -1 when not counted.
	Total int
	// More says that matches follow this page's in the query's order (the
	// store looked one match further; false for an unordered query), and
	// Next is then the position of the page's last match, where the next
	// page starts (search.Query.After).
	More bool
	Next *search.Cursor
	// Cut says that the page ended before the query's Count at its
	// MaxBytes (More is then set too, for an ordered query): the next
	// page starts after its last match.
	Cut bool
}

// HistoryQuery selects versions for _history.
type HistoryQuery struct {
	Type  string // "" for the whole system
	ID    string // "" for the type
	Since time.Time
	// Count and Offset page the result (newest first).
	Count, Offset int
	// Tenant restricts the versions and the total to one tenant's (each
	// version's own Tenant); search.AllTenants ("*") selects every
	// tenant's (operators). As in search.Query, "" is the default tenant,
	// not every tenant.
	Tenant string
	// Shared are the types whose default tenant's versions a named
	// Tenant reads too, as in search.Query (a history of one of these
	// types; the system's history reads only Tenant's).
	Shared []string
	// Types, for the system's history, keeps only the versions of these
	// types; Exclude leaves out those of these (the engine leaves out the
	// AuditEvents unless asked for them). Both empty: every type.
	Types, Exclude []string
	// MaxBytes bounds the JSON of the versions of the page, as
	// search.Query.MaxBytes (0: no bound): the page ends early where
	// they would come to more, the first version there whatever its
	// size.
	MaxBytes int
}

// Ledger is the record of one ingested native record version.
type Ledger struct {
	Source, Kind, RecordID, Version string
	ContentHash                     string
	// Response is what the gateway answered (the transaction-response),
	// returned again for a repeated record.
	Response []byte
	Received time.Time
	// Tenant is the tenant whose record it is (Source is namespaced by it,
	// see the engine); Input the validated record as received and
	// MappingVersion the mapping version that produced its resources (a
	// replay that corrected them moves it on: Tx.SetLedgerMapping). Entries
	// written before schema version 6 have neither.
	Tenant, MappingVersion string
	Input                  []byte
}

// Namespaced is a conditional key or ledger source of tenant as stored:
// the default tenant's bare, another's prefixed "tenant:<tenant>|".
func Namespaced(tenant, key string) string {
	if tenant == "" {
		return key
	}
	return "tenant:" + tenant + "|" + key
}

// RecordSource is the entry's source as the record named it (its clinic
// system): Source without its tenant's namespace.
func (l *Ledger) RecordSource() string { return strings.TrimPrefix(l.Source, Namespaced(l.Tenant, "")) }

// Store is the persistence the gateway needs: resources, the audit chain,
// the outbox and the nonces. All methods are safe for concurrent use, and
// return an error wrapping ErrUnavailable when the database cannot be
// reached or is overloaded.
type Store interface {
	// Write runs fn atomically in a database transaction: fn's writes
	// commit when it returns nil and are rolled back otherwise (fn's error
	// is returned unchanged). Write returns only once fn's writes are
	// durably committed (or failed). Concurrent Writes may share one
	// database transaction and its commit (group commit): each fn then
	// sees the writes of those that ran before it in the transaction, and
	// its failure undoes its own writes only (the others run again, each
	// in a savepoint); none of them is answered before the shared commit.
	// Waiting Writes are served oldest first. fn may therefore run more
	// than once (when another Write of its batch fails, or the shared
	// transaction is lost under another Write) and must,
	// as for Retry, set its results afresh on each run. Transactions that
	// write the same unique key (a resource version, a conditional key, a
	// ledger entry) are serialised and the later one fails with
	// ErrConflict, after which the caller may call Write again. (SQLite
	// serialises every write transaction; PostgreSQL runs those without a
	// common key in parallel, at READ COMMITTED.) When too many Writes are
	// waiting already, Write fails at once with ErrBusy, unless ctx is
	// the audit trail's (WithAuditWrite).
	Write(ctx context.Context, fn func(Tx) error) error
	// AwaitWrites returns once every write transaction that began before
	// the call, in any process on the database, has ended (committed or
	// rolled back): a bulk export's transactionTime is taken before it,
	// so that every version stamped before that time is committed when
	// the export reads (docs/bulk.md). It may hold back writes that begin
	// while it waits. Returns ErrUnavailable errors, or ctx's.
	AwaitWrites(ctx context.Context) error
	// Read returns the current version; ErrNotFound, or ErrGone with the
	// deletion version's metadata in the returned Resource.
	Read(ctx context.Context, typ, id string) (*Resource, error)
	// VRead returns one version (a deletion comes back with Deleted set);
	// ErrNotFound if there is no such version.
	VRead(ctx context.Context, typ, id string, version int64) (*Resource, error)
	// History returns versions newest first and the total count, both
	// restricted to q.Tenant. An ID without a Type is an error.
	History(ctx context.Context, q HistoryQuery) ([]*Resource, int, error)
	// Search runs a query over current, non-deleted resources of
	// q.Tenant (see search.Query.Tenant): the matches, the total and the
	// included resources. A nil query, or one the store cannot run
	// (chained parameters, unsupported modifiers), is an error.
	Search(ctx context.Context, q *search.Query) (*Page, error)
	// Include returns what q's _include and _revinclude reach from the
	// resources from, as Search finds them from its matches (the engine's
	// further rounds of _include:iterate): current, non-deleted resources
	// of q.Tenant, each once, none of from, ordered by type and id, in one
	// snapshot. q's other parts are ignored; nil for no from or includes.
	Include(ctx context.Context, q *search.Query, from []*Resource) ([]*Resource, error)
	// IndexAudits indexes every AuditEvent committed before the call, as
	// Search does before a query that can return them: for a caller about
	// to search AuditEvents inside a write transaction (Tx.Search does not
	// wait for them).
	IndexAudits(ctx context.Context) error
	// AuditChainAfter calls fn for every entry of the audit hash chain
	// after seq after (0: from seq 1; a later seq: an incremental
	// verification from a record verified before) in seq order (feed them to an audit.Verifier): ID, Seq and Hash
	// as appended, Body the stored body of version 1 of AuditEvent/ID (nil
	// when that version is missing, which the verifier reports as a broken
	// link), and Faults what differs, in how reads and searches would
	// serve AuditEvent/ID, from that version: a current row that is
	// missing, not version 1, deleted, of another tenant or lastUpdated;
	// other versions; version 1 marked deleted; index rows other than
	// those extracted from Body (search.Extract), or any before the audit
	// indexer reached the entry (index rows are compared only while the
	// recorded index version is search.IndexVersion: see
	// Reindexer.IndexVersion). The chain is read in pages, each in one
	// snapshot, not held in memory; entries appended during the walk may
	// or may not be included. An error of fn stops the walk and is
	// returned unchanged; a database that cannot be reached is
	// ErrUnavailable.
	AuditChainAfter(ctx context.Context, after int64, fn func(audit.ChainEntry) error) error
	// AuditChainFrom is AuditChainAfter's lean walk, for an export: fn
	// gets every entry after seq after (0: from seq 1) in seq order with
	// ID, Seq, Hash and Body (version 1's stored body, nil when missing)
	// only, nothing checked (no Faults) and no index rows read. Errors as
	// AuditChainAfter.
	AuditChainFrom(ctx context.Context, after int64, fn func(audit.ChainEntry) error) error
	// AuditChainHash returns the hash of the chain entry seq as appended
	// (nothing else read): where an incremental verification links its
	// first record. Returns ErrNotFound if the chain holds no entry seq.
	AuditChainHash(ctx context.Context, seq int64) (string, error)
	// AuditChainSeq returns the seq of AuditEvent id's chain entry:
	// which of two AuditEvents recorded at one instant came first.
	// Returns ErrNotFound if the chain holds no entry of id.
	AuditChainSeq(ctx context.Context, id string) (int64, error)
	// AuditChainSeek finds where an export of the period [since, until)
	// (a zero until: no end) starts without walking the chain: before is
	// the seq of the chain entry before the period's first (0: none), the
	// period's first being the lowest seq of the chain entries whose
	// AuditEvent's version 1 is stored with a lastUpdated (its recorded
	// time, to the millisecond) in the period; ok is false when no
	// entry's AuditEvent is. The times are the stored versions' (the
	// column the verifier compares with each body's meta.lastUpdated), so
	// it reads an index of the period's AuditEvents, not the chain before
	// them. Errors as AuditChainAfter.
	AuditChainSeek(ctx context.Context, since, until time.Time) (before int64, ok bool, err error)
	// UnchainedAudits returns the ids of the AuditEvents stored (a version
	// or a current row) that the audit chain does not hold, in id order,
	// at most limit of them, and how many there are: every AuditEvent the
	// gateway writes is chained in the transaction that writes it, so any
	// such id was written behind its back.
	UnchainedAudits(ctx context.Context, limit int) (ids []string, total int, err error)
	// CurrentAfter returns up to limit of the current rows of resource
	// type typ (deleted or not, every tenant's), without their bodies, in
	// the order of their last update and id: those updated at or after
	// since, or, for the next page, those after the last row of the page
	// before (after). It reads the index of their times and those rows
	// (audit verify's list of the Provenances, each of which a chained
	// AuditEvent must name).
	CurrentAfter(ctx context.Context, typ string, after *Listed, since time.Time, limit int) ([]Listed, error)
	// AuditChainHead returns the chain head the store keeps (the seq and
	// hash of the last entry appended; 0 and "" before the first):
	// ErrNotFound when that record of it is missing.
	AuditChainHead(ctx context.Context) (seq int64, hash string, err error)
	// Ping checks the database (readiness): ErrUnavailable when it cannot
	// be reached.
	Ping(ctx context.Context) error
	// Migrated tells what opening the store migrated of the database's
	// schema (the zero Migration when nothing), for the start-up log.
	Migrated() Migration
	// SchemaFloor reads the database's schema version and floor (the
	// oldest schema a running gateway may have) and tells this program's:
	// a gateway whose schema is below the floor must stop serving (see
	// SchemaFloor). ErrUnavailable when the database cannot be reached.
	SchemaFloor(ctx context.Context) (SchemaFloor, error)
	// Close releases the database; the Store must not be used afterwards.
	// It is safe to call more than once.
	Close() error

	Outbox
	Nonces
	Jobs
	Instances
	Bulk
	Reindexer
}

// Reindexer is the part of a Store that rebuilds search index rows from
// the stored bodies, for a database whose rows an older build extracted
// (the reindex command).
type Reindexer interface {
	// Reindex compares, in a read snapshot, the index rows of up to
	// q.Count current resources (deletions have none) after q.After, in
	// (type, id) order, with those this build extracts from their bodies
	// (search.Extract), and, unless q.DryRun, rewrites the rows of each
	// resource that differs, in one write transaction, which leaves out
	// the resources written since the snapshot (their writer indexed
	// them). Conditional create keys are left as they are (they come from
	// requests, not bodies), and so are AuditEvents not indexed yet (the
	// audit indexer extracts them with this build). Repeating a call is
	// harmless: a second pass over the same resources changes nothing.
	Reindex(ctx context.Context, q ReindexQuery) (ReindexBatch, error)
	// IndexVersion is the search.IndexVersion that wrote the index rows,
	// as the database records it: that of the build that created it (1 or
	// 2 for a database created before the record), or the one MarkIndexed
	// last recorded; search.IndexVersion for a database without resources.
	IndexVersion(ctx context.Context) (int, error)
	// MarkIndexed records that version wrote every current resource's
	// index rows: a complete Reindex pass of that build made them so.
	MarkIndexed(ctx context.Context, version int) error
	// Tenants returns the tenants that hold resources (not deleted), sorted
	// ("" the default tenant).
	Tenants(ctx context.Context) ([]string, error)
}

// ResourceKey names a resource.
type ResourceKey struct{ Type, ID string }

// ReindexQuery selects the resources of one Reindex call.
type ReindexQuery struct {
	// Type restricts the call to one resource type ("" every type).
	Type string
	// Tenant restricts it to one tenant's resources, as search.Query's
	// does ("" the default tenant; search.AllTenants every tenant's).
	Tenant string
	// After is the last resource of the previous call (zero: start from
	// the first).
	After ResourceKey
	// Count bounds the resources checked (<= 0: DefaultReindexCount).
	Count int
	// DryRun compares and reports only.
	DryRun bool
}

// DefaultReindexCount is how many resources a Reindex call checks unless
// told otherwise.
const DefaultReindexCount = 500

// ReindexBatch is what one Reindex call did.
type ReindexBatch struct {
	// Checked counts the current resources read; Changed those whose
	// rows differed (and were rewritten, unless a dry run), also by
	// resource type (ChangedTypes; nil when none).
	Checked, Changed int
	ChangedTypes     map[string]int
	// Unreadable are the resources whose stored body does not unpack or
	// decode (a damaged row): left as they are, counted in Checked.
	Unreadable []ResourceKey
	// Last is the last resource checked: the next call's After.
	Last ResourceKey
	// Done: no resource is left after Last.
	Done bool
}

// Nonces is the part of a Store that remembers one-time values.
type Nonces interface {
	// UseNonce records key as used until exp and reports whether this was
	// its first use: true exactly once per key among all callers and
	// processes sharing the database, however concurrent; false for a key
	// already used and not yet expired. Keys whose exp has passed may be
	// forgotten (and then count as unused again: the caller rejects
	// expired assertions anyway). Returns ErrUnavailable when the database
	// cannot be reached. A key that is empty or longer than MaxNonceKey
	// bytes is an error (and not recorded).
	UseNonce(ctx context.Context, key string, exp time.Time) (first bool, err error)
}

// MaxNonceKey is the longest key, in bytes, Nonces.UseNonce accepts (a
// client id and a jti take some 300).
const MaxNonceKey = 1024

// WritesAhead is implemented by a Tx that sends what Put buffers to the
// database while the transaction goes on, not only at its next search,
// savepoint or commit (PostgreSQL's: the database inserts in another
// process meanwhile). A caller with many resources to make then puts each
// as soon as it is made.
type WritesAhead interface {
	WritesAhead() bool
}

// WriteProber is a Store that can tell whether a write could begin now,
// beyond Ping's read: SQLite answers reads while another process holds
// its write lock, and every write then fails (the readiness probe asks).
type WriteProber interface {
	// ProbeWrite returns an error wrapping ErrUnavailable when a write
	// could not begin now.
	ProbeWrite(ctx context.Context) error
}

// TxWritesAhead reports whether tx writes ahead (see WritesAhead).
func TxWritesAhead(tx Tx) bool {
	w, ok := tx.(WritesAhead)
	return ok && w.WritesAhead()
}

// Tx is a write transaction. Reads inside it see its own writes.
type Tx interface {
	// Read is Store.Read inside the transaction.
	Read(typ, id string) (*Resource, error)
	// VRead is Store.VRead inside the transaction.
	VRead(typ, id string, version int64) (*Resource, error)
	// History is Store.History inside the transaction (a Bundle's GET
	// entry of a history).
	History(q HistoryQuery) ([]*Resource, int, error)
	// Search is Store.Search inside the transaction (conditional
	// create/update/delete, conditional references, a Bundle's GET
	// entries), restricted to q.Tenant like it. Unlike Store.Search it
	// does not wait for the AuditEvents committed before it to be indexed.
	Search(q *search.Query) (*Page, error)
	// Include is Store.Include inside the transaction (and, as Search, it
	// does not wait for AuditEvents to be indexed).
	Include(q *search.Query, from []*Resource) ([]*Resource, error)
	// SearchEach is Search for each of qs (the criteria of a Bundle's
	// conditional entries), in one round trip where the store can: the
	// pages in the order of qs. On an error, the pages (always len(qs))
	// hold those of the queries answered before it and nil for the
	// others; the first nil one is the query that failed, or that shared
	// its round trip with the one that failed.
	SearchEach(qs []*search.Query) ([]*Page, error)
	// Put writes a new version of res.Type/res.ID: res.Version must be the
	// current version + 1 (1 for a new resource) or the write fails with
	// ErrConflict. Index entries replace the resource's previous ones. A
	// deletion (res.Deleted) removes the index entries. Every Put drops the
	// conditional keys the resource held (a create re-claims its key after
	// Put). A zero LastUpdated is set to now (by the store's clock); times
	// are truncated to the millisecond and written back into res. res.Tenant is stored with
	// the version and becomes the resource's tenant for Search; Put does
	// not compare it with the previous version's (the caller reads first
	// and refuses to write another tenant's resource). A Tenant that is
	// search.AllTenants, not valid UTF-8 or holds a NUL byte is an error.
	Put(res *Resource, entries []search.Entry) error
	// ClaimKey records that the conditional key (e.g. "Patient|identifier=
	// sys|val", normalised by the caller) belongs to typ/id. A key another
	// resource holds is ErrConflict, which makes concurrent identical
	// conditional creates create exactly one resource; the store may report
	// it from a later call of the transaction or from its commit (claims are
	// written with the transaction's other rows), as it may a version 1 of
	// a resource that exists.
	ClaimKey(key, typ, id string) error
	// KeyOwner returns the id holding a conditional key, or ErrNotFound.
	KeyOwner(key string) (typ, id string, err error)
	// Ledger returns the ledger entry for a native record version, with its
	// Input, or ErrNotFound.
	Ledger(source, kind, recordID, version string) (*Ledger, error)
	// LedgerVersions returns every ledger entry of a native record (every
	// version received), oldest first, without their Response; none is
	// no error.
	LedgerVersions(source, kind, recordID string) ([]*Ledger, error)
	// SourceTenants returns the tenants whose ledger holds native records
	// of the source system source (as records name it: the ledger stores
	// another tenant's than the default one's as "tenant:<tenant>|<source>"),
	// one per tenant and kind with the time the first one was received,
	// earliest first (ties by tenant, then kind); none is no error. It reads
	// every tenant's ledger.
	SourceTenants(source string) ([]SourceTenant, error)
	// PutLedger inserts a ledger entry; ErrConflict if it exists. A zero
	// Received is set to now (by the store's clock), truncated to the
	// millisecond and written back into l.
	PutLedger(l *Ledger) error
	// SetLedgerMapping records that the resources of a ledger entry are
	// now those of mappingVersion (a replay corrected them); ErrNotFound
	// if there is no such entry.
	SetLedgerMapping(source, kind, recordID, version, mappingVersion string) error
	// AppendAudit appends the AuditEvent id to the tamper-evident audit
	// chain when the transaction commits. The caller has already Put
	// version 1 of AuditEvent/id with Body == body and no index entries in
	// this transaction: entries are its index entries, which the store
	// writes after the commit, in the background, many AuditEvents at a
	// time (if the process stops first, the store extracts them again
	// from the stored body); Store.Search indexes every AuditEvent
	// committed before it starts before it runs a query that can return
	// them (of type AuditEvent or "", or with an AuditEvent _revinclude),
	// so no search misses one. Tx.Search does not wait.
	// The entry's hash is audit.Link(the previous entry's hash, body) (""
	// before the first entry) and its seq the previous seq + 1, from 1; a
	// transaction's entries take consecutive seqs in the order of its
	// calls, after the entries of every transaction that committed before
	// it. Appends are serialised across transactions and processes sharing
	// the database, so the chain never forks, and a transaction (or a
	// savepoint) that rolls back leaves no entry and no gap. The chain
	// head is locked only while the transaction commits. Returns
	// ErrConflict at once if id was appended in this transaction already;
	// an id already in the chain makes the commit fail with ErrConflict.
	// A commit that waited for the chain head longer than the statement
	// timeout fails with ErrUnavailable. Invalid entries are an error.
	AppendAudit(id string, body []byte, entries []search.Entry) error
	// Savepoint runs fn, which uses this Tx as usual, in a nested savepoint
	// (Savepoints nest). When fn returns nil its writes are kept. When fn
	// returns an error, every write fn made (resources, index entries,
	// conditional keys, ledger entries, outbox items, audit appends) is
	// undone, the transaction stays usable, also after a failed statement,
	// and fn's error is returned unchanged. Only if the transaction itself
	// is lost (the connection broke, the database rolled it back) does
	// Savepoint return something else: an error wrapping ErrUnavailable,
	// or fn's error if that wraps ErrConflict or ErrUnavailable. So on
	// ErrConflict or ErrUnavailable the caller ends the transaction (and
	// may run it again); on other errors it may go on.
	Savepoint(fn func() error) error
	// ClientRecords returns the registered clients as last recorded
	// (ClientRecord), by id; none is no error.
	ClientRecords() ([]ClientRecord, error)
	// SwapClientRecord replaces the record of id whose digest is was (""
	// for none) by rec (nil: the record is deleted; else rec.ID is id). A
	// record whose digest is not was (another gateway recorded a change
	// first, or is recording one in a transaction not yet committed,
	// which it waits for) is ErrConflict, after which the caller reads
	// the records again in a new transaction. rec.Recorded is kept to the
	// millisecond.
	SwapClientRecord(id, was string, rec *ClientRecord) error

	OutboxTx
}

// SchemaFloor is a database's schema Database and Floor, the oldest schema
// a gateway may have and keep running on it: a later release's migration
// that an older gateway must not outlive (a stop-the-world upgrade) raises
// it. Program is this program's schema (0: the store did not migrate, as
// read-only commands open it).
type SchemaFloor struct {
	Database, Floor, Program int
}

// TooOld reports whether this program must stop serving the database: a
// later release migrated it past a schema this program can serve safely.
func (f SchemaFloor) TooOld() bool { return f.Program > 0 && f.Floor > f.Program }

// MigrationStep is what a migration about to run tells (the stores'
// Options.Progress): the database's schema From, the program's To and how
// many Steps lie between; then, for each step as it starts, its Version
// and Note (Version 0: the migration as a whole is about to begin).
type MigrationStep struct {
	From, To, Steps int
	Version         int
	Note            string
}

// Migration is what opening a Store migrated: the schema version it found
// (0: a new database) and the one it left, and, for a database that was
// not new, each migration applied. The zero Migration: nothing.
type Migration struct {
	From, To int
	Applied  []AppliedMigration
}

// AppliedMigration is one schema migration that opening a Store applied:
// its version and what it changes, said for the operator who upgrades
// (what to expect, what to do), one line.
type AppliedMigration struct {
	Version int
	Note    string
	// NotRolling marks a stop-the-world migration: every gateway and CLI
	// of a release older than Version must be stopped once it has run;
	// Older says what one left running would do wrong.
	NotRolling bool
	Older      string
}

// SchemaVersionError is a database whose schema version (Have) is not the
// program's (Want): an older one, which the program migrates when it
// opens the database for serving and which is ErrNoDatabase when it may
// not (opened as existing: a migration is pending), or a newer one, which
// is ErrNewerRelease.
type SchemaVersionError struct{ Have, Want int }

func (e *SchemaVersionError) Error() string {
	return fmt.Sprintf("the database's schema is version %d, this release's %d", e.Have, e.Want)
}

// Is makes an older schema ErrNoDatabase and a newer one ErrNewerRelease.
func (e *SchemaVersionError) Is(target error) bool {
	return (target == ErrNoDatabase && e.Have < e.Want) || (target == ErrNewerRelease && e.Have > e.Want)
}

// Listed is a current row of a resource as CurrentAfter lists it: no body.
type Listed struct {
	ID      string
	Version int64
	At      time.Time // its last update
}
