package ingest

import (
	"reflect"

	"golang.org/x/text/unicode/norm"
)

// equivalent reports whether two decoded JSON values are the same content
// with their strings compared canonically (NFC): a name written
// precomposed (ā) or decomposed (a + U+0304, as macOS and Java's
// Normalizer write it) is one name, as search treats it. Keys compare as
// they are (the schemas name them in ASCII); other values as
// reflect.DeepEqual compares them.
func equivalent(a, b any) bool {
	switch x := a.(type) {
	case string:
		y, ok := b.(string)
		return ok && (x == y || norm.NFC.String(x) == norm.NFC.String(y))
	case map[string]any:
		y, ok := b.(map[string]any)
		if !ok || len(x) != len(y) {
			return false
		}
		for k, v := range x {
			w, ok := y[k]
			if !ok || !equivalent(v, w) {
				return false
			}
		}
		return true
	case []any:
		y, ok := b.([]any)
		if !ok || len(x) != len(y) {
			return false
		}
		for i := range x {
			if !equivalent(x[i], y[i]) {
				return false
			}
		}
		return true
	}
	return reflect.DeepEqual(a, b)
}
