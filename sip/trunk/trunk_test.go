package trunk

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"callgate/sip/digest"
	"callgate/sip/sipnet"

	"github.com/emiago/sipgo/sip"
)

type vpbxSecrets map[string]string

func (s vpbxSecrets) HA1(user string, alg digest.Algorithm) (string, bool) {
	p, ok := s[user]
	return digest.HA1(alg, user, "vpbx", p), ok
}

// fakeRegistrar answers REGISTERs in-process like a VPBX: digest challenge,
// then 200 with a short grant, or a scripted failure.
type fakeRegistrar struct {
	mu   sync.Mutex
	auth *digest.Server
	mode string // "ok", "forbidden", "silent"
	// silentAt are destinations that never answer whatever the mode.
	silentAt map[string]bool
	grant    int
	got      []*sip.Request
	times    []time.Time
	arrived  chan *sip.Request
}

func newFake(mode string) *fakeRegistrar {
	return &fakeRegistrar{auth: digest.NewServer("vpbx", []digest.Algorithm{digest.MD5}, time.Minute), mode: mode, grant: 2, arrived: make(chan *sip.Request, 100)}
}

func (f *fakeRegistrar) send(ctx context.Context, req *sip.Request) (*sip.Response, error) {
	f.mu.Lock()
	f.got = append(f.got, req)
	f.times = append(f.times, time.Now())
	mode := f.mode
	if f.silentAt[req.Destination()] {
		mode = "silent"
	}
	f.mu.Unlock()
	f.arrived <- req
	switch mode {
	case "silent":
		<-ctx.Done()
		return nil, ctx.Err()
	case "forbidden":
		return sip.NewResponseFromRequest(req, 403, "Forbidden", nil), nil
	}
	auth := ""
	if h := req.GetHeader("Authorization"); h != nil {
		auth = h.Value()
	}
	if _, r := f.auth.Verify("REGISTER", auth, uint64(req.CSeq().SeqNo), vpbxSecrets{"sales1": "Secret123"}); r != digest.OK {
		res := sip.NewResponseFromRequest(req, 401, "Unauthorized", nil)
		res.AppendHeader(sip.NewHeader("WWW-Authenticate", f.auth.Challenges(r == digest.Stale)[0]))
		return res, nil
	}
	res := sip.NewResponseFromRequest(req, 200, "OK", nil)
	res.AppendHeader(sip.NewHeader("Contact", req.Contact().Value()+";expires="+strconv.Itoa(f.grant)))
	return res, nil
}

// upstream is the registrar's address list as a test sets it.
type upstream struct {
	mu          sync.Mutex
	targets     []sipnet.Target
	err         error
	unreachable []sipnet.Target
}

func newUpstream(addrs ...string) *upstream {
	u := &upstream{}
	u.set(addrs...)
	return u
}

func (u *upstream) set(addrs ...string) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.targets, u.err = nil, nil
	for _, a := range addrs {
		u.targets = append(u.targets, sipnet.Target{Transport: sipnet.UDP, Addr: netip.MustParseAddrPort(a)})
	}
}

func (u *upstream) fail(err error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.targets, u.err = nil, err
}

func (u *upstream) Targets(context.Context) ([]sipnet.Target, error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	return slices.Clone(u.targets), u.err
}

func (u *upstream) Unreachable(t sipnet.Target) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.unreachable = append(u.unreachable, t)
}

func newTrunk(f *fakeRegistrar, pass string) *Trunk {
	return newTrunkAt(f, pass, newUpstream("127.0.0.1:5070"))
}

func newTrunkAt(f *fakeRegistrar, pass string, up Upstream) *Trunk {
	cfg := Config{Upstream: up, Domain: "vpbx1.mangosip.ru", Contacts: map[sipnet.Transport]string{sipnet.UDP: "127.0.0.1:5060"},
		Expires: 300 * time.Second, Timeout: 200 * time.Millisecond, Failover: 100 * time.Millisecond, Recheck: 50 * time.Millisecond,
		RetryMin: 100 * time.Millisecond, RetryMax: 2 * time.Second}
	return New(cfg, f.send, []Account{{User: "sales1", Password: pass}}, slog.New(slog.NewTextHandler(io.Discard, nil)), nil)
}

