package gateway

import (
	"log/slog"
	"net/netip"
	"strings"
	"time"

	"callgate/gateway/config"
	"callgate/sip/connlimit"

	"github.com/prometheus/client_golang/prometheus"
)

// newSIPConnLimiter limits SIP TCP connections by the configuration. What
// keeps an idle connection open is set once the registrar and the B2BUA
// exist (liveSIPPeers).
func newSIPConnLimiter(cfg *config.Config, log *slog.Logger) *connlimit.Limiter {
	return connlimit.New(connlimit.Config{
		MaxPerIP:    cfg.SIP.TCPMaxPerIP,
		IdleTimeout: cfg.SIP.TCPIdleTimeout.D(),
		Log:         log.With("component", "sip-tcp"),
	})
}

// liveSIPPeers takes a snapshot of the TCP sources of registrations and
// tells whether an address is one of them or the peer of a leg of a call in
// progress: connections to such addresses stay open however quiet they are,
// since callgate sends requests to phones over the connection they
// registered on (a phone behind NAT cannot be reached any other way).
func (g *Gateway) liveSIPPeers() func(netip.AddrPort) bool {
	sources := map[netip.AddrPort]bool{}
	for _, b := range g.reg.Location().All(time.Now()) {
		if !strings.EqualFold(b.Transport, "tcp") {
			continue
		}
		if ap, err := netip.ParseAddrPort(b.Source); err == nil {
			sources[netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())] = true
		}
	}
	return func(a netip.AddrPort) bool {
		return sources[a] || (g.b2b != nil && g.b2b.PeerAt(a))
	}
}

// sipConnMetrics registers the metrics of SIP TCP connections.
func (g *Gateway) sipConnMetrics(r *prometheus.Registry) {
	l := g.sip.conns
	r.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "callgate_sip_tcp_connections", Help: "SIP TCP connections accepted and open."},
			func() float64 { return float64(l.Open()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "callgate_sip_tcp_refused_total", Help: "SIP TCP connections closed at once: their IP held sip.tcp_max_per_ip already."},
			func() float64 { return float64(l.Stats.Refused.Load()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "callgate_sip_tcp_idle_closed_total", Help: "SIP TCP connections closed after sip.tcp_idle_timeout without traffic, registration or call."},
			func() float64 { return float64(l.Stats.IdleClosed.Load()) }),
	)
}
