package config

import (
	"errors"
	"net/netip"
	"strings"
	"testing"

	"callgate/sip/sipnet"
)

// Addresses, ranges, sizes and networks are parsed once, when the file is
// decoded: what the parts read is the typed value.
func TestTypedValuesParsedOnDecode(t *testing.T) {
	doc := strings.Replace(goodBase, `listen = ["udp:127.0.0.1:5060"]`, `listen = ["udp:127.0.0.1:5060", "tcp:[::1]:5061", "127.0.0.2:5062"]
advertise = "192.168.1.10"
allow_networks = ["192.168.1.0/24"]
[media]
rtp_ports = "30000-30099"
bind = "127.0.0.1"
upstream_advertise = "198.51.100.7"
[recording]
min_free = "2GiB"
[console]
time_zone = "Asia/Yekaterinburg"`, 1)
	doc = strings.Replace(doc, `registrar = "udp:127.0.0.1:5070"`, `registrar = "udp:127.0.0.1:5070"
proxy = "tcp:127.0.0.1:5080"`, 1)
	c, err := Parse("typed.toml", []byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	want := []ListenAddr{
		{Transport: sipnet.UDP, Addr: netip.MustParseAddrPort("127.0.0.1:5060")},
		{Transport: sipnet.TCP, Addr: netip.MustParseAddrPort("[::1]:5061")},
		{Transport: sipnet.UDP, Addr: netip.MustParseAddrPort("127.0.0.2:5062")}, // udp by default
	}
	if len(c.SIP.Listen) != len(want) {
		t.Fatalf("listen = %v", c.SIP.Listen)
	}
	for i, w := range want {
		if got := c.SIP.Listen[i]; got.Transport != w.Transport || got.Addr != w.Addr {
			t.Errorf("listen[%d] = %s, want %s", i, got, w)
		}
	}
	if c.SIP.Advertise.Addr != netip.MustParseAddr("192.168.1.10") || c.Media.Advertise.IsSet() {
		t.Errorf("advertise: sip %s, media %s (unset)", c.SIP.Advertise, c.Media.Advertise)
	}
	if p := c.SIP.AllowNetworks.Prefixes(); len(p) != 1 || p[0] != netip.MustParsePrefix("192.168.1.0/24") {
		t.Errorf("allow_networks = %v", p)
	}
	if c.Media.RTPPorts.Lo != 30000 || c.Media.RTPPorts.Hi != 30099 || c.Media.Bind.Addr != netip.MustParseAddr("127.0.0.1") {
		t.Errorf("media: ports %s bind %s", c.Media.RTPPorts, c.Media.Bind)
	}
	if c.Media.UpstreamAdvertise.Addr != netip.MustParseAddr("198.51.100.7") {
		t.Errorf("upstream_advertise = %s", c.Media.UpstreamAdvertise)
	}
	if c.Recording.MinFree.Bytes != 2<<30 || c.Recording.MinFree.String() != "2GiB" {
		t.Errorf("min_free = %d (%s)", c.Recording.MinFree.Bytes, c.Recording.MinFree)
	}
	if z := c.Console.TimeZone; z.String() != "Asia/Yekaterinburg" || z.Location().String() != "Asia/Yekaterinburg" {
		t.Errorf("console.time_zone = %s (location %s)", z, z.Location())
	}
	if tg := c.Upstream.Target(); tg.Transport != sipnet.TCP || tg.Port != 5080 || tg.IP != netip.MustParseAddr("127.0.0.1") {
		t.Errorf("target = %s, want the proxy", tg)
	}
	c.Upstream.Proxy = UpstreamAddr{}
	if tg := c.Upstream.Target(); tg.String() != "udp:127.0.0.1:5070" {
		t.Errorf("target without a proxy = %s, want the registrar", tg)
	}
}

// Every bad typed value of a file is reported at once, at its line, not
// only the first one decoding meets.
func TestBadTypedValuesAllReported(t *testing.T) {
	doc := strings.Replace(goodBase, `listen = ["udp:127.0.0.1:5060"]`, `listen = ["udp:127.0.0.1:5060", "tls:127.0.0.1:5061", "udp:localhost:5060"]
advertise = "0.0.0.0"
allow_networks = ["192.168.1.0/24", "office"]
[media]
rtp_ports = "20001-20999"
bind = "any"
advertise = "10.0.0"
[recording]
min_free = "lots"
[console]
time_zone = "Europe/Atlantis"`, 1)
	doc = strings.Replace(doc, `registrar = "udp:127.0.0.1:5070"`, `registrar = "udp:127.0.0.1:0"
proxy = "ws:127.0.0.1:80"`, 1)
	doc = strings.Replace(doc, `trusted_sources = ["127.0.0.1/32"]`, `trusted_sources = ["127.0.0.1/33"]`, 1)
	_, err := Parse("bad.toml", []byte(doc))
	var cerr *Error
	if !errors.As(err, &cerr) {
		t.Fatalf("err = %v, want *Error", err)
	}
	for _, want := range []string{
		`bad.toml:3: sip.listen[1]: transport "tls" is not supported (hint: write "udp:IP:PORT" or "tcp:IP:PORT")`,
		`bad.toml:3: sip.listen[2]: "localhost:5060" is not IP:PORT`,
		`bad.toml:4: sip.advertise: "0.0.0.0" is not a usable IP address`,
		`bad.toml:5: sip.allow_networks[1]: "office" is not a CIDR`,
		`bad.toml:7: media.rtp_ports: the low port must be even`,
		`bad.toml:8: media.bind: "any" is not an IP address`,
		`bad.toml:9: media.advertise: "10.0.0" is not a usable IP address`,
		`bad.toml:11: recording.min_free: "lots" is not a size`,
		`bad.toml:13: console.time_zone: unknown time zone Europe/Atlantis (hint: an IANA zone, e.g. "Europe/Moscow")`,
		`upstream.registrar: port "0" is not 1-65535`,
		`upstream.proxy: transport "ws" is the browser phone's`,
		`upstream.trusted_sources[0]: "127.0.0.1/33" is not a network, an IP address or a host name`,
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("missing %q in:\n%v", want, err)
		}
	}
}

