package trunk

import (
	"context"
	"sync"
	"time"

	"github.com/emiago/sipgo/sip"
)

// runState is what Run shares with SetAccounts, under Trunk.mu.
type runState struct {
	ctx     context.Context // Run's; nil before Run
	stopped bool            // Run is returning: nothing starts any more
	wg      sync.WaitGroup  // every registration's goroutine, removed ones too
	// leaving are the registrations of removed accounts, by user: closed
	// once they have unregistered.
	leaving map[string]<-chan struct{}
}

// reloadState is a registration's part in SetAccounts.
type reloadState struct {
	want   Account            // the credentials configured last (Trunk.mu)
	creds  chan Account       // newer credentials for the running goroutine
	cancel context.CancelFunc // ends the goroutine (Trunk.mu); nil before it starts
	done   chan struct{}      // closed when the goroutine has ended, or will never start
	after  <-chan struct{}    // the same account's earlier registration, still unregistering
}

func (t *Trunk) newRegistration(a Account) *registration {
	if a.AuthUser == "" {
		a.AuthUser = a.User
	}
	t.status[a.User] = Status{Account: a.User, State: StateRegistering}
	return &registration{t: t, acc: a, callID: sip.GenerateTagN(24) + "@callgate", fromTag: sip.GenerateTagN(12),
		reload: reloadState{want: a, creds: make(chan Account, 1), done: make(chan struct{})}}
}

// startLocked runs a registration until Run's context ends or the account
// is removed. t.mu held, Run started.
func (t *Trunk) startLocked(r *registration) {
	ctx, cancel := context.WithCancel(t.run.ctx)
	r.reload.cancel = cancel
	t.run.wg.Add(1)
	go func() {
		defer t.run.wg.Done()
		defer close(r.reload.done)
		defer cancel()
		r.run(ctx)
	}()
}

// SetAccounts makes accounts the ones registered, as a configuration
// reload says, without touching the registrations that stay: a new account
// registers at once, a removed one is unregistered, one whose credentials
// changed registers again with the new ones (keeping its binding until
// then), and one the VPBX refused with 403 is tried again. Before Run it
// only changes what Run will start.
func (t *Trunk) SetAccounts(accounts []Account) {
	t.mu.Lock()
	defer t.mu.Unlock()
	old := map[string]*registration{}
	for _, r := range t.regs {
		old[r.acc.User] = r
	}
	running := t.run.ctx != nil && !t.run.stopped
	var next, started []*registration
	for _, a := range accounts {
		if a.AuthUser == "" {
			a.AuthUser = a.User
		}
		if r, ok := old[a.User]; ok {
			delete(old, a.User)
			if a != r.reload.want || t.status[a.User].State == StateForbidden {
				r.reload.want = a
				if r.reload.cancel == nil {
					r.acc = a // not running: nobody else reads it
				} else {
					select { // only the newest credentials count
					case <-r.reload.creds:
					default:
					}
					r.reload.creds <- a
				}
			}
			next = append(next, r)
			continue
		}
		r := t.newRegistration(a)
		next = append(next, r)
		started = append(started, r)
	}
	if t.run.leaving == nil {
		t.run.leaving = map[string]<-chan struct{}{}
	}
	for user, r := range old {
		delete(t.status, user)
		t.run.leaving[user] = r.reload.done
		if r.reload.cancel != nil {
			r.reload.cancel() // it unregisters if it was registered
		} else {
			close(r.reload.done) // never started
		}
	}
	t.regs = next
	for _, r := range started {
		r.reload.after = t.run.leaving[r.acc.User] // nil unless removed before: wait for it to unregister
		if running {
			t.startLocked(r)
		}
	}
}

// configuredLocked reports whether user is one of the accounts configured
// now. t.mu held.
func (t *Trunk) configuredLocked(user string) bool {
	for _, r := range t.regs {
		if r.acc.User == user {
			return true
		}
	}
	return false
}

// waitTurn waits until the same account's earlier registration, removed by
// a reload before this one was added, has unregistered: its unregister
// must not remove this one's binding. False if ctx ended first.
func (r *registration) waitTurn(ctx context.Context) bool {
	if r.reload.after == nil {
		return true
	}
	select {
	case <-r.reload.after:
		return true
	case <-ctx.Done():
		return false
	}
}

// sleep waits d, or less when a reload brings new credentials (they are
// used from the next REGISTER on). False if ctx ended first.
func (r *registration) sleep(ctx context.Context, d time.Duration) bool {
	tm := time.NewTimer(d)
	defer tm.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-tm.C:
		return true
	case a := <-r.reload.creds:
		r.useCredentials(a)
		return true
	}
}

// newCredentials waits for a reload to give the account (refused with
// 403) credentials to try. False if ctx ended first.
func (r *registration) newCredentials(ctx context.Context) bool {
	select {
	case <-ctx.Done():
		return false
	case a := <-r.reload.creds:
		r.useCredentials(a)
		return true
	}
}

// useCredentials takes new credentials on the registration's goroutine.
// The user stays (it names the registration), so Statuses may read it
// meanwhile.
func (r *registration) useCredentials(a Account) {
	r.acc.AuthUser, r.acc.Password, r.chal, r.nc = a.AuthUser, a.Password, nil, 0
}
