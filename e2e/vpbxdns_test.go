package e2e

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"callgate/sip/resolve/dnstest"
	"callgate/sip/siptest"

	"github.com/emiago/sipgo"
)

// dnsTTL is the TTL of every record the tests' DNS server gives: callgate
// must follow a change within about that.
const dnsTTL = 2

// zone writes the records of vpbx.test: its SIP SRV records, one per
// target ("name:port" with a priority, in order), the targets' addresses,
// and the name's own A records (what trusted_sources = ["vpbx.test"]
// trusts besides the SRV targets).
type zoneTarget struct {
	name     string // a.vpbx.test
	addr     string // 127.0.0.1:5070
	priority int
}

func zone(targets ...zoneTarget) []string {
	var rrs []string
	for _, tg := range targets {
		host, port, _ := net.SplitHostPort(tg.addr)
		rrs = append(rrs,
			fmt.Sprintf("_sip._udp.vpbx.test. %d IN SRV %d 1 %s %s.", dnsTTL, tg.priority, port, tg.name),
			fmt.Sprintf("%s. %d IN A %s", tg.name, dnsTTL, host),
			fmt.Sprintf("vpbx.test. %d IN A %s", dnsTTL, host))
	}
	return rrs
}

// dnsOffice is callgate registering sales1 at "vpbx.test", a name only
// the test's DNS server knows, which also names the trusted sources.
func dnsOffice(t *testing.T, dns *dnstest.Server, vpbx *siptest.VPBX) *office {
	t.Helper()
	cfg := newDaemonConfig(t, "")
	port := portBlock(t, 100)
	cfg.Extra = fmt.Sprintf(`[upstream]
registrar = "vpbx.test"
domain = "vpbx.test"
trusted_sources = ["vpbx.test"]
expires = "300s"
register_timeout = "3s"
failover_timeout = "1s"
retry_min = "400ms"
retry_max = "2s"
[[upstream.account]]
user = "sales1"
password = "Secret123"
employee = "ivanov"
[dns]
servers = [%q]
[media]
rtp_ports = "%d-%d"
bind = "127.0.0.1"
[calls]
ring_timeout = "3s"
[recording]
dir = %q
min_free = "0"
`, dns.Addr(), port, port+99, filepath.Join(cfg.DataDir, "recordings"))
	o := &office{t: t, d: startDaemon(t, cfg), vpbx: vpbx, phones: map[string]*siptest.Phone{}}
	for ext, pass := range map[string]string{"101": "Phone101pass", "102": "Phone101pass"} {
		p := newPhone(t, o.d, siptest.PhoneConfig{User: ext, Password: pass})
		mustRegister(t, p)
		o.phones[ext] = p
	}
	return o
}

