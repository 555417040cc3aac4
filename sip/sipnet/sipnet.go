// Package sipnet holds the address rules every SIP part of callgate
// applies the same way: which networks a request is admitted from, and
// which of callgate's sockets a request over UDP leaves from.
package sipnet

import (
	"fmt"
	"net"
	"net/netip"

	"github.com/emiago/sipgo/sip"
)

// Networks is a list of networks requests are admitted from (phones'
// networks, the VPBX's trusted sources).
type Networks []netip.Prefix

// Contains reports whether ip is in one of the networks. An IPv4 address
// seen on a dual-stack socket (::ffff:a.b.c.d) counts as itself: the
// networks are configured as IPv4.
func (n Networks) Contains(ip netip.Addr) bool {
	ip = ip.Unmap()
	for _, p := range n {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// ContainsSource reports whether a request's source, "IP:port" as
// sip.Request.Source gives it, is in one of the networks; a source that
// cannot be parsed is in none.
func (n Networks) ContainsSource(src string) bool {
	ap, err := netip.ParseAddrPort(src)
	if err != nil {
		return false
	}
	return n.Contains(ap.Addr())
}

// SendFrom makes a request over UDP leave from local ("IP:port", one of
// callgate's listening sockets), so that NAT bindings and the peer's idea
// of callgate's address stay right; requests over other transports are
// left alone.
func SendFrom(req *sip.Request, local string) error {
	if !TransportOf(req.Transport()).Datagram() {
		return nil
	}
	host, port, err := sip.ParseAddr(local)
	if err != nil {
		return fmt.Errorf("send from %q: %w", local, err)
	}
	req.Laddr = sip.Addr{IP: net.ParseIP(host), Port: port}
	return nil
}
