package resolve

import (
	"context"
	"log/slog"
	"net/netip"
	"slices"
	"sync"
	"time"

	"callgate/sip/sipnet"
)

// Trust keeps a set of trusted networks current: the fixed networks of
// the configuration plus every address the trusted host names resolve to
// (the name's own A/AAAA records and those of its SIP SRV targets). Each
// name is looked up again when its records expire; a name that cannot be
// looked up keeps the addresses it last had.
type Trust struct {
	r     *Resolver
	set   *sipnet.NetworkSet
	fixed sipnet.Networks
	names []string
	log   *slog.Logger

	mu    sync.Mutex
	known map[string][]netip.Addr // the last addresses of each name
}

// Trust keeps set holding fixed and the addresses of names; Run starts
// it. set starts with fixed alone.
func (r *Resolver) Trust(set *sipnet.NetworkSet, fixed sipnet.Networks, names []string, log *slog.Logger) *Trust {
	set.Store(slices.Clone(fixed))
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Trust{r: r, set: set, fixed: slices.Clone(fixed), names: slices.Clone(names), log: log, known: map[string][]netip.Addr{}}
}

// Trust's retry bounds for a name that does not resolve.
const (
	trustRetryMin = time.Second
	trustRetryMax = time.Minute
)

// Run refreshes the set until ctx ends: at once, then as the records
// expire, and with growing pauses while a name does not resolve.
func (t *Trust) Run(ctx context.Context) {
	if len(t.names) == 0 {
		return
	}
	retry := trustRetryMin
	for {
		next, ok := t.Refresh(ctx)
		wait := max(time.Until(next), minTTL)
		if ok {
			retry = trustRetryMin
		} else {
			wait = min(wait, retry)
			retry = min(2*retry, trustRetryMax)
		}
		tm := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			tm.Stop()
			return
		case <-tm.C:
		}
	}
}

// Refresh looks every name up once and updates the set; it returns when
// the earliest answer expires and whether every name resolved.
func (t *Trust) Refresh(ctx context.Context) (time.Time, bool) {
	next, ok := t.r.now().Add(maxTTL), true
	for _, name := range t.names {
		addrs, exp, err := t.resolve(ctx, name)
		if err != nil {
			ok = false
			t.log.Warn("trusted source does not resolve: keeping its last addresses", "name", name, "error", err,
				"addresses", addrList(t.last(name)))
			continue
		}
		next = earliest(next, exp)
		t.mu.Lock()
		changed := !slices.Equal(t.known[name], addrs)
		t.known[name] = addrs
		t.mu.Unlock()
		if changed {
			t.log.Info("trusted source resolved", "name", name, "addresses", addrList(addrs))
		}
	}
	t.store()
	return next, ok
}

// resolve is every address of a trusted name: its A/AAAA records and its
// SIP SRV targets', whichever exist.
func (t *Trust) resolve(ctx context.Context, name string) ([]netip.Addr, time.Time, error) {
	targets, exp, err := t.r.lookup(ctx, Name{Host: name})
	own, exp2, err2 := t.r.addrs(ctx, name)
	if err != nil && err2 != nil {
		return nil, time.Time{}, err
	}
	var out []netip.Addr
	if err == nil {
		for _, tg := range targets {
			if !containsAddr(out, tg.Addr.Addr()) {
				out = append(out, tg.Addr.Addr())
			}
		}
	} else {
		exp = exp2
	}
	if err2 == nil {
		exp = earliest(exp, exp2)
		for _, a := range own {
			if !containsAddr(out, a) {
				out = append(out, a)
			}
		}
	}
	slices.SortFunc(out, netip.Addr.Compare)
	return out, exp, nil
}

func (t *Trust) last(name string) []netip.Addr {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.known[name]
}

// store publishes the fixed networks and every known address.
func (t *Trust) store() {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := slices.Clone(t.fixed)
	for _, name := range t.names {
		for _, a := range t.known[name] {
			out = append(out, netip.PrefixFrom(a, a.BitLen()))
		}
	}
	t.set.Store(out)
}

func addrList(addrs []netip.Addr) []string {
	out := make([]string, len(addrs))
	for i, a := range addrs {
		out[i] = a.String()
	}
	return out
}
