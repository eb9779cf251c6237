package search

import (
	"bytes"
	"encoding/json"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"
)

// FuzzParse checks that Parse, ParseLenient, ParseConditional and Key never
// panic, and that an *Error is all they return on failure.
func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"identifier=http://x|123", `identifier=sys|a\|b,c\,d`, "date=ge2026-03&date=le2027",
		"value-quantity=ap5.4|http://unitsofmeasure.org|mg", "subject:Patient=1&_include=Observation:subject:Patient",
		"_sort=-date,_id&_count=0&_offset=10&_summary=count&_total=none", "code:text=x&status:not=a&code:missing=true",
		"_revinclude:iterate=Provenance:target", "subject.name=x", "_has:Observation:patient:code=1", "%zz", "a=\\", "family=%FF", "x=%C3%28&y=1", "a=b%",
		"birthdate=2026-02-29T24:00:00+14:00", "value-quantity=1e-9999|||", "subject=http://x/Patient/1/_history/2",
		strings.Repeat("name=a&", 300), "_id=" + strings.Repeat(`a\,b,`, 80), "a.b.c.d=1&_include:iterate=Patient:link",
	} {
		f.Add("Observation", s)
		f.Add("Patient", s)
	}
	f.Fuzz(func(t *testing.T, rt, raw string) {
		check := func(err error) {
			if err == nil {
				return
			}
			if _, ok := err.(*Error); !ok {
				t.Fatalf("error of type %T: %v", err, err)
			}
		}
		q, err := ParseConditional(rt, raw)
		check(err)
		if err == nil {
			_ = Key(rt, q)
		}
		values, perr := ParseQuery(rt, raw)
		check(perr)
		if perr != nil {
			return
		}
		// What ParseQuery accepts, url.ParseQuery reads the same (it
		// accepts more: bytes that are not UTF-8).
		if std, err := url.ParseQuery(raw); err != nil || !reflect.DeepEqual(std, values) {
			t.Fatalf("ParseQuery(%q) = %v, url.ParseQuery = %v, %v", raw, values, std, err)
		}
		q, err = Parse(rt, values, false)
		check(err)
		if err == nil {
			_ = Key(rt, q)
		}
		_, _, err = ParseLenient(rt, values)
		check(err)
	})
}

// FuzzExtract checks that Extract never panics on any JSON object, for the
// resource types with specific parameters and for a compartment-only one.
func FuzzExtract(f *testing.F) {
	seeds := [][]byte{
		[]byte(`{"resourceType":"Observation","subject":{"reference":"Patient/1"},"effectivePeriod":{"start":"2026"}}`),
		[]byte(`{"name":[{"given":[1,null,"x"]}],"identifier":{"value":[]},"birthDate":"2026-02-30"}`),
		[]byte(`{"valueQuantity":{"value":1e308},"component":[{"code":{"coding":"x"}}]}`),
	}
	if dir := sharedDir(); dir != "" {
		files, _ := filepath.Glob(filepath.Join(dir, "synthea", "*.json"))
		if len(files) > 0 {
			if data, err := os.ReadFile(files[0]); err == nil {
				var b struct {
					Entry []struct {
						Resource json.RawMessage `json:"resource"`
					} `json:"entry"`
				}
				if json.Unmarshal(data, &b) == nil {
					for i, e := range b.Entry {
						if i%50 == 0 {
							seeds = append(seeds, e.Resource)
						}
					}
				}
			}
		}
	}
	for _, s := range seeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		dec := json.NewDecoder(bytes.NewReader(data))
		dec.UseNumber()
		var m map[string]any
		if dec.Decode(&m) != nil {
			return
		}
		for _, rt := range []string{"Patient", "Observation", "Encounter", "Procedure", "MedicationAdministration",
			"AdverseEvent", "Condition", "Provenance", "AuditEvent", "Claim"} {
			for _, e := range Extract(rt, m) {
				if e.Param == "" || e.Type == "" {
					t.Fatalf("entry without Param or Type: %+v", e)
				}
				if e.Type == TypeDate && e.Low.After(e.High) {
					t.Fatalf("date entry with Low after High: %+v", e)
				}
			}
		}
	})
}

// sharedDir returns ../shared/testdata next to the module root, or "".
func sharedDir() string {
	dir, err := os.Getwd()
	if err != nil {
		return ""
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			td := filepath.Join(dir, "..", "shared", "testdata")
			if st, err := os.Stat(td); err == nil && st.IsDir() {
				return td
			}
			return ""
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return ""
		}
		dir = parent
	}
}

// FuzzNormalize checks that Normalize is idempotent, folds NFC and NFD
// input alike, leaves no accent, and that its ASCII fast path
// agrees with the general one.
func FuzzNormalize(f *testing.F) {
	for _, s := range []string{"", "Smith-Jones", "O'Brien", "Nguyễn Thị Ánh", "Nguye\u0302\u0303n", "Lǚ Xiǎo", "Straße",
		"ẞ", "İstanbul", "\u200b-\x00*", "Ǆ", "한국어", "임", "が", "कुमार", "\u212b", " a  b ", "\xff\xfe"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n := Normalize(s)
		if again := Normalize(n); again != n {
			t.Errorf("Normalize(%q) = %q, and again %q", s, n, again)
		}
		if !utf8.ValidString(s) {
			return
		}
		if nfc, nfd := Normalize(norm.NFC.String(s)), Normalize(norm.NFD.String(s)); nfc != nfd {
			t.Errorf("Normalize of NFC %q = %q, of NFD = %q", s, nfc, nfd)
		}
		for _, r := range n {
			if isAccent(r) {
				t.Errorf("Normalize(%q) = %q keeps an accent", s, n)
			}
		}
		if got := normalizeUnicode(s); got != n {
			t.Errorf("Normalize(%q) = %q, normalizeUnicode = %q", s, n, got)
		}
	})
}
