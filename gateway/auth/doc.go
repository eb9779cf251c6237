// Package auth authenticates and authorises callers of the gateway with SMART
// App Launch v2 "Backend Services": registered clients sign a short-lived JWT
// (the client assertion) with their private key, exchange it at the token
// endpoint for an access token, and send that token as a Bearer credential on
// every API request. It is library code over net/http, free of echo: the gateway
// package parses requests, calls it and writes responses.
//
// # Token endpoint
//
// Server.Token receives the parsed form of POST /auth/token and checks
// exactly what SMART requires: grant_type=client_credentials,
// client_assertion_type=urn:ietf:params:oauth:client-assertion-type:jwt-bearer,
// and a client_assertion signed RS384 or ES384 (never none or HMAC) with a
// key whose kid is registered for the client named by iss == sub, with aud
// Config.TokenURL, exp at most five minutes ahead and a jti not used before
// (ReplayCache). The scopes granted are those requested intersected with the
// client's (see Scopes); the access token is an HS256 JWT signed with
// Config.SigningSecret and lives at most five minutes.
//
// # API requests
//
// Server.Authenticate turns an Authorization header into a Principal: the
// client, its tenant and its Scopes. It accepts the gateway's own tokens and
// tokens from configured external authorisation servers (ExternalIssuer),
// whose keys come only from their configured JWKS URL. The gateway then
// checks Principal.Scopes.Allows(resourceType, perm) or Has(ScopeIngest) /
// Has(ScopeOperator) per route, answering InsufficientScope on refusal.
//
// # Errors
//
// Token and Authenticate return a *Failure rather than an error: it carries
// the HTTP status, the OAuth error code, a fixed PHI-free description safe
// for the client, a stable Reason and the client id for the audit record, and
// renders both the RFC 6749 JSON body (MarshalJSON) and the RFC 6750
// WWW-Authenticate header (WWWAuthenticate). Nothing from the assertion, the
// token or their claims ever appears in a Failure's text.
//
// # Several replicas
//
// Every replica needs the same Config.SigningSecret (else tokens issued by
// one are refused by another) and a shared ReplayCache (else an assertion
// could be replayed against another replica); the defaults, a random secret
// and MemoryReplayCache, are for a single process.
//
// # Rate limiting
//
// Limiter is a bounded per-key token bucket for the gateway to put in front
// of the token endpoint (keyed by remote IP) and the API (keyed by client).
package auth
