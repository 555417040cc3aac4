// Package resolve finds the VPBX by its DNS name, as RFC 3263 says a SIP
// client does: a name without a port is looked up as SRV records
// (_sip._udp.NAME, _sip._tcp.NAME; priority and weight honoured), then as
// A/AAAA; a name with a port, and each SRV target, as A/AAAA. Addresses
// are looked up in /etc/hosts first, then in DNS (nsswitch "files dns"),
// so localhost and names an admin pins there need no DNS server. Answers
// are cached for their TTL; a lookup that fails while an older answer is
// known keeps using that one (RFC 8767) and tries again shortly. An
// address that did not answer a request goes to the end of the order for
// a while, and the names are looked up again at the next use. Trust keeps
// the set of the VPBX's trusted sources current from the same lookups.
package resolve

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"callgate/sip/sipnet"

	"github.com/miekg/dns"
	"golang.org/x/sync/singleflight"
)

// Name is a SIP server as a configuration names it: an optional
// transport, a host name or IP address, and an optional port.
type Name struct {
	Transport sipnet.Transport // "": any callgate speaks, as SRV records say
	Host      string           // a DNS name or an IP address
	Port      uint16           // 0: from SRV records (a name) or 5060
}

// String writes the name as a configuration does ("udp:host:port",
// "host").
func (n Name) String() string {
	s := n.Host
	if n.Port != 0 {
		s = net.JoinHostPort(n.Host, strconv.Itoa(int(n.Port)))
	}
	if n.Transport != "" {
		s = string(n.Transport) + ":" + s
	}
	return s
}

// Config configures a Resolver. Zero values take the defaults.
type Config struct {
	// Servers are the DNS servers asked, in order; empty: the
	// nameservers of ResolvConf.
	Servers []netip.AddrPort
	// ResolvConf is read when Servers is empty; default /etc/resolv.conf.
	ResolvConf string
	// Hosts is the hosts file; default /etc/hosts. "-" reads none.
	Hosts string
	// Transports are those whose SRV records are looked up for a name
	// without a transport, in the order they are preferred; default
	// every transport callgate speaks.
	Transports []sipnet.Transport
	// Timeout bounds one DNS question to one server; default 2 s.
	Timeout time.Duration
	// DownFor is how long an address that did not answer goes last;
	// default 30 s.
	DownFor time.Duration
	// IPv4Only leaves IPv6 addresses of names out of the targets: the
	// sockets requests leave from are IPv4 (an address written in the
	// configuration is used as it is).
	IPv4Only bool
	// Log receives cache refreshes that failed; default: discarded.
	Log *slog.Logger
}

// Defaults.
const (
	DefaultPort = 5060
	// MaxTargets bounds the addresses a request is tried at: with the
	// default failover timeout of 2 s, at most 16 s before the last one,
	// well within an INVITE's Timer B (32 s).
	MaxTargets = 8
	minTTL     = time.Second // a TTL of 0 still answers the lookups of this second
	maxTTL     = time.Hour
	// staleRetry is how soon a name whose refresh failed is asked again;
	// the answer it had is used until then.
	staleRetry = 5 * time.Second
	hostsCheck = 2 * time.Second
)

// ErrNotFound is returned for a name DNS says does not exist or has no
// address (NXDOMAIN, or no records of the kinds asked).
var ErrNotFound = errors.New("no such host")

// Resolver looks names up and caches the answers. It is safe for
// concurrent use.
type Resolver struct {
	cfg     Config
	servers []string // "IP:port"
	noDNS   error    // why there are no servers
	udp     *dns.Client
	tcp     *dns.Client
	hosts   *hostsFile
	log     *slog.Logger
	flight  singleflight.Group
	now     func() time.Time
	randN   func(n int) int

	mu    sync.Mutex
	cache map[string]*entry
	down  map[sipnet.Target]time.Time
}

// entry is one cached answer: SRV records or addresses of one name.
type entry struct {
	srv     []*dns.SRV
	addrs   []netip.Addr
	expires time.Time
}

