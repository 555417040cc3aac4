// Package guard bans sources that keep failing digest authentication, while
// staying tolerant of many phones behind one NAT address.
//
// Three things get banned, each after MaxFailures (or MaxFailuresPerIP)
// failures within Window, for BanTime:
//
//   - a source IP:port: it gets no answer at all;
//   - an identity, a digest user name at a source IP: requests carrying its
//     credentials from that IP get no answer, whatever the password, so a
//     guesser cannot tell a right password from a wrong one;
//   - a whole IP: requests from it are still processed (a phone behind the
//     same NAT must be able to authenticate), correct credentials pass, but
//     a failure is never answered and bans the identity that failed at once
//     (unless it authenticated from that IP before), so a banned address
//     gets at most one silent guess per user name.
//
// The guard keys everything on the digest user name that was verified, never
// on a user claimed in To or From, which costs nothing to forge.
package guard

import (
	"context"
	"log/slog"
	"net/netip"
	"sort"
	"sync"
	"sync/atomic"
	"time"
)

// Config sets the thresholds.
type Config struct {
	MaxFailures      int           // per source IP:port, and per user name at an IP, within Window
	MaxFailuresPerIP int           // per IP (all ports, all users) within Window
	Window           time.Duration // failures older than this are forgotten
	BanTime          time.Duration // how long a ban lasts
	// Log receives failures, bans and unbans at warning level in the
	// stable format documented for fail2ban; nil logs nothing.
	Log *slog.Logger
}

// Verdict says how to treat a request before its credentials are answered.
type Verdict int

// Verdicts of Admit.
const (
	// Open: answer as usual.
	Open Verdict = iota
	// Quiet: the source IP is banned. Process the request (challenge it,
	// let correct credentials through) but answer no authentication
	// failure.
	Quiet
	// Drop: answer nothing.
	Drop
)

func (v Verdict) String() string { return [...]string{"open", "quiet", "drop"}[v] }

// Ban scopes.
const (
	ScopeSource = "source" // one IP:port
	ScopeIP     = "ip"     // every port of an IP
	ScopeUser   = "user"   // one digest user name at an IP
)

// Ban describes one active ban.
type Ban struct {
	Source string    `json:"source"` // "IP:port" or "IP"
	Until  time.Time `json:"until"`
	User   string    `json:"user"`   // the banned user name (scope user), else the last one tried
	Scope  string    `json:"scope"`  // source, ip or user
	Reason string    `json:"reason"` // reason of the failure that caused it
}

// MaxUserLen bounds user names kept and logged: longer ones are cut.
const MaxUserLen = 64

// maxIdentities bounds the per-user tables so that a sprayer of made-up
// user names cannot grow memory without end; when full, new identities at a
// banned IP are dropped instead of given their one guess.
var maxIdentities = 1 << 16

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
	userFail  map[userAt]*counter
	srcBan    map[netip.AddrPort]Ban
	ipBan     map[netip.Addr]Ban
	userBan   map[userAt]Ban
	good      map[userAt]time.Time
	active    atomic.Int64 // number of bans, read without the lock on the hot path
	lastSweep time.Time
	// hush limits the log lines of failures from an IP already banned
	// (each one bans a user name there) to one a second: a sprayer must not
	// flood the log, and fail2ban has seen that IP's lines before the ban.
	hush *Quieter
}

// New returns a guard with cfg.
func New(cfg Config) *Guard {
	return &Guard{
		cfg:      cfg,
		now:      time.Now,
		srcFail:  map[netip.AddrPort]*counter{},
		ipFail:   map[netip.Addr]*counter{},
		userFail: map[userAt]*counter{},
		srcBan:   map[netip.AddrPort]Ban{},
		ipBan:    map[netip.Addr]Ban{},
		userBan:  map[userAt]Ban{},
		good:     map[userAt]time.Time{},
		hush:     NewQuieter(time.Second),
	}
}

func key(ip netip.Addr, user string) userAt {
	if len(user) > MaxUserLen {
		user = user[:MaxUserLen]
	}
	return userAt{ip.Unmap(), user}
}

// Blocked reports whether src (IP:port) is banned: anything from it is
// dropped without an answer. It costs one atomic load while nothing is
// banned.
func (g *Guard) Blocked(src netip.AddrPort) bool {
	if g.active.Load() == 0 {
		return false
	}
	now := g.now()
	g.mu.Lock()
	defer g.mu.Unlock()
	b, ok := g.srcBan[unmap(src)]
	return ok && now.Before(b.Until)
}

