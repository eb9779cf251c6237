package search

import (
	"testing"
	"time"
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
		{"Smith-Jones", "smithjones"},
		{"e\u0301cole", "ecole"}, // decomposed é
		{"a\tb\nc", "a b c"},
		{"Non-serious", "nonserious"},
		{"Dr. A. B. (Jr.)", "dr a b jr"},
		{"x - y", "x y"},
		{"Ελένη", "ελένη"}, // other scripts kept, lower-cased
		{"李小龍", "李小龍"},
		{"Room 101", "room 101"},
		{"!!!", ""},
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
		{in: "26"}, {in: "2026-13"}, {in: "2026-02-30"}, {in: "2026-1-01"}, {in: "2026-03-02T"},
		{in: "2026-03-02T25:00:00Z"}, {in: "2026-03-02T09:00:00.Z"}, {in: "2026-03-02T09"},
		{in: "2026-03-02T09:00:00+1:00"}, {in: "2026-03-02T09:00:00+15:00"}, {in: "2026-03-02Z"},
		{in: "0000"}, {in: "2026-03-02T09:00:00ZZ"}, {in: ""}, {in: "２０２６"}, {in: "2026 "},
		{in: "0001-01-01T00:00:00+01:00"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			lo, hi, ok := parseDateRange(tt.in)
			if ok != tt.ok {
				t.Fatalf("parseDateRange(%q) ok = %v, want %v", tt.in, ok, tt.ok)
			}
			if ok && (!lo.Equal(tt.low) || !hi.Equal(tt.hi)) {
				t.Errorf("parseDateRange(%q) = %v .. %v, want %v .. %v", tt.in, lo, hi, tt.low, tt.hi)
			}
			if ok && (lo.Location() != time.UTC || hi.Location() != time.UTC) {
				t.Errorf("parseDateRange(%q) not in UTC", tt.in)
			}
		})
	}
}
