package b2bua

import (
	"net/netip"
	"testing"
)

func TestPeerSet(t *testing.T) {
	b := &B2BUA{}
	c1, c2 := &call{b: b}, &call{b: b}
	phone := netip.MustParseAddrPort("127.0.0.1:40001")
	b.peers.hold(c1, "127.0.0.1:40001")
	b.peers.hold(c1, "127.0.0.1:40001") // a second INVITE to the same phone
	b.peers.hold(c2, "[::ffff:127.0.0.1]:40001")
	b.peers.hold(c2, "vpbx.example:5060") // not an address: ignored
	if !b.PeerAt(phone) {
		t.Fatal("a phone with two calls is not a peer")
	}
	b.peers.drop(c1)
	if !b.PeerAt(phone) {
		t.Fatal("the phone lost its second call's leg with the first call")
	}
	b.peers.drop(c2)
	b.peers.drop(c2)
	if b.PeerAt(phone) || len(b.peers.count) != 0 || len(b.peers.byCall) != 0 {
		t.Fatalf("peers left after every call ended: %v %v", b.peers.count, b.peers.byCall)
	}
}
