package search

import (
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/text/unicode/norm"
)

// maxWalkDepth bounds the walk of the gateway's own patient parameter. Decoded JSON is
// a tree, but a caller-built map could be cyclic.
const maxWalkDepth = 1000

// IndexVersion is the version of what Extract makes of a resource, as the
// stores keep it. Raise it with any change that makes the rows of
// resources written before differ from what Extract makes of them now (a
// parameter added or indexed differently, rows no longer written): the
// stores record the version their rows were written with, serve warns
// while it is older than this, and the reindex command rewrites the rows
// and records this one.
//
//	1  the builds before SQLite's schema 11 and PostgreSQL's 12
//	2  an Observation's (and six other types') patient kept as its
//	   subject's rows of type Patient, a Provenance's as its target's;
//	   references typed by Reference.type
//	3  an absolute URL reference names no local resource: its row has the
//	   URL and the type its /Type/id tail gives, no id (an Observation of
//	   another server's Patient/77 was this server's Patient/77's)
//	4  a code element's token carries the code system its R4 required
//	   binding implies (Patient.gender: administrative-gender); a
//	   Quantity's row its comparator ("<5" is the range below 5)
//	5  strings and token texts are folded by Unicode decomposition
//	   (Nguyễn -> nguyen, Lǚ -> lu, NFC and NFD alike), and punctuation
//	   and symbols other than apostrophes are a word boundary
//	   (Smith-Jones -> "smith jones", was "smithjones")
//	6  Practitioner, Organization and Location are indexed by identifier
//	   and name (R4's parameters); an identifier's type codings have
//	   rows of their own (identifier:of-type)
//	7  the patient parameter of the 56 types that had the gateway's "any
//	   reference to a Patient" is R4's (MedicationStatement.subject,
//	   Immunization.patient, Task.for, ...): a Patient the resource only
//	   names as informant, asserter or performer is no longer its
//	   patient; Group, Schedule and SupplyRequest are indexed by R4's
//	   member, actor and subject
//	8  a date, dateTime or instant in year 0001 or 9999 that falls
//	   outside them in UTC (9999-12-31T23:59:59-14:00) has a date row,
//	   clamped to the index's ends; it had none, so no date search found it
//	9  DetectedIssue is indexed by R4's author, code, identified,
//	   identifier and implicated (it had only patient), for the
//	   DetectedIssues the mapping writes
//	10 strings and token texts drop only accents and are recomposed
//	   (NFC): a Hangul syllable was its jamo (이 matched 임), a kana lost
//	   its voicing mark (が was か), Indic and Thai vowel signs were
//	   dropped; a rewritten resource's conditional keys of search
//	   criteria, folded the old way, are dropped by the pass; a leap
//	   second (23:59:60) is its minute's last instant, in its own day (it
//	   was the next day's first second); a string's Exact value (:exact)
//	   is its NFC form, so that text composed otherwise (NFD) is one text
//	11 the everyday R4 parameters are added: Observation encounter,
//	   value-concept, value-string; Condition category, clinical-status,
//	   encounter, onset-date, verification-status; Encounter class,
//	   participant, service-provider, status, type (practitioner is
//	   participant's rows of type Practitioner); Procedure category,
//	   encounter; MedicationAdministration context, medication,
//	   performer, status; AdverseEvent actuality, category; Patient
//	   active, address (and -city, -postalcode, -state), deceased,
//	   email, general-practitioner, organization, phone, telecom;
//	   DiagnosticReport and Immunization their R4 code, date, status, ...
const IndexVersion = 11

