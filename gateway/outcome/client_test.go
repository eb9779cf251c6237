package outcome

import (
	"context"
	"errors"
	"testing"
	"time"
)

// TestClientClosed: only a context canceled without a cause of its own (as
// the HTTP server cancels a request's when its client goes away) is a
// client that went away; a drain's cancellation (with a cause), a deadline
// and a live context are not.
func TestClientClosed(t *testing.T) {
	canceled, cancel := context.WithCancel(context.Background())
	cancel()
	drained, cancelCause := context.WithCancelCause(context.Background())
	cancelCause(errors.New("drain deadline"))
	late, cancelLate := context.WithDeadline(context.Background(), time.Unix(0, 0))
	defer cancelLate()
	child, cancelChild := context.WithCancel(drained)
	defer cancelChild()
	for _, tc := range []struct {
		name string
		ctx  context.Context
		want bool
	}{
		{"canceled", canceled, true},
		{"drained", drained, false},
		{"child of a drained one", child, false},
		{"past its deadline", late, false},
		{"live", context.Background(), false},
	} {
		if got := ClientClosed(tc.ctx); got != tc.want {
			t.Errorf("ClientClosed(%s) = %v, want %v", tc.name, got, tc.want)
		}
	}
}
