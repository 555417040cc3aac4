package api

import (
	"bytes"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
)

var loopback = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")}

func TestClientAddress(t *testing.T) {
	trusted := append(append([]netip.Prefix(nil), loopback...), netip.MustParsePrefix("10.9.0.0/16"))
	xff := &Proxies{Trusted: trusted, Header: "X-Forwarded-For"}
	fwd := &Proxies{Trusted: trusted, Header: "Forwarded"}
	for _, tc := range []struct {
		name   string
		p      *Proxies
		remote string
		hdr    []string // name, value pairs
		want   string
	}{
		{"untrusted peer cannot spoof", xff, "192.0.2.1:5000", []string{"X-Forwarded-For", "10.0.0.66"}, "192.0.2.1"},
		{"no proxies configured", nil, "127.0.0.1:5000", []string{"X-Forwarded-For", "10.0.0.66"}, "127.0.0.1"},
		{"proxy without header", xff, "127.0.0.1:5000", nil, "127.0.0.1"},
		{"one hop", xff, "127.0.0.1:5000", []string{"X-Forwarded-For", "10.0.0.66"}, "10.0.0.66"},
		{"client-written hops ignored", xff, "127.0.0.1:5000", []string{"X-Forwarded-For", "1.2.3.4, 10.0.0.66"}, "10.0.0.66"},
		{"inner proxy skipped", xff, "127.0.0.1:5000", []string{"X-Forwarded-For", "1.2.3.4,10.0.0.66 , 10.9.1.1"}, "10.0.0.66"},
		{"several headers are one list", xff, "127.0.0.1:5000", []string{"X-Forwarded-For", "1.2.3.4", "X-Forwarded-For", "10.0.0.66"}, "10.0.0.66"},
		{"all hops trusted", xff, "127.0.0.1:5000", []string{"X-Forwarded-For", "10.9.1.1, 127.0.0.5"}, "10.9.1.1"},
		{"garbage nearest", xff, "127.0.0.1:5000", []string{"X-Forwarded-For", "10.0.0.66, garbage"}, "127.0.0.1"},
		{"garbage behind a proxy hop", xff, "127.0.0.1:5000", []string{"X-Forwarded-For", "nonsense, 10.9.1.1"}, "10.9.1.1"},
		{"empty header", xff, "127.0.0.1:5000", []string{"X-Forwarded-For", ""}, "127.0.0.1"},
		{"hop with port", xff, "127.0.0.1:5000", []string{"X-Forwarded-For", "10.0.0.66:4711"}, "10.0.0.66"},
		{"IPv6 hop", xff, "[::1]:5000", []string{"X-Forwarded-For", "[2001:db8::1]:4711"}, "2001:db8::1"},
		{"bracketed IPv6 hop", xff, "[::1]:5000", []string{"X-Forwarded-For", "[2001:db8::2]"}, "2001:db8::2"},
		{"mapped IPv4 hop", xff, "[::ffff:127.0.0.1]:5000", []string{"X-Forwarded-For", "::ffff:10.0.0.66"}, "10.0.0.66"},
		{"zoned hop refused", xff, "127.0.0.1:5000", []string{"X-Forwarded-For", "fe80::1%eth0"}, "127.0.0.1"},
		{"Forwarded ignored in XFF mode", xff, "127.0.0.1:5000", []string{"Forwarded", "for=10.0.0.66"}, "127.0.0.1"},
		{"Forwarded", fwd, "127.0.0.1:5000", []string{"Forwarded", "for=192.0.2.60;proto=http;by=203.0.113.43, for=\"[2001:db8:cafe::17]:4711\""}, "2001:db8:cafe::17"},
		{"Forwarded case and quotes", fwd, "127.0.0.1:5000", []string{"Forwarded", `For="10.0.0.66"`}, "10.0.0.66"},
		{"Forwarded comma in quotes", fwd, "127.0.0.1:5000", []string{"Forwarded", `for="a,b";by="x\"y", for=10.0.0.66`}, "10.0.0.66"},
		{"Forwarded unknown", fwd, "127.0.0.1:5000", []string{"Forwarded", "for=10.0.0.66, for=unknown"}, "127.0.0.1"},
		{"Forwarded element without for", fwd, "127.0.0.1:5000", []string{"Forwarded", "for=10.0.0.66, proto=https"}, "127.0.0.1"},
		{"XFF ignored in Forwarded mode", fwd, "127.0.0.1:5000", []string{"X-Forwarded-For", "10.0.0.66"}, "127.0.0.1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest("GET", "/", nil)
			r.RemoteAddr = tc.remote
			for i := 0; i+1 < len(tc.hdr); i += 2 {
				r.Header.Add(tc.hdr[i], tc.hdr[i+1])
			}
			if got := tc.p.Client(r); got != tc.want {
				t.Fatalf("client %q, want %q", got, tc.want)
			}
		})
	}
}

