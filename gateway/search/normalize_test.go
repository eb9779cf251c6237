package search

import (
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"
)

func TestNormalize(t *testing.T) {
	tests := []struct{ in, want string }{
		{"", ""},
		{"Smith", "smith"},
		{"  Jean   Luc  ", "jean luc"},
		{"José Müller", "jose muller"},
		{"Ångström", "angstrom"},
		{"Straße", "strasse"},
		{"STRASSE", "strasse"},
		{"ẞ", "ss"},
		{"Núñez", "nunez"},
		{"François", "francois"},
		{"Søren Kierkegaard", "soren kierkegaard"},
		{"Łukasz", "lukasz"},
		{"Æsir Œuvre", "aesir oeuvre"},
		{"Þór", "thor"},
		{"Ștefan Țăran", "stefan taran"},
		{"O'Brien", "obrien"},
		{"O’Brien", "obrien"},
		{"OʼBrien", "obrien"},
		{"D´Angelo", "dangelo"},
		{"Smith-Jones", "smith jones"},
		{"smith jones", "smith jones"},
		{"St.John", "st john"},
		{"a_b/c+d*e%f", "a b c d e f"},
		{"Smith–Jones", "smith jones"}, // en dash
		{"e\u0301cole", "ecole"},       // decomposed é
		{"a\tb\nc", "a b c"},
		{"Non-serious", "non serious"},
		{"Dr. A. B. (Jr.)", "dr a b jr"},
		{"Dr.A.B.", "dr a b"},
		{"x - y", "x y"},
		{"Ελένη", "ελενη"}, // other scripts kept, lower-cased, their accents dropped
		{"李小龍", "李小龍"},
		{"Room 101", "room 101"},
		{"!!!", ""},
		{"-", ""},
		{"*", ""},
		{"'", ""},
		{"\x00", ""},
		{"\u200b", ""},             // zero-width space
		{"\u00a0", ""},             // no-break space
		{"\u0301", ""},             // a lone combining acute
		{"Ann\u200bLee", "annlee"}, // invisible: dropped, no boundary
		{"Ann\u00adLee", "annlee"}, // soft hyphen
		{"Ann\tLee\x00", "ann lee"},
		// Beyond Latin-1/Extended-A (finding F13): whatever decomposes.
		{"Nguyễn", "nguyen"},
		{"Nguye\u0302\u0303n", "nguyen"}, // NFD
		{"Thị Ánh", "thi anh"},
		{"Trần Phạm Lê", "tran pham le"},
		{"Lǚ Xiǎo", "lu xiao"},
		{"Ǖ", "u"},
		{"Ọlọ́run Ẹ̀kọ́", "olorun eko"}, // Yoruba
		{"Ųųų̃", "uuu"},
		{"Đặng Đức", "dang duc"},
		{"Øyvind Æbelø Œil Łódź Ħal Ŀlibre ĳs", "oyvind aebelo oeil lodz hal llibre ijs"},
		{"Šťastný Čapek", "stastny capek"},
		{"Anh Nguyễn-Trần", "anh nguyen tran"},
		// Marks that are not accents stay, recomposed (NFC): a Hangul
		// syllable is one letter (이 is no prefix of 임), a kana's voicing
		// mark (dakuten) makes another kana, an Indic vowel sign is part
		// of the word (finding p28 F2).
		{"한국어", "한국어"},
		{"\u1112\u1161\u11ab\u1100\u116e\u11a8\u110b\u1165", "한국어"}, // written as jamo (NFD)
		{"임 하늘", "임 하늘"},
		{"が", "が"},
		{"か\u3099", "が"},
		{"ガンバ", "ガンバ"},
		{"パ", "パ"},
		{"राम कुमार", "राम कुमार"},
		{"ฉันทนา", "ฉันทนา"},
		{"Whāriki Māori", "whariki maori"},
		{"Hoàng Văn Đức", "hoang van duc"},
		{"ﺑ", "ﺑ"},           // a compatibility form is no accent: left as written
		{"מֹשֶׁה", "משה"},    // Hebrew points: optional, dropped
		{"مُحَمَّد", "محمد"}, // Arabic harakat: optional, dropped
		{"👍\ufe0f", ""},      // an emoji and its variation selector: symbols, invisible
		{"Москва Ёлкин Йошкар", "москва елкин иошкар"},
		{"hello", "hello"},
		{"a  b", "a b"},
		{" a", "a"},
		{"a ", "a"},
		{"İstanbul", "istanbul"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got := Normalize(tt.in)
			if got != tt.want {
				t.Errorf("Normalize(%q) = %q, want %q", tt.in, got, tt.want)
			}
			if again := Normalize(got); again != got {
				t.Errorf("Normalize(Normalize(%q)) = %q, want %q (idempotent)", tt.in, again, got)
			}
		})
	}
}

