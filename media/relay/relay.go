// Package relay anchors RTP/RTCP at callgate: each call gets a session with
// one port pair facing each party, and packets arriving on one side leave
// from the other side's ports toward that party. The signalling layer only
// asks for ports and tells where the parties are (offer/answer/delete, as
// Kamailio asks rtpengine); it never touches these sockets.
//
// Forwarding allocates nothing per packet. Parties behind NAT are handled by
// symmetric latching: a side's real address is the source of its first
// packet, whatever its SDP said.
package relay

import (
	"errors"
	"fmt"
	"net/netip"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// Side of a session. A is the outside party (left channel of a recording),
// B the employee (right channel).
type Side int

// Sides.
const (
	A Side = 0
	B Side = 1
)

func (s Side) String() string { return [...]string{"A", "B"}[s] }

// Config of the relay.
type Config struct {
	Bind    netip.Addr    // address the RTP sockets bind to
	PortMin int           // even
	PortMax int           // last usable port (an odd RTCP port)
	Timeout time.Duration // no RTP in either direction for this long: OnTimeout
	// OnTimeout is called (from the relay's watchdog) with the session id.
	OnTimeout func(id string)
	// Workers is the number of forwarding loops (0: one per CPU the Go
	// runtime uses). A session goes to the first loop carrying fewer than
	// SpillAt sessions, or to the least loaded once all carry that many.
	Workers int
	// SpillAt is how many sessions a loop carries before the next one
	// takes any (0: DefaultSpillAt).
	SpillAt int
}

// DefaultSpillAt fills one forwarding loop with this many sessions before
// the next takes any. One loop's epoll_wait then returns many sockets at
// a time, and the second loop's thread does not wake for a few packets:
// at 500 calls on two cores, one loop cost 1.2–1.3 ms of CPU per
// call-second against 1.6–1.7 ms for two loops sharing the calls
// round-robin, while at 1,000 calls one loop alone fell behind
// (BENCHMARKS.md, "Relay: one loop or two").
const DefaultSpillAt = 400

// Tap receives a copy of every audio packet for recording. It must not
// block and must not keep payload after returning.
type Tap func(side Side, seq uint16, ts uint32, pt uint8, payload []byte)

// ErrNoPorts means the RTP port range is exhausted.
var ErrNoPorts = errors.New("no free RTP ports")

// Relay owns the port pool and the sessions.
type Relay struct {
	cfg Config

	mu       sync.Mutex
	free     []int // even RTP ports not in use, oldest-freed first
	sessions map[string]*Session
	stop     chan struct{}
	wg       sync.WaitGroup
	workers  []*worker

	// Packets and Bytes count everything forwarded; Dropped what could not
	// be (unknown destination, wrong source).
	Packets, Bytes, Dropped atomic.Uint64
}

// New creates the relay; its watchdog runs until Close.
func New(cfg Config) (*Relay, error) {
	if cfg.PortMin%2 != 0 || cfg.PortMax <= cfg.PortMin {
		return nil, fmt.Errorf("relay: bad port range %d-%d", cfg.PortMin, cfg.PortMax)
	}
	r := &Relay{cfg: cfg, sessions: map[string]*Session{}, stop: make(chan struct{})}
	n := cfg.Workers
	if n <= 0 {
		n = runtime.GOMAXPROCS(0)
	}
	for range n {
		w, err := newWorker()
		if err != nil {
			for _, w := range r.workers {
				w.close()
			}
			return nil, err
		}
		r.workers = append(r.workers, w)
	}
	for p := cfg.PortMin; p+1 <= cfg.PortMax; p += 2 {
		r.free = append(r.free, p)
	}
	if cfg.Timeout > 0 {
		r.wg.Add(1)
		go r.watchdog()
	}
	return r, nil
}

// Session is one call's media.
type Session struct {
	id      string
	relay   *Relay
	legs    [2]*leg
	tap     atomic.Pointer[Tap]
	created time.Time
	worker  *worker
	// timedOut makes OnTimeout fire once per session.
	timedOut atomic.Bool
	once     sync.Once
}

// Open allocates a session with a port pair for each side and starts
// forwarding.
func (r *Relay) Open(id string) (*Session, error) {
	s := &Session{id: id, relay: r, created: time.Now()}
	for i := range s.legs {
		l, err := r.bind()
		if err != nil {
			if i == 1 {
				s.legs[0].close()
				r.release(s.legs[0].port)
			}
			return nil, fmt.Errorf("relay session %s: %w", id, err)
		}
		l.side = Side(i)
		l.session = s
		s.legs[i] = l
	}
	s.legs[A].other, s.legs[B].other = s.legs[B], s.legs[A]
	s.worker = r.pickWorker()
	r.mu.Lock()
	if old, ok := r.sessions[id]; ok {
		r.mu.Unlock()
		s.worker.sessions.Add(-1)
		s.legs[A].close()
		s.legs[B].close()
		r.release(s.legs[A].port)
		r.release(s.legs[B].port)
		return old, fmt.Errorf("relay session %s exists", id)
	}
	r.sessions[id] = s
	r.mu.Unlock()
	s.worker.add(s.socks()...)
	return s, nil
}

// LoopSessions is how many sessions each forwarding loop carries.
func (r *Relay) LoopSessions() []int {
	out := make([]int, len(r.workers))
	for i, w := range r.workers {
		out[i] = int(w.sessions.Load())
	}
	return out
}

// pickWorker chooses the loop for a new session and counts it there.
func (r *Relay) pickWorker() *worker {
	spill := int32(r.cfg.SpillAt)
	if spill <= 0 {
		spill = DefaultSpillAt
	}
	best := r.workers[0]
	for _, w := range r.workers {
		n := w.sessions.Load()
		if n < spill {
			best = w
			break
		}
		if n < best.sessions.Load() {
			best = w
		}
	}
	best.sessions.Add(1)
	return best
}

// Get returns an open session.
func (r *Relay) Get(id string) (*Session, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	s, ok := r.sessions[id]
	return s, ok
}

// Delete closes a session if it exists.
func (r *Relay) Delete(id string) {
	if s, ok := r.Get(id); ok {
		s.Close()
	}
}

// Active is the number of open sessions.
func (r *Relay) Active() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.sessions)
}

