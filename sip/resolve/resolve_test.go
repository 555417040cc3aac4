package resolve

import (
	"context"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"callgate/sip/resolve/dnstest"
	"callgate/sip/sipnet"
)

// clock is a settable time for the cache.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// setup starts a DNS server and a resolver asking only it, with a hosts
// file of its own (empty unless hosts is given) and a settable clock.
func setup(t *testing.T, hosts string, records ...string) (*dnstest.Server, *Resolver, *clock) {
	t.Helper()
	srv, err := dnstest.New()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	if err := srv.Set(records...); err != nil {
		t.Fatal(err)
	}
	hostsPath := filepath.Join(t.TempDir(), "hosts")
	if err := os.WriteFile(hostsPath, []byte(hosts), 0o600); err != nil {
		t.Fatal(err)
	}
	r := New(Config{Servers: []netip.AddrPort{netip.MustParseAddrPort(srv.Addr())}, Hosts: hostsPath, Timeout: 300 * time.Millisecond})
	c := &clock{t: time.Now()}
	r.now = c.now
	return srv, r, c
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	t.Cleanup(cancel)
	return c
}

func targets(specs ...string) []sipnet.Target {
	out := make([]sipnet.Target, len(specs))
	for i, s := range specs {
		tr, ap, _ := strings.Cut(s, ":")
		out[i] = sipnet.Target{Transport: sipnet.Transport(tr), Addr: netip.MustParseAddrPort(ap)}
	}
	return out
}

func mustLookup(t *testing.T, r *Resolver, n Name) []sipnet.Target {
	t.Helper()
	got, err := r.Lookup(ctx(t), n)
	if err != nil {
		t.Fatalf("Lookup(%s): %v", n, err)
	}
	return got
}

func wantTargets(t *testing.T, got []sipnet.Target, want ...string) {
	t.Helper()
	if w := targets(want...); !slices.Equal(got, w) {
		t.Fatalf("targets %v, want %v", got, w)
	}
}

// A bare name: SRV records of every transport in priority order, each
// target's A and AAAA records (IPv4 first), UDP's before TCP's.
func TestBareNameFollowsSRVByPriority(t *testing.T) {
	srv, r, _ := setup(t, "",
		"_sip._udp.vpbx.test. 60 IN SRV 20 1 5070 b.vpbx.test.",
		"_sip._udp.vpbx.test. 60 IN SRV 10 1 5060 a.vpbx.test.",
		"_sip._tcp.vpbx.test. 60 IN SRV 10 1 5080 a.vpbx.test.",
		"a.vpbx.test. 60 IN A 127.0.0.1",
		"a.vpbx.test. 60 IN AAAA ::1",
		"b.vpbx.test. 60 IN A 127.0.0.2",
		"vpbx.test. 60 IN A 127.0.0.99",
	)
	got := mustLookup(t, r, Name{Host: "vpbx.test"})
	wantTargets(t, got, "udp:127.0.0.1:5060", "udp:[::1]:5060", "udp:127.0.0.2:5070", "tcp:127.0.0.1:5080", "tcp:[::1]:5080")
	if srv.Asked("vpbx.test", "A") != 0 {
		t.Fatal("the name's own A record was asked although it has SRV records")
	}
	// A transport given: only its SRV records.
	got = mustLookup(t, r, Name{Transport: sipnet.TCP, Host: "VPBX.test."})
	wantTargets(t, got, "tcp:127.0.0.1:5080", "tcp:[::1]:5080")
	// IPv4 sockets only: no IPv6 targets.
	r.cfg.IPv4Only = true
	got = mustLookup(t, r, Name{Host: "vpbx.test"})
	wantTargets(t, got, "udp:127.0.0.1:5060", "udp:127.0.0.2:5070", "tcp:127.0.0.1:5080")
	srv.MustSet("v6.test. 60 IN AAAA ::1")
	if _, err := r.Lookup(ctx(t), Name{Host: "v6.test", Port: 5060}); err == nil || !strings.Contains(err.Error(), "only IPv6") {
		t.Fatalf("IPv6-only name on IPv4 sockets: %v", err)
	}
}

