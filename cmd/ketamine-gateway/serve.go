package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/ketamine-gateway/ketamine-gateway/gateway"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/app"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/auditlog"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/console"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/delivery"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/engine"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/ingest"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/jobs"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/operator"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/outcome"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store/postgres"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store/sqlite"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/telemetry"
	"github.com/ketamine-gateway/ketamine-gateway/mapping"
)

// writeTimeout is the HTTP server's WriteTimeout; the search timeout stays
// below it.
const writeTimeout = 120 * time.Second

// serveConfig is what serve reads from flags and the environment.
type serveConfig struct {
	addr, db, identifierBase, baseURL string
	configFile, ehrURL, instance      string
	tlsCert, tlsKey                   string
	trustedProxies, corsOrigins       string
	maxBody                           int64
	maxEntries                        int
	rateLimit                         float64
	maxImport                         int64
	jobWorkers                        int
	jobRetention, jobLease            time.Duration
	migrateOnly                       bool
}

// serve runs the HTTP server until ctx is cancelled, then drains it.
func serve(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := newFlags("serve")
	var cfg serveConfig
	fs.StringVar(&cfg.addr, "addr", envOr(getenv, "GATEWAY_ADDR", "127.0.0.1:8080"), "listen address (GATEWAY_ADDR)")
	fs.StringVar(&cfg.db, "db", envOr(getenv, "GATEWAY_DB", "ketamine-gateway.db"), "SQLite file or postgres:// URL (GATEWAY_DB)")
	fs.StringVar(&cfg.identifierBase, "identifier-base", getenv("GATEWAY_IDENTIFIER_BASE"), "namespace of minted identifier systems (GATEWAY_IDENTIFIER_BASE)")
	fs.Int64Var(&cfg.maxBody, "max-body", gateway.DefaultMaxBodyBytes, "request body limit in bytes")
	fs.IntVar(&cfg.maxEntries, "max-entries", engine.DefaultMaxBundleEntries, "Bundle entry limit")
	fs.StringVar(&cfg.configFile, "config", getenv("GATEWAY_CONFIG"), "configuration file: authentication (auth.clients, tenants), delivery destinations, search limits, safety thresholds, the console's sign-in (GATEWAY_CONFIG; docs/configuration.md)")
	fs.StringVar(&cfg.ehrURL, "ehr-url", getenv("GATEWAY_EHR_URL"), "deliver every stored record to this FHIR base (GATEWAY_EHR_URL)")
	fs.StringVar(&cfg.baseURL, "base-url", getenv("GATEWAY_BASE_URL"), "public FHIR base URL (GATEWAY_BASE_URL); default: from each request")
	fs.StringVar(&cfg.tlsCert, "tls-cert", getenv("GATEWAY_TLS_CERT"), "PEM certificate chain: serve HTTPS (TLS 1.2 or later) (GATEWAY_TLS_CERT)")
	fs.StringVar(&cfg.tlsKey, "tls-key", getenv("GATEWAY_TLS_KEY"), "PEM private key of --tls-cert (GATEWAY_TLS_KEY)")
	fs.Float64Var(&cfg.rateLimit, "rate-limit", -1, "requests per second per client address and per client, bursts of twice that; 0 turns it off (default 100 with authentication, off in development mode)")
	fs.StringVar(&cfg.trustedProxies, "trusted-proxies", getenv("GATEWAY_TRUSTED_PROXIES"), "comma-separated CIDRs of the load balancers in front: the client address is then taken from X-Forwarded-For and the scheme from X-Forwarded-Proto (GATEWAY_TRUSTED_PROXIES)")
	fs.StringVar(&cfg.corsOrigins, "cors-origins", getenv("GATEWAY_CORS_ORIGINS"), "comma-separated browser origins (https://app.example.org) whose scripts may call the FHIR API (CORS; GATEWAY_CORS_ORIGINS, or cors.origins in --config); default none (docs/security.md)")
	fs.StringVar(&cfg.instance, "instance", envOr(getenv, "GATEWAY_INSTANCE", defaultInstance()), "this process's name in audit records (GATEWAY_INSTANCE)")
	fs.Int64Var(&cfg.maxImport, "max-import", gateway.DefaultMaxImportBytes, "body limit of POST /ingest/{kind}/$import in bytes")
	fs.IntVar(&cfg.jobWorkers, "job-workers", 1, "background jobs (exports, imports, replays) this process runs at once")
	retention, envErr := envDurationFlag(getenv, "GATEWAY_JOB_RETENTION", 24*time.Hour)
	fs.DurationVar(&cfg.jobRetention, "job-retention", retention,
		"how long finished jobs and their files (exports, reports) are kept (GATEWAY_JOB_RETENTION)")
	fs.DurationVar(&cfg.jobLease, "job-lease", 30*time.Second,
		"a running job's claim, renewed every third of it: the job of a process that died resumes elsewhere after this long")
	fs.BoolVar(&cfg.migrateOnly, "migrate-only", false, "create or migrate the database, log what the migrations change, and exit without serving (docs/deployment.md, \"Upgrading\")")
	pos, err := parse(fs, "serve", args, stdout)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usageError("serve", "takes no arguments (use flags)")
	}
	set := setFlags(fs)
	if envErr != nil && !set["job-retention"] {
		return usageError("serve", "%v", envErr)
	}
	if err := checkServeValues(cfg, set); err != nil {
		return err
	}
	proxies, err := parseCIDRs(cfg.trustedProxies)
	if err != nil {
		return &exitError{code: exitUsage, msg: fmt.Sprintf("--trusted-proxies: %v", err)}
	}
	tlsConfig, err := serverTLS(cfg.tlsCert, cfg.tlsKey)
	if err != nil {
		return &exitError{code: exitUsage, msg: err.Error()}
	}
	fc, err := readConfig(cfg.configFile)
	if err != nil {
		return &exitError{code: exitUsage, msg: err.Error()}
	}
	corsOrigins, err := corsOriginsOf(cfg.corsOrigins, set["cors-origins"], fc)
	if err != nil {
		return err
	}
	allSafety, tenantSafety, err := safety(fc)
	if err != nil {
		return &exitError{code: exitUsage, msg: err.Error()}
	}
	limits, searchTimeout, perClient, err := searchSettings(fc.Search, fc.in(), writeTimeout)
	if err != nil {
		return &exitError{code: exitUsage, msg: err.Error()}
	}
	if err := checkDB("serve", cfg.db); err != nil {
		return err
	}
	if cfg.migrateOnly {
		release, err := lockServe(cfg.db)
		if err != nil {
			return err
		}
		defer release()
		return migrateOnly(ctx, cfg.db, stderr)
	}
	if err := checkAddr(cfg.addr); err != nil {
		return usageError("serve", "%v", err)
	}
	// The whole configuration is checked before the database is opened:
	// a refused start creates and migrates nothing.
	replay := &replayCache{}
	authn, err := authServer(fc, getenv, replay)
	if err != nil {
		return &exitError{code: exitUsage, msg: err.Error()}
	}
	ehrURLFrom := "--ehr-url"
	if !set["ehr-url"] {
		ehrURLFrom = "GATEWAY_EHR_URL"
	}
	dests, err := destinations(fc, cfg.ehrURL, ehrURLFrom, getenv)
	if err != nil {
		return &exitError{code: exitUsage, msg: err.Error()}
	}
	if err := checkConsole(fc, authn != nil); err != nil {
		return &exitError{code: exitUsage, msg: err.Error()}
	}
	if len(corsOrigins) > 0 && authn == nil {
		// Without authentication a listed origin's scripts would read and
		// write every record through any visitor's browser: no token
		// would stand between them and the API (docs/security.md).
		return usageError("serve", "CORS origins are set but authentication is not configured: every page of those "+
			"origins could then read and write all records through a visitor's browser; configure authentication "+
			"(docs/security.md) or leave the CORS origins unset")
	}
	if err := checkSafetyTenantsFirst(fc, cfg.db); err != nil {
		return err
	}
	if !authConfigured(fc) && !loopback(cfg.addr) {
		return &exitError{code: exitUsage, msg: fmt.Sprintf("refusing to serve on %s without authentication: "+
			"register clients in the auth section of --config (docs/security.md), or listen on a loopback address "+
			"(127.0.0.1, ::1, localhost) for development", cfg.addr)}
	}
	// Listen first, so a busy port fails at once, before any database is
	// opened or created.
	ln, err := net.Listen("tcp", cfg.addr)
	if err != nil {
		return listenError(cfg.addr, err)
	}
	defer ln.Close()
	tel, err := telemetry.Setup(ctx, getenv, stdout)
	if err != nil {
		return &exitError{code: exitUsage, msg: fmt.Sprintf("OpenTelemetry configuration: %v", err)}
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = tel.Shutdown(sctx)
	}()
	mln, err := metricsListener(tel)
	if err != nil {
		return err
	}
	logger := slog.New(telemetry.LogHandler(slog.NewJSONHandler(stderr, nil)))
	if mln != nil {
		defer serveMetrics(mln, tel, logger)()
	}
	release, err := lockServe(cfg.db)
	if err != nil {
		return err
	}
	defer release()
	st, err := openStore(ctx, cfg.db, dbCreate, logger)
	if err != nil {
		return &exitError{code: openExit(err), msg: openFailure(err)}
	}
	defer st.Close()
	logRecovery(ctx, st, logger, time.Now())
	logIndexVersion(ctx, st, logger)
	configuredBase := cfg.identifierBase
	if cfg.identifierBase, err = identifierBase(ctx, "serve", st, cfg.identifierBase); err != nil {
		return err
	}
	if configuredBase == "" && cfg.identifierBase != "" {
		logger.Info("identifier base: the database's, which its records were mapped with", "identifier_base", cfg.identifierBase)
	}
	if err := checkSafetyTenants(ctx, fc, st); err != nil {
		return err
	}
	replay.nonces = st
	metrics, err := telemetry.NewMetrics(tel.MeterProvider())
	if err != nil {
		return err
	}
	defer metrics.Close()
	if err := telemetry.StartRuntime(tel.MeterProvider()); err != nil {
		return err
	}
	metrics.RegisterStore(poolStats(st))
	acfg := app.Config{Store: st, IdentifierBase: cfg.identifierBase, Instance: cfg.instance, Version: version(),
		MaxBundleEntries: cfg.maxEntries, MaxResourceBytes: cfg.maxBody, Tracer: tel.TracerProvider(), Metrics: metrics,
		Safety: allSafety, TenantSafety: tenantSafety,
		SearchLimits: limits, SearchTimeout: searchTimeout, SearchesPerClient: perClient,
		UpdateCreate: clientIDsSafe(fc), Logger: logger,
		Jobs: jobs.Config{Workers: cfg.jobWorkers, Retention: cfg.jobRetention, Lease: cfg.jobLease},
		// Gateways may share one --instance (replicas of one deployment):
		// a random suffix per process tells them apart (their jobs'
		// claims, their settings' records).
		ProcessName: processName(cfg.instance),
		// Several processes may share the database, SQLite's file too.
		WatchUpgrades: true}
	if isPostgres(cfg.db) {
		// Only PostgreSQL is shared by several gateways (docs/deployment.md):
		// there each records its settings and compares them with the others'.
		acfg.Settings = settingsFingerprints(fc, getenv, allSafety, tenantSafety, dests, cfg.identifierBase)
	}
	gcfg := gateway.Config{MaxBodyBytes: cfg.maxBody, Logger: logger, BaseURL: cfg.baseURL, Telemetry: tel,
		Metrics: metrics, Auth: authn, RateLimit: cfg.rateLimit, TrustedProxies: proxies, MaxImportBytes: cfg.maxImport,
		CORSOrigins: corsOrigins}
	switch {
	case cfg.rateLimit < 0 && authn != nil:
		gcfg.RateLimit = 100
	case cfg.rateLimit <= 0:
		gcfg.RateLimit = -1 // off: development mode serves one local user
	}
	if bad := unmatchedFilterTenants(fc); len(bad) > 0 {
		logger.Warn("a delivery destination's filter.tenants names a tenant no configured client belongs to and no "+
			"issuer names: the destination receives none of its records (a misspelt tenant?); check the destination's "+
			"filter.tenants against the clients' tenants", "destination_tenants", strings.Join(bad, ", "))
	}
	if authn != nil {
		tenants := map[string]bool{}
		for _, c := range fc.Auth.Clients {
			tenants[c.Tenant] = true
		}
		for _, d := range dests {
			if len(tenants) > 1 && len(d.Filter.Tenants) == 0 {
				logger.Warn("a delivery destination without a tenants filter receives every tenant's records", "destination", d.Name)
			}
		}
		gcfg.AuthTokenURL = fc.Auth.TokenURL
		// A job of a client removed, moved to another tenant or without
		// the scope its kind needs fails when claimed (docs/security.md,
		// "Client lifecycle").
		acfg.Jobs.Registry = authn
		// Start audits every client added, changed or removed since the
		// database last recorded them (docs/audit.md, "Registered clients").
		acfg.Clients, _ = authn.Registrations()
		for _, w := range authn.Warnings() {
			if len(w.NotGranted) == 0 {
				logger.Warn(w.Message, "client", w.Client)
				continue
			}
			logger.Warn(w.Message, "client", w.Client, "scopes_not_granted", strings.Join(w.NotGranted, " "))
		}
		logger.Info("authentication: SMART Backend Services", "clients", len(fc.Auth.Clients), "external_issuers", len(fc.Auth.External))
		if isPostgres(cfg.db) && getenv("GATEWAY_TOKEN_SECRET") == "" && len(fc.Auth.SigningSecret) == 0 {
			logger.Warn("GATEWAY_TOKEN_SECRET is not set: this gateway signs its access tokens with a random key of its " +
				"own, which every other gateway on this database refuses (401); give every gateway the same " +
				"GATEWAY_TOKEN_SECRET (docs/configuration.md)")
		}
	} else {
		logger.Warn("development mode: no authentication configured; every request is served as an anonymous client " +
			"with every permission, on a loopback address only")
	}
	var worker *delivery.Worker
	var application *app.App // made below, before the worker runs
	if len(dests) > 0 {
		// The worker's log lines name a delivery by the id operators use.
		ids, err := operator.LoadIDs(ctx, st)
		if err != nil {
			return &exitError{code: exitUnchecked, msg: fmt.Sprintf("serve: could not read the delivery id key from the database: %v", err)}
		}
		// A gateway a later release superseded claims nothing more
		// (operator.UpgradeWatch).
		gated := operator.GateOutbox(st, func() bool { return application.Upgrade.Superseded() })
		worker, err = delivery.NewWorker(gated, dests, delivery.WorkerOptions{
			Logger:     logger,
			DeliveryID: ids.Encode,
			// Every attempt to send a record is audited (DICOM Export)
			// before the outbox records it.
			Audit: func(ctx context.Context, it *store.OutboxItem, a *store.Attempt, outcome string, entryStatus int) error {
				return application.Audit.AppendSent(ctx, st, cfg.identifierBase, auditlog.Sent{
					Delivery: ids.Encode(it.ID), Destination: it.Destination, Item: it, Attempt: a, Outcome: outcome, EntryStatus: entryStatus})
			},
			// A withdrawal whose record never reached a destination is
			// not sent there, even when an earlier delivery pending as it
			// was stored ended a dead letter since.
			Withhold: func(ctx context.Context, it *store.OutboxItem) (string, error) {
				return application.Operator.WithheldWithdrawal(ctx, it)
			},
			Observer: deliveryObserver{metrics: metrics},
			TraceID:  telemetry.TraceID,
			StartAttempt: func(ctx context.Context, dest string, it *store.OutboxItem) (context.Context, func(string)) {
				return tel.StartDeliveryAttempt(ctx, dest, it.TraceID, it.Attempts+1)
			},
			WrapTransport: func(rt http.RoundTripper) http.RoundTripper { return telemetry.ClientTransport(rt, tel) },
			// The backlog gauges read the store themselves (RegisterBacklog):
			// the worker need not query the outbox's stats for OnBacklog.
			BacklogInterval: -1,
			// In-flight attempts get the same budget as in-flight requests,
			// drained at the same time (drain).
			DrainTimeout: drainBudget,
		})
		if err != nil {
			return &exitError{code: exitUsage, msg: fmt.Sprintf("delivery: %v", err)}
		}
		acfg.Routes, acfg.Notify = routes(dests), worker.Notify
		metrics.RegisterBacklog(func(ctx context.Context) []telemetry.BacklogStat {
			stats, err := st.Stats(ctx)
			if err != nil {
				return nil
			}
			return backlogStats(stats, worker.Holds(), destinationNames(dests), time.Now())
		})
		metrics.RegisterCapabilities(func() []telemetry.CapabilityStat {
			checks := worker.CapabilityChecks()
			out := make([]telemetry.CapabilityStat, 0, len(checks))
			for _, c := range checks {
				unsupported, flags := c.Counts()
				out = append(out, telemetry.CapabilityStat{Destination: c.Destination,
					Unsupported: int64(unsupported), UndeclaredFlags: int64(flags), CheckFailed: c.Failed != ""})
			}
			return out
		})
	}
	if !acfg.UpdateCreate {
		logger.Info("clients cannot choose resource ids (update-as-create is off): several tenants share the id space")
	}
	application, err = app.New(acfg)
	if err != nil {
		return err
	}
	if settings := application.Settings; settings != nil {
		metrics.RegisterSettings(func() int64 { return int64(len(settings.Differences())) })
	}
	if err := application.Start(ctx); err != nil {
		kind, _ := outcome.From(err)
		return &exitError{code: exitCode(kind), msg: fmt.Sprintf("serve: start: %v", err)}
	}
	defer application.Close()
	if application.Operator != nil {
		if worker != nil {
			// /readyz and the console show a destination on hold and its
			// capability gaps; a retry ends a hold.
			application.Operator.SetWorker(operatorWorker{worker})
		}
		warnUnconfigured(ctx, application.Operator, logger)
	}
	gcfg.App = application
	if gcfg.Console, err = webConsole(fc, authn != nil, application, logger, getenv); err != nil {
		return &exitError{code: exitUsage, msg: err.Error()}
	}
	srv, err := gateway.NewServer(gcfg)
	if err != nil {
		return err
	}
	workerDone := make(chan error, 1)
	wctx, stopWorker := context.WithCancel(context.Background())
	defer stopWorker()
	if worker != nil {
		go func() { workerDone <- worker.Run(wctx) }()
	} else {
		workerDone <- nil
	}
	// Every request's context derives from reqCtx, which the drain
	// cancels when its deadline passes: the requests' database work
	// (a host that stopped answering) ends then, not minutes later.
	// Cancelled with a cause of its own, so that the requests it cuts off
	// are not taken for clients that went away (outcome.ClientClosed).
	reqCtx, cancelCause := context.WithCancelCause(context.Background())
	cancelRequests := func() { cancelCause(errDrainDeadline) }
	defer cancelRequests()
	hs := &http.Server{
		Handler:           srv,
		BaseContext:       func(net.Listener) context.Context { return reqCtx },
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       60 * time.Second,
		WriteTimeout:      writeTimeout,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
		// The edge's listener checks each request's framing (and
		// terminates TLS, HTTP/1.1 only): see gateway.Listener.
		ConnContext:  gateway.ConnContext,
		TLSNextProto: map[string]func(*http.Server, *tls.Conn, http.Handler){},
	}
	scheme := "http"
	if tlsConfig != nil {
		scheme = "https"
	}
	ln = gateway.Listener(ln, tlsConfig)
	names := destinationNames(dests)
	mode := "development (no authentication, loopback only)"
	if authn != nil {
		mode = "authenticated (SMART Backend Services)"
	}
	logger.Info("listening", "addr", ln.Addr().String(), "scheme", scheme, "version", version(),
		"mapping_version", mapping.Version, "database", describeDB(cfg.db), "mode", mode,
		"destinations", strings.Join(names, ","))
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	logger.Info("shutting down")
	began := time.Now()
	sctx, cancel := context.WithTimeout(context.Background(), drainBudget)
	defer cancel()
	if err := drain(sctx, hs.Shutdown, cancelRequests, stopWorker, workerDone); err != nil {
		// An operator's review: nothing said how the stop ended.
		logger.Warn("stopped: requests still running when the drain budget ran out were cancelled (each wrote all "+
			"or nothing; their clients got no answer and may retry)", "took", time.Since(began).Round(time.Millisecond).String())
		return err
	}
	logger.Info("stopped: every request answered and the delivery attempts under way ended",
		"took", time.Since(began).Round(time.Millisecond).String())
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// webConsole builds the web console: with an OpenID Connect issuer
// configured people sign in; without one it runs in development mode, which
// only a gateway in development mode (no API authentication, loopback) may
// do; a gateway with API authentication and no issuer serves no console.
func webConsole(fc *fileConfig, authenticated bool, a *app.App, logger *slog.Logger, getenv func(string) string) (http.Handler, error) {
	st := fc.Console
	if st == nil {
		st = &console.Settings{}
	}
	if st.Issuer == "" && authenticated {
		logger.Info("console: off (API authentication is configured but no console issuer; docs/console.md)")
		return nil, nil
	}
	if st.ClientSecret == "" {
		st.ClientSecret = getenv("GATEWAY_CONSOLE_CLIENT_SECRET")
	}
	c, err := console.New(console.Config{App: a, Settings: st, Logger: logger})
	if err != nil {
		return nil, fmt.Errorf("%s: %v", fc.in(), err)
	}
	if c.Development() {
		logger.Warn("console: development mode at /console: no sign-in, every permission")
	} else {
		logger.Info("console: at /console, people sign in with OpenID Connect", "issuer", st.Issuer)
	}
	return c, nil
}

