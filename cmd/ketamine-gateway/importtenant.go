package main

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/ingest"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/search"
)

// checksAuthTenants reports whether importTenantError checks the tenant
// against fc's clients and issuers (an authenticated deployment's
// configuration); otherwise dbTenantError checks it against the database.
func checksAuthTenants(fc *fileConfig) bool {
	return fc != nil && fc.Auth != nil && (len(fc.Auth.Clients) > 0 || len(fc.Auth.External) > 0)
}

// tenantStore is what dbTenantError reads of the store.
type tenantStore interface {
	Tenants(ctx context.Context) ([]string, error)
	LedgerTenants(ctx context.Context) ([]string, error)
}

// dbTenantError refuses (exit 2) an import, without a --config whose
// clients name the tenants, into a database that holds named tenants'
// records, when its tenant is not one the database holds (resources or
// native records) or is missing (the default tenant, when the database
// holds no native record of it): a misspelt or forgotten --tenant would
// store records no clinic sees. newTenant (--new-tenant) says the tenant
// is new to the database on purpose. A database without named tenants (a
// single clinic's, or a new one) is not checked. Errors reading the
// store are exit 3.
func dbTenantError(ctx context.Context, st tenantStore, tenant string, newTenant bool) error {
	if newTenant {
		return nil
	}
	resTenants, err := st.Tenants(ctx)
	if err != nil {
		return &exitError{code: exitUnchecked, msg: fmt.Sprintf("import: could not read the database's tenants: %v", err)}
	}
	ledger, err := st.LedgerTenants(ctx)
	if err != nil {
		return &exitError{code: exitUnchecked, msg: fmt.Sprintf("import: could not read the database's tenants: %v", err)}
	}
	named := map[string]bool{}
	for _, t := range append(resTenants, ledger...) {
		if t != "" && !search.Reserved(t) && t != search.AllTenants {
			named[t] = true
		}
	}
	if len(named) == 0 {
		return nil
	}
	// The default tenant always holds the gateway's conformance
	// resources: it counts as holding records only with native records.
	if tenant == "" && !slices.Contains(ledger, "") || tenant != "" && !named[tenant] {
		what := fmt.Sprintf("--tenant %q: the database holds no records of this tenant", tenant)
		if tenant == "" {
			what = "no --tenant: the database holds no records of the default tenant"
		}
		known := slices.Sorted(maps.Keys(named))
		if slices.Contains(ledger, "") {
			known = append(known, `"" (the default tenant)`)
		}
		return usageError("import", "%s, but records of named tenants, so no clinic could see them (a forgotten or "+
			"misspelt --tenant?); nothing was imported; give --tenant, one of: %s; or --new-tenant for the first "+
			"records of a new tenant", what, strings.Join(known, ", "))
	}
	return nil
}

// importTenantError refuses (exit 2) an import whose tenant nobody would
// ever see: when --config registers clients or external issuers (an
// authenticated deployment), the tenant must be one a client belongs to,
// an issuer names, or a destination's filter.tenants names; the default
// tenant ("", no --tenant) too. An issuer that names no tenant may name
// any: then every tenant is accepted. Without an auth section (development
// mode: every client is the default tenant's) nothing is checked. With
// --deliver, some destination must accept records of kind and of the
// tenant (routes: --config's destinations, and GATEWAY_EHR_URL's, which
// accepts everything).
func importTenantError(fc *fileConfig, kind, tenant string, deliver bool, routes []ingest.Route) error {
	name := fmt.Sprintf("tenant %q", tenant)
	if tenant == "" {
		name = "the default tenant (no --tenant)"
	}
	if checksAuthTenants(fc) {
		tenants, any := authTenants(fc)
		for _, dc := range fc.Destinations {
			for _, t := range dc.Filter.Tenants {
				tenants[t] = true
			}
		}
		if !any && !tenants[tenant] {
			delete(tenants, "")
			known := "none"
			if len(tenants) > 0 {
				known = strings.Join(slices.Sorted(maps.Keys(tenants)), ", ")
			}
			return usageError("import", "%s: no client of --config belongs to it and no issuer or destination names it, "+
				"so no client could read the records and no destination would receive them (a forgotten or misspelt "+
				"--tenant?); nothing was imported; give --tenant, one of: %s", name, known)
		}
	}
	if deliver && len(fc.Destinations) > 0 && len(fc.Destinations) == len(routes) && !slices.ContainsFunc(fc.Destinations, func(dc destinationConfig) bool {
		return len(dc.Filter.Kinds) == 0 || slices.Contains(dc.Filter.Kinds, kind)
	}) {
		return usageError("import", "--deliver: no destination accepts %s records (their filter.kinds name other kinds), "+
			"so nothing would be delivered; nothing was imported; leave out --deliver to load them without sending them", kind)
	}
	if deliver && !slices.ContainsFunc(routes, func(r ingest.Route) bool { return r.AcceptsTenant == nil || r.AcceptsTenant(tenant) }) {
		return usageError("import", "--deliver: no destination accepts the records of %s (their filter.tenants name other "+
			"tenants), so nothing would be delivered; nothing was imported; give the --tenant the records belong to, or "+
			"leave out --deliver to load them without sending them", name)
	}
	return nil
}
