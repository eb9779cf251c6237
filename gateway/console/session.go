package console

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/auth"
)

// Sessions are kept in this process's memory: a restart signs everyone
// out, and several replicas behind a load balancer need sticky sessions
// for the console (docs/console.md). The cookie holds only a random id.
//
// A sign-in on its way through the issuer keeps nothing on the server: its
// state, PKCE verifier, nonce, return path and expiry travel in the
// browser's short-lived sign-in cookie, sealed (AES-GCM) with this
// process's key. So there is no table of pending sign-ins an anonymous
// flood of GET /console/login/start could fill and evict people's
// sign-ins from (probe p14 F3); a cookie cannot be read, forged or changed
// without the key, and it is bound to the state the issuer returns.

// Cookie names. The __Host- prefix makes browsers insist on Secure, Path=/
// and no Domain.
const (
	sessionCookie = "__Host-kg-console"
	loginCookie   = "__Host-kg-console-login"
)

// Bounds of the in-memory stores: a flood of sessions cannot grow memory
// without limit. A person keeps at most maxPersonSessions sessions, their
// own oldest ending when another begins, so one person's sign-ins never
// end another person's session (probe p30 F3); the process keeps at most
// maxSessions (a thousand people at the cap each), the oldest dropped.
const (
	maxSessions       = 10000
	maxPersonSessions = 10
	maxSearches       = 20
	loginTTL          = 10 * time.Minute
)

// session is one signed-in person (or the development-mode visitor). It
// ends after the idle limit without a request, and at the latest at the
// absolute cap after sign-in (deadline): each request moves expires on
// (WCAG 2.2.1: a person at work is not signed out mid-form at a fixed
// hour; probe p26 F3).
type session struct {
	id, csrf  string
	principal *auth.Principal
	expires   time.Time // the idle limit after the last request, at most deadline
	deadline  time.Time // the absolute cap after sign-in

	mu       sync.Mutex
	searches map[string]auditSearch
	order    []string
	flash    flash
}

// flash is a one-time notice of an action's outcome for the page it leads
// to: Title, a few words, starts the page's title (read first when a page
// loads: probe p26 F7), Message (optional) is shown and focused.
type flash struct{ Title, Message string }

// pendingLogin is a sign-in on its way through the issuer, as its sealed
// cookie holds it.
type pendingLogin struct {
	State    string `json:"s"`
	Verifier string `json:"v"`
	Nonce    string `json:"n"`
	Next     string `json:"x"`
	Expires  int64  `json:"e"` // Unix seconds
}

type sessions struct {
	mu   sync.Mutex
	idle time.Duration // a session ends this long after its last request
	max  time.Duration // and at the latest this long after sign-in
	now  func() time.Time
	live map[string]*session
	seal cipher.AEAD // seals the sign-in cookie
}

func newSessions(idle, max time.Duration, now func() time.Time) *sessions {
	key := make([]byte, 32)
	_, _ = rand.Read(key) // crypto/rand.Read never fails (Go 1.24+)
	block, err := aes.NewCipher(key)
	if err != nil {
		panic(err) // a 32-byte key is always valid
	}
	seal, err := cipher.NewGCM(block)
	if err != nil {
		panic(err) // AES has a 16-byte block
	}
	return &sessions{idle: idle, max: max, now: now, live: map[string]*session{}, seal: seal}
}

// token returns 32 random bytes, base64url.
func token() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b) // crypto/rand.Read never fails (Go 1.24+)
	return base64.RawURLEncoding.EncodeToString(b)
}

// setCookie sets one of the console's cookies: HttpOnly, Secure, and
// SameSite=Strict for the session (SameSite=Lax for the short-lived
// sign-in state, which must come back on the issuer's redirect).
func setCookie(w http.ResponseWriter, name, value string, maxAge int) {
	same := http.SameSiteStrictMode
	if name == loginCookie {
		same = http.SameSiteLaxMode
	}
	http.SetCookie(w, &http.Cookie{Name: name, Value: value, Path: "/", MaxAge: maxAge,
		HttpOnly: true, Secure: true, SameSite: same})
}