// New builds a resolver. Missing DNS servers are not an error here: names
// in the hosts file and IP addresses still resolve, and every other lookup
// reports why DNS cannot be asked.
func New(cfg Config) *Resolver {
	if cfg.ResolvConf == "" {
		cfg.ResolvConf = "/etc/resolv.conf"
	}
	if cfg.Hosts == "" {
		cfg.Hosts = "/etc/hosts"
	}
	if len(cfg.Transports) == 0 {
		cfg.Transports = sipnet.Transports()
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 2 * time.Second
	}
	if cfg.DownFor <= 0 {
		cfg.DownFor = 30 * time.Second
	}
	r := &Resolver{cfg: cfg, log: cfg.Log, now: time.Now, randN: rand.IntN,
		udp:   &dns.Client{Net: "udp", Timeout: cfg.Timeout},
		tcp:   &dns.Client{Net: "tcp", Timeout: cfg.Timeout},
		cache: map[string]*entry{}, down: map[sipnet.Target]time.Time{}}
	if r.log == nil {
		r.log = slog.New(slog.DiscardHandler)
	}
	if cfg.Hosts != "-" {
		r.hosts = &hostsFile{path: cfg.Hosts, check: hostsCheck}
	}
	for _, s := range cfg.Servers {
		r.servers = append(r.servers, s.String())
	}
	if len(r.servers) == 0 {
		cc, err := dns.ClientConfigFromFile(cfg.ResolvConf)
		switch {
		case err != nil:
			r.noDNS = fmt.Errorf("no DNS server: %w", err)
		case len(cc.Servers) == 0:
			r.noDNS = fmt.Errorf("no DNS server: %s names no nameserver", cfg.ResolvConf)
		default:
			for _, s := range cc.Servers {
				r.servers = append(r.servers, net.JoinHostPort(s, cc.Port))
			}
		}
	}
	return r
}

// Servers are the DNS servers asked ("IP:port"), for the log.
func (r *Resolver) Servers() []string { return r.servers }

// Lookup returns where requests to n go, in the order to try them
// (RFC 3263), at most MaxTargets; addresses that recently did not answer
// come last.
func (r *Resolver) Lookup(ctx context.Context, n Name) ([]sipnet.Target, error) {
	ts, _, err := r.lookup(ctx, n)
	if len(ts) > MaxTargets {
		ts = ts[:MaxTargets]
	}
	return ts, err
}

// lookup is Lookup with the time its answer expires.
func (r *Resolver) lookup(ctx context.Context, n Name) ([]sipnet.Target, time.Time, error) {
	now := r.now()
	transports := r.cfg.Transports
	if n.Transport != "" {
		transports = []sipnet.Transport{n.Transport}
	}
	port := n.Port
	if port == 0 {
		port = DefaultPort
	}
	if ip, err := netip.ParseAddr(n.Host); err == nil {
		return []sipnet.Target{{Transport: transports[0], Addr: netip.AddrPortFrom(ip.Unmap(), port)}}, now.Add(maxTTL), nil
	}
	// A name with a port, or one pinned in the hosts file, is an address
	// lookup; a bare name is looked up as SRV first.
	if n.Port != 0 || len(r.hosts.lookup(n.Host, now)) > 0 {
		addrs, exp, err := r.addrs(ctx, n.Host)
		if err != nil {
			return nil, time.Time{}, err
		}
		return r.usable(n, targetsOf(transports[0], addrs, port), now, exp)
	}
	var (
		targets []sipnet.Target
		exp     = now.Add(maxTTL)
		srvErr  error
		found   bool
	)
	for _, tr := range transports {
		qname := "_sip._" + string(tr) + "." + n.Host
		records, e, err := r.srv(ctx, qname)
		if err != nil {
			srvErr = err
			continue
		}
		if len(records) > 0 {
			// The absence of records does not set when to look again:
			// without a SOA it is not cached at all.
			exp, found = earliest(exp, e), true
		}
		for _, rec := range orderSRV(records, r.randN) {
			addrs, e, err := r.addrs(ctx, rec.Target)
			if err != nil {
				r.log.Warn("SRV target does not resolve", "srv", qname, "target", rec.Target, "error", err)
				srvErr = err
				continue
			}
			exp = earliest(exp, e)
			targets = append(targets, targetsOf(tr, addrs, rec.Port)...)
		}
	}
	switch {
	case len(targets) > 0:
		return r.usable(n, targets, now, exp)
	case found || srvErr != nil:
		if srvErr == nil {
			srvErr = ErrNotFound
		}
		return nil, time.Time{}, fmt.Errorf("%s: %w", n.Host, srvErr)
	}
	// No SRV records at all: the name's own addresses, port 5060
	// (RFC 3263 §4.2).
	addrs, e, err := r.addrs(ctx, n.Host)
	if err != nil {
		return nil, time.Time{}, err
	}
	return r.usable(n, targetsOf(transports[0], addrs, port), now, earliest(exp, e))
}

// usable arranges the targets of n (see arrange), without IPv6 ones when
// the sockets are IPv4 only.
func (r *Resolver) usable(n Name, ts []sipnet.Target, now, exp time.Time) ([]sipnet.Target, time.Time, error) {
	if r.cfg.IPv4Only {
		ts = slices.DeleteFunc(ts, func(t sipnet.Target) bool { return !t.Addr.Addr().Is4() })
		if len(ts) == 0 {
			return nil, time.Time{}, fmt.Errorf("%s has only IPv6 addresses, and callgate's SIP sockets are IPv4", n.Host)
		}
	}
	return r.arrange(ts, now), exp, nil
}

