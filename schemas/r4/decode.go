package r4

import (
	"encoding/json"
	"runtime"
	"sync"
)

// ValidateDecoded is ValidateAs that also returns the document decoded
// when it is valid (nil otherwise), as a json.Decoder with UseNumber
// decodes it: objects as map[string]any, arrays as []any, numbers as
// json.Number, strings unescaped. The validator's own parse serves both,
// so a caller that validates and then works on the decoded form reads the
// bytes once. (A valid document has no duplicate keys, no invalid UTF-8
// and no unpaired surrogates, so the decoded form is exactly
// encoding/json's.)
//
// The decoded form is what callers store, index and serve, so it must be
// FHIR JSON: a decimal written as a JSON string, which Validate and
// ValidateAs report only as a warning (the HL7 validator accepts it), is
// an "element-type" error here.
func (v *Validator) ValidateDecoded(doc []byte, resourceType string) (*Result, any) {
	return v.validateDecoded(doc, resourceType, 0)
}

// ValidateDecodedEntry is ValidateDecoded of the resource of a Bundle's
// entry, checked on its own (a batch's, when the batch is not valid as a
// whole): what a Bundle's resources may hold, a conditional reference, is
// allowed.
func (v *Validator) ValidateDecodedEntry(doc []byte, resourceType string) (*Result, any) {
	return v.validateDecoded(doc, resourceType, 1)
}

// validateDecoded is ValidateDecoded inside bundles enclosing Bundles.
func (v *Validator) validateDecoded(doc []byte, resourceType string, bundles int) (*Result, any) {
	if resourceType == "" || !v.KnownType(resourceType) {
		return v.ValidateAs(doc, resourceType), nil
	}
	var out any
	res := v.runIn(doc, resourceType, true, bundles, func(w *walker) { out = w.decodeDocument() })
	if !res.Valid() {
		return res, nil
	}
	return res, out
}

// parallelEntries is the number of Bundle entries from which a document's
// entries are decoded on several goroutines, while the client waits: on
// two cores BenchmarkValidateDecoded (the nine Synthea Bundles) took
// 135-145 ms against 143-168 ms decoding on one goroutine, interleaved in
// one run. Below, the goroutines would cost more than they save.
const parallelEntries = 64

// decodeDocument decodes the whole document: a Bundle of many entries
// with its entries split among GOMAXPROCS goroutines, anything else as
// decode(0) does.
func (w *walker) decodeDocument() any {
	procs := runtime.GOMAXPROCS(0)
	entry := w.member(0, "entry")
	if procs < 2 || entry < 0 || w.nodes[entry].kind != kArray || w.nodes[entry].count < parallelEntries {
		return w.decode(0)
	}
	m := w.decodeObject(0, entry)
	var items []int32
	for j := entry + 1; j < w.nodes[entry].next; j = w.nodes[j].next {
		items = append(items, j)
	}
	out := make([]any, len(items))
	var wg sync.WaitGroup
	var once sync.Once
	var panicked any
	per := (len(items) + procs - 1) / procs
	for from := 0; from < len(items); from += per {
		to := min(from+per, len(items))
		// Each goroutine has its own walker view: decode's scratch
		// buffer (w.buf, for escaped strings) is not shared.
		d := &walker{doc: w.doc, nodes: w.nodes}
		wg.Go(func() {
			// A panic goes back to the caller's goroutine, where the
			// request's recovery answers it, instead of ending the process.
			defer func() {
				if p := recover(); p != nil {
					once.Do(func() { panicked = p })
				}
			}()
			for k := from; k < to; k++ {
				out[k] = d.decode(items[k])
			}
		})
	}
	wg.Wait()
	if panicked != nil {
		panic(panicked)
	}
	m["entry"] = out
	return m
}

// decode converts the subtree of node i.
func (w *walker) decode(i int32) any {
	n := &w.nodes[i]
	switch n.kind {
	case kNull:
		return nil
	case kTrue:
		return true
	case kFalse:
		return false
	case kNumber:
		return json.Number(w.doc[n.start:n.end])
	case kString:
		return w.strCopy(i)
	case kArray:
		a := make([]any, 0, n.count)
		for j := i + 1; j < n.next; j = w.nodes[j].next {
			a = append(a, w.decode(j))
		}
		return a
	case kObject:
		return w.decodeObject(i, -1)
	}
	return nil
}

// decodeObject converts object node i, leaving out the member whose value is
// node except (-1: none).
func (w *walker) decodeObject(i, except int32) map[string]any {
	n := &w.nodes[i]
	m := make(map[string]any, n.count)
	for j := i + 1; j < n.next; j = w.nodes[j+1].next {
		if j+1 != except {
			m[w.strCopy(j)] = w.decode(j + 1)
		}
	}
	return m
}
