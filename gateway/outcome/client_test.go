package outcome

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"
)

// TestClientClosed: only a context canceled without a cause of its own (as
// the HTTP server cancels a request's when its client goes away) is a
// client that went away, and only when the request's error is that
// cancellation; a drain's cancellation (with a cause), a deadline, a live
// context, and a fault of another kind as the client gave up are not.
func TestClientClosed(t *testing.T) {
	canceled, cancel := context.WithCancel(context.Background())
	cancel()
	drained, cancelCause := context.WithCancelCause(context.Background())
	cancelCause(errors.New("drain deadline"))
	late, cancelLate := context.WithDeadline(context.Background(), time.Unix(0, 0))
	defer cancelLate()
	child, cancelChild := context.WithCancel(drained)
	defer cancelChild()
	gone := fmt.Errorf("search: %w", context.Canceled)
	for _, tc := range []struct {
		name string
		ctx  context.Context
		err  error
		want bool
	}{
		{"canceled", canceled, gone, true},
		{"canceled, another fault", canceled, errors.New("database: disk I/O error"), false},
		{"drained", drained, gone, false},
		{"child of a drained one", child, gone, false},
		{"past its deadline", late, gone, false},
		{"live", context.Background(), gone, false},
	} {
		if got := ClientClosed(tc.ctx, tc.err); got != tc.want {
			t.Errorf("ClientClosed(%s) = %v, want %v", tc.name, got, tc.want)
		}
	}
}
