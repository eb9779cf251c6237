package sqlstore

import (
	"math"
	"strings"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/search"
)

// OrderBy is the ORDER BY of q's sort keys ("?" placeholders, for Add),
// completed by last_updated then (type and) id so that the order is total
// and paging is stable. A date parameter sorts by its earliest Low
// ascending, its latest High descending; resources without a value come
// last.
func OrderBy(q *search.Query) (string, []any) {
	var parts []string
	var args []any
	seenLU, seenID := false, false
	for _, k := range q.Sort {
		dir := " ASC"
		if k.Descending {
			dir = " DESC"
		}
		switch k.Param {
		case "_lastUpdated":
			if !seenLU {
				parts = append(parts, "c.last_updated"+dir)
			}
			seenLU = true
		case "_id":
			if !seenID {
				if q.Type == "" {
					parts = append(parts, "c.type"+dir)
				}
				parts = append(parts, "c.id"+dir)
			}
			seenID = true
		default:
			if k.Descending {
				parts = append(parts, "COALESCE((SELECT MAX(d.high) FROM idx_date d WHERE d.type = c.type AND d.id = c.id AND d.param = ?), ?) DESC")
				args = append(args, k.Param, int64(math.MinInt64))
			} else {
				parts = append(parts, "COALESCE((SELECT MIN(d.low) FROM idx_date d WHERE d.type = c.type AND d.id = c.id AND d.param = ?), ?) ASC")
				args = append(args, k.Param, int64(math.MaxInt64))
			}
		}
	}
	if !seenLU {
		parts = append(parts, "c.last_updated ASC")
	}
	if !seenID {
		if q.Type == "" {
			parts = append(parts, "c.type ASC")
		}
		parts = append(parts, "c.id ASC")
	}
	return strings.Join(parts, ", "), args
}
