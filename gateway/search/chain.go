package search

import (
	"slices"
	"strings"
)

// Chained parameters (search.html#chaining) and reverse chaining with _has
// (search.html#has), one link each: the gateway resolves a chain with one
// join from the reference index to the target's index entries, which is
// what the default ChainDepth allows. A deeper chain within a larger
// ChainDepth is refused as unsupported.

// chain parses the occurrences of a chained parameter
// param[:Type].targetParam[:modifier]: param is a reference parameter of
// the searched type, Type (or, without it, the one target type of param
// on which targetParam is defined) the type it points to.
func (ps *parser) chain(key string, vals []string) *Error {
	head, tail, _ := strings.Cut(key, ".")
	name, explicit, _ := strings.Cut(head, ":")
	p, ok := Lookup(ps.rt, name)
	if !ok {
		return ps.unknown(key)
	}
	if p.Type != TypeReference {
		return ps.errorf(key, RuleChainUnsupported, "%s is not a reference parameter, so it cannot be chained", ps.named(key))
	}
	if strings.Contains(tail, ".") {
		return ps.errorf(key, RuleChainUnsupported, "the gateway supports chains of one link (%s.parameter)", ps.named(head))
	}
	tname, _, _ := strings.Cut(tail, ":")
	targets, err := ps.chainTargets(key, p, explicit, tname)
	if err != nil {
		return err
	}
	// One clause per occurrence and target type; a chain over several
	// types ORs them, which is only meaningful where the parameter is of
	// one type on all of them (search.html: an ambiguous parameter type
	// is refused).
	var clauses [][]Clause
	for _, target := range targets {
		cs, err := ps.linked(key, target, tail, vals)
		if err != nil {
			return err
		}
		if len(clauses) > 0 && (len(cs) != len(clauses[0]) || len(cs) > 0 && cs[0].Type != clauses[0][0].Type) {
			return ps.errorf(key, RuleChainUnsupported, "%s can point to several types whose parameter of this name differs (%s): name one (%s:%s.parameter)",
				ps.named(key), strings.Join(targets, ", "), p.Name, targets[0])
		}
		clauses = append(clauses, cs)
	}
	mod := targets[0]
	if len(targets) > 1 {
		mod = ""
	}
	for i, c := range clauses[0] {
		ch := &Chain{TargetType: targets[0], Clause: c}
		for j, t := range targets[1:] {
			ch.Or = append(ch.Or, Chain{TargetType: t, Clause: clauses[j+1][i]})
		}
		ps.q.Clauses = append(ps.q.Clauses, Clause{Param: p.Name, Type: TypeReference, Modifier: mod, Chain: ch})
	}
	return nil
}

// chainTargets resolves the types a chain of p leads to: the explicit
// :Type (one of p's targets), else every target of p that defines
// targetParam (search.html#chaining: Observation?subject.name=x looks
// into the Patients and the Locations an Observation's subject names).
func (ps *parser) chainTargets(key string, p Param, explicit, targetParam string) ([]string, *Error) {
	if explicit != "" {
		if !isResourceType(explicit) || len(p.Targets) > 0 && !slices.Contains(p.Targets, explicit) {
			return nil, ps.errorf(key, RuleChainUnsupported, "%s names a target type the parameter cannot point to", ps.named(key))
		}
		if !chainable(explicit, targetParam) {
			return nil, ps.errorf(key, RuleParamUnknown, "the chained parameter of %s is not a search parameter of %s: %s",
				ps.named(key), explicit, searchParams(explicit))
		}
		return []string{explicit}, nil
	}
	if len(p.Targets) == 0 {
		return nil, ps.errorf(key, RuleChainUnsupported, "%s can point to any type: name the target type (%s:Type.parameter)",
			ps.named(key), p.Name)
	}
	var found []string
	for _, t := range p.Targets {
		if chainable(t, targetParam) {
			found = append(found, t)
		}
	}
	if len(found) == 0 {
		return nil, ps.errorf(key, RuleParamUnknown, "the chained parameter of %s is not a search parameter of the types it can point to (%s)",
			ps.named(key), strings.Join(p.Targets, ", "))
	}
	return found, nil
}

// chainable reports whether a chain or _has may end in parameter name of
// rt: one of its search parameters (result and special parameters are not).
func chainable(rt, name string) bool {
	if _, ok := Lookup(rt, name); !ok {
		return false
	}
	return !strings.HasPrefix(name, "_") || name == "_id" || name == "_lastUpdated"
}

