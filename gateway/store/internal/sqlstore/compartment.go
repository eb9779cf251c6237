package sqlstore

import (
	"slices"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/search"
)

// typesCond restricts a search of every type to q.Types.
func (b *Builder) typesCond(types []string) {
	b.add(" AND ")
	b.in("c.type", types)
}

// compartmentCond restricts the search to a patient's compartment (see
// search.Compartment) among types (every compartment type when empty):
// the Patient itself, and the resources whose compartment parameter
// references it, found through the reference index by (type, param,
// ref_id) on SQLite and (ref_type, ref_id) on PostgreSQL.
func (b *Builder) compartmentCond(cp *search.Compartment, types []string) {
	if len(types) == 0 {
		types = search.PatientCompartmentTypes()
	}
	byParam := map[string][]string{}
	var params []string
	for _, t := range types {
		p, ok := search.PatientCompartment(t)
		if !ok || p == "_id" {
			continue
		}
		// The rows of type Patient of the parameter that keeps p's
		// (search.ReferenceRows): all this condition reads.
		p, _ = search.ReferenceRows(t, p)
		if byParam[p] == nil {
			params = append(params, p)
		}
		byParam[p] = append(byParam[p], t)
	}
	slices.Sort(params)
	b.add(" AND (")
	if slices.Contains(types, "Patient") {
		b.add("(c.type = 'Patient' AND c.id = ?) OR ", cp.PatientID)
	}
	b.add("(c.type, c.id) IN (SELECT x.type, x.id FROM idx_reference x WHERE x.ref_type = 'Patient' AND x.ref_id = ? AND (",
		cp.PatientID)
	if len(params) == 0 {
		b.add("1 = 0")
	}
	for i, p := range params {
		if i > 0 {
			b.add(" OR ")
		}
		b.add("(x.param = ? AND ", p)
		b.in("x.type", byParam[p])
		b.add(")")
	}
	b.add(")))")
	if !cp.Start.IsZero() || !cp.End.IsZero() {
		b.careCond(cp, types)
	}
}

// careCond narrows a compartment search to a period of care (see
// search.Compartment): a resource of a type with a search.CareDate
// parameter is kept when one of its values overlaps [Start, End] or it
// has none; the other types are kept. Each subquery reads the resource's
// own rows (idx_date by type and id).
func (b *Builder) careCond(cp *search.Compartment, types []string) {
	lo, hi := int64(minMS), int64(maxMS)
	if !cp.Start.IsZero() {
		lo = storedMS(cp.Start)
	}
	if !cp.End.IsZero() {
		hi = storedMS(cp.End)
	}
	var undated []string
	b.add(" AND (")
	n := 0
	for _, t := range types {
		p := search.CareDate(t)
		if p == "" {
			undated = append(undated, t)
			continue
		}
		if n > 0 {
			b.add(" OR ")
		}
		n++
		b.add("(c.type = ? AND (EXISTS (SELECT 1 FROM idx_date x WHERE x.type = c.type AND x.id = c.id AND x.param = ? AND x.high >= ? AND x.low <= ?)"+
			" OR NOT EXISTS (SELECT 1 FROM idx_date x WHERE x.type = c.type AND x.id = c.id AND x.param = ?)))", t, p, lo, hi, p)
	}
	if len(undated) > 0 {
		if n > 0 {
			b.add(" OR ")
		}
		b.in("c.type", undated)
	} else if n == 0 {
		b.add("1 = 0")
	}
	b.add(")")
}
