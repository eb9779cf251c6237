package replay

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/outcome"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
)

// TestRecordFault: an apply's failure that a rule of the record's
// resources names refuses that record; the gateway's or the database's
// stops the run.
func TestRecordFault(t *testing.T) {
	unresolved := &outcome.EntryError{Index: 0, Err: outcome.New(outcome.Invalid, "invalid", "reference-unresolved", "a reference names nothing")}
	for _, tc := range []struct {
		name string
		err  error
		want bool
	}{
		{"an entry's rule", unresolved, true},
		{"wrapped", fmt.Errorf("apply: %w", unresolved), true},
		{"a profile rule", outcome.New(outcome.Unprocessable, "processing", "profile-x", "breaks a profile"), true},
		{"the database", fmt.Errorf("read: %w", store.ErrUnavailable), false},
		{"the store busy", outcome.New(outcome.Unavailable, "transient", "store-busy", "busy"), false},
		{"a cancelled run", context.Canceled, false},
		{"a plain error", errors.New("disk on fire"), false},
	} {
		if got := recordFault(tc.err); got != tc.want {
			t.Errorf("%s: recordFault = %v, want %v", tc.name, got, tc.want)
		}
	}
}