// A name with a port is an address lookup: no SRV question.
func TestNameWithPortAsksAddressesOnly(t *testing.T) {
	srv, r, _ := setup(t, "",
		"_sip._udp.vpbx.test. 60 IN SRV 10 1 5999 a.vpbx.test.",
		"vpbx.test. 60 IN A 127.0.0.3",
	)
	got := mustLookup(t, r, Name{Host: "vpbx.test", Port: 5062})
	wantTargets(t, got, "udp:127.0.0.3:5062")
	got = mustLookup(t, r, Name{Transport: sipnet.TCP, Host: "vpbx.test", Port: 5062})
	wantTargets(t, got, "tcp:127.0.0.3:5062")
	if n := srv.Asked("_sip._udp.vpbx.test", "SRV") + srv.Asked("_sip._tcp.vpbx.test", "SRV"); n != 0 {
		t.Fatalf("%d SRV questions for a name with a port", n)
	}
}

// No SRV records: the name's addresses at 5060 over UDP (RFC 3263 §4.2);
// an IP address needs no DNS at all.
func TestNoSRVMeansAddressesAt5060(t *testing.T) {
	srv, r, _ := setup(t, "", "vpbx.test. 60 IN A 127.0.0.4")
	wantTargets(t, mustLookup(t, r, Name{Host: "vpbx.test"}), "udp:127.0.0.4:5060")
	before := srv.Asked("vpbx.test", "A")
	wantTargets(t, mustLookup(t, r, Name{Host: "127.0.0.8"}), "udp:127.0.0.8:5060")
	wantTargets(t, mustLookup(t, r, Name{Transport: sipnet.TCP, Host: "::1", Port: 5070}), "tcp:[::1]:5070")
	if srv.Asked("vpbx.test", "A") != before || srv.Asked("127.0.0.8", "A") != 0 {
		t.Fatal("an IP address was looked up in DNS")
	}
}

// A name DNS does not know is an error that says so; a name whose SRV
// records point nowhere too.
func TestUnknownNameIsNotFound(t *testing.T) {
	_, r, _ := setup(t, "", "_sip._udp.dangling.test. 60 IN SRV 10 1 5060 nowhere.test.")
	_, err := r.Lookup(ctx(t), Name{Host: "vpbx.test"})
	if !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), "vpbx.test") || !strings.Contains(err.Error(), "NXDOMAIN") {
		t.Fatalf("unknown name: %v", err)
	}
	if _, err := r.Lookup(ctx(t), Name{Host: "dangling.test"}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("SRV to a name without address: %v", err)
	}
}

// Answers are cached for their TTL and asked again once it has passed.
func TestCacheFollowsTTL(t *testing.T) {
	srv, r, clk := setup(t, "",
		"_sip._udp.vpbx.test. 30 IN SRV 10 1 5060 a.vpbx.test.",
		"a.vpbx.test. 10 IN A 127.0.0.1",
	)
	wantTargets(t, mustLookup(t, r, Name{Host: "vpbx.test"}), "udp:127.0.0.1:5060")
	srv.MustSet(
		"_sip._udp.vpbx.test. 30 IN SRV 10 1 5070 a.vpbx.test.",
		"a.vpbx.test. 10 IN A 127.0.0.2",
	)
	clk.add(9 * time.Second)
	wantTargets(t, mustLookup(t, r, Name{Host: "vpbx.test"}), "udp:127.0.0.1:5060")
	if n := srv.Asked("a.vpbx.test", "A"); n != 1 {
		t.Fatalf("asked %d times within the TTL", n)
	}
	clk.add(2 * time.Second) // the A record expired, the SRV not yet
	wantTargets(t, mustLookup(t, r, Name{Host: "vpbx.test"}), "udp:127.0.0.2:5060")
	clk.add(20 * time.Second)
	wantTargets(t, mustLookup(t, r, Name{Host: "vpbx.test"}), "udp:127.0.0.2:5070")
	if n := srv.Asked("_sip._udp.vpbx.test", "SRV"); n != 2 {
		t.Fatalf("SRV asked %d times, want 2", n)
	}
}

