package gateway_test

import (
	"bufio"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/ketamine-gateway/ketamine-gateway/gateway"
)

// framingServer is the gateway behind its own listener, as serve runs it.
func framingServer(t *testing.T) string {
	t.Helper()
	srv := httptest.NewUnstartedServer(fhirServer(t))
	srv.Listener = gateway.Listener(srv.Listener, nil)
	srv.Config.ConnContext = gateway.ConnContext
	srv.Start()
	t.Cleanup(srv.Close)
	return srv.Listener.Addr().String()
}

// rawExchange writes raw bytes on one connection and reads the responses
// until the server closes it or want responses arrived.
func rawExchange(t *testing.T, addr, raw string, want int) (statuses []int, bodies []string, closed bool) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(time.Minute)) // a hang guard: a deadline reached reads as a closed connection
	if _, err := io.WriteString(c, raw); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	for len(statuses) < want {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			return statuses, bodies, true
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		statuses, bodies = append(statuses, resp.StatusCode), append(bodies, string(b))
		if resp.Close {
			// The server said it closes: it must (a server that keeps the
			// connection open fails after the hang guard of 30 s).
			_ = c.SetDeadline(time.Now().Add(30 * time.Second))
			_, err := br.ReadByte()
			// Closed: the end of the stream, or a reset when the server
			// closed it with bytes of ours unread (a refused request's
			// rest); not a timeout.
			var ne net.Error
			return statuses, bodies, err != nil && !(errors.As(err, &ne) && ne.Timeout())
		}
	}
	return statuses, bodies, false
}

// TestRequestFraming: a request with both Content-Length and
// Transfer-Encoding is refused with 400 and the connection closed;
// requests framed one way or the other, pipelined on one connection, are
// all served (the listener follows their bodies to find the next head).
func TestRequestFraming(t *testing.T) {
	addr := framingServer(t)
	body := `{"resourceType":"Patient","gender":"male"}`
	chunked := "POST /fhir/Patient HTTP/1.1\r\nHost: x\r\nContent-Type: application/fhir+json\r\nTransfer-Encoding: chunked\r\n\r\n" +
		"a\r\n" + body[:10] + "\r\n" + strings.ToUpper("20") + ";ext=1\r\n" + body[10:] + "\r\n0\r\nX-Trailer: y\r\n\r\n"
	sized := "POST /fhir/Patient HTTP/1.1\r\nHost: x\r\nContent-Type: application/fhir+json\r\nContent-Length: 42\r\n\r\n" + body
	get := "GET /fhir/Patient?_summary=count HTTP/1.1\r\nHost: x\r\n\r\n"
	both := "POST /fhir/Patient HTTP/1.1\r\nHost: x\r\nContent-Type: application/fhir+json\r\nContent-Length: 42\r\ntransfer-encoding: chunked\r\n\r\n" +
		"2a\r\n" + body + "\r\n0\r\n\r\n"
	if len(body) != 42 {
		t.Fatalf("body length %d", len(body))
	}

	t.Run("pipelined, each framed one way", func(t *testing.T) {
		statuses, bodies, _ := rawExchange(t, addr, chunked+sized+get+chunked+get, 5)
		want := []int{201, 201, 200, 201, 200}
		if len(statuses) != len(want) {
			t.Fatalf("statuses = %v %v, want %v", statuses, bodies, want)
		}
		for i := range want {
			if statuses[i] != want[i] {
				t.Errorf("response %d = %d %s, want %d", i, statuses[i], bodies[i], want[i])
			}
		}
	})
	t.Run("both Content-Length and Transfer-Encoding", func(t *testing.T) {
		statuses, bodies, closed := rawExchange(t, addr, both+get, 2)
		if len(statuses) != 1 || statuses[0] != 400 || !strings.Contains(bodies[0], "request-framing-ambiguous") || !closed {
			t.Errorf("got %v %v closed=%v, want one 400 request-framing-ambiguous and the connection closed", statuses, bodies, closed)
		}
	})
	t.Run("after a good request", func(t *testing.T) {
		statuses, bodies, closed := rawExchange(t, addr, sized+both, 2)
		if len(statuses) != 2 || statuses[0] != 201 || statuses[1] != 400 || !closed {
			t.Errorf("got %v %v closed=%v, want 201 then 400 and the connection closed", statuses, bodies, closed)
		}
	})
	t.Run("nothing was written by the refused requests", func(t *testing.T) {
		statuses, bodies, _ := rawExchange(t, addr, get, 1)
		if len(statuses) != 1 || !strings.Contains(bodies[0], `"total":4`) {
			t.Errorf("count = %v %v, want the 4 patients of the served requests", statuses, bodies)
		}
	})
}