// checkConsole checks the console's settings as webConsole will use them,
// before the database is opened.
func checkConsole(fc *fileConfig, authenticated bool) error {
	if fc.Console == nil || (fc.Console.Issuer == "" && authenticated) {
		return nil
	}
	if err := fc.Console.Check(); err != nil {
		return fmt.Errorf("%s: %v", fc.in(), err)
	}
	return nil
}

// openStore opens the database named by --db: a postgres:// or
// postgresql:// URL selects PostgreSQL (pool and timeouts from the URL's
// query, see package postgres), anything else is a SQLite file path (the
// embedded default). Unless use is dbCreate it opens only a database the
// gateway set up, creating and migrating nothing (store.ErrNoDatabase
// otherwise). A database a newer release upgraded is store.ErrNewerRelease:
// its schema for every use, its search index for a use that writes
// (checkIndexNotNewer).
//
// logger, if not nil, gets a migration's progress as it runs
// (migrationProgress).
func openStore(ctx context.Context, db string, use dbUse, logger *slog.Logger) (store.Store, error) {
	var progress func(store.MigrationStep)
	if logger != nil {
		progress = migrationProgress(logger)
	}
	existing := use != dbCreate
	var st store.Store
	var err error
	what := "database"
	if strings.HasPrefix(db, "postgres://") || strings.HasPrefix(db, "postgresql://") {
		what = "PostgreSQL database"
		// The logger also gets the circuit breaker's WARN lines
		// (docs/deployment.md, when the database host vanishes).
		st, err = postgres.Open(ctx, db, postgres.Options{Existing: existing, Progress: progress, Logger: logger})
	} else {
		st, err = sqlite.Open(ctx, db, sqlite.Options{Existing: existing, Progress: progress})
	}
	if err == nil && use != dbRead {
		if err = checkIndexNotNewer(ctx, st); err != nil {
			st.Close()
		}
	}
	if err != nil {
		// The URL may hold a password: it is not repeated here.
		return nil, fmt.Errorf("open %s %s: %w", what, describeDB(db), err)
	}
	return st, nil
}

