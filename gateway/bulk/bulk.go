// Package bulk moves data in and out of the gateway in bulk: the FHIR Bulk
// Data export (the $export operations at system, Patient and Group level,
// as NDJSON files) and the import of many native records at once (from the
// CLI, or as an asynchronous job for clinics without shell access). Both
// run on the application: the export reads the store a page at a time and
// passes every resource through one authorisation check (Config.Visible);
// the import feeds each record to the same ingest service as the API, so
// the schemas, rules, ledger, Provenance and AuditEvents are the API's.
//
// Exports and asynchronous imports are durable jobs (package jobs): they
// survive a restart, run once among replicas sharing a database, report
// their progress, can be cancelled by their owner, and their files are kept
// in the database for every replica to serve until they expire.
package bulk

import (
	"context"
	"time"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/auditlog"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/auth"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/engine"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/ingest"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/jobs"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/search"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
)

// Job kinds.
const (
	KindExport = "export"
	KindImport = "import"
)

// Store is what bulk reads beyond the engine: pages of resources and
// versions (a resource changed after an export's transaction time is
// exported as it was then).
type Store interface {
	store.Bulk
	VRead(ctx context.Context, typ, id string, version int64) (*store.Resource, error)
}

// Config configures a Service. Zero values select the defaults.
type Config struct {
	// Store, Engine and Ingest are the application's (required).
	Store  Store
	Engine *engine.Engine
	Ingest *ingest.Service
	// Jobs runs exports and asynchronous imports; New registers their
	// handlers with it.
	Jobs *jobs.Service
	// Visible decides whether the caller may be shown a resource: every
	// exported resource passes it (default: Visible).
	Visible func(sc *auditlog.Scope, r *store.Resource) bool
	// FileResources is the most resources in one export file (default
	// 100,000): a type with more is split over several files.
	FileResources int
	// PartBytes is the size of the parts files are stored in (default
	// 1 MiB).
	PartBytes int
	// MaxGroupMembers bounds the Patients of an exported Group (default
	// 10,000).
	MaxGroupMembers int
	// ImportWorkers is how many records an import ingests at once
	// (default 4).
	ImportWorkers int
	// MaxRecordBytes is the largest record an import reads (default
	// 16 MiB, the API's body limit).
	MaxRecordBytes int
	// Now is the clock (time.Now by default).
	Now func() time.Time
}

// Service exports and imports in bulk.
type Service struct {
	cfg Config
}

// New returns the bulk service and registers its job handlers with
// cfg.Jobs. It does no I/O.
func New(cfg Config) *Service {
	if cfg.Visible == nil {
		cfg.Visible = Visible
		if e := cfg.Engine; e != nil {
			// The engine's one decision too: granular scopes' restrictions.
			cfg.Visible = func(sc *auditlog.Scope, r *store.Resource) bool { return Visible(sc, r) && e.Visible(sc, r) }
		}
	}
	if cfg.FileResources <= 0 {
		cfg.FileResources = 100_000
	}
	if cfg.PartBytes <= 0 {
		cfg.PartBytes = 1 << 20
	}
	if cfg.MaxGroupMembers <= 0 {
		cfg.MaxGroupMembers = 10_000
	}
	if cfg.ImportWorkers <= 0 {
		cfg.ImportWorkers = 4
	}
	if cfg.MaxRecordBytes <= 0 {
		cfg.MaxRecordBytes = 16 << 20
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	s := &Service{cfg: cfg}
	if cfg.Jobs != nil {
		cfg.Jobs.Handle(KindExport, s.runExport)
		cfg.Jobs.Handle(KindImport, s.runImport, auth.ScopeIngest)
	}
	return s
}

// Visible is the default authorisation of an exported resource: the
// caller is authenticated, the resource is its tenant's (or the caller
// acts for every tenant) and its scopes allow reading or searching the
// resource's type. It stands in for the engine's one check of every
// resource that leaves the server (Config.Visible takes that one).
func Visible(sc *auditlog.Scope, r *store.Resource) bool {
	p := sc.Principal
	if p == nil || r == nil {
		return false
	}
	if p.Tenant != search.AllTenants && r.Tenant != p.Tenant {
		return false
	}
	return allowedType(sc, r.Type)
}
