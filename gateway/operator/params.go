package operator

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/outcome"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
	"github.com/ketamine-gateway/ketamine-gateway/mapping"
)

// The operator's parameters are checked here, once for the API, the CLI
// and the console: a value that names nothing (a misspelt status or
// destination) is refused, not answered with an empty list that looks like
// "no dead letters" or "nothing to replay".

// Statuses are the delivery statuses, in the order a delivery goes through
// them.
var Statuses = []string{store.StatusPending, store.StatusInFlight, store.StatusDone, store.StatusDead}

// MaxLimit bounds the deliveries one list returns; DefaultLimit is the
// number without a limit.
const (
	MaxLimit     = 1000
	DefaultLimit = 100
)

// ParamInvalid is the Invalid error (rule parameter-invalid) of an
// operator parameter: msg starts with the parameter's name and says what
// a valid value is, never quoting the value given.
func ParamInvalid(msg string) error {
	return outcome.New(outcome.Invalid, "invalid", "parameter-invalid", msg)
}

// Destinations returns the names of the delivery destinations an operator
// may name, sorted: those configured and those the outbox holds deliveries
// to (a destination since removed from the configuration).
func (s *Service) Destinations(ctx context.Context) ([]string, error) {
	out := slices.Clone(s.destinations)
	stats, err := s.store.Stats(ctx)
	if err != nil {
		return nil, err
	}
	for _, st := range stats {
		out = append(out, st.Destination)
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}

// checkDestination refuses a destination that names none of Destinations.
// A configured one needs no look at the outbox.
func (s *Service) checkDestination(ctx context.Context, dest string) error {
	if slices.Contains(s.destinations, dest) {
		return nil
	}
	dests, err := s.Destinations(ctx)
	if err != nil {
		return err
	}
	switch {
	case slices.Contains(dests, dest):
		return nil
	case len(dests) == 0:
		return ParamInvalid("destination names no destination: none is configured and nothing was delivered")
	}
	return ParamInvalid("destination names no destination; the destinations are " + strings.Join(dests, ", "))
}

// CheckFilter returns the ParamInvalid error of the first parameter of f
// that is out of range or names nothing: CheckValues, a since in the future
// (CheckSince), then a destination not in Destinations.
func (s *Service) CheckFilter(ctx context.Context, f store.DeliveryFilter) error {
	if err := CheckValues(f); err != nil {
		return err
	}
	if err := s.CheckSince(f.Since); err != nil {
		return err
	}
	if f.Destination != "" {
		return s.checkDestination(ctx, f.Destination)
	}
	return nil
}

// CheckValues is the part of CheckFilter that needs no database: a status
// not in Statuses, a kind not a record kind, a limit not from 1 to MaxLimit (0 is DefaultLimit), a
// patient not of the form <source system>|<clinic patient id>, a negative
// offset, an until not later than since.
func CheckValues(f store.DeliveryFilter) error {
	if f.Status != "" && !slices.Contains(Statuses, f.Status) {
		return ParamInvalid("status must be one of " + strings.Join(Statuses, ", "))
	}
	if f.Limit < 0 || f.Limit > MaxLimit {
		return ParamInvalid(fmt.Sprintf("limit must be from 1 to %d", MaxLimit))
	}
	if f.Patient != "" {
		// A delivery's patient is its source system and clinic patient id:
		// a bare id would match nothing and look like "never delivered".
		if sys, id, ok := strings.Cut(f.Patient, "|"); !ok || sys == "" || id == "" {
			return ParamInvalid("patient must be <source system>|<clinic patient id>, as each delivery's patient is shown (the clinic system the records came from, then the patient's id there)")
		}
	}
	if f.Kind != "" && !slices.Contains(mapping.Kinds(), mapping.Kind(f.Kind)) {
		kinds := make([]string, 0, len(mapping.Kinds()))
		for _, k := range mapping.Kinds() {
			kinds = append(kinds, string(k))
		}
		return ParamInvalid("kind must be one of " + strings.Join(kinds, ", "))
	}
	if f.Offset < 0 {
		return ParamInvalid("offset must be 0 or more")
	}
	if !f.Since.IsZero() && !f.Until.IsZero() && !f.Until.After(f.Since) {
		// An inverted (or empty) range matches nothing: most likely the
		// two were swapped.
		return ParamInvalid("until must be later than since (since is the start of the range, until its end)")
	}
	return nil
}

// CheckSince refuses a since (of a list or a replay) later than now: no
// delivery was created after it, so the answer would be an empty list or
// "nothing to replay" that hides a mistyped year. As $export refuses a
// _since in the future.
func (s *Service) CheckSince(since time.Time) error {
	if since.After(s.now()) {
		return ParamInvalid("since is in the future: no delivery was created after it (check the year)")
	}
	return nil
}
