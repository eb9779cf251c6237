package engine

import (
	"fmt"
	"strings"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/outcome"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/search"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
)

// soleMatches checks, once a transaction's entries are written, that each
// resource a conditional create or update made (its criteria matched
// nothing stored) is the only resource the transaction leaves that its
// criteria select. Another one would be a second copy: two conditional
// creates of different criteria that both select the Patient each makes
// (identifier=mrn|1 and identifier=mrn2|2 of one Patient with both), or a
// plain POST, a PUT or a patch whose resource the criteria select. Each
// later request with those criteria would then find several (412), for
// good. The same criteria twice are decided once (resolveCriteria) and
// never get here. Such a transaction fails with PreconditionFailed
// conditional-create-duplicate at the later of the two entries, naming the
// other.
//
// The written resources are judged from their index entries where that is
// certain (search.Selects); otherwise the criteria are searched again. A
// token clause of the criteria narrows the resources to judge to those
// indexed with one of its codes, so that a Bundle of many conditional
// creates of one type is not judged pair by pair.
func soleMatches(tx store.Tx, entries []*Entry) error {
	var w *writtenIndex
	for _, en := range entries {
		if en.criteria == nil || en.res == nil || !en.res.Created || en.method == "GET" {
			continue
		}
		if w == nil {
			w = indexWritten(entries)
		}
		unsure := false
		for _, o := range w.candidates(en.typ, en.criteria) {
			if o == en || o.id == en.id {
				continue
			}
			switch selected, known := search.Selects(en.criteria, o.id, w.rows[o]); {
			case !known:
				unsure = true
			case selected:
				return errDuplicate(en, o)
			}
		}
		if !unsure {
			continue
		}
		page, err := tx.Search(en.criteria)
		if err != nil {
			return err
		}
		for _, m := range page.Matches {
			if m.ID == en.id {
				continue
			}
			for _, o := range w.byType[en.typ] {
				if o.id == m.ID {
					return errDuplicate(en, o)
				}
			}
		}
	}
	return nil
}

// errDuplicate is the failure of a transaction in which the criteria of
// en, which made a resource, also select the resource o writes.
func errDuplicate(en, o *Entry) error {
	at := en
	if o.index > en.index {
		at = o
	}
	what := fmt.Sprintf("the conditional criteria of entry %d (Bundle.entry[%d]) select the resource it creates and "+
		"the one entry %d (Bundle.entry[%d]) writes", en.index, en.index, o.index, o.index)
	return &outcome.EntryError{Index: at.index, Err: outcome.New(outcome.PreconditionFailed, "multiple-matches",
		"conditional-create-duplicate", what+", so this transaction would leave two resources they select, and every "+
			"later request with them would find several; give both entries the same criteria (they then make one "+
			"resource), merge them into one entry, or make the criteria select only their own resource").At("request")}
}

// writtenIndex is what a transaction wrote, by type, with each written
// resource's index entries and, for narrowing, the entries by token code;
// both made for a type when a resource of that type is first judged.
type writtenIndex struct {
	byType  map[string][]*Entry
	indexed map[string]bool
	rows    map[*Entry][]search.Entry
	byToken map[string][]*Entry // type|param|code -> the entries indexed so
}

// indexWritten lists the resources entries wrote (created by a POST,
// written by a PUT or PATCH; not a POST that matched, nor a deletion).
func indexWritten(entries []*Entry) *writtenIndex {
	w := &writtenIndex{byType: map[string][]*Entry{}, indexed: map[string]bool{}, rows: map[*Entry][]search.Entry{},
		byToken: map[string][]*Entry{}}
	for _, en := range entries {
		switch {
		case en.res == nil || en.res.Resource == nil || en.res.Resource.Deleted || en.matched != nil || en.doc == nil:
			continue
		case en.method != "POST" && en.method != "PUT" && en.method != "PATCH":
			continue
		}
		w.byType[en.typ] = append(w.byType[en.typ], en)
	}
	return w
}

// index makes the index entries of the resources of typ written: those
// rendered ahead (a POST's), else extracted now.
func (w *writtenIndex) index(typ string) {
	if w.indexed[typ] {
		return
	}
	w.indexed[typ] = true
	for _, en := range w.byType[typ] {
		var rows []search.Entry
		if en.rendered != nil && en.rendered.err == nil {
			rows = en.rendered.entries
		} else {
			rows = search.Extract(en.typ, en.doc)
		}
		w.rows[en] = rows
		seen := map[string]bool{}
		for _, r := range rows {
			if r.Type != search.TypeToken {
				continue
			}
			k := typ + "|" + r.Param + "|" + r.Code
			if !seen[k] {
				seen[k] = true
				w.byToken[k] = append(w.byToken[k], en)
			}
		}
	}
}

// candidates returns the written resources of typ that criteria q might
// select: those indexed with a code of q's first token clause that decides
// by code (no modifier, a code in every value), else all of typ's.
func (w *writtenIndex) candidates(typ string, q *search.Query) []*Entry {
	if len(w.byType[typ]) < 2 {
		return nil // only the resource the criteria made
	}
	w.index(typ)
	for _, c := range q.Clauses {
		if c.Type != search.TypeToken || c.Modifier != "" || c.Chain != nil || c.Has != nil || c.Missing != nil ||
			strings.HasPrefix(c.Param, "_") || len(c.Values) == 0 {
			continue
		}
		var out []*Entry
		byCode := true
		for _, v := range c.Values {
			if v.Code == "" {
				byCode = false
				break
			}
			out = append(out, w.byToken[typ+"|"+c.Param+"|"+v.Code]...)
		}
		if byCode {
			return out
		}
	}
	return w.byType[typ]
}
