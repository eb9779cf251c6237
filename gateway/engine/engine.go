// Package engine is the gateway's FHIR R4 engine: create, read, update,
// delete, search and history of versioned resources; transactions and
// batches with the spec's processing order and conditional semantics;
// validation (R4 structure and the gateway's profiles) on every write;
// SMART scopes per interaction and per Bundle entry; and tenancy, every
// read and write confined to the caller's tenant. It knows no HTTP: the
// edge, the CLI and every later entry point call the same methods with
// plain values and get results or classified errors (package outcome).
//
// Every call takes the request's *auditlog.Scope: who asks, and where the
// engine records what the request touched for its AuditEvent. A call that
// writes appends that AuditEvent in the data's own transaction.
package engine

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/auditlog"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/conformance"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/search"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/telemetry/stage"
)

// DefaultMaxBundleEntries is the default limit on Bundle entries.
const DefaultMaxBundleEntries = 20000

// DefaultMaxResourceBytes is the default size limit of a resource a patch
// makes: the edge's default request body limit, the largest resource a
// client can PUT.
const DefaultMaxResourceBytes = 16 << 20

// Config configures an Engine. Zero values select the defaults.
type Config struct {
	// Store holds the resources (required).
	Store store.Store
	// Audit records each request's AuditEvent and Provenance.
	Audit *auditlog.Log
	// Validator validates resources (NewValidator() by default; it is
	// costly to build, so share one).
	Validator *Validator
	// MaxBundleEntries limits transaction and batch Bundles.
	MaxBundleEntries int
	// MaxResourceBytes bounds the size of a resource a PATCH makes
	// (DefaultMaxResourceBytes by default); set it to the request body
	// limit, so that a patch cannot make a resource a PUT could not send.
	MaxResourceBytes int64
	// MaxBundleAnswer bounds the resources a Bundle's GET entries answer
	// in all (DefaultMaxBundleAnswer by default).
	MaxBundleAnswer int
	// Now is the clock (time.Now by default).
	Now func() time.Time
	// Tracer traces the engine's stages (none by default).
	Tracer trace.TracerProvider
	// SearchLimits bound the parameters of a search and the included
	// resources of a page (search.Limits; zero fields: the defaults).
	SearchLimits search.Limits
	// SearchTimeout bounds one search or history (DefaultSearchTimeout).
	// Keep it below the HTTP server's write timeout.
	SearchTimeout time.Duration
	// SearchesPerClient bounds the searches and histories one client runs
	// at once (DefaultSearchesPerClient); more wait briefly, then get 429.
	SearchesPerClient int
	// UpdateCreate lets clients create resources with ids they choose
	// (update-as-create: PUT Type/id, a conditional update or a conditional
	// create by _id that matches nothing). Resource ids are one namespace
	// for all tenants, so with several tenants an id's answer would tell
	// whether another tenant holds it: leave it off then, and a client's
	// write to an id its tenant does not hold answers the same 404
	// id-unavailable whether the id is unused or another tenant's. The
	// application's own writes (ingest's derived ids) are not affected.
	// A client that reads or writes a type through granular scopes only
	// chooses no ids of it either way (choosesIDs).
	UpdateCreate bool
	// IdentifierBase is the namespace of the identifier systems the
	// mappings mint for native records (mapping.DefaultIdentifierBase if
	// empty): every system under it ("<base>/…") is reserved, and a
	// client's write may not add an identifier in one (reservedIdentifier).
	IdentifierBase string
	// Version is the build's version (what `ketamine-gateway version`
	// prints), the CapabilityStatement's software.version; empty leaves
	// that element out. The mapping version is not it: it has its own
	// places (implementation.description, the conformance resources).
	Version string
}

// Engine is the FHIR engine over one store. Its methods are safe for
// concurrent use.
type Engine struct {
	store         store.Store
	audit         *auditlog.Log
	v             *Validator
	maxEntries    int
	maxAnswer     int
	maxResource   int64
	now           func() time.Time
	clock         *writeClock // the instants of writes (meta.lastUpdated)
	tracer        trace.Tracer
	limits        search.Limits
	searchTimeout time.Duration
	searches      *slots
	updateCreate  bool
	reservedSys   string // "<identifier base>/": the systems reserved for the mappings' identifiers
	version       string // the build's, for software.version
}

