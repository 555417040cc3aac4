package config

import (
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"callgate/sip/sipnet"
)

// The VPBX may be written the way Mango gives it (a host name) or as an
// address, with or without transport and port.
func TestUpstreamAddrForms(t *testing.T) {
	for _, c := range []struct {
		in, want string
		tr       sipnet.Transport
		host     string
		port     uint16
		ip       bool
	}{
		{"vpbx400000000.mangosip.ru", "vpbx400000000.mangosip.ru", "", "vpbx400000000.mangosip.ru", 0, false},
		{"VPBX400000000.MangoSIP.ru.", "vpbx400000000.mangosip.ru", "", "vpbx400000000.mangosip.ru", 0, false},
		{"udp:vpbx400000000.mangosip.ru:5060", "udp:vpbx400000000.mangosip.ru:5060", sipnet.UDP, "vpbx400000000.mangosip.ru", 5060, false},
		{"TCP:vpbx.test", "tcp:vpbx.test", sipnet.TCP, "vpbx.test", 0, false},
		{"vpbx.test:5070", "vpbx.test:5070", "", "vpbx.test", 5070, false},
		{"localhost", "localhost", "", "localhost", 0, false},
		{"udp:81.88.86.55:5060", "udp:81.88.86.55:5060", sipnet.UDP, "81.88.86.55", 5060, true},
		{"81.88.86.55", "81.88.86.55", "", "81.88.86.55", 0, true},
		{"tcp:[2001:db8::1]:5060", "tcp:[2001:db8::1]:5060", sipnet.TCP, "2001:db8::1", 5060, true},
		{"[2001:db8::1]", "[2001:db8::1]", "", "2001:db8::1", 0, true},
		{"2001:db8::1", "[2001:db8::1]", "", "2001:db8::1", 0, true},
		{"sip_1.vpbx-2.test", "sip_1.vpbx-2.test", "", "sip_1.vpbx-2.test", 0, false},
	} {
		u, err := ParseUpstreamAddr(c.in)
		if err != nil {
			t.Errorf("%q: %v", c.in, err)
			continue
		}
		if u.String() != c.want || u.Transport != c.tr || u.Host != c.host || u.Port != c.port || u.IP.IsValid() != c.ip || !u.IsSet() {
			t.Errorf("%q: %q %+v", c.in, u.String(), u)
		}
	}
	for in, want := range map[string]string{
		"tls:vpbx.test":                   `transport "tls" is not supported`,
		"udp:vpbx.test:0":                 `port "0" is not 1-65535`,
		"vpbx.test:70000":                 `port "70000" is not 1-65535`,
		"vpbx.test:sip":                   `port "sip" is not 1-65535`,
		"vpbx..test":                      `"vpbx..test" is not a host name or IP address`,
		"-vpbx.test":                      `is not a host name`,
		"10.0.0":                          `"10.0.0" is not a host name or IP address`,
		"vpbx test":                       `is not a host name`,
		"udp:":                            `"" is not a host name`,
		"0.0.0.0:5060":                    `is not an address a request can be sent to`,
		"[fe80::1%eth0]:5060":             `is not an address a request can be sent to`,
		strings.Repeat("a", 64) + ".test": "is not a host name",
	} {
		if _, err := ParseUpstreamAddr(in); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: %v, want %q", in, err, want)
		}
	}
	if u, err := ParseUpstreamAddr(""); err != nil || u.IsSet() {
		t.Errorf("empty: %v %+v", err, u)
	}
}

