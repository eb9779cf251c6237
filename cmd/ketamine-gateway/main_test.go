package main

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the command's tests when a goroutine outlives them: run
// owns everything it starts (the application, the delivery worker, the
// HTTP server) and stops it before it returns.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
