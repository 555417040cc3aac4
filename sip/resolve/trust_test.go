package resolve

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"callgate/sip/resolve/dnstest"
	"callgate/sip/sipnet"
)

// A trusted name admits its own addresses and its SRV targets'; the set
// follows DNS when the records expire and keeps the last addresses while
// DNS fails.
func TestTrustFollowsDNS(t *testing.T) {
	srv, r, clk := setup(t, "",
		"vpbx.test. 5 IN A 127.0.0.1",
		"_sip._udp.vpbx.test. 5 IN SRV 10 1 5060 sip.vpbx.test.",
		"sip.vpbx.test. 5 IN A 127.0.0.2",
	)
	set := sipnet.NewNetworkSet(nil)
	fixed := sipnet.Networks{netip.MustParsePrefix("10.1.0.0/16")}
	tr := r.Trust(set, fixed, []string{"vpbx.test"}, nil)
	in := func(ip string) bool { return set.Contains(netip.MustParseAddr(ip)) }
	if !in("10.1.2.3") || in("127.0.0.1") {
		t.Fatal("before a refresh only the fixed networks are trusted")
	}
	next, ok := tr.Refresh(ctx(t))
	if !ok || !in("127.0.0.1") || !in("127.0.0.2") || !in("10.1.2.3") || in("127.0.0.3") {
		t.Fatalf("after a refresh: %v (ok %v)", set.Load(), ok)
	}
	if d := next.Sub(clk.now()); d <= 0 || d > 5*time.Second {
		t.Fatalf("next refresh in %s, want within the TTL", d)
	}
	srv.MustSet("vpbx.test. 5 IN A 127.0.0.3")
	clk.add(6 * time.Second)
	if _, ok := tr.Refresh(ctx(t)); !ok || !in("127.0.0.3") || in("127.0.0.1") || in("127.0.0.2") {
		t.Fatalf("after the records changed: %v", set.Load())
	}
	srv.SetMode(dnstest.ServFail)
	clk.add(time.Minute)
	tr.Refresh(ctx(t))
	if !in("127.0.0.3") {
		t.Fatalf("a DNS failure took the trusted address away: %v", set.Load())
	}
	srv.SetMode(dnstest.Answer)
	srv.MustSet()
	clk.add(time.Minute)
	if _, ok := tr.Refresh(ctx(t)); ok || !in("127.0.0.3") {
		t.Fatalf("a name gone from DNS: ok %v, set %v", ok, set.Load())
	}
}

// Run resolves at once and again after the TTL; it ends with its context.
func TestTrustRun(t *testing.T) {
	srv, err := dnstest.New()
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	srv.MustSet("vpbx.test. 1 IN A 127.0.0.1")
	r := New(Config{Servers: []netip.AddrPort{netip.MustParseAddrPort(srv.Addr())}, Hosts: "-", Timeout: time.Second})
	set := sipnet.NewNetworkSet(nil)
	tr := r.Trust(set, nil, []string{"vpbx.test"}, nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { tr.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	waitTrusted := func(ip string) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for !set.Contains(netip.MustParseAddr(ip)) {
			if time.Now().After(deadline) {
				t.Fatalf("%s never trusted: %v", ip, set.Load())
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	waitTrusted("127.0.0.1")
	srv.MustSet("vpbx.test. 1 IN A 127.0.0.7")
	waitTrusted("127.0.0.7")
}
