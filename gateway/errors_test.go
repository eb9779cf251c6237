package gateway

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
)

// TestErrorClass: the log's description of a failure names the sentinels
// an operator triages by and the types along the chain, never the text
// (which may carry values).
func TestErrorClass(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
		want []string
	}{
		{"a stored body that does not unpack", fmt.Errorf("sqlite: AuditEvent/x version 1: %w", store.ErrCorruptBody),
			[]string{store.ErrCorruptBody.Error(), "*fmt.wrapError"}},
		{"the store unavailable", fmt.Errorf("read: %w", store.ErrUnavailable), []string{store.ErrUnavailable.Error()}},
		{"a deadline", fmt.Errorf("search: %w", context.DeadlineExceeded), []string{context.DeadlineExceeded.Error()}},
		{"anything else", errors.New("patient Jane Doe"), []string{"*errors.errorString"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := store.ErrorClass(tc.err)
			for _, w := range tc.want {
				if !strings.Contains(got, w) {
					t.Errorf("errorClass = %q, lacks %q", got, w)
				}
			}
			if strings.Contains(got, "Jane") || strings.Contains(got, "AuditEvent/x") {
				t.Errorf("errorClass = %q carries the error's text", got)
			}
		})
	}
}