// Extract returns the de-duplicated index entries of a resource of
// resourceType for every parameter Params lists, in parameter-name order. The
// resource is a decoded JSON object (json.Decoder.UseNumber: numbers are
// json.Number; float64 is accepted too). Elements of an unexpected JSON type
// are skipped, so Extract never panics and never fails: a value it cannot
// read is just not indexed. It returns nil for an unknown resource type.
//
// How elements index (see Entry):
//   - token: Identifier (system, value; Text = type.text), Coding (system,
//     code; Text = display), CodeableConcept (one entry per coding, Text = its
//     text or else the coding's display; a display that differs from the text
//     adds a text-only entry; a concept with only text gives one text-only
//     entry: System and Code empty), code (Code, and as System the code
//     system the element's R4 required binding implies for it, if any: see
//     CodeSystem), boolean/id/string (Code only), ContactPoint (value).
//     Text is Normalize()d, so token :text values must be too.
//   - string: Norm = Normalize(value), Exact = the value in NFC; a HumanName gives one
//     entry per family, given, prefix, suffix and text; an Address per line,
//     city, district, state, postalCode, country and text.
//   - date: date, dateTime, instant, Period (an open end is MinTime/MaxTime),
//     Timing (each event, and repeat.boundsPeriod) as a [Low, High] UTC range
//     of the value's precision; a value without zone is taken as UTC.
//   - reference: "Type/id" (and "Type/id/_history/n") sets RefType/RefID;
//     an absolute URL or urn sets RefURL, and an absolute URL ending in
//     /Type/id (optionally /_history/n) also sets RefType from that tail,
//     never RefID: it names a resource of another server, whose ids are not
//     this one's (the engine rewrites references on this server's own base
//     to relative ones before storing, fhirwire.Rewriter.Local);
//     "#contained" references are skipped. Reference.
//     identifier adds a token entry under the same parameter name (for
//     :identifier). A reference whose type (from the reference, else from
//     Reference.type) is known and not among the parameter's Targets is
//     skipped; for the patient parameters the type must be known to be
//     Patient, so a bare urn:uuid without Reference.type is not a patient.
//     RefType is that type, from Reference.type when the literal reference
//     names none. A patient parameter that ReferenceRows keeps as another
//     parameter's rows gets no entry for a literal reference (its
//     Reference.identifier still gives one).
//   - quantity: Quantity value with System/Code = unit system/code, Unit,
//     and Comparator (one of R4's four, else none).
//   - the gateway's own patient parameter of the types R4 gives none (see
//     Lookup) walks the whole resource for Reference objects pointing to a
//     Patient.
func Extract(resourceType string, resource map[string]any) []Entry {
	return extractDefs(defs(resourceType), resource)
}

// MaxEntries is the most search index entries one resource a client
// writes may have (ExtractAtMost). The largest resources of real patient
// data have some 30 (a Synthea Patient), a session record's some 14 each;
// one with hundreds of thousands of values (700,000 names in a 14.6 MB
// Patient: an attacker's review) took 36 s of the database's only write
// lane, 285 MB of database and 2.6 GB of memory.
const MaxEntries = 10_000

// TooManyEntries is ExtractAtMost's error for a resource with more index
// entries than its limit.
type TooManyEntries struct {
	Type  string
	ID    string // the resource's id, when its writer knows it (store.NewVersionAtMost)
	Limit int
	// Param is the search parameter with the most entries when the count
	// passed the limit, Path its first element ("Patient.name.family";
	// the type alone for a parameter that walks the whole resource).
	Param, Path string
}

func (e *TooManyEntries) Error() string {
	return fmt.Sprintf("this %s has more than %d values to index for search (most of them of the search parameter "+
		"%s, at %s): more than any clinical resource has; split it, or keep such values in an element the gateway "+
		"does not index (a note, an extension)", e.Type, e.Limit, e.Param, e.Path)
}

// ExtractAtMost is Extract of a resource with at most limit entries; past
// it, it stops and returns a *TooManyEntries.
func ExtractAtMost(resourceType string, resource map[string]any, limit int) ([]Entry, error) {
	ds := defs(resourceType)
	x := extractWith(ds, resource, limit)
	if x.over == nil {
		return x.result(), nil
	}
	counts := map[string]int{}
	most := x.over
	for _, e := range x.out {
		counts[e.Param]++
	}
	for _, d := range ds {
		if counts[d.name] > counts[most.name] {
			most = &d
		}
	}
	at := resourceType
	if len(most.paths) > 0 && most.paths[0].p != "" {
		at += "." + most.paths[0].p
	}
	return nil, &TooManyEntries{Type: resourceType, Limit: limit, Param: most.name, Path: at}
}

