package search

import (
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"
)

// Normalize folds a string for the default (case- and accent-insensitive)
// string match and for token :text, so that element values (Entry.Norm,
// Entry.Text) and query values compare equal when they should. The rule,
// rune by rune:
//
//  1. lower-case (unicode.ToLower), then decompose (Unicode canonical
//     decomposition, NFD) and drop the accents, the combining marks
//     Unicode calls diacritics (isAccent): é (precomposed or e + U+0301)
//     -> e, ễ -> e, ǚ -> u, ñ -> n, ā -> a; Hebrew points and Arabic
//     harakat too (written or not, the same name);
//  2. a Latin letter that does not decompose becomes its base letter(s)
//     (ø->o, ł->l, đ->d, ı->i; ß->ss, æ->ae, œ->oe, þ->th, ð->d, ĳ->ij);
//  3. other letters, digits and marks (any script) are kept: a kana's
//     voicing marks (が is not か), an Indic or Thai vowel sign;
//  4. any Unicode white space, and punctuation and symbols other than an
//     apostrophe, become a space, a word boundary: "Smith-Jones" ->
//     "smith jones", "Dr.A.B." -> "dr a b";
//  5. apostrophes (' ’ ‘ ` ´ ʼ) and everything else (controls, invisible
//     format characters such as a zero-width space, variation
//     selectors, other numerals) are dropped: "O'Brien" -> "obrien";
//
// then runs of spaces collapse to one, leading/trailing spaces go, and
// what is left is recomposed (NFC): what NFD split apart other than
// accents is whole again, so a Hangul syllable is one letter (이 is not a
// prefix of 임, as its jamo ㅇㅣ are of ㅇㅣㅁ) and NFC and NFD input
// compare equal. A value of only punctuation, symbols or invisible
// characters normalises to "" (Parse refuses it as a search value).
// Normalize is idempotent.
// ASCII input, most index rows, takes a fast path, and is returned as it
// is when it is already normalised.
func Normalize(s string) string {
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			return normalizeUnicode(s)
		}
	}
	if asciiNormal(s) {
		return s
	}
	var b strings.Builder
	b.Grow(len(s))
	space := false // a space is pending
	for i := 0; i < len(s); i++ {
		switch c := s[i]; asciiClass(c) {
		case classUpper:
			c += 'a' - 'A'
			fallthrough
		case classKeep:
			if space {
				b.WriteByte(' ')
				space = false
			}
			b.WriteByte(c)
		case classSpace:
			space = b.Len() > 0
		}
	}
	return b.String()
}

// asciiNormal reports whether the ASCII string s is its own Normalize:
// lower-case letters and digits, single spaces between them.
func asciiNormal(s string) bool {
	prevSpace := true // no leading space
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case asciiClass(c) == classKeep:
			prevSpace = false
		case c == ' ' && !prevSpace:
			prevSpace = true
		default:
			return false
		}
	}
	return !prevSpace || s == ""
}

// The classes of ASCII bytes for Normalize.
const (
	classDrop  = iota // controls, apostrophes
	classKeep         // a-z, 0-9
	classUpper        // A-Z
	classSpace        // white space, punctuation, symbols
)

// asciiClass is the Normalize class of the ASCII byte c.
func asciiClass(c byte) uint8 {
	switch {
	case c >= 'a' && c <= 'z', c >= '0' && c <= '9':
		return classKeep
	case c >= 'A' && c <= 'Z':
		return classUpper
	case c == '\'' || c == '`':
		return classDrop
	case c == ' ', c >= '\t' && c <= '\r', c > ' ' && c < 0x7f:
		return classSpace
	}
	return classDrop
}

// normalizeUnicode is Normalize of a string that is not all ASCII.
func normalizeUnicode(s string) string {
	var b strings.Builder
	b.Grow(len(s))
	space := false // a space is pending
	ascii := true  // b holds ASCII only: nothing to recompose
	var enc [utf8.UTFMax]byte
	emit := func(r rune) {
		if r < utf8.RuneSelf {
			switch asciiClass(byte(r)) {
			case classUpper:
				r += 'a' - 'A'
			case classSpace:
				space = b.Len() > 0
				return
			case classDrop:
				return
			}
		} else if isApostrophe(r) {
			return
		} else if out, ok := foldLatin(r); ok {
			if space {
				b.WriteByte(' ')
				space = false
			}
			b.WriteString(out)
			return
		} else if !unicode.IsLetter(r) && !unicode.IsDigit(r) && !keptMark(r) {
			if unicode.IsSpace(r) || unicode.IsPunct(r) || unicode.IsSymbol(r) {
				space = b.Len() > 0
			}
			return
		}
		if space {
			b.WriteByte(' ')
			space = false
		}
		if r >= utf8.RuneSelf {
			ascii = false
		}
		b.WriteRune(r)
	}
	for _, r := range s {
		r = unicode.ToLower(r)
		if r < utf8.RuneSelf {
			emit(r)
			continue
		}
		n := utf8.EncodeRune(enc[:], r)
		d := norm.NFD.Properties(enc[:n]).Decomposition()
		if d == nil {
			emit(r) // a Hangul syllable too: NFD splits it by arithmetic, which NFC undoes
			continue
		}
		for _, dr := range string(d) {
			emit(dr)
		}
	}
	if ascii {
		return b.String()
	}
	return norm.NFC.String(b.String())
}

// keptMark reports whether r is a mark that Normalize keeps: a
// combining mark that is not an accent (isAccent) nor invisible (a
// variation selector, the combining grapheme joiner).
func keptMark(r rune) bool {
	return unicode.IsMark(r) && !isAccent(r) && !unicode.Is(unicode.Variation_Selector, r) && r != '\u034f'
}

// isAccent reports whether r is a combining mark that Normalize drops: a
// non-spacing mark with Unicode's Diacritic property (the accents of
// Latin, Greek and Cyrillic letters, Vietnamese and pinyin tones, Hebrew
// points, Arabic harakat, ...) other than the kana voicing marks, which
// make another kana (か + U+3099 is が, a different sound and name) and
// so are kept, as HAPI FHIR's search normaliser keeps them.
func isAccent(r rune) bool {
	return unicode.Is(unicode.Mn, r) && unicode.Is(unicode.Diacritic, r) && r != '\u3099' && r != '\u309a'
}

// isApostrophe reports whether r is written as an apostrophe inside names
// (O’Brien, D´Angelo), which Normalize drops rather than reading as a
// word boundary.
func isApostrophe(r rune) bool {
	switch r {
	case '\u2019', '\u2018', '\u00b4', '\u02bc', '\u2032':
		return true
	}
	return false
}

// foldLatin maps a lower-case Latin letter with a diacritic (Latin-1
// Supplement and Latin Extended-A, plus the Romanian comma letters) to its
// base letters. Normalize decomposes the letters that decompose before it
// gets here; the table keeps them so that it stands on its own.
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
