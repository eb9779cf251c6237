package sqlstore

import (
	"fmt"
	"math"
	"strings"
	"time"
	"unicode"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/search"
)

// where writes the condition selecting the matches of q over current c.
// Only c is restricted to q's tenant (by the rule of its type, see
// scopeCond; a search of every type reads only q.Tenant's): the index
// tables have no tenant, and every subquery on them is tied to c's type
// and id.
func (b *Builder) where(q *search.Query) error {
	b.tenant, b.shared = q.Tenant, q.Shared
	b.add(b.d.NotDeleted)
	if b.typ != "" {
		b.add(" AND c.type = ?", b.typ)
	}
	b.scopeCond("c", b.typ, q.Tenant, q.Shared)
	if b.typ == "" && len(q.Types) > 0 {
		b.typesCond(q.Types)
	}
	if q.Compartment != nil {
		b.compartmentCond(q.Compartment, q.Types)
	}
	for i := range q.Clauses {
		b.add(" AND ")
		if err := b.clause(&q.Clauses[i]); err != nil {
			return err
		}
	}
	return nil
}

// tableFor is the index table holding entries of a clause's type.
func tableFor(t search.Type) (string, error) {
	switch t {
	case search.TypeToken:
		return "idx_token", nil
	case search.TypeString:
		return "idx_string", nil
	case search.TypeDate:
		return "idx_date", nil
	case search.TypeReference:
		return "idx_reference", nil
	case search.TypeNumber, search.TypeQuantity:
		return "idx_quantity", nil
	case search.TypeURI:
		return "idx_uri", nil
	}
	return "", fmt.Errorf("unsupported parameter type %q", t)
}

func (b *Builder) clause(cl *search.Clause) error {
	switch {
	case cl.Chain != nil:
		return b.chainClause(cl)
	case cl.Has != nil:
		return b.hasClause(cl)
	}
	switch cl.Param {
	case "_id":
		return b.idClause(cl)
	case "_lastUpdated":
		return b.lastUpdatedClause(cl)
	}
	tbl, err := tableFor(cl.Type)
	if err != nil {
		return fmt.Errorf("%s: search %s: %w", b.d.Name, cl.Param, err)
	}
	if cl.Missing != nil {
		return b.missing(cl, tbl, *cl.Missing)
	}
	if len(cl.Values) == 0 {
		return fmt.Errorf("%s: search %s: no values", b.d.Name, cl.Param)
	}
	var cond func(v *search.Value)
	not := false
	param := cl.Param
	switch cl.Type {
	case search.TypeToken:
		switch cl.Modifier {
		case "", "not":
			not = cl.Modifier == "not"
			cond = b.tokenCond
		case "text":
			cond = b.tokenTextCond
		case "of-type":
			// The rows of the identifiers' types (search.OfTypeParam):
			// system "type-system type-code", code the value.
			param, cond = search.OfTypeParam(cl.Param), b.tokenCond
		}
	case search.TypeString:
		switch cl.Modifier {
		case "", "exact", "contains":
			cond = func(v *search.Value) { b.stringCond(cl.Modifier, v) }
		}
	case search.TypeDate:
		if cl.Modifier == "" {
			cond = func(v *search.Value) { b.dateCond("x.low", "x.high", v) }
		}
	case search.TypeNumber, search.TypeQuantity:
		if cl.Modifier == "" {
			cond = b.quantityCond
		}
	case search.TypeURI:
		switch cl.Modifier {
		case "", "below", "above":
			cond = func(v *search.Value) { b.uriCond(cl.Modifier, v) }
		}
	case search.TypeReference:
		switch {
		case cl.Modifier == "identifier":
			tbl, cond = "idx_token", b.tokenCond
		case cl.Modifier == "" || isTypeName(cl.Modifier):
			cond = func(v *search.Value) { b.refCond(cl.Modifier, v) }
		}
	}
	if cond == nil {
		return fmt.Errorf("%s: search %s: unsupported modifier %q for a %s parameter", b.d.Name, cl.Param, cl.Modifier, cl.Type)
	}
	b.memberOpen(not, tbl, param)
	b.add(" AND (")
	for i := range cl.Values {
		if i > 0 {
			b.add(" OR ")
		}
		b.add("(")
		cond(&cl.Values[i])
		b.add(")")
	}
	b.add("))")
	return nil
}

// isTypeName tells whether a modifier names a resource type.
func isTypeName(s string) bool {
	return s != "" && unicode.IsUpper(rune(s[0]))
}

