package e2e

import (
	"fmt"
	"net"
	"sync"
	"testing"
)

// Ports a test hands to callgate or to a peer it starts are taken from
// below the kernel's ephemeral range (32768–60999 on Debian): a port the
// test found free there can be taken, before callgate binds it, by the
// local end of any outgoing connection on the machine — which made a
// daemon fail to start with "address already in use". Below that range
// only programs that ask for a port by number compete, and a counter keeps
// the tests of this process apart. The relay's own unit tests use
// 11000–18099 and the demo 31000–31999, and tests write 309xx and 311xx
// into SDP as peers' media addresses without binding them, so these ranges
// stay clear of all of them.
const (
	singleLo, singleHi = 19000, 22999 // SIP, HTTP, sipp and other single ports
	blockLo, blockHi   = 23000, 30799 // RTP ranges
)

var ports struct {
	sync.Mutex
	single, block int
}

// freePort is a port free for both UDP and TCP on 127.0.0.1, not handed
// out before by this process unless the whole range has gone round.
func freePort(t *testing.T) int {
	t.Helper()
	ports.Lock()
	defer ports.Unlock()
	for range singleHi - singleLo + 1 {
		p := singleLo + ports.single
		ports.single = (ports.single + 1) % (singleHi - singleLo + 1)
		if bindable(p) {
			return p
		}
	}
	t.Fatalf("no free port in %d-%d", singleLo, singleHi)
	return 0
}

// portBlock is the first of n consecutive ports free for UDP on
// 127.0.0.1, for a media.rtp_ports range.
func portBlock(t *testing.T, n int) int {
	t.Helper()
	ports.Lock()
	defer ports.Unlock()
	span := blockHi - blockLo + 1
	for tries := 0; tries < span/n+1; tries++ {
		if ports.block+n > span {
			ports.block = 0
		}
		first := blockLo + ports.block
		ports.block += n
		if blockBindable(first, n) {
			return first
		}
	}
	t.Fatalf("no %d free ports in a row in %d-%d", n, blockLo, blockHi)
	return 0
}

func bindable(port int) bool {
	pc, err := net.ListenPacket("udp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		return false
	}
	defer pc.Close()
	ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		return false
	}
	ln.Close()
	return true
}

func blockBindable(first, n int) bool {
	for p := first; p < first+n; p++ {
		pc, err := net.ListenPacket("udp", fmt.Sprintf("127.0.0.1:%d", p))
		if err != nil {
			return false
		}
		pc.Close()
	}
	return true
}
