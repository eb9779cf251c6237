package test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/ketamine-gateway/ketamine-gateway/test/internal/gwproc"
)

// freshPostgres creates an empty database on GATEWAY_TEST_POSTGRES_URL's
// server (or skips) and returns its URL; it is dropped when the test ends.
func freshPostgres(t *testing.T) string {
	t.Helper()
	base := os.Getenv("GATEWAY_TEST_POSTGRES_URL")
	if base == "" {
		t.Skip("GATEWAY_TEST_POSTGRES_URL not set: set it to a postgres:// URL of a role that may create databases (.ci/run does) to run the replica tests")
	}
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, base)
	if err != nil {
		t.Fatalf("connect to GATEWAY_TEST_POSTGRES_URL: %v", err)
	}
	defer conn.Close(ctx)
	var rnd [6]byte
	_, _ = rand.Read(rnd[:])
	name := "kge2e_" + hex.EncodeToString(rnd[:])
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		t.Fatalf("create database (the role needs CREATEDB): %v", err)
	}
	t.Cleanup(func() {
		// Retried: a non-superuser's DROP DATABASE ... WITH (FORCE) fails
		// while an autovacuum worker is in the database.
		for attempt := range 10 {
			if attempt > 0 {
				time.Sleep(300 * time.Millisecond)
			}
			c, err := pgx.Connect(ctx, base)
			if err == nil {
				_, err = c.Exec(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)")
				c.Close(ctx)
			}
			if err == nil {
				return
			} else if attempt == 9 {
				t.Logf("drop database %s: %v", name, err)
			}
		}
	})
	u, err := url.Parse(base)
	if err != nil {
		t.Fatalf("GATEWAY_TEST_POSTGRES_URL must be a URL: %v", err)
	}
	u.Path = "/" + name
	return u.String()
}

// startReplicas starts n gateways on one database at the same moment (their
// migrations race, as when a deployment starts) and waits until each
// answers /healthz.
func startReplicas(t *testing.T, n int, db string, extra ...string) []*gateway {
	t.Helper()
	gs := make([]*gateway, n)
	for i := range n {
		// Load tests send far more than one client should: no rate limit.
		p, err := gwproc.Prepare(binary, append([]string{"serve", "--addr", "127.0.0.1:0", "--db", db, "--rate-limit", "0"}, extra...)...)
		if err != nil {
			t.Fatal(err)
		}
		gs[i] = newGateway(p)
	}
	for _, g := range gs {
		if err := g.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { g.stop(t) })
	}
	// Before the stops: a kept-alive connection the client dialled but never
	// used holds a gateway's graceful shutdown for 5s.
	t.Cleanup(http.DefaultClient.CloseIdleConnections)
	for i, g := range gs {
		if err := g.WaitAddr(60 * time.Second); err != nil {
			t.Fatalf("replica %d: %v", i, err)
		}
		g.base = g.Base
		if err := g.WaitHealthy(30 * time.Second); err != nil {
			t.Fatalf("replica %d: %v", i, err)
		}
	}
	return gs
}

// tryReq is a request that may fail (safe in any goroutine): the status,
// the Location header and the body, or the transport error.
func tryReq(method, url, body string, headers ...string) (int, string, []byte, error) {
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		return 0, "", nil, err
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/fhir+json")
	}
	for _, h := range headers {
		k, v, _ := strings.Cut(h, ":")
		req.Header.Set(strings.TrimSpace(k), strings.TrimSpace(v))
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, "", nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header.Get("Location"), b, err
}

// countOn is the _summary=count total of a search on one replica.
func countOn(t *testing.T, g *gateway, query string) int {
	t.Helper()
	status, _, m := doReq(t, "GET", g.base+"/fhir/"+query+sepFor(query)+"_summary=count", "")
	total, ok := m["total"].(float64)
	if status != http.StatusOK || !ok {
		t.Fatalf("count %s: %d %v", query, status, m)
	}
	return int(total)
}