// TestNormalizeForms: a string and its NFC, NFD, NFKC-free variants
// normalise alike, and the ASCII fast path agrees with the general one.
func TestNormalizeForms(t *testing.T) {
	for _, s := range []string{"Nguyễn Thị Ánh", "Lǚ Xiǎo", "José Müller", "Ångström", "Çağrı", "Ελένη", "Ọlọ́run",
		"Zoë Brontë", "Ǆemal", "Thủy", "Ţ Ș", "한국어 가", "\u212b", "이 임", "がガぱ", "राम कुमार", "Whāriki"} { // U+212B ANGSTROM SIGN decomposes to A + ring
		nfc, nfd := norm.NFC.String(s), norm.NFD.String(s)
		if Normalize(nfc) != Normalize(nfd) {
			t.Errorf("Normalize(NFC %q) = %q, Normalize(NFD) = %q; want equal", s, Normalize(nfc), Normalize(nfd))
		}
		for _, r := range Normalize(s) {
			if isAccent(r) {
				t.Errorf("Normalize(%q) = %q keeps an accent", s, Normalize(s))
			}
		}
	}
	for c := 0; c < utf8.RuneSelf; c++ {
		for _, s := range []string{string(rune(c)), "A" + string(rune(c)) + "b", " x" + string(rune(c)) + string(rune(c)) + "Y "} {
			if got, want := Normalize(s), normalizeUnicode(s); got != want {
				t.Errorf("Normalize(%q) = %q, normalizeUnicode = %q; want equal", s, got, want)
			}
		}
	}
}