// memberOpen writes "c.id [NOT] IN (SELECT x.id FROM tbl x WHERE <type and
// param>" leaving the subquery open for more conditions on x.
func (b *Builder) memberOpen(not bool, tbl, param string) {
	neg := ""
	if not {
		neg = "NOT "
	}
	if b.typ != "" {
		b.add("c.id "+neg+"IN (SELECT x.id FROM "+tbl+" x WHERE x.type = ?", b.typ)
	} else {
		b.add("(c.type, c.id) " + neg + "IN (SELECT x.type, x.id FROM " + tbl + " x WHERE 1 = 1")
	}
	switch tbl {
	case "idx_reference":
		b.refRows(b.typ, param)
	case "idx_token":
		b.tokenRows(b.typ, param)
	default:
		b.add(" AND x.param = ?", param)
	}
}

// tokenRows writes " AND <condition>" selecting, among token rows x, those
// of the token parameter param of resource type typ ("" when x.type is
// not fixed): x.param = param, or for a parameter answered from other
// parameters' rows (search.TokenRows: an Observation's combo-code is its
// code and component-code rows) theirs.
func (b *Builder) tokenRows(typ, param string) {
	if typ != "" {
		ps := search.TokenRows(typ, param)
		if len(ps) == 1 {
			b.add(" AND x.param = ?", ps[0])
			return
		}
		b.add(" AND ")
		b.in("x.param", ps)
		return
	}
	aliases := search.TokenRowAliases(param)
	if len(aliases) == 0 {
		b.add(" AND x.param = ?", param)
		return
	}
	b.add(" AND (x.param = ?", param)
	for _, a := range aliases {
		b.add(" OR (")
		b.in("x.param", a.Params)
		b.add(" AND ")
		b.in("x.type", a.Types)
		b.add(")")
	}
	b.add(")")
}

// refRows writes " AND <condition>" selecting, among reference rows x, those
// of the parameter param of resource type typ ("" when x.type is not
// fixed): x.param = param, or for a patient parameter kept as another
// parameter's rows (search.ReferenceRows: an Observation's patient is its
// subject of type Patient) that parameter's rows of that type. Rows of
// the patient parameter itself from before it was kept so (the gateway's
// schema 10 and older) are never read.
func (b *Builder) refRows(typ, param string) {
	if typ != "" {
		p, refType := search.ReferenceRows(typ, param)
		b.add(" AND x.param = ?", p)
		if refType != "" {
			b.add(" AND x.ref_type = ?", refType)
		}
		return
	}
	aliases := search.ReferenceRowAliases(param)
	if len(aliases) == 0 {
		b.add(" AND x.param = ?", param)
		return
	}
	// Over every type: param's own rows, and the other parameter's rows of
	// the types that keep it so (where param's own rows are old ones,
	// the same references).
	b.add(" AND (x.param = ?", param)
	for _, a := range aliases {
		b.add(" OR (x.param = ? AND x.ref_type = ? AND ", a.Param, a.RefType)
		b.in("x.type", a.Types)
		b.add(")")
	}
	b.add(")")
}

// missing writes :missing=true (no entry of the param) or false (some).
// A reference parameter's logical references are token entries, so both
// tables count.
func (b *Builder) missing(cl *search.Clause, tbl string, missing bool) error {
	if len(cl.Values) > 0 {
		return fmt.Errorf("%s: search %s: :missing takes no values", b.d.Name, cl.Param)
	}
	tables := []string{tbl}
	if cl.Type == search.TypeReference {
		tables = append(tables, "idx_token")
	}
	join := " OR "
	if missing {
		join = " AND "
	}
	b.add("(")
	for i, t := range tables {
		if i > 0 {
			b.add(join)
		}
		b.memberOpen(missing, t, cl.Param)
		b.add(")")
	}
	b.add(")")
	return nil
}

func (b *Builder) idClause(cl *search.Clause) error {
	if cl.Missing != nil {
		b.add(boolSQL(!*cl.Missing)) // every resource has an id
		return nil
	}
	if cl.Modifier != "" && cl.Modifier != "not" {
		return fmt.Errorf("%s: search _id: unsupported modifier %q", b.d.Name, cl.Modifier)
	}
	if len(cl.Values) == 0 {
		return fmt.Errorf("%s: search _id: no values", b.d.Name)
	}
	// An id has no system: "system|id" names no resource ("|id" is id).
	var ids []any
	for _, v := range cl.Values {
		if v.HasSystem && v.System != "" {
			continue
		}
		id := v.Code
		if id == "" {
			id = v.Str
		}
		ids = append(ids, id)
	}
	if len(ids) == 0 {
		b.add(boolSQL(cl.Modifier == "not"))
		return nil
	}
	if cl.Modifier == "not" {
		b.add("c.id NOT IN (")
	} else {
		b.add("c.id IN (")
	}
	b.add(strings.TrimSuffix(strings.Repeat("?, ", len(ids)), ", "), ids...)
	b.add(")")
	return nil
}