func waitState(t *testing.T, tr *Trunk, want State) Status {
	t.Helper()
	deadline := time.After(5 * time.Second)
	for {
		if s := tr.Statuses()[0]; s.State == want {
			return s
		}
		select {
		case <-deadline:
			t.Fatalf("state %s never reached, have %+v", want, tr.Statuses()[0])
		case <-time.After(5 * time.Millisecond):
		}
	}
}

func TestRegisterRefreshUnregister(t *testing.T) {
	f := newFake("ok")
	tr := newTrunk(f, "Secret123")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { tr.Run(ctx); close(done) }()
	waitState(t, tr, StateRegistered)
	if !tr.AllRegistered() {
		t.Fatal("AllRegistered false while registered")
	}
	var none *Trunk
	if acc := tr.Statuses()[0].Account; !tr.Registered(acc) || tr.Registered("other") || none.Registered(acc) {
		t.Fatalf("Registered(%s) %v, Registered(other) %v, a nil trunk's %v", acc, tr.Registered(acc), tr.Registered("other"), none.Registered(acc))
	}
	// 401 + authorized REGISTER, then a refresh at ~80% of the 2 s grant.
	var first, refresh time.Time
	for refresh.IsZero() {
		select {
		case req := <-f.arrived:
			if req.GetHeader("Authorization") == nil {
				continue
			}
			if first.IsZero() {
				first = time.Now()
			} else {
				refresh = time.Now()
			}
		case <-time.After(5 * time.Second):
			t.Fatal("no refresh before expiry")
		}
	}
	if gap := refresh.Sub(first); gap < 1200*time.Millisecond || gap > 1950*time.Millisecond {
		t.Fatalf("refreshed after %s, want about 80%% of 2s", gap)
	}
	cancel()
	<-done
	f.mu.Lock()
	last := f.got[len(f.got)-1]
	f.mu.Unlock()
	if last.GetHeader("Expires").Value() != "0" || last.GetHeader("Authorization") == nil {
		t.Fatalf("last request is not an authorized unregister: %v", last)
	}
	if tr.Statuses()[0].State != StateStopped {
		t.Fatal("not stopped")
	}
	// Same Call-ID, increasing CSeq throughout (RFC 3261 §10.2.4).
	f.mu.Lock()
	defer f.mu.Unlock()
	for i := 1; i < len(f.got); i++ {
		if f.got[i].CallID().Value() != f.got[0].CallID().Value() || f.got[i].CSeq().SeqNo <= f.got[i-1].CSeq().SeqNo {
			t.Fatalf("request %d: Call-ID/CSeq not continuous", i)
		}
	}
}

func TestForbiddenStopsRetrying(t *testing.T) {
	f := newFake("forbidden")
	tr := newTrunk(f, "Secret123")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go tr.Run(ctx)
	s := waitState(t, tr, StateForbidden)
	if s.LastError == "" {
		t.Fatal("403 not reported")
	}
	select {
	case <-f.arrived:
	default:
		t.Fatal("no request seen")
	}
	select {
	case <-f.arrived:
		t.Fatal("retried after 403")
	case <-time.After(500 * time.Millisecond):
	}
}

func TestWrongPasswordBacksOff(t *testing.T) {
	f := newFake("ok")
	tr := newTrunk(f, "wrong")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go tr.Run(ctx)
	s := waitState(t, tr, StateBackoff)
	if s.Failures < 1 || s.NextTry.IsZero() {
		t.Fatalf("status %+v", s)
	}
}