// extractParam is Extract of the one parameter name of resourceType.
func extractParam(resourceType, name string, resource map[string]any) []Entry {
	for _, d := range defs(resourceType) {
		if d.name == name {
			return extractDefs([]def{d}, resource)
		}
	}
	return nil
}

// extractDefs extracts the index entries of the parameters ds.
func extractDefs(ds []def, resource map[string]any) []Entry {
	return extractWith(ds, resource, 0).result()
}

// extractWith extracts the entries of the parameters ds, at most limit
// (0: any number; past it, x.over is set).
func extractWith(ds []def, resource map[string]any, limit int) *extractor {
	x := &extractor{limit: limit}
	if ds == nil || resource == nil {
		return x
	}
	// Most resources have a few to a dozen entries: room for eight saves
	// the slice's first regrowths (an Entry is some 250 bytes).
	x.out = make([]Entry, 0, 8)
	x.extract(ds, resource)
	return x
}

// result is the entries extracted, nil for none (as before the room was
// made).
func (x *extractor) result() []Entry {
	if len(x.out) == 0 {
		return nil
	}
	return x.out
}

// extract appends the entries of the parameters ds to x.out, up to its
// limit.
func (x *extractor) extract(ds []def, resource map[string]any) {
	for _, d := range ds {
		x.d, x.start = d, len(x.out)
		clear(x.seen)
		if d.compartment {
			x.walk(resource, 0)
			continue
		}
		for _, pp := range d.paths {
			if pp.k == kDeceased {
				x.deceased(resource)
				continue
			}
			for _, v := range follow(resource, pp.p) {
				if x.over != nil {
					return
				}
				x.value(pp, v)
			}
		}
		if d.ext != "" {
			for _, e := range follow(resource, "extension") {
				if m, ok := e.(map[string]any); ok && m["url"] == d.ext {
					x.value(path{k: kCode}, m["valueString"])
				}
			}
		}
		if x.over != nil {
			return
		}
	}
}

// follow returns the values at a dotted path, flattening arrays at every
// step.
func follow(root map[string]any, dotted string) []any {
	cur := []any{root}
	for step := range strings.SplitSeq(dotted, ".") {
		var next []any
		for _, n := range cur {
			if m, ok := n.(map[string]any); ok {
				next = appendFlat(next, m[step])
			}
		}
		cur = next
	}
	return cur
}

// appendFlat appends v, or the elements of v if it is an array.
func appendFlat(out []any, v any) []any {
	switch t := v.(type) {
	case nil:
	case []any:
		for _, e := range t {
			if e != nil {
				out = append(out, e)
			}
		}
	default:
		out = append(out, v)
	}
	return out
}

// extractor collects the entries of one resource.
type extractor struct {
	d     def
	out   []Entry
	start int            // where d's entries begin in out
	seen  map[Entry]bool // d's entries, once it has more than fewEntries
	// limit, when not 0, is the most entries out may hold; over is the
	// parameter whose entry passed it (then no more are added).
	limit int
	over  *def
}

// fewEntries is how many entries of one parameter add compares a new one
// with one by one; beyond, it keeps them in a map (an Entry is large to
// hash, and most parameters have one or two entries).
const fewEntries = 16

// add appends e as an entry of the current parameter unless it has it.
func (x *extractor) add(e Entry) {
	x.addAs(x.d.name, e)
}

// addAs is add with the entry's Param given.
func (x *extractor) addAs(param string, e Entry) {
	e.Param = param
	cur := x.out[x.start:]
	if len(cur) < fewEntries {
		for i := range cur {
			if cur[i] == e {
				return
			}
		}
	} else {
		if len(x.seen) == 0 {
			if x.seen == nil {
				x.seen = make(map[Entry]bool, 2*fewEntries)
			}
			for _, c := range cur {
				x.seen[c] = true
			}
		}
		if x.seen[e] {
			return
		}
		x.seen[e] = true
	}
	if x.limit > 0 && len(x.out) >= x.limit {
		if x.over == nil {
			d := x.d
			x.over = &d
		}
		return
	}
	x.out = append(x.out, e)
}

