package main

import (
	"fmt"
	"net/http"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/auditlog"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/auth"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/search"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
)

// cliScope is the audit scope of one run of a CLI command (command: its
// name in the client id, cliClient) for interaction, as the API's twin of
// the command records its request: the person running it, who acts for
// every tenant (an all-tenant caller: each tenant whose data it named gets
// its share), a request id of the run (runID), and no HTTP exchange
// (auditlog.Scope.NoHTTP).
func cliScope(command, interaction string) *auditlog.Scope {
	sc := auditlog.NewScope(interaction, &auth.Principal{ClientID: cliClient(command), Tenant: search.AllTenants,
		Scopes: auth.ParseScopes("system/*.cruds " + auth.ScopeOperator)})
	sc.RequestID, sc.NoHTTP = runID(command), true
	return sc
}

// recordCLI commits sc's AuditEvent, for command name, on st with its own
// audit log (the command runs no application): a CLI read that discloses
// the patients' data (lineage, deliveries list and show), as its API twin
// is recorded, before anything is printed. An AuditEvent that cannot be
// committed is exit 3, and nothing is shown, as the API answers 503
// audit-unavailable instead of the data.
func recordCLI(st store.Store, name string, sc *auditlog.Scope, getenv func(string) string) error {
	return auditFailed(name, appendCLI(st, sc, getenv))
}

// recordCLIChange commits sc's AuditEvent, for command name, once the
// change it records is made (deliveries retry, cancel, replay: their API
// twins record theirs after the change as well). An AuditEvent that
// cannot be committed is exit 3, saying the change stays made.
func recordCLIChange(st store.Store, name string, sc *auditlog.Scope, getenv func(string) string) error {
	return changeAuditFailed(name, appendCLI(st, sc, getenv))
}

// changeAuditFailed is the exit of a command whose change is made and
// whose AuditEvent could not be committed (err; nil: none): running it
// again would not make the change again.
func changeAuditFailed(name string, err error) error {
	if err == nil {
		return nil
	}
	return &exitError{code: exitUnchecked, msg: fmt.Sprintf("%s: done, but its AuditEvent could not be recorded: %v", name, describe(err))}
}

// appendCLI commits sc's AuditEvent on st with an audit log of its own.
func appendCLI(st store.Store, sc *auditlog.Scope, getenv func(string) string) error {
	l := auditlog.New(st, auditlog.Config{Observer: envOr(getenv, "GATEWAY_INSTANCE", defaultInstance())})
	l.Start()
	err := l.Append(sc, http.StatusOK)
	if cerr := l.Close(); err == nil {
		err = cerr
	}
	return err
}

// auditFailed is the exit of a command whose AuditEvent could not be
// committed (err; nil: none).
func auditFailed(name string, err error) error {
	if err == nil {
		return nil
	}
	return &exitError{code: exitUnchecked, msg: fmt.Sprintf("%s: its AuditEvent could not be recorded, so nothing is shown (run it again): %v",
		name, describe(err))}
}
