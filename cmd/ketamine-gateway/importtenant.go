package main

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/ingest"
)

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
	if fc.Auth != nil && (len(fc.Auth.Clients) > 0 || len(fc.Auth.External) > 0) {
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