// A DNS server that fails keeps the last answer in use (and it is asked
// again soon); a name DNS says is gone is gone.
func TestStaleAnswerWhileDNSFails(t *testing.T) {
	srv, r, clk := setup(t, "", "vpbx.test. 5 IN A 127.0.0.1")
	n := Name{Host: "vpbx.test", Port: 5060}
	wantTargets(t, mustLookup(t, r, n), "udp:127.0.0.1:5060")
	srv.SetMode(dnstest.ServFail)
	clk.add(6 * time.Second)
	wantTargets(t, mustLookup(t, r, n), "udp:127.0.0.1:5060")
	asked := srv.Asked("vpbx.test", "A")
	wantTargets(t, mustLookup(t, r, n), "udp:127.0.0.1:5060")
	if srv.Asked("vpbx.test", "A") != asked {
		t.Fatal("a failing server asked again at once")
	}
	clk.add(staleRetry + time.Second)
	srv.SetMode(dnstest.Answer)
	srv.MustSet()
	if _, err := r.Lookup(ctx(t), n); !errors.Is(err, ErrNotFound) {
		t.Fatalf("removed name: %v", err)
	}
	// Without an earlier answer a failure is an error.
	srv.SetMode(dnstest.ServFail)
	if _, err := r.Lookup(ctx(t), Name{Host: "other.test", Port: 5060}); err == nil || !strings.Contains(err.Error(), "SERVFAIL") {
		t.Fatalf("failing server: %v", err)
	}
}