// FreePairs is the number of port pairs left.
func (r *Relay) FreePairs() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.free)
}

func (r *Relay) bind() (*leg, error) {
	// Try each free pair at most once: a port taken by another program is
	// moved to the back and skipped. The sockets are opened outside the
	// lock, so that one call's set-up does not wait on another's system
	// calls (nor on its thread being descheduled in the middle of them).
	r.mu.Lock()
	tries := len(r.free)
	r.mu.Unlock()
	for ; tries > 0; tries-- {
		r.mu.Lock()
		if len(r.free) == 0 {
			r.mu.Unlock()
			break
		}
		p := r.free[0]
		r.free = r.free[1:]
		r.mu.Unlock()
		l, err := listenPair(r.cfg.Bind, p)
		if err == nil {
			return l, nil
		}
		r.release(p)
	}
	return nil, ErrNoPorts
}

func (r *Relay) release(port int) {
	r.mu.Lock()
	r.free = append(r.free, port) // reused last, so stray late packets find nobody
	r.mu.Unlock()
}

func listenPair(ip netip.Addr, port int) (*leg, error) {
	rtp, err := listenUDP(ip, port)
	if err != nil {
		return nil, err
	}
	rtcp, err := listenUDP(ip, port+1)
	if err != nil {
		unix.Close(rtp)
		return nil, err
	}
	return &leg{rtpFD: rtp, rtcpFD: rtcp, port: port, inet4: ip.Is4()}, nil
}

