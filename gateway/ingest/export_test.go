package ingest

// SetProfileCheck replaces the profile check of p's mapped resources (a
// test's stricter profile: a mapping whose output its profile refuses).
func SetProfileCheck(p *Pipeline, check func(doc map[string]any, expr string) error) {
	p.profiles = check
}