// New returns an engine. It does no I/O: Seed stores the gateway's
// conformance resources.
func New(cfg Config) *Engine {
	if cfg.MaxBundleEntries <= 0 {
		cfg.MaxBundleEntries = DefaultMaxBundleEntries
	}
	if cfg.MaxResourceBytes <= 0 {
		cfg.MaxResourceBytes = DefaultMaxResourceBytes
	}
	if cfg.MaxBundleAnswer <= 0 {
		cfg.MaxBundleAnswer = DefaultMaxBundleAnswer
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Validator == nil {
		cfg.Validator = NewValidator()
	}
	if cfg.Audit == nil {
		cfg.Audit = auditlog.New(nil, auditlog.Config{})
	}
	if cfg.SearchTimeout <= 0 {
		cfg.SearchTimeout = DefaultSearchTimeout
	}
	if cfg.SearchesPerClient <= 0 {
		cfg.SearchesPerClient = DefaultSearchesPerClient
	}
	return &Engine{store: cfg.Store, audit: cfg.Audit, v: cfg.Validator, maxEntries: cfg.MaxBundleEntries, maxAnswer: cfg.MaxBundleAnswer,
		maxResource: cfg.MaxResourceBytes,
		now:         cfg.Now, clock: &writeClock{now: cfg.Now}, tracer: stage.Tracer(cfg.Tracer), limits: cfg.SearchLimits.WithDefaults(),
		searchTimeout: cfg.SearchTimeout, searches: newSlots(cfg.SearchesPerClient), updateCreate: cfg.UpdateCreate,
		reservedSys: reservedSystems(cfg.IdentifierBase), version: cfg.Version}
}

// Limits returns the search limits the engine applies (defaults filled in).
func (e *Engine) Limits() search.Limits { return e.limits }

// limitsFor returns the search limits for a request of sc: the engine's,
// on the FHIR base the request was served at (search.Limits.Base).
func (e *Engine) limitsFor(sc *auditlog.Scope) search.Limits {
	l := e.limits
	if sc != nil {
		l.Base = sc.Base
	}
	return l
}

// Validator returns the engine's validator.
func (e *Engine) Validator() *Validator { return e.v }

// KnownType reports whether typ is a FHIR R4 resource type.
func (e *Engine) KnownType(typ string) bool { return e.v.KnownType(typ) }

// Now is the engine's clock, in whole milliseconds, and never before the
// meta.lastUpdated of a write the engine has begun (whose instants may run
// ahead of the clock under load: writeClock). A bulk export's
// transactionTime is not (TransactionTime: a write may take this very
// instant after the call).
func (e *Engine) Now() time.Time { return e.clock.latest() }

// TransactionTime returns a bulk export's transactionTime T: every
// resource version the engine has stamped at or before T (meta.lastUpdated
// <= T) is committed, or rolled back, when it returns, and every version
// it stamps after the call is after T. So an export of what was last
// updated at or before T, and the next one _since T, miss nothing between
// them, on PostgreSQL too, where writers run in parallel and a write
// stamped before T may still be committing (store.Store.AwaitWrites waits
// for it, in any gateway process on the database: their clocks must agree,
// docs/bulk.md). Returns the store's errors, or ctx's.
func (e *Engine) TransactionTime(ctx context.Context) (time.Time, error) {
	// Every instant given before the boundary is before it, and every
	// one after at it or later; a write takes its instant in its store
	// transaction, after the fence's shared lock (sqlstore.Dialect).
	t := e.clock.boundary().Add(-time.Millisecond)
	if err := e.store.AwaitWrites(ctx); err != nil {
		return time.Time{}, err
	}
	return t, nil
}

// Seed stores the gateway's own conformance resources (its CodeSystems,
// ValueSets, StructureDefinitions, SearchParameters, OperationDefinitions
// and ImplementationGuide) so they are readable and searchable like any
// resource. A resource is rewritten only when its content changed, so
// restarts add no versions. Returns store errors.
func (e *Engine) Seed(ctx context.Context) error {
	docs, err := conformance.Resources(e.v.profiles)
	if err != nil {
		return err
	}
	decoded := make([]map[string]any, len(docs))
	for i, raw := range docs {
		if decoded[i], err = decodeJSON(raw); err != nil {
			return err
		}
	}
	// One transaction: a restart that changes nothing writes nothing, and
	// replicas starting together see all of a version's resources or none.
	return store.Retry(ctx, e.store, func(tx store.Tx) error {
		for i, doc := range decoded {
			typ, _ := doc["resourceType"].(string)
			id, _ := doc["id"].(string)
			cur, err := tx.Read(typ, id)
			switch {
			case err == nil && sameContent(cur.Body, docs[i]):
				continue
			case err == nil, errors.Is(err, store.ErrNotFound), errors.Is(err, store.ErrGone):
			default:
				return fmt.Errorf("seed %s/%s: %w", typ, id, err)
			}
			if _, err := e.update(tx, typ, id, doc, conditions{}, e.clock.next(), true, "PUT"); err != nil {
				return fmt.Errorf("seed %s/%s: %w", typ, id, err)
			}
		}
		return nil
	})
}

// Write runs fn in a store transaction confined to the request's tenant,
// retried when a concurrent writer took a unique key first, and appends
// the request's AuditEvent (with the status fn reports) in the same
// transaction: the data and its audit commit together or not at all.
// When the transaction does not commit, sc forgets what it wrote
// (Scope.RolledBack). fn's error is returned unchanged.
func (e *Engine) Write(ctx context.Context, sc *auditlog.Scope, fn func(tx *Tx) (status int, err error)) error {
	tenant := sc.TenantOf()
	err := store.Retry(ctx, e.store, func(raw store.Tx) error {
		sc.Reset()
		// The instant is taken as fn runs, which on SQLite is in commit
		// order (writeClock).
		tx := &Tx{e: e, raw: raw, st: txFor(raw, tenant), sc: sc, now: e.clock.next()}
		status, err := fn(tx)
		if err != nil {
			return err
		}
		return e.audit.AppendTx(raw, sc, status)
	})
	switch {
	case err != nil:
		// Nothing of the last attempt (nor of an earlier one, which the
		// group commit ran and rolled back) is stored: the request's
		// AuditEvent, written after, must not name it as written.
		sc.RolledBack()
	case sc.Interaction != "" && e.audit.Enabled():
		sc.MarkCommitted()
	}
	return err
}

// Audit commits sc's AuditEvent, with status, for a request whose data
// transaction did not (one that was refused or wrote nothing), outside an
// HTTP request: the edge does this for its own requests. It does nothing
// for a scope already committed, and returns the audit log's error when
// the record could not be made durable.
func (e *Engine) Audit(sc *auditlog.Scope, status int) error {
	if sc.Committed() || sc.Interaction == "" || !e.audit.Enabled() {
		return nil
	}
	if err := e.audit.Append(sc, status); err != nil {
		return err
	}
	sc.MarkCommitted()
	return nil
}

// stage runs fn in a traced stage.
func (e *Engine) stage(ctx context.Context, name string, fn func(ctx context.Context) error, attrs ...attribute.KeyValue) error {
	return stage.Run(ctx, e.tracer, name, fn, attrs...)
}
