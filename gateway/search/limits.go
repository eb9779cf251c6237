package search

import (
	"fmt"
	"maps"
	"net/url"
	"slices"
	"strings"
)

// Limits bound the work one search may ask of the database. Every parse
// checks them before it looks at any value, so a search beyond them is
// refused (search-limit-exceeded, a 400) before it costs anything: 300
// repetitions of name= would otherwise become 300 joined conditions. Zero
// fields take the defaults; docs/security.md lists them.
type Limits struct {
	// Params bounds the parameters of one search, every occurrence
	// counted (name=a&name=b is two), result parameters and includes too.
	Params int
	// Repeats bounds the occurrences of one parameter (date=ge..&date=le..
	// is two); includes are bounded by Includes instead.
	Repeats int
	// Values bounds the comma-separated (ORed) values of one occurrence.
	Values int
	// ChainDepth bounds the links of a chained parameter (subject.name is
	// one) or reverse chain (_has:Observation:patient:code is one). The
	// gateway runs chains of one link; deeper ones than this are refused as
	// too costly, deeper ones within it as unsupported.
	ChainDepth int
	// Includes bounds the _include and _revinclude parameters of a search.
	Includes int
	// Included bounds the resources _include and _revinclude add to one
	// page; the engine refuses a page that would carry more (the store
	// gets it as Query.MaxIncluded).
	Included int

	// Base is not a bound: it is the server's own FHIR base URL, the one
	// its fullUrls are made of (no trailing slash; "" when unknown). A
	// reference value that is an absolute URL below it, and conditional
	// criteria written [Base]/Type?criteria, are read as the relative form
	// they name (LocalReference), as the stored references they are to
	// match are relative (search.html#reference).
	Base string

	// IncludeRounds bounds the further rounds of _include:iterate and
	// _revinclude:iterate (each applied again to what the round before
	// included); the engine stops there and says so in the searchset.
	IncludeRounds int

	// PageBytes bounds the JSON of the resources one page of a search,
	// a history or a $everything holds (Query.MaxBytes): a page ends
	// early, with a next link, where its matches would come to more, and
	// included resources that come to more are refused. An attacker's
	// review: eight Observations of 3.9 MB each made one read-only
	// search a 117 MB answer and the gateway 760 MB larger, with no
	// bound but _count (1,000) times the largest body (16 MiB).
	PageBytes int
}

// The default Limits.
const (
	DefaultMaxParams     = 30
	DefaultMaxRepeats    = 5
	DefaultMaxValues     = 100
	DefaultMaxChainDepth = 1
	DefaultMaxIncludes   = 10
	DefaultMaxIncluded   = 1000
	DefaultIncludeRounds = 10
	DefaultPageBytes     = 8 << 20
)

// MaxScanValues bounds the values, in all, of the parameters of one search
// whose modifier matches text anywhere in a value (token :text, string
// :contains): each is a LIKE '%v%' that reads every index entry of the
// parameter rather than an index range, so 500 of them on 9,000
// Observations took 0.6 s and four clients sending them slowed everyone's
// searches (probe p30 F5). The other modifiers use an index: :missing and
// :not one subquery each, uri :above and :below an index range or list.
const MaxScanValues = 10

// scanning tells whether key (name[:modifier][.chain...]) ends in a
// modifier whose values are matched by scanning (MaxScanValues).
func scanning(key string) bool {
	return strings.HasSuffix(key, ":text") || strings.HasSuffix(key, ":contains")
}

// withDefaults fills in zero fields.
func (l Limits) withDefaults() Limits {
	def := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	def(&l.Params, DefaultMaxParams)
	def(&l.Repeats, DefaultMaxRepeats)
	def(&l.Values, DefaultMaxValues)
	def(&l.ChainDepth, DefaultMaxChainDepth)
	def(&l.Includes, DefaultMaxIncludes)
	def(&l.Included, DefaultMaxIncluded)
	def(&l.IncludeRounds, DefaultIncludeRounds)
	def(&l.PageBytes, DefaultPageBytes)
	return l
}

// WithDefaults returns l with its zero fields set to the defaults.
func (l Limits) WithDefaults() Limits { return l.withDefaults() }

