package delivery

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/search"
	"github.com/ketamine-gateway/ketamine-gateway/mapping"
)

// Mode is how Bundles are sent to a destination.
type Mode string

// The delivery modes, from the strongest to the weakest. A destination's
// effective mode is its configured one, lowered by what its
// CapabilityStatement supports.
const (
	// ModeTransaction POSTs each item's Bundle as it is, as one atomic
	// transaction (the default).
	ModeTransaction Mode = "transaction"
	// ModeBatch POSTs batch Bundles of at most MaxEntries entries, in
	// dependency order, with the urn:uuid references resolved.
	ModeBatch Mode = "batch"
	// ModeSingle sends one REST request per entry, in dependency order,
	// with the urn:uuid references resolved.
	ModeSingle Mode = "single"
)

// AuthType is how the gateway authenticates to a destination.
type AuthType string

// The authentication types.
const (
	// AuthNone sends no credentials (mutual TLS can still be configured).
	AuthNone AuthType = "none"
	// AuthBearer sends a static bearer token.
	AuthBearer AuthType = "bearer"
	// AuthSMARTBackend uses SMART Backend Services: a client_credentials
	// grant authenticated with a signed JWT (private_key_jwt).
	AuthSMARTBackend AuthType = "smart-backend"
)

// Destination is one EHR the gateway delivers to. The zero values of the
// optional fields are replaced by the documented defaults.
type Destination struct {
	// Name identifies the destination (store.OutboxItem.Destination);
	// required.
	Name string
	// BaseURL is the FHIR base, e.g. https://ehr.example.org/fhir; https,
	// or http to a loopback host only; no user info, query or fragment.
	BaseURL string
	// Auth is how to authenticate; zero means AuthNone.
	Auth Auth
	// Filter selects the records this destination receives.
	Filter Filter
	// Mode is the strongest mode to use; zero means ModeTransaction.
	Mode Mode
	// MaxEntries is the largest Bundle the EHR takes (0: no limit). In
	// batch mode larger Bundles are split; a transaction Bundle over the
	// limit is sent in batch mode instead.
	MaxEntries int
	// Timeout bounds each HTTP request (default 30s).
	Timeout time.Duration
	// RateLimit caps requests per second (0: no limit), with bursts of
	// Burst requests (default: RateLimit rounded up, at least 1).
	RateLimit float64
	Burst     int
	// Concurrency is the number of items sent at once (default 4): at most
	// one request per item is in flight.
	Concurrency int
	// TLS configures outbound TLS. Certificates are always verified.
	TLS TLS
	// MRNSystems are the identifier systems of the MRNs the EHR knows as
	// its own: the Patient it receives carries, in its identifiers and in
	// its ifNoneExist, only MRNs of these systems besides the clinic
	// identifier, never another hospital's. nil (the default): every MRN
	// the gateway holds for the patient; empty: none.
	MRNSystems []string
}

// Auth configures authentication to a destination.
type Auth struct {
	// Type is none (the default), bearer or smart-backend.
	Type AuthType
	// Token is the static bearer token (Type bearer). Never logged.
	Token string
	// SMART configures SMART Backend Services (Type smart-backend).
	SMART SMART
}

// SMART configures SMART Backend Services authorization
// (hl7.org/fhir/smart-app-launch/backend-services.html).
type SMART struct {
	// TokenURL is the token endpoint; empty means the token_endpoint of
	// BaseURL/.well-known/smart-configuration.
	TokenURL string
	// ClientID is the registered client id (the JWT's iss and sub).
	ClientID string
	// Scope is requested with every token, e.g. "system/*.write".
	Scope string
	// PrivateKeyPEM or PrivateKeyFile (exactly one) is the signing key:
	// PKCS#8, PKCS#1 (RSA) or SEC 1 (EC), unencrypted. Never logged.
	PrivateKeyPEM  string
	PrivateKeyFile string
	// KeyID is the JWT kid header: the key's id in the client's JWKS.
	KeyID string
	// Alg is RS384 or ES384 (P-384 key); empty means by the key's type.
	Alg string
}