// [dns] servers, trusted sources by name and the failover timeout are
// read, with defaults; upstream.registrar takes Mango's host name.
func TestDNSAndNamedUpstream(t *testing.T) {
	c, err := Parse("ok.toml", []byte(goodBase))
	if err != nil {
		t.Fatal(err)
	}
	if len(c.DNS.Servers) != 0 || c.Upstream.FailoverTimeout.D() != 2*time.Second {
		t.Fatalf("defaults: dns %v, failover_timeout %s", c.DNS.Servers, c.Upstream.FailoverTimeout.D())
	}
	doc := strings.Replace(goodBase, `registrar = "udp:127.0.0.1:5070"`, `registrar = "vpbx400000000.mangosip.ru"
failover_timeout = "500ms"`, 1)
	doc = strings.Replace(doc, `trusted_sources = ["127.0.0.1/32"]`, `trusted_sources = ["vpbx400000000.mangosip.ru", "81.88.86.0/24", "81.88.87.5", "2001:db8::/32"]`, 1)
	doc += "[dns]\nservers = [\"192.168.1.1\", \"127.0.0.1:5353\", \"[::1]:53\"]\n"
	c, err = Parse("named.toml", []byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	if r := c.Upstream.Registrar; r.Host != "vpbx400000000.mangosip.ru" || r.Port != 0 || r.Transport != "" || r.IP.IsValid() {
		t.Fatalf("registrar %+v", r)
	}
	if c.Upstream.FailoverTimeout.D() != 500*time.Millisecond {
		t.Fatalf("failover_timeout %s", c.Upstream.FailoverTimeout.D())
	}
	ts := c.Upstream.TrustedSources
	if h := ts.Hosts(); !slices.Equal(h, []string{"vpbx400000000.mangosip.ru"}) {
		t.Fatalf("hosts %v", h)
	}
	wantP := []netip.Prefix{netip.MustParsePrefix("81.88.86.0/24"), netip.MustParsePrefix("81.88.87.5/32"), netip.MustParsePrefix("2001:db8::/32")}
	if p := ts.Prefixes(); !slices.Equal(p, wantP) {
		t.Fatalf("prefixes %v", p)
	}
	wantS := []netip.AddrPort{netip.MustParseAddrPort("192.168.1.1:53"), netip.MustParseAddrPort("127.0.0.1:5353"), netip.MustParseAddrPort("[::1]:53")}
	if s := c.DNS.Addrs(); !slices.Equal(s, wantS) {
		t.Fatalf("dns servers %v", s)
	}
}

// Every bad value of the new keys is reported at its line with a hint,
// all in one run.
func TestDNSProblemsReported(t *testing.T) {
	doc := strings.Replace(goodBase, `registrar = "udp:127.0.0.1:5070"`, `registrar = "udp:vpbx..mangosip.ru"
proxy = "tls:vpbx.test"
failover_timeout = "1m"`, 1)
	doc = strings.Replace(doc, `trusted_sources = ["127.0.0.1/32"]`, `trusted_sources = ["vpbx.test", "81.88.86.0/33"]`, 1)
	doc += "[dns]\nservers = [\"192.168.1.1\", \"dns.example\", \"127.0.0.1:0\"]\n"
	_, err := Parse("bad.toml", []byte(doc))
	if err == nil {
		t.Fatal("no error")
	}
	for _, want := range []string{
		`bad.toml:5: upstream.registrar: "vpbx..mangosip.ru" is not a host name or IP address (hint: the VPBX's SIP host name`,
		`bad.toml:6: upstream.proxy: transport "tls" is not supported`,
		`bad.toml:7: upstream.failover_timeout: 1m0s is out of range`,
		`bad.toml:9: upstream.trusted_sources[1]: "81.88.86.0/33" is not a network, an IP address or a host name (hint: list where the VPBX's requests come from`,
		`bad.toml:19: dns.servers[1]: "dns.example" is not IP or IP:PORT`,
		`bad.toml:19: dns.servers[2]: port must not be 0`,
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("missing %q in:\n%v", want, err)
		}
	}
	if strings.Contains(err.Error(), "dns.servers[0]") || strings.Contains(err.Error(), "trusted_sources[0]") {
		t.Errorf("a good value reported:\n%v", err)
	}
	// Accounts need a registrar, and trusted sources; the hints say what Mango gives.
	noReg := strings.Replace(strings.Replace(goodBase, `registrar = "udp:127.0.0.1:5070"`, ``, 1), `trusted_sources = ["127.0.0.1/32"]`, ``, 1)
	_, err = Parse("none.toml", []byte(noReg))
	for _, want := range []string{`upstream.registrar: is required when accounts are configured (hint: the VPBX's SIP host name as its web console shows it, e.g. registrar = "vpbx400000000.mangosip.ru"`,
		`upstream.trusted_sources: is required when accounts are configured (hint: list where the VPBX's requests come from: its host name (the registrar's), e.g. ["vpbx400000000.mangosip.ru"]`} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("missing %q in:\n%v", want, err)
		}
	}
}

// FuzzUpstreamValues: any text either parses into a value that writes
// back to itself (parsed again, the same), or is refused with a reason;
// the same for trusted sources and DNS servers.
func FuzzUpstreamValues(f *testing.F) {
	for _, s := range []string{"vpbx400000000.mangosip.ru", "udp:vpbx.test:5060", "tcp:[::1]:5061", "2001:db8::1", "[::1]",
		"81.88.86.0/24", "127.0.0.1:5353", "tls:x", "udp:", ":", "a..b", "1.2.3", "x:0", "[fe80::1%eth0]:5060"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		u := parseUpstreamAddr(s)
		if u.err == nil && u.IsSet() {
			again := parseUpstreamAddr(u.String())
			if again.err != nil || again.String() != u.String() || again.Host != u.Host || again.Port != u.Port || again.Transport != u.Transport {
				t.Fatalf("%q -> %q -> %+v", s, u.String(), again)
			}
			if u.IP.IsValid() == validHostName(u.Host) && !u.IP.IsValid() {
				t.Fatalf("%q: host %q neither address nor name", s, u.Host)
			}
		}
		if u.err == nil && !u.IsSet() && s != "" {
			t.Fatalf("%q: no error, not set", s)
		}
		src := parseSource(s)
		if src.err == nil && (src.Prefix.IsValid() == (src.Host != "")) {
			t.Fatalf("source %q: %+v", s, src)
		}
		if src.err == nil && parseSource(src.String()).String() != src.String() {
			t.Fatalf("source %q -> %q", s, src.String())
		}
		d := parseDNSServer(s)
		if d.err == nil && (!d.Addr.IsValid() || d.Addr.Port() == 0) {
			t.Fatalf("dns server %q: %v", s, d.Addr)
		}
	})
}
