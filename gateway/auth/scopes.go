package auth

import (
	"errors"
	"strings"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/search"
)

// Gateway-specific scopes, granted like any other scope but outside FHIR's
// resource model.
const (
	// ScopeIngest allows native record ingest.
	ScopeIngest = "gateway/ingest"
	// ScopeOperator allows the operator API: deliveries admin (reads and
	// writes), audit chain verification and lineage.
	ScopeOperator = "gateway/operator"
	// ScopeAuditor marks a person of the console or an API client that
	// follows the audit trail (AuditEvents, lineage, the audit chain,
	// delivery listings) without acting on deliveries: the read-only
	// admin API; the console grants it with system/*.rs (docs/console.md).
	ScopeAuditor = "gateway/auditor"
)

// Permission bits of a SMART v2 resource scope, in the spec's order c r u d s.
const (
	permCreate uint8 = 1 << iota
	permRead
	permUpdate
	permDelete
	permSearch

	permAll     = permCreate | permRead | permUpdate | permDelete | permSearch
	permLetters = "cruds"
)

// scope is one parsed scope: a gateway scope (resourceType == "") or a
// system resource scope.
type scope struct {
	text         string // as written, or the v2 form for a derived scope
	resourceType string // a FHIR resource type or "*"; "" for gateway scopes
	perms        uint8
	// query is a granular scope's restriction as written (after "?"; ""
	// for an unrestricted scope), key its canonical form (search.Key:
	// equal for equal restrictions) and clauses its token clauses
	// (granular.go).
	query   string
	key     string
	clauses []search.Clause
}

// Scopes is a parsed set of SMART system scopes and gateway scopes. The zero
// value is the empty set, which allows nothing. Scopes are immutable once
// parsed and safe for concurrent use.
type Scopes struct {
	list []scope
}

// ParseScopes parses a space-separated scope string. It understands SMART v2
// system scopes (system/<Type|*>.<non-empty subset of "cruds", in that order>),
// SMART v1 system scopes (system/<Type|*>.read|write|*, where read means rs,
// write means cud and * means cruds) and the gateway scopes ScopeIngest,
// ScopeOperator and ScopeAuditor, and SMART v2 granular system scopes of
// the grammar the gateway enforces (granular.go:
// system/Observation.rs?category=system|code). Anything else (patient/ and
// user/ scopes, openid, granular scopes of another form, typos) is ignored:
// ParseScopes never fails, and an ignored scope grants nothing (the token
// endpoint tells the client why: refusals). Duplicates are dropped.
func ParseScopes(s string) Scopes {
	var out Scopes
	for _, f := range strings.Fields(s) {
		if sc, err := parseAny(f); err == nil {
			out.add(sc)
		}
	}
	return out
}

// errScopeUnknown is parseAny's error for a scope the gateway does not
// know (not granular, not one parseScope reads).
var errScopeUnknown = errors.New("not a scope the gateway grants")

// parseAny parses one scope of any form the gateway grants, granular or
// not. The error of a granular one says why it is refused (parseGranular,
// never quoting the restriction); of another, errScopeUnknown.
func parseAny(s string) (scope, error) {
	if strings.Contains(s, "?") {
		return parseGranular(s)
	}
	if sc, ok := parseScope(s); ok {
		return sc, nil
	}
	return scope{}, errScopeUnknown
}

func parseScope(s string) (scope, bool) {
	if s == ScopeIngest || s == ScopeOperator || s == ScopeAuditor {
		return scope{text: s}, true
	}
	rest, ok := strings.CutPrefix(s, "system/")
	if !ok {
		return scope{}, false
	}
	typ, p, ok := strings.Cut(rest, ".")
	if !ok || !validResourceType(typ) {
		return scope{}, false
	}
	perms, ok := parsePerms(p)
	if !ok {
		return scope{}, false
	}
	return scope{text: s, resourceType: typ, perms: perms}, true
}

func parsePerms(s string) (uint8, bool) {
	switch s {
	case "read":
		return permRead | permSearch, true
	case "write":
		return permCreate | permUpdate | permDelete, true
	case "*":
		return permAll, true
	}
	if s == "" || len(s) > len(permLetters) {
		return 0, false
	}
	var perms uint8
	last := -1
	for i := 0; i < len(s); i++ {
		idx := strings.IndexByte(permLetters, s[i])
		if idx <= last { // unknown letter (-1), repeated, or out of order
			return 0, false
		}
		last = idx
		perms |= 1 << idx
	}
	return perms, true
}

