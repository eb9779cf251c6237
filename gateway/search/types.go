// Package search defines the FHIR R4 search parameters the gateway supports,
// extracts index entries from resources and parses search requests. It is
// pure: no SQL, no HTTP. The store turns a parsed Query into its own query
// language; this package knows nothing of it.
package search

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Type is a search parameter type (search.html#ptypes).
type Type string

// The parameter types the gateway indexes.
const (
	TypeToken     Type = "token"
	TypeString    Type = "string"
	TypeDate      Type = "date"
	TypeReference Type = "reference"
	TypeQuantity  Type = "quantity"
	TypeNumber    Type = "number"
	TypeURI       Type = "uri"
)

// Param is one search parameter of one resource type.
type Param struct {
	Resource string // resource type, or "Resource" for _id/_lastUpdated
	Name     string
	Type     Type
	// Paths are the element paths the values come from, dotted from the
	// resource root; a path step naming a choice element lists the typed
	// names ("effectiveDateTime"). Documentation and the extractor use them.
	Paths []string
	// Targets are the resource types a reference parameter may point to
	// (empty: any).
	Targets []string
	// Systems are, sorted, the code systems a token parameter's code
	// elements are indexed with: those their R4 required bindings imply
	// (see CodeSystem); empty for other parameters.
	Systems []string
	// Text marks a token parameter some of whose elements carry text that
	// :text searches (an Identifier's type, a Coding's display, a
	// CodeableConcept's text); a parameter of bare codes has none.
	Text bool
	// OfType marks a token parameter of Identifiers, which takes
	// :of-type (type-system|type-code|value).
	OfType bool
	// Description for the CapabilityStatement.
	Description string
	// Definition is the canonical URL of the SearchParameter that defines
	// the parameter (the CapabilityStatement's searchParam.definition):
	// the gateway's own for those it defines, else R4's
	// (http://hl7.org/fhir/SearchParameter/clinical-code); "" for the
	// gateway's own patient parameter of the types R4 gives none (any
	// reference to a Patient), which has no SearchParameter.
	Definition string
}

// Entry is one index entry of a resource: the value of one search parameter
// in one of the resource's elements. Exactly the fields of its Type are set.
type Entry struct {
	Param string
	Type  Type

	// token: System may be empty (no system); Code is the code/value.
	// Identifier, Coding, CodeableConcept, code, boolean ("true"/"false"),
	// ContactPoint (value) all index as tokens.
	System, Code string
	// Text is the display/text for :text matching (token), lower-cased.
	Text string

	// string: Norm is lower-cased with accents and punctuation folded
	// (search.html#string: case- and accent-insensitive prefix match);
	// Exact is the original value (:exact), in NFC (Extract).
	Norm, Exact string

	// date: the instant range the value covers, [Low, High] inclusive, UTC.
	// A date 2026-03 covers 2026-03-01T00:00:00 to 2026-03-31T23:59:59.999.
	// A range open at an end has MinTime or MaxTime there; the zero time is
	// MinTime, a time like any other.
	Low, High time.Time

	// reference: RefType/RefID for a literal relative reference
	// ("Patient/123", or absolute URL on this server normalised by the
	// caller); RefURL for anything else (absolute URL, canonical, urn).
	// A logical reference (Reference.identifier) is indexed as a token
	// entry of the same parameter name with modifier support ":identifier".
	RefType, RefID, RefURL string

	// number and quantity: Number is the value; for quantity System and Code
	// are the unit system/code (Unit the human unit), and Comparator the
	// Quantity.comparator ("<", "<=", ">=", ">"; "" for none): the value
	// is then the range (-inf, Number), (-inf, Number], [Number, +inf) or
	// (Number, +inf) that search prefixes compare with (search.html#prefix),
	// not the point Number.
	Number     float64
	Unit       string
	Comparator string
}

// IsComparator reports whether c is a value of Quantity.comparator (R4
// quantity-comparator: <, <=, >=, >), an Entry.Comparator besides "".
func IsComparator(c string) bool { return c == "<" || c == "<=" || c == ">=" || c == ">" }

// Prefix is a comparison prefix of number, date and quantity values.
type Prefix string

// The search prefixes (search.html#prefix).
const (
	PrefixEq Prefix = "eq"
	PrefixNe Prefix = "ne"
	PrefixGt Prefix = "gt"
	PrefixLt Prefix = "lt"
	PrefixGe Prefix = "ge"
	PrefixLe Prefix = "le"
	PrefixSa Prefix = "sa"
	PrefixEb Prefix = "eb"
	PrefixAp Prefix = "ap"
)

// Value is one value of a search clause; the values of a clause are ORed.
type Value struct {
	Prefix Prefix // date, number, quantity (default eq)

	// token: HasSystem distinguishes "code" (any system) from "|code"
	// (no system) and "system|code"; Code "" with HasSystem means
	// "system|" (any code in the system).
	System, Code string
	HasSystem    bool

	// string / uri / token :text value, as given (the store normalises
	// it like Entry.Norm for default matching).
	Str string

	// date: the range of the value given, as in Entry.Low/High.
	Low, High time.Time

	// reference: Type may be empty for a bare id; or URL for an absolute one
	// (or a urn), with Type the :Type modifier's, if any.
	RefType, RefID, RefURL string

	// number / quantity.
	Number float64
	// Precision is half the unit of the last significant digit of the value
	// as written (eq matches within it, per search.html#number).
	Precision float64
}

// Clause is one search parameter occurrence: its values are ORed; the
// clauses of a Query are ANDed.
type Clause struct {
	Param    string
	Type     Type
	Modifier string // "", "exact", "contains", "missing", "not", "text", "identifier", "above", "below", or a resource type for references
	// Missing is set for :missing=true|false (Values is then empty).
	Missing *bool
	Values  []Value
	// Chain is set for chained reference parameters (subject:Patient.identifier=x):
	// the chained clause applies to the target type; Modifier is that type
	// ("" for a chain over several types: Chain.Or).
	Chain *Chain
	// Has is set for a reverse chain (_has:Observation:patient:code=x;
	// Param is "_has").
	Has *Has
}

// Chain is a chained search on the resource a reference points to.
type Chain struct {
	TargetType string
	Clause     Clause
	// Or are the chain's other target types, when it names no type and
	// several of the reference's targets define its parameter
	// (Observation?subject.identifier=x: a Patient's or a Location's): a
	// resource matches through any of them (search.html#chaining).
	Or []Chain
}

// Types returns the types the chain looks into: TargetType and Or's.
func (ch *Chain) Types() []string {
	out := []string{ch.TargetType}
	for _, o := range ch.Or {
		out = append(out, o.TargetType)
	}
	return out
}

// Has is a reverse chain: the resource is the target of reference
// parameter Param of a resource of Type that matches Clause.
type Has struct {
	Type, Param string
	Clause      Clause
}

// SortKey orders results by a parameter (only date parameters and
// _lastUpdated/_id are sortable).
type SortKey struct {
	Param      string
	Descending bool
}

// Include is an _include or _revinclude: resources of SourceType whose
// reference Param points to the matches (revinclude) or that the matches
// point to (include). TargetType optionally narrows the target. Iterate
// marks :iterate (or :recurse): a store applies it to the matches like the
// others, and the engine then again, round by round, to what was included
// (store.Store.Include).
type Include struct {
	SourceType string
	Param      string
	TargetType string
	Iterate    bool
}

// Query is a parsed search of one resource type.
type Query struct {
	Type    string
	Clauses []Clause
	Sort    []SortKey
	// Count is the page size (default 50, max 1000); Offset the first match.
	Count, Offset int
	// After, when set (_cursor, which the gateway's next links carry),
	// starts the page after this position of the order instead of at
	// Offset (which then only numbers the page): a resource updated, and
	// so moved to the end of the default order, while a client pages
	// cannot make it skip the one after it, nor one written before the
	// position push the next page down. Its Keys are SortValues long.
	After *Cursor
	// Unordered says that the caller takes the matches in any order (a
	// conditional interaction tells none, one and several apart): without
	// Sort, a store may return them unordered, which costs less to plan
	// and to run.
	Unordered bool
	// SummaryCount is _summary=count: only the total is wanted.
	SummaryCount bool
	// Total says whether to count all matches (_total=none|estimate|accurate;
	// the gateway counts unless none).
	Total       bool
	Includes    []Include
	RevIncludes []Include
	// MaxIncluded bounds the included resources of a page (0: no bound).
	// A store may stop collecting them after MaxIncluded+1: the engine
	// refuses a page with more than MaxIncluded (search-limit-exceeded).
	MaxIncluded int
	// MaxBytes bounds the JSON of the resources of a page (0: no bound;
	// a client's search: Limits.PageBytes): a store ends the page early
	// where its matches would come to more (store.Page.Cut; the first
	// match is there whatever its size), and refuses included resources
	// that come to more (IncludedTooLarge), reading no body past the
	// bound.
	MaxBytes int
	// Types restricts a search of every type (Type "") to these types.
	Types []string
	// Compartment, if set, restricts the search to a patient's compartment
	// (see Compartment): $everything.
	Compartment *Compartment
	// Summary is _summary=true, text or data ("" for the whole resources);
	// Elements the element names of _elements. The engine applies both
	// to what it returns; the store ignores them.
	Summary  string
	Elements []string
	// Tenant restricts the search to one tenant's resources; AllTenants ("*") searches every tenant (operators).
	// The zero value "" is the default tenant, not every tenant: a query
	// that forgets to set Tenant sees only the default tenant's resources.
	// The matches, the total and the _include/_revinclude results are all
	// restricted (an included resource of another tenant is left out).
	Tenant string
	// Shared are the types whose default tenant's resources a named
	// Tenant reads as well as its own: the gateway's own published
	// conformance resources (engine.Seed keeps them there), which every
	// tenant reads. Each hop of the search is confined by the rule of its
	// own type: the matches of a search of one Type, the far end of a
	// chain or _has, each resource an _include or _revinclude adds are
	// Tenant's, or the default tenant's when their type is in Shared; a
	// search of every type (Type "") reads only Tenant's. A chain from a
	// shared type to a Patient therefore ends at Tenant's Patients, never
	// another tenant's. Nil shares nothing; AllTenants and the default
	// tenant ignore it.
	Shared []string
}

// Ordered reports whether q's matches come in its order (the default one
// unless Sort names another): all but an Unordered query without Sort. A
// store pages an ordered query by looking one match past the page
// (store.Page.More, Next).
func (q *Query) Ordered() bool { return !q.Unordered || len(q.Sort) > 0 }

// SortValues is the number of q's sort keys whose value a Cursor carries:
// those by a date parameter (not _lastUpdated or _id, which it always
// carries).
func (q *Query) SortValues() int {
	n := 0
	for _, k := range q.Sort {
		if k.Param != "_lastUpdated" && k.Param != "_id" {
			n++
		}
	}
	return n
}

// Cursor is a position in a search's order: the last match of a page, by
// the values of the order's date sort keys (Keys, one for each of
// Query.SortValues, in the order of Query.Sort: a resource's earliest
// value's start ascending, its latest value's end descending, in Unix
// milliseconds; math.MaxInt64 ascending and math.MinInt64 descending for
// a resource without one, which sorts last), its last update (Unix
// milliseconds), type and id. Its text form, "<milliseconds>.<type>.<id>"
// after "<key>~" for each date key, is the _cursor parameter's value.
type Cursor struct {
	// Order is the Query.OrderSignature of the search it comes from ("" for
	// the default order, and in cursors made before it was kept): a cursor
	// positions only in the order it was taken in.
	Order       string
	Keys        []int64
	LastUpdated int64
	Type, ID    string
}

// OrderSignature names q's order: its sort keys as _sort writes them
// ("-date,_id"), "" for the default order.
func (q *Query) OrderSignature() string {
	parts := make([]string, len(q.Sort))
	for i, k := range q.Sort {
		parts[i] = k.Param
		if k.Descending {
			parts[i] = "-" + k.Param
		}
	}
	return strings.Join(parts, ",")
}

// String is c's _cursor value: "<order>!" first when the order is not the
// default one.
func (c Cursor) String() string {
	var b strings.Builder
	if c.Order != "" {
		b.WriteString(c.Order)
		b.WriteByte('!')
	}
	for _, k := range c.Keys {
		b.WriteString(strconv.FormatInt(k, 10))
		b.WriteByte('~')
	}
	b.WriteString(strconv.FormatInt(c.LastUpdated, 10))
	return b.String() + "." + c.Type + "." + c.ID
}

// fits reports whether c positions in q's order: taken in a search of the
// same order (a cursor without one, made before cursors named it, only in
// an order of _lastUpdated and _id) with a value for each of its date
// keys, and of q's type when q searches one.
func (c *Cursor) fits(q *Query) bool {
	switch {
	case len(c.Keys) != q.SortValues():
		return false
	case q.Type != "" && c.Type != q.Type:
		return false
	case c.Order == "":
		return q.SortValues() == 0
	}
	return c.Order == q.OrderSignature()
}

// ParseCursor parses a _cursor value.
func ParseCursor(s string) (Cursor, error) {
	order, s, named := strings.Cut(s, "!")
	if !named {
		order, s = "", order
	} else if order == "" || strings.Trim(order, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-,") != "" {
		return Cursor{}, errors.New("not an order")
	}
	head, rest, ok := strings.Cut(s, ".")
	typ, id, ok2 := strings.Cut(rest, ".")
	values := strings.Split(head, "~")
	lu := values[len(values)-1]
	n, err := strconv.ParseInt(lu, 10, 64)
	switch {
	case !ok || !ok2 || err != nil || n < 0:
		return Cursor{}, errors.New("not [<key>~...]<milliseconds>.<type>.<id>")
	case !isResourceType(typ):
		return Cursor{}, errors.New("not a resource type")
	case !validID(id):
		return Cursor{}, errors.New("not a resource id")
	}
	c := Cursor{Order: order, LastUpdated: n, Type: typ, ID: id}
	for _, v := range values[:len(values)-1] {
		k, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return Cursor{}, errors.New("not a sort key's value")
		}
		c.Keys = append(c.Keys, k)
	}
	return c, nil
}

