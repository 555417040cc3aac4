// Package connlimit protects a stream listener (SIP over TCP and WebSocket,
// and the HTTP listener through gateway/conncap) from clients that open
// connections and hold them: it caps how many connections one client
// address may hold, and closes connections
// that stay silent too long unless they carry live state (a registration or
// a call), which the caller decides.
//
// A connection is idle when its peer has sent nothing: what callgate writes
// to it (OPTIONS keepalives, requests to a phone) does not count, since a
// client that only holds a connection open would otherwise look alive.
package connlimit

import (
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// Config sets the limits. The zero value limits nothing.
type Config struct {
	// MaxPerIP is how many connections one key (client address) may hold at
	// once; a connection beyond it is closed as soon as it is accepted.
	// 0 means no cap.
	MaxPerIP int
	// IdleTimeout closes a connection whose peer sent nothing for this long,
	// unless Live says it carries live state. 0 keeps idle connections.
	IdleTimeout time.Duration
	// Live, when set, is called at most once per sweep that found idle
	// connections; the function it returns says whether a remote address
	// carries live state (and so its connection stays open). Building the
	// test once per sweep lets it take a snapshot of large tables instead
	// of scanning them for every connection.
	Live func() func(remote netip.AddrPort) bool
	// Log receives refusals (at most one line per client address a minute).
	Log *slog.Logger
}

// Stats counts what the limiter did; read them with Load.
type Stats struct {
	Refused    atomic.Uint64 // connections closed at once for exceeding MaxPerIP
	IdleClosed atomic.Uint64 // connections closed for being idle
}

// Limiter tracks connections. It is safe for concurrent use.
type Limiter struct {
	// Stats is updated as connections are refused or closed.
	Stats Stats

	cfg   Config
	epoch time.Time // idle times are measured on the monotonic clock from here

	mu     sync.Mutex
	perKey map[netip.Addr]int
	conns  map[*Conn]struct{}
	warned map[netip.Addr]time.Time // last refusal logged per key
	live   func() func(netip.AddrPort) bool
	stop   chan struct{}
	done   chan struct{}
}

// warnEvery limits refusal log lines per client address.
const warnEvery = time.Minute

// New returns a limiter; Start begins closing idle connections.
func New(cfg Config) *Limiter {
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	return &Limiter{cfg: cfg, epoch: time.Now(), perKey: map[netip.Addr]int{}, conns: map[*Conn]struct{}{},
		warned: map[netip.Addr]time.Time{}, live: cfg.Live}
}

// SetLive replaces Config.Live. The parts that know about registrations
// and calls are usually built after the listeners are bound.
func (l *Limiter) SetLive(live func() func(remote netip.AddrPort) bool) {
	l.mu.Lock()
	l.live = live
	l.mu.Unlock()
}

// Open is the number of connections held.
func (l *Limiter) Open() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.conns)
}

// Track admits c as a connection of key (the client's address: the remote
// IP, or for a connection through a trusted proxy the forwarded one). It
// returns c wrapped, whose Read marks activity and whose Close releases its
// place; or, when key already holds MaxPerIP connections, it closes c,
// counts it in Stats.Refused and returns false.
func (l *Limiter) Track(c net.Conn, key netip.Addr) (*Conn, bool) {
	key = key.Unmap()
	tc := &Conn{Conn: c, l: l, key: key, remote: remoteAddr(c)}
	tc.last.Store(l.since(time.Now()))
	l.mu.Lock()
	if l.cfg.MaxPerIP > 0 && l.perKey[key] >= l.cfg.MaxPerIP {
		now := time.Now()
		warn := now.Sub(l.warned[key]) >= warnEvery
		if warn {
			l.pruneWarnedLocked(now)
			l.warned[key] = now
		}
		l.mu.Unlock()
		l.Stats.Refused.Add(1) // counted before the peer can see the close
		_ = c.Close()
		if warn {
			l.cfg.Log.Warn("connection refused: too many from one address", "source", key.String(), "limit", l.cfg.MaxPerIP)
		}
		return nil, false
	}
	l.perKey[key]++
	l.conns[tc] = struct{}{}
	l.mu.Unlock()
	return tc, true
}

// maxWarned bounds the refusal log's memory of addresses: many addresses
// (an IPv6 range) each hitting the cap must not grow it without end.
const maxWarned = 1024

func (l *Limiter) pruneWarnedLocked(now time.Time) {
	if len(l.warned) < maxWarned {
		return
	}
	for k, at := range l.warned {
		if now.Sub(at) >= warnEvery {
			delete(l.warned, k)
		}
	}
	if len(l.warned) >= maxWarned {
		clear(l.warned) // all recent: at worst a few lines more in the log
	}
}

