package config

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"callgate/sip/sipnet"
)

// The typed values below are parsed once, when the file is decoded. A value
// that does not parse keeps its text and the reason, and validation reports
// it with the key's line and hint next to every other problem of the file
// (a decoding error would stop at the first). Parse and Load never return a
// configuration holding such a value.

// ListenAddr is a SIP listen address, written "transport:IP:PORT"
// ("udp:0.0.0.0:5060"; the transport defaults to udp).
type ListenAddr struct {
	Transport sipnet.Transport
	Addr      netip.AddrPort
	text      string
	err       error
}

func parseListen(s string) ListenAddr {
	l := ListenAddr{text: s}
	if s == "" {
		return l // not set
	}
	tr, hostport, ok := strings.Cut(s, ":")
	t, err := sipnet.ParseTransport(tr)
	switch {
	case ok && err == nil:
	case ok && (tr == "tls" || tr == "ws" || tr == "wss"):
		l.err = err
		return l
	default:
		t, hostport = sipnet.UDP, s
	}
	ap, err := netip.ParseAddrPort(hostport)
	switch {
	case err != nil:
		l.err = fmt.Errorf("%q is not IP:PORT", hostport)
	case ap.Port() == 0:
		l.err = fmt.Errorf("port must not be 0")
	default:
		l.Transport, l.Addr = t, ap
	}
	return l
}

// UnmarshalText parses the address; see the note on typed values.
func (l *ListenAddr) UnmarshalText(b []byte) error { *l = parseListen(string(b)); return nil }

// MarshalText writes the address as a configuration file does.
func (l ListenAddr) MarshalText() ([]byte, error) { return []byte(l.String()), nil }

// String is "transport:IP:PORT", or the text as written when it is not valid.
func (l ListenAddr) String() string {
	if l.err != nil || !l.IsSet() {
		return l.text
	}
	return string(l.Transport) + ":" + l.Addr.String()
}

// IsSet reports whether an address is configured.
func (l ListenAddr) IsSet() bool { return l.Addr.IsValid() }

// PortRange is a range of UDP ports, written "20000-20999".
type PortRange struct {
	Lo, Hi int
	text   string
	err    error
}

func parsePortRange(s string) PortRange {
	r := PortRange{text: s}
	a, b, ok := strings.Cut(s, "-")
	lo, err1 := strconv.Atoi(strings.TrimSpace(a))
	hi, err2 := strconv.Atoi(strings.TrimSpace(b))
	switch {
	case !ok || err1 != nil || err2 != nil:
		r.err = fmt.Errorf("%q is not LOW-HIGH", s)
	case lo < 1024 || hi > 65535:
		r.err = fmt.Errorf("ports must be within 1024-65535")
	case lo%2 != 0:
		r.err = fmt.Errorf("the low port must be even (RTP even, RTCP odd)")
	case hi-lo < 3:
		r.err = fmt.Errorf("the range must hold at least two RTP/RTCP pairs")
	default:
		r.Lo, r.Hi = lo, hi
	}
	return r
}

// UnmarshalText parses the range; see the note on typed values.
func (r *PortRange) UnmarshalText(b []byte) error { *r = parsePortRange(string(b)); return nil }

// MarshalText writes the range as a configuration file does.
func (r PortRange) MarshalText() ([]byte, error) { return []byte(r.String()), nil }

// String is "LOW-HIGH", or the text as written when it is not valid.
func (r PortRange) String() string {
	if r.err != nil {
		return r.text
	}
	return fmt.Sprintf("%d-%d", r.Lo, r.Hi)
}

// Size is a number of bytes, written "512MiB", "1GiB", "100MB" or a
// plain number.
type Size struct {
	Bytes uint64
	text  string
	err   error
}

