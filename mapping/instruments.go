package mapping

import (
	"sort"
	"strconv"
	"strings"
)

// instrument describes a scored questionnaire: its items, answer coding,
// scoring rule and severity bands. Codes are table keys (codes.go).
type instrument struct {
	name     string // the native "instrument" value
	key      string // table key prefix: <key>.panel, <key>.<n>, <key>.total
	items    int    // number of items (0: a single score, no panel)
	maxScore int    // highest item score (0 for yes/no items)
	maxTotal int
	// answer returns the table key of an item's answer for a score.
	answer func(score int) string
	// total computes the total from complete item scores (index 0 = item 1).
	total func(scores []int) int
	bands []band
	// difficulty is the code table key of the difficulty item the native
	// "difficulty" field answers; "" for an instrument without one.
	difficulty string
}

// band is a severity band: totals up to max (inclusive) fall into it.
type band struct {
	max int
	key string
}

func sum(scores []int) int {
	t := 0
	for _, s := range scores {
		t += s
	}
	return t
}

func maxOf(scores ...int) int {
	m := 0
	for _, s := range scores {
		m = max(m, s)
	}
	return m
}

// qidsTotal is the QIDS-SR16 scoring rule: the highest of items 1-4 (sleep),
// item 5, the highest of items 6-9 (appetite/weight), items 10-14, and the
// highest of items 15-16 (psychomotor).
func qidsTotal(s []int) int {
	return maxOf(s[0], s[1], s[2], s[3]) + s[4] + maxOf(s[5], s[6], s[7], s[8]) +
		s[9] + s[10] + s[11] + s[12] + s[13] + maxOf(s[14], s[15])
}

func freqAnswer(score int) string  { return "answer.freq." + strconv.Itoa(score) }
func localAnswer(score int) string { return "answer.score." + strconv.Itoa(score) }

// instruments lists every supported instrument by its native name.
var instruments = map[string]*instrument{
	"PHQ-9": {name: "PHQ-9", key: "phq9", items: 9, maxScore: 3, maxTotal: 27, answer: freqAnswer, total: sum,
		bands:      []band{{4, "band.minimal"}, {9, "band.mild"}, {14, "band.moderate"}, {19, "band.moderately-severe"}, {27, "band.severe"}},
		difficulty: "phq9.difficulty"},
	"GAD-7": {name: "GAD-7", key: "gad7", items: 7, maxScore: 3, maxTotal: 21, answer: freqAnswer, total: sum,
		bands: []band{{4, "band.minimal"}, {9, "band.mild"}, {14, "band.moderate"}, {21, "band.severe"}}},
	"C-SSRS-screener": {name: "C-SSRS-screener", key: "cssrs", items: 7},
	"MADRS": {name: "MADRS", key: "madrs", items: 10, maxScore: 6, maxTotal: 60, answer: localAnswer, total: sum,
		bands: []band{{6, "band.normal"}, {19, "band.mild"}, {34, "band.moderate"}, {60, "band.severe"}}},
	"QIDS-SR16": {name: "QIDS-SR16", key: "qids", items: 16, maxScore: 3, maxTotal: 27, answer: localAnswer, total: qidsTotal,
		bands: []band{{5, "band.none"}, {10, "band.mild"}, {15, "band.moderate"}, {20, "band.severe"}, {27, "band.very-severe"}}},
	"CADSS":  {name: "CADSS", key: "cadss", items: 23, maxScore: 4, maxTotal: 92, answer: localAnswer, total: sum},
	"MOAA-S": {name: "MOAA-S", key: "moaas", items: 0, maxTotal: 5},
}

// Instrument describes a supported instrument as the mapping scores and
// codes it: for the gateway's ValueSets, the documentation and the
// mapping version's record of what it maps (outputs.sum).
type Instrument struct {
	Name     string // the native "instrument" value
	Key      string // the prefix of its code table keys: <Key>.panel, <Key>.<n>, <Key>.total
	Items    int    // number of items (0: a single score, no panel)
	MaxScore int    // highest item score (0 for yes/no items)
	MaxTotal int    // highest total (0: no total score)
	// Bands are the severity bands of the total, by code table key; none
	// for an instrument without.
	Bands []Band
	// Difficulty is the code table key of the instrument's difficulty item
	// (the native "difficulty" field, PHQ-9's item 10), "" when it has none.
	Difficulty string
}