func (b *Builder) lastUpdatedClause(cl *search.Clause) error {
	if cl.Missing != nil {
		b.add(boolSQL(!*cl.Missing))
		return nil
	}
	if cl.Modifier != "" {
		return fmt.Errorf("%s: search _lastUpdated: unsupported modifier %q", b.d.Name, cl.Modifier)
	}
	if len(cl.Values) == 0 {
		return fmt.Errorf("%s: search _lastUpdated: no values", b.d.Name)
	}
	b.add("(")
	for i := range cl.Values {
		if i > 0 {
			b.add(" OR ")
		}
		b.add("(")
		b.dateCond("c.last_updated", "c.last_updated", &cl.Values[i])
		b.add(")")
	}
	b.add(")")
	return nil
}

func boolSQL(b bool) string {
	if b {
		return "1 = 1"
	}
	return "1 = 0"
}

// tokenCond: code (any system), |code (no system), system|code, system|.
func (b *Builder) tokenCond(v *search.Value) {
	switch {
	case !v.HasSystem:
		b.add("x.code = ?", v.Code)
	case v.Code == "":
		b.add("x.system = ?", v.System)
	default:
		b.add("x.system = ? AND x.code = ?", v.System, v.Code)
	}
}

// tokenTextCond: token :text is a string search (search.html#token) of
// the normalised text, at the start of a word: the normalised value is a
// prefix of the text or of one of its words ("weigh" and "body we" find
// "body weight", "ight" and "dy we" do not). Normalize leaves single
// spaces between words, so a word starts after a space.
func (b *Builder) tokenTextCond(v *search.Value) {
	s := v.Str
	if s == "" {
		s = v.Code
	}
	n := search.Normalize(s)
	b.add(`(x.text >= ? AND x.text < ?) OR x.text LIKE ? ESCAPE '\'`, n, n+prefixEnd, "% "+escapeLike(n)+"%")
}

// stringCond: default starts-with on the normalised value, :exact equality
// with the original, :contains substring of the normalised value.
func (b *Builder) stringCond(mod string, v *search.Value) {
	switch mod {
	case "exact":
		b.add("x.exact = ?", v.Str)
	case "contains":
		b.add(`x.norm LIKE ? ESCAPE '\'`, "%"+escapeLike(search.Normalize(v.Str))+"%")
	default:
		n := search.Normalize(v.Str)
		b.add("x.norm >= ? AND x.norm < ?", n, n+prefixEnd)
	}
}

// prefixEnd sorts after every string starting with a given prefix (in
// binary UTF-8 order), so "s >= p AND s < p+prefixEnd" is an index range.
const prefixEnd = "\U0010FFFF"