func targetsOf(tr sipnet.Transport, addrs []netip.Addr, port uint16) []sipnet.Target {
	out := make([]sipnet.Target, len(addrs))
	for i, a := range addrs {
		out[i] = sipnet.Target{Transport: tr, Addr: netip.AddrPortFrom(a, port)}
	}
	return out
}

func earliest(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

// arrange drops repeated targets and moves those that recently did not
// answer to the end, keeping the order among them.
func (r *Resolver) arrange(ts []sipnet.Target, now time.Time) []sipnet.Target {
	seen := make(map[sipnet.Target]bool, len(ts))
	var up, down []sipnet.Target
	r.mu.Lock()
	for _, t := range ts {
		if seen[t] {
			continue
		}
		seen[t] = true
		if until, ok := r.down[t]; ok && now.Before(until) {
			down = append(down, t)
		} else {
			delete(r.down, t)
			up = append(up, t)
		}
	}
	r.mu.Unlock()
	return append(up, down...)
}

// Unreachable reports that t did not answer a request in time: it is
// tried last for a while, and every cached answer is asked for again at
// its next use (the one known is kept if DNS does not answer).
func (r *Resolver) Unreachable(t sipnet.Target) {
	now := r.now()
	r.mu.Lock()
	defer r.mu.Unlock()
	r.down[t] = now.Add(r.cfg.DownFor)
	for k, e := range r.cache {
		if e.expires.After(now) {
			// A copy: readers hold the entry without the lock.
			expired := *e
			expired.expires = now
			r.cache[k] = &expired
		}
	}
}

// Addrs returns the addresses of a host name: the hosts file's, else the
// A and AAAA records' (IPv4 first).
func (r *Resolver) Addrs(ctx context.Context, host string) ([]netip.Addr, error) {
	a, _, err := r.addrs(ctx, host)
	return a, err
}

func (r *Resolver) addrs(ctx context.Context, host string) ([]netip.Addr, time.Time, error) {
	now := r.now()
	if ip, err := netip.ParseAddr(host); err == nil {
		return []netip.Addr{ip.Unmap()}, now.Add(maxTTL), nil
	}
	if a := r.hosts.lookup(host, now); len(a) > 0 {
		return a, now.Add(hostsCheck), nil
	}
	e, err := r.cached(ctx, "addr "+canonical(host), func(ctx context.Context) (*entry, error) {
		return r.fetchAddrs(ctx, host)
	})
	if err != nil {
		return nil, time.Time{}, err
	}
	return e.addrs, e.expires, nil
}

// srv returns the SRV records of qname; none (not an error) when DNS
// says there are none.
func (r *Resolver) srv(ctx context.Context, qname string) ([]*dns.SRV, time.Time, error) {
	e, err := r.cached(ctx, "srv "+canonical(qname), func(ctx context.Context) (*entry, error) {
		in, err := r.exchange(ctx, qname, dns.TypeSRV)
		if err != nil {
			return nil, err
		}
		out := &entry{}
		ttl := maxTTL
		for _, rr := range in.Answer {
			if s, ok := rr.(*dns.SRV); ok {
				out.srv = append(out.srv, s)
				ttl = min(ttl, time.Duration(s.Hdr.Ttl)*time.Second)
			}
		}
		if len(out.srv) == 0 {
			// "None" is remembered only as long as the zone's SOA says.
			out.expires = r.now().Add(negativeTTL(in))
			return out, nil
		}
		out.expires = r.now().Add(max(ttl, minTTL))
		return out, nil
	})
	if err != nil {
		return nil, time.Time{}, err
	}
	return e.srv, e.expires, nil
}

// negativeTTL is how long "no such records" may be remembered: the SOA's
// minimum in the authority section (RFC 2308), else not at all.
func negativeTTL(m *dns.Msg) time.Duration {
	for _, rr := range m.Ns {
		if soa, ok := rr.(*dns.SOA); ok {
			return min(time.Duration(min(soa.Hdr.Ttl, soa.Minttl))*time.Second, maxTTL)
		}
	}
	return 0
}

// fetchAddrs asks for the A and AAAA records of host at once.
func (r *Resolver) fetchAddrs(ctx context.Context, host string) (*entry, error) {
	type answer struct {
		msg *dns.Msg
		err error
	}
	var a, aaaa answer
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); a.msg, a.err = r.exchange(ctx, host, dns.TypeA) }()
	go func() { defer wg.Done(); aaaa.msg, aaaa.err = r.exchange(ctx, host, dns.TypeAAAA) }()
	wg.Wait()
	if a.err != nil && aaaa.err != nil {
		return nil, a.err
	}
	out := &entry{}
	ttl := maxTTL
	for _, ans := range []answer{a, aaaa} {
		if ans.msg == nil {
			continue
		}
		for _, rr := range ans.msg.Answer {
			var ip net.IP
			switch rec := rr.(type) {
			case *dns.A:
				ip = rec.A
			case *dns.AAAA:
				ip = rec.AAAA
			default:
				continue
			}
			if addr, ok := netip.AddrFromSlice(ip); ok && !containsAddr(out.addrs, addr.Unmap()) {
				out.addrs = append(out.addrs, addr.Unmap())
				ttl = min(ttl, time.Duration(rr.Header().Ttl)*time.Second)
			}
		}
	}
	if len(out.addrs) == 0 {
		if err := cmpErr(a.err, aaaa.err); err != nil {
			return nil, err // one question failed, the other had nothing
		}
		return nil, fmt.Errorf("%s has no address in DNS (%s): %w", canonical(host), rcodeOf(a.msg), ErrNotFound)
	}
	out.addrs = v4First(out.addrs)
	out.expires = r.now().Add(max(ttl, minTTL))
	return out, nil
}

