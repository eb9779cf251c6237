package auth

import "testing"

func TestParseScopes(t *testing.T) {
	tests := []struct {
		in   string
		want string
	}{
		{"", ""},
		{"system/Observation.cruds", "system/Observation.cruds"},
		{"system/*.rs", "system/*.rs"},
		{"system/Patient.r system/Patient.s", "system/Patient.r system/Patient.s"},
		{"system/*.read system/*.write system/*.*", "system/*.read system/*.write system/*.*"},
		{"gateway/ingest gateway/operator", "gateway/ingest gateway/operator"},
		{"system/*.rs  system/*.rs\tsystem/*.read", "system/*.rs"}, // duplicates, v1 read == v2 rs
		{"system/Observation.sr", ""},                              // out of order
		{"system/Observation.rr", ""},                              // repeated
		{"system/Observation.x", ""},                               // unknown letter
		{"system/Observation.", ""},
		{"system/observation.rs", ""}, // not a resource type
		{"system/Obs-ervation.rs", ""},
		{"system/*.rs?category=laboratory", ""}, // granular scopes are not supported
		{"patient/*.rs user/*.read openid fhirUser launch", ""},
		{"gateway/admin system/*", ""},
		{"user/*.read system/Observation.rs", "system/Observation.rs"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			if got := ParseScopes(tt.in).String(); got != tt.want {
				t.Errorf("ParseScopes(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

func TestScopesAllows(t *testing.T) {
	tests := []struct {
		scopes string
		typ    string
		perm   byte
		want   bool
	}{
		{"system/Observation.cruds", "Observation", 'c', true},
		{"system/Observation.cruds", "Observation", 'd', true},
		{"system/Observation.cruds", "Patient", 'r', false},
		{"system/*.rs", "Patient", 'r', true},
		{"system/*.rs", "Patient", 's', true},
		{"system/*.rs", "Patient", 'u', false},
		{"system/*.rs", "*", 's', true},
		{"system/Patient.rs", "*", 's', false},
		{"system/*.read", "Encounter", 's', true},
		{"system/*.read", "Encounter", 'c', false},
		{"system/*.write", "Encounter", 'c', true},
		{"system/*.write", "Encounter", 'u', true},
		{"system/*.write", "Encounter", 'd', true},
		{"system/*.write", "Encounter", 'r', false},
		{"system/Observation.*", "Observation", 's', true},
		{"system/*.cruds", "Observation", 'x', false},
		{"system/*.cruds", "Observation", 'R', false},
		{"system/*.cruds", "", 'r', false},
		{"gateway/ingest gateway/operator", "Observation", 'r', false},
		{"", "Observation", 'r', false},
	}
	for _, tt := range tests {
		t.Run(tt.scopes+"/"+tt.typ+"."+string(tt.perm), func(t *testing.T) {
			if got := ParseScopes(tt.scopes).Allows(tt.typ, tt.perm); got != tt.want {
				t.Errorf("ParseScopes(%q).Allows(%q, %q) = %v, want %v", tt.scopes, tt.typ, tt.perm, got, tt.want)
			}
		})
	}
}

func TestScopesHas(t *testing.T) {
	tests := []struct {
		scopes string
		name   string
		want   bool
	}{
		{"gateway/ingest", ScopeIngest, true},
		{"gateway/ingest", ScopeOperator, false},
		{"system/*.cruds", ScopeOperator, false},
		{"system/*.rs", "system/Observation.r", true},
		{"system/*.rs", "system/Observation.read", true},
		{"system/*.rs", "system/Observation.rs", true},
		{"system/*.rs", "system/Observation.cr", false},
		{"system/Patient.r system/Patient.s", "system/Patient.rs", true},
		{"system/Patient.r system/*.s", "system/Patient.rs", true},
		{"system/Patient.rs", "system/*.rs", false},
		{"system/*.cruds", "not a scope", false},
		{"system/*.cruds", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.scopes+"/"+tt.name, func(t *testing.T) {
			if got := ParseScopes(tt.scopes).Has(tt.name); got != tt.want {
				t.Errorf("ParseScopes(%q).Has(%q) = %v, want %v", tt.scopes, tt.name, got, tt.want)
			}
		})
	}
}

func TestGrant(t *testing.T) {
	tests := []struct {
		name      string
		requested string
		allowed   string
		want      string
	}{
		{"equal", "system/*.rs", "system/*.rs", "system/*.rs"},
		{"wildcard narrowed to allowed type", "system/*.rs", "system/Observation.cruds", "system/Observation.rs"},
		{"type narrowed by allowed wildcard", "system/Observation.cruds", "system/*.rs", "system/Observation.rs"},
		{"permissions intersect", "system/Patient.cud", "system/Patient.rs", ""},
		{"other type", "system/Patient.rs", "system/Observation.rs", ""},
		{"v1 kept when fully granted", "system/*.read", "system/*.cruds", "system/*.read"},
		{"v1 narrowed to v2", "system/*.*", "system/*.rs", "system/*.rs"},
		{"merged across allowed scopes", "system/*.rs", "system/*.r system/*.s", "system/*.rs"},
		{"redundant type dropped", "system/*.rs system/Observation.r", "system/*.cruds", "system/*.rs"},
		{"type keeps extra permissions", "system/*.cruds", "system/*.rs system/Observation.cruds", "system/*.rs system/Observation.cruds"},
		{"gateway scopes only if allowed", "gateway/ingest gateway/operator", "gateway/ingest system/*.rs", "gateway/ingest"},
		{"unknown scopes ignored", "openid launch/patient patient/*.rs system/Observation.rs", "system/*.rs", "system/Observation.rs"},
		{"nothing allowed", "system/*.rs", "", ""},
		{"nothing requested", "", "system/*.cruds", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := grant(ParseScopes(tt.requested), ParseScopes(tt.allowed)).String()
			if got != tt.want {
				t.Errorf("grant(%q, %q) = %q, want %q", tt.requested, tt.allowed, got, tt.want)
			}
		})
	}
}
