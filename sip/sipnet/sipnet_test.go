package sipnet

import (
	"net/netip"
	"testing"

	"github.com/emiago/sipgo/sip"
)

func TestNetworks(t *testing.T) {
	n := Networks{netip.MustParsePrefix("192.168.1.0/24"), netip.MustParsePrefix("10.0.0.7/32")}
	for src, want := range map[string]bool{
		"192.168.1.5:5060":          true,
		"[::ffff:192.168.1.5]:5060": true, // IPv4 on a dual-stack socket
		"10.0.0.7:5070":             true,
		"10.0.0.8:5070":             false,
		"192.168.2.1:5060":          false,
		"192.168.1.5":               false, // no port: not a source
		"":                          false,
		"[2001:db8::1]:5060":        false,
	} {
		if got := n.ContainsSource(src); got != want {
			t.Errorf("%q: %v, want %v", src, got, want)
		}
	}
	if (Networks{}).Contains(netip.MustParseAddr("127.0.0.1")) {
		t.Error("no networks admit everyone")
	}
}

func TestSendFrom(t *testing.T) {
	req := sip.NewRequest(sip.OPTIONS, sip.Uri{Scheme: "sip", Host: "192.168.1.5", Port: 5060})
	req.SetTransport("UDP")
	if err := SendFrom(req, "192.168.1.1:5070"); err != nil || req.Laddr.String() != "192.168.1.1:5070" {
		t.Fatalf("udp: %v %v", req.Laddr, err)
	}
	bad := sip.NewRequest(sip.OPTIONS, sip.Uri{Scheme: "sip", Host: "192.168.1.5"})
	bad.SetTransport("udp")
	if err := SendFrom(bad, ""); err == nil || bad.Laddr.IP != nil {
		t.Fatalf("no local address: %v %v", bad.Laddr, err)
	}
	tcp := sip.NewRequest(sip.OPTIONS, sip.Uri{Scheme: "sip", Host: "192.168.1.5"})
	tcp.SetTransport("TCP")
	if err := SendFrom(tcp, "192.168.1.1:5070"); err != nil || tcp.Laddr.IP != nil {
		t.Fatalf("tcp: %v %v", tcp.Laddr, err)
	}
}

// A NetworkSet is read while another goroutine replaces it (run with
// -race); a nil set trusts nobody.
func TestNetworkSet(t *testing.T) {
	var none *NetworkSet
	if none.Contains(netip.MustParseAddr("127.0.0.1")) || none.Load() != nil {
		t.Fatal("a nil set contains something")
	}
	s := NewNetworkSet(Networks{netip.MustParsePrefix("10.0.0.0/8")})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range 1000 {
			s.Store(Networks{netip.MustParsePrefix("10.0.0.0/8"), netip.PrefixFrom(netip.AddrFrom4([4]byte{192, 168, 0, byte(i)}), 32)})
		}
	}()
	for range 1000 {
		if !s.ContainsSource("10.1.2.3:5060") {
			t.Fatal("a fixed network vanished during an update")
		}
	}
	<-done
	if !s.Contains(netip.MustParseAddr("192.168.0.231")) || s.Contains(netip.MustParseAddr("192.168.0.232")) {
		t.Fatalf("last store not seen: %v", s.Load())
	}
	if got := (Target{Transport: TCP, Addr: netip.MustParseAddrPort("[::1]:5060")}).String(); got != "tcp:[::1]:5060" {
		t.Fatalf("Target.String %q", got)
	}
}
