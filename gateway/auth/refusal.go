package auth

import (
	"strconv"
	"strings"
)

// Why a requested scope grants nothing (refusal.reason; the log's and the
// audit record's words).
const (
	refusedGranular      = "granular"       // system/<Type>.<perms>?<params> of a form the gateway does not enforce
	refusedNotRegistered = "not-registered" // the client is not registered for it
	refusedLaunchContext = "launch-context" // patient/ or user/: needs a launch, Backend Services has none
	refusedUnrecognised  = "unrecognised"   // no form the gateway grants
)

// maxExplained bounds the scopes an error_description explains.
const maxExplained = 5

// scopeForms ends an error_description that found a scope of no form the
// gateway grants: the forms it does grant.
const scopeForms = "; this server grants system/<Type or *>.<c r u d s, in that order>, system/<Type or *>.read, .write " +
	"or .*, system/<Type>.<c r u d s>?<token parameter>=<system|code>[&...], gateway/ingest, gateway/operator and gateway/auditor"

// refusal is one requested scope that grants nothing, and why.
type refusal struct {
	n      int    // its position in the request, from 1
	name   string // how it may be named: the scope if of the gateway's grammar, a granular scope's base with "?..."; "" otherwise
	base   string // a granular scope's base: the scope without its restriction
	reason string
	// instead is, for a granular scope, what its base gets this client
	// ("" if nothing).
	instead Scopes
	// why is, for a granular scope, why its restriction is not of the
	// form the gateway enforces (errGranular: no value of it).
	why string
}

// refusals returns the requested scopes (the scope parameter as sent)
// that grant nothing against the client's allowed scopes, each once, in
// the order sent. A granular scope that granted covers without its
// restriction (asked for with system/Observation.rs, or system/*.rs) is
// not one: nothing less than it was granted. Narrowed scopes (system/*.cruds
// granted as system/*.rs) are not either: the token response's scope says
// what they got.
func refusals(requested string, allowed, granted Scopes) []refusal {
	var out []refusal
	seen := map[string]bool{}
	for i, f := range strings.Fields(requested) {
		if seen[f] {
			continue
		}
		seen[f] = true
		r := refusal{n: i + 1}
		sc, err := parseAny(f)
		if err == nil {
			if !grant(Scopes{list: []scope{sc}}, allowed).empty() {
				continue
			}
			r.name, r.reason = sc.shown(), refusedNotRegistered
			out = append(out, r)
			continue
		}
		base, _, granular := strings.Cut(f, "?")
		if sc, ok := parseScope(base); granular && ok && sc.resourceType != "" {
			r.name, r.base, r.reason = base+"?...", base, refusedGranular
			r.why = err.Error() // parseGranular's reason: f holds a "?"
			r.instead = grant(Scopes{list: []scope{sc}}, allowed)
			if covered(granted, r.instead) && !r.instead.empty() {
				continue
			}
			out = append(out, r)
			continue
		}
		r.reason = refusedUnrecognised
		for _, ctx := range []string{"patient/", "user/"} {
			if strings.HasPrefix(f, ctx) {
				r.name, r.reason = ctx+"...", refusedLaunchContext
			}
		}
		out = append(out, r)
	}
	return out
}

// covered reports whether have grants everything want does.
func covered(have, want Scopes) bool {
	for _, sc := range want.list {
		if !have.Has(sc.text) {
			return false
		}
	}
	return true
}

// short names r for the log and the audit record: "system/Patient.cud
// (not-registered)", "scope 3 (unrecognised)".
func (r refusal) short() string {
	name := r.name
	if name == "" || r.reason == refusedLaunchContext {
		name = "scope " + strconv.Itoa(r.n)
	}
	return name + " (" + r.reason + ")"
}

// explain is the sentence of an error_description saying why r grants
// nothing. It names only what the gateway's grammar allows (scopes of
// letters, "/", "." and "*"), never a granular scope's restriction's
// values, which may name a patient (only the parameter names the gateway
// knows), nor a string of another form.
func (r refusal) explain() string {
	switch r.reason {
	case refusedGranular:
		s := r.name + " is restricted by search parameters (?) in a form this server does not enforce (" + r.why + ")"
		switch {
		case r.instead.empty():
			return s + ", and this client is not registered for " + r.base + " either"
		case r.instead.String() == r.base:
			return s + ": ask for a restriction of token parameters, or the unrestricted " + r.base
		}
		if r.instead.restricted() {
			return s + ": ask for a restriction of token parameters, or one of the restricted scopes this client is " +
				"registered for: " + r.instead.named()
		}
		return s + ": ask for a restriction of token parameters, or unrestricted scopes: this client can get " +
			r.instead.Shown()
	case refusedNotRegistered:
		return "this client is not registered for " + r.name
	case refusedLaunchContext:
		return "scope " + strconv.Itoa(r.n) + " (" + r.name + ") needs a launch context, which SMART Backend Services " +
			"does not have: ask for system/ scopes"
	}
	return "scope " + strconv.Itoa(r.n) + " is not a scope this server grants"
}

// refusedDescription is the invalid_scope error_description when nothing
// requested can be granted: why, scope by scope (at most maxExplained).
func refusedDescription(rs []refusal) string {
	var b strings.Builder
	b.WriteString("none of the requested scopes can be granted to this client")
	unknown := false
	for i, r := range rs {
		unknown = unknown || r.reason == refusedUnrecognised
		if i == maxExplained {
			b.WriteString("; and " + strconv.Itoa(len(rs)-maxExplained) + " more")
			break
		}
		if i == 0 {
			b.WriteString(": ")
		} else {
			b.WriteString("; ")
		}
		b.WriteString(r.explain())
	}
	if unknown {
		b.WriteString(scopeForms)
	}
	return b.String()
}
