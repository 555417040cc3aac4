package connlimit

import (
	"errors"
	"io"
	"net"
	"net/netip"
	"sync"
	"syscall"
	"testing"
	"time"
)

// serve accepts on a wrapped loopback listener and hands the accepted
// connections to the test.
func serve(t *testing.T, l *Limiter) (addr string, accepted <-chan net.Conn) {
	t.Helper()
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln := l.Listener(raw, nil)
	t.Cleanup(func() { ln.Close() })
	ch := make(chan net.Conn, 64)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			ch <- c
		}
	}()
	return raw.Addr().String(), ch
}

func dial(t *testing.T, addr, from string) net.Conn {
	t.Helper()
	d := net.Dialer{Timeout: 2 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// closedByPeer waits up to d for c to be closed by the other side, reading
// past whatever was sent before.
func closedByPeer(c net.Conn, d time.Duration) bool {
	_ = c.SetReadDeadline(time.Now().Add(d))
	_, err := io.Copy(io.Discard, c)
	return err == nil || errors.Is(err, syscall.ECONNRESET)
}

func TestCapPerIP(t *testing.T) {
	l := New(Config{MaxPerIP: 3})
	addr, accepted := serve(t, l)
	var held []net.Conn
	for i := 0; i < 3; i++ {
		dial(t, addr, "127.0.0.1")
		held = append(held, <-accepted)
	}
	over := dial(t, addr, "127.0.0.1")
	if !closedByPeer(over, 2*time.Second) {
		t.Fatal("a 4th connection from one IP was not closed at once")
	}
	if got := l.Stats.Refused.Load(); got != 1 {
		t.Fatalf("refused = %d, want 1", got)
	}
	// Another address has its own allowance.
	dial(t, addr, "127.0.0.2")
	select {
	case c := <-accepted:
		if k := c.(*Conn).Key(); k != netip.MustParseAddr("127.0.0.2") {
			t.Fatalf("key = %s", k)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("a connection from another IP was not accepted")
	}
	if l.Open() != 4 {
		t.Fatalf("open = %d, want 4", l.Open())
	}
	// Closing one frees its place, and closing it twice frees only one.
	held[0].Close()
	held[0].Close()
	dial(t, addr, "127.0.0.1")
	select {
	case <-accepted:
	case <-time.After(2 * time.Second):
		t.Fatal("no place freed by closing a connection")
	}
	if again := dial(t, addr, "127.0.0.1"); !closedByPeer(again, 2*time.Second) {
		t.Fatal("the cap was lifted by a double close")
	}
	if l.Open() != 4 || l.Stats.Refused.Load() != 2 {
		t.Fatalf("open = %d refused = %d, want 4 and 2", l.Open(), l.Stats.Refused.Load())
	}
}

func TestIdleClosedAndLiveKept(t *testing.T) {
	var mu sync.Mutex
	liveAddrs := map[netip.AddrPort]bool{}
	builds := 0
	l := New(Config{IdleTimeout: time.Minute, Live: func() func(netip.AddrPort) bool {
		mu.Lock()
		builds++
		snap := map[netip.AddrPort]bool{}
		for k, v := range liveAddrs {
			snap[k] = v
		}
		mu.Unlock()
		return func(a netip.AddrPort) bool { return snap[a] }
	}})
	addr, accepted := serve(t, l)
	idleClient := dial(t, addr, "127.0.0.1")
	idleSrv := <-accepted
	liveClient := dial(t, addr, "127.0.0.1")
	liveSrv := <-accepted
	busyClient := dial(t, addr, "127.0.0.1")
	busySrv := <-accepted
	mu.Lock()
	liveAddrs[netip.MustParseAddrPort(liveClient.LocalAddr().String())] = true
	mu.Unlock()

	start := time.Now()
	if n := l.Sweep(start.Add(59 * time.Second)); n != 0 || builds != 0 {
		t.Fatalf("before the timeout: closed %d, live built %d times", n, builds)
	}
	// The busy peer talks just before the sweep; the others stay silent.
	later := start.Add(90 * time.Second)
	busyClient.Write([]byte("\r\n\r\n"))
	buf := make([]byte, 4)
	if _, err := io.ReadFull(busySrv, buf); err != nil {
		t.Fatal(err)
	}
	// What we write does not count as the peer's activity.
	if _, err := idleSrv.Write([]byte("OPTIONS")); err != nil {
		t.Fatal(err)
	}
	// Shift the busy connection's last read to "now" on the test clock.
	busySrv.(*Conn).last.Store(l.since(later))
	if n := l.Sweep(later); n != 1 {
		t.Fatalf("closed %d, want 1 (the idle one)", n)
	}
	if builds != 1 {
		t.Fatalf("live built %d times in one sweep, want 1", builds)
	}
	if !closedByPeer(idleClient, 2*time.Second) || !idleSrv.(*Conn).ClosedIdle() {
		t.Fatal("the idle connection stayed open")
	}
	if closedByPeer(liveClient, 50*time.Millisecond) || liveSrv.(*Conn).ClosedIdle() {
		t.Fatal("a connection with live state was closed")
	}
	if l.Stats.IdleClosed.Load() != 1 || l.Open() != 2 {
		t.Fatalf("idle closed %d, open %d", l.Stats.IdleClosed.Load(), l.Open())
	}
	// A kept connection is looked at again one timeout later; once its
	// state is gone, it is closed.
	mu.Lock()
	liveAddrs = map[netip.AddrPort]bool{}
	mu.Unlock()
	if n := l.Sweep(later.Add(30 * time.Second)); n != 0 {
		t.Fatalf("a kept connection was closed %d before another timeout passed", n)
	}
	if n := l.Sweep(later.Add(61 * time.Second)); n != 2 {
		t.Fatalf("closed %d, want 2 (the formerly live and the busy one)", n)
	}
	if !closedByPeer(liveClient, 2*time.Second) {
		t.Fatal("the connection whose state ended stayed open")
	}
}

func TestStartSweepsOnItsOwn(t *testing.T) {
	l := New(Config{IdleTimeout: 200 * time.Millisecond})
	if l.SweepInterval() != 100*time.Millisecond {
		t.Fatalf("sweep interval %s", l.SweepInterval())
	}
	l.Start()
	l.Start() // a second Start is a no-op
	defer l.Stop()
	addr, accepted := serve(t, l)
	c := dial(t, addr, "127.0.0.1")
	<-accepted
	began := time.Now()
	if !closedByPeer(c, 3*time.Second) {
		t.Fatal("an idle connection was not closed by the sweeper")
	}
	if waited := time.Since(began); waited < 150*time.Millisecond {
		t.Fatalf("closed after %s, before the idle timeout", waited)
	}
	l.Stop()
	l.Stop()
}

func TestZeroConfigLimitsNothing(t *testing.T) {
	l := New(Config{})
	addr, accepted := serve(t, l)
	for i := 0; i < 20; i++ {
		dial(t, addr, "127.0.0.1")
		<-accepted
	}
	if l.Sweep(time.Now().Add(24*time.Hour)) != 0 || l.Stats.Refused.Load() != 0 || l.Open() != 20 {
		t.Fatalf("zero config limited: refused %d open %d", l.Stats.Refused.Load(), l.Open())
	}
	l.Start() // no sweeper without a timeout
	l.Stop()
}

// flaky fails its first Accept calls the way a process out of descriptors does.
type flaky struct {
	net.Listener
	fails int
}

func (f *flaky) Accept() (net.Conn, error) {
	if f.fails > 0 {
		f.fails--
		return nil, &net.OpError{Op: "accept", Net: "tcp", Err: syscall.EMFILE}
	}
	return f.Listener.Accept()
}

func TestAcceptRetriesTransientErrors(t *testing.T) {
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := New(Config{MaxPerIP: 1})
	ln := l.Listener(&flaky{Listener: raw, fails: 3}, nil)
	defer ln.Close()
	c := dial(t, raw.Addr().String(), "127.0.0.1")
	got := make(chan error, 1)
	go func() {
		sc, err := ln.Accept()
		if err == nil {
			sc.Close()
		}
		got <- err
	}()
	select {
	case err := <-got:
		if err != nil {
			t.Fatalf("accept gave up: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("accept did not recover from transient errors")
	}
	_ = c
	// Closing the listener ends Accept, also during a retry wait.
	ln2 := l.Listener(&flaky{Listener: raw, fails: 1000}, nil)
	go func() { time.Sleep(50 * time.Millisecond); ln2.Close() }()
	if _, err := ln2.Accept(); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("accept after close: %v", err)
	}
}

func TestTrackForwardedKey(t *testing.T) {
	// A WebSocket front end admits by the forwarded client address, not the
	// proxy's: two clients behind one proxy each get their own allowance.
	l := New(Config{MaxPerIP: 1})
	a, b := net.Pipe()
	defer b.Close()
	if _, ok := l.Track(a, netip.MustParseAddr("::ffff:10.0.0.66")); !ok {
		t.Fatal("first client refused")
	}
	c, d := net.Pipe()
	defer d.Close()
	if _, ok := l.Track(c, netip.MustParseAddr("10.0.0.77")); !ok {
		t.Fatal("second client behind the same proxy refused")
	}
	e, f := net.Pipe()
	defer f.Close()
	if _, ok := l.Track(e, netip.MustParseAddr("10.0.0.66")); ok {
		t.Fatal("a second connection of the first client was admitted")
	}
}

func TestRefusalLogMemoryBounded(t *testing.T) {
	l := New(Config{MaxPerIP: 1})
	key := netip.MustParseAddr("fd00::1")
	for i := 0; i < 3*maxWarned; i++ {
		key = key.Next()
		a, b := net.Pipe()
		l.Track(a, key)
		c, d := net.Pipe()
		l.Track(c, key) // refused: logged and remembered
		b.Close()
		d.Close()
	}
	if n := len(l.warned); n > maxWarned {
		t.Fatalf("%d addresses remembered for the refusal log", n)
	}
}