func newVPBXAt(t *testing.T, listen string) *siptest.VPBX {
	t.Helper()
	v, err := siptest.NewVPBX(siptest.VPBXConfig{Listen: listen, Domain: "vpbx.test", Accounts: map[string]string{"sales1": "Secret123"},
		Grant: 300, ChallengeInvites: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(v.Close)
	return v
}

func newDNS(t *testing.T, records ...string) *dnstest.Server {
	t.Helper()
	s, err := dnstest.New()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	if err := s.Set(records...); err != nil {
		t.Fatal(err)
	}
	return s
}

// The VPBX as Mango gives it, by name: callgate finds it through SRV and
// A records on a DNS server of the test's, admits its calls because the
// trusted source is the same name, follows it when the records move it,
// and sends an outbound call to the second SRV target when the first
// does not answer.
func TestVPBXByDNSName(t *testing.T) {
	vpbxA := newVPBXAt(t, "127.0.0.1:0")
	vpbxB := newVPBXAt(t, "127.0.0.2:0")
	dns := newDNS(t, zone(zoneTarget{"a.vpbx.test", vpbxA.Addr(), 10})...)
	o := dnsOffice(t, dns, vpbxA)
	ctx := withTimeout(t, 90*time.Second)

	// Registered by name, at the SRV target.
	o.d.waitMetric(`callgate_upstream_registered{account="sales1"}`, 1, 10*time.Second)
	if r, ok := vpbxA.Binding("sales1"); !ok || !r.Authorized {
		t.Fatalf("the VPBX found by SRV has no registration: %+v", r)
	}
	if sdns := dns.Asked("_sip._udp.vpbx.test", "SRV"); sdns == 0 {
		t.Fatal("callgate did not ask for the SRV records")
	}
	// An inbound call from the VPBX's address is trusted through the name.
	o.shortCall(ctx, "sales1", "79161234567")

	// The records move the VPBX to B: callgate registers there after the
	// TTL, without waiting for its refresh (300 s), and trusts B's address.
	dns.MustSet(zone(zoneTarget{"b.vpbx.test", vpbxB.Addr(), 10})...)
	moved := time.Now()
	o.d.waitFor("registration at the VPBX's new address", 4*dnsTTL*time.Second+5*time.Second, func() bool {
		r, ok := vpbxB.Binding("sales1")
		return ok && r.Authorized
	})
	if took := time.Since(moved); took < time.Second {
		t.Fatalf("followed after %s, before the records expired", took)
	}
	o.d.waitFor("B's address trusted", 4*dnsTTL*time.Second, func() bool {
		return o.d.logLine(`msg="trusted source resolved"`, "name=vpbx.test", "addresses=[127.0.0.2]")
	})
	o.vpbx = vpbxB
	o.shortCall(ctx, "sales1", "79161234568")
	if rec := o.lastCall(); rec.Direction != "inbound" || rec.Account != "sales1" {
		t.Fatalf("call from the moved VPBX recorded as %+v", rec)
	}

	// Two SRV targets, the first (A, priority 10) dead: an outbound call
	// reaches B after the failover timeout.
	vpbxA.Close()
	deadA, err := net.ListenPacket("udp", vpbxA.Addr())
	if err != nil {
		t.Fatalf("take over the dead VPBX's port: %v", err)
	}
	defer deadA.Close()
	asked := dns.Asked("_sip._udp.vpbx.test", "SRV")
	dns.MustSet(zone(zoneTarget{"a.vpbx.test", vpbxA.Addr(), 10}, zoneTarget{"b.vpbx.test", vpbxB.Addr(), 20})...)
	o.d.waitFor("the new SRV records asked for", 4*dnsTTL*time.Second, func() bool { return dns.Asked("_sip._udp.vpbx.test", "SRV") > asked })
	time.Sleep(dnsTTL * time.Second) // every cached answer of before has expired

	lostAt := make(chan time.Time, 1)
	go func() {
		buf := make([]byte, 65535)
		for {
			n, _, err := deadA.ReadFrom(buf)
			if err != nil {
				return
			}
			if strings.HasPrefix(string(buf[:n]), "INVITE sip:79161234567@") {
				select {
				case lostAt <- time.Now():
				default:
				}
			}
		}
	}()
	reached := make(chan time.Time, 1)
	go func() {
		select {
		case c := <-vpbxB.Calls:
			reached <- time.Now()
			_ = c.Reject(486, "Busy Here")
		case <-ctx.Done():
		}
	}()
	_, err = o.phones["101"].Dial(ctx, "79161234567", siptest.SDP("127.0.0.1:30900"))
	var de *sipgo.ErrDialogResponse
	if !errors.As(err, &de) || de.Res.StatusCode != 486 {
		t.Fatalf("outbound call: %v, want the 486 of the VPBX's second address", err)
	}
	var lost, got time.Time
	select {
	case lost = <-lostAt:
	default:
		t.Fatal("the INVITE did not go to the first SRV target first")
	}
	select {
	case got = <-reached:
	case <-time.After(5 * time.Second):
		t.Fatal("the second SRV target got no INVITE")
	}
	if gap := got.Sub(lost); gap < 900*time.Millisecond || gap > 3*time.Second {
		t.Fatalf("the second address got the INVITE %s after the first, want the failover timeout (1s)", gap)
	}
	if !strings.Contains(o.d.log.String(), "trying its next address") {
		t.Fatal("the failover is not in the log")
	}
}

// A VPBX name that does not resolve at start does not stop callgate: the
// account is not registered (metric, /readyz, admin page, log with the DNS
// error) and is retried until the records appear.
func TestVPBXNameUnresolvableAtStart(t *testing.T) {
	vpbx := newVPBXAt(t, "127.0.0.1:0")
	dns := newDNS(t)
	o := dnsOffice(t, dns, vpbx)
	d := o.d

	d.waitFor("the DNS error in the log", 10*time.Second, func() bool {
		return d.logLine(`msg="upstream registration"`, "account=sales1", "state=backoff", "vpbx.test has no address in DNS (NXDOMAIN)")
	})
	if v := d.metric(`callgate_upstream_registered{account="sales1"}`); v != 0 {
		t.Fatalf("callgate_upstream_registered = %v, want 0", v)
	}
	res, body := d.do(t, "GET", "/readyz", testToken)
	var ready struct {
		Ready  bool
		Failed map[string]string
	}
	if err := json.Unmarshal(body, &ready); err != nil || res.StatusCode != 503 || ready.Ready || !strings.Contains(ready.Failed["upstream"], "NXDOMAIN") {
		t.Fatalf("/readyz %d %s", res.StatusCode, body)
	}
	res, body = d.do(t, "GET", "/api/v1/admin", testToken)
	if res.StatusCode != 200 || !strings.Contains(string(body), `"state":"backoff"`) || !strings.Contains(string(body), "NXDOMAIN") {
		t.Fatalf("admin page %d %s", res.StatusCode, body)
	}

	dns.MustSet(zone(zoneTarget{"sip.vpbx.test", vpbx.Addr(), 10})...)
	d.waitMetric(`callgate_upstream_registered{account="sales1"}`, 1, 15*time.Second)
	d.waitFor("ready", 5*time.Second, func() bool {
		res, err := d.get("/readyz", false)
		if err != nil {
			return false
		}
		res.Body.Close()
		return res.StatusCode == 200
	})
	res, body = d.do(t, "GET", "/api/v1/admin", testToken)
	if want := `"target":"udp:` + vpbx.Addr() + `"`; res.StatusCode != 200 || !strings.Contains(string(body), want) {
		t.Fatalf("admin page does not show where sales1 is registered (%s): %s", want, body)
	}
}

// logLine reports whether one line of the daemon's log holds every part.
func (d *daemon) logLine(parts ...string) bool {
	for _, l := range strings.Split(d.log.String(), "\n") {
		all := true
		for _, p := range parts {
			all = all && strings.Contains(l, p)
		}
		if all {
			return true
		}
	}
	return false
}
