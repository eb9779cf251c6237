package search

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// decode decodes a JSON object the way the store does (UseNumber).
func decode(tb testing.TB, data []byte) map[string]any {
	tb.Helper()
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		tb.Fatalf("decode: %v", err)
	}
	return m
}

// readJSON reads and decodes a JSON file.
func readJSON(tb testing.TB, path string) map[string]any {
	tb.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		tb.Fatal(err)
	}
	return decode(tb, data)
}

// bundleResources returns the resources of a transaction Bundle with their
// urn:uuid references resolved to Type/id, as the gateway's transaction
// processing does before storing (a resource without id gets the uuid of
// its fullUrl).
func bundleResources(tb testing.TB, bundle map[string]any) []map[string]any {
	tb.Helper()
	entries, _ := bundle["entry"].([]any)
	ids := map[string]string{}
	var out []map[string]any
	for _, e := range entries {
		em, _ := e.(map[string]any)
		r, _ := em["resource"].(map[string]any)
		if r == nil {
			continue
		}
		full, _ := em["fullUrl"].(string)
		rt, _ := r["resourceType"].(string)
		if uuid, ok := strings.CutPrefix(full, "urn:uuid:"); ok {
			if _, has := r["id"]; !has {
				r["id"] = uuid
			}
			ids[full] = rt + "/" + r["id"].(string)
		}
		out = append(out, r)
	}
	var resolve func(v any)
	resolve = func(v any) {
		switch t := v.(type) {
		case map[string]any:
			if ref, ok := t["reference"].(string); ok {
				if rel, ok := ids[ref]; ok {
					t["reference"] = rel
				}
			}
			for _, c := range t {
				resolve(c)
			}
		case []any:
			for _, c := range t {
				resolve(c)
			}
		}
	}
	for _, r := range out {
		resolve(r)
	}
	return out
}

// goldenResources returns the resources of a mapping golden bundle, resolved.
func goldenResources(tb testing.TB, rel string) []map[string]any {
	tb.Helper()
	return bundleResources(tb, readJSON(tb, filepath.Join("..", "..", "mapping", "testdata", rel)))
}

// firstOfType returns the first resource of a type.
func firstOfType(tb testing.TB, rs []map[string]any, rt string) map[string]any {
	tb.Helper()
	for _, r := range rs {
		if r["resourceType"] == rt {
			return r
		}
	}
	tb.Fatalf("no %s", rt)
	return nil
}

// sharedTestdata returns the path of a folder of the shared test data
// (../shared/testdata next to the repository root), skipping the test when
// it is absent.
func sharedTestdata(tb testing.TB, elem ...string) string {
	tb.Helper()
	dir := sharedDir()
	if dir == "" {
		tb.Skip("shared test data not found (expected ../shared/testdata next to the repository root)")
	}
	p := filepath.Join(append([]string{dir}, elem...)...)
	if st, err := os.Stat(p); err != nil || !st.IsDir() {
		tb.Skipf("shared test data %s absent", filepath.Join(elem...))
	}
	return p
}

// utc builds a UTC time.
func utc(y int, mo time.Month, d, h, mi, s, ms int) time.Time {
	return time.Date(y, mo, d, h, mi, s, ms*1e6, time.UTC)
}

// hasEntry reports whether es holds e.
func hasEntry(es []Entry, e Entry) bool {
	for _, x := range es {
		if x == e {
			return true
		}
	}
	return false
}

// storedAs returns the entries a store finds for param of resource type
// rt: param's own, and the rows of the parameter ReferenceRows keeps its
// references as, of the type it names (with Param param).
func storedAs(rt string, es []Entry, param string) []Entry {
	out := entriesOf(es, param)
	if p, refType := ReferenceRows(rt, param); p != param {
		for _, e := range entriesOf(es, p) {
			if e.Type == TypeReference && e.RefType == refType {
				e.Param = param
				out = append(out, e)
			}
		}
	}
	return out
}

// entriesOf returns the entries of one parameter.
func entriesOf(es []Entry, param string) []Entry {
	var out []Entry
	for _, e := range es {
		if e.Param == param {
			out = append(out, e)
		}
	}
	return out
}
