package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/auth"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/console"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/delivery"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/search"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
)

// fileConfig is the --config file (docs/configuration.md).
type fileConfig struct {
	// file is the --config path the settings were read from ("" for
	// none), for messages: not a setting.
	file string
	// Auth registers SMART Backend Services clients (and external token
	// issuers); without it the gateway runs in development mode.
	Auth         *auth.Config        `json:"auth"`
	Destinations []destinationConfig `json:"destinations"`
	// Safety overrides the mappings' safety thresholds, for every tenant
	// and per tenant (safety.go).
	Safety *safetyConfig `json:"safety"`
	// Console configures the web console: sign-in for people (OpenID
	// Connect), their roles, the tracing UI link (docs/configuration.md).
	Console *console.Settings `json:"console"`
	// Search bounds searches (docs/security.md, "Limits").
	Search *searchConfig `json:"search"`
	// CORS lists the browser origins whose scripts may call the FHIR API
	// (--cors-origins, which wins when given).
	CORS *corsConfig `json:"cors"`
}

// corsConfig is the "cors" section of the --config file.
type corsConfig struct {
	Origins []string `json:"origins"`
}

// searchConfig is the "search" section of the --config file: the search
// limits, the search timeout and the searches one client runs at once.
// Absent or zero fields keep the defaults.
type searchConfig struct {
	MaxParams           int    `json:"maxParams"`
	MaxRepeats          int    `json:"maxRepeats"`
	MaxValues           int    `json:"maxValues"`
	MaxChainDepth       int    `json:"maxChainDepth"`
	MaxIncludes         int    `json:"maxIncludes"`
	MaxIncluded         int    `json:"maxIncluded"`
	IncludeRounds       int    `json:"includeRounds"`
	MaxPageBytes        int    `json:"maxPageBytes"`
	Timeout             string `json:"timeout"`
	ConcurrentPerClient int    `json:"concurrentPerClient"`
}

// searchSettings checks the "search" section: no negative numbers, and a
// timeout (a Go duration) below the HTTP write timeout, so a search is
// stopped and answered before the connection is.
func searchSettings(sc *searchConfig, in string, writeTimeout time.Duration) (search.Limits, time.Duration, int, error) {
	if sc == nil {
		return search.Limits{}, 0, 0, nil
	}
	for name, v := range map[string]int{"maxParams": sc.MaxParams, "maxRepeats": sc.MaxRepeats, "maxValues": sc.MaxValues,
		"maxChainDepth": sc.MaxChainDepth, "maxIncludes": sc.MaxIncludes, "maxIncluded": sc.MaxIncluded,
		"includeRounds": sc.IncludeRounds, "maxPageBytes": sc.MaxPageBytes, "concurrentPerClient": sc.ConcurrentPerClient} {
		if v < 0 {
			return search.Limits{}, 0, 0, fmt.Errorf("%s: search.%s must not be negative", in, name)
		}
	}
	var timeout time.Duration
	if sc.Timeout != "" {
		d, err := time.ParseDuration(sc.Timeout)
		if err != nil || d <= 0 || d >= writeTimeout {
			return search.Limits{}, 0, 0, fmt.Errorf("%s: search.timeout must be a duration such as \"15s\", "+
				"above 0 and below the HTTP write timeout (%s)", in, writeTimeout)
		}
		timeout = d
	}
	l := search.Limits{Params: sc.MaxParams, Repeats: sc.MaxRepeats, Values: sc.MaxValues, ChainDepth: sc.MaxChainDepth,
		Includes: sc.MaxIncludes, Included: sc.MaxIncluded, IncludeRounds: sc.IncludeRounds, PageBytes: sc.MaxPageBytes}
	return l, timeout, sc.ConcurrentPerClient, nil
}

// clientIDsSafe reports whether clients may choose resource ids
// (update-as-create): only when at most one tenant can write, since ids
// are one namespace for all tenants and a client-chosen id's answer would
// tell one tenant whether another holds it. Development mode is one
// tenant; an external issuer without a tenants list may name any.
func clientIDsSafe(fc *fileConfig) bool {
	if !authConfigured(fc) {
		return true
	}
	tenants, any := authTenants(fc)
	return !any && len(tenants) <= 1
}