// libpqKeyword matches a keyword=value pair of a libpq connection string
// ("host=db user=k password=... dbname=ketamine").
var libpqKeyword = regexp.MustCompile(`(^|\s)(host|hostaddr|port|dbname|user|password|passfile|sslmode|service|connect_timeout|options|application_name)\s*=`)

// checkDB refuses a --db that is a PostgreSQL keyword/value connection
// string: taken as a SQLite file path it would create a file named after
// it, password included, and name it in the log. The value is not
// repeated: it may hold a password.
func checkDB(name, db string) error {
	if !strings.Contains(db, "://") {
		if fi, err := os.Stat(db); err == nil && fi.IsDir() {
			// SQLite's "unable to open database file" said nothing of why
			// (an operator's review). No database there: could not check,
			// as for a path with no file.
			return &exitError{code: exitUnchecked, msg: fmt.Sprintf("%s: --db %s is a directory: give the path of a database "+
				"file (%s)", name, describeDB(db), filepath.Join(db, "ketamine-gateway.db"))}
		}
	}
	if strings.Contains(db, "://") || !libpqKeyword.MatchString(db) {
		return nil
	}
	return &exitError{code: exitUsage, msg: fmt.Sprintf("%s: --db (or GATEWAY_DB) looks like a PostgreSQL keyword/value "+
		"connection string (host=... dbname=...), which the gateway does not take: give a URL, "+
		"postgres://USER@HOST:PORT/DBNAME?sslmode=..., with the password in PGPASSWORD or ~/.pgpass "+
		"(docs/deployment.md), or the path of a SQLite file", name)}
}