func sepFor(q string) string {
	if strings.Contains(q, "?") {
		return "&"
	}
	return "?"
}

// TestReplicasExactlyOnce: 3 gateways on one PostgreSQL database; 50
// clients spread over them post the same conditional create and the same
// native record: one Patient per identifier, one set of Observations.
func TestReplicasExactlyOnce(t *testing.T) {
	db := freshPostgres(t)
	gs := startReplicas(t, 3, db)
	record, err := os.ReadFile("../schemas/examples/assessment/phq9-moderate.json")
	if err != nil {
		t.Fatal(err)
	}
	const clients = 50
	const mrn = "http://hospital.example/mrn|REPLICA-1"
	patient := `{"resourceType":"Patient","identifier":[{"system":"http://hospital.example/mrn","value":"REPLICA-1"}]}`
	createStatus := make([]int, clients)
	ingestStatus := make([]int, clients)
	ingestBody := make([][]byte, clients)
	errs := make([]error, clients)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range clients {
		wg.Go(func() {
			g := gs[i%len(gs)]
			<-start
			var err1, err2 error
			createStatus[i], _, _, err1 = tryReq("POST", g.base+"/fhir/Patient", patient, "If-None-Exist: identifier="+mrn)
			ingestStatus[i], _, ingestBody[i], err2 = tryReq("POST", g.base+"/ingest/assessment", string(record))
			errs[i] = err1
			if err1 == nil {
				errs[i] = err2
			}
		})
	}
	close(start)
	wg.Wait()
	created := 0
	for i := range clients {
		if errs[i] != nil {
			t.Fatalf("client %d: %v", i, errs[i])
		}
		switch createStatus[i] {
		case http.StatusCreated:
			created++
		case http.StatusOK:
		default:
			t.Errorf("client %d: conditional create answered %d", i, createStatus[i])
		}
		if ingestStatus[i] != http.StatusOK {
			t.Errorf("client %d: ingest answered %d: %.300s", i, ingestStatus[i], ingestBody[i])
		}
	}
	if created != 1 {
		t.Errorf("%d conditional creates answered 201, want exactly 1", created)
	}
	// Every client got the answer of the one stored ingest.
	var first struct {
		Entry []struct {
			Response struct{ Location string } `json:"response"`
		} `json:"entry"`
	}
	if err := json.Unmarshal(ingestBody[0], &first); err != nil || len(first.Entry) == 0 {
		t.Fatalf("ingest answer: %v %.300s", err, ingestBody[0])
	}
	wantObs := 0
	for _, e := range first.Entry {
		if strings.HasPrefix(e.Response.Location, "Observation/") {
			wantObs++
		}
	}
	for i := 1; i < clients; i++ {
		if ingestStatus[i] == http.StatusOK && !sameEntries(ingestBody[0], ingestBody[i]) {
			t.Errorf("client %d got another ingest answer than client 0", i)
		}
	}
	for i, g := range gs {
		if n := countOn(t, g, "Patient?identifier="+url.QueryEscape(mrn)); n != 1 {
			t.Errorf("replica %d: %d Patients with identifier %s, want 1", i, n, mrn)
		}
		if n := countOn(t, g, "Patient?identifier="+url.QueryEscape("https://serenity-test-hospital.example/fhir/mrn|MRN-TEST-000123")); n != 1 {
			t.Errorf("replica %d: %d Patients of the native record, want 1", i, n)
		}
		if n := countOn(t, g, "Observation"); n != wantObs || wantObs == 0 {
			t.Errorf("replica %d: %d Observations, want the %d of one ingest", i, n, wantObs)
		}
	}
}

// sameEntries compares the entry arrays of two transaction-responses.
func sameEntries(a, b []byte) bool {
	var x, y struct{ Entry json.RawMessage }
	if json.Unmarshal(a, &x) != nil || json.Unmarshal(b, &y) != nil {
		return false
	}
	return bytes.Equal(x.Entry, y.Entry)
}

