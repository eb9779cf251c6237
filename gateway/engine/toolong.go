package engine

import (
	"errors"
	"fmt"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/outcome"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/search"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
)

// locateTooLong answers a write the database refused for a value too long
// for its search index (store.ErrValueTooLong: PostgreSQL's B-tree limit,
// found when the rows are inserted, which does not say whose) with the
// resource that holds the longest indexed value of those entries wrote,
// and its search parameter: Bundle.entry[n].resource in a Bundle (inBundle),
// else the resource's type. A PostgreSQL operator's review: a transaction's
// 422 named neither entry nor element. Other errors, and a refusal whose
// resource is not found, are returned as they are.
func locateTooLong(err error, entries []*Entry, inBundle bool) error {
	var tm *search.TooManyEntries
	if errors.As(err, &tm) && inBundle {
		return locateTooMany(tm, entries, err)
	}
	if !errors.Is(err, store.ErrValueTooLong) {
		return err
	}
	var at *Entry
	longest, param := 0, ""
	for _, en := range entries {
		if en.doc == nil {
			continue // a read, a delete: nothing indexed
		}
		for _, ix := range search.Extract(en.typ, en.doc) {
			n := len(ix.System) + len(ix.Code) + len(ix.Text) + len(ix.Norm) + len(ix.Exact) +
				len(ix.RefType) + len(ix.RefID) + len(ix.RefURL) + len(ix.Unit)
			if n > longest {
				at, longest, param = en, n, ix.Param
			}
		}
	}
	if at == nil {
		return err
	}
	expr := at.typ
	if inBundle {
		expr = fmt.Sprintf("Bundle.entry[%d].resource", at.index)
	}
	oe := outcome.New(outcome.Unprocessable, "too-long", outcome.RuleValueTooLong, fmt.Sprintf("the value of the "+
		"search parameter %s of this %s is %d bytes, too long for the database's search index: on PostgreSQL an "+
		"indexed value holds some 2,700 bytes once compressed (some 2,000 characters of varied text); shorten it, or "+
		"keep it in an element the gateway does not index (a note, an extension); nothing was written", param, at.typ,
		longest)).At(expr)
	if inBundle {
		return &outcome.EntryError{Index: at.index, Err: oe}
	}
	return oe
}

// locateTooMany answers a Bundle whose entry's resource has more values to
// index than search.MaxEntries (tm, found as its version was made: err)
// at that element of the entry (Bundle.entry[n].resource...), as the
// validator names an entry's elements. An entry not found leaves err as
// it is (outcome.From answers it at the resource's element).
func locateTooMany(tm *search.TooManyEntries, entries []*Entry, err error) error {
	for _, en := range entries {
		if en.doc == nil || en.typ != tm.Type || en.id != tm.ID {
			continue
		}
		kind, issues := outcome.From(tm)
		for i := range issues {
			issues[i].Expression = nestedExpr(fmt.Sprintf("Bundle.entry[%d].resource", en.index), tm.Type, issues[i].Expression)
		}
		return &outcome.EntryError{Index: en.index, Err: &outcome.Error{Kind: kind, Issues: issues}}
	}
	return err
}