// openExisting opens the database a command other than serve and import
// reads (use dbRead) or writes (dbWrite): one the gateway set up (serve
// creates and migrates it). Anything else is exit 3 (could not check),
// naming where it looked, except a rollback (a database a newer release
// upgraded: exit 2); nothing is created.
func openExisting(ctx context.Context, name, db string, use dbUse) (store.Store, error) {
	if err := checkDB(name, db); err != nil {
		return nil, err
	}
	st, err := openStore(ctx, db, use, nil)
	var ve *store.SchemaVersionError
	switch {
	case errors.Is(err, store.ErrNewerRelease):
		return nil, &exitError{code: openExit(err), msg: rollbackMessage(name, err)}
	case errors.As(err, &ve) && ve.Have < ve.Want:
		return nil, &exitError{code: exitUnchecked, msg: migrationPendingMessage(name, err)}
	case errors.Is(err, store.ErrNoDatabase):
		why := "it was never set up by the gateway, or by an older version (run serve once to migrate it)"
		if _, serr := os.Stat(db); serr != nil && !strings.Contains(db, "://") {
			why = "no such file"
		}
		return nil, &exitError{code: exitUnchecked, msg: fmt.Sprintf("%s: no gateway database at %s: %s; check --db or GATEWAY_DB (serve creates one)",
			name, describeDB(db), why)}
	case err != nil:
		return nil, &exitError{code: openExit(err), msg: fmt.Sprintf("%s: could not open the database: %v", name, err)}
	}
	return st, nil
}

