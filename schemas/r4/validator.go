package r4

import (
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
)

// Options configure a Validator.
type Options struct {
	// MaxDepth is the maximum nesting of JSON objects and arrays; 0 means
	// DefaultMaxDepth. Values above MaxAllowedDepth are lowered to it.
	MaxDepth int
}

// Depth limits.
const (
	DefaultMaxDepth = 100
	MaxAllowedDepth = 10000
)

// Validator checks FHIR R4 JSON resources against the R4 structure
// definitions. It is safe for concurrent use; build it once with New.
type Validator struct {
	s        *schema
	maxDepth int
	pool     sync.Pool    // *walker
	kept     chan *walker // walkers the garbage collector does not take (see put)
}

// New returns a Validator. It loads the embedded definitions on first use
// (once per process); it panics only if those definitions are corrupt,
// which would be a build defect.
func New(opts Options) *Validator {
	s, err := loadSchema()
	if err != nil {
		panic("r4: embedded FHIR definitions are corrupt: " + err.Error())
	}
	d := opts.MaxDepth
	if d <= 0 {
		d = DefaultMaxDepth
	}
	d = min(d, MaxAllowedDepth)
	v := &Validator{s: s, maxDepth: d, kept: make(chan *walker, runtime.GOMAXPROCS(0))}
	v.pool.New = func() any { return &walker{s: s} }
	return v
}

// ResourceTypes returns the sorted names of the 146 R4 resource types.
func ResourceTypes() []string {
	return slices.Clone(resourceTypeNames[:])
}

// IsResourceType reports whether name is an R4 resource type.
func IsResourceType(name string) bool {
	_, ok := slices.BinarySearch(resourceTypeNames[:], name)
	return ok
}

// KnownType reports whether name is an R4 resource type.
func (v *Validator) KnownType(name string) bool {
	_, ok := v.s.resources[name]
	return ok
}

// TypeHint is "; the nearest resource type is 'Patient'" for a name that
// is no R4 resource type and looks like a misspelling of one ("Patinet"),
// "" otherwise: a message about an unknown type ends with it.
func (v *Validator) TypeHint(name string) string { return v.s.typeHint([]byte(name)) }

// Validate checks a whole JSON document; its resourceType selects the
// definition it is checked against.
func (v *Validator) Validate(doc []byte) *Result {
	return v.run(doc, "")
}

// ValidateAs checks doc like Validate and also reports
// "resource-type-mismatch" when the document's resourceType is not
// resourceType (the document is then still checked against its own type).
func (v *Validator) ValidateAs(doc []byte, resourceType string) *Result {
	if resourceType == "" || !v.KnownType(resourceType) {
		return &Result{Issues: []Issue{newIssue(SeverityError, "resource-type-unknown", "",
			"the requested resource type is not an R4 resource type")}}
	}
	return v.run(doc, resourceType)
}

// newIssue builds an Issue; rules without an entry in ruleCode are FHIR
// invariants.
func newIssue(sev Severity, rule, expr, msg string) Issue {
	code, ok := ruleCode[rule]
	if !ok {
		code = "invariant"
	}
	return Issue{Severity: sev, Code: code, Rule: rule, Expression: expr, Message: msg}
}

// run validates doc; want is the expected resource type or "".
func (v *Validator) run(doc []byte, want string) *Result { return v.runThen(doc, want, false, nil) }

// runThen is run that, when the document is valid, calls then with the
// walker before it goes back to the pool (its tape still that of doc).
// strict refuses what is tolerated with a warning only because the HL7
// validator accepts it but is not FHIR JSON (a decimal written as a JSON
// string): the decoded form of a document is stored and served.
func (v *Validator) runThen(doc []byte, want string, strict bool, then func(w *walker)) *Result {
	return v.runIn(doc, want, strict, 0, then)
}

