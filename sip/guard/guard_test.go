package guard

import (
	"net/netip"
	"sync"
	"testing"
	"time"
)

func newTestGuard() (*Guard, *time.Time) {
	g := New(Config{MaxFailures: 3, MaxFailuresPerIP: 6, Window: time.Minute, BanTime: 10 * time.Minute})
	now := time.Unix(1_700_000_000, 0)
	g.now = func() time.Time { return now }
	return g, &now
}

var (
	attacker = netip.MustParseAddrPort("192.168.1.10:5060")
	goodSame = netip.MustParseAddrPort("192.168.1.10:5062")
)

func TestSourceBannedAfterMaxFailures(t *testing.T) {
	g, now := newTestGuard()
	for i := 0; i < 2; i++ {
		if g.Failure(attacker, "101") {
			t.Fatalf("banned after %d failures", i+1)
		}
	}
	if g.Blocked(attacker, "101") {
		t.Fatal("blocked before the limit")
	}
	if !g.Failure(attacker, "101") || !g.Blocked(attacker, "101") {
		t.Fatal("not banned at the limit")
	}
	if g.Blocked(goodSame, "102") {
		t.Fatal("another phone behind the same address is blocked")
	}
	if g.Active() != 1 || len(g.Bans()) != 1 || g.Bans()[0].Source != attacker.String() {
		t.Fatalf("bans = %v", g.Bans())
	}
	*now = now.Add(11 * time.Minute)
	if g.Blocked(attacker, "101") || g.Active() != 0 {
		t.Fatal("ban did not expire")
	}
}

func TestFailuresOutsideWindowForgotten(t *testing.T) {
	g, now := newTestGuard()
	g.Failure(attacker, "101")
	g.Failure(attacker, "101")
	*now = now.Add(2 * time.Minute)
	if g.Failure(attacker, "101") {
		t.Fatal("failures from an old window counted")
	}
}

func TestSuccessResetsSourceCount(t *testing.T) {
	g, _ := newTestGuard()
	g.Failure(attacker, "101")
	g.Failure(attacker, "101")
	g.Success(attacker, "101")
	if g.Failure(attacker, "101") {
		t.Fatal("count not reset by a correct login")
	}
}

func TestIPBanSparesKnownGoodUsers(t *testing.T) {
	g, _ := newTestGuard()
	g.Success(goodSame, "102")
	// A scanner rotating ports from the same NAT address.
	for p := uint16(1); p <= 6; p++ {
		g.Failure(netip.AddrPortFrom(attacker.Addr(), 40000+p), "admin")
	}
	if !g.Blocked(netip.AddrPortFrom(attacker.Addr(), 41000), "admin") {
		t.Fatal("IP not banned after per-IP limit")
	}
	if g.Blocked(goodSame, "102") {
		t.Fatal("user that authenticated from this IP is blocked by the IP ban")
	}
	if !g.Blocked(goodSame, "103") {
		t.Fatal("unknown user not blocked by the IP ban")
	}
	if !g.Unban(attacker.Addr().String()) || g.Blocked(netip.AddrPortFrom(attacker.Addr(), 41000), "admin") {
		t.Fatal("unban failed")
	}
}

func TestConcurrentUse(t *testing.T) {
	g := New(Config{MaxFailures: 3, MaxFailuresPerIP: 100, Window: time.Minute, BanTime: time.Minute})
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; i < 500; i++ {
				src := netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 0, byte(w), byte(i)}), 5060)
				g.Failure(src, "x")
				g.Blocked(src, "x")
				g.Success(src, "y")
				_ = g.Bans()
			}
		}(w)
	}
	wg.Wait()
}