// identifierTypes adds, for :of-type (search.html#token), an entry of
// the parameter's of-type rows (OfTypeParam) per coding of an
// identifier's type: System the coding's system and code joined by a
// space (a uri has no white space), Code the identifier's value.
func (x *extractor) identifierTypes(typ map[string]any, value string) {
	if value == "" {
		return
	}
	codings, _ := typ["coding"].([]any)
	for _, c := range codings {
		cm, _ := c.(map[string]any)
		if code := getStr(cm, "code"); code != "" {
			x.addAs(OfTypeParam(x.d.name), Entry{Type: TypeToken, System: OfTypeSystem(getStr(cm, "system"), code), Code: value})
		}
	}
}

// OfTypeParam is the name under which the index keeps the rows of token
// parameter name's :of-type modifier (a name no parameter has).
func OfTypeParam(name string) string { return name + ":of-type" }

// OfTypeSystem is the System of an :of-type row or value: the identifier
// type's coding system and code.
func OfTypeSystem(system, code string) string { return system + " " + code }

func (x *extractor) token(system, code, text string) {
	if system == "" && code == "" && text == "" {
		return
	}
	x.add(Entry{Type: TypeToken, System: system, Code: code, Text: text})
}

func (x *extractor) str(s string) {
	if s != "" {
		x.add(StringEntry(s))
	}
}

// StringEntry is the index entry of the string s: Norm its Normalize,
// Exact its NFC form (:exact compares canonically equivalent text as one).
// Every writer of string entries (Extract, the audit's Render) calls it.
func StringEntry(s string) Entry {
	return Entry{Type: TypeString, Norm: Normalize(s), Exact: norm.NFC.String(s)}
}

func (x *extractor) dateValue(v any) {
	if s, ok := v.(string); ok {
		if lo, hi, ok := DateRange(s); ok {
			x.add(Entry{Type: TypeDate, Low: lo, High: hi})
		}
	}
}

func (x *extractor) period(m map[string]any) {
	start, sok := m["start"].(string)
	end, eok := m["end"].(string)
	if !sok && !eok {
		return
	}
	lo, hi := MinTime(), MaxTime()
	var sHigh, eLow time.Time
	if sok {
		l, h, ok := DateRange(start)
		if !ok {
			return
		}
		lo, sHigh = l, h
	}
	if eok {
		l, h, ok := DateRange(end)
		if !ok {
			return
		}
		eLow, hi = l, h
	}
	if sok && eok && lo.After(hi) { // invalid (per-1): index what it spans
		lo, hi = eLow, sHigh
	}
	x.add(Entry{Type: TypeDate, Low: lo, High: hi})
}