// create starts a session for p and sets its cookie; the person's (p's
// ClientID, "" in development mode, which has no sign-in) oldest session
// ends if they already have maxPersonSessions.
func (s *sessions) create(w http.ResponseWriter, p *auth.Principal) *session {
	now := s.now()
	sess := &session{id: token(), csrf: token(), principal: p, deadline: now.Add(s.max), searches: map[string]auditSearch{}}
	sess.expires = s.until(now, sess)
	s.mu.Lock()
	s.prune(now)
	if person := sess.person(); person != "" {
		s.capPerson(person)
	}
	if len(s.live) >= maxSessions {
		s.dropOldest()
	}
	s.live[sess.id] = sess
	s.mu.Unlock()
	// The cookie lasts to the cap; the server ends the session earlier
	// when it is idle.
	setCookie(w, sessionCookie, sess.id, int(s.max.Seconds()))
	return sess
}

// limit tells a person when sess ends, for every page (WCAG 2.2.1: no
// one is surprised mid-form; it needs no script).
func (s *sessions) limit(sess *session) string {
	return fmt.Sprintf("Your session ends after %s without a request, at the latest %s.",
		span(s.idle), sess.deadline.UTC().Format("2 Jan 15:04 UTC"))
}

// span is a duration in hours and minutes, for people.
func span(d time.Duration) string {
	h, m := int(d.Hours()), int(d.Minutes())%60
	switch {
	case h == 0:
		return fmt.Sprintf("%d min", m)
	case m == 0:
		return fmt.Sprintf("%d h", h)
	}
	return fmt.Sprintf("%d h %d min", h, m)
}

// until is when sess ends if it has no request after now: the idle limit
// from now, but not past its cap.
func (s *sessions) until(now time.Time, sess *session) time.Time {
	if t := now.Add(s.idle); t.Before(sess.deadline) {
		return t
	}
	return sess.deadline
}

// prune drops expired sessions (s.mu held).
func (s *sessions) prune(now time.Time) {
	for id, x := range s.live {
		if now.After(x.expires) {
			delete(s.live, id)
		}
	}
}

// person is whose session sess is: its principal's id ("" in
// development mode).
func (sess *session) person() string {
	if sess.principal == nil {
		return ""
	}
	return sess.principal.ClientID
}

// capPerson ends person's oldest sessions (the earliest signed in) until
// there is room for one more of theirs (s.mu held).
func (s *sessions) capPerson(person string) {
	var mine []*session
	for _, x := range s.live {
		if x.person() == person {
			mine = append(mine, x)
		}
	}
	if len(mine) < maxPersonSessions {
		return
	}
	slices.SortFunc(mine, func(a, b *session) int { return a.deadline.Compare(b.deadline) })
	for _, x := range mine[:len(mine)-maxPersonSessions+1] {
		delete(s.live, x.id)
	}
}

// dropOldest makes room for one session (s.mu held).
func (s *sessions) dropOldest() {
	var oldest *session
	for _, x := range s.live {
		if oldest == nil || x.expires.Before(oldest.expires) {
			oldest = x
		}
	}
	if oldest != nil {
		delete(s.live, oldest.id)
	}
}

