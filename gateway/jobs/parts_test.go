package jobs

import "testing"

// TestFileParts: lines are buffered as JSON, taken as numbered parts of
// the file, and nothing buffered takes no part.
func TestFileParts(t *testing.T) {
	f := FileParts{File: 1}
	if p := f.Take(); p != nil {
		t.Fatalf("Take of nothing = %v", p)
	}
	if err := f.WriteLine(map[string]int{"line": 1}); err != nil {
		t.Fatal(err)
	}
	if err := f.WriteLine("two"); err != nil {
		t.Fatal(err)
	}
	if f.Len() != len("{\"line\":1}\n\"two\"\n") {
		t.Errorf("Len = %d", f.Len())
	}
	p := f.Take()
	if len(p) != 1 || p[0].File != 1 || p[0].Part != 0 || string(p[0].Data) != "{\"line\":1}\n\"two\"\n" {
		t.Fatalf("Take = %+v", p)
	}
	if err := f.WriteLine(3); err != nil {
		t.Fatal(err)
	}
	if p := f.Take(); len(p) != 1 || p[0].Part != 1 || string(p[0].Data) != "3\n" || f.Next != 2 || f.Len() != 0 {
		t.Fatalf("second Take = %+v, Next %d, Len %d", p, f.Next, f.Len())
	}
}
