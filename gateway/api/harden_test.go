package api

import (
	"bufio"
	"crypto/tls"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"callgate/gateway/calls"
)

func TestSecurityHeaders(t *testing.T) {
	f := newFixture(t)
	link, _ := f.links.Link("c1-1")
	signed := strings.TrimPrefix(link, f.links.BaseURL)
	for _, c := range []struct {
		path, token, cache string
	}{
		{"/healthz", "", "no-store"},
		{"/readyz", "", "no-store"},
		{"/metrics", adminTok, "no-store"},
		{"/api/v1/calls", adminTok, "no-store"},
		{"/api/v1/calls", "wrong-token", "no-store"},
		{"/api/v1/calls/c1", ivanovTok, "no-store"},
		{"/no/such/endpoint", "", "no-store"},
		{"/api/v1/recordings/c1-1", ivanovTok, "private, max-age=3600"},
		{signed, "", "private, max-age=3600"},
		{"/api/v1/recordings/c1-1?exp=1&sig=00", "", "no-store"},
	} {
		res, b := f.do(t, "GET", c.path, c.token)
		h := res.Header
		if h.Get("X-Content-Type-Options") != "nosniff" || h.Get("Cache-Control") != c.cache {
			t.Errorf("%s: %d, nosniff %q, Cache-Control %q (want %q) %.80s", c.path, res.StatusCode, h.Get("X-Content-Type-Options"), h.Get("Cache-Control"), c.cache, b)
		}
		if h.Get("Strict-Transport-Security") != "" {
			t.Errorf("%s: HSTS over plain HTTP without an https public_url", c.path)
		}
	}
	// HSTS over TLS, and over plain HTTP from a proxy serving https; not
	// to a LAN client talking plain HTTP to callgate itself.
	f.s.Proxies = &Proxies{Trusted: loopback, PublicHTTPS: true}
	h := f.s.Handler()
	for _, c := range []struct {
		name   string
		remote string
		tls    bool
		want   string
	}{
		{"TLS", "192.0.2.1:4000", true, hstsValue},
		{"behind an https tunnel", "127.0.0.1:4000", false, hstsValue},
		{"LAN client over plain HTTP", "192.168.1.50:4000", false, ""},
	} {
		r := httptest.NewRequest("GET", "/api/v1/calls", nil)
		r.RemoteAddr = c.remote
		if c.tls {
			r.TLS = &tls.ConnectionState{}
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Header().Get("Strict-Transport-Security") != c.want || w.Header().Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("%s: %v", c.name, w.Header())
		}
	}
}

// The session cookie is Secure when the browser talks https: over TLS,
// from a trusted proxy that says https or (naming no scheme) serves an
// https public_url; on login and on logout. A client talking plain HTTP
// to callgate gets a cookie it can send back, whatever it claims.
func TestSessionCookieSecure(t *testing.T) {
	right := `{"login":"ivanov","password":"right-password"}`
	for _, c := range []struct {
		name        string
		publicHTTPS bool
		remote      string
		tls         bool
		hdr         []string
		want        bool
	}{
		{"plain HTTP", false, "127.0.0.1:4000", false, nil, false},
		{"TLS", false, "192.0.2.1:4000", true, nil, true},
		{"proxy of an https public_url", true, "127.0.0.1:4000", false, nil, true},
		{"proxy says https", false, "127.0.0.1:4000", false, []string{"X-Forwarded-Proto", "https"}, true},
		{"proxy says http", true, "127.0.0.1:4000", false, []string{"X-Forwarded-Proto", "http"}, false},
		{"LAN client, https public_url", true, "192.168.1.50:4000", false, nil, false},
		{"LAN client claims https", true, "192.168.1.50:4000", false, []string{"X-Forwarded-Proto", "https"}, false},
	} {
		s, h := loginServer(t, c.publicHTTPS)
		send := func(r *http.Request) *httptest.ResponseRecorder {
			r.RemoteAddr = c.remote
			if c.tls {
				r.TLS = &tls.ConnectionState{}
			}
			for i := 0; i+1 < len(c.hdr); i += 2 {
				r.Header.Set(c.hdr[i], c.hdr[i+1])
			}
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			return w
		}
		r := httptest.NewRequest("POST", "/api/v1/session", strings.NewReader(right))
		r.Header.Set("Content-Type", "application/json")
		w := send(r)
		cookies := w.Result().Cookies()
		if w.Code != 200 || len(cookies) != 1 || cookies[0].Secure != c.want || !cookies[0].HttpOnly {
			t.Fatalf("%s: login %d, cookies %v", c.name, w.Code, cookies)
		}
		csrf := s.Sessions.info(s.Sessions.m[firstKey(s)]).CSRF
		r = httptest.NewRequest("DELETE", "/api/v1/session", nil)
		r.AddCookie(cookies[0])
		r.Header.Set("X-CSRF-Token", csrf)
		w = send(r)
		if out := w.Result().Cookies(); w.Code != 204 || len(out) != 1 || out[0].Secure != c.want || out[0].MaxAge >= 0 {
			t.Fatalf("%s: logout %d, cookies %v", c.name, w.Code, out)
		}
	}
}

