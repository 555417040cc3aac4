package e2e

import (
	"bufio"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"callgate/sip/siptest"
)

// fromClient sends a request as the tunnel would forward it for the client
// at xff (the test itself connects from 127.0.0.1, a trusted proxy by
// default) and returns the status, headers and body.
func (d *daemon) fromClient(t *testing.T, method, path, token, xff string) (*http.Response, []byte) {
	t.Helper()
	return d.do(t, method, path, token, "X-Forwarded-For", "203.0.113.9, "+xff)
}

// Behind the tunnel every request comes from 127.0.0.1: one client's bad
// tokens limit that client (and that token), never the right token or a
// valid signed link of anyone, that client included. The API's answers
// carry the security headers, and with an https public_url (a
// TLS-terminating tunnel) HSTS and a Secure session cookie; logins are
// JSON only.
func TestAPIRateLimitsPerClientBehindProxy(t *testing.T) {
	o := newOffice(t, officeOpts{HTTPExtra: `public_url = "https://callgate.example.test"`,
		IvanovExtra: "password_hash = \"" + passwordHash(t) + "\"\n"})
	d := o.d
	outside, employee := tonePeers(t)
	ctx := withTimeout(t, 20*time.Second)
	vpbxSide, _, in := o.inbound(ctx, outside.Addr().String(), employee.Addr().String())
	toA, _ := siptest.MediaAddr(vpbxSide.Remote)
	toB, _ := siptest.MediaAddr(in.Request.Body())
	outside.SendTo(toA)
	employee.SendTo(toB)
	time.Sleep(500 * time.Millisecond)
	if err := vpbxSide.Hangup(ctx); err != nil {
		t.Fatal(err)
	}
	rec := o.lastCall()
	if len(rec.Legs) == 0 || rec.Legs[0].Recording == "" {
		t.Fatalf("the call was not recorded: %+v", rec)
	}
	res, b := d.do(t, "POST", "/api/v1/recordings/"+rec.ID+"-1/link", testToken)
	var link struct{ URL string }
	if json.Unmarshal(b, &link) != nil || res.StatusCode != 200 {
		t.Fatalf("mint a link: %d %s", res.StatusCode, b)
	}
	u, err := url.Parse(link.URL) // public_url is the tunnel's; ask the daemon directly
	if err != nil || u.Host != "callgate.example.test" {
		t.Fatalf("link %q", link.URL)
	}
	signed := u.RequestURI()

	for i := 1; i <= 11; i++ {
		res, b := d.fromClient(t, "GET", "/api/v1/calls", "wrong-token-"+strconv.Itoa(i), "10.0.0.66")
		// The first ten are plain refusals; the 11th may already be limited.
		if res.StatusCode != 401 && (i <= 10 || res.StatusCode != 429) {
			t.Fatalf("bad token %d from 10.0.0.66: %d %s", i, res.StatusCode, b)
		}
	}
	if res, b := d.fromClient(t, "GET", "/api/v1/calls", testToken, "10.0.0.77"); res.StatusCode != 200 {
		t.Fatalf("right token from 10.0.0.77 after 10.0.0.66 failed: %d %s", res.StatusCode, b)
	}
	if res, b := d.fromClient(t, "GET", "/api/v1/calls", testToken, "10.0.0.66"); res.StatusCode != 200 {
		t.Fatalf("right token from the failing client: %d %s", res.StatusCode, b)
	}
	res, wav := d.fromClient(t, "GET", signed, "", "10.0.0.66")
	if res.StatusCode != 200 || len(wav) < 1000 {
		t.Fatalf("valid signed link from the failing client: %d, %d bytes", res.StatusCode, len(wav))
	}
	if h := res.Header; h.Get("Cache-Control") != "private, max-age=3600" || h.Get("X-Content-Type-Options") != "nosniff" || h.Get("Strict-Transport-Security") == "" {
		t.Fatalf("recording headers: %v", h)
	}
	res, b = d.fromClient(t, "GET", "/api/v1/calls", "wrong-token-12", "10.0.0.66")
	if res.StatusCode != 429 || res.Header.Get("Retry-After") == "" || !strings.Contains(string(b), "rate_limited") {
		t.Fatalf("12th bad token from 10.0.0.66: %d %s", res.StatusCode, b)
	}
	if res, _ := d.fromClient(t, "GET", strings.Replace(signed, "sig=", "sig=0", 1), "", "10.0.0.66"); res.StatusCode != 429 {
		t.Fatalf("bad link from the blocked client: %d", res.StatusCode)
	}
	if res, _ := d.fromClient(t, "GET", "/api/v1/calls", "wrong-token-13", "10.0.0.77"); res.StatusCode != 401 {
		t.Fatalf("first bad token from 10.0.0.77: %d, want 401", res.StatusCode)
	}

	res, _ = d.fromClient(t, "GET", "/api/v1/calls", testToken, "10.0.0.77")
	h := res.Header
	if h.Get("X-Content-Type-Options") != "nosniff" || h.Get("Cache-Control") != "no-store" || !strings.HasPrefix(h.Get("Strict-Transport-Security"), "max-age=") {
		t.Fatalf("API headers: %v", h)
	}
	for _, path := range []string{"/healthz", "/", "/no/such/page"} {
		if res, _ := d.do(t, "GET", path, ""); res.Header.Get("X-Content-Type-Options") != "nosniff" {
			t.Fatalf("%s without nosniff: %v", path, res.Header)
		}
	}

	login := `{"login":"ivanov","password":"` + consolePassword + `"}`
	res, err = http.Post(d.url("/api/v1/session"), "text/plain", strings.NewReader(login))
	if err != nil || res.StatusCode != 415 {
		t.Fatalf("login as text/plain: %v %v", res, err)
	}
	res.Body.Close()
	res, err = http.Post(d.url("/api/v1/session"), "application/json", strings.NewReader(login))
	if err != nil || res.StatusCode != 200 {
		t.Fatalf("login: %v %v", res, err)
	}
	res.Body.Close()
	var cookie *http.Cookie
	for _, c := range res.Cookies() {
		if c.Name == "callgate_session" {
			cookie = c
		}
	}
	if cookie == nil || !cookie.Secure || !cookie.HttpOnly || cookie.SameSite != http.SameSiteStrictMode {
		t.Fatalf("session cookie %+v", cookie)
	}
	if strings.Contains(d.log.String(), consolePassword) || strings.Contains(d.log.String(), "wrong-token-") {
		t.Fatal("a secret reached the log")
	}
}