func parseSize(text string) Size {
	s := strings.TrimSpace(text)
	mult := uint64(1)
	for _, u := range []struct {
		suffix string
		m      uint64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"TiB", 1 << 40}, {"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"TB", 1e12}, {"B", 1}} {
		if strings.HasSuffix(s, u.suffix) {
			s, mult = strings.TrimSpace(strings.TrimSuffix(s, u.suffix)), u.m
			break
		}
	}
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return Size{text: text, err: fmt.Errorf("%q is not a size", s)}
	}
	return Size{Bytes: n * mult, text: text}
}

// UnmarshalText parses the size; see the note on typed values.
func (z *Size) UnmarshalText(b []byte) error { *z = parseSize(string(b)); return nil }

// MarshalText writes the size as it was written.
func (z Size) MarshalText() ([]byte, error) { return []byte(z.String()), nil }

// String is the size as written, or its number of bytes.
func (z Size) String() string {
	if z.text != "" {
		return z.text
	}
	return strconv.FormatUint(z.Bytes, 10)
}

// IP is an IP address written as a string; whether the unspecified
// address is allowed is the key's rule, checked by validation.
type IP struct {
	Addr netip.Addr
	text string
	err  error
}

func parseIP(s string) IP {
	if s == "" {
		return IP{} // not set
	}
	a, err := netip.ParseAddr(s)
	return IP{Addr: a, text: s, err: err}
}

// UnmarshalText parses the address; see the note on typed values.
func (ip *IP) UnmarshalText(b []byte) error { *ip = parseIP(string(b)); return nil }

// MarshalText writes the address.
func (ip IP) MarshalText() ([]byte, error) { return []byte(ip.String()), nil }

// String is the address, or the text as written when it is not valid.
func (ip IP) String() string {
	if ip.err != nil || !ip.Addr.IsValid() {
		return ip.text
	}
	return ip.Addr.String()
}

// IsSet reports whether an address is configured.
func (ip IP) IsSet() bool { return ip.Addr.IsValid() }

// Network is a network written as a CIDR ("192.168.1.0/24").
type Network struct {
	Prefix netip.Prefix
	text   string
	err    error
}

func parseNetwork(s string) Network {
	p, err := netip.ParsePrefix(s)
	return Network{Prefix: p, text: s, err: err}
}

// UnmarshalText parses the network; see the note on typed values.
func (n *Network) UnmarshalText(b []byte) error { *n = parseNetwork(string(b)); return nil }

// MarshalText writes the network.
func (n Network) MarshalText() ([]byte, error) { return []byte(n.String()), nil }

// String is the network, or the text as written when it is not valid.
func (n Network) String() string {
	if n.err != nil {
		return n.text
	}
	return n.Prefix.String()
}

// Networks is a list of networks (allow_networks, trusted_sources, trusted_proxies).
type Networks []Network

// Prefixes are the networks' prefixes.
func (ns Networks) Prefixes() []netip.Prefix {
	out := make([]netip.Prefix, len(ns))
	for i, n := range ns {
		out[i] = n.Prefix
	}
	return out
}

func networks(cidrs ...string) Networks {
	out := make(Networks, len(cidrs))
	for i, c := range cidrs {
		out[i] = parseNetwork(c)
	}
	return out
}

// Zone is a time zone written by its IANA name ("Europe/Moscow").
type Zone struct {
	loc  *time.Location
	text string
	err  error
}

// ParseZone reads a zone name; a name the system's (or callgate's
// embedded) zone database does not know is kept with its error for
// validation to report.
func ParseZone(name string) Zone {
	loc, err := time.LoadLocation(name)
	return Zone{loc: loc, text: name, err: err}
}

// UnmarshalText parses the zone; see the note on typed values.
func (z *Zone) UnmarshalText(b []byte) error { *z = ParseZone(string(b)); return nil }

// MarshalText writes the zone's name.
func (z Zone) MarshalText() ([]byte, error) { return []byte(z.text), nil }

// String is the zone's name as written.
func (z Zone) String() string { return z.text }

// Location is the zone; UTC for a zone that is not set or not valid, which
// a validated configuration never holds.
func (z Zone) Location() *time.Location {
	if z.loc == nil {
		return time.UTC
	}
	return z.loc
}
