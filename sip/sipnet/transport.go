package sipnet

import (
	"fmt"
	"net"
	"strings"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
)

// Transport names a SIP transport the way callgate's configuration,
// bindings and logs write it: lower case ("udp", "tcp"). Everything that
// differs between transports is a property of its entry in the table
// below, so that no part of callgate branches on transport names.
type Transport string

// The transports callgate listens on.
const (
	UDP Transport = "udp"
	TCP Transport = "tcp"
	// WS is SIP over WebSocket (RFC 7118), the browser phone's transport:
	// it has no socket of its own but arrives through the HTTP listener's
	// /sip, so it is not one of Transports (nothing binds or resolves it).
	WS Transport = "ws"
)

// transportInfo is what callgate needs to know of one transport.
type transportInfo struct {
	name Transport
	// network is the Go network its sockets are bound on.
	network string
	// datagram transports send requests from the listening socket and
	// get the UDP-only checks (size, sanity of a whole datagram).
	datagram bool
	// serve runs sipgo on a bound stream listener (datagram transports
	// are served by sipgo's ServeUDP on their packet socket).
	serve func(*sipgo.Server, net.Listener) error
	// overHTTP transports come through the HTTP listener's upgrade, never
	// from sip.listen or DNS, and die with their connection: a binding over
	// one cannot be reached once its connection is gone.
	overHTTP bool
}

// transports is the table of SIP transports, in the order messages name
// them. Adding TLS is one entry ({name: "tls", network: "tcp", serve:
// (*sipgo.Server).ServeTLS}, with the listener wrapped by crypto/tls where
// it is bound). WebSocket's listener is fed by the HTTP server's /sip
// handler (sip/sipws), which checks the Origin before it hands the
// connection to sipgo's ServeWS.
var transports = []transportInfo{
	{name: UDP, network: "udp", datagram: true},
	{name: TCP, network: "tcp", serve: (*sipgo.Server).ServeTCP},
	{name: WS, network: "tcp", serve: (*sipgo.Server).ServeWS, overHTTP: true},
}

func (t Transport) info() (transportInfo, bool) {
	for _, i := range transports {
		if i.name == t {
			return i, true
		}
	}
	return transportInfo{}, false
}

// Transports lists the transports callgate binds sockets for (sip.listen)
// and looks the VPBX up on: not WebSocket, which comes through HTTP.
func Transports() []Transport {
	var out []Transport
	for _, t := range transports {
		if !t.overHTTP {
			out = append(out, t.name)
		}
	}
	return out
}

// ParseTransport reads a transport name as a configuration writes it
// ("udp", "TCP"); a transport callgate cannot bind a socket for is an
// error, and so is WebSocket, which the HTTP listener serves at /sip.
func ParseTransport(name string) (Transport, error) {
	t := Transport(strings.ToLower(name))
	i, ok := t.info()
	if !ok {
		return "", fmt.Errorf("transport %q is not supported", name)
	}
	if i.overHTTP {
		return "", fmt.Errorf("transport %q is the browser phone's, which the HTTP listener serves at /sip; it cannot be used here", name)
	}
	return t, nil
}

// OverHTTP reports whether the transport comes through the HTTP
// listener's /sip (WebSocket): its bindings live only as long as their
// connection, so they are neither persisted nor restored.
func (t Transport) OverHTTP() bool { i, _ := t.info(); return i.overHTTP }

// TransportOf names the transport of a message as sipgo reports it
// ("UDP", "tcp"), without allocating for the usual names.
func TransportOf(name string) Transport { return Transport(sip.NetworkToLower(name)) }

// Datagram reports whether the transport carries each message in one
// datagram (UDP): requests leave from the listening socket, and large
// ones are better moved to a stream transport.
func (t Transport) Datagram() bool { i, _ := t.info(); return i.datagram }

// Network is the Go network the transport's sockets are bound on.
func (t Transport) Network() string { i, _ := t.info(); return i.network }

// Via is the transport's name in Via headers and sipgo's
// Request.SetTransport ("UDP", "TCP").
func (t Transport) Via() string { return sip.NetworkToUpper(string(t)) }

// URIParam is the value of a URI's transport parameter naming t; empty
// for UDP, which a URI without the parameter means (RFC 3261 §19.1.2).
func (t Transport) URIParam() string {
	if t.Datagram() {
		return ""
	}
	return string(t)
}

// Serve runs sipgo's server on a stream listener bound for the transport.
func (t Transport) Serve(srv *sipgo.Server, ln net.Listener) error {
	info, ok := t.info()
	if !ok || info.serve == nil {
		return fmt.Errorf("transport %q has no stream listener", t)
	}
	return info.serve(srv, ln)
}