// rcodeOf names a DNS answer's code for messages ("NXDOMAIN", or
// "NOERROR" for a name without records of the kind asked).
func rcodeOf(m *dns.Msg) string {
	if m == nil {
		return "no answer"
	}
	return dns.RcodeToString[m.Rcode]
}

func cmpErr(errs ...error) error {
	for _, e := range errs {
		if e != nil {
			return e
		}
	}
	return nil
}

// cached answers key from the cache while it is fresh, else fetches it
// once for every caller waiting for it. When the fetch fails with
// anything but ErrNotFound and an older answer is known, that answer is
// used for staleRetry more: a DNS server that is down for a moment does
// not take the VPBX away.
func (r *Resolver) cached(ctx context.Context, key string, fetch func(context.Context) (*entry, error)) (*entry, error) {
	r.mu.Lock()
	e := r.cache[key]
	r.mu.Unlock()
	if e != nil && r.now().Before(e.expires) {
		return e, nil // entries are never changed once cached: see Unreachable
	}
	ch := r.flight.DoChan(key, func() (any, error) {
		// Not the caller's context: the answer is shared with every
		// caller waiting for it, and cached.
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.cfg.Timeout*time.Duration(max(1, len(r.servers))+1))
		defer cancel()
		fresh, err := fetch(fctx)
		now := r.now()
		r.mu.Lock()
		defer r.mu.Unlock()
		old := r.cache[key]
		switch {
		case err == nil:
			r.cache[key] = fresh
			return fresh, nil
		case errors.Is(err, ErrNotFound) || old == nil:
			delete(r.cache, key)
			return nil, err
		}
		r.log.Warn("DNS lookup failed: using the last answer", "query", key, "error", err, "retry_in", staleRetry.String())
		stale := *old
		stale.expires = now.Add(staleRetry)
		r.cache[key] = &stale
		return &stale, nil
	})
	select {
	case res := <-ch:
		if res.Err != nil {
			return nil, res.Err
		}
		return res.Val.(*entry), nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// exchange asks the DNS servers in turn until one answers: NOERROR, or
// NXDOMAIN (the name does not exist, for the caller to read in Rcode); a
// truncated answer is asked again over TCP.
func (r *Resolver) exchange(ctx context.Context, name string, qtype uint16) (*dns.Msg, error) {
	if len(r.servers) == 0 {
		return nil, r.noDNS
	}
	q := new(dns.Msg)
	q.SetQuestion(dns.Fqdn(name), qtype)
	q.RecursionDesired = true
	q.SetEdns0(1232, false)
	qs := strings.TrimSuffix(q.Question[0].Name, ".") + " " + dns.TypeToString[qtype]
	var errs []error
	for _, s := range r.servers {
		in, _, err := r.udp.ExchangeContext(ctx, q, s)
		if err == nil && in.Truncated {
			in, _, err = r.tcp.ExchangeContext(ctx, q, s)
		}
		switch {
		case err != nil:
			errs = append(errs, fmt.Errorf("%s: %w", s, err))
		case in.Rcode == dns.RcodeSuccess || in.Rcode == dns.RcodeNameError:
			return in, nil
		default:
			errs = append(errs, fmt.Errorf("%s answered %s", s, dns.RcodeToString[in.Rcode]))
		}
		if ctx.Err() != nil {
			break
		}
	}
	return nil, fmt.Errorf("lookup %s: %w", qs, errors.Join(errs...))
}