// AllTenants as Query.Tenant (or a store's history query tenant) searches
// the resources of every tenant. Only operators may use it; no resource
// belongs to a tenant of this name.
const AllTenants = "*"

// AllTenantsAudit is the tenant the AuditEvents of all-tenant callers
// (AllTenants) are kept in, whole: a search of every tenant finds them, a
// search of one tenant (the default one included) never does; each tenant
// whose data such a request touched finds its own share of the event in
// its own tenant (package auditlog). No client acts for it: a tenant that
// begins with "*" other than AllTenants is Reserved.
const AllTenantsAudit = "*all-tenants"

// NoTenant is a Reserved tenant that holds nothing: a query confined to
// it finds nothing (the compartment of a Patient no tenant holds, for an
// all-tenant caller).
const NoTenant = "*none"

// Reserved reports whether no client may act for tenant t: it begins with
// "*" and is not AllTenants (AllTenantsAudit and any later such name).
func Reserved(t string) bool { return len(t) > 0 && t[0] == '*' && t != AllTenants }

// TenantName names tenant t in a message: quoted, and the default tenant
// as `the default tenant ("")`, which a bare "" does not say.
func TenantName(t string) string {
	if t == "" {
		return `the default tenant ("")`
	}
	return fmt.Sprintf("%q", t)
}
