package main

import (
	"runtime/debug"
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the command's tests when a goroutine outlives them: run
// owns everything it starts (the application, the delivery worker, the
// HTTP server) and stops it before it returns.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// TestTuneGC: without GOGC the gateway sets its own collector target; with
// it, the operator's value stands.
func TestTuneGC(t *testing.T) {
	before := debug.SetGCPercent(100)
	t.Cleanup(func() { debug.SetGCPercent(before) })
	env := func(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

	if got := tuneGC(env(map[string]string{"GOGC": "50"})); got != -1 {
		t.Errorf("with GOGC set: tuneGC = %d, want -1 (untouched)", got)
	}
	if now := debug.SetGCPercent(100); now != 100 {
		t.Errorf("with GOGC set the percent became %d, want it left at 100", now)
	}
	if got := tuneGC(env(nil)); got != defaultGCPercent {
		t.Errorf("without GOGC: tuneGC = %d, want %d", got, defaultGCPercent)
	}
	if now := debug.SetGCPercent(100); now != defaultGCPercent {
		t.Errorf("without GOGC the percent is %d, want %d", now, defaultGCPercent)
	}
}
