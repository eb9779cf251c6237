package engine

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"slices"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/outcome"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/search"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
)

// Tenants: every stored version, ledger entry, conditional key and outbox
// item belongs to the tenant of the client that wrote it; every read,
// search, history, conditional match and include is confined to the
// caller's tenant. Another tenant's resource is "not found" (404, never
// 403, also for an update), and totals count only the caller's tenant. The
// confinement is done once, by wrapping the store and its transactions,
// so no handler can forget it.

// Shared conformance resources: the gateway's own published conformance
// resources (publishedTypes, which clients cannot write) are stored by
// Seed in the default tenant and read by every tenant. Nothing else is
// shared: a ConceptMap, NamingSystem or CapabilityStatement a client
// writes is its tenant's like any resource, and so is a resource of a
// published type a client of a named tenant wrote before those types
// were read-only. Each hop of a search (its matches, a chain's or _has's
// far end, an included resource) is confined by the rule of its own type:
// a chain from a shared type to a Patient ends at the caller's Patients.

// sharedTypes lists publishedTypes for search.Query.Shared.
var sharedTypes = slices.Sorted(maps.Keys(publishedTypes))

// shared reports whether a resource of typ held by tenant owner is one
// every tenant reads: the gateway's own published conformance resources.
func shared(typ, owner string) bool { return owner == "" && publishedTypes[typ] }

// errForeign is a resource of another tenant: not found, to the caller.
var errForeign = fmt.Errorf("%w (held by another tenant)", store.ErrNotFound)

// errIDTaken answers a write to an id the caller's tenant does not hold:
// not found, as a read would be, and not creatable with that id. It is the
// same answer whether another tenant holds the id or nobody does (unless
// Config.UpdateCreate lets clients choose ids), so it tells nothing about
// other tenants.
var errIDTaken = outcome.New(outcome.NotFound, "not-found", "id-unavailable",
	"no resource with this id can be updated or created by this client; create it with POST to the type, without an id "+
		"(and, in a conditional create, without an _id criterion), and let the server choose its id")

// visible reports whether a resource of tenant owner may be shown to
// tenant (search.AllTenants sees everything).
func visible(tenant, typ, owner string) bool {
	return tenant == search.AllTenants || owner == tenant || shared(typ, owner)
}

// scopeQuery confines a search to tenant, each of its hops by the rule of
// its type (the shared types' default tenant's resources too).
func scopeQuery(q *search.Query, tenant string) {
	q.Tenant, q.Shared = tenant, sharedTypes
}

// scopeHistory confines a history to tenant (of a shared type: the
// default tenant's versions too).
func scopeHistory(q *store.HistoryQuery, tenant string) {
	q.Tenant, q.Shared = tenant, sharedTypes
}

// reader is what the engine reads outside a transaction.
type reader interface {
	Read(ctx context.Context, typ, id string) (*store.Resource, error)
	VRead(ctx context.Context, typ, id string, version int64) (*store.Resource, error)
	History(ctx context.Context, q store.HistoryQuery) ([]*store.Resource, int, error)
	Search(ctx context.Context, q *search.Query) (*store.Page, error)
	Include(ctx context.Context, q *search.Query, from []*store.Resource) ([]*store.Resource, error)
}

// tenantStore is the store's reads as one tenant sees them. It is no
// store.Store: nothing else of the store (the outbox, the nonces) passes
// through it unconfined.
type tenantStore struct {
	st     reader
	tenant string
}

// storeFor is the store's reads confined to tenant.
func (e *Engine) storeFor(tenant string) reader {
	return tenantStore{st: e.store, tenant: tenant}
}

func (t tenantStore) Read(ctx context.Context, typ, id string) (*store.Resource, error) {
	r, err := t.st.Read(ctx, typ, id)
	if r != nil && !visible(t.tenant, typ, r.Tenant) {
		return nil, errForeign
	}
	return r, err
}

func (t tenantStore) VRead(ctx context.Context, typ, id string, version int64) (*store.Resource, error) {
	r, err := t.st.VRead(ctx, typ, id, version)
	if r != nil && !visible(t.tenant, typ, r.Tenant) {
		return nil, errForeign
	}
	return r, err
}

func (t tenantStore) History(ctx context.Context, q store.HistoryQuery) ([]*store.Resource, int, error) {
	scopeHistory(&q, t.tenant)
	return t.st.History(ctx, q)
}

func (t tenantStore) Search(ctx context.Context, q *search.Query) (*store.Page, error) {
	scopeQuery(q, t.tenant)
	return t.st.Search(ctx, q)
}