// TestAuthorizationRepeated: two Authorization headers are refused before
// anything else looks at them.
func TestAuthorizationRepeated(t *testing.T) {
	h := fhirServer(t)
	r := httptest.NewRequest("GET", "/fhir/Patient", nil)
	r.Header.Add("Authorization", "Bearer a")
	r.Header.Add("Authorization", "Bearer b")
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, r)
	assertOutcome(t, rec, http.StatusBadRequest, "authorization-repeated", "")
}

// TestHeaderRepeated: a header that takes one value sent twice is
// refused, nothing written: the second If-None-Exist was ignored (an
// attack review: the create then matched, or not, by whichever came
// first) and a second Content-Type too. Headers that are lists (If-Match,
// Accept, Prefer) are still taken as lists.
func TestHeaderRepeated(t *testing.T) {
	h := fhirServer(t)
	patient := `{"resourceType":"Patient","identifier":[{"system":"urn:x","value":"K1"}]}`
	for _, tc := range []struct {
		name   string
		header string
		values []string
	}{
		{"If-None-Exist", "If-None-Exist", []string{"identifier=urn:x|K1", "identifier=urn:x|NEW"}},
		{"Content-Type", "Content-Type", []string{"application/fhir+json", "text/xml"}},
		{"If-Unmodified-Since", "If-Unmodified-Since", []string{"Sat, 05 Dec 2026 10:00:00 GMT", "Sun, 06 Dec 2026 10:00:00 GMT"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest("POST", "/fhir/Patient", strings.NewReader(patient))
			if tc.header != "Content-Type" {
				r.Header.Set("Content-Type", "application/fhir+json")
			}
			for _, v := range tc.values {
				r.Header.Add(tc.header, v)
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, r)
			assertOutcome(t, rec, http.StatusBadRequest, "header-repeated", "")
			if !strings.Contains(rec.Body.String(), tc.header) || strings.Contains(rec.Body.String(), "urn:x") {
				t.Errorf("the outcome should name the header and no value: %s", rec.Body)
			}
		})
	}
	if b := decode(t, req(h, "GET", "/fhir/Patient?_summary=count", "")); b["total"].(float64) != 0 {
		t.Errorf("refused creates left %v patients", b["total"])
	}
	r := httptest.NewRequest("GET", "/fhir/Patient", nil)
	r.Header.Add("Accept", "application/fhir+json")
	r.Header.Add("Accept", "application/json")
	r.Header.Add("Prefer", "handling=lenient")
	r.Header.Add("Prefer", "return=minimal")
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, r)
	if rec.Code != http.StatusOK {
		t.Errorf("list headers sent twice = %d %s, want 200", rec.Code, rec.Body)
	}
}

