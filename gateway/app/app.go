// Package app assembles the gateway's application from one store: the FHIR
// engine, native ingest, the audit log and the operator's services. Every
// entry point (the HTTP edge, the CLI, later the console, bulk jobs and
// replay) uses the same App, so they all follow the same rules.
//
// New does no I/O and starts nothing; Start stores the conformance
// resources and starts the audit log's group committer and the job
// runner; Close stops them.
// The store is the caller's: App never closes it.
package app

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/auditlog"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/auth"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/bulk"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/engine"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/ingest"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/jobs"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/operator"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/reindex"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/replay"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/search"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
	"github.com/ketamine-gateway/ketamine-gateway/mapping"
)

// Config configures an App. Zero values select the defaults.
type Config struct {
	// Store holds everything. Without one only dry runs of native ingest
	// (and the CLI's offline commands) work.
	Store store.Store
	// IdentifierBase is the namespace of the identifier systems the
	// mappings mint (mapping.DefaultIdentifierBase if empty).
	IdentifierBase string
	// Instance names this gateway process in audit records;
	// "ketamine-gateway" by default.
	Instance string
	// Version is the build's version, as `ketamine-gateway version` prints
	// it (engine.Config.Version).
	Version string
	// MaxBundleEntries limits transaction and batch Bundles.
	MaxBundleEntries int
	// MaxBundleAnswer bounds the resources a Bundle's GET entries answer
	// in all (engine.DefaultMaxBundleAnswer by default).
	MaxBundleAnswer int
	// Now is the clock (time.Now by default).
	Now func() time.Time
	// Routes are the delivery destinations.
	Routes []ingest.Route
	// Notify wakes the delivery worker after records were enqueued.
	Notify func()
	// Tracer traces the application's stages (none by default).
	Tracer trace.TracerProvider
	// Metrics counts ingested records (none by default).
	Metrics ingest.Metrics
	// NoAudit switches the audit trail off; only the overhead benchmark
	// sets it.
	NoAudit bool
	// Safety holds the safety thresholds of the mappings for every tenant
	// (nil: mapping.DefaultSafety()); TenantSafety those of the tenants
	// that override them.
	Safety       *mapping.Safety
	TenantSafety map[string]mapping.Safety
	// BacklogEvery is how often the operator service samples the delivery
	// backlog for the console's chart (default a minute; negative: never).
	BacklogEvery time.Duration
	// MaxResourceBytes bounds the resource a PATCH makes
	// (engine.Config.MaxResourceBytes): the request body limit.
	MaxResourceBytes int64
	// SearchLimits, SearchTimeout and SearchesPerClient bound searches
	// (engine.Config; zero values: the defaults).
	SearchLimits      search.Limits
	SearchTimeout     time.Duration
	SearchesPerClient int
	// UpdateCreate lets clients create resources with ids they choose
	// (engine.Config.UpdateCreate); leave it off with several tenants.
	UpdateCreate bool
	// Jobs configures the durable jobs (bulk export, import, replay): how
	// many one process runs at once, how long finished ones are kept, the
	// lease. Its Store, Handlers, Now and Logger are the App's.
	Jobs jobs.Config
	// Logger gets the background jobs' PHI-free events (none by default).
	Logger *slog.Logger
	// NoJobRunner keeps Start from running jobs (a CLI command shares the
	// database with servers, which run them).
	NoJobRunner bool
	// Settings are this gateway's settings fingerprints by group
	// (operator.Fingerprint): when set (serve on PostgreSQL), Start records them with
	// a heartbeat every SettingsEvery (default 30 s) and warns of another
	// live gateway on the database whose fingerprints differ (App.Settings),
	// as ProcessName.
	Settings      map[string]string
	SettingsEvery time.Duration
	// ProcessName names this process among the gateways on the database
	// (Instance if empty): a name no other running gateway has. The
	// settings check records it, the job runner's claims carry it.
	ProcessName string
	// WatchUpgrades (serve) makes Start run an operator.UpgradeWatch every
	// UpgradeEvery (default 30 s): the delivery order keys an older
	// release wrote are repaired, and once a later release migrated the
	// database past a schema this gateway can serve, its job runner (and
	// the delivery worker its outbox gates: App.Upgrade) claims nothing
	// and readiness answers unready.
	WatchUpgrades bool
	UpgradeEvery  time.Duration
	// NoSeed keeps Start from storing the gateway's conformance resources
	// (Engine.Seed): a command that only reads (a dry replay) writes
	// nothing to a database another release may be serving.
	NoSeed bool
	// Clients are the registered SMART clients (serve with authentication:
	// auth.Server.Registrations). When not nil, Start compares them with
	// those the database last recorded and audits every client added,
	// changed or removed (auditlog.Log.RecordClients); nil compares
	// nothing (CLI commands, development mode).
	Clients []auth.Registration
}