// A typed value written as a TOML number is read as its text: a size may
// be a plain number of bytes, and an address or range without quotes gets
// the same message as any other bad one.
func TestTypedValueWrittenAsNumber(t *testing.T) {
	c, err := Parse("n.toml", []byte(goodBase+"[recording]\nmin_free = 1024\n"))
	if err != nil || c.Recording.MinFree.Bytes != 1024 {
		t.Fatalf("min_free = 1024: %v, %d bytes", err, c.Recording.MinFree.Bytes)
	}
	for want, doc := range map[string]string{
		`sip.listen[0]: "5060" is not IP:PORT`:     strings.Replace(goodBase, `listen = ["udp:127.0.0.1:5060"]`, `listen = [5060]`, 1),
		`media.rtp_ports: "20000" is not LOW-HIGH`: goodBase + "[media]\nrtp_ports = 20000\n",
	} {
		if _, err := Parse("n.toml", []byte(doc)); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("err = %v, want %q", err, want)
		}
	}
	_, err = Parse("t.toml", []byte(goodBase+"[recording]\nmin_free = [1]\n"))
	if err == nil || !strings.Contains(err.Error(), "want a string") {
		t.Errorf("min_free = [1]: err = %v, want a type error asking for a string", err)
	}
}

// An empty address is no address: upstream.proxy = "" means no proxy.
func TestEmptyAddressIsUnset(t *testing.T) {
	doc := strings.Replace(goodBase, `registrar = "udp:127.0.0.1:5070"`, `registrar = "udp:127.0.0.1:5070"
proxy = ""`, 1)
	c, err := Parse("empty.toml", []byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	if c.Upstream.Proxy.IsSet() || c.Upstream.Target().Port != 5070 {
		t.Fatalf("proxy %q set, target %s", c.Upstream.Proxy, c.Upstream.Target())
	}
}