func (t tenantStore) Include(ctx context.Context, q *search.Query, from []*store.Resource) ([]*store.Resource, error) {
	scopeQuery(q, t.tenant)
	return t.st.Include(ctx, q, from)
}

// txReader is a write transaction's reads as the engine's reader: a
// Bundle's GET entries run the read interactions' code inside the
// transaction, seeing what the entries before them wrote. The
// transaction has its own context.
type txReader struct{ tx store.Tx }

func (r txReader) Read(_ context.Context, typ, id string) (*store.Resource, error) {
	return r.tx.Read(typ, id)
}

func (r txReader) VRead(_ context.Context, typ, id string, version int64) (*store.Resource, error) {
	return r.tx.VRead(typ, id, version)
}

func (r txReader) History(_ context.Context, q store.HistoryQuery) ([]*store.Resource, int, error) {
	return r.tx.History(q)
}

func (r txReader) Search(_ context.Context, q *search.Query) (*store.Page, error) {
	return r.tx.Search(q)
}

func (r txReader) Include(_ context.Context, q *search.Query, from []*store.Resource) ([]*store.Resource, error) {
	return r.tx.Include(q, from)
}

// tenantTx is a write transaction as one tenant sees it: reads and
// searches confined, writes stamped with the tenant, conditional keys and
// ledger entries namespaced by it.
type tenantTx struct {
	store.Tx
	tenant string
	// indexed counts the index entries the transaction's writes put
	// (MaxTxEntries).
	indexed *int
}

// txFor confines tx to tenant.
func txFor(tx store.Tx, tenant string) store.Tx {
	indexed := new(int)
	if tt, ok := tx.(tenantTx); ok {
		tx, indexed = tt.Tx, tt.indexed
	}
	return tenantTx{Tx: tx, tenant: tenant, indexed: indexed}
}

// MaxTxEntries is the most search index entries the resources of one
// request (a transaction or batch Bundle, a record) may have together.
// A Synthea patient's Bundle has one in every 480-870 bytes of JSON, so a
// Bundle of the largest body the gateway reads (16 MiB) some 35,000; the
// gateway's own mapped resources one in every 140 bytes (120,000 in 16
// MiB); a Bundle at the entry limit (20,000) of lean Observations of some
// 15 each, 300,000. One resource may have search.MaxEntries: many
// resources each just under that bound would otherwise hold the
// database's write lane as long as one resource past it did (an
// attacker's review), some 25 s for 16 MiB.
const MaxTxEntries = 400_000

// errTxTooManyEntries answers a request whose resources together have
// more than MaxTxEntries index entries.
var errTxTooManyEntries = outcome.New(outcome.TooLarge, "too-costly", "request-too-many-index-values",
	fmt.Sprintf("the resources this request writes have more than %d values to index for search together: "+
		"more than any clinical Bundle has; send them in smaller Bundles", MaxTxEntries))

// ns namespaces a key by the tenant (the default tenant keeps the bare
// key, so databases from before tenants keep working).
func (t tenantTx) ns(key string) string { return store.Namespaced(t.tenant, key) }

// WritesAhead implements store.WritesAhead: the store's transaction's.
func (t tenantTx) WritesAhead() bool { return store.TxWritesAhead(t.Tx) }

func (t tenantTx) Read(typ, id string) (*store.Resource, error) {
	r, err := t.Tx.Read(typ, id)
	if r != nil && !visible(t.tenant, typ, r.Tenant) {
		return nil, errForeign
	}
	return r, err
}

func (t tenantTx) VRead(typ, id string, version int64) (*store.Resource, error) {
	r, err := t.Tx.VRead(typ, id, version)
	if r != nil && !visible(t.tenant, typ, r.Tenant) {
		return nil, errForeign
	}
	return r, err
}

func (t tenantTx) History(q store.HistoryQuery) ([]*store.Resource, int, error) {
	scopeHistory(&q, t.tenant)
	return t.Tx.History(q)
}

func (t tenantTx) Search(q *search.Query) (*store.Page, error) {
	scopeQuery(q, t.tenant)
	return t.Tx.Search(q)
}

func (t tenantTx) Include(q *search.Query, from []*store.Resource) ([]*store.Resource, error) {
	scopeQuery(q, t.tenant)
	return t.Tx.Include(q, from)
}

func (t tenantTx) SearchEach(qs []*search.Query) ([]*store.Page, error) {
	for _, q := range qs {
		scopeQuery(q, t.tenant)
	}
	return t.Tx.SearchEach(qs)
}