// value indexes one element at pp.
func (x *extractor) value(pp path, v any) {
	m, _ := v.(map[string]any)
	switch pp.k {
	case kIdentifier:
		if sys, val := getStr(m, "system"), getStr(m, "value"); sys != "" || val != "" {
			x.token(sys, val, Normalize(getStr(getMap(m, "type"), "text")))
			x.identifierTypes(getMap(m, "type"), val)
		}
	case kCoding:
		if sys, code := getStr(m, "system"), getStr(m, "code"); sys != "" || code != "" {
			x.token(sys, code, Normalize(getStr(m, "display")))
		}
	case kConcept:
		x.concept(m)
	case kCode:
		switch t := v.(type) {
		case string:
			x.token(pp.codes.CodeSystem(pp.key, t), t, "")
		case bool:
			x.token("", strconv.FormatBool(t), "")
		}
	case kContactPoint:
		if pp.system == "" || getStr(m, "system") == pp.system {
			x.token("", getStr(m, "value"), "")
		}
	case kString:
		if s, ok := v.(string); ok {
			x.str(s)
		}
	case kHumanName:
		for _, key := range []string{"family", "given", "prefix", "suffix", "text"} {
			for _, s := range getStrs(m, key) {
				x.str(s)
			}
		}
	case kAddress:
		for _, key := range []string{"line", "city", "district", "state", "postalCode", "country", "text"} {
			for _, s := range getStrs(m, key) {
				x.str(s)
			}
		}
	case kDate:
		x.dateValue(v)
	case kPeriod:
		if m != nil {
			x.period(m)
		}
	case kTiming:
		for _, e := range getStrs(m, "event") {
			x.dateValue(e)
		}
		if b := getMap(getMap(m, "repeat"), "boundsPeriod"); b != nil {
			x.period(b)
		}
	case kReference:
		if m != nil {
			x.reference(m)
		}
	case kCanonical:
		if s, ok := v.(string); ok && s != "" {
			x.add(Entry{Type: TypeReference, RefURL: s})
		}
	case kURI:
		if s, ok := v.(string); ok && s != "" {
			x.add(Entry{Type: TypeURI, Exact: s})
		}
	case kQuantity:
		if n, ok := number(m["value"]); ok {
			e := Entry{Type: TypeQuantity, Number: n, System: getStr(m, "system"),
				Code: getStr(m, "code"), Unit: getStr(m, "unit")}
			if c := getStr(m, "comparator"); IsComparator(c) {
				e.Comparator = c
			}
			x.add(e)
		}
	case kNumber:
		if n, ok := number(v); ok {
			x.add(Entry{Type: TypeNumber, Number: n})
		}
	}
}

// concept indexes a CodeableConcept.
func (x *extractor) concept(m map[string]any) {
	text := Normalize(getStr(m, "text"))
	coded := false
	for _, c := range appendFlat(nil, m["coding"]) {
		cm, _ := c.(map[string]any)
		sys, code, disp := getStr(cm, "system"), getStr(cm, "code"), Normalize(getStr(cm, "display"))
		if sys == "" && code == "" {
			x.token("", "", disp)
			continue
		}
		coded = true
		t := text
		if t == "" {
			t = disp
		} else if disp != "" && disp != text {
			x.token("", "", disp)
		}
		x.token(sys, code, t)
	}
	if !coded {
		x.token("", "", text)
	}
}

// deceased indexes R4's "Patient.deceased.exists() and Patient.deceased
// != false": true for deceasedBoolean true or any deceasedDateTime, false
// otherwise (also when neither is given).
func (x *extractor) deceased(resource map[string]any) {
	b, _ := resource["deceasedBoolean"].(bool)
	_, dated := resource["deceasedDateTime"].(string)
	x.token("", strconv.FormatBool(b || dated), "")
}

// reference indexes a Reference: its literal reference and its identifier.
func (x *extractor) reference(m map[string]any) {
	typ := typeName(getStr(m, "type"))
	e, literal := ReferenceEntry(getStr(m, "reference"))
	if e.RefType != "" {
		typ = e.RefType
	}
	if !x.accepts(typ) {
		return
	}
	e.RefType = typ // Reference.type types a literal that names none ("urn:uuid:…")
	if literal && x.d.rowsOf == "" {
		x.add(e) // else the reference is rowsOf's row of type Patient
	}
	if idm := getMap(m, "identifier"); idm != nil {
		if sys, val := getStr(idm, "system"), getStr(idm, "value"); sys != "" || val != "" {
			x.add(Entry{Type: TypeToken, System: sys, Code: val})
		}
	}
}

// accepts reports whether a reference to type t (empty: unknown) belongs to
// the current parameter.
func (x *extractor) accepts(t string) bool {
	switch {
	case x.d.only != "":
		return t == x.d.only
	case x.d.compartment:
		return t == "Patient"
	}
	return t == "" || len(x.d.targets) == 0 || slices.Contains(x.d.targets, t)
}

