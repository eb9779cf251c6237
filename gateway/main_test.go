package gateway_test

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package's tests when a goroutine outlives them: every
// server's application is closed by its test's cleanup, and nothing the
// edge or the application starts may keep running.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
