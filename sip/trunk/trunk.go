// Package trunk keeps callgate registered with the upstream VPBX: one
// registration per account, refreshed before it expires, retried with
// exponential backoff and jitter after failures, stopped for good on 403,
// and removed on shutdown.
package trunk

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"callgate/sip/sipnet"

	"github.com/emiago/sipgo/sip"
	icdigest "github.com/icholy/digest"
)

// State of one account's registration.
type State string

// States.
const (
	StateRegistering State = "registering"
	StateRegistered  State = "registered"
	StateBackoff     State = "backoff"   // failed, retrying later
	StateForbidden   State = "forbidden" // 403: not retried until restart or reload
	StateStopped     State = "stopped"
)

// Account is one VPBX SIP account.
type Account struct {
	User     string
	AuthUser string // default User
	Password string
}

// Config says where and how to register.
type Config struct {
	// Upstream gives the registrar's addresses in the order to try them.
	Upstream Upstream
	Domain   string // SIP domain of the accounts
	// Contacts are callgate's host:port for the Contact header, per
	// transport it listens on.
	Contacts map[sipnet.Transport]string
	Expires  time.Duration
	Timeout  time.Duration // one REGISTER without an answer (at the last address)
	// Failover is how long a REGISTER waits for an answer before the
	// next address is tried (capped by Timeout).
	Failover time.Duration
	// Recheck is how often a registered account checks that its
	// registrar is still among the addresses (DNS may have moved the
	// VPBX); default 1 s.
	Recheck   time.Duration
	RetryMin  time.Duration
	RetryMax  time.Duration
	UserAgent string
}

// Upstream says where the VPBX's registrar is: its addresses in the
// order to try them (RFC 3263; resolve.Service looks them up in DNS), and
// which of them did not answer.
type Upstream interface {
	Targets(ctx context.Context) ([]sipnet.Target, error)
	Unreachable(sipnet.Target)
}

// Status is a snapshot of one account.
type Status struct {
	Account   string    `json:"account"`
	State     State     `json:"state"`
	Expires   time.Time `json:"expires,omitzero"`  // of the current registration
	NextTry   time.Time `json:"next_try,omitzero"` // when backing off
	LastError string    `json:"last_error,omitempty"`
	// Target is the registrar's address the registration is held at.
	Target   string `json:"target,omitempty"`
	Failures int    `json:"failures"` // consecutive
}

// Sender sends a request and returns its final response; in callgate it is
// a sipgo client's Do, sending from the SIP listener's socket.
type Sender func(ctx context.Context, req *sip.Request) (*sip.Response, error)

// Trunk runs the registrations.
type Trunk struct {
	cfg      Config
	client   Sender
	log      *slog.Logger
	onChange func(Status)

	mu     sync.Mutex
	status map[string]Status
	regs   []*registration // the accounts configured now, in order
	run    runState        // see SetAccounts
}

// New prepares a registration for each account; Run starts them.
// onChange, if set, is called (from the account's goroutine) on every state change.
func New(cfg Config, client Sender, accounts []Account, log *slog.Logger, onChange func(Status)) *Trunk {
	if cfg.Recheck <= 0 {
		cfg.Recheck = time.Second
	}
	t := &Trunk{cfg: cfg, client: client, log: log, onChange: onChange, status: map[string]Status{}}
	for _, a := range accounts {
		t.regs = append(t.regs, t.newRegistration(a))
	}
	return t
}

// Run registers every account and keeps the registrations until ctx ends;
// then it unregisters them (bounded by the register timeout) and returns.
// Accounts SetAccounts adds later start at once; those it removes are
// unregistered then.
func (t *Trunk) Run(ctx context.Context) {
	t.mu.Lock()
	t.run.ctx = ctx
	for _, r := range t.regs {
		t.startLocked(r)
	}
	t.mu.Unlock()
	<-ctx.Done()
	t.mu.Lock()
	t.run.stopped = true // nothing starts after this
	t.mu.Unlock()
	t.run.wg.Wait()
}

// Statuses returns a snapshot of every account, in configuration order.
func (t *Trunk) Statuses() []Status {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]Status, 0, len(t.regs))
	for _, r := range t.regs {
		out = append(out, t.status[r.acc.User])
	}
	return out
}

