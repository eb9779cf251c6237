package auth

import (
	"crypto"
	"encoding/base64"
	"slices"
	"strings"
)

// Registration is a registered client as an access review shows it: who
// it is, the tenant it acts for, the most it may be granted and the ids of
// its keys. Never key material.
type Registration struct {
	ID     string   `json:"id"`
	Tenant string   `json:"tenant"`
	Scopes []string `json:"scopes"`
	KeyIDs []string `json:"keyIds"`
	// KeyThumbprints are its keys' RFC 7638 JWK thumbprints (SHA-256,
	// base64url) by key id: public, never key material, and changed by a
	// key replaced under the same kid. The gateway records them to audit
	// changes of its clients (auditlog.Log.RecordClients); the access
	// review does not show them.
	KeyThumbprints map[string]string `json:"-"`
}

// IssuerRegistration is an external issuer as an access review shows it:
// its tokens' clients are not registered here, the issuer and its JWKS URL
// are.
type IssuerRegistration struct {
	Issuer  string   `json:"issuer"`
	JWKSURL string   `json:"jwksUrl"`
	Scopes  []string `json:"scopes"`
	// Tenants are the only tenants its tokens may name (none: any one).
	Tenants []string `json:"tenants,omitempty"`
}

// Registrations returns the registered clients, by id, and the external
// issuers, by issuer. It cannot fail.
func (s *Server) Registrations() ([]Registration, []IssuerRegistration) {
	clients := make([]Registration, 0, len(s.clients))
	for _, c := range s.clients {
		r := Registration{ID: c.id, Tenant: c.tenant, Scopes: strings.Fields(c.scopes.String()), KeyIDs: []string{},
			KeyThumbprints: map[string]string{}}
		for kid, k := range c.keys {
			r.KeyIDs = append(r.KeyIDs, kid)
			if tp, err := k.Thumbprint(crypto.SHA256); err == nil {
				r.KeyThumbprints[kid] = base64.RawURLEncoding.EncodeToString(tp)
			}
		}
		slices.Sort(r.KeyIDs)
		clients = append(clients, r)
	}
	slices.SortFunc(clients, func(a, b Registration) int { return strings.Compare(a.ID, b.ID) })
	issuers := make([]IssuerRegistration, 0, len(s.external))
	for _, e := range s.external {
		r := IssuerRegistration{Issuer: e.issuer, Scopes: strings.Fields(e.scopes.String())}
		if e.keys != nil {
			r.JWKSURL = e.keys.url
		}
		for t := range e.tenants {
			r.Tenants = append(r.Tenants, t)
		}
		slices.Sort(r.Tenants)
		issuers = append(issuers, r)
	}
	slices.SortFunc(issuers, func(a, b IssuerRegistration) int { return strings.Compare(a.Issuer, b.Issuer) })
	return clients, issuers
}