// runIn is runThen for a document found inside bundles enclosing Bundles
// (one, for a Bundle's entry checked on its own: what only a Bundle may
// hold, a conditional reference, is then allowed).
func (v *Validator) runIn(doc []byte, want string, strict bool, bundles int, then func(w *walker)) *Result {
	res := &Result{}
	if len(doc) > maxDocSize {
		res.Issues = append(res.Issues, newIssue(SeverityError, "too-costly", "", "the document is too large to validate"))
		return res
	}
	if isBlank(doc) {
		res.Issues = append(res.Issues, newIssue(SeverityError, "json-empty", "", "the document is empty"))
		return res
	}
	var w *walker
	select {
	case w = <-v.kept:
	default:
		w = v.pool.Get().(*walker)
	}
	defer v.put(w)
	w.p.maxDepth = v.maxDepth
	if !w.p.parse(doc) {
		e := w.p.err
		res.Issues = append(res.Issues, newIssue(SeverityError, e.rule, "",
			e.msg+" at byte offset "+strconv.Itoa(e.offset)))
		return res
	}
	w.start(doc)
	w.strict, w.bundles = strict, bundles
	w.document(want, res)
	res.Issues = w.finish()
	if then != nil && res.Valid() {
		then(w)
	}
	return res
}

// put returns a walker for reuse, without its tape if that grew unusually
// large. Up to GOMAXPROCS walkers with tapes of moderate size are kept
// for good: a sync.Pool is emptied by every other garbage collection, and
// a Bundle of a few hundred resources then grew a new tape of some 100,000
// nodes by doubling each time (7% of what storing Synthea Bundles
// allocated).
func (v *Validator) put(w *walker) {
	w.doc = nil
	w.issues = nil
	if cap(w.p.nodes) > 1<<20 {
		w.p.nodes = nil
	}
	w.p.data = nil
	// Nothing of the document stays with the walker, which may be kept
	// for good: the unescaped strings' scratch and the references and
	// contained ids of its resources are cleared (a long scratch dropped).
	if cap(w.buf) > maxKeptBuf {
		w.buf = nil
	}
	clear(w.buf[:cap(w.buf)])
	for _, c := range w.ctxPool {
		clear(c.contained[:cap(c.contained)])
		clear(c.refs[:cap(c.refs)])
	}
	if cap(w.p.nodes) <= maxKeptNodes {
		select {
		case v.kept <- w:
			return
		default:
		}
	}
	v.pool.Put(w)
}

// maxKeptNodes bounds the tape of a walker kept for good (24 bytes a
// node: 6 MiB), maxKeptBuf the scratch buffer of any walker put back.
const (
	maxKeptNodes = 1 << 18
	maxKeptBuf   = 64 << 10
)

func isBlank(doc []byte) bool {
	for _, c := range doc {
		switch c {
		case ' ', '\t', '\n', '\r':
		default:
			return false
		}
	}
	return true
}

// nativeRecordAdvice follows the missing resourceType of a document with
// a source and a patient, the members every native record has.
const nativeRecordAdvice = ": this looks like a clinic's native record (it has a source and a patient), not a FHIR resource; " +
	"check it by mapping it: `ketamine-gateway map --kind KIND FILE`, or POST it to /ingest/{kind}?dryRun=true"

// document validates the root value once the tape is built.
func (w *walker) document(want string, res *Result) {
	root := &w.nodes[0]
	if root.kind != kObject {
		w.add(SeverityError, "element-type", want, "a FHIR resource must be a JSON object")
		return
	}
	rt := w.member(0, "resourceType")
	if rt < 0 {
		msg := "the resource has no resourceType"
		if w.member(0, "source") >= 0 && w.member(0, "patient") >= 0 {
			// A clinic's native record sent where FHIR is read (p45 F3):
			// it is checked by mapping it, which says what is wrong in
			// the record's own terms.
			msg += nativeRecordAdvice
		}
		w.add(SeverityError, "element-required", want, msg)
		return
	}
	if w.nodes[rt].kind != kString {
		w.add(SeverityError, "element-type", want, "resourceType must be a JSON string")
		return
	}
	def := w.s.resources[string(w.str(rt))]
	if def == nil {
		w.add(SeverityError, "resource-type-unknown", want, w.s.unknownTypeMessage(w.str(rt)))
		return
	}
	res.ResourceType = def.name
	if want != "" && want != def.name {
		w.add(SeverityError, "resource-type-mismatch", def.name,
			"the resource is "+article(def.name)+" "+def.name+" but "+article(want)+" "+want+" was expected")
	}
	w.root = def.name
	w.resource(def, 0, false)
}

// article is the indefinite article of an English word (a Patient, an
// Observation).
func article(word string) string {
	if word != "" && strings.ContainsRune("AEIOUaeio", rune(word[0])) { // "an instant", "a uri"
		return "an"
	}
	return "a"
}