// walk looks for Patient references anywhere below v (keys in sorted order,
// so the entries come out deterministically).
func (x *extractor) walk(v any, depth int) {
	if depth > maxWalkDepth {
		return
	}
	switch t := v.(type) {
	case map[string]any:
		if _, ok := t["reference"].(string); ok {
			x.reference(t)
		} else if _, ok := t["type"].(string); ok && getMap(t, "identifier") != nil {
			x.reference(t)
		}
		// Only objects and arrays can hold a reference: the other
		// members are not visited, and the members' order matters only
		// when more than one can (most objects, such as a Coding or a
		// Quantity, have none).
		var buf [8]string
		keys := buf[:0]
		for k, v := range t {
			switch v.(type) {
			case map[string]any, []any:
				keys = append(keys, k)
			}
		}
		if len(keys) > 1 {
			slices.Sort(keys)
		}
		for _, k := range keys {
			x.walk(t[k], depth+1)
		}
	case []any:
		for _, e := range t {
			x.walk(e, depth+1)
		}
	}
}

// parseReference splits a literal reference. A relative "Type/id" (or
// "Type/id/_history/n") of a known type gives rt and id; an absolute URL or
// urn gives url, plus rt and id when it ends in /Type/id[/_history/n];
// anything else is returned as url.
func parseReference(s string) (rt, id, url string) {
	absolute := strings.HasPrefix(s, "urn:") || strings.Contains(s, "://")
	rest := s
	if absolute {
		url = s
		if i := strings.IndexAny(rest, "?#"); i >= 0 {
			rest = rest[:i]
		}
	}
	segs := strings.Split(rest, "/")
	if n := len(segs); n >= 4 && segs[n-2] == "_history" {
		segs = segs[:n-2]
	}
	n := len(segs)
	if n < 2 || (!absolute && n != 2) {
		return "", "", s
	}
	if isResourceType(segs[n-2]) && validID(segs[n-1]) {
		if absolute {
			return segs[n-2], "", url // another server's: no local id
		}
		return segs[n-2], segs[n-1], url
	}
	return "", "", s
}

// validID reports whether s is a FHIR id: [A-Za-z0-9\-\.]{1,64}.
func validID(s string) bool {
	if len(s) == 0 || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(isDigit(c) || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '-' || c == '.') {
			return false
		}
	}
	return true
}

// typeName returns the resource type a Reference.type names ("Patient" or
// "http://hl7.org/fhir/StructureDefinition/Patient"), or "".
func typeName(uri string) string {
	if i := strings.LastIndexByte(uri, '/'); i >= 0 {
		uri = uri[i+1:]
	}
	if isResourceType(uri) {
		return uri
	}
	return ""
}

// number reads a JSON number (json.Number or float64); NaN and infinities
// are refused.
func number(v any) (float64, bool) {
	var f float64
	switch t := v.(type) {
	case json.Number:
		var err error
		if f, err = strconv.ParseFloat(string(t), 64); err != nil {
			return 0, false
		}
	case float64:
		f = t
	default:
		return 0, false
	}
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return 0, false
	}
	return f, true
}

func getMap(m map[string]any, key string) map[string]any {
	v, _ := m[key].(map[string]any)
	return v
}

func getStr(m map[string]any, key string) string {
	s, _ := m[key].(string)
	return s
}

// getStrs returns the strings at key, a string or an array of them.
func getStrs(m map[string]any, key string) []string {
	var out []string
	for _, v := range appendFlat(nil, m[key]) {
		if s, ok := v.(string); ok {
			out = append(out, s)
		}
	}
	return out
}

// ReferenceEntry is the entry Extract makes of the literal reference s,
// without its Param: the type and id of a "Type/id[/_history/n]"
// reference, else its URL. ok is false for an empty or local ("#")
// reference, which Extract does not index.
func ReferenceEntry(s string) (e Entry, ok bool) {
	if s == "" || strings.HasPrefix(s, "#") {
		return Entry{}, false
	}
	rt, id, url := parseReference(s)
	return Entry{Type: TypeReference, RefType: rt, RefID: id, RefURL: url}, true
}
