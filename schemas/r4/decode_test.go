package r4

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"testing"
)

// decodeStd decodes b as encoding/json does with UseNumber.
func decodeStd(b []byte) (any, error) {
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	var v any
	err := d.Decode(&v)
	return v, err
}

// TestValidateDecoded: a valid document comes back decoded as
// encoding/json decodes it; an invalid one comes back without.
func TestValidateDecoded(t *testing.T) {
	v := New(Options{})
	docs := [][]byte{
		[]byte(`{"resourceType":"Patient","id":"p1","active":true,"name":[{"family":"M\u00fcller \"q\" \ud83d\ude00","given":["A\\B"]}],"multipleBirthInteger":2}`),
		[]byte(`{"resourceType":"Observation","status":"final","code":{"text":"x"},"valueQuantity":{"value":1.50,"unit":"mg"},"note":[{"text":"tab\there"}]}`),
	}
	// A Bundle of more than parallelEntries entries, decoded on several
	// goroutines, with escapes in every entry (each goroutine's scratch).
	var bundle bytes.Buffer
	bundle.WriteString(`{"resourceType":"Bundle","type":"collection","id":"b\u0031","entry":[`)
	for i := range 3 * parallelEntries {
		if i > 0 {
			bundle.WriteString(",")
		}
		fmt.Fprintf(&bundle, `{"fullUrl":"urn:uuid:00000000-0000-0000-0000-%012d","resource":{"resourceType":"Patient","id":"p%d",`+
			`"name":[{"family":"M\u00fcller-%d \"q\"","given":["A\\B","\ud83d\ude00"]}],"multipleBirthInteger":%d}}`, i, i, i, i)
	}
	bundle.WriteString(`],"timestamp":"2026-03-02T09:00:00Z"}`)
	docs = append(docs, bundle.Bytes())
	files, _ := filepath.Glob(filepath.Join("..", "..", "..", "shared", "testdata", "synthea", "*.json"))
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		docs = append(docs, b)
	}
	for i, doc := range docs {
		want, err := decodeStd(doc)
		if err != nil {
			t.Fatal(err)
		}
		typ := want.(map[string]any)["resourceType"].(string)
		res, got := v.ValidateDecoded(doc, typ)
		if !res.Valid() {
			t.Errorf("doc %d: invalid: %v", i, res.Issues)
			continue
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("doc %d: ValidateDecoded differs from encoding/json", i)
		}
	}
	if res, got := v.ValidateDecoded([]byte(`{"resourceType":"Patient","active":"yes"}`), "Patient"); res.Valid() || got != nil {
		t.Errorf("invalid Patient: valid %v, decoded %v; want invalid and nil", res.Valid(), got)
	}
}

// FuzzValidateDecoded: whenever a document is valid, its decoded form is
// encoding/json's.
func FuzzValidateDecoded(f *testing.F) {
	f.Add([]byte(`{"resourceType":"Basic","code":{"text":"\u00e9\n"},"extension":[{"url":"u","valueDecimal":1e2}]}`))
	f.Add([]byte(`{"resourceType":"Patient","name":[{"given":["a","b"]}],"active":false}`))
	v := New(Options{})
	f.Fuzz(func(t *testing.T, doc []byte) {
		for _, typ := range []string{"Basic", "Patient"} {
			res, got := v.ValidateDecoded(doc, typ)
			if !res.Valid() {
				continue
			}
			want, err := decodeStd(doc)
			if err != nil || !reflect.DeepEqual(got, want) {
				t.Errorf("ValidateDecoded(%s) = %v; encoding/json %v, %v", doc, got, want, err)
			}
		}
	})
}

// TestDecodeDocumentPanics: a panic while decoding entries on other
// goroutines reaches the caller's goroutine (where a request's recovery
// answers it) instead of ending the process.
func TestDecodeDocumentPanics(t *testing.T) {
	var b bytes.Buffer
	b.WriteString(`{"resourceType":"Bundle","type":"collection","entry":[`)
	for i := range 2 * parallelEntries {
		if i > 0 {
			b.WriteString(",")
		}
		fmt.Fprintf(&b, `{"resource":{"resourceType":"Basic","id":"b%d"}}`, i)
	}
	b.WriteString(`]}`)
	doc := b.Bytes()
	if runtime.GOMAXPROCS(0) < 2 { // decode on goroutines, as on any server
		defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(2))
	}
	w := &walker{}
	w.p.maxDepth = DefaultMaxDepth
	if !w.p.parse(doc) {
		t.Fatalf("parse: %+v", w.p.err)
	}
	w.start(doc)
	// Break the last string of the tape (inside the last entry): decoding it
	// slices past the document's capacity.
	for i := len(w.nodes) - 1; i >= 0; i-- {
		if w.nodes[i].kind == kString {
			w.nodes[i].end = math.MaxInt32
			break
		}
	}
	defer func() {
		if recover() == nil {
			t.Error("decodeDocument did not panic in the caller's goroutine")
		}
	}()
	w.decodeDocument()
}

// TestKeptWalkerHoldsNoDocument: a walker kept for reuse keeps nothing of
// the document it validated (escaped strings, contained ids, references).
func TestKeptWalkerHoldsNoDocument(t *testing.T) {
	v := New(Options{})
	doc := []byte(`{"resourceType":"Patient","name":[{"family":"M\u00fcller-Secret"}],` +
		`"contained":[{"resourceType":"Practitioner","id":"secret-id"}],"generalPractitioner":[{"reference":"#secret-id"}]}`)
	if res, out := v.ValidateDecoded(doc, "Patient"); !res.Valid() || out == nil {
		t.Fatalf("invalid: %v", res.Issues)
	}
	var w *walker
	select {
	case w = <-v.kept:
	default:
		t.Fatal("the walker was not kept")
	}
	if bytes.Contains(w.buf[:cap(w.buf)], []byte("Secret")) {
		t.Error("the scratch buffer still holds an unescaped string of the document")
	}
	if len(w.ctxPool) == 0 {
		t.Fatal("no reference context was used: the test does not exercise them")
	}
	for _, c := range w.ctxPool {
		for _, x := range c.contained[:cap(c.contained)] {
			if x != (containedRes{}) {
				t.Errorf("a contained resource is kept: %+v", x)
			}
		}
		for _, r := range c.refs[:cap(c.refs)] {
			if r != (localRef{}) {
				t.Errorf("a reference is kept: %+v", r)
			}
		}
	}
}
