package guard

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
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

func port(p uint16) netip.AddrPort { return netip.AddrPortFrom(attacker.Addr(), p) }

func TestSourceBannedAfterMaxFailures(t *testing.T) {
	g, now := newTestGuard()
	for i := 0; i < 2; i++ {
		if g.Failure(attacker, "101", "wrong_password") {
			t.Fatalf("banned after %d failures", i+1)
		}
	}
	if g.Blocked(attacker) || g.Admit(attacker, "101") != Open {
		t.Fatal("blocked before the limit")
	}
	if !g.Failure(attacker, "101", "wrong_password") || !g.Blocked(attacker) || g.Admit(attacker, "") != Drop {
		t.Fatal("source not banned at the limit")
	}
	if g.Blocked(goodSame) || g.Admit(goodSame, "102") != Open {
		t.Fatal("another phone behind the same address is blocked")
	}
	// The source and the identity 101@IP are banned.
	if g.Active() != 2 || len(g.Bans()) != 2 {
		t.Fatalf("bans = %+v", g.Bans())
	}
	*now = now.Add(11 * time.Minute)
	if g.Blocked(attacker) || g.Admit(goodSame, "101") != Open || g.Active() != 0 {
		t.Fatal("ban did not expire")
	}
}

// The identity banned is the digest user name at the IP: whatever port or
// claimed address the guesser uses next, 101's credentials get no answer.
func TestIdentityBannedAcrossPorts(t *testing.T) {
	g, _ := newTestGuard()
	for p := uint16(1); p <= 3; p++ {
		g.Failure(port(40000+p), "101", "wrong_password")
	}
	if g.Admit(port(41000), "101") != Drop {
		t.Fatal("a new port guessing the same user is answered")
	}
	if g.Admit(port(41000), "") != Open || g.Admit(port(41000), "102") != Open {
		t.Fatal("the identity ban spread to other users or to unauthenticated requests")
	}
	if g.Admit(netip.MustParseAddrPort("192.168.1.11:5060"), "101") != Open {
		t.Fatal("the identity ban spread to another IP")
	}
}

// Lifting a source's ban lets the phone back in: its user name at that IP
// is freed too, other user names banned there are not.
func TestUnbanSourceFreesItsUser(t *testing.T) {
	g, _ := newTestGuard()
	g.cfg.MaxFailuresPerIP = 100
	for i := 0; i < 3; i++ {
		g.Failure(port(40001), "102", "wrong_password")
		g.Failure(attacker, "103", "wrong_password")
	}
	if g.Active() != 4 {
		t.Fatalf("bans %+v", g.Bans())
	}
	if !g.Unban(attacker.String()) || g.Admit(attacker, "103") != Open || g.Admit(port(40002), "102") != Drop || g.Active() != 2 {
		t.Fatalf("after unban: %+v", g.Bans())
	}
	if g.Unban(attacker.String()) {
		t.Fatal("unbanned twice")
	}
}

func TestFailuresOutsideWindowForgotten(t *testing.T) {
	g, now := newTestGuard()
	g.Failure(attacker, "101", "wrong_password")
	g.Failure(attacker, "101", "wrong_password")
	*now = now.Add(2 * time.Minute)
	if g.Failure(attacker, "101", "wrong_password") {
		t.Fatal("failures from an old window counted")
	}
}

// A correct login between failures forgives nothing: an authenticated desk
// phone guessing PINs is banned like a password guesser.
func TestSuccessDoesNotForgiveFailures(t *testing.T) {
	g, _ := newTestGuard()
	for i := 0; i < 2; i++ {
		g.Success(attacker, "110")
		g.Failure(attacker, "110", "wrong_pin")
	}
	g.Success(attacker, "110")
	if !g.Failure(attacker, "110", "wrong_pin") || g.Admit(attacker, "110") != Drop {
		t.Fatal("failures forgiven by correct logins in between")
	}
}

// An IP ban makes the IP quiet: requests are processed so a phone behind
// the same NAT can still log in, but failures get no answer, and each user
// name that had not logged in from there gets a single failure.
func TestIPBanIsQuietAndGivesOneGuessPerUser(t *testing.T) {
	g, _ := newTestGuard()
	g.Success(goodSame, "102")
	for p := uint16(1); p <= 6; p++ { // rotating ports and users
		g.Failure(port(40000+p), "u"+string(rune('a'+p)), "wrong_password")
	}
	if g.Admit(port(41000), "") != Quiet || g.Admit(port(41000), "103") != Quiet || g.Admit(goodSame, "102") != Quiet {
		t.Fatal("IP not quiet after the per-IP limit")
	}
	if !g.Failure(port(41000), "103", "wrong_password") || g.Admit(port(41001), "103") != Drop {
		t.Fatal("a new user name failing at a banned IP got more than one guess")
	}
	// A user that logged in from there keeps max_failures guesses.
	g.Failure(port(41002), "102", "wrong_password")
	if g.Admit(goodSame, "102") != Quiet {
		t.Fatal("a known good user is dropped after one failure")
	}
	g.Failure(port(41003), "102", "wrong_password")
	g.Failure(port(41004), "102", "wrong_password")
	if g.Admit(goodSame, "102") != Drop {
		t.Fatal("a known good user's failures never ban it")
	}
	if !g.Unban(attacker.Addr().String()) || g.Admit(port(41000), "103") != Open || g.Admit(goodSame, "102") != Open || g.Active() != 0 {
		t.Fatalf("unban of the IP left %+v", g.Bans())
	}
}