// TestMethodNotAllowed: every 405 says in Allow what the target serves,
// and a search asked the wrong way (GET of a type's _search, GET /fhir?…)
// says how to ask it.
func TestMethodNotAllowed(t *testing.T) {
	h := fhirServer(t)
	tests := []struct{ method, target, allow, says string }{
		{"GET", "/fhir/Observation/_search?code=http://loinc.org|8867-4", "POST", "_search takes POST"},
		{"HEAD", "/fhir/Observation/_search", "POST", ""},
		{"DELETE", "/fhir/Patient/_search", "POST", "GET /fhir/{type}?parameters"},
		{"GET", "/fhir?_id=x", "OPTIONS, POST", "does not search all types at once (GET /fhir?parameters)"},
		{"GET", "/fhir/?_id=x", "OPTIONS, POST", "search one type with GET /fhir/{type}?parameters"},
		{"PUT", "/fhir", "OPTIONS, POST", "this endpoint does not support the method"},
		{"GET", "/auth/token", "OPTIONS, POST", ""},
		{"DELETE", "/fhir/Patient", "OPTIONS, GET, HEAD, PATCH, POST, PUT", ""},
		{"PATCH", "/fhir/AuditEvent/1", "GET, HEAD", ""},
		{"POST", "/fhir/AuditEvent", "GET, HEAD", ""},
		{"PUT", "/fhir/AuditEvent/1", "GET, HEAD", ""},
		{"DELETE", "/fhir/AuditEvent/1", "GET, HEAD", ""},
		{"PUT", "/healthz", "OPTIONS, GET", ""},
		{"DELETE", "/admin/deliveries", "OPTIONS, GET", ""},
		// $validate takes POST at every level: another method is 405, not
		// 404 operation-unknown (p43 F3).
		{"GET", "/fhir/$validate", "POST", "$validate takes POST"},
		{"GET", "/fhir/Patient/$validate", "POST", "$validate takes POST"},
		{"HEAD", "/fhir/Patient/$validate", "POST", ""},
		{"PUT", "/fhir/Patient/$validate", "POST", "$validate takes POST"},
		{"GET", "/fhir/Patient/p1/$validate?mode=delete", "POST", "POST /fhir/{type}/{id}/$validate?mode=delete"},
		{"HEAD", "/fhir/Patient/p1/$validate", "POST", ""},
		{"DELETE", "/fhir/Patient/p1/$validate", "OPTIONS, POST", "$validate takes POST"},
		{"PUT", "/fhir/Patient/p1/$everything", "OPTIONS, GET, HEAD, POST", ""},
	}
	for _, tc := range tests {
		t.Run(tc.method+" "+tc.target, func(t *testing.T) {
			rec := req(h, tc.method, tc.target, `{"resourceType":"AuditEvent","id":"1"}`)
			if rec.Code != http.StatusMethodNotAllowed {
				t.Fatalf("%s %s = %d %s, want 405", tc.method, tc.target, rec.Code, rec.Body)
			}
			if got := rec.Header().Get("Allow"); got != tc.allow {
				t.Errorf("Allow = %q, want %q", got, tc.allow)
			}
			if tc.says != "" {
				assertOutcome(t, rec, http.StatusMethodNotAllowed, "method-not-allowed", "")
				if !strings.Contains(rec.Body.String(), tc.says) {
					t.Errorf("%s %s = %s; want it to say %q", tc.method, tc.target, rec.Body, tc.says)
				}
			}
		})
	}
	// /fhir/_search would search all types: not "not a resource type".
	for _, method := range []string{"GET", "POST"} {
		rec := req(h, method, "/fhir/_search?_id=x", "")
		assertOutcome(t, rec, http.StatusNotFound, "search-system-unsupported", "")
	}
}

