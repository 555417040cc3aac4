package b2bua

import (
	"net"
	"sync"
	"time"

	"callgate/sip/sipnet"

	"github.com/emiago/sipgo/sip"
)

// udpMax is RFC 3261 §18.1.1's limit for a request over UDP when the path
// MTU is unknown (1500 - 200): a larger one must go over a congestion
// controlled transport, TCP.
const udpMax = 1300

// viaAllowance is room for the Via sipgo adds when it sends the request.
const viaAllowance = 120

func init() {
	// sipgo refuses to write any UDP message over 1300 bytes, responses
	// included (ErrUDPMTUCongestion), which RFC 3261 does not ask: a
	// response goes back the way the request came, and a large request to
	// a peer without TCP is better sent fragmented than not at all. Large
	// requests are moved to TCP by fitTransport before they get there.
	if sip.UDPMTUSize < 65535+200 {
		sip.UDPMTUSize = 65535 + 200
	}
}

// fitTransport moves an INVITE bigger than udpMax from UDP to TCP when the
// destination takes TCP connections (every RFC 3261 UA must; many phones
// have it turned off, and then the request stays on UDP).
func (b *B2BUA) fitTransport(req *sip.Request) {
	if !sipnet.TransportOf(req.Transport()).Datagram() {
		return
	}
	size := len(req.String()) + viaAllowance
	if req.Contact() == nil {
		size += len(b.cfg.Contact.String()) + 2
	}
	if size <= udpMax {
		return
	}
	dest := req.Destination()
	if !b.tcpProbe.accepts(dest) {
		b.log.Debug("large request stays on UDP: no TCP at the destination", "destination", dest, "bytes", size)
		return
	}
	req.SetTransport(sipnet.TCP.Via())
	req.Laddr = sip.Addr{} // the UDP listener's address means nothing to a TCP dial
}

// tcpProbe remembers for a while which destinations accept TCP, so that a
// phone without TCP costs one connection attempt a minute, not one per call.
type tcpProbe struct {
	mu    sync.Mutex
	known map[string]probeResult
}

type probeResult struct {
	ok bool
	at time.Time
}

const (
	probeTTL     = time.Minute
	probeTimeout = 500 * time.Millisecond
)

func (p *tcpProbe) accepts(dest string) bool {
	now := time.Now()
	p.mu.Lock()
	r, ok := p.known[dest]
	p.mu.Unlock()
	if ok && now.Sub(r.at) < probeTTL {
		return r.ok
	}
	conn, err := net.DialTimeout(sipnet.TCP.Network(), dest, probeTimeout)
	if err == nil {
		conn.Close()
	}
	p.mu.Lock()
	if p.known == nil || len(p.known) > 4096 {
		p.known = map[string]probeResult{}
	}
	p.known[dest] = probeResult{ok: err == nil, at: now}
	p.mu.Unlock()
	return err == nil
}
