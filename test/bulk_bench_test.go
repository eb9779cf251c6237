package test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// vmHWM is a process's peak resident set size, in bytes (VmHWM of
// /proc/<pid>/status).
func vmHWM(b *testing.B, pid int) int64 {
	b.Helper()
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			if err != nil {
				b.Fatal(err)
			}
			return kb << 10
		}
	}
	b.Fatal("no VmHWM")
	return 0
}

// BenchmarkExportRSS exports 1 GB of NDJSON (1.5 million Observations of
// about 700 bytes, seeded once into a database kept in the temporary
// directory, KG_EXPORT_BENCH_DB) through the binary and downloads every
// file, and reports the gateway process's peak RSS against its peak RSS
// once started (the baseline, same run), the export's rate, and the bytes
// exported.
//
//	go test -run '^$' -bench ExportRSS -benchtime 1x -timeout 60m ./test
func BenchmarkExportRSS(b *testing.B) {
	const n = 1_500_000
	path := os.Getenv("KG_EXPORT_BENCH_DB")
	if path == "" {
		path = filepath.Join(os.TempDir(), fmt.Sprintf("kg-export-bench-%d.db", n))
	}
	if _, err := os.Stat(path); err != nil {
		b.Logf("seeding %d Observations into %s (once)", n, path)
		seedObservations(b, path+".part", "", n)
		if err := os.Rename(path+".part", path); err != nil {
			b.Fatal(err)
		}
	}
	for b.Loop() {
		g := start(b, "--db", path)
		base := vmHWM(b, g.Cmd.Process.Pid)
		t0 := time.Now()
		status, h, body := rawReq(b, "GET", g.base+"/fhir/$export?_type=Observation", "", "Prefer: respond-async")
		if status != http.StatusAccepted {
			b.Fatalf("kick-off = %d %s", status, body)
		}
		loc := h.Get("Content-Location")
		var m manifest
		for {
			status, _, body = rawReq(b, "GET", loc, "")
			if status == http.StatusOK {
				if err := json.Unmarshal(body, &m); err != nil {
					b.Fatal(err)
				}
				break
			}
			if status != http.StatusAccepted {
				b.Fatalf("status = %d %s", status, body)
			}
			time.Sleep(200 * time.Millisecond) // polling, as a client does
		}
		exportTime := time.Since(t0)
		exportPeak := vmHWM(b, g.Cmd.Process.Pid)
		var bytes int64
		count := 0
		for _, f := range m.Output {
			count += f.Count
			resp, err := http.Get(f.URL)
			if err != nil {
				b.Fatal(err)
			}
			nb, err := io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if err != nil || resp.StatusCode != 200 {
				b.Fatalf("download %s: %d %v", f.URL, resp.StatusCode, err)
			}
			bytes += nb
		}
		if count != n {
			b.Fatalf("exported %d resources, want %d", count, n)
		}
		peak := vmHWM(b, g.Cmd.Process.Pid)
		b.ReportMetric(float64(bytes)/1e9, "GB")
		b.ReportMetric(float64(n)/exportTime.Seconds(), "res/s")
		b.ReportMetric(float64(exportPeak)/(1<<20), "export-peak-MiB")
		b.ReportMetric(float64(peak)/(1<<20), "peak-MiB")
		b.ReportMetric(float64(base)/(1<<20), "started-MiB")
		b.ReportMetric(float64(peak)/float64(base), "peak/started")
		g.stop(b)
	}
}
