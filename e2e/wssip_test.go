package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/textproto"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
	icdigest "github.com/icholy/digest"
)

// wsSIP is a SIP client over WebSocket (RFC 7118) as a browser's SIP
// stack is: one message per text frame, an Origin header, subprotocol sip.
type wsSIP struct {
	c         net.Conn
	callID    string
	cseq      int
	responses chan rawMessage
	requests  chan wsRequest
	gone      chan struct{}
}

// wsRequest is a request callgate sent, with its raw text to answer it.
type wsRequest struct {
	rawMessage
	raw string
}

// dialWS opens /sip with origin ("" sends none); the error is the
// handshake's (ws.StatusError for an HTTP refusal).
func dialWS(t *testing.T, d *daemon, origin string, protocols ...string) (*wsSIP, error) {
	t.Helper()
	if protocols == nil {
		protocols = []string{"sip"}
	}
	h := http.Header{}
	if origin != "" {
		h.Set("Origin", origin)
	}
	dialer := ws.Dialer{Protocols: protocols, Header: ws.HandshakeHeaderHTTP(h), Timeout: 5 * time.Second}
	c, _, _, err := dialer.Dial(context.Background(), fmt.Sprintf("ws://127.0.0.1:%d/sip", d.cfg.HTTPPort))
	if err != nil {
		return nil, err
	}
	return newWSSIP(t, c), nil
}

// newWSSIP speaks SIP on an upgraded WebSocket connection.
func newWSSIP(t *testing.T, c net.Conn) *wsSIP {
	t.Cleanup(func() { c.Close() })
	s := &wsSIP{c: c, callID: sip.GenerateTagN(16), responses: make(chan rawMessage, 16), requests: make(chan wsRequest, 64), gone: make(chan struct{})}
	go s.read()
	return s
}

func (s *wsSIP) read() {
	defer close(s.gone)
	for {
		data, err := wsutil.ReadServerText(s.c)
		if err != nil {
			return
		}
		r := textproto.NewReader(bufio.NewReader(bytes.NewReader(data)))
		start, err := r.ReadLine()
		if err != nil || start == "" {
			continue
		}
		h, err := r.ReadMIMEHeader()
		if err != nil {
			continue
		}
		m := rawMessage{start: start, header: h}
		if strings.HasPrefix(start, "SIP/2.0 ") {
			s.responses <- m
			continue
		}
		select {
		case s.requests <- wsRequest{rawMessage: m, raw: string(data)}:
		default:
		}
	}
}

func (s *wsSIP) send(t *testing.T, msg string) {
	t.Helper()
	if err := wsutil.WriteClientText(s.c, []byte(msg)); err != nil {
		t.Fatalf("send over websocket: %v", err)
	}
}

// register sends a REGISTER for user as JsSIP does (Via WS with an
// .invalid host, Contact with transport=ws), answering one challenge with
// password, and returns the final status (0 when the connection closed).
func (s *wsSIP) register(t *testing.T, user, password string, expires int) int {
	t.Helper()
	uri := "sip:127.0.0.1"
	auth := ""
	for {
		s.cseq++
		s.send(t, fmt.Sprintf("REGISTER %s SIP/2.0\r\nVia: SIP/2.0/WS abcdef.invalid;branch=z9hG4bK%s\r\nMax-Forwards: 70\r\n"+
			"From: <sip:%s@127.0.0.1>;tag=%s\r\nTo: <sip:%s@127.0.0.1>\r\nCall-ID: %s\r\nCSeq: %d REGISTER\r\n"+
			"Contact: <sip:x7k2@abcdef.invalid;transport=ws>;+sip.instance=\"<urn:uuid:5f1e1c4e-0d3b-4a57-9b2a-3c2b%08d>\"\r\nExpires: %d\r\n%sContent-Length: 0\r\n\r\n",
			uri, sip.GenerateTagN(12), user, sip.GenerateTagN(8), user, s.callID, s.cseq, s.cseq, expires, auth))
		var res rawMessage
		select {
		case res = <-s.responses:
		case <-s.gone:
			return 0
		case <-time.After(5 * time.Second):
			t.Fatalf("register %s over websocket: no answer", user)
		}
		code, _ := strconv.Atoi(strings.Fields(res.start)[1])
		if code != 401 || password == "" || auth != "" {
			return code
		}
		ch, err := icdigest.ParseChallenge(res.header.Get("WWW-Authenticate"))
		if err != nil {
			t.Fatalf("register %s: %v", user, err)
		}
		cred, err := icdigest.Digest(ch, icdigest.Options{Method: "REGISTER", URI: uri, Username: user, Password: password})
		if err != nil {
			t.Fatal(err)
		}
		auth = "Authorization: " + cred.String() + "\r\n"
	}
}