// TLS configures outbound TLS to a destination.
type TLS struct {
	// CAFile is a PEM bundle of extra trusted roots (added to the
	// system's).
	CAFile string
	// CertFile and KeyFile are the client certificate for mutual TLS.
	CertFile, KeyFile string
}

// Filter selects records by kind, source and tenant; an empty list
// accepts all.
type Filter struct {
	Kinds   []string
	Sources []string
	// Tenants are the tenants (clinics) whose records go to the
	// destination. With several tenants, set it: a destination without it
	// receives every tenant's records.
	Tenants []string
}

// AcceptsTenant reports whether records of tenant go to d.
func (d Destination) AcceptsTenant(tenant string) bool {
	return len(d.Filter.Tenants) == 0 || slices.Contains(d.Filter.Tenants, tenant)
}

// Accepts reports whether a record of kind from source goes to d. The
// storage side calls it when enqueueing.
func (d Destination) Accepts(kind, source string) bool {
	return d.acceptsKind(kind) && d.acceptsSource(source)
}

func (d Destination) acceptsKind(kind string) bool {
	return len(d.Filter.Kinds) == 0 || slices.Contains(d.Filter.Kinds, kind)
}

func (d Destination) acceptsSource(source string) bool {
	return len(d.Filter.Sources) == 0 || slices.Contains(d.Filter.Sources, source)
}

// Defaults.
const (
	defaultTimeout     = 30 * time.Second
	defaultConcurrency = 4
)

// withDefaults returns d with its zero optional fields set.
func (d Destination) withDefaults() Destination {
	if d.Mode == "" {
		d.Mode = ModeTransaction
	}
	if d.Auth.Type == "" {
		d.Auth.Type = AuthNone
	}
	if d.Timeout == 0 {
		d.Timeout = defaultTimeout
	}
	if d.Concurrency == 0 {
		d.Concurrency = defaultConcurrency
	}
	if d.RateLimit > 0 && d.Burst == 0 {
		d.Burst = max(1, int(d.RateLimit+0.999))
	}
	d.BaseURL = strings.TrimRight(d.BaseURL, "/")
	return d
}

// Validate checks d and returns every problem found, joined. It reads no
// files (NewClient does).
func (d Destination) Validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if strings.TrimSpace(d.Name) == "" {
		bad("name is required")
	}
	if err := checkEndpointURL(d.BaseURL); err != nil {
		bad("base URL: %v", err)
	}
	switch d.Mode {
	case "", ModeTransaction, ModeBatch, ModeSingle:
	default:
		bad("mode %q: want transaction, batch or single", d.Mode)
	}
	if d.MaxEntries < 0 {
		bad("max entries %d: must not be negative", d.MaxEntries)
	}
	if d.Timeout < 0 {
		bad("timeout %v: must not be negative", d.Timeout)
	}
	if d.RateLimit < 0 || d.Burst < 0 {
		bad("rate limit %v/s, burst %d: must not be negative", d.RateLimit, d.Burst)
	}
	if d.Concurrency < 0 {
		bad("concurrency %d: must not be negative", d.Concurrency)
	}
	if (d.TLS.CertFile == "") != (d.TLS.KeyFile == "") {
		bad("tls: cert file and key file go together")
	}
	for _, k := range d.Filter.Kinds {
		if strings.TrimSpace(k) == "" {
			bad("filter: empty kind")
		}
	}
	for _, s := range d.Filter.Sources {
		if strings.TrimSpace(s) == "" {
			bad("filter: empty source")
		}
	}
	for _, s := range d.MRNSystems {
		if strings.TrimSpace(s) == "" {
			bad("mrn systems: empty system")
		}
	}
	errs = append(errs, d.Auth.validate()...)
	if len(errs) == 0 {
		return nil
	}
	name := d.Name
	if name == "" {
		name = "(unnamed)"
	}
	return fmt.Errorf("destination %q: %w", name, errors.Join(errs...))
}