// escapeLike escapes the LIKE wildcards (escape character '\').
func escapeLike(s string) string {
	return strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`).Replace(s)
}

func (b *Builder) uriCond(mod string, v *search.Value) {
	u := v.Str
	if u == "" {
		u = v.RefURL
	}
	switch mod {
	case "below":
		b.add("x.uri >= ? AND x.uri < ?", u, u+prefixEnd)
	case "above":
		// The entry is the value or one of its path prefixes.
		b.add("x.uri IN (?", u)
		for i := len(u) - 1; i > 0; i-- {
			if u[i] == '/' && u[i-1] != '/' && u[i-1] != ':' {
				b.add(", ?, ?", u[:i], u[:i+1])
			}
		}
		b.add(")")
	default:
		b.add("x.uri = ?", u)
	}
}

// refCond: a URL matches ref_url; type/id or a bare id (any type) match the
// literal reference; the value's type (a URL's is its :Type modifier's)
// and a type modifier restrict the target type: the type the row's
// literal or Reference.type gave it (a URL of no known type has none).
func (b *Builder) refCond(mod string, v *search.Value) {
	if v.RefURL != "" && v.RefID == "" {
		// The term that idx_reference_url's WHERE names (see tokenCond).
		b.add("x.ref_url = ? AND x.ref_url <> ''", v.RefURL)
	} else {
		b.add("x.ref_id = ?", v.RefID)
	}
	if v.RefType != "" {
		b.add(" AND x.ref_type = ?", v.RefType)
	}
	if mod != "" && mod != v.RefType { // a parsed value carries its modifier
		b.add(" AND x.ref_type = ?", mod)
	}
}

// dateCond compares the entry range [lo, hi] (SQL expressions) with the
// value's range, per search.html#prefix.
func (b *Builder) dateCond(lo, hi string, v *search.Value) {
	vl := storedMS(v.Low)
	vh := vl
	if !v.High.IsZero() {
		vh = clampMS(v.High.UnixMilli())
	}
	// The entry lies inside the value's range. "lo <= vh" follows from the
	// rest (lo <= hi) but bounds the index range scan on lo.
	inside := "(" + lo + " >= ? AND " + lo + " <= ? AND " + hi + " <= ?)"
	switch v.Prefix {
	case search.PrefixNe:
		b.add("NOT "+inside, vl, vh, vh)
	case search.PrefixGt:
		b.add(hi+" > ?", vh)
	case search.PrefixLt:
		b.add(lo+" < ?", vl)
	case search.PrefixGe:
		b.add(hi+" > ? OR "+inside, vh, vl, vh, vh)
	case search.PrefixLe:
		b.add(lo+" < ? OR "+inside, vl, vl, vh, vh)
	case search.PrefixSa:
		b.add(lo+" > ?", vh)
	case search.PrefixEb:
		b.add(hi+" < ?", vl)
	case search.PrefixAp:
		d := approxMS(b.now, vl, vh)
		b.add(lo+" <= ? AND "+hi+" >= ?", vh+d, vl-d)
	default: // eq
		b.add(inside, vl, vh, vh)
	}
}

// approxMS is the widening of a date "ap" value: 10% of the distance
// between now and the value's middle, at least one day.
func approxMS(now time.Time, vl, vh int64) int64 {
	mid := vl/2 + vh/2
	dist := now.UnixMilli() - mid
	if dist < 0 {
		dist = -dist
	}
	return max(dist/10, int64(24*time.Hour/time.Millisecond))
}

// quantityCond compares the range of the entry (x.number, and the
// x.comparator of a Quantity: "<5" is (-inf, 5), ">=5" [5, +inf); without
// one, the point x.number) with the value, per search.html#prefix: the
// value's range is [n-p, n+p), p its Precision; eq matches an entry inside
// it, ne any other; gt and lt an entry reaching above or below n itself
// (search.html#number: "greater than exactly 100"); ge and le what gt or
// lt match and what eq matches; sa and eb an entry wholly above or below
// the value's range; ap an entry that meets [n-d, n+d], d 10% of n and at
// least p. And, for a quantity, the unit: system|code, or ||code matching
// the code or the human unit.
func (b *Builder) quantityCond(v *search.Value) {
	n, p := v.Number, math.Abs(v.Precision)
	lo, hi := n-p, n+p
	// below and from split the numbers at the end of the value's range:
	// "< n+p", or, when the precision is finer than a float64 can tell
	// at n (0.30000000000000004), "<= n".
	below, from := "x.number < ?", "x.number >= ?"
	if hi <= n {
		below, from, hi = "x.number <= ?", "x.number > ?", n
	}
	const (
		point     = "x.comparator = ''"
		openBelow = "x.comparator IN ('<', '<=')" // (-inf, number) or (-inf, number]
		openAbove = "x.comparator IN ('>', '>=')"
	)
	b.add("(")
	switch v.Prefix {
	case search.PrefixNe:
		b.add("x.comparator <> '' OR x.number < ? OR "+from, lo, hi)
	case search.PrefixGt:
		b.add("x.number > ? OR "+openAbove, n)
	case search.PrefixLt:
		b.add("x.number < ? OR "+openBelow, n)
	case search.PrefixGe:
		b.add("("+point+" AND x.number >= ?) OR x.number > ? OR "+openAbove, lo, n)
	case search.PrefixLe:
		b.add("("+point+" AND "+below+") OR x.number < ? OR "+openBelow, hi, n)
	case search.PrefixSa:
		b.add("x.comparator IN ('', '>', '>=') AND "+from, hi)
	case search.PrefixEb:
		b.add("(x.comparator IN ('', '<=') AND x.number < ?) OR (x.comparator = '<' AND x.number <= ?)", lo, lo)
	case search.PrefixAp:
		d := max(math.Abs(n)*0.1, p)
		b.add("("+point+" AND x.number >= ? AND x.number <= ?)", n-d, n+d)
		b.add(" OR (x.comparator = '<' AND x.number > ?) OR (x.comparator = '<=' AND x.number >= ?)", n-d, n-d)
		b.add(" OR (x.comparator = '>' AND x.number < ?) OR (x.comparator = '>=' AND x.number <= ?)", n+d, n+d)
	default: // eq: a range open at one end is in no value's range
		b.add(point+" AND x.number >= ? AND "+below, lo, hi)
	}
	b.add(")")
	switch {
	case v.Code != "" && v.System != "":
		b.add(" AND x.system = ? AND x.code = ?", v.System, v.Code)
	case v.Code != "":
		b.add(" AND (x.code = ? OR x.unit = ?)", v.Code, v.Code)
	case v.System != "":
		b.add(" AND x.system = ?", v.System)
	}
}