// Admit judges a request from src carrying credentials for the digest user
// name user ("" when it carries none).
func (g *Guard) Admit(src netip.AddrPort, user string) Verdict {
	if g.active.Load() == 0 {
		return Open
	}
	src = unmap(src)
	now := g.now()
	g.mu.Lock()
	defer g.mu.Unlock()
	if b, ok := g.srcBan[src]; ok && now.Before(b.Until) {
		return Drop
	}
	if user != "" {
		if b, ok := g.userBan[key(src.Addr(), user)]; ok && now.Before(b.Until) {
			return Drop
		}
	}
	if b, ok := g.ipBan[src.Addr()]; ok && now.Before(b.Until) {
		if user != "" && !g.knownLocked(key(src.Addr(), user), now) && len(g.userBan) >= maxIdentities {
			return Drop
		}
		return Quiet
	}
	return Open
}

// knownLocked reports whether k authenticated correctly recently.
func (g *Guard) knownLocked(k userAt, now time.Time) bool {
	t, ok := g.good[k]
	return ok && now.Sub(t) < g.cfg.Window+g.cfg.BanTime
}

// Failure records a failed authentication of user from src for reason (a
// short token such as wrong_password) and reports whether it caused a ban.
func (g *Guard) Failure(src netip.AddrPort, user, reason string) bool {
	src = unmap(src)
	ip := src.Addr()
	k := key(ip, user)
	now := g.now()
	g.mu.Lock()
	defer g.mu.Unlock()
	g.sweepLocked(now)
	ipBanned := false
	if b, ok := g.ipBan[ip]; ok && now.Before(b.Until) {
		ipBanned = true
	}
	log := g.cfg.Log
	if ipBanned && !g.hush.Allow(ip) {
		log = nil
	}
	if log != nil {
		log.Warn("sip auth failure", "source", src.String(), "ip", ip.String(), "user", k.user, "reason", reason)
	}
	banned := false
	if bump(g.srcFail, src, k.user, now, g.cfg.Window) >= g.cfg.MaxFailures {
		g.srcBan[src] = g.banLocked(log, src, ScopeSource, k.user, reason, now)
		delete(g.srcFail, src)
		banned = true
	}
	if bump(g.ipFail, ip, k.user, now, g.cfg.Window) >= g.cfg.MaxFailuresPerIP {
		g.ipBan[ip] = g.banLocked(log, src, ScopeIP, k.user, reason, now)
		delete(g.ipFail, ip)
		banned = true
	}
	if user != "" && (len(g.userFail) < maxIdentities || g.userFail[k] != nil) {
		n := bump(g.userFail, k, k.user, now, g.cfg.Window)
		if n >= g.cfg.MaxFailures || (ipBanned && !g.knownLocked(k, now)) {
			if len(g.userBan) < maxIdentities {
				g.userBan[k] = g.banLocked(log, src, ScopeUser, k.user, reason, now)
			}
			delete(g.userFail, k)
			banned = true
		}
	}
	g.active.Store(g.countLocked())
	return banned
}

// banLocked makes a ban of scope caused by a failure from src, and logs it
// to log unless nil.
func (g *Guard) banLocked(log *slog.Logger, src netip.AddrPort, scope, user, reason string, now time.Time) Ban {
	b := Ban{Source: src.Addr().String(), Until: now.Add(g.cfg.BanTime), User: user, Scope: scope, Reason: reason}
	if scope == ScopeSource {
		b.Source = src.String()
	}
	if log != nil {
		log.Warn("sip source banned", "source", src.String(), "ip", src.Addr().String(), "user", user,
			"reason", reason, "scope", scope, "until", b.Until.UTC().Format(time.RFC3339))
	}
	return b
}

