package gateway

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"
)

// CORS (Cross-Origin Resource Sharing) for the FHIR API, so that a browser
// app served from another origin (a SMART app) can call it. Off by default
// (Config.CORSOrigins empty): a browser then lets no other origin's script
// read an answer, which is the safe default for an API of PHI
// (docs/security.md). Only the origins configured are answered, by name
// ("*" answers any origin with *); credentials (cookies) are never
// allowed, since the API authenticates with a bearer token the app sends
// in Authorization, which a browser never adds by itself.

// corsMethods are the methods a preflight allows: those of the FHIR API.
const corsMethods = "GET, HEAD, POST, PUT, PATCH, DELETE"

// corsRequestHeaders are the request headers a preflight allows when it
// names none (Access-Control-Request-Headers): those FHIR clients send. A
// preflight that names headers is allowed those (client libraries add
// their own, such as X-Medplum): no header opens anything, since
// credentials are never allowed and every request is still
// authenticated.
const corsRequestHeaders = "Authorization, Content-Type, Accept, Prefer, If-Match, If-None-Match, If-None-Exist, " +
	"If-Modified-Since, If-Unmodified-Since, X-Request-Id"

// corsExposedHeaders are the answer's headers a script may read besides
// the safelisted ones (Content-Type, ...).
const corsExposedHeaders = "Location, ETag, Last-Modified, Content-Location, Retry-After, X-Request-Id"

// corsMaxAge is how long (seconds) a browser may keep a preflight's answer.
const corsMaxAge = "600"

// cors is the parsed Config.CORSOrigins.
type cors struct {
	origins map[string]bool
	any     bool // "*"
}

// CheckCORSOrigins reports whether each origin is one a browser sends in
// Origin: scheme://host[:port] with scheme http or https, and nothing
// else (no path, not even "/", no user), or "*" for any. Returns an error
// naming the first that is not.
func CheckCORSOrigins(origins []string) error {
	_, err := newCORS(origins)
	return err
}

func newCORS(origins []string) (cors, error) {
	c := cors{origins: map[string]bool{}}
	for _, o := range origins {
		if o == "*" {
			c.any = true
			continue
		}
		u, err := url.Parse(o)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil ||
			u.Path != "" || u.RawQuery != "" || u.Fragment != "" || o != u.Scheme+"://"+u.Host {
			return cors{}, fmt.Errorf("CORS origin %q is not scheme://host[:port] (http or https, no path, not even /) or *", o)
		}
		// A browser leaves the scheme's default port out of Origin: an
		// origin naming it would never match.
		if p := u.Port(); (u.Scheme == "http" && p == "80") || (u.Scheme == "https" && p == "443") {
			return cors{}, fmt.Errorf("CORS origin %q names its scheme's default port, which a browser leaves out of Origin: "+
				"write it without the port", o)
		}
		c.origins[strings.ToLower(o)] = true
	}
	return c, nil
}

// enabled reports whether any origin is allowed.
func (c cors) enabled() bool { return c.any || len(c.origins) > 0 }

// allowed returns the Access-Control-Allow-Origin value for origin ("" when
// it is not allowed).
func (c cors) allowed(origin string) string {
	switch {
	case origin == "":
		return ""
	case c.any:
		return "*"
	case c.origins[strings.ToLower(origin)]:
		return origin
	}
	return ""
}

// corsPath reports whether a path is one CORS opens: the FHIR API and the
// SMART discovery document.
func corsPath(p string) bool {
	return p == "/fhir" || strings.HasPrefix(p, "/fhir/") || p == "/.well-known/smart-configuration"
}

// handle adds the CORS headers of a request to the FHIR API from an
// allowed origin, and answers its preflight (an OPTIONS with
// Access-Control-Request-Method) itself, 204, before authentication: a
// preflight carries no credentials and asks for no data. It reports
// whether it answered. A request from an origin not allowed is served as
// without CORS (no Access-Control header: the browser withholds the
// answer from the script).
func (c cors) handle(w http.ResponseWriter, r *http.Request) bool {
	if !c.enabled() || !corsPath(r.URL.Path) {
		return false
	}
	h := w.Header()
	h.Add("Vary", "Origin")
	allow := c.allowed(r.Header.Get("Origin"))
	if allow == "" {
		return false
	}
	h.Set("Access-Control-Allow-Origin", allow)
	if r.Method == http.MethodOptions && r.Header.Get("Access-Control-Request-Method") != "" {
		h.Add("Vary", "Access-Control-Request-Method")
		h.Add("Vary", "Access-Control-Request-Headers")
		h.Set("Access-Control-Allow-Methods", corsMethods)
		allowHeaders := r.Header.Get("Access-Control-Request-Headers")
		if allowHeaders == "" {
			allowHeaders = corsRequestHeaders
		}
		h.Set("Access-Control-Allow-Headers", allowHeaders)
		h.Set("Access-Control-Max-Age", corsMaxAge)
		w.WriteHeader(http.StatusNoContent)
		return true
	}
	h.Set("Access-Control-Expose-Headers", corsExposedHeaders)
	return false
}