func (a Auth) validate() []error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf("auth: "+format, args...)) }
	switch a.Type {
	case "", AuthNone:
		if a.Token != "" {
			bad("a token is set but the type is none")
		}
	case AuthBearer:
		if a.Token == "" {
			bad("bearer needs a token")
		} else if strings.ContainsAny(a.Token, " \t\r\n") {
			bad("the bearer token contains white space")
		}
	case AuthSMARTBackend:
		s := a.SMART
		if s.ClientID == "" {
			bad("smart-backend needs a client id")
		}
		if s.Scope == "" {
			bad("smart-backend needs a scope (e.g. system/*.write)")
		}
		if (s.PrivateKeyPEM == "") == (s.PrivateKeyFile == "") {
			bad("smart-backend needs exactly one of private key PEM and private key file")
		}
		if s.KeyID == "" {
			bad("smart-backend needs a key id (the JWT kid)")
		}
		switch s.Alg {
		case "", algRS384, algES384:
		default:
			bad("smart-backend alg %q: want RS384 or ES384", s.Alg)
		}
		if s.TokenURL != "" {
			if err := checkEndpointURL(s.TokenURL); err != nil {
				bad("token URL: %v", err)
			}
		}
	default:
		bad("type %q: want none, bearer or smart-backend", a.Type)
	}
	return errs
}

// checkEndpointURL accepts an absolute https URL, or http to a loopback
// host (a local proxy or a test server), without user info, query or
// fragment.
func checkEndpointURL(raw string) error {
	if raw == "" {
		return errors.New("required")
	}
	u, err := url.Parse(raw)
	if err != nil {
		return errors.New("not a URL")
	}
	switch {
	case u.Scheme != "https" && u.Scheme != "http":
		return fmt.Errorf("scheme %q: want https", u.Scheme)
	case u.Host == "":
		return errors.New("no host")
	case u.User != nil:
		return errors.New("credentials in the URL are not allowed")
	case u.RawQuery != "" || u.ForceQuery || u.Fragment != "":
		return errors.New("a query or fragment is not allowed")
	case u.Scheme == "http" && !isLoopback(u.Hostname()):
		return errors.New("http is only allowed to a loopback host: use https")
	}
	return nil
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// knowsMRNs reports whether every Patient of payload (a transaction
// Bundle) carries only MRNs of d.MRNSystems, in its MR-typed identifiers
// and in its request's ifNoneExist (read as the engine reads conditional
// criteria: its identifier tokens after the first, the clinic's); a
// payload without a Patient carries none. One that does not decode is
// left to the EHR to refuse; criteria that do not parse are not sent.
func (d *Destination) knowsMRNs(payload []byte) bool {
	var b struct {
		Entry []struct {
			Resource json.RawMessage `json:"resource"`
			Request  struct {
				IfNoneExist string `json:"ifNoneExist"`
			} `json:"request"`
		} `json:"entry"`
	}
	if json.Unmarshal(payload, &b) != nil {
		return true
	}
	for _, e := range b.Entry {
		var patient struct {
			ResourceType string           `json:"resourceType"`
			Identifier   []map[string]any `json:"identifier"`
		}
		if json.Unmarshal(e.Resource, &patient) != nil || patient.ResourceType != "Patient" {
			continue
		}
		for _, ident := range patient.Identifier {
			if s, _ := ident["system"].(string); mapping.IsMRN(ident) && !slices.Contains(d.MRNSystems, s) {
				return false
			}
		}
		if e.Request.IfNoneExist == "" {
			continue
		}
		q, err := search.ParseConditional("Patient", e.Request.IfNoneExist)
		if err != nil {
			return false
		}
		for _, cl := range q.Clauses {
			if cl.Param != "identifier" || len(cl.Values) == 0 {
				continue
			}
			for _, v := range cl.Values[1:] {
				if !slices.Contains(d.MRNSystems, v.System) {
					return false
				}
			}
		}
	}
	return true
}