// Routes other packages add (RetailCRM's makeCallUrl) see the client's
// address the API settled, not the proxy's.
func TestRoutesSeeClientAddr(t *testing.T) {
	s := &Server{Tokens: NewTokens(nil), Proxies: &Proxies{Trusted: loopback},
		Routes: map[string]http.Handler{"GET /x": http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.WriteString(w, ClientAddr(r))
		})}}
	h := s.Handler()
	for _, c := range []struct{ remote, xff, want string }{
		{"127.0.0.1:4000", "10.0.0.66", "10.0.0.66"},
		{"192.0.2.1:4000", "10.0.0.66", "192.0.2.1"},
		{"[::1]:4000", "", "::1"},
	} {
		r := httptest.NewRequest("GET", "/x", nil)
		r.RemoteAddr = c.remote
		if c.xff != "" {
			r.Header.Set("X-Forwarded-For", c.xff)
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Body.String() != c.want {
			t.Errorf("from %s with X-Forwarded-For %q: %q, want %q", c.remote, c.xff, w.Body, c.want)
		}
	}
	r := httptest.NewRequest("GET", "/x", nil)
	r.RemoteAddr = "127.0.0.1:4000"
	r.Header.Set("X-Forwarded-For", "10.0.0.66")
	if got := ClientAddr(r); got != "127.0.0.1" {
		t.Fatalf("outside the API's handler: %q", got)
	}
}

func TestScheme(t *testing.T) {
	xff := &Proxies{Trusted: loopback, Header: "X-Forwarded-For"}
	xffPublic := &Proxies{Trusted: loopback, Header: "X-Forwarded-For", PublicHTTPS: true}
	fwd := &Proxies{Trusted: loopback, Header: "Forwarded"}
	for _, tc := range []struct {
		name   string
		p      *Proxies
		remote string
		hdr    []string
		want   bool
	}{
		{"no proxies", nil, "127.0.0.1:5000", []string{"X-Forwarded-Proto", "https"}, false},
		{"proxy without header", xff, "127.0.0.1:5000", nil, false},
		{"proxy without header, https public_url", xffPublic, "127.0.0.1:5000", nil, true},
		{"proxy says https", xff, "127.0.0.1:5000", []string{"X-Forwarded-Proto", "https"}, true},
		{"proxy says HTTPS", xff, "127.0.0.1:5000", []string{"X-Forwarded-Proto", "HTTPS"}, true},
		{"proxy says http behind an https public_url", xffPublic, "127.0.0.1:5000", []string{"X-Forwarded-Proto", "http"}, false},
		{"nearest proxy's value counts", xff, "127.0.0.1:5000", []string{"X-Forwarded-Proto", "http, https"}, true},
		{"untrusted peer's claim ignored", xffPublic, "192.0.2.1:5000", []string{"X-Forwarded-Proto", "https"}, false},
		{"Forwarded proto", fwd, "127.0.0.1:5000", []string{"Forwarded", "for=10.0.0.66;proto=https"}, true},
		{"Forwarded nearest element", fwd, "127.0.0.1:5000", []string{"Forwarded", "for=1.2.3.4;proto=https, for=10.0.0.66;proto=http"}, false},
		{"X-Forwarded-Proto ignored in Forwarded mode", fwd, "127.0.0.1:5000", []string{"X-Forwarded-Proto", "https"}, false},
		{"Forwarded ignored in XFF mode", xff, "127.0.0.1:5000", []string{"Forwarded", "proto=https"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest("GET", "/", nil)
			r.RemoteAddr = tc.remote
			for i := 0; i+1 < len(tc.hdr); i += 2 {
				r.Header.Add(tc.hdr[i], tc.hdr[i+1])
			}
			if got := tc.p.HTTPS(r); got != tc.want {
				t.Fatalf("https %v, want %v", got, tc.want)
			}
		})
	}
}