// TestHead: the FHIR reads, searches, histories and the CapabilityStatement
// answer HEAD as GET without a body (RFC 9110 9.3.2): the status, ETag,
// Last-Modified and Content-Type a client checks cheaply.
func TestHead(t *testing.T) {
	srv := httptest.NewServer(fhirServer(t))
	t.Cleanup(srv.Close)
	send := func(method, path, body string) *http.Response {
		t.Helper()
		r, _ := http.NewRequest(method, srv.URL+path, strings.NewReader(body))
		if body != "" {
			r.Header.Set("Content-Type", "application/fhir+json")
		}
		res, err := http.DefaultTransport.RoundTrip(r)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { res.Body.Close() })
		return res
	}
	res := send("POST", "/fhir/Patient", patientJSON)
	var p struct{ ID string }
	if err := json.NewDecoder(res.Body).Decode(&p); err != nil || res.StatusCode != 201 {
		t.Fatalf("create = %d %v", res.StatusCode, err)
	}
	tests := []struct {
		path   string
		status int
		etag   bool
	}{
		{"/fhir/Patient/" + p.ID, 200, true},
		{"/fhir/Patient/" + p.ID + "/_history/1", 200, true},
		{"/fhir/Patient/nope", 404, false},
		{"/fhir/Patient?gender=female", 200, false},
		{"/fhir/Patient?shoe-size=42", 400, false},
		{"/fhir/Patient/" + p.ID + "/_history", 200, false},
		{"/fhir/_history", 200, false},
		{"/fhir/metadata", 200, false},
		{"/fhir/Patient/" + p.ID + "/$everything", 200, false},
		{"/fhir/Patient/" + p.ID + "/Observation", 200, false},
	}
	for _, tc := range tests {
		t.Run(tc.path, func(t *testing.T) {
			get, head := send("GET", tc.path, ""), send("HEAD", tc.path, "")
			if head.StatusCode != tc.status || get.StatusCode != tc.status {
				t.Fatalf("HEAD %s = %d, GET = %d; want %d", tc.path, head.StatusCode, get.StatusCode, tc.status)
			}
			if b, _ := io.ReadAll(head.Body); len(b) != 0 {
				t.Errorf("HEAD %s has a body: %q", tc.path, b)
			}
			if got := head.Header.Get("Content-Type"); got != get.Header.Get("Content-Type") || got == "" {
				t.Errorf("HEAD %s Content-Type = %q, GET's %q", tc.path, got, get.Header.Get("Content-Type"))
			}
			if tc.etag && (head.Header.Get("ETag") != get.Header.Get("ETag") || head.Header.Get("Last-Modified") == "") {
				t.Errorf("HEAD %s ETag %q Last-Modified %q, GET's ETag %q", tc.path, head.Header.Get("ETag"),
					head.Header.Get("Last-Modified"), get.Header.Get("ETag"))
			}
		})
	}
	// A GET with side effects does not answer HEAD: a bulk export's
	// kick-off (echo routes the HEAD to no handler of it: 404 or 405).
	for _, path := range []string{"/fhir/$export", "/fhir/Patient/$export"} {
		r, _ := http.NewRequest("HEAD", srv.URL+path, nil)
		r.Header.Set("Prefer", "respond-async")
		res, err := http.DefaultTransport.RoundTrip(r)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != http.StatusNotFound && res.StatusCode != http.StatusMethodNotAllowed {
			t.Errorf("HEAD %s = %d, want 404 or 405", path, res.StatusCode)
		}
	}
}

// TestRequestHeadTooLong: a request head longer than the server reads is
// refused with an OperationOutcome a FHIR client reads, not net/http's
// plain text: 414 when the URL alone is too long (saying to search with
// POST), 431 when the header fields are; the connection is closed after
// it, and a request before it on the connection is served (p45 F1).
func TestRequestHeadTooLong(t *testing.T) {
	addr := framingServer(t)
	get := "GET /fhir/Patient?_summary=count HTTP/1.1\r\nHost: x\r\n\r\n"
	longURL := "GET /fhir/Patient?name=" + strings.Repeat("a", 100<<10) + " HTTP/1.1\r\nHost: x\r\n\r\n"
	longFields := "GET /fhir/Patient HTTP/1.1\r\nHost: x\r\n" + strings.Repeat("X-Filler: "+strings.Repeat("b", 1000)+"\r\n", 80) + "\r\n"
	fits := "GET /fhir/Patient?name=" + strings.Repeat("a", 60<<10) + " HTTP/1.1\r\nHost: x\r\n\r\n"
	for _, tc := range []struct {
		name, raw string
		statuses  []int
		rule      string
	}{
		{"URL", get + longURL, []int{200, 414}, "request-target-too-long"},
		{"header fields", longFields, []int{431}, "request-head-too-large"},
		{"a long URL that fits", fits, []int{200}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			statuses, bodies, closed := rawExchange(t, addr, tc.raw+get, len(tc.statuses)+1)
			if len(statuses) < len(tc.statuses) {
				t.Fatalf("statuses %v %v, want %v first", statuses, bodies, tc.statuses)
			}
			for i, want := range tc.statuses {
				if statuses[i] != want {
					t.Errorf("response %d = %d %s, want %d", i, statuses[i], bodies[i], want)
				}
			}
			if tc.rule == "" {
				return
			}
			last := bodies[len(tc.statuses)-1]
			var oo struct{ ResourceType string }
			if err := json.Unmarshal([]byte(last), &oo); err != nil || oo.ResourceType != "OperationOutcome" || !strings.Contains(last, tc.rule) {
				t.Errorf("refusal %s, want an OperationOutcome of %s", last, tc.rule)
			}
			if len(statuses) != len(tc.statuses) || !closed {
				t.Errorf("after the refusal: statuses %v, closed %v; want the connection closed, the next request not served", statuses, closed)
			}
		})
	}
}
