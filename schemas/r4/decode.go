package r4

import "encoding/json"

// ValidateDecoded is ValidateAs that also returns the document decoded
// when it is valid (nil otherwise), as a json.Decoder with UseNumber
// decodes it: objects as map[string]any, arrays as []any, numbers as
// json.Number, strings unescaped. The validator's own parse serves both,
// so a caller that validates and then works on the decoded form reads the
// bytes once. (A valid document has no duplicate keys, no invalid UTF-8
// and no unpaired surrogates, so the decoded form is exactly
// encoding/json's.)
func (v *Validator) ValidateDecoded(doc []byte, resourceType string) (*Result, any) {
	if resourceType == "" || !v.KnownType(resourceType) {
		return v.ValidateAs(doc, resourceType), nil
	}
	var out any
	res := v.runThen(doc, resourceType, func(w *walker) { out = w.decode(0) })
	if !res.Valid() {
		return res, nil
	}
	return res, out
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
		m := make(map[string]any, n.count)
		for j := i + 1; j < n.next; j = w.nodes[j+1].next {
			m[w.strCopy(j)] = w.decode(j + 1)
		}
		return m
	}
	return nil
}
