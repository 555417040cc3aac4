package b2bua

import (
	"net/netip"
	"sync"
)

// peerSet records, per remote address, the calls with a leg there (the
// source of the INVITE that started the call, every phone and VPBX address
// callgate sent an INVITE to), so that a connection limiter keeps a TCP
// connection carrying a dialog open while the call lasts.
type peerSet struct {
	mu     sync.Mutex
	byCall map[*call][]netip.AddrPort
	count  map[netip.AddrPort]int
}

// hold notes that c has a leg at addr (IP:port); anything else is ignored.
func (p *peerSet) hold(c *call, addr string) {
	ap, err := netip.ParseAddrPort(addr)
	if err != nil {
		return
	}
	ap = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.byCall == nil {
		p.byCall, p.count = map[*call][]netip.AddrPort{}, map[netip.AddrPort]int{}
	}
	for _, a := range p.byCall[c] {
		if a == ap {
			return
		}
	}
	p.byCall[c] = append(p.byCall[c], ap)
	p.count[ap]++
}

// drop forgets every leg of c.
func (p *peerSet) drop(c *call) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, a := range p.byCall[c] {
		if p.count[a]--; p.count[a] <= 0 {
			delete(p.count, a)
		}
	}
	delete(p.byCall, c)
}

func (p *peerSet) has(addr netip.AddrPort) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.count[netip.AddrPortFrom(addr.Addr().Unmap(), addr.Port())] > 0
}

// PeerAt reports whether a call in progress has a leg whose peer is at addr
// (IP:port): a request came from there or was sent there.
func (b *B2BUA) PeerAt(addr netip.AddrPort) bool { return b.peers.has(addr) }
