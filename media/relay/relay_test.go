package relay

import (
	"fmt"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"callgate/media/g711"
	"callgate/media/rtptest"
)

var loopback = netip.MustParseAddr("127.0.0.1")

func newRelay(t testing.TB, cfg Config) *Relay {
	t.Helper()
	if cfg.PortMin == 0 {
		cfg.PortMin, cfg.PortMax = 11000, 11999
	}
	cfg.Bind = loopback
	r, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.Close)
	return r
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if cond() {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("timed out waiting for %s", what)
}

func local(s *Session, side Side) netip.AddrPort {
	return netip.AddrPortFrom(loopback, uint16(s.Port(side)))
}

func TestRelayCarriesBothDirectionsAndTaps(t *testing.T) {
	r := newRelay(t, Config{})
	s, err := r.Open("call-1")
	if err != nil {
		t.Fatal(err)
	}
	outside, _ := rtptest.NewPeer(440, g711.PCMA)
	defer outside.Close()
	employee, _ := rtptest.NewPeer(1000, g711.PCMA)
	defer employee.Close()
	var mu sync.Mutex
	tapped := map[Side]int{}
	s.SetTap(func(side Side, seq uint16, ts uint32, pt uint8, payload []byte) {
		if pt == g711.PCMA && len(payload) == 160 {
			mu.Lock()
			tapped[side]++
			mu.Unlock()
		}
	})
	s.SetRemote(A, outside.Addr())
	s.SetRemote(B, employee.Addr())
	outside.SendTo(local(s, A))
	employee.SendTo(local(s, B))
	employee.DTMF(7)
	waitUntil(t, "tones through the relay", func() bool {
		return rtptest.Has(outside.Heard(300*time.Millisecond), 1000) && rtptest.Has(employee.Heard(300*time.Millisecond), 440) && len(outside.Events()) == 1
	})
	if rtptest.Has(outside.Heard(300*time.Millisecond), 440) || rtptest.Has(employee.Heard(300*time.Millisecond), 1000) {
		t.Fatal("a party hears itself")
	}
	if outside.Events()[0] != 7 {
		t.Fatalf("DTMF %v", outside.Events())
	}
	// Each party receives from the port it was told about, not from the other party.
	if _, from := outside.Received(); from != local(s, A) {
		t.Fatalf("outside receives from %s, want %s", from, local(s, A))
	}
	mu.Lock()
	if tapped[A] == 0 || tapped[B] == 0 {
		t.Fatalf("tap saw %v", tapped)
	}
	mu.Unlock()
	st := s.Stats(A)
	if st.Packets == 0 || st.Lost != 0 || !st.Latched {
		t.Fatalf("stats %+v", st)
	}
	s.Close()
	if r.Active() != 0 {
		t.Fatal("session not removed")
	}
}

// A party whose SDP names an address it cannot be reached at still gets
// audio: the relay answers to where its packets come from.
func TestSymmetricLatching(t *testing.T) {
	r := newRelay(t, Config{})
	s, _ := r.Open("nat")
	outside, _ := rtptest.NewPeer(440, g711.PCMA)
	defer outside.Close()
	phone, _ := rtptest.NewPeer(1000, g711.PCMA)
	defer phone.Close()
	s.SetRemote(A, outside.Addr())
	s.SetRemote(B, netip.MustParseAddrPort("10.99.99.99:4000")) // private, unreachable
	outside.SendTo(local(s, A))
	phone.SendTo(local(s, B))
	waitUntil(t, "audio to the NATed phone", func() bool { return rtptest.Has(phone.Heard(300*time.Millisecond), 440) })
	if got, latched := s.Remote(B); got != phone.Addr() || !latched {
		t.Fatalf("latched to %s (%v)", got, latched)
	}
	// Packets from anyone else on that port are dropped, not relayed.
	before := r.Dropped.Load()
	stranger, _ := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	defer stranger.Close()
	pkt := []byte{0x80, 8, 0, 1, 0, 0, 0, 1, 0, 0, 0, 9}
	stranger.WriteToUDPAddrPort(append(pkt, make([]byte, 160)...), local(s, B))
	waitUntil(t, "stranger dropped", func() bool { return r.Dropped.Load() > before })
}

