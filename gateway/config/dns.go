package config

import (
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"

	"callgate/sip/sipnet"
)

// DNS configures how host names in [upstream] are looked up.
type DNS struct {
	// Servers are the DNS servers asked, in order: "IP" or "IP:PORT".
	// Empty: the nameservers of /etc/resolv.conf. /etc/hosts is read
	// first either way.
	Servers []DNSServer `toml:"servers"`
}

// DNSServer is a DNS server's address, written "IP" (port 53) or
// "IP:PORT"; see the note on typed values.
type DNSServer struct {
	Addr netip.AddrPort
	text string
	err  error
}

func parseDNSServer(s string) DNSServer {
	d := DNSServer{text: s}
	if ip, err := netip.ParseAddr(s); err == nil && ip.Zone() == "" {
		d.Addr = netip.AddrPortFrom(ip, 53)
		return d
	}
	ap, err := netip.ParseAddrPort(s)
	switch {
	case err != nil || ap.Addr().Zone() != "":
		d.err = fmt.Errorf("%q is not IP or IP:PORT", s)
	case ap.Port() == 0:
		d.err = fmt.Errorf("port must not be 0")
	default:
		d.Addr = ap
	}
	return d
}

// UnmarshalText parses the address; see the note on typed values.
func (d *DNSServer) UnmarshalText(b []byte) error { *d = parseDNSServer(string(b)); return nil }

// MarshalText writes the address.
func (d DNSServer) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// String is "IP:PORT", or the text as written when it is not valid.
func (d DNSServer) String() string {
	if d.err != nil || !d.Addr.IsValid() {
		return d.text
	}
	return d.Addr.String()
}

// Addrs are the servers' addresses.
func (n DNS) Addrs() []netip.AddrPort {
	out := make([]netip.AddrPort, 0, len(n.Servers))
	for _, s := range n.Servers {
		out = append(out, s.Addr)
	}
	return out
}

// UpstreamAddr is where the VPBX is (upstream.registrar, upstream.proxy):
// "transport:host:port", "host:port", "transport:host" or a bare host,
// where host is a DNS name or an IP address. Without a port a name is
// looked up as SRV records, then A/AAAA (RFC 3263); without a transport
// the SRV records choose it (else udp).
type UpstreamAddr struct {
	Transport sipnet.Transport // "" when not written
	Host      string           // a DNS name (lower case, no trailing dot) or an IP address
	Port      uint16           // 0 when not written
	// IP is the address when Host is one.
	IP   netip.Addr
	text string
	err  error
}

// ParseUpstreamAddr reads an upstream address; the error says why it is
// not one.
func ParseUpstreamAddr(s string) (UpstreamAddr, error) {
	u := parseUpstreamAddr(s)
	return u, u.err
}

func parseUpstreamAddr(s string) UpstreamAddr {
	u := UpstreamAddr{text: s}
	if s == "" {
		return u // not set
	}
	rest := s
	if tr, hp, ok := strings.Cut(s, ":"); ok {
		t, err := sipnet.ParseTransport(tr)
		switch {
		case err == nil:
			u.Transport, rest = t, hp
		case isTransportName(tr):
			u.err = err
			return u
		}
	}
	host, port := rest, ""
	if h, p, err := net.SplitHostPort(rest); err == nil {
		host, port = h, p
	} else if strings.HasPrefix(rest, "[") && strings.HasSuffix(rest, "]") {
		host = rest[1 : len(rest)-1]
	}
	if port != "" {
		n, err := strconv.ParseUint(port, 10, 16)
		if err != nil || n == 0 {
			u.err = fmt.Errorf("port %q is not 1-65535", port)
			return u
		}
		u.Port = uint16(n)
	}
	if ip, err := netip.ParseAddr(host); err == nil {
		if ip.Zone() != "" || ip.IsUnspecified() {
			u.err = fmt.Errorf("%q is not an address a request can be sent to", host)
			return u
		}
		u.Host, u.IP = ip.Unmap().String(), ip.Unmap()
		return u
	}
	if !validHostName(host) {
		u.err = fmt.Errorf("%q is not a host name or IP address", host)
		return u
	}
	u.Host = strings.ToLower(strings.TrimSuffix(host, "."))
	return u
}