func (t tenantTx) Put(res *store.Resource, entries []search.Entry) error {
	if t.tenant == search.AllTenants {
		return outcome.New(outcome.Forbidden, "forbidden", "tenant-required",
			"a client acting for every tenant may read but not write; use a client of the tenant")
	}
	if *t.indexed += len(entries); *t.indexed > MaxTxEntries {
		return errTxTooManyEntries
	}
	res.Tenant = t.tenant
	return t.Tx.Put(res, entries)
}

func (t tenantTx) ClaimKey(key, typ, id string) error { return t.Tx.ClaimKey(t.ns(key), typ, id) }

func (t tenantTx) KeyOwner(key string) (string, string, error) { return t.Tx.KeyOwner(t.ns(key)) }

func (t tenantTx) Ledger(source, kind, recordID, version string) (*store.Ledger, error) {
	return t.Tx.Ledger(t.ns(source), kind, recordID, version)
}

func (t tenantTx) LedgerVersions(source, kind, recordID string) ([]*store.Ledger, error) {
	return t.Tx.LedgerVersions(t.ns(source), kind, recordID)
}

// SourceTenants answers the tenant's own first record of source only:
// which other tenants use a source system is theirs to know
// (Tx.ClaimSource reads every tenant's).
func (t tenantTx) SourceTenants(source string) ([]store.SourceTenant, error) {
	all, err := t.Tx.SourceTenants(source)
	var out []store.SourceTenant
	for _, st := range all {
		if st.Tenant == t.tenant {
			out = append(out, st)
		}
	}
	return out, err
}

func (t tenantTx) PutLedger(l *store.Ledger) error {
	cp := *l
	cp.Source, cp.Tenant = t.ns(l.Source), t.tenant
	return t.Tx.PutLedger(&cp)
}

func (t tenantTx) SetLedgerMapping(source, kind, recordID, version, mappingVersion string) error {
	return t.Tx.SetLedgerMapping(t.ns(source), kind, recordID, version, mappingVersion)
}

// Enqueue stamps outbox items with the tenant.
func (t tenantTx) Enqueue(items ...*store.OutboxItem) error {
	for _, it := range items {
		it.Tenant = t.tenant
	}
	return t.Tx.Enqueue(items...)
}

// Reached asks about the tenant's own outbox items.
func (t tenantTx) Reached(_, destination string, keys []string) (bool, error) {
	return t.Tx.Reached(t.tenant, destination, keys)
}

// LatestItem asks about the tenant's own outbox items.
func (t tenantTx) LatestItem(_, destination, key string) (string, string, error) {
	return t.Tx.LatestItem(t.tenant, destination, key)
}

// RuleSourceOtherTenant is the rule id of a native record whose source
// system another tenant's records come from, to the same destination: the
// record is stored, but not delivered there.
const RuleSourceOtherTenant = "source-system-other-tenant"

// ClaimSource reports whether the request tenant's native records of the
// source system may go to the delivery destination dest, which receives
// the records receives accepts (by tenant and kind). The identifier systems
// the mappings mint are named after the source (mapping.RecordSystem), so
// two tenants delivering one source system's records to one EHR would send
// it the same identifiers for different patients and records: one tenant
// holds the pair. It is the tenant that stored the first record of the
// source that dest receives (the ledger, every tenant's: not
// whichever stores first once the destination is configured, so no clinic
// can take another's source by sending a record under its name), or the
// request's when none did. The decision is kept in a key outside every
// tenant's namespace, claimed in the transaction that asks. Inside the
// gateway tenants may share source systems: their records are apart.
func (t *Tx) ClaimSource(system, dest string, receives func(tenant, kind string) bool) (bool, error) {
	key, mine := sourceKey(system, dest), "tenant:"+t.sc.TenantOf()
	switch _, id, err := t.raw.KeyOwner(key); {
	case err == nil:
		return id == mine, nil
	case !errors.Is(err, store.ErrNotFound):
		return false, err
	}
	first, err := t.raw.SourceTenants(system)
	if err != nil {
		return false, err
	}
	owner := mine
	for _, st := range first {
		if receives(st.Tenant, st.Kind) {
			owner = "tenant:" + st.Tenant
			break
		}
	}
	if err := t.raw.ClaimKey(key, "Tenant", owner); err != nil {
		return false, err
	}
	return owner == mine, nil
}

// sourceKey is the conditional key of a source system at a destination: in
// no tenant's namespace (a tenant's keys are bare, for the default tenant,
// or begin "tenant:"; a bare key begins with a resource type).
func sourceKey(system, dest string) string {
	sum := sha256.Sum256([]byte(dest + "\x00" + system))
	return "source-system|" + hex.EncodeToString(sum[:])
}
