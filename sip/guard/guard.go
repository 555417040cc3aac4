// Package guard bans sources that keep failing digest authentication, while
// staying tolerant of many phones behind one NAT address: a source is an
// IP:port, and a whole IP is banned only after many more failures, and even
// then users that authenticated correctly from it keep working.
package guard

import (
	"net/netip"
	"sort"
	"sync"
	"sync/atomic"
	"time"
)

// Config sets the thresholds.
type Config struct {
	MaxFailures      int           // per source IP:port within Window
	MaxFailuresPerIP int           // per IP (all ports) within Window
	Window           time.Duration // failures older than this are forgotten
	BanTime          time.Duration // how long a ban lasts
}

// Ban describes one active ban.
type Ban struct {
	Source string    `json:"source"` // "IP:port" or "IP"
	Until  time.Time `json:"until"`
	User   string    `json:"user"` // last user name tried
}

type counter struct {
	n     int
	start time.Time
	user  string
}

type userAt struct {
	ip   netip.Addr
	user string
}

// Guard tracks failures and bans. It is safe for concurrent use.
type Guard struct {
	cfg Config
	now func() time.Time

	mu        sync.Mutex
	srcFail   map[netip.AddrPort]*counter
	ipFail    map[netip.Addr]*counter
	srcBan    map[netip.AddrPort]Ban
	ipBan     map[netip.Addr]Ban
	good      map[userAt]time.Time
	active    atomic.Int64 // number of bans, read without the lock on the hot path
	lastSweep time.Time
}

// New returns a guard with cfg.
func New(cfg Config) *Guard {
	return &Guard{
		cfg:     cfg,
		now:     time.Now,
		srcFail: map[netip.AddrPort]*counter{},
		ipFail:  map[netip.Addr]*counter{},
		srcBan:  map[netip.AddrPort]Ban{},
		ipBan:   map[netip.Addr]Ban{},
		good:    map[userAt]time.Time{},
	}
}

// Blocked reports whether a request from src claiming user must be dropped
// without an answer.
func (g *Guard) Blocked(src netip.AddrPort, user string) bool {
	if g.active.Load() == 0 {
		return false
	}
	now := g.now()
	g.mu.Lock()
	defer g.mu.Unlock()
	if b, ok := g.srcBan[src]; ok && now.Before(b.Until) {
		return true
	}
	ip := src.Addr().Unmap()
	if b, ok := g.ipBan[ip]; ok && now.Before(b.Until) {
		if t, ok := g.good[userAt{ip, user}]; ok && now.Sub(t) < g.cfg.Window+g.cfg.BanTime {
			return false
		}
		return true
	}
	return false
}

// Failure records a failed authentication and reports whether it caused a ban.
func (g *Guard) Failure(src netip.AddrPort, user string) bool {
	now := g.now()
	g.mu.Lock()
	defer g.mu.Unlock()
	g.sweepLocked(now)
	banned := false
	if bump(g.srcFail, src, user, now, g.cfg.Window) >= g.cfg.MaxFailures {
		g.srcBan[src] = Ban{Source: src.String(), Until: now.Add(g.cfg.BanTime), User: user}
		delete(g.srcFail, src)
		banned = true
	}
	ip := src.Addr().Unmap()
	if bump(g.ipFail, ip, user, now, g.cfg.Window) >= g.cfg.MaxFailuresPerIP {
		g.ipBan[ip] = Ban{Source: ip.String(), Until: now.Add(g.cfg.BanTime), User: user}
		delete(g.ipFail, ip)
		banned = true
	}
	g.active.Store(int64(len(g.srcBan) + len(g.ipBan)))
	return banned
}

// bump counts one failure for k within the window and returns the count.
func bump[K comparable](m map[K]*counter, k K, user string, now time.Time, window time.Duration) int {
	c, ok := m[k]
	if !ok || now.Sub(c.start) > window {
		c = &counter{start: now}
		m[k] = c
	}
	c.n++
	c.user = user
	return c.n
}

// Success records a correct authentication of user from src.
func (g *Guard) Success(src netip.AddrPort, user string) {
	now := g.now()
	ip := src.Addr().Unmap()
	g.mu.Lock()
	defer g.mu.Unlock()
	delete(g.srcFail, src)
	k := userAt{ip, user}
	if t, ok := g.good[k]; !ok || now.Sub(t) > time.Second {
		g.good[k] = now
	}
}

// sweepLocked drops expired counters, bans and good marks at most once a second.
func (g *Guard) sweepLocked(now time.Time) {
	if now.Sub(g.lastSweep) < time.Second {
		return
	}
	g.lastSweep = now
	for k, c := range g.srcFail {
		if now.Sub(c.start) > g.cfg.Window {
			delete(g.srcFail, k)
		}
	}
	for k, c := range g.ipFail {
		if now.Sub(c.start) > g.cfg.Window {
			delete(g.ipFail, k)
		}
	}
	for k, b := range g.srcBan {
		if !now.Before(b.Until) {
			delete(g.srcBan, k)
		}
	}
	for k, b := range g.ipBan {
		if !now.Before(b.Until) {
			delete(g.ipBan, k)
		}
	}
	for k, t := range g.good {
		if now.Sub(t) > g.cfg.Window+g.cfg.BanTime {
			delete(g.good, k)
		}
	}
	g.active.Store(int64(len(g.srcBan) + len(g.ipBan)))
}

// Sweep forgets what has expired; call it periodically.
func (g *Guard) Sweep() {
	g.mu.Lock()
	g.lastSweep = time.Time{}
	g.sweepLocked(g.now())
	g.mu.Unlock()
}

// Active is the number of bans in force.
func (g *Guard) Active() int {
	g.Sweep()
	return int(g.active.Load())
}

// Bans lists the bans in force, soonest to expire first.
func (g *Guard) Bans() []Ban {
	now := g.now()
	g.mu.Lock()
	defer g.mu.Unlock()
	var out []Ban
	for _, b := range g.srcBan {
		if now.Before(b.Until) {
			out = append(out, b)
		}
	}
	for _, b := range g.ipBan {
		if now.Before(b.Until) {
			out = append(out, b)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Until.Before(out[j].Until) })
	return out
}

// Unban lifts a ban on "IP:port" or "IP" and reports whether there was one.
func (g *Guard) Unban(source string) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	found := false
	if ap, err := netip.ParseAddrPort(source); err == nil {
		_, found = g.srcBan[ap]
		delete(g.srcBan, ap)
	} else if ip, err := netip.ParseAddr(source); err == nil {
		_, found = g.ipBan[ip.Unmap()]
		delete(g.ipBan, ip.Unmap())
	}
	g.active.Store(int64(len(g.srcBan) + len(g.ipBan)))
	return found
}
