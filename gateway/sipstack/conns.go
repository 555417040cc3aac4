package sipstack

import (
	"log/slog"
	"net/netip"
	"time"

	"callgate/gateway/config"
	"callgate/sip/connlimit"
	"callgate/sip/location"

	"github.com/prometheus/client_golang/prometheus"
)

// newConnLimiter limits SIP TCP (or WebSocket) connections by the configuration. What
// keeps an idle connection open is set once the registrar and the B2BUA
// exist (KeepOpen).
func newConnLimiter(cfg *config.Config, log *slog.Logger, component string) *connlimit.Limiter {
	return connlimit.New(connlimit.Config{
		MaxPerIP:    cfg.SIP.TCPMaxPerIP,
		IdleTimeout: cfg.SIP.TCPIdleTimeout.D(),
		Log:         log.With("component", component),
	})
}

// KeepOpen keeps SIP TCP and WebSocket connections open however quiet they are when
// they come from the source of a registration in loc or from a peer inCall
// reports in a call in progress: callgate sends requests to phones over
// the connection they registered on (a phone behind NAT cannot be reached
// any other way). The registrations are read once per idle sweep.
func (s *Stack) KeepOpen(loc *location.Table, inCall func(netip.AddrPort) bool) {
	s.loc = loc
	live := func() func(netip.AddrPort) bool {
		sources := map[netip.AddrPort]bool{}
		for _, b := range loc.All(time.Now()) {
			if b.Transport.Datagram() {
				continue
			}
			if ap, err := netip.ParseAddrPort(b.Source); err == nil {
				sources[netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())] = true
			}
		}
		return func(a netip.AddrPort) bool {
			return sources[a] || inCall(a)
		}
	}
	s.conns.SetLive(live)
	s.wsConns.SetLive(live)
}

// Collectors are the metrics of SIP TCP connections, read from the
// limiter when scraped.
func (s *Stack) Collectors() []prometheus.Collector {
	l := s.conns
	return append(s.wsCollectors(s.loc),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "callgate_sip_tcp_connections", Help: "SIP TCP connections accepted and open."},
			func() float64 { return float64(l.Open()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "callgate_sip_tcp_refused_total", Help: "SIP TCP connections closed at once: their IP held sip.tcp_max_per_ip already."},
			func() float64 { return float64(l.Stats.Refused.Load()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "callgate_sip_tcp_idle_closed_total", Help: "SIP TCP connections closed after sip.tcp_idle_timeout without traffic, registration or call."},
			func() float64 { return float64(l.Stats.IdleClosed.Load()) }),
	)
}