// describeDB names a database for the log: the absolute path of a SQLite
// file, or a PostgreSQL URL's host, port and database (never its password,
// user or parameters).
func describeDB(db string) string {
	if strings.HasPrefix(db, "postgres://") || strings.HasPrefix(db, "postgresql://") {
		// The host and the database only: never the password, nor the
		// user or the query (docs/deployment.md); nothing of a URL whose
		// password holds an unencoded reserved character.
		return postgres.Describe(db)
	}
	if abs, err := filepath.Abs(db); err == nil {
		return abs
	}
	return db
}

func envOr(getenv func(string) string, key, def string) string {
	if v := getenv(key); v != "" {
		return v
	}
	return def
}

// defaultInstance names the process in audit records: ketamine-gateway@host.
func defaultInstance() string {
	h, err := os.Hostname()
	if err != nil || h == "" {
		return "ketamine-gateway"
	}
	return "ketamine-gateway@" + h
}

// serverTLS loads --tls-cert and --tls-key (both or neither): TLS 1.2 at
// least, Go's default (secure) cipher suites.
func serverTLS(certFile, keyFile string) (*tls.Config, error) {
	if certFile == "" && keyFile == "" {
		return nil, nil
	}
	if certFile == "" || keyFile == "" {
		return nil, errors.New("--tls-cert and --tls-key go together")
	}
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("--tls-cert/--tls-key: %v", err)
	}
	return &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}}, nil
}

