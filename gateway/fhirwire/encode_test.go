package fhirwire

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
)

// decodeNumbers decodes b as the engine does (numbers kept exact).
func decodeNumbers(t testing.TB, b []byte) any {
	t.Helper()
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		t.Fatal(err)
	}
	return v
}

// TestAppendJSON: appendJSON encodes decoded JSON exactly as json.Marshal
// does.
func TestAppendJSON(t *testing.T) {
	cases := []string{
		`null`, `true`, `"a"`, `0`, `-1.5e+10`, `[]`, `{}`, `[1,"x",null,{"b":2,"a":[true,false]}]`,
		`{"z":1,"a":{"y":"\u003cscript\u003e \u0026 \u2028 \u2029","x":"tab\there\nnew \u0001 \u001f \b \f \r \"q\" \\"}}`,
		`{"unicode":"Müller 日本 \ud83d\ude00","":"empty key","é":"key with accent"}`,
		`{"n":[0,-0,12345678901234567890,1.0,1e5,1E-5,0.000001]}`,
	}
	for _, c := range cases {
		v := decodeNumbers(t, []byte(c))
		want, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		got, err := appendJSON(nil, v)
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("appendJSON(%s) = %s, %v; want %s", c, got, err, want)
		}
	}
	// Invalid UTF-8 and values json.Marshal encodes by reflection.
	for _, v := range []any{"bad \xff utf8", map[string]any{"f": 1.5, "i": 3, "s": []string{"a"}}, json.Number("")} {
		want, _ := json.Marshal(v)
		got, err := appendJSON(nil, v)
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("appendJSON(%#v) = %s, %v; want %s", v, got, err, want)
		}
	}
	if _, err := appendJSON(nil, json.Number("1x")); err == nil {
		t.Error("appendJSON(json.Number(1x)) succeeded, want an error")
	}
}

// TestAppendJSONSynthea: every Synthea resource encodes as json.Marshal
// encodes it.
func TestAppendJSONSynthea(t *testing.T) {
	files, _ := filepath.Glob(filepath.Join("..", "..", "..", "shared", "testdata", "synthea", "*.json"))
	if len(files) == 0 {
		t.Skip("../shared/testdata/synthea not present")
	}
	for _, f := range files[:3] {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		v := decodeNumbers(t, b)
		want, _ := json.Marshal(v)
		got, err := appendJSON(nil, v)
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("%s: appendJSON differs from json.Marshal (%v)", filepath.Base(f), err)
		}
	}
}

