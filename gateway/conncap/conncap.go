// Package conncap caps the connections one client holds open on the HTTP
// listener. The console, the API and the browser phone's WebSocket share
// that listener; without a cap one host on the LAN can open connections
// (or start requests and never finish them) until the process runs out of
// file descriptors, and then nobody gets in and nothing else callgate does
// that opens a file or a socket works either. A browser needs a handful;
// a trusted reverse proxy carries everyone's and is not capped.
package conncap

import (
	"log/slog"
	"net"
	"net/netip"

	"callgate/sip/connlimit"

	"github.com/prometheus/client_golang/prometheus"
)

// Listener is a net.Listener that closes a client's connections over its
// cap as they are accepted. The counting is connlimit's, as for SIP over
// TCP; this adds the HTTP side's exemption of trusted proxies.
type Listener struct {
	net.Listener
	max    int
	exempt func(netip.Addr) bool
	lim    *connlimit.Limiter
}

// Wrap caps each client of l at max open connections (0: no cap), except
// the clients exempt says are proxies. Refusals are logged at most once a
// minute per client.
func Wrap(l net.Listener, max int, exempt func(netip.Addr) bool, log *slog.Logger) *Listener {
	return &Listener{Listener: l, max: max, exempt: exempt, lim: connlimit.New(connlimit.Config{MaxPerIP: max, Log: log})}
}

// Listen listens on TCP address addr and wraps the listener (Wrap).
func Listen(addr string, max int, exempt func(netip.Addr) bool, log *slog.Logger) (*Listener, error) {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	return Wrap(l, max, exempt, log), nil
}

// Accept returns the next connection within its client's cap.
func (l *Listener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil || l.max <= 0 {
			return c, err
		}
		ip := connlimit.RemoteIP(c)
		if !ip.IsValid() || (l.exempt != nil && l.exempt(ip)) {
			return c, nil // not an IP peer (a test's pipe), or a proxy
		}
		if tc, ok := l.lim.Track(c, ip); ok {
			return tc, nil
		}
	}
}

// Refused is how many connections were closed over a client's cap.
func (l *Listener) Refused() uint64 { return l.lim.Stats.Refused.Load() }

// Open is how many capped connections are open now.
func (l *Listener) Open() int { return l.lim.Open() }

// Collectors are the cap's metrics (none for a nil Listener: no HTTP
// listener).
func (l *Listener) Collectors() []prometheus.Collector {
	if l == nil {
		return nil
	}
	return []prometheus.Collector{
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "callgate_http_connections_refused_total",
			Help: "HTTP connections closed at once because their client already held http.max_conns_per_ip open."},
			func() float64 { return float64(l.Refused()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "callgate_http_connections_capped",
			Help: "HTTP connections open from clients other than trusted proxies (those counted against http.max_conns_per_ip)."},
			func() float64 { return float64(l.Open()) }),
	}
}