// checkAddr checks a listen address's form: host:port (the host may be
// empty: every interface), the port a number from 0 to 65535.
func checkAddr(addr string) error {
	const form = "give host:port, such as 127.0.0.1:8080 (the port a number from 0 to 65535; :8080 listens on every interface)"
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("--addr %q is malformed: %s", addr, form)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		return fmt.Errorf("--addr %q has an invalid port: %s", addr, form)
	}
	return nil
}

// listenError is the exit of a listen address serve cannot have (in use,
// not an address of this host, a port it may not bind): its configuration
// names an address it cannot serve on, exit 2.
func listenError(addr string, err error) error {
	why := "choose another --addr"
	switch {
	case errors.Is(err, syscall.EADDRINUSE):
		why = "the address is in use (another process listens there): stop it or choose another --addr"
	case errors.Is(err, syscall.EADDRNOTAVAIL):
		why = "the host is not an address of this machine: choose another --addr"
	case errors.Is(err, syscall.EACCES):
		why = "this user may not listen on that port (below 1024 needs privileges): choose another --addr"
	}
	detail := err
	var oe *net.OpError
	if errors.As(err, &oe) && oe.Err != nil {
		detail = oe.Err
	}
	return &exitError{code: exitUsage, msg: fmt.Sprintf("serve: cannot listen on %s: %s (%v)", addr, why, detail)}
}