// A failed login, token or link is logged with the client's address: the
// forwarding header's from a trusted proxy, the peer's otherwise; never
// with the secret tried. Refusals past the limit are not logged.
func TestAuthFailuresLogged(t *testing.T) {
	f := newFixture(t)
	var buf bytes.Buffer
	var mu sync.Mutex
	f.s.Log = slog.New(slog.NewTextHandler(lockedWriter{&mu, &buf}, nil))
	f.s.Proxies = &Proxies{Trusted: []netip.Prefix{netip.MustParsePrefix("127.0.0.2/32")}} // the fixture's client, 127.0.0.1, is no proxy
	f.do(t, "GET", "/api/v1/calls", "wrong-token-secret", "X-Forwarded-For", "10.0.0.66")
	f.do(t, "GET", "/api/v1/recordings/c1-1?exp=1&sig=00", "")
	logs := func() string { mu.Lock(); defer mu.Unlock(); return buf.String() }
	for _, want := range []string{
		`msg="http auth failure" client=127.0.0.1 reason=bad_token path=/api/v1/calls`,
		`msg="http auth failure" client=127.0.0.1 reason=bad_link path=/api/v1/recordings/c1-1`,
	} {
		if !strings.Contains(logs(), want) {
			t.Fatalf("log lacks %q:\n%s", want, logs())
		}
	}
	if strings.Contains(logs(), "10.0.0.66") || strings.Contains(logs(), "wrong-token-secret") || strings.Contains(logs(), "sig=") {
		t.Fatalf("the log believed an untrusted header or holds a secret:\n%s", logs())
	}

	mu.Lock()
	buf.Reset()
	mu.Unlock()
	srv, _ := loginServer(t, true)
	srv.Log = f.s.Log
	h := srv.Handler()
	for range failBurst + 3 {
		login(h, "10.0.0.66", "application/json", `{"login":"ivanov","password":"guess-secret"}`)
	}
	if n := strings.Count(logs(), `client=10.0.0.66 reason=bad_login path=/api/v1/session login=ivanov`); n != failBurst {
		t.Fatalf("%d failed logins logged, want %d (the rest were over the limit):\n%s", n, failBurst, logs())
	}
	if strings.Contains(logs(), "guess-secret") {
		t.Fatal("a password reached the log")
	}
}

// lockedWriter serialises a test log's writes and reads.
type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// Behind the tunnel one client's bad tokens and links limit that client and
// that token only; a right token or a valid link is accepted from anyone.
func TestFailuresArePerClientAndCredential(t *testing.T) {
	f := newFixture(t)
	f.s.Proxies = &Proxies{Trusted: loopback} // the fixture's client is 127.0.0.1
	from := func(ip string) []string { return []string{"X-Forwarded-For", ip} }
	for i := range failBurst {
		if res, _ := f.do(t, "GET", "/api/v1/calls", "wrong-token-"+strconv.Itoa(i), from("10.0.0.66")...); res.StatusCode != 401 {
			t.Fatalf("bad token %d: %d", i, res.StatusCode)
		}
	}
	if res, b := f.do(t, "GET", "/api/v1/calls", "wrong-token-x", from("10.0.0.66")...); res.StatusCode != 429 || res.Header.Get("Retry-After") == "" || errCode(b) != "rate_limited" {
		t.Fatalf("bad token from the client that used up its failures: %d %s", res.StatusCode, b)
	}
	for _, c := range []struct{ tok, ip string }{{adminTok, "10.0.0.66"}, {adminTok, "10.0.0.77"}, {ivanovTok, "10.0.0.66"}} {
		if res, b := f.do(t, "GET", "/api/v1/calls", c.tok, from(c.ip)...); res.StatusCode != 200 {
			t.Fatalf("right token %s… from %s: %d %s", c.tok[:6], c.ip, res.StatusCode, b)
		}
	}
	link, _ := f.links.Link("c1-1")
	signed := strings.TrimPrefix(link, f.links.BaseURL)
	if res, _ := f.do(t, "GET", signed, "", from("10.0.0.66")...); res.StatusCode != 200 {
		t.Fatalf("valid link from the blocked client: %d", res.StatusCode)
	}
	if res, _ := f.do(t, "GET", strings.Replace(signed, "sig=", "sig=0", 1), "", from("10.0.0.66")...); res.StatusCode != 429 {
		t.Fatalf("bad link from the blocked client: %d", res.StatusCode)
	}
	if res, _ := f.do(t, "GET", "/api/v1/calls", "wrong-token-y", from("10.0.0.77")...); res.StatusCode != 401 {
		t.Fatalf("first bad token from another client: %d", res.StatusCode)
	}
	// A stale token tried from everywhere is limited as a token.
	for i := range failBurst {
		if res, _ := f.do(t, "GET", "/api/v1/calls", "stale-token-0123456789", from("10.0.1."+strconv.Itoa(i))...); res.StatusCode != 401 {
			t.Fatalf("stale token from client %d: %d", i, res.StatusCode)
		}
	}
	if res, _ := f.do(t, "GET", "/api/v1/calls", "stale-token-0123456789", from("10.0.1.200")...); res.StatusCode != 429 {
		t.Fatalf("stale token after %d failures from other clients: %d", failBurst, res.StatusCode)
	}
	if res, _ := f.do(t, "GET", "/api/v1/calls", "another-wrong-token", from("10.0.1.200")...); res.StatusCode != 401 {
		t.Fatalf("another token from that client: %d", res.StatusCode)
	}
}