// The exemption is keyed on the digest user name that authenticated, not on
// a claimed one: a good login of 102 does not help guesses for 101.
func TestGoodMarkIsPerDigestUser(t *testing.T) {
	g, _ := newTestGuard()
	g.Success(goodSame, "102")
	for p := uint16(1); p <= 6; p++ {
		g.Failure(port(40000+p), "x"+string(rune('a'+p)), "wrong_password")
	}
	g.Failure(port(41000), "101", "wrong_password")
	if g.Admit(port(41001), "101") != Drop {
		t.Fatal("101 got a second guess at a banned IP")
	}
}

func TestIdentityTablesBounded(t *testing.T) {
	defer func(n int) { maxIdentities = n }(maxIdentities)
	maxIdentities = 500
	g := New(Config{MaxFailures: 3, MaxFailuresPerIP: 3, Window: time.Minute, BanTime: time.Minute})
	for i := 0; i < maxIdentities+10; i++ {
		g.Failure(port(uint16(i)), strings.Repeat("u", 70)+string(rune(0x100+i)), "wrong_password")
	}
	g.mu.Lock()
	n, m := len(g.userFail), len(g.userBan)
	g.mu.Unlock()
	if n > maxIdentities || m > maxIdentities {
		t.Fatalf("identity tables grew to %d, %d", n, m)
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
				g.Failure(src, "x", "wrong_password")
				g.Blocked(src)
				g.Admit(src, "x")
				g.Success(src, "y")
				_ = g.Bans()
			}
		}(w)
	}
	wg.Wait()
}

// Failures, bans and unbans are logged at warning level with source, ip,
// user and reason, in a format fail2ban can match.
func TestLogFormat(t *testing.T) {
	var buf bytes.Buffer
	g := New(Config{MaxFailures: 2, MaxFailuresPerIP: 10, Window: time.Minute, BanTime: time.Minute,
		Log: slog.New(slog.NewTextHandler(&buf, nil))})
	now := time.Unix(1_700_000_000, 0)
	g.now = func() time.Time { return now }
	g.Failure(attacker, "101", "wrong_password")
	g.Failure(attacker, `evil ip=10.9.9.9 x`, "wrong_password")
	now = now.Add(2 * time.Minute)
	g.Sweep()
	out := buf.String()
	for _, want := range []string{
		`level=WARN msg="sip auth failure" source=192.168.1.10:5060 ip=192.168.1.10 user=101 reason=wrong_password`,
		`level=WARN msg="sip source banned" source=192.168.1.10:5060 ip=192.168.1.10 user="evil ip=10.9.9.9 x" reason=wrong_password scope=source until=`,
		`level=WARN msg="sip source unbanned" source=192.168.1.10:5060 ip=192.168.1.10 user="evil ip=10.9.9.9 x" reason=expired scope=source`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %s\n%s", want, out)
		}
	}
}

// Failures from an IP already banned are logged at most once a second: a
// sprayer of user names must not flood the log.
func TestQuietFailuresLogLimited(t *testing.T) {
	var buf bytes.Buffer
	g, now := newTestGuard()
	g.cfg.Log = slog.New(slog.NewTextHandler(&buf, nil))
	g.hush.now = func() time.Time { return *now }
	for i := 0; i < 6; i++ {
		g.Failure(port(uint16(40000+i)), "u"+strconv.Itoa(i), "wrong_password")
	}
	before := strings.Count(buf.String(), `msg="sip auth failure"`)
	for i := 0; i < 100; i++ {
		g.Failure(port(uint16(41000+i)), "v"+strconv.Itoa(i), "wrong_password")
	}
	if n := strings.Count(buf.String(), `msg="sip auth failure"`) - before; n != 1 {
		t.Fatalf("%d lines for 100 failures in one second at a banned IP", n)
	}
	if g.Admit(port(42000), "v99") != Drop {
		t.Fatal("the unlogged failure did not ban its user name")
	}
}

// Run ends expired bans by itself, logging each, with nobody asking.
func TestRunEndsBansOnTime(t *testing.T) {
	var mu sync.Mutex
	var buf bytes.Buffer
	g := New(Config{MaxFailures: 1, MaxFailuresPerIP: 10, Window: time.Minute, BanTime: time.Minute,
		Log: slog.New(slog.NewTextHandler(&lockedWriter{mu: &mu, w: &buf}, nil))})
	var now atomic.Int64
	now.Store(time.Unix(1_700_000_000, 0).UnixNano())
	g.now = func() time.Time { return time.Unix(0, now.Load()) }
	g.Failure(attacker, "101", "wrong_password")
	if g.active.Load() == 0 {
		t.Fatal("no ban")
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { g.Run(ctx, 10*time.Millisecond); close(done) }()
	now.Add(int64(2 * time.Minute))
	deadline := time.Now().Add(5 * time.Second)
	for g.active.Load() != 0 {
		if time.Now().After(deadline) {
			t.Fatal("the expired ban was not swept")
		}
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	<-done
	mu.Lock()
	defer mu.Unlock()
	if !strings.Contains(buf.String(), `msg="sip source unbanned"`) {
		t.Fatalf("unban not logged:\n%s", buf.String())
	}
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(b)
}
