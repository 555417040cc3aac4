package config

import (
	"fmt"
	"time"
)

// Hints for the VPBX's addresses, as Mango Office gives them: a host name
// per customer (its addresses may change, so DNS is asked again as its
// records expire).
const (
	upstreamAddrHint = `the VPBX's SIP host name as its web console shows it, e.g. registrar = "vpbx400000000.mangosip.ru" ` +
		`(SRV, then A records), or "udp:HOST:PORT", "tcp:HOST:PORT", "HOST:PORT" with a host name or IP address`
	trustedSourcesHint = `list where the VPBX's requests come from: its host name (the registrar's), e.g. ["vpbx400000000.mangosip.ru"], ` +
		`and/or its published signalling networks or addresses, e.g. ["81.88.86.0/24"]`
)

// upstreamAddrs checks upstream.registrar, upstream.proxy,
// upstream.trusted_sources and upstream.failover_timeout.
func (v *validator) upstreamAddrs(u *Upstream) {
	if err := u.Registrar.err; err != nil {
		v.bad("upstream.registrar", upstreamAddrHint, "%v", err)
	}
	if err := u.Proxy.err; err != nil {
		v.bad("upstream.proxy", upstreamAddrHint, "%v", err)
	}
	for i, s := range u.TrustedSources {
		if s.err != nil {
			v.bad(fmt.Sprintf("upstream.trusted_sources[%d]", i), trustedSourcesHint, "%v", s.err)
		}
	}
	v.between("upstream.failover_timeout", u.FailoverTimeout.D(), 100*time.Millisecond, 30*time.Second)
}

// dns checks the [dns] table.
func (v *validator) dns(d *DNS) {
	for i, s := range d.Servers {
		if s.err != nil {
			v.bad(fmt.Sprintf("dns.servers[%d]", i), `a DNS server's address, e.g. servers = ["192.168.1.1", "127.0.0.1:5353"]; leave it out to use /etc/resolv.conf`, "%v", s.err)
		}
	}
}
