package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/app"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/ingest"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
)

// appConfigFlags defines the flags cliAppConfig reads, the same for every
// command that writes through the application (import, replay).
func appConfigFlags(fs *flag.FlagSet, getenv func(string) string) (configFile, identifierBase *string) {
	configFile = fs.String("config", getenv("GATEWAY_CONFIG"), "configuration file: safety thresholds, destinations (GATEWAY_CONFIG)")
	identifierBase = fs.String("identifier-base", getenv("GATEWAY_IDENTIFIER_BASE"), "namespace of minted identifier systems (GATEWAY_IDENTIFIER_BASE)")
	return configFile, identifierBase
}

// cliAppConfig is the application a command that writes through it (import,
// replay) works with: the safety thresholds of the configuration file and,
// when withDestinations, its delivery destinations (the command enqueues;
// a server on the same database delivers), and no job runner (servers run
// jobs). It returns how many destinations there are; a configuration that
// does not read is a usage error.
func cliAppConfig(configFile, identifierBase string, withDestinations bool, getenv func(string) string) (app.Config, int, error) {
	fc, err := readConfig(configFile)
	if err != nil {
		return app.Config{}, 0, &exitError{code: exitUsage, msg: err.Error()}
	}
	allSafety, tenantSafety, err := safety(fc)
	if err != nil {
		return app.Config{}, 0, &exitError{code: exitUsage, msg: err.Error()}
	}
	acfg := app.Config{IdentifierBase: identifierBase, Instance: envOr(getenv, "GATEWAY_INSTANCE", defaultInstance()), Version: version(),
		Safety: allSafety, TenantSafety: tenantSafety, NoJobRunner: true, BacklogEvery: -1}
	if !withDestinations {
		return acfg, 0, nil
	}
	dests, err := destinations(fc, getenv("GATEWAY_EHR_URL"), "GATEWAY_EHR_URL", getenv)
	if err != nil {
		return app.Config{}, 0, &exitError{code: exitUsage, msg: err.Error()}
	}
	acfg.Routes = routes(dests)
	return acfg, len(dests), nil
}

// openApp opens the database db for command name and starts the
// application of acfg on it; close stops both. use dbWrite opens only a
// database the gateway set up (openExisting); dbCreate creates and
// migrates one as serve does, logging to logger (if not nil) what it
// migrated as serve does (a stop-the-world migration at WARN: p44 F1). A
// database that cannot be opened exits 3, one a newer release upgraded 2
// (openExit).
func openApp(ctx context.Context, acfg app.Config, name, db string, use dbUse, logger *slog.Logger) (a *app.App, close func(), err error) {
	var st store.Store
	if err := checkDB(name, db); err != nil {
		return nil, nil, err
	}
	if use != dbCreate {
		st, err = openExisting(ctx, name, db, use)
	} else if st, err = openStore(ctx, db, dbCreate, logger); err != nil {
		err = &exitError{code: openExit(err), msg: openMessage(name, err)}
	}
	if err != nil {
		return nil, nil, err
	}
	if use == dbCreate && logger != nil {
		logMigration(st, logger)
	}
	acfg.Store = st
	if acfg.IdentifierBase, err = identifierBase(ctx, name, st, acfg.IdentifierBase); err != nil {
		st.Close()
		return nil, nil, err
	}
	if a, err = app.New(acfg); err != nil {
		st.Close()
		return nil, nil, err
	}
	if err := a.Start(ctx); err != nil {
		st.Close()
		return nil, nil, &exitError{code: exitUnchecked, msg: err.Error()}
	}
	return a, func() { a.Close(); st.Close() }, nil
}

// identifierBase is the identifier base command name maps st's records
// with (ingest.ResolveIdentifierBase): configured, or the database's own
// when configured is unset. A configured base other than the database's,
// or one that is no URL, is a usage error; a database that cannot be read exits 3.
func identifierBase(ctx context.Context, name string, st store.Store, configured string) (string, error) {
	base, err := ingest.ResolveIdentifierBase(ctx, st, configured)
	var mismatch *ingest.BaseMismatchError
	var invalid *ingest.BaseInvalidError
	switch {
	case errors.As(err, &mismatch), errors.As(err, &invalid):
		return "", &exitError{code: exitUsage, msg: fmt.Sprintf("%s: %v", name, err)}
	case err != nil:
		return "", &exitError{code: exitUnchecked, msg: fmt.Sprintf("%s: %v", name, err)}
	}
	return base, nil
}