// authTenants are the tenants the registered clients and external issuers
// of fc act for (every tenant, search.AllTenants, left out); any: an
// external issuer without a tenants list, whose tokens may name any tenant.
func authTenants(fc *fileConfig) (tenants map[string]bool, any bool) {
	tenants = map[string]bool{}
	if fc.Auth == nil {
		return tenants, false
	}
	for _, c := range fc.Auth.Clients {
		if c.Tenant != search.AllTenants {
			tenants[c.Tenant] = true
		}
	}
	for _, x := range fc.Auth.External {
		any = any || len(x.Tenants) == 0
		for _, t := range x.Tenants {
			tenants[t] = true
		}
	}
	return tenants, any
}

// readConfig reads and strictly decodes the --config file ("" gives an
// empty configuration).
func readConfig(configFile string) (*fileConfig, error) {
	var fc fileConfig
	if configFile == "" {
		return &fc, nil
	}
	b, err := os.ReadFile(configFile)
	if err != nil {
		return nil, fmt.Errorf("--config: %v", err)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&fc); err != nil {
		// Where in the file: a syntax error's or a wrong type's offset,
		// an unknown field's first key of that name. Said without the
		// line's text: it may hold a secret.
		off := int64(-1)
		var se *json.SyntaxError
		var te *json.UnmarshalTypeError
		switch {
		case errors.Is(err, io.EOF) && len(bytes.TrimSpace(b)) == 0:
			return nil, fmt.Errorf("--config %s: the file is empty: it must hold one JSON object ({} for the defaults)", configFile)
		case errors.Is(err, io.ErrUnexpectedEOF):
			// (an operator's review: "unexpected EOF", without where)
			line, col := lineCol(b, int64(len(b)))
			return nil, fmt.Errorf("--config %s: line %d, column %d: the file ends before its JSON does (a closing } or ] "+
				"or a quote is missing)", configFile, line, col)
		case errors.As(err, &se):
			off = se.Offset
		case errors.As(err, &te):
			off = te.Offset
		default:
			if name, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
				if re, rerr := regexp.Compile(regexp.QuoteMeta(name) + `\s*:`); rerr == nil {
					if loc := re.FindIndex(b); loc != nil {
						off = int64(loc[0])
					}
				}
			}
		}
		if off < 0 {
			return nil, fmt.Errorf("--config %s: %v", configFile, err)
		}
		line, col := lineCol(b, off)
		return nil, fmt.Errorf("--config %s: line %d, column %d: %v", configFile, line, col, err)
	}
	dir, err := filepath.Abs(filepath.Dir(configFile))
	if err != nil {
		return nil, fmt.Errorf("--config: %v", err)
	}
	fc.resolvePaths(dir)
	fc.file = configFile
	return &fc, nil
}

// in names the configuration file in a message: "--config FILE".
func (fc *fileConfig) in() string {
	if fc == nil || fc.file == "" {
		return "--config"
	}
	return "--config " + fc.file
}

// resolvePaths makes the file paths the configuration names (jwksFile,
// privateKeyFile, tls.caFile, certFile, keyFile) absolute: a relative one
// names a file in dir, the configuration file's directory, wherever the
// gateway was started (docs/configuration.md), as a configuration kept
// beside its keys expects.
func (fc *fileConfig) resolvePaths(dir string) {
	abs := func(p *string) {
		if *p != "" && !filepath.IsAbs(*p) {
			*p = filepath.Join(dir, *p)
		}
	}
	if fc.Auth != nil {
		for i := range fc.Auth.Clients {
			abs(&fc.Auth.Clients[i].JWKSFile)
		}
	}
	for i := range fc.Destinations {
		d := &fc.Destinations[i]
		abs(&d.Auth.PrivateKeyFile)
		abs(&d.TLS.CAFile)
		abs(&d.TLS.CertFile)
		abs(&d.TLS.KeyFile)
	}
}