// loopback reports whether a listen address is on the loopback interface
// only (an empty host listens everywhere).
func loopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// parseCIDRs reads a comma-separated list of CIDRs ("" is none); a bare
// address is a one-address range.
func parseCIDRs(list string) ([]*net.IPNet, error) {
	var out []*net.IPNet
	for _, part := range strings.Split(list, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		if !strings.Contains(part, "/") {
			ip := net.ParseIP(part)
			if ip == nil {
				return nil, fmt.Errorf("%q is not an address or CIDR", part)
			}
			bits := 128
			if ip.To4() != nil {
				bits = 32
			}
			part = fmt.Sprintf("%s/%d", part, bits)
		}
		_, n, err := net.ParseCIDR(part)
		if err != nil {
			return nil, fmt.Errorf("%q is not an address or CIDR", part)
		}
		out = append(out, n)
	}
	return out, nil
}

// routes turns delivery destinations into ingest's routes.
func routes(dests []delivery.Destination) []ingest.Route {
	out := make([]ingest.Route, len(dests))
	for i, d := range dests {
		out[i] = ingest.Route{Name: d.Name, Accepts: d.Accepts, AcceptsTenant: d.AcceptsTenant, MRNSystems: d.MRNSystems}
	}
	return out
}

// deliveryObserver bridges the delivery worker's events to OpenTelemetry
// metrics.
type deliveryObserver struct{ metrics *telemetry.Metrics }

// OnAttempt implements delivery.Observer.
func (o deliveryObserver) OnAttempt(dest, outcome string, d time.Duration) {
	o.metrics.DeliveryAttempt(context.Background(), dest, outcome, d)
}

// OnBacklog implements delivery.Observer (the backlog gauges read the
// store directly, see RegisterBacklog).
func (o deliveryObserver) OnBacklog(store.DestinationStats) {}

// operatorWorker is the delivery worker as the operator service uses it:
// its holds, and its capability checks as operator.CapabilityGap (the
// operator package knows nothing of delivery's types).
type operatorWorker struct{ *delivery.Worker }