// FuzzAppendJSON: for any JSON document, appendJSON of its decoded form
// is json.Marshal's.
func FuzzAppendJSON(f *testing.F) {
	for _, s := range []string{`{"a":"<&>"}`, `[1,2.5,"\u2028"]`, `"\u00ff"`, `{"b":{"c":[null,true]}}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		d := json.NewDecoder(bytes.NewReader(b))
		d.UseNumber()
		var v any
		if d.Decode(&v) != nil {
			return
		}
		want, werr := json.Marshal(v)
		got, err := appendJSON(nil, v)
		if (err == nil) != (werr == nil) || !bytes.Equal(got, want) && err == nil {
			t.Errorf("appendJSON(%s) = %s, %v; json.Marshal %s, %v", b, got, err, want, werr)
		}
	})
}

func BenchmarkAppendJSON(b *testing.B) {
	files, _ := filepath.Glob(filepath.Join("..", "..", "..", "shared", "testdata", "synthea", "*.json"))
	if len(files) == 0 {
		b.Skip("no synthea")
	}
	raw, _ := os.ReadFile(files[0])
	v := decodeNumbers(b, raw)
	b.Run("appendJSON", func(b *testing.B) {
		for b.Loop() {
			_, _ = appendJSON(nil, v)
		}
	})
	b.Run("json.Marshal", func(b *testing.B) {
		for b.Loop() {
			_, _ = json.Marshal(v)
		}
	})
}

// refMarshal is what Marshal does to a decoded resource, by encoding/json:
// no HTML escaping, the top-level resourceType moved first.
func refMarshal(v any) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return ResourceTypeFirst(bytes.TrimSuffix(b.Bytes(), []byte("\n"))), nil
}

// TestMarshalDoc: Marshal encodes a decoded resource exactly as
// encoding/json does without HTML escaping, resourceType first, on
// Synthea's resources and on cases of its own.
func TestMarshalDoc(t *testing.T) {
	docs := []string{
		`{"resourceType":"Observation","id":"a","valueString":"<b> & </b>","code":{"text":"\u2028"}}`,
		`{"id":"x","note":[{"text":"a<b"}],"contained":[{"resourceType":"Patient","id":"p","active":true}]}`,
		`{"resourceType":"Bundle","entry":[{"resource":{"resourceType":"Patient","id":"1"}}],"a":1.50}`,
	}
	files, _ := filepath.Glob(filepath.Join("..", "..", "..", "shared", "testdata", "synthea", "*.json"))
	for _, f := range files[:min(3, len(files))] {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		bundle, _ := decodeNumbers(t, b).(map[string]any)
		entries, _ := bundle["entry"].([]any)
		for _, en := range entries {
			res, _ := en.(map[string]any)["resource"].(map[string]any)
			rb, _ := json.Marshal(res)
			docs = append(docs, string(rb))
		}
	}
	for _, d := range docs {
		v, _ := decodeNumbers(t, []byte(d)).(map[string]any)
		want, werr := refMarshal(v)
		got, err := Marshal(v)
		if err != nil || werr != nil || !bytes.Equal(got, want) {
			t.Fatalf("Marshal(%.200s) = %.200s, %v; encoding/json %.200s, %v", d, got, err, want, werr)
		}
	}
}

// FuzzMarshalDoc: for any JSON object, Marshal of its decoded form is
// refMarshal's.
func FuzzMarshalDoc(f *testing.F) {
	for _, s := range []string{`{"resourceType":"A","a":"<&>"}`, `{"b":[1,2.5,"\u2028"],"resourceType":1}`, `{"c":{"resourceType":"x","a":null}}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		d := json.NewDecoder(bytes.NewReader(b))
		d.UseNumber()
		var v map[string]any
		if d.Decode(&v) != nil || v == nil {
			return
		}
		want, werr := refMarshal(v)
		got, err := Marshal(v)
		if (err == nil) != (werr == nil) || err == nil && !bytes.Equal(got, want) {
			t.Errorf("Marshal(%s) = %s, %v; encoding/json %s, %v", b, got, err, want, werr)
		}
	})
}

// TestFHIRVersion: the fhirVersion parameter of a media type or _format
// value, and which values name R4.
func TestFHIRVersion(t *testing.T) {
	for _, tc := range []struct {
		mediaType, version string
		has, r4            bool
	}{
		{"application/fhir+json", "", false, true},
		{"application/fhir+json; fhirVersion=4.0", "4.0", true, true},
		{"application/fhir+json;fhirVersion=4.0.1;charset=utf-8", "4.0.1", true, true},
		{`application/fhir+json; FHIRVERSION="4.0.0"`, "4.0.0", true, true},
		{"application/fhir json;fhirVersion=5.0", "5.0", true, false},
		{"application/fhir+json; charset=utf-8; fhirVersion=3.0", "3.0", true, false},
		{"application/fhir+json; fhirVersion=4", "4", true, false},
		{"application/fhir+json; fhirVersion=", "", true, false},
	} {
		v, has := FHIRVersion(tc.mediaType)
		if v != tc.version || has != tc.has {
			t.Errorf("FHIRVersion(%q) = %q, %v, want %q, %v", tc.mediaType, v, has, tc.version, tc.has)
		}
		if has && R4Version(v) != tc.r4 {
			t.Errorf("R4Version(%q) = %v, want %v", v, !tc.r4, tc.r4)
		}
	}
}