func TestParseDateRange(t *testing.T) {
	tests := []struct {
		in      string
		low, hi time.Time
		ok      bool
	}{
		{in: "2026", low: utc(2026, 1, 1, 0, 0, 0, 0), hi: utc(2026, 12, 31, 23, 59, 59, 999), ok: true},
		{in: "2026-02", low: utc(2026, 2, 1, 0, 0, 0, 0), hi: utc(2026, 2, 28, 23, 59, 59, 999), ok: true},
		{in: "2024-02", low: utc(2024, 2, 1, 0, 0, 0, 0), hi: utc(2024, 2, 29, 23, 59, 59, 999), ok: true},
		{in: "2026-03", low: utc(2026, 3, 1, 0, 0, 0, 0), hi: utc(2026, 3, 31, 23, 59, 59, 999), ok: true},
		{in: "2026-12", low: utc(2026, 12, 1, 0, 0, 0, 0), hi: utc(2026, 12, 31, 23, 59, 59, 999), ok: true},
		{in: "2026-03-02", low: utc(2026, 3, 2, 0, 0, 0, 0), hi: utc(2026, 3, 2, 23, 59, 59, 999), ok: true},
		{in: "2026-03-02T09:00:00-05:00", low: utc(2026, 3, 2, 14, 0, 0, 0), hi: utc(2026, 3, 2, 14, 0, 0, 999), ok: true},
		{in: "2026-03-02T09:00:00Z", low: utc(2026, 3, 2, 9, 0, 0, 0), hi: utc(2026, 3, 2, 9, 0, 0, 999), ok: true},
		{in: "2026-03-02T09:00:00", low: utc(2026, 3, 2, 9, 0, 0, 0), hi: utc(2026, 3, 2, 9, 0, 0, 999), ok: true},
		{in: "2026-03-02T09:00Z", low: utc(2026, 3, 2, 9, 0, 0, 0), hi: utc(2026, 3, 2, 9, 0, 59, 999), ok: true},
		{in: "2026-03-02T09:00:00.1Z", low: utc(2026, 3, 2, 9, 0, 0, 100), hi: utc(2026, 3, 2, 9, 0, 0, 199), ok: true},
		{in: "2026-03-02T09:00:00.12Z", low: utc(2026, 3, 2, 9, 0, 0, 120), hi: utc(2026, 3, 2, 9, 0, 0, 129), ok: true},
		{in: "2026-03-02T09:00:00.123Z", low: utc(2026, 3, 2, 9, 0, 0, 123), hi: utc(2026, 3, 2, 9, 0, 0, 123), ok: true},
		{in: "2026-03-02T09:00:00.123456+01:00", low: utc(2026, 3, 2, 8, 0, 0, 123), hi: utc(2026, 3, 2, 8, 0, 0, 123), ok: true},
		{in: "2026-01-01T00:30:00+01:00", low: utc(2025, 12, 31, 23, 30, 0, 0), hi: utc(2025, 12, 31, 23, 30, 0, 999), ok: true},
		{in: "9999", low: utc(9999, 1, 1, 0, 0, 0, 0), hi: MaxTime(), ok: true},
		// A leap second is in its own day: the last instant of the minute
		// it ends (finding p28 F4: it was the next day's first second).
		{in: "2026-12-06T23:59:60Z", low: utc(2026, 12, 6, 23, 59, 59, 999), hi: utc(2026, 12, 6, 23, 59, 59, 999), ok: true},
		{in: "2026-12-06T23:59:60.5Z", low: utc(2026, 12, 6, 23, 59, 59, 999), hi: utc(2026, 12, 6, 23, 59, 59, 999), ok: true},
		{in: "2026-12-07T12:59:60+13:00", low: utc(2026, 12, 6, 23, 59, 59, 999), hi: utc(2026, 12, 6, 23, 59, 59, 999), ok: true},
		{in: "26"}, {in: "2026-13"}, {in: "2026-02-30"}, {in: "2026-1-01"}, {in: "2026-03-02T"},
		{in: "2026-03-02T25:00:00Z"}, {in: "2026-03-02T09:00:00.Z"}, {in: "2026-03-02T09"},
		{in: "2026-03-02T09:00:00+1:00"}, {in: "2026-03-02T09:00:00+15:00"}, {in: "2026-03-02Z"},
		{in: "0000"}, {in: "2026-03-02T09:00:00ZZ"}, {in: ""}, {in: "２０２６"}, {in: "2026 "},
		// Valid instants that fall outside years 0001-9999 in UTC are
		// clamped to the index's ends, so they stay findable.
		{in: "0001-01-01T00:00:00+01:00", low: MinTime(), hi: MinTime(), ok: true},
		{in: "0001-01-01T00:30+14:00", low: MinTime(), hi: MinTime(), ok: true},
		{in: "9999-12-31T23:59:59-14:00", low: MaxTime(), hi: MaxTime(), ok: true},
		{in: "9999-12-31T23:59:59.5-00:30", low: MaxTime(), hi: MaxTime(), ok: true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			lo, hi, ok := DateRange(tt.in)
			if ok != tt.ok {
				t.Fatalf("DateRange(%q) ok = %v, want %v", tt.in, ok, tt.ok)
			}
			if ok && (!lo.Equal(tt.low) || !hi.Equal(tt.hi)) {
				t.Errorf("DateRange(%q) = %v .. %v, want %v .. %v", tt.in, lo, hi, tt.low, tt.hi)
			}
			if ok && (lo.Location() != time.UTC || hi.Location() != time.UTC) {
				t.Errorf("DateRange(%q) not in UTC", tt.in)
			}
		})
	}
}

// TestNormalizePrefix: a prefix match on Normalize of a value selects by
// whole letters; different names whose folded forms only share part of a
// letter (a Hangul syllable's initial consonant, a kana without its
// voicing mark) do not match (finding p28 F2).
func TestNormalizePrefix(t *testing.T) {
	tests := []struct {
		value, query string
		want         bool
	}{
		{"임", "이", false},
		{"이", "이", true},
		{"윤", "유", false},
		{"한", "하", false},
		{"석", "서", false},
		{"이하늘", "이", true},
		{"が", "か", false},
		{"か", "が", false},
		{"がっこう", "が", true},
		{"कुमार", "क", true},
		{"कमार", "कुमार", false},
		{"Nguyễn", "nguyen", true},
		{"Te Whāriki", "te whar", true},
		{"Øyvind", "oy", true},
		{"Straße", "strass", true},
		{"İstanbul", "ist", true},
	}
	for _, tt := range tests {
		t.Run(tt.value+"/"+tt.query, func(t *testing.T) {
			v, q := Normalize(tt.value), Normalize(tt.query)
			if got := strings.HasPrefix(v, q); got != tt.want {
				t.Errorf("HasPrefix(Normalize(%q) = %q, Normalize(%q) = %q) = %v, want %v", tt.value, v, tt.query, q, got, tt.want)
			}
		})
	}
}
