package engine

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/auditlog"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/auth"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/outcome"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/search"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
)

// slowStore answers searches for name=slow only when released or when
// their context ends (as a database stopped by a cancelled query does);
// other searches answer at once.
type slowStore struct {
	store.Store
	release chan struct{}
}

func (s *slowStore) Search(ctx context.Context, q *search.Query) (*store.Page, error) {
	for _, c := range q.Clauses {
		if c.Param == "name" && len(c.Values) == 1 && c.Values[0].Str == "slow" {
			select {
			case <-s.release:
			case <-ctx.Done():
				return nil, fmt.Errorf("slow search: %w", ctx.Err())
			}
		}
	}
	return &store.Page{Total: 0}, nil
}

var queryValidator = sync.OnceValue(NewValidator)

func scopeOf(client string) *auditlog.Scope {
	return auditlog.NewScope("search-type", &auth.Principal{ClientID: client, Tenant: "t", Scopes: auth.ParseScopes("system/*.rs")})
}

func rule(err error) string {
	_, issues := outcome.From(err)
	if len(issues) == 0 {
		return ""
	}
	return issues[0].Rule
}

// TestSearchTimeout: a search the store does not finish within the search
// timeout is stopped and answered search-too-costly (503), not "the
// database is unavailable"; a search the caller abandons is not.
func TestSearchTimeout(t *testing.T) {
	st := &slowStore{release: make(chan struct{})}
	e := New(Config{Store: st, Validator: queryValidator(), SearchTimeout: 50 * time.Millisecond})
	slow := url.Values{"name": {"slow"}}
	// The caller gives up after a minute: a search timeout that does not
	// stop the search fails the test with the caller's cancellation instead
	// of hanging it (the slow store never returns on its own). A hang guard
	// only: a search that ends after the caller's deadline is answered with
	// the caller's cancellation, and with 2 s a busy machine could get
	// there.
	guard, stop := context.WithTimeout(context.Background(), time.Minute)
	_, err := e.Search(guard, scopeOf("a"), "Patient", slow, false)
	stop()
	if kind, _ := outcome.From(err); kind != outcome.Unavailable || rule(err) != "search-too-costly" {
		t.Fatalf("Search past the timeout = %v, want Unavailable search-too-costly", err)
	}
	// The caller's cancellation, with a search timeout it cannot race.
	unhurried := New(Config{Store: st, Validator: queryValidator(), SearchTimeout: time.Hour})
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(10*time.Millisecond, cancel)
	_, err = unhurried.Search(ctx, scopeOf("a"), "Patient", slow, false)
	if !errors.Is(err, context.Canceled) || rule(err) == "search-too-costly" {
		t.Errorf("Search abandoned by the caller = %v, want its cancellation", err)
	}
	if _, err := e.Search(context.Background(), scopeOf("a"), "Patient", url.Values{"name": {"quick"}}, false); err != nil {
		t.Errorf("a quick search: %v", err)
	}
}

// TestSearchSlots: one client cannot run more searches at once than its
// slots; the next waits briefly and gets 429, while another client's
// search is served; a freed slot serves again, and no slot outlives use.
func TestSearchSlots(t *testing.T) {
	st := &slowStore{release: make(chan struct{})}
	e := New(Config{Store: st, Validator: queryValidator(), SearchesPerClient: 2})
	slow := url.Values{"name": {"slow"}}
	var wg sync.WaitGroup
	errs := make(chan error, 2)
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := e.Search(context.Background(), scopeOf("greedy"), "Patient", slow, false)
			errs <- err
		}()
	}
	// Wait until both hold their slots.
	for deadline := time.Now().Add(time.Minute); ; {
		e.searches.mu.Lock()
		n := 0
		if sl := e.searches.held[clientKey(scopeOf("greedy"))]; sl != nil {
			n = len(sl.ch)
		}
		e.searches.mu.Unlock()
		if n == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the two slow searches never held their slots")
		}
		time.Sleep(time.Millisecond) // waiting for goroutines of this test
	}
	_, err := e.Search(context.Background(), scopeOf("greedy"), "Patient", url.Values{"name": {"quick"}}, false)
	if kind, _ := outcome.From(err); kind != outcome.Throttled || rule(err) != "search-concurrency-limit" {
		t.Errorf("a third search of the same client = %v, want Throttled search-concurrency-limit", err)
	}
	var oe *outcome.Error
	if !errors.As(err, &oe) || oe.RetryAfter < 1 {
		t.Errorf("the refusal has no Retry-After: %+v", err)
	}
	// Another client's search takes a slot of its own at once: waiting for
	// one of greedy's would end in 429 after slotWait, or in this guard's
	// cancellation (a hang guard: a second was too little for a quick
	// search on a busy machine under -race).
	guard, stop := context.WithTimeout(context.Background(), time.Minute)
	if _, err := e.Search(guard, scopeOf("patient"), "Patient", url.Values{"name": {"quick"}}, false); err != nil {
		t.Errorf("another client's search: %v", err)
	}
	stop()
	close(st.release)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Errorf("a slow search: %v", err)
		}
	}
	if _, err := e.Search(context.Background(), scopeOf("greedy"), "Patient", url.Values{"name": {"quick"}}, false); err != nil {
		t.Errorf("a search after the slots freed: %v", err)
	}
	e.searches.mu.Lock()
	defer e.searches.mu.Unlock()
	if len(e.searches.held) != 0 {
		t.Errorf("%d clients still hold slot records after every search ended", len(e.searches.held))
	}
}
