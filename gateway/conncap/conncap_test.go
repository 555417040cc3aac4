package conncap

import (
	"net"
	"net/netip"
	"testing"
	"time"
)

// dial opens n connections to l from the loopback address from.
func dial(t *testing.T, l net.Listener, from string, n int) []net.Conn {
	t.Helper()
	var out []net.Conn
	for range n {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}, Timeout: 2 * time.Second}
		c, err := d.Dial("tcp", l.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		out = append(out, c)
	}
	return out
}

// closedByPeer reports whether the server side closed c.
func closedByPeer(c net.Conn) bool {
	_ = c.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
	_, err := c.Read(make([]byte, 1))
	return err != nil && !isTimeout(err)
}

func isTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}

// One client over its cap has its extra connections closed at once;
// another client, and a proxy, are not affected; a slot comes back when a
// connection closes.
func TestCapPerClient(t *testing.T) {
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	proxy := netip.MustParseAddr("127.0.0.9")
	l := Wrap(inner, 3, func(a netip.Addr) bool { return a == proxy }, nil)
	defer l.Close()
	accepted := make(chan net.Conn, 100)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			accepted <- c
		}
	}()
	flood := dial(t, l, "127.0.0.2", 5)
	var server []net.Conn
	for range 3 {
		select {
		case c := <-accepted:
			server = append(server, c)
		case <-time.After(2 * time.Second):
			t.Fatal("the first three connections were not accepted")
		}
	}
	refused := 0
	for _, c := range flood {
		if closedByPeer(c) {
			refused++
		}
	}
	if refused != 2 || l.Refused() != 2 || l.Open() != 3 {
		t.Fatalf("refused %d (counted %d), open %d; want 2 refused, 3 open", refused, l.Refused(), l.Open())
	}
	for _, from := range []string{"127.0.0.3", "127.0.0.9", "127.0.0.9", "127.0.0.9", "127.0.0.9"} {
		c := dial(t, l, from, 1)[0]
		select {
		case s := <-accepted:
			server = append(server, s)
		case <-time.After(2 * time.Second):
			t.Fatalf("a connection from %s was not accepted", from)
		}
		if closedByPeer(c) {
			t.Fatalf("a connection from %s was closed", from)
		}
	}
	server[0].Close() // the flooding client's first
	server[0].Close() // twice: one slot back, not two
	dial(t, l, "127.0.0.2", 2)
	select {
	case <-accepted:
	case <-time.After(2 * time.Second):
		t.Fatal("a freed slot was not given back")
	}
	select {
	case <-accepted:
		t.Fatal("a closed connection gave back more than its slot")
	case <-time.After(300 * time.Millisecond):
	}
}