// App is the gateway's application.
type App struct {
	Store    store.Store // nil without a store
	Engine   *engine.Engine
	Ingest   *ingest.Service
	Audit    *auditlog.Log
	Operator *operator.Service
	// Jobs runs the durable jobs; Bulk exports and imports in bulk;
	// Replay replays the current mapping over the stored records (nil
	// without a store).
	Jobs   *jobs.Service
	Bulk   *bulk.Service
	Replay *replay.Service
	// Reindex rebuilds the search index as a job (nil without a store).
	Reindex *reindex.Service
	// Settings compares this gateway's settings with the other gateways'
	// on the database (nil without a store or Config.Settings).
	Settings *operator.SettingsCheck
	// Upgrade watches the database's schema floor and repairs the order
	// keys (nil without a store or Config.WatchUpgrades; its Superseded is
	// false on nil).
	Upgrade *operator.UpgradeWatch
	// IdentifierBase is the deployment's identifier namespace ("" the
	// default), for lineage queries.
	IdentifierBase string

	backlogEvery time.Duration
	runJobs      bool
	seed         bool
	clients      []auth.Registration
	logger       *slog.Logger
}

// New assembles the application. It compiles the schemas and the FHIR
// definitions (CPU only) and fails only if the embedded ones are broken.
func New(cfg Config) (*App, error) {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	v := engine.NewValidator()
	p, err := ingest.NewPipeline(mapping.Options{IdentifierBase: cfg.IdentifierBase, Safety: cfg.Safety}, v)
	if err != nil {
		return nil, err
	}
	if cfg.ProcessName == "" {
		cfg.ProcessName = cfg.Instance
	}
	if cfg.BacklogEvery == 0 {
		cfg.BacklogEvery = time.Minute
	}
	a := &App{Store: cfg.Store, IdentifierBase: cfg.IdentifierBase, backlogEvery: cfg.BacklogEvery, runJobs: !cfg.NoJobRunner, seed: !cfg.NoSeed,
		clients: cfg.Clients, logger: cfg.Logger}
	// AuditEvents take their time from the engine's clock, which is never
	// before a write's meta.lastUpdated (those may run ahead of cfg.Now
	// under load: engine.Engine.Now): an AuditEvent recorded after a write
	// is then not before it, and a _since or _lastUpdated read from a
	// write's instant finds the requests after it.
	auditNow := cfg.Now
	if cfg.Store != nil {
		auditNow = func() time.Time { return a.Engine.Now() }
	}
	a.Audit = auditlog.New(cfg.Store, auditlog.Config{Observer: cfg.Instance, Now: auditNow, Disabled: cfg.NoAudit})
	dests := make([]string, len(cfg.Routes)) // the destinations' names
	mrnSystems := map[string][]string{}      // those of the destinations that set them
	for i, r := range cfg.Routes {
		dests[i] = r.Name
		if r.MRNSystems != nil {
			mrnSystems[r.Name] = r.MRNSystems
		}
	}
	icfg := ingest.Config{Pipeline: p, Routes: cfg.Routes, Notify: cfg.Notify, Metrics: cfg.Metrics, Tracer: cfg.Tracer,
		Safety: cfg.TenantSafety, Now: cfg.Now}
	if cfg.Store != nil {
		a.Engine = engine.New(engine.Config{Store: cfg.Store, Audit: a.Audit, Validator: v,
			MaxBundleEntries: cfg.MaxBundleEntries, MaxBundleAnswer: cfg.MaxBundleAnswer, MaxResourceBytes: cfg.MaxResourceBytes, Now: cfg.Now, Tracer: cfg.Tracer,
			SearchLimits: cfg.SearchLimits, SearchTimeout: cfg.SearchTimeout, SearchesPerClient: cfg.SearchesPerClient,
			UpdateCreate: cfg.UpdateCreate, IdentifierBase: cfg.IdentifierBase, Version: cfg.Version})
		icfg.Engine = a.Engine
		a.Operator = operator.New(cfg.Store, dests, cfg.Notify, cfg.Now)
	}
	a.Ingest = ingest.New(icfg)
	if cfg.Store != nil {
		if cfg.WatchUpgrades {
			a.Upgrade = operator.NewUpgradeWatch(operator.UpgradeWatchConfig{Store: cfg.Store, Every: cfg.UpgradeEvery, Logger: cfg.Logger})
			a.Operator.SetUpgradeWatch(a.Upgrade)
		}
		jcfg := cfg.Jobs
		jcfg.Store, jcfg.Now, jcfg.Logger = operator.GateJobs(cfg.Store, a.Upgrade.Superseded), cfg.Now, cfg.Logger
		if jcfg.Instance == "" {
			jcfg.Instance = cfg.ProcessName
		}
		a.Jobs = jobs.New(jcfg)
		a.Bulk = bulk.New(bulk.Config{Store: cfg.Store, Engine: a.Engine, Ingest: a.Ingest, Jobs: a.Jobs, Now: cfg.Now})
		a.Replay = replay.New(replay.Config{Store: cfg.Store, Engine: a.Engine, Ingest: a.Ingest, Jobs: a.Jobs,
			IdentifierBase: cfg.IdentifierBase, Destinations: dests, MRNSystems: mrnSystems, Notify: cfg.Notify, Now: cfg.Now})
		a.Reindex = reindex.New(reindex.Config{Store: cfg.Store, Jobs: a.Jobs})
		if len(cfg.Settings) > 0 {
			a.Settings = operator.NewSettingsCheck(operator.SettingsCheckConfig{Store: cfg.Store, Instance: cfg.ProcessName,
				Fingerprints: cfg.Settings, Every: cfg.SettingsEvery, Logger: cfg.Logger, Now: cfg.Now})
		}
	}
	return a, nil
}