// isTransportName reports whether s names a SIP transport, supported or
// not ("tls:host" is a transport callgate lacks, not a host "tls").
func isTransportName(s string) bool {
	switch strings.ToLower(s) {
	case "udp", "tcp", "tls", "sctp", "ws", "wss":
		return true
	}
	return false
}

// validHostName reports whether s is a DNS host name: dot-separated
// labels of letters, digits, '-' and '_' (not at a label's ends for '-'),
// at most 63 characters each and 253 in all, an optional trailing dot, and
// a last label that is not all digits (that would be a mistyped IPv4
// address).
func validHostName(s string) bool {
	s = strings.TrimSuffix(s, ".")
	if s == "" || len(s) > 253 {
		return false
	}
	labels := strings.Split(s, ".")
	for _, l := range labels {
		if l == "" || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
			return false
		}
		for i := 0; i < len(l); i++ {
			c := l[i]
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return false
			}
		}
	}
	last := labels[len(labels)-1]
	return strings.Trim(last, "0123456789") != ""
}

// UnmarshalText parses the address; see the note on typed values.
func (u *UpstreamAddr) UnmarshalText(b []byte) error { *u = parseUpstreamAddr(string(b)); return nil }

// MarshalText writes the address as a configuration file does.
func (u UpstreamAddr) MarshalText() ([]byte, error) { return []byte(u.String()), nil }

// String is the address as a configuration writes it
// ("udp:vpbx.example.ru", "udp:192.0.2.1:5060"), or the text as written
// when it is not valid.
func (u UpstreamAddr) String() string {
	if u.err != nil || !u.IsSet() {
		return u.text
	}
	s := u.Host
	if u.Port != 0 {
		s = net.JoinHostPort(u.Host, strconv.Itoa(int(u.Port)))
	} else if u.IP.Is6() {
		s = "[" + s + "]"
	}
	if u.Transport != "" {
		s = string(u.Transport) + ":" + s
	}
	return s
}

// IsSet reports whether an address is configured.
func (u UpstreamAddr) IsSet() bool { return u.Host != "" && u.err == nil }

// Source is one of the VPBX's trusted sources: a network ("81.88.86.0/24"),
// an address, or a host name whose addresses are trusted for as long as
// DNS gives them.
type Source struct {
	Prefix netip.Prefix // a network or an address
	Host   string       // a host name (lower case, no trailing dot)
	text   string
	err    error
}

func parseSource(s string) Source {
	src := Source{text: s}
	if p, err := netip.ParsePrefix(s); err == nil {
		src.Prefix = p.Masked()
		return src
	}
	if ip, err := netip.ParseAddr(s); err == nil && ip.Zone() == "" {
		src.Prefix = netip.PrefixFrom(ip.Unmap(), ip.Unmap().BitLen())
		return src
	}
	if validHostName(s) {
		src.Host = strings.ToLower(strings.TrimSuffix(s, "."))
		return src
	}
	src.err = fmt.Errorf("%q is not a network, an IP address or a host name", s)
	return src
}

// UnmarshalText parses the source; see the note on typed values.
func (s *Source) UnmarshalText(b []byte) error { *s = parseSource(string(b)); return nil }

// MarshalText writes the source.
func (s Source) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// String is the network or the name, or the text as written when it is
// not valid.
func (s Source) String() string {
	switch {
	case s.err != nil:
		return s.text
	case s.Host != "":
		return s.Host
	}
	return s.Prefix.String()
}

// Sources are upstream.trusted_sources.
type Sources []Source

// Prefixes are the sources given as networks or addresses.
func (ss Sources) Prefixes() []netip.Prefix {
	var out []netip.Prefix
	for _, s := range ss {
		if s.Prefix.IsValid() {
			out = append(out, s.Prefix)
		}
	}
	return out
}

// Hosts are the sources given as host names.
func (ss Sources) Hosts() []string {
	var out []string
	for _, s := range ss {
		if s.Host != "" {
			out = append(out, s.Host)
		}
	}
	return out
}

// Target is where requests to the VPBX go: the outbound proxy when one is
// set, else the registrar (not set when neither is).
func (u Upstream) Target() UpstreamAddr {
	if u.Proxy.IsSet() {
		return u.Proxy
	}
	return u.Registrar
}