// Band is a severity band: totals up to Max (inclusive) fall into it.
type Band struct {
	Max int
	Key string
}

// Instruments lists every supported instrument, by native name.
func Instruments() []Instrument {
	out := make([]Instrument, 0, len(instruments))
	for _, in := range instruments {
		var bands []Band
		for _, b := range in.bands {
			bands = append(bands, Band{Max: b.max, Key: b.key})
		}
		out = append(out, Instrument{Name: in.name, Key: in.key, Items: in.items, MaxScore: in.maxScore,
			MaxTotal: in.maxTotal, Bands: bands, Difficulty: in.difficulty})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// InstrumentLimits returns the highest item score and the highest total of the
// instrument of native name (the bounds of assessment.score-range and
// assessment.total-range), 0 for what it does not have (yes/no items, no
// total); ok is false for an instrument the gateway does not know.
func InstrumentLimits(name string) (maxScore, maxTotal int, ok bool) {
	in, ok := instruments[name]
	if !ok {
		return 0, 0, false
	}
	return in.maxScore, in.maxTotal, true
}

// rootKey is the code table key of the Observation that stands for an
// assessment of the instrument: its panel, or its score when it has no
// items.
func (in *instrument) rootKey() string {
	if in.items == 0 {
		return in.key + ".total"
	}
	return in.key + ".panel"
}

// InstrumentCoded returns the native name of the instrument whose
// assessments the mapping codes system|code (the code of Entry.Instrument's
// Observation: the panel, or the score of an instrument without items);
// ok is false for any other code, a code an earlier mapping version gave
// among them.
func InstrumentCoded(system, code string) (name string, ok bool) {
	for _, in := range instruments {
		if c := concept(in.rootKey()); c.System == system && c.Code == code {
			return in.name, true
		}
	}
	return "", false
}

// withDifficulty names the instruments that have a difficulty item.
func withDifficulty() string {
	var names []string
	for _, in := range Instruments() {
		if in.Difficulty != "" {
			names = append(names, in.Name)
		}
	}
	return strings.Join(names, ", ")
}

// yesNo reports whether the instrument's items are yes/no questions.
func (in *instrument) yesNo() bool { return in.answer == nil && in.items > 0 }

// bandFor returns the band table key for a total, or "".
func (in *instrument) bandFor(total int) string {
	for _, b := range in.bands {
		if total <= b.max {
			return b.key
		}
	}
	return ""
}

// cssrsRisk derives the screener's risk level from its yes/no answers,
// keyed by item number (absent answers count as no): behaviour in the past
// 3 months or ideation with intent or plan is high risk; ideation with a
// method or lifetime behaviour is moderate; a wish to be dead or
// non-specific thoughts is low.
func cssrsRisk(yes map[int]bool) string {
	switch {
	case yes[4] || yes[5] || yes[7]:
		return "cssrs.risk.high"
	case yes[3] || yes[6]:
		return "cssrs.risk.moderate"
	case yes[1] || yes[2]:
		return "cssrs.risk.low"
	default:
		return "cssrs.risk.none"
	}
}

// cssrsRiskBounds derives the lowest and the highest risk level the
// screener's answers (by item number; unanswered items absent) allow. The
// form (LOINC 93373-9) always asks 1, 2 and 6, asks 3-5 only when 2 is yes
// and 7 only when 6 is yes, so an unanswered question may have been yes
// unless the question it depends on was answered no. The risk level is
// known when both bounds agree.
func cssrsRiskBounds(answers map[int]bool) (lowest, highest string) {
	low, high := map[int]bool{}, map[int]bool{}
	for n := 1; n <= 7; n++ {
		a, answered := answers[n]
		switch {
		case answered:
			low[n], high[n] = a, a
		case n >= 3 && n <= 5:
			high[n] = !(answeredNo(answers, 2))
		case n == 7:
			high[n] = !(answeredNo(answers, 6))
		default:
			high[n] = true
		}
	}
	return cssrsRisk(low), cssrsRisk(high)
}

func answeredNo(answers map[int]bool, n int) bool {
	a, ok := answers[n]
	return ok && !a
}
