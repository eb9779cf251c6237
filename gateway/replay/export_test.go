package replay

import "github.com/ketamine-gateway/ketamine-gateway/gateway/store"

// SetBeforeCompare makes s call fn with each record's ledger entry as its
// replay starts, after the walk read it (a test's way to store a new
// version in between).
func SetBeforeCompare(s *Service, fn func(l *store.Ledger)) { s.beforeCompare = fn }
