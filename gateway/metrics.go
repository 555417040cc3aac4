package gateway

import (
	"callgate/sip/trunk"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// metrics registers callgate's metrics. Values are read from the parts when
// scraped, so nothing on the SIP path touches Prometheus.
func (g *Gateway) metrics() *prometheus.Registry {
	r := prometheus.NewRegistry()
	r.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	st := &g.reg.Stats
	r.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "callgate_registered_contacts", Help: "Devices registered with the registrar."},
			func() float64 { return float64(g.reg.Location().Len()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "callgate_location_stored_bindings", Help: "Registrations written to the database (survive a crash)."},
			func() float64 { return float64(g.bindings.Stored()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "callgate_sip_auth_failures_total", Help: "Authentications that failed (wrong password or user, another extension's address, wrong desk PIN)."},
			func() float64 { return float64(st.AuthFailures.Load()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "callgate_sip_banned_sources", Help: "Bans in force for failing authentication (IP:port sources, IPs and user names at an IP)."},
			func() float64 { return float64(g.guard.Active()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "callgate_sip_register_total", Help: "REGISTER requests that authenticated."},
			func() float64 { return float64(st.Registers.Load()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "callgate_sip_dropped_total", Help: "Requests from banned sources left unanswered."},
			func() float64 { return float64(st.Dropped.Load()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "callgate_sip_scanner_dropped_total", Help: "Requests from scanner user agents (sip.scanner_user_agents) left unanswered."},
			func() float64 { return float64(st.Scanners.Load()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "callgate_sip_refused_networks_total", Help: "REGISTERs from outside sip.allow_networks."},
			func() float64 { return float64(st.Refused.Load()) }),
	)
	r.MustRegister(g.calls.Collectors()...)
	r.MustRegister(g.sip.Collectors()...)
	r.MustRegister(g.router.DialRefused)
	r.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "callgate_panics_total",
		Help: "Panics recovered in SIP handlers and calls (each ended at most one call)."}, g.panics()))
	r.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "callgate_calls_active", Help: "Calls in progress."},
			func() float64 { return float64(g.b2b.Active()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "callgate_sip_dialog_mismatch_total", Help: "In-dialog requests refused with 481: no dialog with that Call-ID and tags, or not from its peer."},
			func() float64 { return float64(g.b2b.DialogMismatches()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "callgate_rtp_packets_total", Help: "RTP/RTCP packets relayed."},
			func() float64 { return float64(g.relay.Packets.Load()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "callgate_rtp_dropped_packets_total", Help: "RTP/RTCP packets not relayed: sent before the other party's address is known (a phone's first packets while the call is still being answered), RTCP before the party's first RTP latched its address, packets from an address other than the latched one, packets that are not RTP version 2, and sends the kernel refused. A few per call are normal."},
			func() float64 { return float64(g.relay.Dropped.Load()) }),
	)
	r.MustRegister(g.recs.Collectors()...)
	r.MustRegister(g.health.Collectors()...)
	if g.trunk != nil {
		r.MustRegister(&upstreamCollector{t: g.trunk, desc: prometheus.NewDesc("callgate_upstream_registered",
			"1 when the upstream account is registered with the VPBX.", []string{"account"}, nil)})
	}
	return r
}

// panics returns the number of panics recovered in SIP handlers and
// calls; it holds on to the SIP stack, which closeAll forgets.
func (g *Gateway) panics() func() float64 {
	s, b := g.sip, g.b2b
	return func() float64 {
		n := b.Panics()
		if s != nil {
			n += s.Panics()
		}
		return float64(n)
	}
}

type upstreamCollector struct {
	t    *trunk.Trunk
	desc *prometheus.Desc
}

func (c *upstreamCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *upstreamCollector) Collect(ch chan<- prometheus.Metric) {
	for _, s := range c.t.Statuses() {
		v := 0.0
		if s.State == trunk.StateRegistered {
			v = 1
		}
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, v, s.Account)
	}
}
