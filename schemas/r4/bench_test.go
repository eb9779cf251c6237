package r4

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
)

// loadSynthea reads the Synthea transaction Bundles of the shared test data.
func loadSynthea(tb testing.TB) ([][]byte, int64) {
	dir := sharedTestdata(tb, "synthea")
	files, err := filepath.Glob(filepath.Join(dir, "*.json"))
	if err != nil || len(files) == 0 {
		tb.Skip("no Synthea bundles in the shared test data")
	}
	var docs [][]byte
	var total int64
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			tb.Fatal(err)
		}
		docs = append(docs, b)
		total += int64(len(b))
	}
	return docs, total
}

// TestSynthea checks that the Synthea bundles validate without errors.
func TestSynthea(t *testing.T) {
	docs, _ := loadSynthea(t)
	v := testValidator()
	for i, d := range docs {
		r := v.Validate(d)
		for _, is := range errorsOf(r) {
			t.Errorf("bundle %d: %s at %s: %s", i, is.Rule, is.Expression, is.Message)
		}
	}
}

// BenchmarkValidate measures validation of the Synthea bundles; compare it
// with BenchmarkDecodeEncode (target: at most twice its time).
func BenchmarkValidate(b *testing.B) {
	benchSynthea(b, func(v *Validator, d []byte) bool { return v.Validate(d).Valid() })
}

// BenchmarkValidateDecoded measures validation with the decoded form, as
// the gateway validates a posted Bundle: its entries are decoded on
// several goroutines (decodeDocument), so the time per op falls with
// -cpu while the CPU spent stays about the same.
func BenchmarkValidateDecoded(b *testing.B) {
	benchSynthea(b, func(v *Validator, d []byte) bool {
		r, out := v.ValidateDecoded(d, "Bundle")
		return r.Valid() && out != nil
	})
}

// benchSynthea runs check over the Synthea bundles, which must all pass.
func benchSynthea(b *testing.B, check func(v *Validator, d []byte) bool) {
	docs, total := loadSynthea(b)
	v := testValidator()
	b.SetBytes(total)
	b.ReportAllocs()
	for b.Loop() {
		for _, d := range docs {
			if !check(v, d) {
				b.Fatal("unexpected validation errors")
			}
		}
	}
}

// BenchmarkDecodeEncode is the baseline: a plain encoding/json Unmarshal
// into any and Marshal of the same bundles.
func BenchmarkDecodeEncode(b *testing.B) {
	docs, total := loadSynthea(b)
	b.SetBytes(total)
	b.ReportAllocs()
	for b.Loop() {
		for _, d := range docs {
			var x any
			if err := json.Unmarshal(d, &x); err != nil {
				b.Fatal(err)
			}
			if _, err := json.Marshal(x); err != nil {
				b.Fatal(err)
			}
		}
	}
}
