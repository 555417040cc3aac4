package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"

	"callgate/gateway/calls"
	"callgate/gateway/directory"

	"golang.org/x/crypto/bcrypt"
)

// FuzzClientAddress feeds made-up forwarding headers, as a client behind
// the tunnel may send them, followed by the hop the proxy adds itself: the
// client address is always the proxy's hop (or, for a Forwarded header the
// client broke, the proxy), never one the client chose.
func FuzzClientAddress(f *testing.F) {
	for _, s := range []string{
		"", "10.0.0.66", "1.2.3.4, 5.6.7.8", "garbage", "[2001:db8::1]:4711", "::ffff:1.2.3.4", "fe80::1%eth0",
		"unknown", "127.0.0.1, 10.9.0.1", ",,,", " , ", "1.2.3.4:99999",
		`for=192.0.2.60;proto=http;by=203.0.113.43`, `for="[2001:db8:cafe::17]:4711"`, `for="_hidden", for=unknown`,
		`for="a,b";by="x\"y"`, `for="`, `FOR=1.2.3.4;For=5.6.7.8`, `for=\`, `;;;=,=;`, "for=1.2.3.4\x00",
	} {
		f.Add(false, s)
		f.Add(true, s)
	}
	trusted := append(append([]netip.Prefix(nil), loopback...), netip.MustParsePrefix("10.9.0.0/16"))
	f.Fuzz(func(t *testing.T, forwarded bool, value string) {
		p := &Proxies{Trusted: trusted, Header: "X-Forwarded-For"}
		name, proxyHop := "X-Forwarded-For", "192.0.2.77"
		if forwarded {
			p.Header, name, proxyHop = "Forwarded", "Forwarded", "for=192.0.2.77"
		}
		r := httptest.NewRequest("GET", "/", nil)
		r.RemoteAddr = "127.0.0.1:40000"
		r.Header.Add(name, value)
		if got := p.Client(r); got != "127.0.0.1" {
			if _, err := netip.ParseAddr(got); err != nil {
				t.Fatalf("client %q is not an address", got)
			}
		}
		r.Header.Add(name, proxyHop) // what the proxy appends
		if got := p.Client(r); got != "192.0.2.77" && (!forwarded || got != "127.0.0.1") {
			t.Fatalf("client after %q then the proxy's hop: %q", value, got)
		}
		if !forwarded {
			// The proxy appending to the client's own line changes nothing.
			r.Header.Set(name, value+", "+proxyHop)
			if got := p.Client(r); got != "192.0.2.77" {
				t.Fatalf("client after %q on one line: %q", value, got)
			}
		}
		r.RemoteAddr = "192.0.2.1:40000" // not a proxy: its headers are ignored
		if got := p.Client(r); got != "192.0.2.1" {
			t.Fatalf("untrusted peer with %q became %q", value, got)
		}
	})
}

// FuzzScheme feeds made-up scheme headers (X-Forwarded-Proto, or
// Forwarded with proto=) as a client behind the tunnel may send them: the
// scheme the proxy adds after them is the one believed, and a peer that is
// not a proxy never talks https however it claims so.
func FuzzScheme(f *testing.F) {
	for _, s := range []string{
		"", "https", "http", "HTTPS", "https, http", "ftp", ",,,", " , ",
		`for=192.0.2.60;proto=https;by=203.0.113.43`, `proto="https"`, `proto=http, proto=https`, `proto="`,
		`for="a,b";proto="x\"y"`, `PROTO=https`, `;;;=,=;`, "proto=https\x00",
	} {
		f.Add(false, s)
		f.Add(true, s)
	}
	f.Fuzz(func(t *testing.T, forwarded bool, value string) {
		p := &Proxies{Trusted: loopback, Header: "X-Forwarded-For"}
		name, https, plain := "X-Forwarded-Proto", "https", "http"
		if forwarded {
			p.Header, name, https, plain = "Forwarded", "Forwarded", "for=192.0.2.77;proto=https", "for=192.0.2.77;proto=http"
		}
		r := httptest.NewRequest("GET", "/", nil)
		r.RemoteAddr = "127.0.0.1:40000"
		r.Header.Add(name, value)
		_ = p.HTTPS(r)
		r.Header.Add(name, https) // what the proxy appends
		if !p.HTTPS(r) {
			t.Fatalf("%q then the proxy's https: not https", value)
		}
		r.Header.Set(name, value)
		r.Header.Add(name, plain)
		if p.HTTPS(r) {
			t.Fatalf("%q then the proxy's http: https", value)
		}
		r.Header.Set(name, value)
		r.Header.Add(name, https)
		r.RemoteAddr = "192.0.2.1:40000" // not a proxy: its headers are ignored
		if p.PublicHTTPS = true; p.HTTPS(r) {
			t.Fatalf("untrusted peer with %q talks https", value)
		}
	})
}

