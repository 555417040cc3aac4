package api

import (
	"context"
	"net/http"
	"net/netip"
	"strings"
)

// Proxies says which peers are reverse proxies (the tunnel's end on this
// host) whose requests name the real client in a forwarding header.
type Proxies struct {
	// Trusted are the proxies' networks (http.trusted_proxies).
	Trusted []netip.Prefix
	// Header is "X-Forwarded-For" (default) or "Forwarded" (RFC 7239):
	// only the header the proxy itself writes may be believed, since a
	// client can send the other one with any address in it. The scheme
	// comes from the same family: X-Forwarded-Proto, or Forwarded's proto=.
	Header string
	// PublicHTTPS says the proxies serve https (an https http.public_url):
	// a trusted proxy that names no scheme is taken to have received the
	// request over https.
	PublicHTTPS bool
}

// Trusts reports whether a is one of the proxies.
func (p *Proxies) Trusts(a netip.Addr) bool {
	a = a.Unmap()
	for _, n := range p.Trusted {
		if n.Contains(a) {
			return true
		}
	}
	return false
}

// Client returns the address of the client a request came from: the
// peer itself, or, when the peer is a trusted proxy, the rightmost hop of
// the forwarding header that is not a trusted proxy. Hops to the left of
// it were written by the client and prove nothing.
func (p *Proxies) Client(r *http.Request) string {
	peer, ok := peerAddr(r.RemoteAddr)
	if !ok {
		return r.RemoteAddr
	}
	if p == nil || !p.Trusts(peer) {
		return peer.String()
	}
	var hops []string
	if p.forwarded() {
		hops = forwardedParam(r.Header.Values("Forwarded"), "for")
	} else {
		hops = xffHops(r.Header.Values("X-Forwarded-For"))
	}
	return clientHop(peer, hops, p.Trusts).String()
}

// HTTPS reports whether the client's browser talks https: to callgate
// itself (TLS), or to a trusted proxy that says so in its scheme header
// (or names none while PublicHTTPS is set). A peer that is not a trusted
// proxy talks to callgate directly over plain HTTP, whatever headers it
// sends: an office PC on the LAN gets no Secure cookie it could not send
// back, and nobody outside the proxies can claim https.
func (p *Proxies) HTTPS(r *http.Request) bool {
	if r.TLS != nil {
		return true
	}
	if p == nil {
		return false
	}
	if peer, ok := peerAddr(r.RemoteAddr); !ok || !p.Trusts(peer) {
		return false
	}
	// The nearest proxy's element is the last one: the scheme it saw.
	var proto string
	if p.forwarded() {
		if ps := forwardedParam(r.Header.Values("Forwarded"), "proto"); len(ps) > 0 {
			proto = ps[len(ps)-1]
		}
	} else if ps := xffHops(r.Header.Values("X-Forwarded-Proto")); len(ps) > 0 {
		proto = ps[len(ps)-1]
	}
	if proto == "" {
		return p.PublicHTTPS
	}
	return strings.EqualFold(proto, "https")
}

// forwarded reports whether the proxies write RFC 7239 Forwarded headers.
func (p *Proxies) forwarded() bool { return strings.EqualFold(p.Header, "Forwarded") }

// clientHop walks the hops from the nearest (rightmost) one: the first
// address that is not a trusted proxy is the client. A hop that is not an
// address (garbage, "unknown", an obfuscated RFC 7239 name) ends the walk
// at the last proxy seen, which is the nearest address known for sure.
func clientHop(peer netip.Addr, hops []string, trusted func(netip.Addr) bool) netip.Addr {
	client := peer.Unmap()
	for i := len(hops) - 1; i >= 0; i-- {
		a, ok := hopAddr(hops[i])
		if !ok {
			return client
		}
		client = a
		if !trusted(a) {
			return a
		}
	}
	return client
}

// peerAddr parses a RemoteAddr ("IP:port", or a bare IP in tests).
func peerAddr(s string) (netip.Addr, bool) {
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap.Addr().Unmap(), true
	}
	a, err := netip.ParseAddr(s)
	return a.Unmap(), err == nil
}

// xffHops splits X-Forwarded-For headers (several are one list, in order)
// into hops, nearest last.
func xffHops(values []string) []string {
	var hops []string
	for _, v := range values {
		for h := range strings.SplitSeq(v, ",") {
			hops = append(hops, strings.TrimSpace(h))
		}
	}
	return hops
}

// forwardedParam returns the param parameter (for=, proto=) of each
// element of Forwarded headers (RFC 7239 §4), nearest last. An element
// without it yields "" (for for=: not an address, so the walk stops there
// rather than skip a hop).
func forwardedParam(values []string, param string) []string {
	var hops []string
	for _, v := range values {
		for _, elem := range splitQuoted(v, ',') {
			if strings.TrimSpace(elem) == "" {
				continue
			}
			hop := ""
			for _, pair := range splitQuoted(elem, ';') {
				k, val, _ := strings.Cut(pair, "=")
				if strings.EqualFold(strings.TrimSpace(k), param) {
					hop = unquote(strings.TrimSpace(val))
				}
			}
			hops = append(hops, hop)
		}
	}
	return hops
}

// splitQuoted splits s at sep outside quoted strings.
func splitQuoted(s string, sep byte) []string {
	var out []string
	start, quoted := 0, false
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case quoted && c == '\\':
			i++ // quoted-pair
		case c == '"':
			quoted = !quoted
		case !quoted && c == sep:
			out = append(out, s[start:i])
			start = i + 1
		}
	}
	return append(out, s[start:])
}

// unquote removes the quotes and quoted-pairs of an RFC 7230
// quoted-string; a token is returned as it is.
func unquote(s string) string {
	if len(s) < 2 || s[0] != '"' || s[len(s)-1] != '"' {
		return s
	}
	s = s[1 : len(s)-1]
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+1 < len(s) {
			i++
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// hopAddr parses one hop: "192.0.2.1", "192.0.2.1:4711", "2001:db8::1",
// "[2001:db8::1]" or "[2001:db8::1]:4711".
func hopAddr(s string) (netip.Addr, bool) {
	a, err := netip.ParseAddr(s)
	if err != nil {
		if ap, perr := netip.ParseAddrPort(s); perr == nil {
			a, err = ap.Addr(), nil
		} else if strings.HasPrefix(s, "[") && strings.HasSuffix(s, "]") {
			a, err = netip.ParseAddr(s[1 : len(s)-1])
		}
	}
	if err != nil || a.Zone() != "" {
		return netip.Addr{}, false
	}
	return a.Unmap(), true
}

// clientAddr is the client address a request's failures are counted on.
func (s *Server) clientAddr(r *http.Request) string {
	return ClientAddr(r)
}

type clientKey struct{}

// withClient keeps the client's address, settled once per request, in its
// context for every handler, the Routes of other packages included.
func (s *Server) withClient(r *http.Request) *http.Request {
	return r.WithContext(context.WithValue(r.Context(), clientKey{}, s.Proxies.Client(r)))
}

// ClientAddr is the address of the client a request came from as the
// API's handler settled it: from a trusted proxy's forwarding header, else
// the peer. Handlers added through Server.Routes log and limit by it.
// Outside the API's handler it is the peer's address.
func ClientAddr(r *http.Request) string {
	if a, ok := r.Context().Value(clientKey{}).(string); ok {
		return a
	}
	if a, ok := peerAddr(r.RemoteAddr); ok {
		return a.String()
	}
	return r.RemoteAddr
}