// A failures table under a wide scan stops growing.
func TestFailuresTableIsBounded(t *testing.T) {
	var f failures
	now := time.Now()
	for i := range failMax + 100 {
		f.fail(now, addrKey(strconv.Itoa(i)))
	}
	if len(f.m) > failMax {
		t.Fatalf("%d keys tracked, at most %d", len(f.m), failMax)
	}
	if _, blocked := f.blocked(now, addrKey("1")); blocked {
		t.Fatal("one failure blocked a key")
	}
}

// loginServer is an API with ivanov's console login behind proxies on
// loopback, which serve an https public_url when publicHTTPS is set.
func loginServer(t *testing.T, publicHTTPS bool) (*Server, http.Handler) {
	t.Helper()
	hash, _ := bcrypt.GenerateFromPassword([]byte("right-password"), bcrypt.MinCost)
	s := &Server{Tokens: NewTokens(nil), Calls: &memCalls{}, Proxies: &Proxies{Trusted: loopback, PublicHTTPS: publicHTTPS},
		Sessions: NewSessions([]Account{{Employee: "ivanov", Role: "employee", Extensions: []string{"101"}, Hash: hash}}, time.Hour, false)}
	return s, s.Handler()
}

func login(h http.Handler, client, contentType, body string) *httptest.ResponseRecorder {
	r := httptest.NewRequest("POST", "/api/v1/session", strings.NewReader(body))
	r.RemoteAddr = "127.0.0.1:40000"
	r.Header.Set("X-Forwarded-For", client)
	r.Header.Set("Content-Type", contentType)
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

// A client guessing a password is stopped before its guesses are checked;
// the employee still logs in from their own client, so guessing cannot
// lock anyone out. Logins are JSON only and small.
func TestLoginLimitsAndBody(t *testing.T) {
	_, h := loginServer(t, false)
	const right, wrong = `{"login":"ivanov","password":"right-password"}`, `{"login":"ivanov","password":"guess"}`
	for i := range failBurst {
		if w := login(h, "10.0.0.66", "application/json", wrong); w.Code != 401 || errCode(w.Body.Bytes()) != "bad_login" {
			t.Fatalf("wrong password %d: %d %s", i, w.Code, w.Body)
		}
	}
	if w := login(h, "10.0.0.66", "application/json", right); w.Code != 429 {
		t.Fatalf("right password from the guessing client: %d, want 429", w.Code)
	}
	if w := login(h, "10.0.0.77", "application/json; charset=utf-8", right); w.Code != 200 {
		t.Fatalf("right password from another client: %d %s", w.Code, w.Body)
	}
	if w := login(h, "10.0.0.77", "application/json", wrong); w.Code != 429 {
		t.Fatalf("wrong password for a login others guessed: %d, want 429", w.Code)
	}
	if w := login(h, "10.0.0.78", "application/json", `{"login":"nobody","password":"guess"}`); w.Code != 401 {
		t.Fatalf("unknown login: %d", w.Code)
	}
	for _, ct := range []string{"text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", "", "application/jsonp"} {
		if w := login(h, "10.0.0.79", ct, right); w.Code != 415 || errCode(w.Body.Bytes()) != "unsupported_media_type" {
			t.Fatalf("login as %q: %d %s", ct, w.Code, w.Body)
		}
	}
	big := `{"login":"ivanov","password":"` + strings.Repeat("x", 5000) + `"}`
	if w := login(h, "10.0.0.79", "application/json", big); w.Code != 413 || errCode(w.Body.Bytes()) != "body_too_large" {
		t.Fatalf("5 KB login: %d %s", w.Code, w.Body)
	}
}

// An unknown login is checked against a hash as costly as the configured
// ones, so it takes as long as a wrong password.
func TestDummyHashHasConfiguredCost(t *testing.T) {
	h5, _ := bcrypt.GenerateFromPassword([]byte("a"), 5)
	h6, _ := bcrypt.GenerateFromPassword([]byte("b"), 6)
	s := NewSessions([]Account{{Employee: "a", Hash: h5}, {Employee: "b", Hash: h6}}, time.Hour, false)
	if c, err := bcrypt.Cost(s.people.Load().dummy); err != nil || c != 6 {
		t.Fatalf("dummy hash cost %d (%v), want 6", c, err)
	}
	h8, _ := bcrypt.GenerateFromPassword([]byte("c"), 8)
	s = NewSessions([]Account{{Employee: "a", Hash: h5}, {Employee: "c", Hash: h8}, {Employee: "d"}}, time.Hour, false)
	if c, err := bcrypt.Cost(s.people.Load().dummy); err != nil || c != 8 {
		t.Fatalf("dummy hash cost %d (%v), want 8", c, err)
	}
	if s = NewSessions(nil, time.Hour, false); s.people.Load().dummy != nil {
		t.Fatal("a dummy hash without accounts")
	}
}
