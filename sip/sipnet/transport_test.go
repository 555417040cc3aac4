package sipnet

import (
	"net"
	"slices"
	"testing"

	"github.com/emiago/sipgo"
)

// The transport table answers everything that differs between transports.
func TestTransportTable(t *testing.T) {
	if got := Transports(); !slices.Equal(got, []Transport{UDP, TCP}) {
		t.Fatalf("Transports() = %v", got)
	}
	for _, c := range []struct {
		name           string
		want           Transport
		datagram       bool
		via, param, nw string
	}{
		{"udp", UDP, true, "UDP", "", "udp"},
		{"UDP", UDP, true, "UDP", "", "udp"},
		{"tcp", TCP, false, "TCP", "tcp", "tcp"},
		{"Tcp", TCP, false, "TCP", "tcp", "tcp"},
	} {
		tr, err := ParseTransport(c.name)
		if err != nil || tr != c.want {
			t.Fatalf("ParseTransport(%q) = %q, %v", c.name, tr, err)
		}
		if tr.Datagram() != c.datagram || tr.Via() != c.via || tr.URIParam() != c.param || tr.Network() != c.nw {
			t.Errorf("%s: datagram %v via %q param %q network %q", tr, tr.Datagram(), tr.Via(), tr.URIParam(), tr.Network())
		}
	}
	for _, bad := range []string{"tls", "ws", "wss", "sctp", "", "udp "} {
		if tr, err := ParseTransport(bad); err == nil {
			t.Errorf("ParseTransport(%q) = %q, want an error", bad, tr)
		}
	}
	if TransportOf("UDP") != UDP || TransportOf("tcp") != TCP || TransportOf("TLS").Datagram() {
		t.Errorf("TransportOf: %q %q", TransportOf("UDP"), TransportOf("tcp"))
	}
}

// Only stream transports are served from a listener; asking to serve UDP
// that way is a clear error, not a silent no-op.
func TestServeNeedsAStreamTransport(t *testing.T) {
	ua, err := sipgo.NewUA()
	if err != nil {
		t.Fatal(err)
	}
	defer ua.Close()
	srv, err := sipgo.NewServer(ua)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	for _, tr := range []Transport{UDP, "tls"} {
		if err := tr.Serve(srv, ln); err == nil {
			t.Errorf("%s.Serve: no error", tr)
		}
	}
	done := make(chan error, 1)
	go func() { done <- TCP.Serve(srv, ln) }()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatalf("dial the served listener: %v", err)
	}
	c.Close()
	ln.Close()
	if err := <-done; err == nil {
		t.Error("TCP.Serve returned no error after its listener closed")
	}
}