// authConfigured reports whether the file registers any client or issuer.
func authConfigured(fc *fileConfig) bool {
	return fc.Auth != nil && (len(fc.Auth.Clients) > 0 || len(fc.Auth.External) > 0)
}

// authServer builds the authentication server from the configuration, or
// returns nil for development mode (no clients, no external issuers). The
// access-token signing secret comes from GATEWAY_TOKEN_SECRET (base64, at
// least 32 bytes; the same on every replica) when set.
func authServer(fc *fileConfig, getenv func(string) string, replay *replayCache) (*auth.Server, error) {
	if !authConfigured(fc) {
		return nil, nil
	}
	cfg := *fc.Auth
	// Assertion jti values are remembered in the database: every replica
	// refuses a replay any of them has seen. The database is set in replay
	// once it is open (serve checks the configuration first).
	cfg.Replay = replay
	if v := getenv("GATEWAY_TOKEN_SECRET"); v != "" {
		secret, err := base64.StdEncoding.DecodeString(v)
		if err != nil {
			return nil, errors.New("GATEWAY_TOKEN_SECRET must be base64")
		}
		if len(secret) < auth.MinSigningSecret {
			return nil, fmt.Errorf("GATEWAY_TOKEN_SECRET: %d bytes after base64 decoding, want at least %d: generate one with "+
				"'head -c 32 /dev/urandom | base64' and give every replica the same", len(secret), auth.MinSigningSecret)
		}
		cfg.SigningSecret = secret
	}
	s, err := auth.NewServer(cfg)
	if err != nil {
		return nil, fmt.Errorf("%s: auth: %v", fc.in(), err)
	}
	return s, nil
}

type destinationConfig struct {
	Name    string `json:"name"`
	BaseURL string `json:"baseUrl"`
	Auth    struct {
		Type           string `json:"type"`
		Token          string `json:"token"`
		TokenURL       string `json:"tokenUrl"`
		ClientID       string `json:"clientId"`
		Scope          string `json:"scope"`
		PrivateKeyFile string `json:"privateKeyFile"`
		KeyID          string `json:"keyId"`
		Alg            string `json:"alg"`
	} `json:"auth"`
	Filter struct {
		Kinds   []string `json:"kinds"`
		Sources []string `json:"sources"`
		Tenants []string `json:"tenants"`
	} `json:"filter"`
	Mode        string  `json:"mode"`
	MaxEntries  int     `json:"maxEntries"`
	Timeout     string  `json:"timeout"`
	RateLimit   float64 `json:"rateLimit"`
	Burst       int     `json:"burst"`
	Concurrency int     `json:"concurrency"`
	TLS         struct {
		CAFile   string `json:"caFile"`
		CertFile string `json:"certFile"`
		KeyFile  string `json:"keyFile"`
	} `json:"tls"`
	MRNSystems []string `json:"mrnSystems"`
}

// destinations reads the delivery destinations from --config and/or
// --ehr-url (one destination named "ehr" with the defaults); ehrURLFrom
// names where ehrURL came from in an error (the flag, or the environment
// variable GATEWAY_EHR_URL when the flag was not given).
func destinations(fc *fileConfig, ehrURL, ehrURLFrom string, getenv func(string) string) ([]delivery.Destination, error) {
	var from []string
	var dests []delivery.Destination
	for i, dc := range fc.Destinations {
		where := fmt.Sprintf("%s: destinations[%d]", fc.in(), i)
		d, err := dc.destination(getenv)
		if err != nil {
			return nil, fmt.Errorf("%s: %v", where, err)
		}
		dests, from = append(dests, d), append(from, where)
	}
	if ehrURL != "" {
		dests, from = append(dests, delivery.Destination{Name: "ehr", BaseURL: ehrURL}), append(from, ehrURLFrom)
	}
	seen := map[string]bool{}
	for i, d := range dests {
		// Building the client checks what the worker will need (the base
		// URL, TLS files, a SMART key) now, before serve opens the
		// database: a refused configuration writes nothing.
		if _, err := delivery.NewClient(d, delivery.ClientOptions{}); err != nil {
			return nil, fmt.Errorf("%s: %v", from[i], err) // it names the destination
		}
		if seen[d.Name] {
			return nil, fmt.Errorf("%s: destination name %q is used twice", from[i], d.Name)
		}
		seen[d.Name] = true
	}
	return dests, nil
}