// Start stores the gateway's conformance resources (unless NoSeed),
// audits the changes of the registered clients (Config.Clients) and
// starts the audit log. Returns the store's errors.
func (a *App) Start(ctx context.Context) error {
	if a.Engine != nil && a.seed {
		if err := a.Engine.Seed(ctx); err != nil {
			return fmt.Errorf("start: %w", err)
		}
	}
	if a.Store != nil && a.clients != nil {
		ch, err := a.Audit.RecordClients(ctx, a.clients)
		if err != nil {
			return fmt.Errorf("start: %w", err)
		}
		if n := len(ch.Added) + len(ch.Changed) + len(ch.Removed); n > 0 && a.logger != nil {
			a.logger.Info("registered clients changed since the database last recorded them: each change is in the audit trail "+
				"(AuditEvent?type=110137)", "added", strings.Join(ch.Added, ","), "changed", strings.Join(ch.Changed, ","),
				"removed", strings.Join(ch.Removed, ","))
		}
	}
	a.Audit.Start()
	if a.Operator != nil {
		a.Operator.StartSampling(a.backlogEvery)
	}
	if a.Jobs != nil && a.runJobs {
		a.Jobs.Start()
	}
	if a.Settings != nil {
		a.Settings.Start()
	}
	if a.Upgrade != nil {
		a.Upgrade.Start()
	}
	return nil
}

// Close stops the job runner (its running jobs are released, to resume
// from their checkpoints), the backlog sampler and the audit log once the
// records already queued are committed. It does not close the store.
func (a *App) Close() error {
	if a.Upgrade != nil {
		a.Upgrade.Close()
	}
	if a.Settings != nil {
		a.Settings.Close()
	}
	if a.Jobs != nil {
		a.Jobs.Close()
	}
	if a.Operator != nil {
		a.Operator.StopSampling()
	}
	return a.Audit.Close()
}
