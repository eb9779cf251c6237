package store

// PageBudget bounds the JSON of the bodies of a page (search.Query.MaxBytes,
// HistoryQuery.MaxBytes): it takes the first body whatever its size, then
// bodies as long as they come to at most Max in all (Max 0: every body).
// The stores cut their pages with it, and so does the engine where it
// pages what it filtered itself (a history under granular scopes).
type PageBudget struct {
	Max, Spent int
	taken      bool
}

// Take reports whether a body of n bytes still fits, and spends them if
// so.
func (b *PageBudget) Take(n int) bool {
	if b.Max > 0 && b.taken && b.Spent+n > b.Max {
		return false
	}
	b.Spent, b.taken = b.Spent+n, true
	return true
}