// logUnban logs the end of b for reason (expired, admin).
func (g *Guard) logUnban(b Ban, reason string) {
	if g.cfg.Log == nil {
		return
	}
	ip := b.Source
	if ap, err := netip.ParseAddrPort(b.Source); err == nil {
		ip = ap.Addr().String()
	}
	g.cfg.Log.Warn("sip source unbanned", "source", b.Source, "ip", ip, "user", b.User, "reason", reason, "scope", b.Scope)
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

// Success records a correct authentication of user from src: the identity
// is known good at that IP from now on. It forgives no failure (they expire
// after Window): a phone that authenticates correctly and then guesses
// desk PINs must still be banned.
func (g *Guard) Success(src netip.AddrPort, user string) {
	src = unmap(src)
	k := key(src.Addr(), user)
	now := g.now()
	g.mu.Lock()
	defer g.mu.Unlock()
	if t, ok := g.good[k]; !ok || now.Sub(t) > time.Second {
		if ok || len(g.good) < maxIdentities {
			g.good[k] = now
		}
	}
}

// sweepLocked drops expired counters, bans and good marks at most once a second.
func (g *Guard) sweepLocked(now time.Time) {
	if now.Sub(g.lastSweep) < time.Second {
		return
	}
	g.lastSweep = now
	expire(g.srcFail, now, g.cfg.Window)
	expire(g.ipFail, now, g.cfg.Window)
	expire(g.userFail, now, g.cfg.Window)
	for k, b := range g.srcBan {
		if !now.Before(b.Until) {
			delete(g.srcBan, k)
			g.logUnban(b, "expired")
		}
	}
	for k, b := range g.ipBan {
		if !now.Before(b.Until) {
			delete(g.ipBan, k)
			g.logUnban(b, "expired")
		}
	}
	for k, b := range g.userBan {
		if !now.Before(b.Until) {
			delete(g.userBan, k)
			g.logUnban(b, "expired")
		}
	}
	for k, t := range g.good {
		if now.Sub(t) > g.cfg.Window+g.cfg.BanTime {
			delete(g.good, k)
		}
	}
	g.active.Store(g.countLocked())
}

func expire[K comparable](m map[K]*counter, now time.Time, window time.Duration) {
	for k, c := range m {
		if now.Sub(c.start) > window {
			delete(m, k)
		}
	}
}

func (g *Guard) countLocked() int64 { return int64(len(g.srcBan) + len(g.ipBan) + len(g.userBan)) }

// Sweep forgets what has expired, logging the bans that end; call it
// periodically.
func (g *Guard) Sweep() {
	g.mu.Lock()
	g.lastSweep = time.Time{}
	g.sweepLocked(g.now())
	g.mu.Unlock()
}

// Run sweeps every interval until ctx ends, so that bans end (and their
// end is logged) on time even when no request asks about them.
func (g *Guard) Run(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			g.Sweep()
		}
	}
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
	add := func(b Ban) {
		if now.Before(b.Until) {
			out = append(out, b)
		}
	}
	for _, b := range g.srcBan {
		add(b)
	}
	for _, b := range g.ipBan {
		add(b)
	}
	for _, b := range g.userBan {
		add(b)
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Until.Before(out[j].Until) })
	return out
}

// Unban lifts a ban on "IP:port" (and on the user name it last tried at
// that IP), or every ban on an "IP" (its ports and its user names too), and
// reports whether there was one.
func (g *Guard) Unban(source string) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	found := false
	if ap, err := netip.ParseAddrPort(source); err == nil {
		ap = unmap(ap)
		if b, ok := g.srcBan[ap]; ok {
			found = true
			delete(g.srcBan, ap)
			g.logUnban(b, "admin")
			// Lifting a phone's ban means letting it back in: its user
			// name at that IP goes free too.
			k := key(ap.Addr(), b.User)
			if ub, ok := g.userBan[k]; ok {
				delete(g.userBan, k)
				delete(g.userFail, k)
				g.logUnban(ub, "admin")
			}
		}
	} else if ip, err := netip.ParseAddr(source); err == nil {
		ip = ip.Unmap()
		if b, ok := g.ipBan[ip]; ok {
			found = true
			delete(g.ipBan, ip)
			g.logUnban(b, "admin")
		}
		delete(g.ipFail, ip)
		for k, b := range g.srcBan {
			if k.Addr() == ip {
				found = true
				delete(g.srcBan, k)
				g.logUnban(b, "admin")
			}
		}
		for k, b := range g.userBan {
			if k.ip == ip {
				found = true
				delete(g.userBan, k)
				delete(g.userFail, k)
				g.logUnban(b, "admin")
			}
		}
	}
	g.active.Store(g.countLocked())
	return found
}

func unmap(ap netip.AddrPort) netip.AddrPort {
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}
