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
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Listener is a net.Listener that closes a client's connections over its
// cap as they are accepted.
type Listener struct {
	net.Listener
	max    int
	exempt func(netip.Addr) bool
	log    *slog.Logger

	// Refused counts connections closed over a client's cap.
	Refused atomic.Uint64

	mu     sync.Mutex
	open   map[netip.Addr]int
	logged map[netip.Addr]time.Time
}

// Wrap caps each client of l at max open connections (0: no cap), except
// the clients exempt says are proxies. Refusals are logged at most once a
// minute per client.
func Wrap(l net.Listener, max int, exempt func(netip.Addr) bool, log *slog.Logger) *Listener {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Listener{Listener: l, max: max, exempt: exempt, log: log, open: map[netip.Addr]int{}, logged: map[netip.Addr]time.Time{}}
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
		ap, perr := netip.ParseAddrPort(c.RemoteAddr().String())
		if perr != nil {
			return c, nil // not an IP peer (a test's pipe): nothing to count
		}
		ip := ap.Addr().Unmap()
		if l.exempt != nil && l.exempt(ip) {
			return c, nil
		}
		if !l.take(ip) {
			c.Close()
			continue
		}
		return &conn{Conn: c, release: func() { l.give(ip) }}, nil
	}
}

func (l *Listener) take(ip netip.Addr) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.open[ip] >= l.max {
		l.Refused.Add(1)
		if now := time.Now(); now.Sub(l.logged[ip]) >= time.Minute {
			l.logged[ip] = now
			l.log.Warn("http connection refused: too many open from this address", "source", ip.String(), "max", l.max)
		}
		return false
	}
	l.open[ip]++
	return true
}

func (l *Listener) give(ip netip.Addr) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.open[ip]--; l.open[ip] <= 0 {
		delete(l.open, ip)
		delete(l.logged, ip)
	}
}

// Open is how many capped connections are open now.
func (l *Listener) Open() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, v := range l.open {
		n += v
	}
	return n
}

// conn gives its client's slot back once, when closed. A connection the
// HTTP server takes over (a WebSocket) is still this conn, so it counts
// until it closes.
type conn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *conn) Close() error {
	c.once.Do(c.release)
	return c.Conn.Close()
}

// Collectors are the cap's metrics (none for a nil Listener: no HTTP
// listener).
func (l *Listener) Collectors() []prometheus.Collector {
	if l == nil {
		return nil
	}
	return []prometheus.Collector{
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "callgate_http_connections_refused_total",
			Help: "HTTP connections closed at once because their client already held http.max_conns_per_ip open."},
			func() float64 { return float64(l.Refused.Load()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "callgate_http_connections_capped",
			Help: "HTTP connections open from clients other than trusted proxies (those counted against http.max_conns_per_ip)."},
			func() float64 { return float64(l.Open()) }),
	}
}
