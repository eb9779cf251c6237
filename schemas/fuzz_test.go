package schemas

import (
	"errors"
	"io/fs"
	"strings"
	"testing"
)

// DecodeCheck, when set (by the external test package, which may import
// package mapping), is called by FuzzValidate for every document Validate
// accepts: a schema-valid record must decode into its Go type.
var DecodeCheck func(kind string, doc []byte) error

// FuzzValidate checks that Validate never panics and always returns nil or a
// *ValidationError with 1..MaxIssues well-formed issues, and that what it
// accepts decodes (DecodeCheck). It is seeded with every example and every
// invalid test document.
func FuzzValidate(f *testing.F) {
	kindIndex := map[string]uint8{}
	for i, k := range Kinds() {
		kindIndex[k] = uint8(i)
	}
	all := allExamples(f)
	for _, kind := range Kinds() {
		for _, p := range all[kind] {
			b, err := fs.ReadFile(Examples(), p)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(kindIndex[kind], b)
		}
	}
	for _, c := range invalidCases(f) {
		if i, ok := kindIndex[c.kind]; ok && len(c.doc) < 1<<16 {
			f.Add(i, c.doc)
		}
	}
	s := set(f)
	f.Fuzz(func(t *testing.T, k uint8, doc []byte) {
		kind := kinds[int(k)%len(kinds)]
		err := s.Validate(kind, doc)
		if err == nil {
			if DecodeCheck != nil {
				if derr := DecodeCheck(kind, doc); derr != nil {
					t.Fatalf("schema-valid %s record does not decode: %v", kind, derr)
				}
			}
			return
		}
		var ve *ValidationError
		if !errors.As(err, &ve) {
			t.Fatalf("error %T is not a *ValidationError", err)
		}
		if len(ve.Issues) == 0 || len(ve.Issues) > MaxIssues {
			t.Fatalf("%d issues", len(ve.Issues))
		}
		checkIssueList(t, ve.Issues)
		for _, is := range ve.Issues {
			if strings.HasPrefix(is.Rule, "schema.") {
				if _, ok := knownRules[is.Rule]; !ok {
					t.Fatalf("unexpected rule %q", is.Rule)
				}
			}
		}
	})
}

var knownRules = map[string]bool{
	RuleRequired: true, RuleAdditionalProperty: true, RuleFalse: true, RuleType: true, RuleEnum: true,
	RuleFormat: true, RulePattern: true, RuleRange: true, RuleLength: true, RuleItemsCount: true, RuleUniqueItems: true,
	RuleEmptyObject: true, RuleKindMismatch: true,
}