// TestReplicaKilled: kill -9 one of 3 replicas in the middle of a load of
// distinct creates. Every create that was acknowledged is readable from
// the others afterwards, the others keep serving without errors, and a
// client that retries an unanswered create on another replica (with
// If-None-Exist) creates nothing twice.
func TestReplicaKilled(t *testing.T) {
	db := freshPostgres(t)
	gs := startReplicas(t, 3, db)
	const total, workers = 300, 12
	type ack struct {
		id        string
		replica   int
		afterKill bool
	}
	acks := make([]ack, total)
	var nacks atomic.Int64
	var killed atomic.Bool
	var failures sync.Map // request -> error, surviving replicas only
	jobs := make(chan int)
	var atKill int64
	var cut atomic.Int64 // requests to the killed replica that got no answer
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := range jobs {
				body := fmt.Sprintf(`{"resourceType":"Patient","identifier":[{"system":"urn:replica-kill","value":"k%d"}]}`, i)
				for try := 0; try < len(gs); try++ {
					r := (w + try) % len(gs)
					afterKill := killed.Load()
					status, loc, b, err := tryReq("POST", gs[r].base+"/fhir/Patient", body,
						fmt.Sprintf("If-None-Exist: identifier=urn:replica-kill|k%d", i))
					if err != nil && r == 0 {
						cut.Add(1)
						continue // the killed replica: try the next one
					}
					if err != nil || (status != http.StatusCreated && status != http.StatusOK) {
						failures.Store(fmt.Sprintf("k%d on replica %d", i, r), fmt.Sprintf("%d %v %.200s", status, err, b))
						break
					}
					_, rest, _ := strings.Cut(loc, "/fhir/")
					parts := strings.Split(rest, "/")
					if len(parts) < 2 || parts[0] != "Patient" || parts[1] == "" {
						failures.Store(fmt.Sprintf("k%d on replica %d", i, r), "Location "+loc)
						break
					}
					acks[i] = ack{id: parts[1], replica: r, afterKill: afterKill}
					nacks.Add(1)
					break
				}
			}
		})
	}
	for i := range total {
		if i == total/3 {
			deadline := time.Now().Add(60 * time.Second)
			for nacks.Load() < total/4 && time.Now().Before(deadline) {
				time.Sleep(time.Millisecond) // waits for the load to be well under way
			}
			killed.Store(true)
			atKill = nacks.Load()
			_ = gs[0].Cmd.Process.Signal(syscall.SIGKILL)
			_ = gs[0].Cmd.Wait()
		}
		jobs <- i
	}
	close(jobs)
	wg.Wait()
	failures.Range(func(k, v any) bool {
		t.Errorf("create %v: %v", k, v)
		return true
	})
	servedAfterKill := map[int]int{}
	for i, a := range acks {
		if a.id == "" {
			t.Errorf("create k%d was never acknowledged", i)
			continue
		}
		if a.afterKill {
			servedAfterKill[a.replica]++
		}
		g := gs[1+i%2]
		status, _, m := doReq(t, "GET", g.base+"/fhir/Patient/"+a.id, "")
		if status != http.StatusOK || m["id"] != a.id {
			t.Errorf("acknowledged create k%d (Patient/%s via replica %d) read from %s: %d", i, a.id, a.replica, g.base, status)
		}
	}
	if servedAfterKill[1] == 0 || servedAfterKill[2] == 0 {
		t.Errorf("creates served after the kill by replica: %v; want both survivors serving", servedAfterKill)
	}
	if n := countOn(t, gs[1], "Patient?identifier=urn:replica-kill|"); n != total {
		t.Errorf("%d Patients, want exactly %d (one per identifier)", n, total)
	}
	t.Logf("kill -9 of replica 0 after %d of %d creates were acknowledged; %d requests to it got no answer (retried elsewhere); creates served after the kill: %v",
		atKill, total, cut.Load(), servedAfterKill)
}