func TestSilentRegistrarBacksOffExponentially(t *testing.T) {
	f := newFake("silent")
	tr := newTrunk(f, "Secret123")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go tr.Run(ctx)
	var starts []time.Time
	for len(starts) < 5 {
		select {
		case <-f.arrived:
			starts = append(starts, time.Now())
		case <-time.After(10 * time.Second):
			t.Fatalf("only %d attempts", len(starts))
		}
	}
	// Gaps are timeout (200ms) + jittered backoff (50-100, 100-200, 200-400, 400-800 ms).
	for i := 2; i < len(starts); i++ {
		prev, gap := starts[i-1].Sub(starts[i-2]), starts[i].Sub(starts[i-1])
		if gap < 200*time.Millisecond+time.Duration(50<<(i-1))*time.Millisecond {
			t.Fatalf("gap %d = %s too short (previous %s)", i, gap, prev)
		}
	}
	if last := starts[4].Sub(starts[3]); last < 600*time.Millisecond {
		t.Fatalf("backoff not growing: last gap %s", last)
	}
	if s := tr.Statuses()[0]; s.State != StateBackoff || s.Failures < 4 {
		t.Fatalf("status %+v", s)
	}
}

// A registrar address that does not answer gives way to the next after
// the failover timeout; the unregister goes where the registration is.
func TestFailoverToTheNextAddress(t *testing.T) {
	f := newFake("ok")
	f.silentAt = map[string]bool{"127.0.0.1:5070": true}
	up := newUpstream("127.0.0.1:5070", "127.0.0.2:5071")
	tr := newTrunkAt(f, "Secret123", up)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { tr.Run(ctx); close(done) }()
	s := waitState(t, tr, StateRegistered)
	if s.Target != "udp:127.0.0.2:5071" {
		t.Fatalf("registered at %q", s.Target)
	}
	cancel()
	<-done
	f.mu.Lock()
	first, last := f.got[0], f.got[len(f.got)-1]
	firstAt, nextAt := f.times[0], f.times[1]
	f.mu.Unlock()
	if first.Destination() != "127.0.0.1:5070" || last.Destination() != "127.0.0.2:5071" || last.GetHeader("Expires").Value() != "0" {
		t.Fatalf("first REGISTER to %s, unregister to %s (%v)", first.Destination(), last.Destination(), last.GetHeader("Expires"))
	}
	if gap := nextAt.Sub(firstAt); gap < 90*time.Millisecond || gap > 190*time.Millisecond {
		t.Fatalf("the next address was tried after %s, want the failover timeout (100ms)", gap)
	}
	up.mu.Lock()
	defer up.mu.Unlock()
	if len(up.unreachable) == 0 || up.unreachable[0].Addr.String() != "127.0.0.1:5070" {
		t.Fatalf("unreachable reported: %v", up.unreachable)
	}
}

// When DNS moves the VPBX, a registered account registers at the new
// address without waiting for its refresh.
func TestFollowsTheRegistrarWhenItMoves(t *testing.T) {
	f := newFake("ok")
	f.grant = 300
	up := newUpstream("127.0.0.1:5070")
	tr := newTrunkAt(f, "Secret123", up)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go tr.Run(ctx)
	waitState(t, tr, StateRegistered)
	up.set("127.0.0.3:5072")
	deadline := time.Now().Add(3 * time.Second)
	for tr.Statuses()[0].Target != "udp:127.0.0.3:5072" {
		if time.Now().After(deadline) {
			t.Fatalf("still %+v", tr.Statuses()[0])
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// A name that does not resolve leaves the account unregistered with the
// DNS error in its status and readiness, retried until it resolves.
func TestUnresolvableRegistrarIsRetried(t *testing.T) {
	f := newFake("ok")
	up := newUpstream()
	up.fail(errors.New("vpbx.test has no address in DNS (NXDOMAIN): no such host"))
	tr := newTrunkAt(f, "Secret123", up)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go tr.Run(ctx)
	s := waitState(t, tr, StateBackoff)
	if !strings.Contains(s.LastError, "NXDOMAIN") {
		t.Fatalf("status %+v", s)
	}
	if err := tr.Ready(); err == nil || !strings.Contains(err.Error(), "NXDOMAIN") {
		t.Fatalf("Ready: %v", err)
	}
	up.set("127.0.0.1:5070")
	waitState(t, tr, StateRegistered)
	if err := tr.Ready(); err != nil {
		t.Fatal(err)
	}
}
