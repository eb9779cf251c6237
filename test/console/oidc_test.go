package console

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
)

// signIn signs the issuer's person in through the console's sign-in page,
// starting from path (which needs a session), and waits for sel there.
func signIn(t *testing.T, ctx context.Context, g *gateway, path, sel string) {
	t.Helper()
	run(t, ctx, "reach the sign-in page",
		chromedp.Navigate(g.base+path),
		chromedp.WaitVisible(`//a[text()="Sign in"]`))
	if u := location(t, ctx); !strings.Contains(u, "/console/login?next=") {
		t.Fatalf("without a session %s went to %s, want the sign-in page", path, u)
	}
	run(t, ctx, "sign in",
		chromedp.Click(`//a[text()="Sign in"]`),
		chromedp.WaitVisible(chromedp.CSS(sel)))
}

// sessionCookie returns the console's session cookie.
func sessionCookie(t *testing.T, ctx context.Context) *network.Cookie {
	t.Helper()
	res, err := chromedp.Call(ctx, network.GetCookies, network.GetCookiesParams{})
	if err != nil {
		t.Fatalf("read cookies: %v", err)
	}
	for _, c := range res.Cookies {
		if c.Name == "__Host-kg-console" {
			return c
		}
	}
	return nil
}

// TestOIDCSignIn: a person signs in with OpenID Connect (code + PKCE at a
// stub issuer) and lands on the page asked for, with a session cookie that
// is HttpOnly, Secure and SameSite=Strict; the sign-in is audited.
func TestOIDCSignIn(t *testing.T) {
	ctx := browser(t)
	g, is := oidcGateway(t)
	is.signIn(alice)
	signIn(t, ctx, g, "/console/audit", "#f-patient")
	if u := location(t, ctx); !strings.HasSuffix(u, "/console/audit") {
		t.Errorf("after signing in: %s, want /console/audit", u)
	}
	if p := text(t, ctx, ".person"); p != "alice@example.org" {
		t.Errorf("signed in as %q", p)
	}
	if nav := text(t, ctx, "header nav"); strings.Contains(nav, "Deliveries") || !strings.Contains(nav, "Audit trail") {
		t.Errorf("an auditor's menu: %q", nav)
	}
	// The header tells when the session ends, and still fits a 320-pixel
	// screen (probe p26 F3, F1).
	if s := text(t, ctx, "header .session-limit"); !strings.Contains(s, "Your session ends after 1 h without a request") {
		t.Errorf("the header tells of the session: %q", s)
	}
	run(t, ctx, "a narrow screen", chromedp.EmulateViewport(320, 800), chromedp.Reload())
	if over := eval[int](t, ctx, `document.documentElement.scrollWidth - window.innerWidth`); over > 0 {
		t.Errorf("a signed-in person's page is %d pixels wider than a 320-pixel screen", over)
	}
	run(t, ctx, "a wide screen", chromedp.EmulateViewport(1280, 900))
	c := sessionCookie(t, ctx)
	if c == nil || !c.HTTPOnly || !c.Secure || c.SameSite != network.CookieSameSiteStrict || c.Path != "/" {
		t.Errorf("session cookie = %+v, want HttpOnly, Secure, SameSite=Strict, Path=/", c)
	}
	if n := g.allTenantAudits(t, url.Values{"subtype": {"110122"}, "agent:identifier": {"https://ketamine-gateway.org/fhir/sid/client|person:alice@example.org"}}); n != 1 {
		t.Errorf("sign-in AuditEvents of alice = %d, want 1", n)
	}
	// The form's interaction "login" finds the sign-in, stored under
	// DICOM's 110122 Login (probe p39 F1).
	run(t, ctx, "search the sign-ins",
		chromedp.Navigate(g.base+"/console/audit"),
		chromedp.WaitVisible(chromedp.CSS("#f-interaction")),
		chromedp.SetValue(chromedp.CSS("#f-interaction"), "login"),
		chromedp.Click(chromedp.CSS("form.search button[type=submit]")),
		chromedp.WaitVisible(chromedp.CSS("#h-results")))
	if st := text(t, ctx, "#h-results + p[role=status]"); !strings.HasPrefix(st, "AuditEvents 1 to ") {
		t.Errorf("a search by interaction login: %q, want alice's sign-in", st)
	} else if rows := text(t, ctx, "table.data tbody"); !strings.Contains(rows, "login (") || !strings.Contains(rows, "person:alice@example.org") {
		t.Errorf("a search by interaction login found %q, want alice's sign-in", rows)
	}
	resp, err := http.Get(g.base + "/console/login")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "script-src 'self'") || strings.Contains(csp, "unsafe-inline") {
		t.Errorf("Content-Security-Policy = %q", csp)
	}
}