func (l *Limiter) release(c *Conn) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if _, ok := l.conns[c]; !ok {
		return
	}
	delete(l.conns, c)
	if l.perKey[c.key]--; l.perKey[c.key] <= 0 {
		delete(l.perKey, c.key)
	}
}

// since is t on the limiter's monotonic clock.
func (l *Limiter) since(t time.Time) int64 { return int64(t.Sub(l.epoch)) }

// Sweep closes the connections idle at now for longer than IdleTimeout that
// carry no live state, and returns how many it closed. A connection kept
// for its live state is looked at again only after another IdleTimeout.
func (l *Limiter) Sweep(now time.Time) int {
	if l.cfg.IdleTimeout <= 0 {
		return 0
	}
	cut := l.since(now) - int64(l.cfg.IdleTimeout)
	var idle []*Conn
	l.mu.Lock()
	for c := range l.conns {
		if c.last.Load() <= cut {
			idle = append(idle, c)
		}
	}
	liveFn := l.live
	l.mu.Unlock()
	if len(idle) == 0 {
		return 0
	}
	var live func(netip.AddrPort) bool
	if liveFn != nil {
		live = liveFn()
	}
	closed := 0
	for _, c := range idle {
		if live != nil && c.remote.IsValid() && live(c.remote) {
			c.last.Store(l.since(now))
			continue
		}
		c.idle.Store(true)
		l.Stats.IdleClosed.Add(1)
		_ = c.Close()
		closed++
		l.cfg.Log.Debug("idle connection closed", "source", c.remote.String())
	}
	return closed
}

// SweepInterval is how often Start sweeps: a quarter of IdleTimeout, so a
// connection is closed at most a quarter late, but not more often than
// every 100 ms nor less often than every 30 s.
func (l *Limiter) SweepInterval() time.Duration {
	return min(max(l.cfg.IdleTimeout/4, 100*time.Millisecond), 30*time.Second)
}

// Start sweeps idle connections in the background until Stop. It does
// nothing when IdleTimeout is 0 or the sweeper already runs.
func (l *Limiter) Start() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.cfg.IdleTimeout <= 0 || l.stop != nil {
		return
	}
	l.stop, l.done = make(chan struct{}), make(chan struct{})
	go func(stop, done chan struct{}) {
		defer close(done)
		t := time.NewTicker(l.SweepInterval())
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case now := <-t.C:
				l.Sweep(now)
			}
		}
	}(l.stop, l.done)
}

// Stop ends the sweeper started by Start and waits for it. Connections stay
// open: their owner closes them.
func (l *Limiter) Stop() {
	l.mu.Lock()
	stop, done := l.stop, l.done
	l.stop, l.done = nil, nil
	l.mu.Unlock()
	if stop != nil {
		close(stop)
		<-done
	}
}

// Conn is a tracked connection.
type Conn struct {
	net.Conn
	l      *Limiter
	key    netip.Addr
	remote netip.AddrPort
	last   atomic.Int64 // when the peer last sent something, on l's clock
	idle   atomic.Bool  // closed by the sweeper
	once   sync.Once
}

// Read reads from the connection and notes the peer's activity.
func (c *Conn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	if n > 0 {
		c.last.Store(c.l.since(time.Now()))
	}
	return n, err
}

// Close closes the connection and frees its place under the cap. Only the
// first call closes; later ones return nil, so that the owner closing a
// connection the sweeper closed first (sipgo does, and warns on an error)
// is not an error.
func (c *Conn) Close() error {
	err := net.ErrClosed
	c.once.Do(func() {
		c.l.release(c)
		err = c.Conn.Close()
	})
	if errors.Is(err, net.ErrClosed) {
		return nil
	}
	return err
}

// Key is the client address the connection counts against.
func (c *Conn) Key() netip.Addr { return c.key }

// ClosedIdle reports whether the sweeper closed the connection for being idle.
func (c *Conn) ClosedIdle() bool { return c.idle.Load() }

// RemoteIP is the default key: the connection's remote IP.
func RemoteIP(c net.Conn) netip.Addr { return remoteAddr(c).Addr() }

func remoteAddr(c net.Conn) netip.AddrPort {
	ra := c.RemoteAddr()
	if ra == nil {
		return netip.AddrPort{}
	}
	if a, ok := ra.(*net.TCPAddr); ok {
		ap := a.AddrPort()
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	}
	ap, _ := netip.ParseAddrPort(ra.String())
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

// Full reports whether key holds MaxPerIP connections already, so that a
// caller that can still answer (an HTTP upgrade) refuses with a reason
// before taking the connection over; Track enforces the cap regardless.
func (l *Limiter) Full(key netip.Addr) bool {
	if l.cfg.MaxPerIP <= 0 {
		return false
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.perKey[key.Unmap()] >= l.cfg.MaxPerIP
}