// Parse is the package's Parse within l; with lenient it also returns the
// keys it ignored, like ParseLenient. The query's MaxIncluded is
// l.Included; its MaxBytes is left to the caller (a client's search sets
// l.PageBytes; the gateway's own searches, which read every match, none).
func (l Limits) Parse(resourceType string, params url.Values, lenient bool) (*Query, []string, error) {
	q, ignored, err := parse(resourceType, params, lenient, false, l)
	if err != nil {
		return nil, nil, err
	}
	q.MaxIncluded = l.withDefaults().Included
	return q, ignored, nil
}

// checkLimits refuses params beyond l (see Limits), and more than
// MaxScanValues values of scanning modifiers, counting without parsing any
// value.
func (ps *parser) checkLimits(params url.Values, l Limits) *Error {
	total, includes, scans := 0, 0, 0
	for _, key := range slices.Sorted(maps.Keys(params)) {
		vals := params[key]
		total += len(vals)
		name, _, _ := strings.Cut(key, ":")
		if name == "_include" || name == "_revinclude" {
			includes += len(vals)
			continue
		}
		if len(vals) > l.Repeats {
			return ps.limitf(key, "%s is given %d times; at most %d are allowed", ps.named(key), len(vals), l.Repeats)
		}
		for _, v := range vals {
			if n := strings.Count(v, ",") + 1; n > l.Values && len(splitEscaped(v, ',')) > l.Values {
				return ps.limitf(key, "a value of %s lists more than %d alternatives", ps.named(key), l.Values)
			}
		}
		if scanning(key) {
			for _, v := range vals {
				scans += len(splitEscaped(v, ','))
			}
			if scans > MaxScanValues {
				return ps.limitf(key, "%s matches text anywhere in a value (:text, :contains), which reads every entry "+
					"instead of using an index: a search may have at most %d such values in all; "+
					"search by code or by the start of the text (no modifier) instead", ps.named(key), MaxScanValues)
			}
		}
		if depth := strings.Count(key, ".") + strings.Count(key, "_has:"); depth > l.ChainDepth {
			links := "links"
			if l.ChainDepth == 1 {
				links = "link"
			}
			return ps.limitf(key, "a chained parameter (or _has) may have at most %d %s (search.maxChainDepth): search "+
				"the resources one link away first, then by their ids", l.ChainDepth, links)
		}
	}
	if total > l.Params {
		return ps.limitf("", "a search may have at most %d parameters (this one has %d)", l.Params, total)
	}
	if includes > l.Includes {
		return ps.limitf("", "a search may have at most %d _include and _revinclude parameters", l.Includes)
	}
	return nil
}

// limitf builds a search-limit-exceeded error about key ("" for the whole
// search).
func (ps *parser) limitf(key, format string, args ...any) *Error {
	e := ps.errorf(key, RuleLimitExceeded, format, args...)
	e.Message += "; narrow the search or split it"
	return e
}

// IncludedTooLarge is the search-limit-exceeded error of a page whose
// included resources come to more than limit bytes of JSON
// (Query.MaxBytes).
func IncludedTooLarge(limit int) *Error {
	return &Error{Rule: RuleLimitExceeded, Message: fmt.Sprintf("the resources _include and _revinclude add to the "+
		"page come to more than %s of JSON; ask for fewer matches per page with _count, or search them with pages of "+
		"their own (a _revinclude's: Type?param=Type/id of the match)", Bytes(int64(limit)))}
}

// Bytes is n bytes for a person: "1 GiB", "8 MiB", "512 KiB", "100 bytes"
// (a multiple of the unit, else bytes).
func Bytes(n int64) string {
	switch {
	case n >= 1<<30 && n%(1<<30) == 0:
		return fmt.Sprintf("%d GiB", n>>30)
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%d MiB", n>>20)
	case n >= 1<<10 && n%(1<<10) == 0:
		return fmt.Sprintf("%d KiB", n>>10)
	}
	return fmt.Sprintf("%d bytes", n)
}

// LimitError is the search-limit-exceeded error for a page that would
// carry more than limit included resources.
func LimitError(limit int) *Error {
	return &Error{Rule: RuleLimitExceeded, Message: fmt.Sprintf("the page would include more than %d resources "+
		"(_include, _revinclude); ask for fewer matches per page with _count, or include less", limit)}
}