func firstKey(s *Server) [32]byte {
	for k := range s.Sessions.m {
		return k
	}
	return [32]byte{}
}

// Bodies over an endpoint's cap get 413 with the JSON error shape.
func TestBodyCaps(t *testing.T) {
	f := newFixture(t)
	f.s.Admin = fakeAdmin{any: true}
	h := f.s.Handler()
	pad := func(n int) string { return `{"employee":"ivanov","number":"` + strings.Repeat("1", n) + `"}` }
	for _, c := range []struct {
		path, body string
		want       int
	}{
		{"/api/v1/calls", pad(60 << 10), 400}, // under the cap: an ordinary refusal (the number)
		{"/api/v1/calls", pad(70 << 10), 413},
		{"/api/v1/calls/c1/transfer", `{"to":"` + strings.Repeat("1", 70<<10) + `"}`, 413},
		{"/api/v1/admin/unban", `{"source":"` + strings.Repeat("1", 2<<10) + `"}`, 413},
		{"/api/v1/admin/unban", `{"source":"192.0.2.1"}`, 204},
		{"/api/v1/crm/retailcrm/retry", strings.Repeat("x", 100<<10), 0}, // reads no body: not 413, not stuck
	} {
		r := httptest.NewRequest("POST", c.path, strings.NewReader(c.body))
		r.Header.Set("Authorization", "Bearer "+adminTok)
		r.Header.Set("Content-Type", "application/json")
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		switch {
		case c.want == 0 && w.Code == 413:
			t.Errorf("%s: 413 from an endpoint that reads no body", c.path)
		case c.want != 0 && w.Code != c.want && !(c.want == 400 && w.Code != 413):
			t.Errorf("%s with %d bytes: %d %s, want %d", c.path, len(c.body), w.Code, w.Body, c.want)
		case w.Code == 413 && (errCode(w.Body.Bytes()) != "body_too_large" || w.Header().Get("Content-Type") != "application/json"):
			t.Errorf("%s: 413 without the JSON error: %s", c.path, w.Body)
		}
	}
}

// The event stream and a slowly read recording outlive the server's read
// and write timeouts: they set their own deadlines.
func TestStreamsOutliveServerTimeouts(t *testing.T) {
	f := newFixture(t)
	f.s.Events.Heartbeat = 50 * time.Millisecond
	big := filepath.Join(f.dir, "2026/11/22/c9-1.wav")
	if err := os.WriteFile(big, make([]byte, 32<<20), 0o644); err != nil { // more than socket buffers hold
		t.Fatal(err)
	}
	f.s.Calls.(*memCalls).recs["c9"] = &calls.Record{ID: "c9", AnsweredBy: "ivanov",
		Legs: []calls.Leg{{N: 1, Employee: "ivanov", Recording: "2026/11/22/c9-1.wav"}}}
	srv := httptest.NewUnstartedServer(f.s.Handler())
	srv.Config.ReadTimeout, srv.Config.WriteTimeout = 200*time.Millisecond, 200*time.Millisecond
	srv.Start()
	t.Cleanup(srv.Close)

	req, _ := http.NewRequest("GET", srv.URL+"/api/v1/events", nil)
	req.Header.Set("Authorization", "Bearer "+adminTok)
	res, err := http.DefaultClient.Do(req)
	if err != nil || res.StatusCode != 200 {
		t.Fatalf("events: %v %v", res, err)
	}
	defer res.Body.Close()
	sc := bufio.NewScanner(res.Body)
	start, beats := time.Now(), 0
	for time.Since(start) < time.Second && sc.Scan() {
		if sc.Text() == ": heartbeat" && time.Since(start) > 500*time.Millisecond {
			beats++
		}
	}
	if beats == 0 {
		t.Fatalf("the stream ended after %v: %v", time.Since(start), sc.Err())
	}

	req, _ = http.NewRequest("GET", srv.URL+"/api/v1/recordings/c9-1", nil)
	req.Header.Set("Authorization", "Bearer "+adminTok)
	res, err = http.DefaultClient.Do(req)
	if err != nil || res.StatusCode != 200 {
		t.Fatalf("recording: %v %v", res, err)
	}
	defer res.Body.Close()
	time.Sleep(600 * time.Millisecond) // a slow client, past the write timeout
	n, err := io.Copy(io.Discard, res.Body)
	if err != nil || n != 32<<20 {
		t.Fatalf("slowly read recording: %d bytes, %v", n, err)
	}
	if d := recordingDeadline(100 << 20); d < 50*time.Minute {
		t.Fatalf("an hour's recording gets %v", d)
	}
}

// fakeAdmin has an empty admin page and lifts the ban on unbans (any: on
// every source).
type fakeAdmin struct {
	unbans string
	any    bool
}

func (fakeAdmin) AdminView() AdminView { return AdminView{} }

func (a fakeAdmin) Unban(source string) bool { return a.any || source == a.unbans }
