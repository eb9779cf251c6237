package console

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/auth"
)

// TestSessionIdleLimit: a session ends after the idle limit without a
// request, each request moving it on, and at the latest at the absolute
// cap after sign-in however active (probe p26 F3: a session signed in at
// 08:00 ended at 16:00 mid-form, active or not).
func TestSessionIdleLimit(t *testing.T) {
	start := time.Date(2026, 12, 5, 8, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name  string
		visit []time.Duration // after sign-in, each a request
		live  []bool          // whether the session is live at each
	}{
		{"active all day", []time.Duration{50 * time.Minute, 100 * time.Minute, 150 * time.Minute, 179 * time.Minute}, []bool{true, true, true, true}},
		{"idle past the limit", []time.Duration{50 * time.Minute, 111 * time.Minute}, []bool{true, false}},
		{"active past the cap", []time.Duration{50 * time.Minute, 100 * time.Minute, 150 * time.Minute, 181 * time.Minute}, []bool{true, true, true, false}},
		{"ended stays ended", []time.Duration{61 * time.Minute, 62 * time.Minute}, []bool{false, false}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			now := start
			s := newSessions(time.Hour, 3*time.Hour, func() time.Time { return now })
			w := httptest.NewRecorder()
			sess := s.create(w, nil)
			if c := w.Result().Cookies(); len(c) != 1 || c[0].MaxAge != int((3*time.Hour).Seconds()) {
				t.Errorf("session cookie = %+v, want one lasting to the cap (3h)", c)
			}
			for i, d := range tc.visit {
				now = start.Add(d)
				r := httptest.NewRequest(http.MethodGet, "/console/", nil)
				r.AddCookie(&http.Cookie{Name: sessionCookie, Value: sess.id})
				if got := s.fromRequest(r) != nil; got != tc.live[i] {
					t.Errorf("a request %v after sign-in finds the session live = %v, want %v", d, got, tc.live[i])
				}
			}
		})
	}
}

// TestSessionSettings: the idle limit defaults to 1h and the cap to 12h
// (or the idle limit if longer); a cap shorter than the idle limit is
// refused.
func TestSessionSettings(t *testing.T) {
	for _, tc := range []struct {
		ttl, maxAge string
		idle, max   time.Duration
		err         bool
	}{
		{"", "", time.Hour, 12 * time.Hour, false},
		{"30m", "", 30 * time.Minute, 12 * time.Hour, false},
		{"24h", "", 24 * time.Hour, 24 * time.Hour, false},
		{"30m", "8h", 30 * time.Minute, 8 * time.Hour, false},
		{"2h", "1h", 0, 0, true},
		{"", "200h", 0, 0, true},
		{"", "soon", 0, 0, true},
	} {
		s := Settings{SessionTTL: tc.ttl, SessionMaxAge: tc.maxAge}
		err := s.normalise()
		if (err != nil) != tc.err {
			t.Errorf("sessionTTL %q, sessionMaxAge %q: error %v, want an error %v", tc.ttl, tc.maxAge, err, tc.err)
			continue
		}
		if err == nil && (s.sessionTTL != tc.idle || s.sessionMaxAge != tc.max) {
			t.Errorf("sessionTTL %q, sessionMaxAge %q = %v, %v; want %v, %v", tc.ttl, tc.maxAge, s.sessionTTL, s.sessionMaxAge, tc.idle, tc.max)
		}
	}
}

// TestSessionEndedLinksBack: a form sent from an ended session is refused
// on a page titled "Session ended" whose sign-in link returns to the page
// the form was on (probe p26 F3: it led to the start page).
func TestSessionEndedLinksBack(t *testing.T) {
	f := newFixture(t, &Settings{Issuer: "https://login.example.org", ClientID: "kg", RedirectURL: "https://gw.example.org/console/callback"})
	f.cl.Jar.SetCookies(mustURL(t, f.srv.URL), []*http.Cookie{{Name: sessionCookie, Value: "ended-long-ago"}})
	for _, tc := range []struct{ post, back string }{
		{"/console/playground", "/console/playground"},
		{"/console/playground/diff", "/console/playground/diff"},
		{"/console/deliveries/d-1/retry", "/console/deliveries/d-1/retry"},
		{"/console/audit", "/console/audit"},
		{"/console/audit/export", "/console/audit"},
		{"/console/audit/chain", "/console/audit/chain"},
		{"/console/replay", "/console/deliveries"},
		{"/console/replays", "/console/replays"},
		{"/console/logout", "/console/"},
	} {
		code, body, _ := f.post(t, tc.post, url.Values{"csrf": {"x"}})
		// html/template escapes in lower-case hex.
		want := strings.ToLower(`href="/console/login?next=` + url.QueryEscape(tc.back) + `"`)
		if code != http.StatusUnauthorized || !strings.Contains(strings.ToLower(body), want) {
			t.Errorf("POST %s from an ended session = %d, want 401 with a link %s:\n%.1500s", tc.post, code, want, body)
		}
		if !strings.Contains(body, "<title>Session ended") {
			t.Errorf("POST %s from an ended session: the page is not titled Session ended", tc.post)
		}
	}
}

// TestSessionLimitShown: every page a signed-in person sees tells, without
// a script, after how long without a request the session ends and when at
// the latest, so that no one is surprised mid-form (probe p26 F3: no page
// told). Development mode, which has no sign-in, does not.
func TestSessionLimitShown(t *testing.T) {
	f, is := signInFixture(t)
	f.signIn(t, is, map[string]any{"sub": "u-1", "email": "olga@example.org", "groups": []string{"ops"}, "tenant": "clinic-a"})
	code, page, _ := f.get(t, "/console/replays")
	if code != http.StatusOK || !strings.Contains(page, "Your session ends after 1 h without a request, at the latest ") {
		t.Errorf("GET /console/replays = %d, want the session's limits told:\n%.2000s", code, page)
	}
	dev := newFixture(t, nil)
	if _, page, _ := dev.get(t, "/console/"); strings.Contains(page, "Your session ends") {
		t.Errorf("development mode tells of a session limit")
	}
}

// TestSessionsPerPerson: one person's sign-ins, however many, end only
// that person's own oldest sessions (maxPersonSessions a person), never
// another person's (probe p30 F3: 10,080 sign-ins of one person signed
// every other person out).
func TestSessionsPerPerson(t *testing.T) {
	now := time.Date(2026, 12, 5, 8, 0, 0, 0, time.UTC)
	s := newSessions(time.Hour, 12*time.Hour, func() time.Time { return now })
	live := func(sess *session) bool {
		r := httptest.NewRequest(http.MethodGet, "/console/", nil)
		r.AddCookie(&http.Cookie{Name: sessionCookie, Value: sess.id})
		return s.fromRequest(r) != nil
	}
	victim := s.create(httptest.NewRecorder(), &auth.Principal{ClientID: "person:alice"})
	var mallory []*session
	for range maxSessions + 80 {
		now = now.Add(time.Millisecond)
		mallory = append(mallory, s.create(httptest.NewRecorder(), &auth.Principal{ClientID: "person:mallory"}))
	}
	if !live(victim) {
		t.Errorf("alice's session ended after mallory signed in %d times", len(mallory))
	}
	for i, sess := range mallory {
		if want := i >= len(mallory)-maxPersonSessions; live(sess) != want {
			t.Errorf("mallory's sign-in #%d live = %v, want %v (the newest %d are kept)", i, !want, want, maxPersonSessions)
			break
		}
	}
	if n := len(s.live); n != maxPersonSessions+1 {
		t.Errorf("%d sessions kept, want %d", n, maxPersonSessions+1)
	}
}
