package mapping

import "testing"

func TestCheckIdentifierBase(t *testing.T) {
	for _, tc := range []struct {
		base string
		ok   bool
	}{
		{"", true},
		{DefaultIdentifierBase, true},
		{"https://hospital.example/sid", true},
		{"https://hospital.example/sid/", true},
		{"http://localhost:8080/ids", true},
		{"not a url", false},
		{"hospital.example/sid", false},
		{"urn:oid:1.2.3", false},
		{"ftp://hospital.example/sid", false},
		{"https:///sid", false},
		{"https://hospital.example/sid?x=1", false},
		{"https://hospital.example/sid#f", false},
		{"https://hospital.example/s id", false},
		{"https://hospital.example/s|id", false},
		{"https://hospital.example/s,id", false},
	} {
		if err := CheckIdentifierBase(tc.base); (err == nil) != tc.ok {
			t.Errorf("CheckIdentifierBase(%q) = %v; want ok %v", tc.base, err, tc.ok)
		}
	}
}