// validResourceType reports whether s is "*" or shaped like a FHIR resource
// type name.
func validResourceType(s string) bool {
	if s == "*" {
		return true
	}
	if s == "" || len(s) > 64 || s[0] < 'A' || s[0] > 'Z' {
		return false
	}
	for i := 1; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z') {
			return false
		}
	}
	return true
}

func permBit(perm byte) uint8 {
	idx := strings.IndexByte(permLetters, perm)
	if idx < 0 {
		return 0
	}
	return 1 << idx
}

func v2Text(resourceType string, perms uint8) string {
	return v2TextQuery(resourceType, perms, "")
}

// v2TextQuery is v2Text with a granular scope's restriction query ("" for
// none).
func v2TextQuery(resourceType string, perms uint8, query string) string {
	var b strings.Builder
	b.WriteString("system/")
	b.WriteString(resourceType)
	b.WriteByte('.')
	for i := 0; i < len(permLetters); i++ {
		if perms&(1<<i) != 0 {
			b.WriteByte(permLetters[i])
		}
	}
	if query != "" {
		b.WriteByte('?')
		b.WriteString(query)
	}
	return b.String()
}

// add appends sc unless an identical scope is already present.
func (s *Scopes) add(sc scope) {
	for _, x := range s.list {
		if x.resourceType == sc.resourceType && x.perms == sc.perms && x.key == sc.key &&
			(sc.resourceType != "" || x.text == sc.text) {
			return
		}
	}
	s.list = append(s.list, sc)
}

// Allows reports whether the scopes grant permission perm ('c', 'r', 'u',
// 'd' or 's') on resources of type resourceType. A system/*.x scope covers
// every type; asking about resourceType "*" (all types at once, as in a
// whole-system search) needs a system/* scope. An unknown perm or an empty
// resourceType is never allowed. A granular scope counts: Allows says
// that some resources of the type may be granted, and the caller then
// asks Restriction or Grants which.
func (s Scopes) Allows(resourceType string, perm byte) bool {
	bit := permBit(perm)
	if bit == 0 || resourceType == "" {
		return false
	}
	for _, sc := range s.list {
		if sc.resourceType != "" && (sc.resourceType == "*" || sc.resourceType == resourceType) && sc.perms&bit != 0 {
			return true
		}
	}
	return false
}

// Has reports whether the scopes cover the single scope name: for a gateway
// scope, whether it was granted; for a system resource scope, whether every
// permission it names is granted for its type (possibly by several scopes
// together, or by a system/* scope). A granular scope is covered by the
// unrestricted scopes Has covers and by scopes of the same type with the
// same restriction (search.Key); a granular scope never covers an
// unrestricted one. An unrecognised name is never covered.
func (s Scopes) Has(name string) bool {
	want, err := parseAny(name)
	if err != nil {
		return false
	}
	if want.resourceType == "" {
		for _, sc := range s.list {
			if sc.resourceType == "" && sc.text == want.text {
				return true
			}
		}
		return false
	}
	var have uint8
	for _, sc := range s.list {
		if sc.resourceType == "*" || (sc.resourceType != "" && sc.resourceType == want.resourceType) {
			if sc.key == "" || sc.key == want.key {
				have |= sc.perms
			}
		}
	}
	return want.perms&^have == 0
}

// String returns the scopes space-separated, in the form they were written
// (derived scopes in SMART v2 form), suitable for a token response's scope.
func (s Scopes) String() string {
	parts := make([]string, len(s.list))
	for i, sc := range s.list {
		parts[i] = sc.text
	}
	return strings.Join(parts, " ")
}

// readOnly returns s with its resource scopes reduced to their read and
// search permissions (a scope left with none dropped), its gateway scopes
// as they are, and what it took away, in SMART v2 form
// (system/*.cruds gives system/*.rs, taking away system/*.cud).
func readOnly(s Scopes) (kept Scopes, removed []string) {
	const reads = permRead | permSearch
	for _, sc := range s.list {
		if sc.resourceType != "" && sc.perms&^reads != 0 {
			removed = append(removed, scope{text: v2TextQuery(sc.resourceType, sc.perms&^reads, sc.query), query: sc.query}.shown())
			if sc.perms&reads == 0 {
				continue
			}
			sc.text, sc.perms = v2TextQuery(sc.resourceType, sc.perms&reads, sc.query), sc.perms&reads
		}
		kept.add(sc)
	}
	return kept, removed
}