// closedWithin reports whether the server closes c within d (whatever it
// answers first).
func closedWithin(c net.Conn, d time.Duration) bool {
	_ = c.SetReadDeadline(time.Now().Add(d))
	_, err := io.Copy(io.Discard, c)
	var ne net.Error
	return err == nil || !(errors.As(err, &ne) && ne.Timeout())
}

// A slow body and an idle keep-alive connection are closed after the
// configured timeouts, the live event stream outlives both, a huge header
// block is refused, and a client that is not a trusted proxy cannot pick
// its address with X-Forwarded-For.
func TestAPIConnectionTimeouts(t *testing.T) {
	cfg := newDaemonConfig(t, "")
	cfg.HTTPExtra = `read_timeout = "1s"
write_timeout = "1s"
idle_timeout = "1s"
trusted_proxies = ["127.0.0.1/32"]
`
	d := startDaemon(t, cfg)
	addr := strings.TrimPrefix(d.url(""), "http://")
	dial := func() net.Conn {
		c, err := net.DialTimeout("tcp", addr, 2*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}

	slow := dial()
	_, _ = slow.Write([]byte("POST /api/v1/calls HTTP/1.1\r\nHost: callgate\r\nAuthorization: Bearer " + testToken +
		"\r\nContent-Type: application/json\r\nContent-Length: 200\r\n\r\n{\"employee\":"))
	if !closedWithin(slow, 5*time.Second) {
		t.Fatal("a connection sending its body slowly was kept open")
	}

	idle := dial()
	_, _ = idle.Write([]byte("GET /healthz HTTP/1.1\r\nHost: callgate\r\n\r\n"))
	br := bufio.NewReader(idle)
	res, err := http.ReadResponse(br, nil)
	if err != nil || res.StatusCode != 200 || res.Close {
		t.Fatalf("keep-alive request: %v %v", res, err)
	}
	_, _ = io.Copy(io.Discard, res.Body)
	start := time.Now()
	if !closedWithin(idle, 5*time.Second) {
		t.Fatal("an idle keep-alive connection was kept open")
	}
	if waited := time.Since(start); waited < 500*time.Millisecond {
		t.Fatalf("the idle connection was closed after %v, before idle_timeout", waited)
	}

	stream := dial()
	_, _ = stream.Write([]byte("GET /api/v1/events HTTP/1.1\r\nHost: callgate\r\nAuthorization: Bearer " + testToken + "\r\n\r\n"))
	br = bufio.NewReader(stream)
	res, err = http.ReadResponse(br, nil)
	if err != nil || res.StatusCode != 200 {
		t.Fatalf("event stream: %v %v", res, err)
	}
	if closedWithin(stream, 3*time.Second) {
		t.Fatal("the event stream was cut by the read or write timeout")
	}

	big := dial()
	_, _ = big.Write([]byte("GET /healthz HTTP/1.1\r\nHost: callgate\r\nX-Padding: " + strings.Repeat("a", 80<<10) + "\r\n\r\n"))
	res, err = http.ReadResponse(bufio.NewReader(big), nil)
	if err != nil || res.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Fatalf("80 KiB of headers: %v %v", res, err)
	}

	// 127.0.0.2 is not a trusted proxy here: its X-Forwarded-For is
	// ignored, so new made-up addresses do not buy it new attempts.
	client := &http.Client{Transport: &http.Transport{DialContext: (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)}}).DialContext}}
	t.Cleanup(client.CloseIdleConnections)
	var last int
	for i := range 11 {
		req, _ := http.NewRequest("GET", d.url("/api/v1/calls"), nil)
		req.Header.Set("Authorization", "Bearer wrong-token-"+strconv.Itoa(i))
		req.Header.Set("X-Forwarded-For", "10.1.0."+strconv.Itoa(i))
		res, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		last = res.StatusCode
	}
	if last != 429 {
		t.Fatalf("11th bad token from an untrusted peer with a new X-Forwarded-For each time: %d, want 429", last)
	}
}

