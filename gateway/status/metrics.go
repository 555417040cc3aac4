package status

import (
	"fmt"
	"strconv"

	"callgate/media/relay"
	"callgate/media/webrtc"
	"callgate/sip/b2bua"
	"callgate/sip/guard"
	"callgate/sip/location"
	"callgate/sip/registrar"
	"callgate/sip/trunk"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// Parts are what the metrics are read from.
type Parts struct {
	Registrar *registrar.Registrar
	Bindings  *location.Persister
	Guard     *guard.Guard
	B2BUA     *b2bua.B2BUA
	Relay     *relay.Relay
	Trunk     *trunk.Trunk     // nil without upstream accounts
	WebRTC    *webrtc.Endpoint // nil without the HTTP listener
	// Panics counts panics recovered in SIP handlers and calls.
	Panics func() uint64
	// Collectors are the parts' own metrics (call model, SIP listeners,
	// routing, recordings, database writes).
	Collectors []prometheus.Collector
}

// Registry registers callgate's metrics. Values are read from the parts
// when scraped, so nothing on the SIP or media path touches Prometheus.
func Registry(p Parts) *prometheus.Registry {
	r := prometheus.NewRegistry()
	r.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	st := &p.Registrar.Stats
	count := func(name, help string, f func() uint64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help}, func() float64 { return float64(f()) })
	}
	gauge := func(name, help string, f func() int) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, func() float64 { return float64(f()) })
	}
	r.MustRegister(
		gauge("callgate_registered_contacts", "Devices registered with the registrar.", p.Registrar.Location().Len),
		gauge("callgate_location_stored_bindings", "Registrations written to the database (survive a crash).", p.Bindings.Stored),
		count("callgate_sip_auth_failures_total", "Authentications that failed (wrong password or user, another extension's address, wrong desk PIN).", st.AuthFailures.Load),
		gauge("callgate_sip_banned_sources", "Bans in force for failing authentication (IP:port sources, IPs and user names at an IP).", p.Guard.Active),
		count("callgate_sip_register_total", "REGISTER requests that authenticated.", st.Registers.Load),
		count("callgate_sip_register_fast_total", "REGISTERs over UDP read and answered without sipgo's parser (plainly written ones; the rest take the full path).", st.FastPath.Load),
		count("callgate_sip_dropped_total", "Requests from banned sources left unanswered.", st.Dropped.Load),
		count("callgate_sip_scanner_dropped_total", "Requests from scanner user agents (sip.scanner_user_agents) left unanswered.", st.Scanners.Load),
		count("callgate_sip_refused_networks_total", "REGISTERs from outside sip.allow_networks.", st.Refused.Load),
		count("callgate_panics_total", "Panics recovered in SIP handlers and calls (each ended at most one call).", p.Panics),
		gauge("callgate_calls_active", "Calls in progress.", p.B2BUA.Active),
		count("callgate_sip_dialog_mismatch_total", "In-dialog requests refused with 481: no dialog with that Call-ID and tags, or not from its peer.", p.B2BUA.DialogMismatches),
		count("callgate_rtp_packets_total", "RTP/RTCP packets relayed.", p.Relay.Packets.Load),
		count("callgate_rtp_dropped_packets_total", "RTP/RTCP packets not relayed: sent before the other party's address is known (a phone's first packets while the call is still being answered), RTCP before the party's first RTP latched its address, packets from an address other than the latched one, packets that are not RTP version 2, and sends the kernel refused. A few per call are normal.", p.Relay.Dropped.Load),
	)
	r.MustRegister(newGauges("callgate_relay_loop_sessions",
		fmt.Sprintf("Calls' media sessions carried by each of the relay's forwarding loops (the first fills up to %d before the next takes any).", relay.DefaultSpillAt),
		"loop", func(emit func(string, float64)) {
			for i, n := range p.Relay.LoopSessions() {
				emit(strconv.Itoa(i), float64(n))
			}
		}))
	r.MustRegister(p.Collectors...)
	if w := p.WebRTC; w != nil {
		r.MustRegister(
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "callgate_webrtc_legs", Help: "Browser phones' media legs open (WebRTC bridged to the relay)."},
				func() float64 { return float64(w.Stats.Open.Load()) }),
			count("callgate_webrtc_connected_total", "Browser media legs whose ICE and DTLS-SRTP came up.", w.Stats.Connected.Load),
			count("callgate_webrtc_failed_total", "Browser media legs whose ICE or DTLS failed (the call is hung up).", w.Stats.Failed.Load),
		)
	}
	if t := p.Trunk; t != nil {
		r.MustRegister(newGauges("callgate_upstream_registered", "1 when the upstream account is registered with the VPBX.", "account",
			func(emit func(string, float64)) {
				for _, s := range t.Statuses() {
					v := 0.0
					if s.State == trunk.StateRegistered {
						v = 1
					}
					emit(s.Account, v)
				}
			}))
	}
	return r
}

// gauges is a gauge with one label whose values are read when scraped:
// read emits each label value with its gauge value.
type gauges struct {
	desc *prometheus.Desc
	read func(emit func(label string, v float64))
}

func newGauges(name, help, label string, read func(emit func(label string, v float64))) *gauges {
	return &gauges{desc: prometheus.NewDesc(name, help, []string{label}, nil), read: read}
}

func (g *gauges) Describe(ch chan<- *prometheus.Desc) { ch <- g.desc }

func (g *gauges) Collect(ch chan<- prometheus.Metric) {
	g.read(func(label string, v float64) {
		ch <- prometheus.MustNewConstMetric(g.desc, prometheus.GaugeValue, v, label)
	})
}
