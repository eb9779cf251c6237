package replay

import (
	"context"
	"encoding/json"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/auditlog"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
)

// SetBeforeCompare makes s call fn with each record's ledger entry as its
// replay starts, after the walk read it (a test's way to store a new
// version in between).
func SetBeforeCompare(s *Service, fn func(l *store.Ledger)) { s.beforeCompare = fn }

// RunUntil is Run that stops, as a cancelled job does, once stop closes;
// Stopped is then the job's final word on how far it got.
func RunUntil(ctx context.Context, s *Service, sc *auditlog.Scope, opts Options, stop <-chan struct{}, emit func(RecordResult) error) (*Summary, error) {
	return s.run(ctx, sc, opts, &Summary{MappingVersion: s.cfg.MappingVersion, Applied: opts.Apply}, emit, nil, stop)
}

// Stopped is the final state of a replay job cancelled after sum.
func Stopped(sum *Summary) string { return sum.stopped() }

// CheckJobMapping is the check a replay job's handler makes first: that
// this service's mapping is the one j was submitted under.
func CheckJobMapping(s *Service, j *store.Job) error {
	var req jobRequest
	if err := json.Unmarshal(j.Request, &req); err != nil {
		return err
	}
	return s.jobMapping(req)
}