// TestHTTPConnectionsCappedPerClient: one host opening connections and
// never finishing them (a slow WebSocket-upgrade flood at /sip) has those
// over http.max_conns_per_ip closed at once, so it cannot use up
// callgate's file descriptors: the console answers everyone else, a
// trusted proxy is not capped, and the host itself gets in again once its
// connections are gone.
func TestHTTPConnectionsCappedPerClient(t *testing.T) {
	cfg := newDaemonConfig(t, "")
	cfg.HTTPExtra = "max_conns_per_ip = 16\ntrusted_proxies = [\"127.0.0.1/32\"]\n"
	d := startDaemon(t, cfg)
	addr := strings.TrimPrefix(d.url(""), "http://")
	from := func(ip string) net.Conn {
		dl := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}, Timeout: 2 * time.Second}
		c, err := dl.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	var flood []net.Conn
	for range 40 {
		c := from("127.0.0.5")
		_, _ = c.Write([]byte("GET /sip HTTP/1.1\r\nHost: " + addr + "\r\nUpgrade: websocket\r\n"))
		flood = append(flood, c)
	}
	d.waitMetric("callgate_http_connections_refused_total", 24, 5*time.Second)
	closed := 0
	for _, c := range flood {
		if closedWithin(c, 200*time.Millisecond) {
			closed++
		}
	}
	if closed != 24 || d.metric("callgate_http_connections_capped") != 16 {
		t.Fatalf("%d of 40 closed, %v counted open; want 24 closed, 16 open", closed, d.metric("callgate_http_connections_capped"))
	}
	get := func(ip string) int {
		c := from(ip)
		_, _ = c.Write([]byte("GET /healthz HTTP/1.1\r\nHost: callgate\r\nConnection: close\r\n\r\n"))
		_ = c.SetReadDeadline(time.Now().Add(3 * time.Second))
		res, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			return 0
		}
		res.Body.Close()
		return res.StatusCode
	}
	if code := get("127.0.0.6"); code != 200 {
		t.Fatalf("another host during the flood: %d", code)
	}
	for range 20 { // the proxy carries many clients' connections
		from("127.0.0.1")
	}
	if code := get("127.0.0.1"); code != 200 {
		t.Fatalf("the trusted proxy with 21 connections: %d", code)
	}
	for _, c := range flood {
		c.Close()
	}
	d.waitMetric("callgate_http_connections_capped", 0, 5*time.Second)
	if code := get("127.0.0.5"); code != 200 {
		t.Fatalf("the flooding host after its connections closed: %d", code)
	}
}
