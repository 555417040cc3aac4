package registrar

import (
	"net"
	"net/netip"
	"testing"

	"callgate/sip/siptest"

	"github.com/emiago/sipgo/sip"
)

// FuzzHandle feeds any bytes that parse as a SIP request to the registrar:
// it must answer or stay silent, never panic, and never register a binding
// without a verified digest.
func FuzzHandle(f *testing.F) {
	siptest.AddMessages(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		msg, err := sip.NewParser().ParseSIP(data)
		if err != nil {
			return
		}
		req, ok := msg.(*sip.Request)
		if !ok {
			return
		}
		r := newTestRegistrar()
		res := r.Handle(req, phoneSrc)
		if res != nil && res.StatusCode == sip.StatusOK && r.Stats.Registers.Load() != 0 {
			// The corpus carries no valid credentials for the test
			// secrets: a 200 here means a registration without a
			// verified digest.
			t.Fatalf("registered without credentials: %s", res.StartLine())
		}
	})
}

// FuzzUDPFilter feeds any datagram to the UDP fast path, which parses it
// on the transport's reader goroutine: a panic there would kill the
// listener.
func FuzzUDPFilter(f *testing.F) {
	siptest.AddMessages(f)
	f.Add([]byte("REGISTER "))
	f.Add([]byte("REGISTER sip:x SIP/2.0\r\n\r\n"))
	f.Add([]byte{0, 1, 2, 3})
	r := newTestRegistrar()
	pc := &discardConn{}
	filter := r.UDPFilter(func(string) net.PacketConn { return pc })
	props := sip.TransportReadProps{Transport: "UDP",
		LocalAddr:  net.UDPAddrFromAddrPort(netip.MustParseAddrPort("192.168.1.1:5060")),
		RemoteAddr: net.UDPAddrFromAddrPort(netip.MustParseAddrPort("192.168.1.20:5062"))}
	f.Fuzz(func(t *testing.T, data []byte) {
		out, err := filter(props, data)
		if err != nil {
			t.Fatalf("filter error: %v", err)
		}
		if out != nil && string(out) != string(data) {
			t.Fatal("filter changed a datagram it passed on")
		}
	})
}