func (s *Session) socks() []*sock {
	out := make([]*sock, 0, 4)
	for _, l := range s.legs {
		out = append(out, &sock{fd: l.rtpFD, leg: l, slot: -1}, &sock{fd: l.rtcpFD, leg: l, rtcp: true, slot: -1})
	}
	s.legs[A].socks, s.legs[B].socks = out[:2], out[2:]
	return out
}

// Port is the local RTP port facing side (what goes into that side's SDP).
func (s *Session) Port(side Side) int { return s.legs[side].port }

// ID is the session id.
func (s *Session) ID() string { return s.id }

// SetRemote tells where side said (in SDP) it receives RTP. Latching starts
// over: the next packet from that side fixes its real address.
func (s *Session) SetRemote(side Side, addr netip.AddrPort) {
	l := s.legs[side]
	a := addr
	l.remote.Store(&a)
	sig := addr
	l.signalled.Store(&sig)
	l.parked.Store(false)
	rtcp := netip.AddrPortFrom(addr.Addr(), addr.Port()+1)
	l.remoteRTCP.Store(&rtcp)
	l.latched.Store(false)
}

// Park stops sending to side until the next SetRemote (the party's phone
// talks through another session for a while: an attended transfer's
// consultation). What the other side sends is dropped quietly.
func (s *Session) Park(side Side) {
	l := s.legs[side]
	l.parked.Store(true)
	l.remote.Store(nil)
	l.remoteRTCP.Store(nil)
	l.signalled.Store(nil)
	l.latched.Store(false)
}

// SetTap installs the recording tap (nil removes it).
func (s *Session) SetTap(t Tap) {
	if t == nil {
		s.tap.Store(nil)
		return
	}
	s.tap.Store(&t)
}

// Stats returns what side has sent to callgate.
func (s *Session) Stats(side Side) Stats { return s.legs[side].stats() }

// Remote returns side's current (possibly latched) RTP address.
func (s *Session) Remote(side Side) (netip.AddrPort, bool) {
	p := s.legs[side].remote.Load()
	if p == nil {
		return netip.AddrPort{}, false
	}
	return *p, s.legs[side].latched.Load()
}

// Idle is how long no RTP has arrived from either side (since the session
// opened if none ever did).
func (s *Session) Idle(now time.Time) time.Duration {
	last := max(s.legs[A].last.Load(), s.legs[B].last.Load(), s.created.UnixNano())
	return now.Sub(time.Unix(0, last))
}

// Close stops forwarding and returns the ports.
func (s *Session) Close() {
	s.once.Do(func() {
		r := s.relay
		r.mu.Lock()
		if r.sessions[s.id] == s {
			delete(r.sessions, s.id)
		}
		r.mu.Unlock()
		s.worker.remove(append(s.legs[A].socks, s.legs[B].socks...)...)
		s.worker.sessions.Add(-1)
		for _, l := range s.legs {
			r.release(l.port)
		}
	})
}

func (r *Relay) watchdog() {
	defer r.wg.Done()
	t := time.NewTicker(min(time.Second, r.cfg.Timeout/2))
	defer t.Stop()
	for {
		select {
		case <-r.stop:
			return
		case now := <-t.C:
			var idle []string
			r.mu.Lock()
			for id, s := range r.sessions {
				if s.Idle(now) > r.cfg.Timeout && s.timedOut.CompareAndSwap(false, true) {
					idle = append(idle, id)
				}
			}
			r.mu.Unlock()
			for _, id := range idle {
				if r.cfg.OnTimeout != nil {
					r.cfg.OnTimeout(id)
				}
			}
		}
	}
}

// Close closes every session and stops the watchdog.
func (r *Relay) Close() {
	close(r.stop)
	r.wg.Wait()
	r.mu.Lock()
	all := make([]*Session, 0, len(r.sessions))
	for _, s := range r.sessions {
		all = append(all, s)
	}
	r.mu.Unlock()
	for _, s := range all {
		s.Close()
	}
	for _, w := range r.workers {
		w.close()
	}
}