// waitRequest waits for a request of method from callgate and answers it 200.
func (s *wsSIP) waitRequest(t *testing.T, method string, timeout time.Duration) bool {
	t.Helper()
	deadline := time.After(timeout)
	for {
		select {
		case m := <-s.requests:
			if !strings.HasPrefix(m.start, method+" ") {
				continue
			}
			var b strings.Builder
			b.WriteString("SIP/2.0 200 OK\r\n")
			for _, k := range []string{"Via", "From", "To", "Call-Id", "Cseq"} {
				for _, v := range m.header.Values(k) {
					fmt.Fprintf(&b, "%s: %s\r\n", k, v)
				}
			}
			b.WriteString("Content-Length: 0\r\n\r\n")
			s.send(t, b.String())
			return true
		case <-s.gone:
			return false
		case <-deadline:
			return false
		}
	}
}

// TestSIPOverWebSocket is the browser phone's signalling at /sip: a
// registration with digest over WebSocket, shown as such in the metrics
// and on the admin page and reached by callgate's own requests over the
// same connection; a wrong password refused and counted like any other;
// upgrades from a foreign Origin or without the subprotocol refused; a
// malformed message or a flood of connections affects nobody else; and
// the console's short-lived credential, which ends with the session.
func TestSIPOverWebSocket(t *testing.T) {
	cfg := newDaemonConfig(t, "")
	cfg.SIPExtra = "tcp_max_per_ip = 8"
	cfg.IvanovExtra = "role = \"admin\"\npassword_hash = \"" + passwordHash(t) + "\"\n"
	cfg.HTTPExtra = fmt.Sprintf("public_url = \"http://127.0.0.1:%d\"", cfg.HTTPPort)
	d := startDaemon(t, cfg)
	own := fmt.Sprintf("http://127.0.0.1:%d", cfg.HTTPPort)

	phone, err := dialWS(t, d, own)
	if err != nil {
		t.Fatalf("websocket from the console's origin: %v", err)
	}
	if code := phone.register(t, "103", "Phone103pass", 300); code != 200 {
		t.Fatalf("register over websocket: %d", code)
	}
	if v := d.metric(`callgate_registered_contacts_by_transport{transport="ws"}`); v != 1 {
		t.Fatalf("ws registrations in metrics: %v", v)
	}
	var admin struct {
		Phones []struct{ Extension, Transport string } `json:"phones"`
	}
	res, body := d.do(t, "GET", d.url("/api/v1/admin"), testToken)
	if res.StatusCode != 200 || decodeJSONBytes(body, &admin) != nil || len(admin.Phones) != 1 || admin.Phones[0].Transport != "ws" || admin.Phones[0].Extension != "103" {
		t.Fatalf("admin page phones: %d %s", res.StatusCode, body)
	}
	// callgate reaches the browser over its connection (OPTIONS keepalive).
	if !phone.waitRequest(t, "OPTIONS", 5*time.Second) {
		t.Fatal("no OPTIONS reached the websocket phone")
	}

	// A wrong password over WebSocket: 403, counted, like over UDP.
	failures := d.metric("callgate_sip_auth_failures_total")
	guess, _ := dialWS(t, d, own)
	if code := guess.register(t, "101", "wrong-password", 300); code != 403 {
		t.Fatalf("wrong password over websocket: %d", code)
	}
	if got := d.metric("callgate_sip_auth_failures_total"); got != failures+1 {
		t.Fatalf("auth failures %v -> %v", failures, got)
	}

	// Upgrades refused with a reason, before any SIP.
	var st ws.StatusError
	if _, err := dialWS(t, d, "https://evil.example"); !errors.As(err, &st) || st != 403 {
		t.Fatalf("foreign origin: %v", err)
	}
	if _, err := dialWS(t, d, fmt.Sprintf("http://127.0.0.1:%d", cfg.HTTPPort+1)); !errors.As(err, &st) || st != 403 {
		t.Fatalf("another port's origin: %v", err)
	}
	if _, err := dialWS(t, d, own, "chat"); !errors.As(err, &st) || st != 400 {
		t.Fatalf("no sip subprotocol: %v", err)
	}
	if v := d.metric("callgate_sip_ws_foreign_origin_total"); v != 2 {
		t.Fatalf("foreign origins counted: %v", v)
	}
	plain, err := http.Get(d.url("/sip"))
	if err != nil || plain.StatusCode != http.StatusUpgradeRequired {
		t.Fatalf("plain GET /sip: %v %v", err, plain)
	}
	plain.Body.Close()

	// Malformed SIP closes that connection only.
	bad, _ := dialWS(t, d, own)
	bad.send(t, "REGISTER sip:127.0.0.1 SIP/2.0\r\nVia: garbage\r\nCSeq: x\r\n\r\n")
	select {
	case <-bad.gone:
	case <-time.After(5 * time.Second):
		t.Fatal("a malformed message left the connection open")
	}
	d.waitFor("the parse error in the log", 5*time.Second, func() bool { return strings.Contains(d.log.String(), "failed to parse") })
	if strings.Contains(d.log.String(), "Via: garbage") {
		t.Fatal("the parse error is logged with the raw message")
	}

	// A flood of connections from one address: the cap holds with a 503,
	// and the registered phone keeps working.
	open, refused := 0, 0
	var flood []*wsSIP
	for range 30 {
		c, err := dialWS(t, d, own)
		switch {
		case err == nil:
			open++
			flood = append(flood, c)
		case errors.As(err, &st) && st == 503:
			refused++
		default:
			t.Fatalf("flood: %v", err)
		}
	}
	if open != 8-2 || refused != 30-open { // the phone and the guesser hold two
		t.Fatalf("flood: %d opened, %d refused, cap 8 with 2 held", open, refused)
	}
	if code := phone.register(t, "103", "Phone103pass", 300); code != 200 {
		t.Fatalf("registered phone during the flood: %d", code)
	}
	for _, c := range flood {
		c.c.Close()
	}
	d.waitMetric("callgate_sip_ws_connections", 2, 5*time.Second)

	// The console's own credential: minted for the session, never the SIP
	// password, and dead once the session logs out.
	client := apiLogin(t, d.url(""), "ivanov")
	var pass struct {
		Extension, URI, Username, Password string
		WS                                 string `json:"ws_url"`
	}
	req, _ := http.NewRequest("POST", d.url("/api/v1/phone"), nil)
	req.Header.Set("X-CSRF-Token", csrfOf(t, client, d))
	res, err = client.Do(req)
	if err != nil || res.StatusCode != 200 || decodeJSON(res, &pass) != nil {
		t.Fatalf("phone pass: %v %v", err, res)
	}
	res.Body.Close()
	if pass.Extension != "101" || pass.Username != "101" || pass.Password == "" || strings.Contains(pass.Password, "Phone101pass") ||
		pass.WS != "ws://127.0.0.1:"+strconv.Itoa(cfg.HTTPPort)+"/sip" || pass.URI != "sip:101@127.0.0.1" {
		t.Fatalf("pass = %+v", pass)
	}
	browser, _ := dialWS(t, d, own)
	if code := browser.register(t, "101", pass.Password, 300); code != 200 {
		t.Fatalf("register with the console's pass: %d", code)
	}
	// The employee's second line, chosen in the console; not another's.
	askLine := func(contentType, body string) (int, string) {
		req, _ := http.NewRequest("POST", d.url("/api/v1/phone"), strings.NewReader(body))
		req.Header.Set("X-CSRF-Token", csrfOf(t, client, d))
		req.Header.Set("Content-Type", contentType)
		res, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		var out struct {
			Extension, Password string
			Lines               []string
			Error               struct{ Code string }
		}
		if err := decodeJSON(res, &out); err != nil {
			t.Fatal(err)
		}
		if res.StatusCode == 200 {
			if !slices.Equal(out.Lines, []string{"101", "102"}) {
				t.Fatalf("lines offered: %v", out.Lines)
			}
			if out.Extension != "102" {
				t.Fatalf("asked for 102, got a pass for %s", out.Extension)
			}
			return 200, out.Password
		}
		return res.StatusCode, out.Error.Code
	}
	code, pass2 := askLine("application/json", `{"extension": "102"}`)
	if code != 200 {
		t.Fatalf("a pass for the second line: %d %s", code, pass2)
	}
	second, _ := dialWS(t, d, own)
	if code := second.register(t, "102", pass2, 300); code != 200 {
		t.Fatalf("register 102 with its pass: %d", code)
	}
	if code := second.register(t, "101", pass2, 300); code != 403 {
		t.Fatalf("102's pass registered 101: %d", code)
	}
	for _, bad := range []struct {
		contentType, body string
		code              int
		error             string
	}{
		{"application/json", `{"extension": "103"}`, 403, "not_your_line"},
		{"application/json", `{"extension": 102}`, 400, "bad_request"},
		{"application/json", `{"line": "102"}`, 400, "bad_request"},
		{"text/plain", `{"extension": "102"}`, 415, "unsupported_media_type"},
	} {
		if code, e := askLine(bad.contentType, bad.body); code != bad.code || e != bad.error {
			t.Fatalf("%s %s: %d %s, want %d %s", bad.contentType, bad.body, code, e, bad.code, bad.error)
		}
	}
	if res, _ := d.do(t, "POST", d.url("/api/v1/phone"), testToken); res.StatusCode != 403 {
		t.Fatalf("an API token got a phone pass: %d", res.StatusCode)
	}
	wsBindings := d.metric(`callgate_registered_contacts_by_transport{transport="ws"}`)
	req, _ = http.NewRequest("DELETE", d.url("/api/v1/session"), nil)
	req.Header.Set("X-CSRF-Token", csrfOf(t, client, d))
	if res, err := client.Do(req); err != nil || res.StatusCode != 204 {
		t.Fatalf("log out: %v %v", err, res)
	}
	// The registrations the session's passes made (101 and 102, their
	// connections still open) go with it; the phone registered with the
	// SIP password stays.
	d.waitFor("the passes' registrations gone at logout", 5*time.Second, func() bool {
		return d.metric(`callgate_registered_contacts_by_transport{transport="ws"}`) == wsBindings-2
	})
	after, _ := dialWS(t, d, own)
	if code := after.register(t, "101", pass.Password, 300); code != 403 {
		t.Fatalf("the pass still works after logging out: %d", code)
	}
	if strings.Contains(d.log.String(), pass.Password) {
		t.Fatal("the pass is in the log")
	}

	// A browser's registration dies with its connection (a reloaded or
	// closed tab): calls stop ringing it at once, not at its expiry.
	// Only the phone's are left now.
	if n := d.metric(`callgate_registered_contacts_by_transport{transport="ws"}`); n < 1 {
		t.Fatalf("%v WebSocket registrations before the phone's connection closes", n)
	}
	phone.c.Close()
	d.waitMetric(`callgate_registered_contacts_by_transport{transport="ws"}`, 0, 5*time.Second)
}

// csrfOf is the CSRF token of client's console session.
func csrfOf(t *testing.T, client *http.Client, d *daemon) string {
	t.Helper()
	res, err := client.Get(d.url("/api/v1/session"))
	if err != nil || res.StatusCode != 200 {
		t.Fatalf("session: %v %v", err, res)
	}
	defer res.Body.Close()
	var s struct{ CSRF string }
	if err := decodeJSON(res, &s); err != nil || s.CSRF == "" {
		t.Fatalf("session csrf: %v", err)
	}
	return s.CSRF
}

func decodeJSONBytes(b []byte, v any) error { return json.Unmarshal(b, v) }
