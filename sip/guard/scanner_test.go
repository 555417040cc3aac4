package guard

import (
	"net/netip"
	"testing"
	"time"
)

func TestScannerMatch(t *testing.T) {
	s := NewScanners(DefaultScannerUserAgents)
	for ua, want := range map[string]bool{
		"friendly-scanner":               true,
		"Friendly-Scanner/1.0":           true,
		"sipvicious 0.3.3":               true,
		"VaxSIPUserAgent/3.1":            true,
		"my-IWAR-build":                  true,
		"Yealink SIP-T46S 66.86.0.15":    false,
		"Grandstream GXP1628 1.0.11.3":   false,
		"":                               false,
		"baresip v3.10.1 (x86_64/linux)": false,
	} {
		if got := s.Match(ua); got != want {
			t.Errorf("Match(%q) = %v, want %v", ua, got, want)
		}
	}
	if NewScanners(nil).Match("friendly-scanner") || NewScanners([]string{" "}).Enabled() {
		t.Error("an empty list must match nothing")
	}
}

func TestScannerMatchMessage(t *testing.T) {
	s := NewScanners(DefaultScannerUserAgents)
	const head = "OPTIONS sip:100@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK1\r\n"
	for msg, want := range map[string]bool{
		head + "User-Agent: friendly-scanner\r\nContent-Length: 0\r\n\r\n":   true,
		head + "user-agent  :  SIPVicious\r\n\r\n":                           true,
		head + "User-Agent: friendly-scanner":                                true,  // no blank line
		head + "User-Agent: Yealink\r\n\r\nUser-Agent: friendly-scanner\r\n": false, // in the body
		head + "X-User-Agent: friendly-scanner\r\n\r\n":                      false,
		head + "User-Agents: friendly-scanner\r\n\r\n":                       false,
		head + "Subject: friendly-scanner\r\nUser-Agent: Polycom\r\n\r\n":    false,
		"":                                    false,
		"User-Agent:":                         false,
		head + "User-Agent:\tsipcli/v1.8\n\n": true,
	} {
		if _, got := s.MatchMessage([]byte(msg)); got != want {
			t.Errorf("MatchMessage(%q) = %v, want %v", msg, got, want)
		}
	}
	if ua, ok := s.MatchMessage([]byte(head + "User-Agent: friendly-scanner \r\n\r\n")); !ok || ua != "friendly-scanner" {
		t.Errorf("matched UA = %q", ua)
	}
	if _, ok := NewScanners([]string{}).MatchMessage([]byte(head + "User-Agent: friendly-scanner\r\n\r\n")); ok {
		t.Error("an empty list must match nothing")
	}
}

func TestQuieterOncePerInterval(t *testing.T) {
	q := NewQuieter(time.Minute)
	now := time.Unix(1_700_000_000, 0)
	q.now = func() time.Time { return now }
	ip := netip.MustParseAddr("192.168.1.10")
	if !q.Allow(ip) || q.Allow(ip) {
		t.Fatal("not once per interval")
	}
	if !q.Allow(netip.MustParseAddr("192.168.1.11")) {
		t.Fatal("another IP held back")
	}
	now = now.Add(time.Minute)
	if !q.Allow(ip) {
		t.Fatal("not again after the interval")
	}
	for i := 0; i < 10000; i++ {
		q.Allow(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}))
	}
	if len(q.last) > 4096 {
		t.Fatalf("quieter holds %d keys", len(q.last))
	}
}

func FuzzScannerMatchMessage(f *testing.F) {
	s := NewScanners(DefaultScannerUserAgents)
	f.Add([]byte("OPTIONS sip:100@127.0.0.1 SIP/2.0\r\nUser-Agent: friendly-scanner\r\n\r\n"))
	f.Add([]byte("REGISTER sip:callgate SIP/2.0\r\nuser-agent :\tSIPVicious\nContent-Length: 0\r\n\r\n"))
	f.Add([]byte("INVITE sip:1@x SIP/2.0\r\nUser-Agent: Yealink\r\n\r\nv=0\r\n"))
	f.Add([]byte("User-Agent:"))
	f.Add([]byte("\n\n\r\n"))
	f.Fuzz(func(t *testing.T, msg []byte) {
		ua, ok := s.MatchMessage(msg)
		if ok && !s.Match(ua) {
			t.Fatalf("MatchMessage returned %q, which Match refuses", ua)
		}
	})
}

// The screening cost per datagram, next to a REGISTER's tens of µs.
func BenchmarkScannerMatchMessage(b *testing.B) {
	s := NewScanners(DefaultScannerUserAgents)
	msg := []byte("INVITE sip:79161234567@192.168.1.1 SIP/2.0\r\nVia: SIP/2.0/UDP 192.168.1.20:5062;branch=z9hG4bK776asdhds\r\n" +
		"Max-Forwards: 70\r\nTo: <sip:79161234567@192.168.1.1>\r\nFrom: <sip:101@192.168.1.1>;tag=1928301774\r\n" +
		"Call-ID: a84b4c76e66710@pc33\r\nCSeq: 314159 INVITE\r\nContact: <sip:101@192.168.1.20:5062>\r\n" +
		"User-Agent: Yealink SIP-T46S 66.86.0.15\r\nContent-Type: application/sdp\r\nContent-Length: 142\r\n\r\nv=0\r\n")
	b.ReportAllocs()
	for b.Loop() {
		if _, ok := s.MatchMessage(msg); ok {
			b.Fatal("matched")
		}
	}
}

func BenchmarkGuardAdmitNothingBanned(b *testing.B) {
	g := New(Config{MaxFailures: 5, MaxFailuresPerIP: 50, Window: time.Minute, BanTime: time.Minute})
	src := netip.MustParseAddrPort("192.168.1.20:5062")
	b.ReportAllocs()
	for b.Loop() {
		if g.Blocked(src) || g.Admit(src, "101") != Open {
			b.Fatal("banned")
		}
	}
}
