package sipstack

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"time"

	"callgate/sip/location"
	"callgate/sip/sipnet"
	"callgate/sip/sipws"

	"github.com/prometheus/client_golang/prometheus"
)

// WebSocket sets up SIP over WebSocket (the browser phone) on the HTTP
// listener at local and returns the /sip handler. client names the client
// behind a request (through trusted proxies); origin says which browser
// origins may connect (the console's own). Connections are capped per
// client and closed when idle like SIP over TCP's, by limits of their
// own; a client outside sip.allow_networks is refused at the upgrade.
// Call it before Serve.
func (s *Stack) WebSocket(local net.Addr, client func(*http.Request) string, origin func(*http.Request, string) bool) *sipws.Entry {
	s.ws = sipws.New(sipws.Config{
		Origin: origin, Client: client, Limiter: s.wsConns, Local: local, Log: s.log.With("component", "sip-ws"),
		// A browser reached only over its connection is gone with it: its
		// tab reloaded or closed. Calls must not ring it any longer.
		Closed: func(remote netip.AddrPort) {
			if s.loc != nil {
				if n := s.loc.DropFlow(sipnet.WS, remote.String(), time.Now()); n > 0 {
					s.log.Debug("registrations over a closed WebSocket removed", "source", remote.String(), "bindings", n)
				}
			}
		},
		Admit: func(ip netip.Addr) error {
			if !s.phoneNetworks().Contains(ip) {
				return fmt.Errorf("%s is not in sip.allow_networks: phones may not register from it", ip)
			}
			return nil
		},
	})
	if ap, err := netip.ParseAddrPort(local.String()); err == nil {
		s.locals[sipnet.WS] = ap
	}
	return s.ws
}

// serveWS hands the /sip entry's connections to sipgo.
func (s *Stack) serveWS() {
	if s.ws == nil {
		return
	}
	s.wsConns.Start()
	go func() {
		if err := sipnet.WS.Serve(s.srv, s.ws); err != nil && !errors.Is(err, net.ErrClosed) {
			s.log.Debug("sip listener stopped", "transport", string(sipnet.WS), "error", err)
		}
	}()
}

// closeWS stops taking WebSocket connections and closes those open.
func (s *Stack) closeWS() {
	if s.ws == nil {
		return
	}
	s.ws.Close()
	s.wsConns.Stop()
}

// wsCollectors are the metrics of SIP over WebSocket and of registrations
// by transport.
func (s *Stack) wsCollectors(loc *location.Table) []prometheus.Collector {
	var out []prometheus.Collector
	if loc != nil {
		out = append(out, &transportCollector{loc: loc, desc: prometheus.NewDesc("callgate_registered_contacts_by_transport",
			"Devices registered, by the transport they registered over (udp, tcp, ws: the browser phone).", []string{"transport"}, nil)})
	}
	l := s.wsConns
	// The entry is made once the HTTP listener is (after these are
	// registered), and never without one.
	stat := func(f func(*sipws.Stats) uint64) func() uint64 {
		return func() uint64 {
			if s.ws == nil {
				return 0
			}
			return f(&s.ws.Stats)
		}
	}
	count := func(name, help string, f func() uint64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help}, func() float64 { return float64(f()) })
	}
	return append(out,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "callgate_sip_ws_connections", Help: "SIP over WebSocket connections (/sip) open."},
			func() float64 { return float64(l.Open()) }),
		count("callgate_sip_ws_upgrades_total", "SIP over WebSocket connections accepted at /sip.", stat(func(st *sipws.Stats) uint64 { return st.Upgraded.Load() })),
		count("callgate_sip_ws_bad_requests_total", "Requests to /sip refused: not a WebSocket upgrade, no \"sip\" subprotocol, or not HTTP/1.1.", stat(func(st *sipws.Stats) uint64 { return st.BadRequest.Load() })),
		count("callgate_sip_ws_foreign_origin_total", "WebSocket upgrades to /sip refused for an Origin other than the console's.", stat(func(st *sipws.Stats) uint64 { return st.Origin.Load() })),
		count("callgate_sip_ws_refused_total", "WebSocket upgrades to /sip refused: client outside sip.allow_networks, or over sip.tcp_max_per_ip connections.", func() uint64 {
			return stat(func(st *sipws.Stats) uint64 { return st.Refused.Load() })() + l.Stats.Refused.Load()
		}),
		count("callgate_sip_ws_idle_closed_total", "SIP over WebSocket connections closed after sip.tcp_idle_timeout without traffic, registration or call.", l.Stats.IdleClosed.Load),
	)
}

// transportCollector counts registrations by transport when scraped.
type transportCollector struct {
	loc  *location.Table
	desc *prometheus.Desc
}

func (c *transportCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *transportCollector) Collect(ch chan<- prometheus.Metric) {
	n := map[sipnet.Transport]int{}
	for _, t := range append(sipnet.Transports(), sipnet.WS) {
		n[t] = 0
	}
	for _, b := range c.loc.All(time.Now()) {
		n[b.Transport]++
	}
	for t, v := range n {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(v), string(t))
	}
}
