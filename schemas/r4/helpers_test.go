package r4

import (
	"os"
	"path/filepath"
	"sync"
	"testing"
)

var (
	testValidatorOnce sync.Once
	testValidatorVal  *Validator
)

// testValidator returns a Validator shared by the tests.
func testValidator() *Validator {
	testValidatorOnce.Do(func() { testValidatorVal = New(Options{}) })
	return testValidatorVal
}

// sharedTestdata returns the path of a folder of the shared test data
// (../shared/testdata next to the repository root, found by walking up to
// go.mod), skipping the test when it is absent.
func sharedTestdata(tb testing.TB, elem ...string) string {
	tb.Helper()
	dir := sharedTestdataDir()
	if dir == "" {
		tb.Skip("shared test data not found (expected ../shared/testdata next to the repository root)")
	}
	p := filepath.Join(append([]string{dir}, elem...)...)
	if _, err := os.Stat(p); err != nil {
		tb.Skipf("shared test data %s absent", filepath.Join(elem...))
	}
	return p
}

// sharedTestdataDir finds ../shared/testdata relative to the module root.
func sharedTestdataDir() string {
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

// errorsOf returns the error-severity issues of r.
func errorsOf(r *Result) []Issue {
	var out []Issue
	for _, is := range r.Issues {
		if is.Severity == SeverityError {
			out = append(out, is)
		}
	}
	return out
}