// Ready reports the first account that is not registered with the VPBX;
// a nil Trunk (no accounts) is always ready.
func (t *Trunk) Ready() error {
	if t == nil {
		return nil
	}
	for _, s := range t.Statuses() {
		if s.State != StateRegistered {
			if s.LastError != "" {
				return fmt.Errorf("account %s is %s: %s", s.Account, s.State, s.LastError)
			}
			return fmt.Errorf("account %s is %s", s.Account, s.State)
		}
	}
	return nil
}

// Registered reports whether account user is registered. A nil trunk (no
// upstream configured) has no account registered.
func (t *Trunk) Registered(user string) bool {
	if t == nil {
		return false
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	s, ok := t.status[user]
	return ok && s.State == StateRegistered
}

// AllRegistered reports whether every account is registered.
func (t *Trunk) AllRegistered() bool {
	for _, s := range t.Statuses() {
		if s.State != StateRegistered {
			return false
		}
	}
	return true
}

func (t *Trunk) set(s Status) {
	t.mu.Lock()
	prev := t.status[s.Account]
	if t.configuredLocked(s.Account) { // a removed account's last words are only logged
		t.status[s.Account] = s
	}
	t.mu.Unlock()
	if prev.State != s.State || prev.LastError != s.LastError {
		if s.LastError != "" {
			t.log.Warn("upstream registration", "account", s.Account, "state", string(s.State), "error", s.LastError)
		} else {
			t.log.Info("upstream registration", "account", s.Account, "state", string(s.State))
		}
	}
	if t.onChange != nil {
		t.onChange(s)
	}
}

type registration struct {
	t *Trunk
	// acc is used by the registration's goroutine alone once it runs;
	// SetAccounts hands it new credentials through creds.
	acc     Account
	reload  reloadState
	callID  string
	fromTag string
	cseq    uint32
	chal    *icdigest.Challenge
	nc      int
	// proxyAuth: the registrar challenged with 407, answer with Proxy-Authorization.
	proxyAuth bool
	// at is the address the registration is held at (zero when none).
	at sipnet.Target
}

// errForbidden ends an account's retries.
var errForbidden = errors.New("403 Forbidden")

func (r *registration) run(ctx context.Context) {
	t := r.t
	backoff := t.cfg.RetryMin
	failures := 0
	registered := false
	if !r.waitTurn(ctx) {
		t.set(Status{Account: r.acc.User, State: StateStopped})
		return
	}
	for {
		granted, err := r.register(ctx, t.cfg.Expires)
		if ctx.Err() != nil {
			break
		}
		now := time.Now()
		if err == nil {
			registered = true
			failures = 0
			backoff = t.cfg.RetryMin
			t.set(Status{Account: r.acc.User, State: StateRegistered, Expires: now.Add(granted), Target: r.at.String()})
			// Refresh at about 80% of what was granted (or at once with
			// new credentials, or when the registrar moves).
			if !r.hold(ctx, granted*4/5) {
				break
			}
			continue
		}
		failures++
		if errors.Is(err, errForbidden) {
			t.set(Status{Account: r.acc.User, State: StateForbidden, LastError: err.Error(), Failures: failures})
			if !r.newCredentials(ctx) {
				return // nothing to unregister
			}
			failures, backoff = 0, t.cfg.RetryMin
			continue // a reload: try again
		}
		registered, r.at = false, sipnet.Target{}
		wait := jitter(backoff)
		t.set(Status{Account: r.acc.User, State: StateBackoff, LastError: err.Error(), Failures: failures, NextTry: now.Add(wait)})
		if !r.sleep(ctx, wait) {
			break
		}
		backoff = min(backoff*2, t.cfg.RetryMax)
	}
	if registered {
		uctx, cancel := context.WithTimeout(context.Background(), t.cfg.Timeout)
		_, err := r.register(uctx, 0)
		cancel()
		if err != nil {
			t.log.Warn("upstream unregister failed", "account", r.acc.User, "error", err)
		}
	}
	t.set(Status{Account: r.acc.User, State: StateStopped})
}

// hold keeps a registration for d, then reports true to refresh it. It
// reports true sooner when the registrar's address is no longer among the
// VPBX's (its DNS records changed): the account registers at once where
// the VPBX now is. It reports false when ctx ends.
func (r *registration) hold(ctx context.Context, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for {
		wait := min(time.Until(deadline), r.t.cfg.Recheck)
		if wait <= 0 {
			return true
		}
		tm := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			tm.Stop()
			return false
		case <-tm.C:
		case acc := <-r.reload.creds:
			tm.Stop()
			r.useCredentials(acc)
			return true
		}
		targets, err := r.t.cfg.Upstream.Targets(ctx)
		if err == nil && len(targets) > 0 && !slices.Contains(targets, r.at) {
			r.t.log.Info("upstream registrar moved: registering at its new address", "account", r.acc.User,
				"from", r.at.String(), "to", targets[0].String())
			return true
		}
	}
}