// FuzzJSONBodies sends made-up bodies to the endpoints that decode JSON
// (login, click-to-call, transfer, unban): nothing panics, every refusal
// has the JSON error shape, and the status is one the API documents.
func FuzzJSONBodies(f *testing.F) {
	seeds := []string{
		`{"login":"ivanov","password":"right-password"}`, `{"login":"101","password":"guess"}`, `{"login":"","password":""}`,
		`{"employee":"ivanov","number":"+79161234567"}`, `{"employee":"ivanov","number":"8 916 123-45-67","line":"sales1"}`,
		`{"to":"petrov","mode":"blind"}`, `{"to":"+79161234567","mode":"attended"}`, `{"to":"x","mode":"sideways"}`,
		`{"source":"192.0.2.1:5060"}`, `{"source":""}`, `{"status":"dinner"}`, `{"status":"x"}`, `{"unknown":1}`, `{"login":1}`, `null`, `[]`, `{`, ``, `"\ud800"`,
		`{"login":"ivanov","password":"right-password"}{"trailing":true}`, strings.Repeat("[", 10000), "\xff\xfe",
		`{"extension":"101"}`, `{"extension":"103"}`, `{"extension":101}`, `{"extension":""}`, `{"extension":"101","line":"x"}`,
	}
	paths := []string{"/api/v1/session", "/api/v1/calls", "/api/v1/calls/c1/transfer", "/api/v1/admin/unban", "/api/v1/presence", "/api/v1/phone"}
	for i, s := range seeds {
		for ep := range uint8(len(paths)) {
			f.Add(ep, "application/json", []byte(s))
		}
		if i == 0 {
			f.Add(uint8(0), "text/plain", []byte(s))
			f.Add(uint8(0), "application/json; charset=utf-8", []byte(s))
		}
	}
	hash, _ := bcrypt.GenerateFromPassword([]byte("right-password"), bcrypt.MinCost)
	s := &Server{
		Tokens:   NewTokens([]string{adminTok}, Token{Scope: "employee:ivanov", Token: ivanovTok}),
		Presence: &memPresence{m: map[string]string{}},
		Calls: &memCalls{recs: map[string]*calls.Record{"c1": {ID: "c1", AnsweredBy: "ivanov",
			Legs: []calls.Leg{{N: 1, Employee: "ivanov"}}}}},
		Dialer:   fakeDialer{},
		Sessions: NewSessions([]Account{{Employee: "ivanov", Role: "employee", Extensions: []string{"101"}, Hash: hash}}, time.Hour, false),
		Admin:    fakeAdmin{unbans: "192.0.2.1:5060"},
		Phone:    fakePhone{},
		Log:      slog.New(slog.DiscardHandler),
	}
	h := s.Handler()
	// The browser phone's pass is for a console session only: log in once.
	login := httptest.NewRecorder()
	h.ServeHTTP(login, jsonRequest("POST", "/api/v1/session", `{"login":"ivanov","password":"right-password"}`))
	var info struct{ CSRF string }
	if login.Code != 200 || json.Unmarshal(login.Body.Bytes(), &info) != nil || len(login.Result().Cookies()) == 0 {
		f.Fatalf("log in: %d %s", login.Code, login.Body)
	}
	cookie := login.Result().Cookies()[0]
	allowed := map[int]bool{200: true, 201: true, 204: true, 400: true, 401: true, 403: true, 404: true, 409: true, 413: true, 415: true, 429: true}
	f.Fuzz(func(t *testing.T, ep uint8, contentType string, body []byte) {
		path := paths[int(ep)%len(paths)]
		method, token := "POST", adminTok
		if path == "/api/v1/presence" {
			method, token = "PUT", ivanovTok // an employee's own status
		}
		r := httptest.NewRequest(method, path, bytes.NewReader(body))
		r.Header.Set("Content-Type", contentType)
		switch path {
		case "/api/v1/session":
		case "/api/v1/phone":
			r.AddCookie(cookie)
			r.Header.Set("X-CSRF-Token", info.CSRF)
		default:
			r.Header.Set("Authorization", "Bearer "+token)
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if !allowed[w.Code] {
			t.Fatalf("%s %q: status %d", path, body, w.Code)
		}
		if w.Header().Get("X-Content-Type-Options") != "nosniff" {
			t.Fatalf("%s: no nosniff", path)
		}
		if w.Code >= 400 {
			var e struct {
				Error struct{ Code, Message string }
			}
			if err := json.Unmarshal(w.Body.Bytes(), &e); err != nil || e.Error.Code == "" || e.Error.Message == "" {
				t.Fatalf("%s %q: %d without the JSON error shape: %s", path, body, w.Code, w.Body)
			}
		}
	})
}

func jsonRequest(method, path, body string) *http.Request {
	r := httptest.NewRequest(method, path, strings.NewReader(body))
	r.Header.Set("Content-Type", "application/json")
	return r
}

// fakePhone mints passes for ivanov's lines 101 and 102.
type fakePhone struct{}

func (fakePhone) MintPass(employee, extension, session string, ttl time.Duration, now time.Time) (directory.Pass, error) {
	switch {
	case employee != "ivanov":
		return directory.Pass{}, errors.New("no extension")
	case extension != "" && extension != "101" && extension != "102":
		return directory.Pass{}, fmt.Errorf("%q: %w", extension, directory.ErrNoLine)
	}
	return directory.Pass{Extension: "101", Password: "minted", Realm: "callgate", Expires: now.Add(ttl), Lines: []string{"101", "102"}}, nil
}

func (fakePhone) RevokePasses(string) {}
