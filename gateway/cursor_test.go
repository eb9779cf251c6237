package gateway_test

import (
	"fmt"
	"math/rand/v2"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ketamine-gateway/ketamine-gateway/gateway"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/app"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store/sqlite"
)

// frozenServer is the gateway on a fresh SQLite database whose clock
// stands still: every write happens in one millisecond of the clock, as
// writes committed close together do under load.
func frozenServer(t *testing.T) http.Handler {
	t.Helper()
	at := time.Date(2026, 12, 5, 15, 47, 16, 956_000_000, time.UTC)
	st := tempSQLite(t, sqlite.Options{})
	return newServer(t, app.Config{Store: st, UpdateCreate: true, Now: func() time.Time { return at }}, gateway.Config{})
}

// cursorPage GETs target and returns the ids of its matches and the path
// of its next link ("" without one).
func cursorPage(t *testing.T, h http.Handler, target string) (ids []string, next string) {
	t.Helper()
	rec := req(h, "GET", target, "")
	if rec.Code != 200 {
		t.Errorf("GET %s = %d %s", target, rec.Code, rec.Body)
		return nil, ""
	}
	b := decode(t, rec)
	entries, _ := b["entry"].([]any)
	for _, e := range entries {
		if r, ok := e.(map[string]any)["resource"].(map[string]any); ok && r["resourceType"] == "Basic" {
			ids = append(ids, r["id"].(string))
		}
	}
	for _, l := range b["link"].([]any) {
		if l := l.(map[string]any); l["relation"] == "next" {
			u := l["url"].(string)
			next = u[strings.Index(u, "/fhir/"):]
		}
	}
	return ids, next
}

func putBasic(t *testing.T, h http.Handler, id string) bool {
	rec := req(h, "PUT", "/fhir/Basic/"+id, `{"resourceType":"Basic","id":"`+id+`","code":{"text":"cursor"}}`)
	if rec.Code != 201 {
		t.Errorf("PUT Basic/%s = %d %s", id, rec.Code, rec.Body)
		return false
	}
	return true
}

// TestPagingCursorSameMillisecond (p15 F4): a resource written after a
// next link was handed out comes on a later page even when the clock has
// not moved since the link's position and its id sorts before the
// position's: each write's meta.lastUpdated is after the one before, so
// what commits later sorts later.
func TestPagingCursorSameMillisecond(t *testing.T) {
	h := frozenServer(t)
	for _, id := range []string{"m5", "m6", "m7"} {
		putBasic(t, h, id)
	}
	var all []string
	got, next := cursorPage(t, h, "/fhir/Basic?_sort=_lastUpdated&_count=2")
	all = append(all, got...)
	putBasic(t, h, "m1") // sorts before m6 by id
	for next != "" {
		got, next = cursorPage(t, h, next)
		all = append(all, got...)
	}
	if want := "m5 m6 m7 m1"; strings.Join(all, " ") != want {
		t.Errorf("pages of _sort=_lastUpdated with m1 written after page 1 = %v, want %s", all, want)
	}
}

// TestPagingCursorConcurrentWrites: writers create resources at random ids
// while a reader walks the next links of _sort=_lastUpdated again and
// again; every walk returns every resource whose write was answered
// before the walk's last page was asked for (docs/fhir.md: "every
// resource that exists at the end comes at least once"), on SQLite.
func TestPagingCursorConcurrentWrites(t *testing.T) {
	h := frozenServer(t)
	const writers, each = 4, 40
	var mu sync.Mutex
	var written []string
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := range each {
				id := fmt.Sprintf("w%016x-%d-%d", rand.Uint64(), w, i)
				if !putBasic(t, h, id) {
					return
				}
				mu.Lock()
				written = append(written, id)
				mu.Unlock()
			}
		})
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	walk := func() {
		var seen []string
		var before []string
		next := "/fhir/Basic?_sort=_lastUpdated&_count=7"
		for next != "" {
			mu.Lock()
			before = slices.Clone(written)
			mu.Unlock()
			var got []string
			got, next = cursorPage(t, h, next)
			seen = append(seen, got...)
		}
		for _, id := range before {
			if !slices.Contains(seen, id) {
				t.Errorf("a walk of the next links skipped Basic/%s, written before its last page", id)
			}
		}
	}
	for {
		select {
		case <-done:
			walk()
			return
		default:
			walk()
		}
	}
}