// jitter spreads retries of many accounts: a random value in [d/2, d].
func jitter(d time.Duration) time.Duration {
	if d <= 0 {
		return 0
	}
	return d/2 + rand.N(d/2+1)
}

func (r *registration) request(to sipnet.Target, expires time.Duration) *sip.Request {
	cfg := r.t.cfg
	r.cseq++
	req := sip.NewRequest(sip.REGISTER, sip.Uri{Scheme: "sip", Host: cfg.Domain})
	req.SetTransport(to.Transport.Via())
	req.SetDestination(to.Addr.String())
	aor := sip.Uri{Scheme: "sip", User: r.acc.User, Host: cfg.Domain}
	from := &sip.FromHeader{Address: aor}
	from.Params.Add("tag", r.fromTag)
	req.AppendHeader(from)
	req.AppendHeader(&sip.ToHeader{Address: aor})
	cid := sip.CallIDHeader(r.callID)
	req.AppendHeader(&cid)
	req.AppendHeader(&sip.CSeqHeader{SeqNo: r.cseq, MethodName: sip.REGISTER})
	host, port, _ := sip.ParseAddr(cfg.Contacts[to.Transport])
	contact := &sip.ContactHeader{Address: sip.Uri{Scheme: "sip", User: r.acc.User, Host: host, Port: port}}
	if param := to.Transport.URIParam(); param != "" {
		contact.Address.UriParams = sip.NewParams()
		contact.Address.UriParams.Add("transport", param)
	}
	req.AppendHeader(contact)
	req.AppendHeader(sip.NewHeader("Expires", strconv.Itoa(int(expires/time.Second))))
	mf := sip.MaxForwardsHeader(70)
	req.AppendHeader(&mf)
	if cfg.UserAgent != "" {
		req.AppendHeader(sip.NewHeader("User-Agent", cfg.UserAgent))
	}
	req.AppendHeader(sip.NewHeader("Content-Length", "0"))
	return req
}

func (r *registration) authorize(req *sip.Request, hdr string) error {
	r.nc++
	cred, err := icdigest.Digest(r.chal, icdigest.Options{Method: "REGISTER", URI: req.Recipient.String(),
		Username: r.acc.AuthUser, Password: r.acc.Password, Count: r.nc})
	if err != nil {
		return err
	}
	req.AppendHeader(sip.NewHeader(hdr, cred.String()))
	return nil
}

// errNoAnswer marks a REGISTER the registrar's address did not answer
// (or answered 503): the next address is tried (RFC 3263 §4.3).
var errNoAnswer = errors.New("no answer")

// register registers (expires > 0) or unregisters the account at the
// first of the registrar's addresses that answers, and returns the
// interval granted; r.at becomes that address. An unregister goes where
// the registration is held.
func (r *registration) register(ctx context.Context, expires time.Duration) (time.Duration, error) {
	targets := []sipnet.Target{r.at}
	if expires > 0 || !r.at.Addr.IsValid() {
		var err error
		if targets, err = r.t.cfg.Upstream.Targets(ctx); err != nil {
			return 0, fmt.Errorf("register %s: %w", r.acc.User, err)
		}
		if len(targets) == 0 {
			return 0, fmt.Errorf("register %s: the registrar has no address", r.acc.User)
		}
	}
	var err error
	for i, to := range targets {
		timeout := r.t.cfg.Timeout
		if i < len(targets)-1 && r.t.cfg.Failover > 0 {
			timeout = min(timeout, r.t.cfg.Failover)
		}
		var granted time.Duration
		granted, err = r.registerAt(ctx, to, expires, timeout)
		if err == nil {
			r.at = to
			return granted, nil
		}
		if !errors.Is(err, errNoAnswer) || ctx.Err() != nil {
			return 0, err
		}
		r.t.cfg.Upstream.Unreachable(to)
		if i < len(targets)-1 {
			r.t.log.Warn("upstream registrar did not answer: trying the next address", "account", r.acc.User,
				"target", to.String(), "next", targets[i+1].String(), "error", err)
		}
	}
	return 0, err
}