// CapabilityGaps implements operator.Worker: the destinations whose
// CapabilityStatement lacks a type the gateway sends them, or could not be
// read, in the order they are configured.
func (w operatorWorker) CapabilityGaps() []operator.CapabilityGap {
	out := []operator.CapabilityGap{}
	for _, c := range w.CapabilityChecks() {
		if len(c.Unsupported) == 0 && c.Failed == "" {
			continue
		}
		g := operator.CapabilityGap{Destination: c.Destination, CheckFailed: c.Failed}
		if c.Failed != "" {
			since := c.FailedSince.UTC()
			g.CheckFailedSince = &since
		}
		for _, u := range c.Unsupported {
			g.Unsupported = append(g.Unsupported, operator.UnsupportedType{ResourceType: u.Type, Listed: u.Listed,
				MissingInteractions: u.Missing, MissingFlags: u.Flags})
		}
		out = append(out, g)
	}
	return out
}

// drainBudget bounds a graceful stop: in-flight requests and in-flight
// delivery attempts drain at the same time, each for at most this long,
// within the 30 s a supervisor (Kubernetes' default grace period, systemd's
// default is 90 s) gives before SIGKILL.
const drainBudget = 20 * time.Second

// drainGrace is how long the requests still in flight at the drain's
// deadline, their contexts cancelled, have to answer.
const drainGrace = 2 * time.Second

// errDrainDeadline is the cause of the contexts of the requests a drain
// gives up waiting for.
var errDrainDeadline = errors.New("shutdown: the drain's deadline passed")

// drain stops serving and delivering at once: the HTTP server drains its
// requests (shutdownHTTP, until ctx ends) while the delivery worker, told
// to stop, finishes or cuts off its attempts (they stay in the outbox and
// are sent again after a restart); it returns when both have. Requests
// still in flight when ctx ends (waiting on a database that stopped
// answering) have their contexts cancelled (cancelRequests), which ends
// their database work, and drainGrace more to answer; the error then
// reports the deadline.
func drain(ctx context.Context, shutdownHTTP func(context.Context) error, cancelRequests, stopWorker func(), workerDone <-chan error) error {
	stopWorker()
	err := shutdownHTTP(ctx)
	if err != nil {
		cancelRequests()
		gctx, cancel := context.WithTimeout(context.Background(), drainGrace)
		_ = shutdownHTTP(gctx)
		cancel()
	}
	<-workerDone
	if err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	return nil
}

// corsOriginsOf reads the CORS origins: --cors-origins (or
// GATEWAY_CORS_ORIGINS), a comma-separated list, else the config file's
// cors.origins; each must be an origin (gateway.CheckCORSOrigins).
func corsOriginsOf(list string, flagSet bool, fc *fileConfig) ([]string, error) {
	name := "--cors-origins"
	if !flagSet {
		name = "GATEWAY_CORS_ORIGINS"
	}
	var origins []string
	for o := range strings.SplitSeq(list, ",") {
		if o = strings.TrimSpace(o); o != "" {
			origins = append(origins, o)
		}
	}
	if origins == nil && fc.CORS != nil {
		name, origins = fc.in()+": cors.origins", fc.CORS.Origins
	}
	if err := gateway.CheckCORSOrigins(origins); err != nil {
		return nil, usageError("serve", "%s: %v", name, err)
	}
	return origins, nil
}

// backlogStats are the delivery backlog's metrics: each destination the
// outbox names, and each configured one without deliveries yet with
// zeros, as /readyz lists them (an operator's review: a dashboard saw no
// series for a new destination until its first delivery).
func backlogStats(stats []store.DestinationStats, holds map[string]time.Time, configured []string, now time.Time) []telemetry.BacklogStat {
	out := make([]telemetry.BacklogStat, 0, len(stats)+len(configured))
	seen := map[string]bool{}
	for _, s := range stats {
		_, held := holds[s.Destination]
		b := telemetry.BacklogStat{Destination: s.Destination, Pending: int64(s.Pending), Dead: int64(s.Dead), Held: held}
		if !s.OldestPending.IsZero() {
			b.OldestPendingAge = now.Sub(s.OldestPending)
		}
		out, seen[s.Destination] = append(out, b), true
	}
	for _, d := range configured {
		if !seen[d] {
			_, held := holds[d]
			out = append(out, telemetry.BacklogStat{Destination: d, Held: held})
		}
	}
	return out
}

// destinationNames are the names of dests, in order.
func destinationNames(dests []delivery.Destination) []string {
	names := make([]string, len(dests))
	for i, d := range dests {
		names[i] = d.Name
	}
	return names
}
