package test

import (
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestRepeatedParameterAttack: 12 clients at once sending a search with
// 300, then 1,000 repetitions of name= (which stalled PostgreSQL for 30 s
// and broke SQLite), or with 500 values of a modifier that scans (:text,
// :contains: each a LIKE '%v%' over the index table, probe p30 F5), get a
// 4xx quickly, on both databases, while a plain search beside them still
// answers in under a second.
func TestRepeatedParameterAttack(t *testing.T) {
	for _, backend := range []string{"sqlite", "postgres"} {
		t.Run(backend, func(t *testing.T) {
			var g *gateway
			if backend == "postgres" {
				g = start(t, "--db", freshPostgres(t))
			} else {
				g = start(t)
			}
			for i := range 20 {
				body := fmt.Sprintf(`{"resourceType":"Patient","name":[{"family":"Attack%d","given":["Ann"]}]}`, i)
				if status, _, b := doReq(t, "POST", g.base+"/fhir/Patient", body); status != 201 {
					t.Fatalf("seed = %d %v", status, b)
				}
			}
			words := make([]string, 100)
			for i := range words {
				words[i] = fmt.Sprintf("w%d", i)
			}
			scans := strings.Join(words, ",")
			for _, tc := range []struct{ name, query string }{
				{"300 repetitions", strings.TrimSuffix(strings.Repeat("name=a&", 300), "&")},
				{"1000 repetitions", strings.TrimSuffix(strings.Repeat("name=a&", 1000), "&")},
				{"500 :text values", strings.TrimSuffix(strings.Repeat("identifier:text="+scans+"&", 5), "&")},
				{"500 :contains values", strings.TrimSuffix(strings.Repeat("name:contains="+scans+"&", 5), "&")},
			} {
				query := g.base + "/fhir/Patient?" + tc.query
				stop := make(chan struct{})
				plain := make(chan time.Duration, 1000)
				var watcher sync.WaitGroup
				watcher.Add(1)
				go func() { // the other client's plain search, over and over
					defer watcher.Done()
					for {
						select {
						case <-stop:
							return
						default:
						}
						start := time.Now()
						resp, err := http.Get(g.base + "/fhir/Patient?_summary=count")
						if err != nil || resp.StatusCode != 200 {
							plain <- -1
							if resp != nil {
								resp.Body.Close()
							}
							return
						}
						resp.Body.Close()
						plain <- time.Since(start)
					}
				}()
				var wg sync.WaitGroup
				type answer struct {
					status int
					took   time.Duration
				}
				answers := make(chan answer, 12)
				for range 12 {
					wg.Add(1)
					go func() {
						defer wg.Done()
						start := time.Now()
						resp, err := http.Get(query)
						if err != nil {
							answers <- answer{-1, time.Since(start)}
							return
						}
						resp.Body.Close()
						answers <- answer{resp.StatusCode, time.Since(start)}
					}()
				}
				wg.Wait()
				close(answers)
				close(stop)
				watcher.Wait()
				close(plain)
				var slowest time.Duration
				for a := range answers {
					if a.status != http.StatusBadRequest || a.took > 2*time.Second {
						t.Errorf("%s: %d after %v, want a quick 400", tc.name, a.status, a.took)
					}
					slowest = max(slowest, a.took)
				}
				n, worst := 0, time.Duration(0)
				for d := range plain {
					if d < 0 {
						t.Errorf("%s: the plain search failed beside the attack", tc.name)
						continue
					}
					n++
					worst = max(worst, d)
				}
				if n == 0 || worst >= time.Second {
					t.Errorf("%s: %d plain searches beside the attack, slowest %v; want each under 1 s", tc.name, n, worst)
				}
				t.Logf("%s, %s x 12: slowest refusal %v; %d plain searches beside, slowest %v", backend, tc.name, slowest, n, worst)
			}
		})
	}
}