// registerAt sends one REGISTER to one address (answering challenges)
// and returns the interval the registrar granted.
func (r *registration) registerAt(ctx context.Context, to sipnet.Target, expires, timeout time.Duration) (time.Duration, error) {
	for round := 0; round < 3; round++ {
		req := r.request(to, expires)
		if r.chal != nil {
			if err := r.authorize(req, r.authHeader()); err != nil {
				return 0, fmt.Errorf("register %s: %w", r.acc.User, err)
			}
		}
		tctx, cancel := context.WithTimeout(ctx, timeout)
		res, err := r.t.client(tctx, req)
		cancel()
		if err != nil {
			if ctx.Err() == nil {
				if errors.Is(err, context.DeadlineExceeded) {
					return 0, fmt.Errorf("register %s at %s: %w within %s", r.acc.User, to, errNoAnswer, timeout)
				}
				return 0, fmt.Errorf("register %s at %s: %w: %w", r.acc.User, to, errNoAnswer, err)
			}
			return 0, fmt.Errorf("register %s: %w", r.acc.User, err)
		}
		switch {
		case res.StatusCode == 200:
			return r.granted(res, expires), nil
		case res.StatusCode == 401 || res.StatusCode == 407:
			name := "WWW-Authenticate"
			if res.StatusCode == 407 {
				name = "Proxy-Authenticate"
			}
			h := res.GetHeader(name)
			if h == nil {
				return 0, fmt.Errorf("register %s: %d without %s", r.acc.User, res.StatusCode, name)
			}
			chal, err := icdigest.ParseChallenge(h.Value())
			if err != nil {
				return 0, fmt.Errorf("register %s: bad challenge: %w", r.acc.User, err)
			}
			// A repeated challenge that is not stale means our credentials were refused.
			if r.chal != nil && round > 0 && !chal.Stale {
				r.chal = nil
				return 0, fmt.Errorf("register %s: credentials refused (%d)", r.acc.User, res.StatusCode)
			}
			r.chal, r.nc = chal, 0
			r.proxyAuth = res.StatusCode == 407
		case res.StatusCode == 403:
			return 0, fmt.Errorf("register %s: %w", r.acc.User, errForbidden)
		case res.StatusCode == 423:
			if h := res.GetHeader("Min-Expires"); h != nil {
				if n, err := strconv.Atoi(strings.TrimSpace(h.Value())); err == nil && n > 0 {
					expires = time.Duration(n) * time.Second
					continue
				}
			}
			return 0, fmt.Errorf("register %s: 423 without usable Min-Expires", r.acc.User)
		case res.StatusCode == 503:
			return 0, fmt.Errorf("register %s at %s: %w: 503 %s", r.acc.User, to, errNoAnswer, res.Reason)
		default:
			return 0, fmt.Errorf("register %s: %d %s", r.acc.User, res.StatusCode, res.Reason)
		}
	}
	return 0, fmt.Errorf("register %s: too many challenges", r.acc.User)
}

func (r *registration) authHeader() string {
	if r.proxyAuth {
		return "Proxy-Authorization"
	}
	return "Authorization"
}

// granted reads the interval from our Contact's expires or the Expires header.
func (r *registration) granted(res *sip.Response, asked time.Duration) time.Duration {
	for _, h := range res.GetHeaders("Contact") {
		var uri sip.Uri
		params := sip.NewParams()
		if ch, ok := h.(*sip.ContactHeader); ok {
			uri, params = ch.Address, ch.Params
		} else if _, err := sip.ParseAddressValue(h.Value(), &uri, &params); err != nil {
			continue
		}
		if uri.User == r.acc.User {
			if v, ok := params.Get("expires"); ok {
				if n, err := strconv.Atoi(v); err == nil && n > 0 {
					return time.Duration(n) * time.Second
				}
			}
		}
	}
	if h := res.GetHeader("Expires"); h != nil {
		if n, err := strconv.Atoi(strings.TrimSpace(h.Value())); err == nil && n > 0 {
			return time.Duration(n) * time.Second
		}
	}
	return asked
}