// The hosts file comes first: a pinned name needs no DNS, not even SRV,
// and localhost resolves without any DNS server.
func TestHostsFileFirst(t *testing.T) {
	srv, r, clk := setup(t, "127.0.0.9 pinned.test pinned # the admin's\n::1 pinned.test\n",
		"pinned.test. 60 IN A 127.0.0.1",
		"_sip._udp.pinned.test. 60 IN SRV 10 1 5999 pinned.test.",
	)
	wantTargets(t, mustLookup(t, r, Name{Host: "Pinned.Test"}), "udp:127.0.0.9:5060", "udp:[::1]:5060")
	wantTargets(t, mustLookup(t, r, Name{Host: "pinned", Port: 5070}), "udp:127.0.0.9:5070")
	if n := srv.Asked("pinned.test", "A") + srv.Asked("_sip._udp.pinned.test", "SRV"); n != 0 {
		t.Fatalf("%d DNS questions for a pinned name", n)
	}
	// The file is read again when it changes.
	if err := os.WriteFile(r.cfg.Hosts, []byte("127.0.0.10 pinned.test\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	future := time.Now().Add(time.Minute)
	if err := os.Chtimes(r.cfg.Hosts, future, future); err != nil {
		t.Fatal(err)
	}
	clk.add(hostsCheck)
	wantTargets(t, mustLookup(t, r, Name{Host: "pinned.test"}), "udp:127.0.0.10:5060")

	hosts := filepath.Join(t.TempDir(), "hosts")
	if err := os.WriteFile(hosts, []byte("127.0.0.1 localhost\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	offline := New(Config{ResolvConf: filepath.Join(t.TempDir(), "missing"), Hosts: hosts})
	wantTargets(t, mustLookup(t, offline, Name{Host: "localhost"}), "udp:127.0.0.1:5060")
	if _, err := offline.Lookup(ctx(t), Name{Host: "vpbx.test"}); err == nil || !strings.Contains(err.Error(), "no DNS server") {
		t.Fatalf("no DNS server: %v", err)
	}
}

// An address that did not answer goes last for DownFor, and the names
// are asked again.
func TestUnreachableGoesLast(t *testing.T) {
	srv, r, clk := setup(t, "",
		"_sip._udp.vpbx.test. 60 IN SRV 10 1 5060 a.vpbx.test.",
		"_sip._udp.vpbx.test. 60 IN SRV 20 1 5070 b.vpbx.test.",
		"a.vpbx.test. 60 IN A 127.0.0.1",
		"b.vpbx.test. 60 IN A 127.0.0.2",
	)
	svc := r.Service(Name{Transport: sipnet.UDP, Host: "vpbx.test"})
	got, err := svc.Targets(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	wantTargets(t, got, "udp:127.0.0.1:5060", "udp:127.0.0.2:5070")
	svc.Unreachable(got[0])
	got, _ = svc.Targets(ctx(t))
	wantTargets(t, got, "udp:127.0.0.2:5070", "udp:127.0.0.1:5060")
	if n := srv.Asked("_sip._udp.vpbx.test", "SRV"); n != 2 {
		t.Fatalf("SRV asked %d times, want again after the failure", n)
	}
	clk.add(r.cfg.DownFor + time.Second)
	got, _ = svc.Targets(ctx(t))
	wantTargets(t, got, "udp:127.0.0.1:5060", "udp:127.0.0.2:5070")
	if svc.String() != "udp:vpbx.test" {
		t.Fatalf("String %q", svc.String())
	}
	var none *Service
	if _, err := none.Targets(ctx(t)); err == nil {
		t.Fatal("a nil service has targets")
	}
}

// A truncated answer is asked again over TCP; a server that does not
// answer gives way to the next.
func TestTruncationAndSecondServer(t *testing.T) {
	srv, r, _ := setup(t, "", "vpbx.test. 60 IN A 127.0.0.5")
	srv.TruncateUDP(true)
	wantTargets(t, mustLookup(t, r, Name{Host: "vpbx.test", Port: 5060}), "udp:127.0.0.5:5060")

	dead, err := dnstest.New()
	if err != nil {
		t.Fatal(err)
	}
	defer dead.Close()
	dead.SetMode(dnstest.Silent)
	two := New(Config{Servers: []netip.AddrPort{netip.MustParseAddrPort(dead.Addr()), netip.MustParseAddrPort(srv.Addr())},
		Hosts: "-", Timeout: 200 * time.Millisecond})
	wantTargets(t, mustLookup(t, two, Name{Host: "vpbx.test", Port: 5060}), "udp:127.0.0.5:5060")
	if dead.Asked("vpbx.test", "A") == 0 {
		t.Fatal("the first server was not asked")
	}
}

// The nameservers of resolv.conf are used when none are configured.
func TestResolvConf(t *testing.T) {
	srv, err := dnstest.New()
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	srv.MustSet("vpbx.test. 60 IN A 127.0.0.6")
	ap := netip.MustParseAddrPort(srv.Addr())
	conf := filepath.Join(t.TempDir(), "resolv.conf")
	if err := os.WriteFile(conf, []byte("nameserver "+ap.Addr().String()+"\noptions timeout:1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	r := New(Config{ResolvConf: conf, Hosts: "-"})
	if got := r.Servers(); len(got) != 1 || got[0] != ap.Addr().String()+":53" {
		t.Fatalf("servers %v", got)
	}
}

// Within a priority the weights share the first place (RFC 2782).
func TestSRVWeights(t *testing.T) {
	_, r, _ := setup(t, "",
		"_sip._udp.vpbx.test. 60 IN SRV 10 9 5060 a.vpbx.test.",
		"_sip._udp.vpbx.test. 60 IN SRV 10 1 5070 a.vpbx.test.",
		"_sip._udp.vpbx.test. 60 IN SRV 10 0 5080 a.vpbx.test.",
		"_sip._udp.vpbx.test. 60 IN SRV 30 0 5090 .",
		"a.vpbx.test. 60 IN A 127.0.0.1",
	)
	first := map[uint16]int{}
	const n = 2000
	for range n {
		got := mustLookup(t, r, Name{Transport: sipnet.UDP, Host: "vpbx.test"})
		if len(got) != 3 {
			t.Fatalf("targets %v: the \".\" target must be left out", got)
		}
		first[got[0].Addr.Port()]++
	}
	// Expected shares 9/11, 1/11, 1/11 (weight 0 wins only on a draw of 0).
	if first[5060] < n*70/100 || first[5060] > n*90/100 || first[5070] < n*4/100 || first[5070] > n*15/100 || first[5080] > n*15/100 {
		t.Fatalf("first places %v", first)
	}
}

func TestName(t *testing.T) {
	for n, want := range map[Name]string{
		{Host: "vpbx.test"}: "vpbx.test",
		{Transport: sipnet.TCP, Host: "vpbx.test", Port: 5}: "tcp:vpbx.test:5",
		{Host: "::1", Port: 5060}:                           "[::1]:5060",
	} {
		if got := n.String(); got != want {
			t.Errorf("%#v: %q, want %q", n, got, want)
		}
	}
}

func TestFixed(t *testing.T) {
	f := Fixed(targets("udp:127.0.0.1:5060"))
	if got, err := f.Targets(ctx(t)); err != nil || len(got) != 1 {
		t.Fatalf("%v %v", got, err)
	}
	f.Unreachable(f[0])
	if _, err := Fixed(nil).Targets(ctx(t)); err == nil {
		t.Fatal("no targets, no error")
	}
}
