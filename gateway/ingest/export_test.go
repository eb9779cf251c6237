package ingest

import "github.com/ketamine-gateway/ketamine-gateway/gateway/engine"

// SetProfileCheck replaces the profile check of p's mapped resources (a
// test's stricter profile: a mapping whose output its profile refuses).
func SetProfileCheck(p *Pipeline, check func(doc map[string]any, expr string) error) {
	p.profiles = check
}

// OnStored tells f the speculation of each record s stores (nil for none),
// once its transaction committed.
func OnStored(s *Service, f func(used int)) {
	s.stored = func(sp *engine.Speculation) { f(sp.Used()) }
}
