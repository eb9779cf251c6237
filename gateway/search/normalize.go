package search

import (
	"strings"
	"unicode"
)

// Normalize folds a string for the default (case- and accent-insensitive)
// string match and for token :text, so that element values (Entry.Norm,
// Entry.Text) and query values compare equal when they should. The rule,
// rune by rune:
//
//  1. lower-case (unicode.ToLower);
//  2. a precomposed Latin letter with a diacritic becomes its base letter(s)
//     (à->a, é->e, ö->o, ñ->n, ç->c, ø->o, å->a, ł->l, ...; ß->ss, æ->ae,
//     œ->oe, þ->th, ð->d, ĳ->ij);
//  3. other letters and digits (any script) are kept;
//  4. any Unicode white space becomes a space;
//  5. everything else (punctuation, symbols, combining marks, controls) is
//     dropped: "O'Brien" -> "obrien", "Smith-Jones" -> "smithjones",
//     "e\u0301" (decomposed é) -> "e";
//
// then runs of spaces collapse to one and leading/trailing spaces go.
// Normalize is idempotent.
func Normalize(s string) string {
	var b strings.Builder
	b.Grow(len(s))
	space := false // a space is pending
	for _, r := range s {
		r = unicode.ToLower(r)
		if unicode.IsSpace(r) {
			space = b.Len() > 0
			continue
		}
		out, ok := foldLatin(r)
		if !ok {
			if !unicode.IsLetter(r) && !unicode.IsDigit(r) {
				continue
			}
			out = string(r)
		}
		if space {
			b.WriteByte(' ')
			space = false
		}
		b.WriteString(out)
	}
	return b.String()
}

// foldLatin maps a lower-case Latin letter with a diacritic (Latin-1
// Supplement and Latin Extended-A, plus the Romanian comma letters) to its
// base letters.
func foldLatin(r rune) (string, bool) {
	if r < 0xDF {
		return "", false
	}
	switch r {
	case 'à', 'á', 'â', 'ã', 'ä', 'å', 'ā', 'ă', 'ą':
		return "a", true
	case 'æ':
		return "ae", true
	case 'ç', 'ć', 'ĉ', 'ċ', 'č':
		return "c", true
	case 'ď', 'đ', 'ð':
		return "d", true
	case 'è', 'é', 'ê', 'ë', 'ē', 'ĕ', 'ė', 'ę', 'ě':
		return "e", true
	case 'ĝ', 'ğ', 'ġ', 'ģ':
		return "g", true
	case 'ĥ', 'ħ':
		return "h", true
	case 'ì', 'í', 'î', 'ï', 'ĩ', 'ī', 'ĭ', 'į', 'ı':
		return "i", true
	case 'ĳ':
		return "ij", true
	case 'ĵ':
		return "j", true
	case 'ķ', 'ĸ':
		return "k", true
	case 'ĺ', 'ļ', 'ľ', 'ŀ', 'ł':
		return "l", true
	case 'ñ', 'ń', 'ņ', 'ň', 'ŉ', 'ŋ':
		return "n", true
	case 'ò', 'ó', 'ô', 'õ', 'ö', 'ø', 'ō', 'ŏ', 'ő':
		return "o", true
	case 'œ':
		return "oe", true
	case 'ŕ', 'ŗ', 'ř':
		return "r", true
	case 'ś', 'ŝ', 'ş', 'š', 'ș', 'ſ':
		return "s", true
	case 'ß':
		return "ss", true
	case 'ţ', 'ť', 'ŧ', 'ț':
		return "t", true
	case 'þ':
		return "th", true
	case 'ù', 'ú', 'û', 'ü', 'ũ', 'ū', 'ŭ', 'ů', 'ű', 'ų':
		return "u", true
	case 'ŵ':
		return "w", true
	case 'ý', 'ÿ', 'ŷ':
		return "y", true
	case 'ź', 'ż', 'ž':
		return "z", true
	}
	return "", false
}