func TestMediaTimeoutAndPortReuse(t *testing.T) {
	timedOut := make(chan string, 1)
	r := newRelay(t, Config{PortMin: 12000, PortMax: 12007, Timeout: 300 * time.Millisecond, OnTimeout: func(id string) { timedOut <- id }})
	if r.FreePairs() != 4 {
		t.Fatalf("pairs %d", r.FreePairs())
	}
	s1, err := r.Open("quiet")
	if err != nil {
		t.Fatal(err)
	}
	s2, err := r.Open("second")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.Open("third"); err == nil {
		t.Fatal("opened a session with no ports left")
	}
	select {
	case id := <-timedOut:
		if id != "quiet" && id != "second" {
			t.Fatalf("timeout for %s", id)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("no media timeout")
	}
	s1.Close()
	s2.Close()
	if r.FreePairs() != 4 {
		t.Fatalf("ports not returned: %d free", r.FreePairs())
	}
	if _, err := r.Open("again"); err != nil {
		t.Fatal(err)
	}
}

// Sessions closed while packets arrive on them release their ports, and
// the relay keeps forwarding for the others.
func TestCloseUnderTraffic(t *testing.T) {
	r := newRelay(t, Config{PortMin: 15000, PortMax: 15199, Workers: 2})
	src, _ := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	defer src.Close()
	sink, _ := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	defer sink.Close()
	var sessions []*Session
	for i := range 20 {
		s, err := r.Open("s" + string(rune('a'+i)))
		if err != nil {
			t.Fatal(err)
		}
		s.SetRemote(A, src.LocalAddr().(*net.UDPAddr).AddrPort())
		s.SetRemote(B, sink.LocalAddr().(*net.UDPAddr).AddrPort())
		sessions = append(sessions, s)
	}
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() { // bounded: at most 200 rounds
		defer close(done)
		pkt := append([]byte{0x80, 8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1}, make([]byte, 160)...)
		for round := 0; round < 200; round++ {
			select {
			case <-stop:
				return
			default:
			}
			for _, s := range sessions {
				pkt[3] = byte(round)
				_, _ = src.WriteToUDPAddrPort(pkt, local(s, A))
			}
			time.Sleep(time.Millisecond)
		}
	}()
	time.Sleep(20 * time.Millisecond)
	var wg sync.WaitGroup
	for _, s := range sessions[:10] {
		wg.Add(1)
		go func() { defer wg.Done(); s.Close() }()
	}
	wg.Wait()
	if r.Active() != 10 || r.FreePairs() != 100-2*10 {
		t.Fatalf("active %d, free pairs %d", r.Active(), r.FreePairs())
	}
	before := r.Packets.Load()
	waitUntil(t, "forwarding to go on for the open sessions", func() bool { return r.Packets.Load() > before+50 })
	close(stop)
	<-done
}

// TestIPv6 relays between parties on ::1 (AF_INET6 sockets, addresses the
// kernel reports in sockaddr_in6).
func TestIPv6(t *testing.T) {
	r, err := New(Config{Bind: netip.IPv6Loopback(), PortMin: 14000, PortMax: 14099})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	s, err := r.Open("v6")
	if err != nil {
		t.Fatal(err)
	}
	a, err := net.ListenUDP("udp6", &net.UDPAddr{IP: net.IPv6loopback})
	if err != nil {
		t.Fatalf("no IPv6 loopback (::1), which callgate supports as a media address: %v", err)
	}
	defer a.Close()
	b, _ := net.ListenUDP("udp6", &net.UDPAddr{IP: net.IPv6loopback})
	defer b.Close()
	s.SetRemote(A, a.LocalAddr().(*net.UDPAddr).AddrPort())
	s.SetRemote(B, b.LocalAddr().(*net.UDPAddr).AddrPort())
	pkt := append([]byte{0x80, 8, 0, 1, 0, 0, 0, 1, 0, 0, 0, 9}, make([]byte, 160)...)
	to := netip.AddrPortFrom(netip.IPv6Loopback(), uint16(s.Port(A)))
	if _, err := a.WriteToUDPAddrPort(pkt, to); err != nil {
		t.Fatal(err)
	}
	_ = b.SetReadDeadline(time.Now().Add(2 * time.Second))
	in := make([]byte, 1500)
	n, from, err := b.ReadFromUDPAddrPort(in)
	if err != nil {
		t.Fatal(err)
	}
	if n != len(pkt) || from != netip.AddrPortFrom(netip.IPv6Loopback(), uint16(s.Port(B))) {
		t.Fatalf("got %d bytes from %s", n, from)
	}
	if got, latched := s.Remote(A); !latched || got != a.LocalAddr().(*net.UDPAddr).AddrPort() {
		t.Fatalf("latched %s %v", got, latched)
	}
}

// BenchmarkRelayPacket measures the relay's cost per RTP packet (receive,
// latch check, stats, tap, send) and its allocations with packets in
// flight, as under load: 32 are sent before they are read back.
func BenchmarkRelayPacket(b *testing.B) {
	benchRelay(b, 32)
}

// BenchmarkRelayRoundTrip sends one packet at a time through an idle relay:
// the time is one packet's trip including the relay's wake-up.
func BenchmarkRelayRoundTrip(b *testing.B) {
	benchRelay(b, 1)
}

func benchRelay(b *testing.B, window int) {
	r := newRelay(b, Config{PortMin: 13000, PortMax: 13099, Workers: 1})
	s, err := r.Open("bench")
	if err != nil {
		b.Fatal(err)
	}
	src, _ := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	dst, _ := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	defer src.Close()
	defer dst.Close()
	_ = dst.SetReadBuffer(1 << 20)
	s.SetRemote(A, src.LocalAddr().(*net.UDPAddr).AddrPort())
	s.SetRemote(B, dst.LocalAddr().(*net.UDPAddr).AddrPort())
	s.SetTap(func(Side, uint16, uint32, uint8, []byte) {})
	pkt := make([]byte, 172)
	pkt[0], pkt[1] = 0x80, 8
	in := make([]byte, 2048)
	to := local(s, A)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i += window {
		k := min(window, b.N-i)
		for j := range k {
			seq := i + j
			pkt[2], pkt[3] = byte(seq>>8), byte(seq)
			if _, err := src.WriteToUDPAddrPort(pkt, to); err != nil {
				b.Fatal(err)
			}
		}
		for range k {
			if _, _, err := dst.ReadFromUDPAddrPort(in); err != nil {
				b.Fatal(err)
			}
		}
	}
}

// Ringback reaches the side it is played to as 425 Hz from the relay's
// port, and stops when told.
func TestRingback(t *testing.T) {
	r := newRelay(t, Config{PortMin: 16000, PortMax: 16099})
	s, _ := r.Open("rb")
	phone, _ := rtptest.NewPeer(1000, g711.PCMA)
	defer phone.Close()
	s.SetRemote(B, phone.Addr())
	stop := s.Ringback(B, g711.PCMA)
	waitUntil(t, "ringback heard", func() bool { return rtptest.Has(phone.Heard(300*time.Millisecond), 425) })
	if _, from := phone.Received(); from != local(s, B) {
		t.Fatalf("ringback from %s, want the relay port %s", from, local(s, B))
	}
	stop()
	n, _ := phone.Received()
	time.Sleep(100 * time.Millisecond)
	if m, _ := phone.Received(); m != n {
		t.Fatalf("ringback went on after stop: %d -> %d packets", n, m)
	}
	stop() // twice is fine
}

// A parked side gets nothing, stray packets from it do not latch it back,
// and SetRemote resumes it.
func TestPark(t *testing.T) {
	r := newRelay(t, Config{PortMin: 17000, PortMax: 17099})
	s, _ := r.Open("park")
	outside, _ := rtptest.NewPeer(440, g711.PCMA)
	defer outside.Close()
	phone, _ := rtptest.NewPeer(1000, g711.PCMA)
	defer phone.Close()
	s.SetRemote(A, outside.Addr())
	s.SetRemote(B, phone.Addr())
	outside.SendTo(local(s, A))
	phone.SendTo(local(s, B))
	waitUntil(t, "audio", func() bool { return rtptest.Has(phone.Heard(300*time.Millisecond), 440) })
	s.Park(B)
	dropped := r.Dropped.Load()
	n, _ := phone.Received()
	time.Sleep(200 * time.Millisecond)
	if m, _ := phone.Received(); m > n+1 {
		t.Fatalf("a parked party still receives: %d -> %d", n, m)
	}
	if r.Dropped.Load() != dropped {
		t.Fatalf("parking counts drops: %d -> %d", dropped, r.Dropped.Load())
	}
	s.SetRemote(B, phone.Addr())
	waitUntil(t, "audio after unpark", func() bool { return rtptest.Has(phone.Heard(300*time.Millisecond), 440) })
}

// Sessions fill the first forwarding loop up to SpillAt before the next
// loop takes any, go back to it as its calls end, and go to the least
// loaded loop once all are full; calls on either loop carry audio.
func TestSessionsFillOneLoopFirst(t *testing.T) {
	r := newRelay(t, Config{Workers: 2, SpillAt: 2, PortMin: 15000, PortMax: 15099})
	counts := func() [2]int32 { return [2]int32{r.workers[0].sessions.Load(), r.workers[1].sessions.Load()} }
	var open []*Session
	for i, want := range [][2]int32{{1, 0}, {2, 0}, {2, 1}, {2, 2}, {3, 2}, {3, 3}} {
		s, err := r.Open(fmt.Sprint("call-", i))
		if err != nil {
			t.Fatal(err)
		}
		open = append(open, s)
		if got := counts(); got != want {
			t.Fatalf("after %d sessions the loops carry %v, want %v", i+1, got, want)
		}
	}
	if _, err := r.Open("call-0"); err == nil || counts() != [2]int32{3, 3} {
		t.Fatalf("a duplicate session: %v, loops %v", err, counts())
	}
	open[0].Close()
	open[1].Close()
	open[4].Close()
	if got := counts(); got != [2]int32{0, 3} {
		t.Fatalf("after three ends the loops carry %v", got)
	}
	back, err := r.Open("back")
	if err != nil {
		t.Fatal(err)
	}
	if back.worker != r.workers[0] {
		t.Fatal("a new call did not go back to the first loop")
	}
	for _, s := range []*Session{back, open[2]} { // one on each loop
		outside, _ := rtptest.NewPeer(440, g711.PCMA)
		employee, _ := rtptest.NewPeer(1000, g711.PCMA)
		s.SetRemote(A, outside.Addr())
		s.SetRemote(B, employee.Addr())
		outside.SendTo(local(s, A))
		employee.SendTo(local(s, B))
		waitUntil(t, "tones through "+s.ID(), func() bool {
			return rtptest.Has(outside.Heard(300*time.Millisecond), 1000) && rtptest.Has(employee.Heard(300*time.Millisecond), 440)
		})
		outside.Close()
		employee.Close()
	}
}