// empty reports whether the set grants nothing.
func (s Scopes) empty() bool { return len(s.list) == 0 }

// grant returns requested ∩ allowed: every gateway scope present in both, and
// for resource scopes the permissions both grant on the types both cover
// (system/*.rs requested against system/Observation.cruds allowed yields
// system/Observation.rs). The result is minimal: one scope per resource type
// with its permissions merged, types already covered by a granted
// system/* scope dropped. A granted scope keeps the requested text when it
// equals a requested scope exactly (so a v1 request gets a v1 answer).
//
// Granular scopes (granular.go): one requested is granted, as requested,
// where the client may have the same restriction or the unrestricted scope
// of its type; an unrestricted scope requested where the client may have
// only a granular one of the type grants that granular one (narrowed). A
// granular scope is merged with those of the same type and restriction,
// and dropped where unrestricted scopes granted cover its permissions.
func grant(requested, allowed Scopes) Scopes {
	var out Scopes
	var order []string
	perms := map[string]uint8{}
	type restricted struct{ typ, key string }
	var rorder []restricted
	rperms := map[restricted]uint8{}
	rscope := map[restricted]scope{}
	addRestricted := func(typ string, from scope, p uint8) {
		k := restricted{typ, from.key}
		if _, seen := rperms[k]; !seen {
			rorder, rscope[k] = append(rorder, k), from
		}
		rperms[k] |= p
	}
	for _, r := range requested.list {
		if r.resourceType == "" {
			if allowed.Has(r.text) {
				out.add(r)
			}
			continue
		}
		for _, a := range allowed.list {
			if a.resourceType == "" {
				continue
			}
			var typ string
			switch {
			case r.resourceType == a.resourceType, a.resourceType == "*":
				typ = r.resourceType
			case r.resourceType == "*":
				typ = a.resourceType
			default:
				continue
			}
			p := r.perms & a.perms
			if p == 0 {
				continue
			}
			switch {
			case r.query == "" && a.query == "":
				if _, seen := perms[typ]; !seen {
					order = append(order, typ)
				}
				perms[typ] |= p
			case a.query == "":
				addRestricted(typ, r, p) // narrowed as requested
			case r.query == "" || r.key == a.key:
				addRestricted(typ, a, p) // the client's own restriction
			case r.resourceType == a.resourceType && narrower(r, a):
				addRestricted(typ, r, p) // narrower than the client's, as requested
			}
		}
	}
	star := perms["*"]
	for _, typ := range order {
		p := perms[typ]
		if typ != "*" && p&^star == 0 {
			continue
		}
		text := v2Text(typ, p)
		for _, r := range requested.list {
			if r.resourceType == typ && r.perms == p && r.query == "" {
				text = r.text
				break
			}
		}
		out.add(scope{text: text, resourceType: typ, perms: p})
	}
	for _, k := range rorder {
		p := rperms[k] &^ (perms[k.typ] | star)
		if p == 0 {
			continue // unrestricted scopes granted cover it
		}
		from := rscope[k]
		text := v2TextQuery(k.typ, p, from.query)
		for _, r := range requested.list {
			if r.resourceType == k.typ && r.key == k.key && r.perms == p {
				text = r.text
				break
			}
		}
		out.add(scope{text: text, resourceType: k.typ, perms: p, query: from.query, key: from.key, clauses: from.clauses})
	}
	return out
}

// shown is how the log and the audit's refusals name sc: as written, a
// granular scope without its restriction (which may name a patient).
func (sc scope) shown() string {
	if sc.query == "" {
		return sc.text
	}
	base, _, _ := strings.Cut(sc.text, "?")
	return base + "?..."
}

// Shown returns the scopes space-separated as the log names them: a
// granular scope without its restriction ("system/Observation.rs?..."),
// which may name a patient. The token response and the audit record carry
// the scopes whole (String).
func (s Scopes) Shown() string {
	parts := make([]string, len(s.list))
	for i, sc := range s.list {
		parts[i] = sc.shown()
	}
	return strings.Join(parts, " ")
}
