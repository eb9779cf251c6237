package sqlstore

import (
	"fmt"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/search"
)

// Chained parameters and _has join the reference index to the index
// entries of the resources at its other end. The far end is a subquery
// over its current rows, confined to the searching tenant by the rule of
// the far end's own type, whatever the matches' type (scopeCond): an
// Observation of one tenant never matches through another tenant's
// Patient, and neither does a search of a shared type (the gateway's
// CodeSystems: every tenant's matches, but their chains end at the
// caller's Patients); a far end of a shared type may be the default
// tenant's as well as the caller's. Inside it the alias c is the far end's current row:
// the inner scope shadows the outer c, so the clause builders write the
// same SQL as for a plain search of that type.
//
//	patient.identifier=s|v:  c.id IN (SELECT x.id FROM idx_reference x
//	    WHERE x.type = 'Observation' AND x.param = 'subject' AND x.ref_type = 'Patient' (see refRows)
//	    AND x.ref_id IN (SELECT c.id FROM current c WHERE <not deleted> AND c.type = 'Patient'
//	        AND c.tenant = ? AND c.id IN (SELECT x.id FROM idx_token x WHERE ...)))
//
// Both ends are index lookups: idx_reference_target (type, param, ref_id)
// for a chain, idx_reference_res (type, id) for _has, and the far end's own
// index; neither scans the searched type.

// chainClause writes a chained clause (cl.Chain set): a chain over
// several target types (Chain.Or) matches through any of them.
func (b *Builder) chainClause(cl *search.Clause) error {
	chains := append([]search.Chain{*cl.Chain}, cl.Chain.Or...)
	if len(chains) > 1 {
		b.add("(")
	}
	for i := range chains {
		ch := &chains[i]
		if i > 0 {
			b.add(" OR ")
		}
		b.memberOpen(false, "idx_reference", cl.Param)
		b.add(" AND x.ref_type = ? AND x.ref_id IN (", ch.TargetType)
		if err := b.farEnd(ch.TargetType, &ch.Clause); err != nil {
			return fmt.Errorf("%s: search %s.%s: %w", b.d.Name, cl.Param, ch.Clause.Param, err)
		}
		b.add("))")
	}
	if len(chains) > 1 {
		b.add(")")
	}
	return nil
}

// hasClause writes a reverse chain (cl.Has set).
func (b *Builder) hasClause(cl *search.Clause) error {
	h := cl.Has
	if b.typ != "" {
		b.add("c.id IN (SELECT x.ref_id FROM idx_reference x WHERE x.ref_type = ?", b.typ)
	} else {
		b.add("(c.type, c.id) IN (SELECT x.ref_type, x.ref_id FROM idx_reference x WHERE 1 = 1")
	}
	b.add(" AND x.type = ?", h.Type)
	b.refRows(h.Type, h.Param)
	b.add(" AND x.id IN (")
	if err := b.farEnd(h.Type, &h.Clause); err != nil {
		return fmt.Errorf("%s: search _has:%s:%s: %w", b.d.Name, h.Type, h.Param, err)
	}
	b.add("))")
	return nil
}

// farEnd writes "SELECT c.id FROM current c WHERE ..." selecting the
// current, non-deleted resources of typ that the builder's tenant reads
// (scopeCond: by typ's rule) that match cl (itself no chain).
func (b *Builder) farEnd(typ string, cl *search.Clause) error {
	if cl.Chain != nil || cl.Has != nil {
		return fmt.Errorf("a chain of more than one link")
	}
	b.add("SELECT c.id FROM current c WHERE "+b.d.NotDeleted+" AND c.type = ?", typ)
	b.scopeCond("c", typ, b.tenant, b.shared)
	b.add(" AND ")
	outer := b.typ
	b.typ = typ
	defer func() { b.typ = outer }()
	return b.clause(cl)
}