// fromRequest returns the request's live session, or nil; a request to a
// live session moves its idle limit on.
func (s *sessions) fromRequest(r *http.Request) *session {
	c, err := r.Cookie(sessionCookie)
	if err != nil {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	sess := s.live[c.Value]
	if sess == nil {
		return nil
	}
	now := s.now()
	if now.After(sess.expires) {
		delete(s.live, sess.id)
		return nil
	}
	sess.expires = s.until(now, sess)
	return sess
}

// end signs a session out.
func (s *sessions) end(w http.ResponseWriter, sess *session) {
	s.mu.Lock()
	delete(s.live, sess.id)
	s.mu.Unlock()
	setCookie(w, sessionCookie, "", -1)
}

// startLogin seals a sign-in's PKCE verifier, nonce and destination with
// a new state value into the sign-in cookie, and returns the state.
func (s *sessions) startLogin(w http.ResponseWriter, p *pendingLogin) string {
	p.State = token()
	p.Expires = s.now().Add(loginTTL).Unix()
	value := s.sealLogin(p)
	if len(value) > maxLoginCookie {
		// A return path that encodes long (JSON escapes &, <, > and
		// control characters in six bytes) would make a cookie browsers
		// drop, and the sign-in fail: the start page instead.
		p.Next = Prefix + "/"
		value = s.sealLogin(p)
	}
	setCookie(w, loginCookie, value, int(loginTTL.Seconds()))
	return p.State
}

// maxLoginCookie is the longest sign-in cookie value sent: browsers keep a
// cookie of up to 4 KiB, name and attributes included.
const maxLoginCookie = 3800

// sealLogin is p sealed for the sign-in cookie, base64url.
func (s *sessions) sealLogin(p *pendingLogin) string {
	plain, _ := json.Marshal(p) // strings and a number
	nonce := make([]byte, s.seal.NonceSize())
	_, _ = rand.Read(nonce)
	return base64.RawURLEncoding.EncodeToString(s.seal.Seal(nonce, nonce, plain, []byte(loginCookie)))
}

// finishLogin returns the sign-in the browser's sign-in cookie holds, which
// must name state, and clears the cookie; nil when there is none, it was
// not sealed by this process, names another state or has expired.
func (s *sessions) finishLogin(w http.ResponseWriter, r *http.Request, state string) *pendingLogin {
	c, err := r.Cookie(loginCookie)
	setCookie(w, loginCookie, "", -1)
	if err != nil || state == "" {
		return nil
	}
	sealed, err := base64.RawURLEncoding.DecodeString(c.Value)
	if err != nil || len(sealed) < s.seal.NonceSize() {
		return nil
	}
	n := s.seal.NonceSize()
	plain, err := s.seal.Open(nil, sealed[:n], sealed[n:], []byte(loginCookie))
	if err != nil {
		return nil
	}
	var p pendingLogin
	if json.Unmarshal(plain, &p) != nil || subtle.ConstantTimeCompare([]byte(p.State), []byte(state)) != 1 ||
		s.now().Unix() > p.Expires {
		return nil
	}
	return &p
}

// validCSRF compares a form's token with the session's.
func (sess *session) validCSRF(got string) bool {
	return got != "" && subtle.ConstantTimeCompare([]byte(got), []byte(sess.csrf)) == 1
}

// saveSearch keeps criteria under a new opaque id (the URL carries only
// the id, never a patient identifier).
func (sess *session) saveSearch(q auditSearch) string {
	id := token()[:16]
	sess.mu.Lock()
	defer sess.mu.Unlock()
	sess.searches[id] = q
	sess.order = append(sess.order, id)
	if len(sess.order) > maxSearches {
		delete(sess.searches, sess.order[0])
		sess.order = sess.order[1:]
	}
	return id
}

// boundSearch records the snapshot a saved search's first page was run
// at (auditSearch.Bound).
func (sess *session) boundSearch(id, bound string) {
	sess.mu.Lock()
	defer sess.mu.Unlock()
	if q, ok := sess.searches[id]; ok {
		q.Bound = bound
		sess.searches[id] = q
	}
}

// search returns saved criteria.
func (sess *session) search(id string) (auditSearch, bool) {
	sess.mu.Lock()
	defer sess.mu.Unlock()
	q, ok := sess.searches[id]
	return q, ok
}

// setFlash keeps a one-time notice for the next page.
func (sess *session) setFlash(title, msg string) {
	sess.mu.Lock()
	sess.flash = flash{Title: title, Message: msg}
	sess.mu.Unlock()
}

// takeFlash returns and clears the notice.
func (sess *session) takeFlash() flash {
	sess.mu.Lock()
	defer sess.mu.Unlock()
	m := sess.flash
	sess.flash = flash{}
	return m
}
