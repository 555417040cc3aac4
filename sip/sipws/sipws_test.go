package sipws

import (
	"bufio"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"callgate/sip/connlimit"
)

// TestEntryHandsOverTheUpgrade: an upgrade that passes every check reaches
// Accept with the request replayed first (sipgo performs the handshake
// from it) and the client as the remote address; the rest are refused
// with a status and a reason before anything is taken over.
func TestEntryHandsOverTheUpgrade(t *testing.T) {
	e := New(Config{
		Origin:  OwnOrigin(func(*http.Request) bool { return false }, ""),
		Client:  func(r *http.Request) string { return "192.0.2.7" }, // as a trusted proxy would name it
		Limiter: connlimit.New(connlimit.Config{MaxPerIP: 1}),
	})
	srv := httptest.NewServer(e)
	defer srv.Close()
	defer e.Close()
	host := strings.TrimPrefix(srv.URL, "http://")
	upgrade := func(extra string) (net.Conn, string) {
		c, err := net.Dial("tcp", host)
		if err != nil {
			t.Fatal(err)
		}
		req := "GET /sip HTTP/1.1\r\nHost: " + host + "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n" +
			"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n" + extra + "\r\n"
		if _, err := c.Write([]byte(req)); err != nil {
			t.Fatal(err)
		}
		return c, req
	}
	status := func(c net.Conn) string {
		_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
		line, _ := bufio.NewReader(c).ReadString('\n')
		return strings.TrimSpace(line)
	}
	for _, tc := range []struct{ extra, want string }{
		{"Origin: http://" + host + "\r\n", "HTTP/1.1 400"},                                 // no subprotocol
		{"Sec-WebSocket-Protocol: sip\r\nOrigin: https://evil.example\r\n", "HTTP/1.1 403"}, // a foreign page
	} {
		c, _ := upgrade(tc.extra)
		if got := status(c); !strings.HasPrefix(got, tc.want) {
			t.Errorf("%q: %q, want %s", tc.extra, got, tc.want)
		}
		c.Close()
	}
	res, err := http.Get(srv.URL + "/sip")
	if err != nil || res.StatusCode != http.StatusUpgradeRequired {
		t.Fatalf("plain GET: %v %v", res, err)
	}
	res.Body.Close()

	c, req := upgrade("Sec-WebSocket-Protocol: sip\r\nOrigin: http://" + host + "\r\n")
	defer c.Close()
	got, err := e.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer got.Close()
	if got.RemoteAddr().(*net.TCPAddr).IP.String() != "192.0.2.7" {
		t.Fatalf("remote address %s, want the client's", got.RemoteAddr())
	}
	buf := make([]byte, len(req)+100)
	n, _ := got.Read(buf)
	if first := strings.SplitN(string(buf[:n]), "\r\n", 2)[0]; first != "GET /sip HTTP/1.1" || !strings.Contains(string(buf[:n]), "Sec-Websocket-Protocol: sip") {
		t.Fatalf("replayed request:\n%s", buf[:n])
	}
	// The client holds its one connection: the next is refused with 503.
	c2, _ := upgrade("Sec-WebSocket-Protocol: sip\r\n")
	defer c2.Close()
	if got := status(c2); !strings.HasPrefix(got, "HTTP/1.1 503") {
		t.Fatalf("over the cap: %q", got)
	}
	if e.Stats.Upgraded.Load() != 1 || e.Stats.Origin.Load() != 1 || e.Stats.BadRequest.Load() != 2 || e.Stats.Refused.Load() != 1 {
		t.Fatalf("stats: upgraded %d origin %d bad %d refused %d", e.Stats.Upgraded.Load(), e.Stats.Origin.Load(), e.Stats.BadRequest.Load(), e.Stats.Refused.Load())
	}
}
