package sqlstore

import (
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/search"
)

// Builder accumulates a SQL fragment and its arguments. Values only ever
// travel as arguments; the SQL text is made of constants, table names from
// a fixed list and placeholders. The fragments are written with "?"
// placeholders, each replaced by the dialect's placeholder of its argument.
type Builder struct {
	d    *Dialect
	sb   strings.Builder
	args []any
	typ  string    // the query's resource type ("" for every type)
	now  time.Time // for date "ap"
	// tenant and shared are the query's tenant and shared types (Where
	// sets them): the far ends of chains and _has are confined by them
	// too, each by the rule of its own type (scopeCond), whatever the
	// matches' type.
	tenant string
	shared []string
}

// NewBuilder returns an empty builder for d, for a query over resources of
// type typ ("" for every type) evaluated at now.
func NewBuilder(d *Dialect, typ string, now time.Time) *Builder {
	return &Builder{d: d, typ: typ, now: now}
}

// SQL is the text built so far.
func (b *Builder) SQL() string { return b.sb.String() }

// Args are the arguments of the text built so far, in order.
func (b *Builder) Args() []any { return b.args }

// Add appends s, each "?" in it replaced by the placeholder of the next of
// args (strings made storable, see Dialect.Text).
func (b *Builder) Add(s string, args ...any) { b.add(s, args...) }

// Where writes the condition selecting the matches of q over current c,
// restricted to q.Tenant (see tenantCond).
func (b *Builder) Where(q *search.Query) error { return b.where(q) }

// tenantCond is the condition (to append with AND) that restricts the row
// of alias (current c, or a version r) to tenant, with its "?" argument:
// "" is the default tenant, and search.AllTenants restricts nothing (no
// condition). A tenant no resource can have (see validTenant) matches
// nothing. Every statement that reads current rows for a search (matches,
// total, _include, _revinclude) or versions for a history appends it.
//
// For a named tenant it also says, as a literal, that the tenant is not
// the default one: SQLite's tenant indexes hold only named tenants' rows
// (partial indexes, schema 9), and a planner uses a partial index only for
// a statement whose own text implies its condition, which a "?" does not.
func tenantCond(alias, tenant string) (string, []any) {
	switch {
	case tenant == search.AllTenants:
		return "", nil
	case !validTenant(tenant):
		return " AND 1 = 0", nil
	case tenant == "":
		return " AND " + alias + ".tenant = ?", []any{tenant}
	}
	return " AND " + alias + ".tenant = ? AND " + alias + ".tenant <> ''", []any{tenant}
}

// scopeCond writes tenantCond for the rows of alias of type typ as tenant
// reads them with the types shared (see search.Query.Shared): a named
// tenant reads the default tenant's rows of a shared type as well as its
// own. Rows of any other type, and those of a search or history of every
// type (typ ""), are tenant's only.
func (b *Builder) scopeCond(alias, typ, tenant string, shared []string) {
	if typ != "" && sharing(tenant, shared) && slices.Contains(shared, typ) {
		b.add(" AND ("+alias+".tenant = ? OR "+alias+".tenant = '')", tenant)
		return
	}
	cond, args := tenantCond(alias, tenant)
	b.add(cond, args...)
}

// mixedScopeCond is scopeCond for rows of several types, each confined by
// the rule of its own (alias.type): an included resource.
func (b *Builder) mixedScopeCond(alias, tenant string, shared []string) {
	if !sharing(tenant, shared) {
		cond, args := tenantCond(alias, tenant)
		b.add(cond, args...)
		return
	}
	b.add(" AND ("+alias+".tenant = ? OR ("+alias+".tenant = '' AND ", tenant)
	b.in(alias+".type", shared)
	b.add("))")
}

// sharing tells whether tenant reads the default tenant's resources of
// the types shared as well as its own: a named tenant (every tenant reads
// everything, the default tenant its own) with some types shared.
func sharing(tenant string, shared []string) bool {
	return len(shared) > 0 && tenant != "" && validTenant(tenant)
}

// validTenant tells whether a resource or outbox item may belong to
// tenant: any valid UTF-8 without NUL bytes (which PostgreSQL text cannot
// hold, so that two tenants could not be told apart) other than
// search.AllTenants.
func validTenant(tenant string) bool {
	return tenant != search.AllTenants && utf8.ValidString(tenant) && strings.IndexByte(tenant, 0) < 0
}

func (b *Builder) add(s string, args ...any) {
	for {
		i := strings.IndexByte(s, '?')
		if i < 0 {
			break
		}
		b.sb.WriteString(s[:i])
		b.sb.WriteString(b.arg(args[0]))
		args, s = args[1:], s[i+1:]
	}
	b.sb.WriteString(s)
	if len(args) != 0 {
		panic(b.d.Name + ": builder: more arguments than placeholders")
	}
}

// arg adds one argument (a string made storable, see Dialect.Text) and
// returns its placeholder.
func (b *Builder) arg(v any) string {
	if s, ok := v.(string); ok && b.d.Text != nil {
		v = b.d.Text(s)
	}
	b.args = append(b.args, v)
	return b.d.Placeholder(len(b.args))
}

// in writes "col IN (?, ...)", one placeholder for each of vals, or with
// Dialect.Arrays "col = ANY(?)" (one statement text for any number).
func (b *Builder) in(col string, vals []string) { addIn(b, col, vals) }

// addIn is Builder.in for values of any type the driver binds (and binds
// as an array, with the dialect's Arrays).
func addIn[T any](b *Builder, col string, vals []T) {
	if b.d.Arrays {
		b.add(col+" = ANY(?)", vals)
		return
	}
	b.add(col + " IN (")
	for i, v := range vals {
		if i > 0 {
			b.add(", ")
		}
		b.add("?", v)
	}
	b.add(")")
}

// pageBounds applies the defaults to a page size and offset.
func pageBounds(count, offset int) (int, int) {
	if count <= 0 {
		count = defaultCount
	}
	return count, max(offset, 0)
}

// defaultCount is the page size when a query does not give one.
const defaultCount = 50