// TestAuditorCannotRetry: an auditor sees no delivery page and a forged
// retry (with a valid CSRF token) is refused; the dead letter stays dead.
func TestAuditorCannotRetry(t *testing.T) {
	ctx := browser(t)
	e := newEHR(t, true)
	g, is := oidcGateway(t, "--ehr-url", e.URL)
	g.ingest(t, "assessment", "phq9-moderate.json")
	id := g.waitDelivery(t, "dead")
	is.signIn(alice)
	signIn(t, ctx, g, "/console/audit", "#f-patient")

	run(t, ctx, "open the dead letter",
		chromedp.Navigate(g.base+"/console/deliveries/"+id),
		chromedp.WaitVisible(chromedp.CSS(".problem")))
	if s := text(t, ctx, ".problem"); !strings.Contains(s, "403") || !strings.Contains(s, "operator role") {
		t.Errorf("an auditor on a delivery page: %q", s)
	}
	forge := fmt.Sprintf(`(() => {
		const f = document.createElement("form");
		f.method = "post"; f.action = "/console/deliveries/%s/retry";
		const i = document.createElement("input");
		i.type = "hidden"; i.name = "csrf"; i.value = document.querySelector("input[name=csrf]").value;
		f.appendChild(i); document.body.appendChild(f); f.submit(); return true; })()`, id)
	eval[bool](t, ctx, forge)
	run(t, ctx, "post a retry",
		chromedp.WaitVisible(`//p[@class="status" and text()="403"]`))
	if s := text(t, ctx, ".problem"); !strings.Contains(s, "operator role") {
		t.Errorf("an auditor's retry: %q", s)
	}
	g.waitDelivery(t, "dead")
	if n := g.allTenantAudits(t, url.Values{"subtype": {"delivery-retry"}, "outcome": {"4"}}); n != 1 {
		t.Errorf("refused retries audited: %d, want 1", n)
	}
}

// TestSignedOutSessionGoesToSignIn: after signing out, the console sends
// the browser to the sign-in page, also when the old session cookie is
// presented again (the session is gone on the server).
func TestSignedOutSessionGoesToSignIn(t *testing.T) {
	ctx := browser(t)
	g, is := oidcGateway(t)
	is.signIn(olga)
	signIn(t, ctx, g, "/console/deliveries", "#h-list")
	old := sessionCookie(t, ctx)
	if old == nil {
		t.Fatal("no session cookie")
	}
	run(t, ctx, "sign out",
		chromedp.Click(`//button[text()="Sign out"]`),
		chromedp.WaitVisible(`//p[contains(., "You are signed out")]`))
	for _, replay := range []bool{false, true} {
		if replay {
			yes := true
			if _, err := chromedp.Call(ctx, network.SetCookie, network.SetCookieParams{Name: old.Name, Value: old.Value,
				URL: g.base + "/", Path: "/", Secure: &yes, HTTPOnly: &yes, SameSite: network.CookieSameSiteStrict}); err != nil {
				t.Fatalf("present the old cookie: %v", err)
			}
		}
		run(t, ctx, "open a page", chromedp.Navigate(g.base+"/console/deliveries"),
			chromedp.WaitVisible(`//a[text()="Sign in"]`))
		if u := location(t, ctx); !strings.Contains(u, "/console/login?next=") {
			t.Errorf("signed out (old cookie presented: %t): %s, want the sign-in page", replay, u)
		}
	}
}
