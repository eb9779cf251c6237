package console

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// fakeChromium writes a script standing for Chromium that fails its first
// fails starts (exit status 3, saying which start it was) and then runs
// the real browser.
func fakeChromium(t *testing.T, real string, fails int) string {
	t.Helper()
	dir := t.TempDir()
	script := fmt.Sprintf(`#!/bin/sh
n=$(cat %[1]s/count 2>/dev/null || echo 0); n=$((n+1)); echo $n > %[1]s/count
if [ $n -le %[2]d ]; then echo "some noise"; echo "fake failure of start $n" >&2; exit 3; fi
exec %[3]s "$@"
`, dir, fails, real)
	path := filepath.Join(dir, "chromium")
	if err := os.WriteFile(path, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestBrowserStartRetried: a Chromium start that fails (as one does now and
// then on a loaded machine) is tried again with a fresh profile, and the
// test goes on; starts that keep failing fail with how the process ended
// and what it printed last.
func TestBrowserStartRetried(t *testing.T) {
	real := chromium(t)
	t.Run("fails once", func(t *testing.T) {
		ctx, err := startBrowser(t, fakeChromium(t, real, 1), browserStarts)
		if err != nil {
			t.Fatalf("startBrowser after one failed start: %v", err)
		}
		if ctx == nil {
			t.Fatal("startBrowser returned no context")
		}
	})
	t.Run("fails always", func(t *testing.T) {
		_, err := startBrowser(t, fakeChromium(t, real, 100), 2)
		if err == nil {
			t.Fatal("startBrowser of a browser that never starts succeeded")
		}
		for _, want := range []string{"failed 2 times", "try 1: exit status 3", "fake failure of start 1", "try 2: exit status 3", "fake failure of start 2"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("startBrowser error = %v\nwant it to contain %q", err, want)
			}
		}
	})
}
