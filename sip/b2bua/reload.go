package b2bua

import "time"

// reloaded is the part of Config a configuration reload changes while
// calls run. It never changes once stored.
type reloaded struct {
	accounts    map[string]bool
	ringTimeout time.Duration
}

// SetAccounts changes which Request-URI users are upstream accounts: an
// INVITE from the trusted networks to one of them is an inbound call. A
// call in progress is not affected.
func (b *B2BUA) SetAccounts(users map[string]bool) {
	b.reload(func(r *reloaded) { r.accounts = users })
}

// SetRingTimeout changes how long phones ring for calls that start from
// now on (0: 30 s).
func (b *B2BUA) SetRingTimeout(d time.Duration) {
	if d == 0 {
		d = 30 * time.Second
	}
	b.reload(func(r *reloaded) { r.ringTimeout = d })
}

// reload stores a copy of what is in force with change applied. Reloads
// come one at a time (the gateway's reload holds its lock).
func (b *B2BUA) reload(change func(*reloaded)) {
	r := reloaded{accounts: b.cfg.Accounts, ringTimeout: b.cfg.RingTimeout}
	if cur := b.reloaded.Load(); cur != nil {
		r = *cur
	}
	change(&r)
	b.reloaded.Store(&r)
}

func (b *B2BUA) isAccount(user string) bool {
	if r := b.reloaded.Load(); r != nil {
		return r.accounts[user]
	}
	return b.cfg.Accounts[user]
}

func (b *B2BUA) ringTimeout() time.Duration {
	if r := b.reloaded.Load(); r != nil {
		return r.ringTimeout
	}
	return b.cfg.RingTimeout
}
