// Package sipnet holds the address rules every SIP part of callgate
// applies the same way: which networks a request is admitted from, and
// which of callgate's sockets a request over UDP leaves from.
package sipnet

import (
	"fmt"
	"net"
	"net/netip"
	"sync/atomic"

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

// NetworkSet is a set of networks that may change while callgate runs:
// the VPBX's trusted sources, whose host names are looked up again when
// their DNS records expire. Every request reads it, so readers take no
// lock: a change swaps the whole list.
type NetworkSet struct {
	p atomic.Pointer[Networks]
}

// NewNetworkSet is a set holding networks.
func NewNetworkSet(networks Networks) *NetworkSet {
	s := &NetworkSet{}
	s.Store(networks)
	return s
}

// Load is the current list; the caller must not change it.
func (s *NetworkSet) Load() Networks {
	if s == nil {
		return nil
	}
	if p := s.p.Load(); p != nil {
		return *p
	}
	return nil
}

// Store replaces the list; the set keeps networks, which the caller must
// not change afterwards.
func (s *NetworkSet) Store(networks Networks) { s.p.Store(&networks) }

// Contains reports whether ip is in one of the networks (see
// Networks.Contains); a nil set contains nothing.
func (s *NetworkSet) Contains(ip netip.Addr) bool { return s.Load().Contains(ip) }

// ContainsSource is Networks.ContainsSource on the current list.
func (s *NetworkSet) ContainsSource(src string) bool { return s.Load().ContainsSource(src) }

// Target is one address a request can be sent to, with its transport: an
// element of the ordered list RFC 3263 makes of a SIP server's name.
type Target struct {
	Transport Transport
	Addr      netip.AddrPort
}

// String is "transport:IP:port", as a configuration writes it.
func (t Target) String() string { return string(t.Transport) + ":" + t.Addr.String() }