// destination converts one configured destination. A token may be given
// as "env:NAME" to keep the secret out of the file.
func (dc destinationConfig) destination(getenv func(string) string) (delivery.Destination, error) {
	d := delivery.Destination{
		Name: dc.Name, BaseURL: dc.BaseURL, Mode: delivery.Mode(dc.Mode), MaxEntries: dc.MaxEntries,
		RateLimit: dc.RateLimit, Burst: dc.Burst, Concurrency: dc.Concurrency,
		Filter:     delivery.Filter{Kinds: dc.Filter.Kinds, Sources: dc.Filter.Sources, Tenants: dc.Filter.Tenants},
		TLS:        delivery.TLS{CAFile: dc.TLS.CAFile, CertFile: dc.TLS.CertFile, KeyFile: dc.TLS.KeyFile},
		MRNSystems: dc.MRNSystems,
	}
	for i, k := range dc.Filter.Kinds {
		if !knownKind(k) {
			return d, fmt.Errorf("filter.kinds[%d]: %q is not a record kind, so it would never match: the kinds are %s", i, k, kindList())
		}
	}
	if dc.Timeout != "" {
		t, err := time.ParseDuration(dc.Timeout)
		if err != nil {
			return d, fmt.Errorf("timeout: %v", err)
		}
		d.Timeout = t
	}
	token := dc.Auth.Token
	if name, ok := strings.CutPrefix(token, "env:"); ok {
		if token = getenv(name); token == "" {
			return d, fmt.Errorf("auth.token: environment variable %s is empty", name)
		}
	}
	d.Auth = delivery.Auth{Type: delivery.AuthType(dc.Auth.Type), Token: token, SMART: delivery.SMART{
		TokenURL: dc.Auth.TokenURL, ClientID: dc.Auth.ClientID, Scope: dc.Auth.Scope,
		PrivateKeyFile: dc.Auth.PrivateKeyFile, KeyID: dc.Auth.KeyID, Alg: dc.Auth.Alg,
	}}
	if d.Auth.Type == "" {
		d.Auth.Type = delivery.AuthNone
	}
	return d, nil
}

// replayCache adapts the store's one-time values to the token endpoint's
// jti replay cache, so that every replica sharing the database refuses an
// assertion any of them has seen.
type replayCache struct{ nonces store.Nonces }

// Seen implements auth.ReplayCache.
func (r replayCache) Seen(ctx context.Context, key string, exp time.Time) (bool, error) {
	first, err := r.nonces.UseNonce(ctx, key, exp)
	return !first, err
}

// unmatchedFilterTenants lists, as "destination: tenant", the tenants of
// the destinations' filter.tenants that no record can be written for by
// the configured clients: no client belongs to them and no external issuer
// names them (an issuer that names none may name any: then none is
// listed); in development mode every request is the default tenant's.
// Such a destination receives nothing of that tenant (most likely a
// misspelt tenant, so the real clinic's records go nowhere); records an
// import stored under the tenant are the exception, hence a warning.
func unmatchedFilterTenants(fc *fileConfig) []string {
	tenants, any := authTenants(fc)
	if any {
		return nil
	}
	if fc.Auth == nil {
		tenants[""] = true
	}
	var out []string
	for _, dc := range fc.Destinations {
		for _, t := range dc.Filter.Tenants {
			if !tenants[t] {
				out = append(out, fmt.Sprintf("%s: %q", dc.Name, t))
			}
		}
	}
	return out
}

// lineCol is the line and column (from 1, in bytes) of offset off of b.
func lineCol(b []byte, off int64) (line, col int) {
	off = min(max(off, 0), int64(len(b)))
	before := b[:off]
	line = bytes.Count(before, []byte("\n")) + 1
	col = int(off) - (bytes.LastIndexByte(before, '\n') + 1) + 1
	return line, col
}