// linked parses the occurrences vals of parameter key (name[:modifier]) of
// resource type rt, the far end of a chain or _has of ps's parameter
// outer: one clause per occurrence. Its errors name outer.
func (ps *parser) linked(outer, rt, key string, vals []string) ([]Clause, *Error) {
	sub := &parser{rt: rt, conditional: ps.conditional, base: ps.base, q: &Query{Type: rt}}
	if err := sub.param(key, vals); err != nil {
		err.Param = ps.shown(outer)
		return nil, err
	}
	return sub.q.Clauses, nil
}

// has parses the occurrences of a reverse chain
// _has:Type:param:targetParam[:modifier]: resources of the searched type
// that a resource of Type references by its reference parameter param,
// where that resource matches targetParam.
func (ps *parser) has(key string, vals []string) *Error {
	parts := strings.SplitN(key, ":", 5)
	if len(parts) < 4 || parts[1] == "" || parts[2] == "" || parts[3] == "" {
		return ps.errorf(key, RuleValueInvalid, "_has is written _has:Type:reference-parameter:parameter=value")
	}
	src, refName, tname := parts[1], parts[2], parts[3]
	if !isResourceType(src) {
		return ps.errorf(key, RuleChainUnsupported, "_has names a type that is not an R4 resource type")
	}
	ref, ok := Lookup(src, refName)
	if !ok || ref.Type != TypeReference {
		return ps.errorf(key, RuleParamUnknown, "_has names a parameter that is not a reference parameter of %s; those of %s are %s",
			src, src, referenceParams(src))
	}
	if len(ref.Targets) > 0 && !slices.Contains(ref.Targets, ps.rt) {
		return ps.errorf(key, RuleChainUnsupported, "%s.%s cannot point to %s", src, ref.Name, ps.rt)
	}
	if tname == "_has" || strings.Contains(tname, ".") {
		return ps.errorf(key, RuleChainUnsupported, "the gateway supports _has of one link (_has:Type:parameter:parameter)")
	}
	if !chainable(src, tname) {
		return ps.errorf(key, RuleParamUnknown, "the last parameter of _has is not a search parameter of %s: %s", src, searchParams(src))
	}
	tail := tname
	if len(parts) == 5 {
		tail += ":" + parts[4]
	}
	clauses, err := ps.linked(key, src, tail, vals)
	if err != nil {
		return err
	}
	for _, c := range clauses {
		ps.q.Clauses = append(ps.q.Clauses, Clause{Param: "_has", Type: TypeReference,
			Has: &Has{Type: src, Param: ref.Name, Clause: c}})
	}
	return nil
}

// shownLinked is ShownName of a chained or _has key, as far as the gateway
// knows its parts ("" when it knows none); see ShownName.
func shownLinked(rt, key string) string {
	if rest, ok := strings.CutPrefix(key, "_has:"); ok {
		parts := strings.SplitN(rest, ":", 4)
		if len(parts) < 3 || !isResourceType(parts[0]) {
			return "_has"
		}
		if ref, ok := Lookup(parts[0], parts[1]); !ok || ref.Type != TypeReference {
			return "_has:" + parts[0]
		}
		if !chainable(parts[0], parts[2]) {
			return "_has:" + parts[0] + ":" + parts[1]
		}
		shown := "_has:" + parts[0] + ":" + parts[1] + ":" + parts[2]
		if len(parts) == 4 && knownModifier(parts[3]) {
			shown += ":" + parts[3]
		}
		return shown
	}
	head, tail, _ := strings.Cut(key, ".")
	name, explicit, _ := strings.Cut(head, ":")
	p, ok := Lookup(rt, name)
	if !ok {
		return ""
	}
	shown := name
	if explicit != "" {
		if !isResourceType(explicit) {
			return shown
		}
		shown += ":" + explicit
	}
	tname, tmod, hasMod := strings.Cut(tail, ":")
	if strings.Contains(tail, ".") || p.Type != TypeReference {
		return shown
	}
	targets := p.Targets
	if explicit != "" {
		targets = []string{explicit}
	}
	if !slices.ContainsFunc(targets, func(t string) bool { return chainable(t, tname) }) {
		return shown
	}
	shown += "." + tname
	if hasMod && knownModifier(tmod) {
		shown += ":" + tmod
	}
	return shown
}
