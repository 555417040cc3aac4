package b2bua

import (
	"cmp"
	"context"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"callgate/media/relay"
	"callgate/sip/location"
	"callgate/sip/sipnet"
	"callgate/sip/siptest"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
)

// The office harness runs a B2BUA on a real loopback UDP socket between
// sipgo phones and the VPBX stand-in of sip/siptest, with the recording
// fake media of harness_test.go in place of the relay: calls, transfers and
// consultations cross the network as they do in the daemon, and a test
// sees the signalling each party got, where the B2BUA pointed the media and
// the events it emitted.

// The office's people: extension -> employee.
var staff = map[string]string{"101": "ivanov", "102": "sidorov", "103": "petrov"}

// RTP addresses the parties' SDP names (nothing listens: the media is fake).
const (
	rtpOutside = "127.0.0.1:30900"
	rtpMobile  = "127.0.0.1:30901"
	callerNum  = "79161234567"
	accountPwd = "s3cret"
)

// staffTarget finds an employee by extension or name.
func staffTarget(name string) (Target, bool) {
	for ext, emp := range staff {
		if name == ext || name == emp {
			return Target{Extension: ext, Employee: emp}, true
		}
	}
	return Target{}, false
}

// officeRouter rings ivanov (101) for inbound calls, puts extensions
// through internally and longer numbers through the VPBX, and resolves
// transfer targets the same way; a transfer to a number holds a lease.
type officeRouter struct {
	mu     sync.Mutex
	leases []*fakeLease
}

func (r *officeRouter) Inbound(account, caller string) (InboundRoute, error) {
	t, _ := staffTarget("101")
	return InboundRoute{Steps: [][]Target{{t}}, RingTimeout: 5 * time.Second}, nil
}

func (r *officeRouter) Outbound(extension, dialled string) (OutboundRoute, error) {
	if t, ok := staffTarget(dialled); ok {
		return OutboundRoute{Internal: true, Target: t, Employee: staff[extension], CallerName: staff[extension]}, nil
	}
	if len(dialled) < 10 {
		return OutboundRoute{}, errors.New("no such extension")
	}
	return OutboundRoute{Account: Account{User: "sales1", Password: accountPwd}, Number: dialled, Employee: staff[extension]}, nil
}

func (r *officeRouter) Transfer(extension, target string) (TransferRoute, error) {
	if t, ok := staffTarget(target); ok {
		return TransferRoute{Targets: []Target{t}}, nil
	}
	digits := strings.Map(func(r rune) rune {
		if r >= '0' && r <= '9' {
			return r
		}
		return -1
	}, target)
	if len(digits) != 11 {
		return TransferRoute{}, errors.New("no such target")
	}
	if digits[0] == '8' {
		digits = "7" + digits[1:]
	}
	l := &fakeLease{}
	r.mu.Lock()
	r.leases = append(r.leases, l)
	r.mu.Unlock()
	return TransferRoute{Upstream: &OutboundRoute{Account: Account{User: "sales1", Password: accountPwd}, Number: digits,
		Employee: staff[extension], Lease: l}}, nil
}

func (r *officeRouter) lease(i int) *fakeLease {
	r.mu.Lock()
	defer r.mu.Unlock()
	if i >= len(r.leases) {
		return nil
	}
	return r.leases[i]
}

// fakeLease counts what the B2BUA told it.
type fakeLease struct {
	answered, ended atomic.Int32
	changed         signal
}

func (l *fakeLease) Answered() { l.answered.Add(1); l.changed.notify() }
func (l *fakeLease) End()      { l.ended.Add(1); l.changed.notify() }

// office is a B2BUA with its VPBX, phones 101-103, media and events.
type office struct {
	t      *testing.T
	b      *B2BUA
	addr   string // callgate's SIP address
	vpbx   *siptest.VPBX
	vpbxIn *reqLog // requests the VPBX got in dialogs (re-INVITEs, BYEs)
	media  *fakeMedia
	events *syncEvents
	router *officeRouter
	phones map[string]*phoneLog
	logs   *syncBuffer
}

func newOffice(t *testing.T) *office {
	t.Helper()
	o := &office{t: t, media: &fakeMedia{}, events: &syncEvents{}, router: &officeRouter{}, phones: map[string]*phoneLog{}, logs: &syncBuffer{}}
	t.Cleanup(func() {
		if t.Failed() {
			t.Log(o.logs.String())
		}
	})
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	o.addr = pc.LocalAddr().String()
	_, port, _ := sip.ParseAddr(o.addr)
	ua, err := sipgo.NewUA(sipgo.WithUserAgent("callgate-test"), sipgo.WithUserAgentHostname("127.0.0.1"))
	if err != nil {
		t.Fatal(err)
	}
	srv, err := sipgo.NewServer(ua)
	if err != nil {
		t.Fatal(err)
	}
	// As the daemon does: the client names the listener in Via, and a
	// request leaves from it through Config.LocalUDP.
	client, err := sipgo.NewClient(ua, sipgo.WithClientHostname("127.0.0.1"), sipgo.WithClientPort(port))
	if err != nil {
		t.Fatal(err)
	}
	o.vpbx, err = siptest.NewVPBX(siptest.VPBXConfig{Domain: "vpbx.test", Accounts: map[string]string{"sales1": accountPwd}})
	if err != nil {
		t.Fatal(err)
	}
	o.vpbxIn = recordRequests(t, "VPBX", o.vpbx.Requests)
	loc := &fakeLocator{bindings: map[string][]location.Binding{}}
	cfg := Config{
		Domain: "vpbx.test", LocalDomain: "127.0.0.1", Upstream: upstreamAt(o.vpbx.Addr()), Failover: time.Second,
		Trusted:  sipnet.NewNetworkSet(sipnet.Networks{netip.MustParsePrefix("127.0.0.0/8")}),
		Accounts: map[string]bool{"sales1": true},
		// Different addresses toward phones and the VPBX, so that a test
		// sees which way an offer was meant.
		PhoneMediaIP: netip.MustParseAddr("127.0.0.1"), UpstreamMedia: netip.MustParseAddr("127.0.0.2"),
		LocalUDP:    o.addr,
		Contact:     sip.ContactHeader{Address: sip.Uri{Scheme: "sip", User: "callgate", Host: "127.0.0.1", Port: port}},
		RingTimeout: 5 * time.Second,
	}
	log := slog.New(slog.NewTextHandler(o.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	o.b = New(cfg, client, o.router, loc, fakeAuth{}, o.media, o.events, log)
	o.b.Register(srv, func(_ bool, h sipgo.RequestHandler) sipgo.RequestHandler { return h })
	for ext := range staff {
		o.phones[ext] = newPhoneLog(t, ext, o.addr)
		loc.bindings[ext] = []location.Binding{{AOR: ext, Contact: "sip:" + ext + "@" + o.phones[ext].Addr(),
			Source: o.phones[ext].Addr(), Transport: "udp", Expires: time.Now().Add(time.Hour)}}
	}
	go func() { _ = srv.ServeUDP(pc) }()
	// Registered after the phones': the calls a failed test leaves are
	// hung up while the phones still answer.
	t.Cleanup(func() {
		o.b.Shutdown()
		waited := make(chan struct{})
		go func() { o.b.Wait(); close(waited) }()
		select {
		case <-waited:
		case <-time.After(10 * time.Second):
			t.Error("calls still running after Shutdown")
		}
		ua.Close()
		pc.Close()
		o.vpbx.Close()
	})
	waitFor(t, "the B2BUA's socket in sipgo's pool", func() bool {
		c, _ := ua.TransportLayer().GetConnection("udp", o.addr)
		return c != nil
	})
	o.registerAccount(client, port)
	return o
}

// registerAccount registers sales1 with the VPBX from callgate's socket,
// where the VPBX then sends inbound calls.
func (o *office) registerAccount(client *sipgo.Client, port int) {
	t := o.t
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	host, vport, _ := sip.ParseAddr(o.vpbx.Addr())
	req := sip.NewRequest(sip.REGISTER, sip.Uri{Scheme: "sip", Host: host, Port: vport})
	req.SetTransport("UDP")
	aor := sip.Uri{Scheme: "sip", User: "sales1", Host: "vpbx.test"}
	from := &sip.FromHeader{Address: aor, Params: sip.NewParams()}
	from.Params.Add("tag", sip.GenerateTagN(10))
	req.AppendHeader(from)
	req.AppendHeader(&sip.ToHeader{Address: aor})
	cid := sip.CallIDHeader(sip.GenerateTagN(16))
	req.AppendHeader(&cid)
	req.AppendHeader(&sip.CSeqHeader{SeqNo: 1, MethodName: sip.REGISTER})
	req.AppendHeader(&sip.ContactHeader{Address: sip.Uri{Scheme: "sip", User: "sales1", Host: "127.0.0.1", Port: port}})
	req.AppendHeader(sip.NewHeader("Expires", "300"))
	o.b.sendFrom(req, "")
	res, err := client.Do(ctx, req)
	if err == nil && res.StatusCode == sip.StatusUnauthorized {
		res, err = client.DoDigestAuth(ctx, req, res, sipgo.DigestAuth{Username: "sales1", Password: accountPwd})
	}
	if err != nil || res.StatusCode != sip.StatusOK {
		t.Fatalf("registering sales1 with the VPBX: %v %v", res, err)
	}
	if reg, ok := o.vpbx.Binding("sales1"); !ok || reg.Source != o.addr {
		t.Fatalf("the VPBX would call sales1 at %q, not at callgate's %s", reg.Source, o.addr)
	}
}

// awaitEvent waits for an event that matches and returns it.
func (o *office) awaitEvent(what string, match func(Event) bool) Event {
	o.t.Helper()
	var got *Event
	await(o.t, what, &o.events.changed, func() bool {
		o.events.mu.Lock()
		defer o.events.mu.Unlock()
		for i := range o.events.events {
			if match(o.events.events[i]) {
				e := o.events.events[i]
				got = &e
				return true
			}
		}
		return false
	})
	return *got
}

// kinds are the kinds of call id's events so far, in order.
func (o *office) kinds(id string) []EventKind {
	o.events.mu.Lock()
	defer o.events.mu.Unlock()
	var out []EventKind
	for _, e := range o.events.events {
		if e.CallID == id {
			out = append(out, e.Kind)
		}
	}
	return out
}

func eventOf(kind EventKind, id string) func(Event) bool {
	return func(e Event) bool { return e.Kind == kind && e.CallID == id }
}

// session is the media session opened with id.
func (o *office) session(id string) *fakeSession {
	o.t.Helper()
	var got *fakeSession
	await(o.t, "media session "+id, &o.media.opened, func() bool {
		o.media.mu.Lock()
		defer o.media.mu.Unlock()
		for _, s := range o.media.sessions {
			if s.id == id {
				got = s
			}
		}
		return got != nil
	})
	return got
}

func (s *fakeSession) parkedOf(side relay.Side) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.parked[side]
}

// remotesOf are the SetRemote calls for side so far.
func (s *fakeSession) remotesOf(side relay.Side) []netip.AddrPort {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]netip.AddrPort(nil), s.remotes[side]...)
}

// pointed waits until side's media of s goes to addr.
func pointed(t testing.TB, s *fakeSession, side relay.Side, addr netip.AddrPort) {
	t.Helper()
	await(t, "media of side "+itoa(int(side))+" sent to "+addr.String(), &s.changed, func() bool { return s.remote(side) == addr })
}

// callParties are the ends of a connected call in the office.
type callParties struct {
	id      string        // callgate's call id
	outside *siptest.Call // the VPBX's dialog
	ivanov  *siptest.Call // 101's dialog
}

// inbound has the VPBX call sales1 and ivanov (101) answer.
func (o *office) inbound(ctx context.Context) callParties {
	t := o.t
	t.Helper()
	placed := make(chan *siptest.Call, 1)
	failed := make(chan error, 1)
	go func() {
		c, err := o.vpbx.Invite(ctx, "sales1", callerNum, siptest.SDP(rtpOutside))
		if err != nil {
			failed <- err
			return
		}
		placed <- c
	}()
	in, ivanov := o.phones["101"].answer(ctx, t)
	if in.From() != callerNum {
		t.Fatalf("101 sees %q calling, want %s", in.From(), callerNum)
	}
	var outside *siptest.Call
	select {
	case outside = <-placed:
	case err := <-failed:
		t.Fatal(err)
	}
	ev := o.awaitEvent("the inbound call answered", func(e Event) bool { return e.Kind == EventAnswered && e.Direction == Inbound })
	if ev.Answered.Extension != "101" || ev.Outside != callerNum {
		t.Fatalf("answered event %+v", ev)
	}
	s := o.session(ev.CallID)
	pointed(t, s, SideA, netip.MustParseAddrPort(rtpOutside))
	pointed(t, s, SideB, o.phones["101"].rtpAddr())
	return callParties{id: ev.CallID, outside: outside, ivanov: ivanov}
}

// outbound has ivanov (101) call a number the VPBX answers.
func (o *office) outbound(ctx context.Context, number string) callParties {
	t := o.t
	t.Helper()
	answered := make(chan *siptest.Call, 1)
	go func() {
		select {
		case in := <-o.vpbx.Calls:
			if c, err := in.Answer(ctx, siptest.SDP(rtpOutside)); err == nil {
				answered <- c
			}
		case <-ctx.Done():
		}
	}()
	ivanov, err := o.phones["101"].Dial(ctx, number, o.phones["101"].sdp())
	if err != nil {
		t.Fatal(err)
	}
	var outside *siptest.Call
	select {
	case outside = <-answered:
	case <-ctx.Done():
		t.Fatal("the VPBX did not answer")
	}
	ev := o.awaitEvent("the outbound call answered", func(e Event) bool { return e.Kind == EventAnswered && e.Direction == Outbound })
	s := o.session(ev.CallID)
	pointed(t, s, SideA, netip.MustParseAddrPort(rtpOutside))
	pointed(t, s, SideB, o.phones["101"].rtpAddr())
	return callParties{id: ev.CallID, outside: outside, ivanov: ivanov}
}

// outsideHangsUp ends the call from the VPBX's side while the outside
// party talks with who over the dialog other: other is hung up, the call
// ends answered by who and hung up by the outside party, and nothing of it
// is left. It returns the ended event.
func (o *office) outsideHangsUp(ctx context.Context, p callParties, who Target, other *siptest.Call) Event {
	t := o.t
	t.Helper()
	name := cmp.Or(who.Employee, who.Extension)
	if closed(p.outside.Done()) || closed(other.Done()) {
		t.Fatalf("the outside party (gone %v) or %s (gone %v) was hung up", closed(p.outside.Done()), name, closed(other.Done()))
	}
	if err := p.outside.Hangup(ctx); err != nil {
		t.Fatal(err)
	}
	ev := o.awaitEvent("the call ended", eventOf(EventEnded, p.id))
	released(t, name, other)
	if ev.Result != ResultAnswered || ev.HangupBy != "outside" || ev.Answered != who {
		t.Fatalf("ended event %+v; want answered by %s, hung up by the outside party", ev, name)
	}
	o.idle()
	return ev
}

// refer sends a REFER in dialog c and checks the status it gets.
func refer(ctx context.Context, t testing.TB, c *siptest.Call, target, replaces string, want int) {
	t.Helper()
	if code, err := c.Refer(ctx, target, replaces); err != nil || code != want {
		t.Fatalf("REFER to %s (Replaces %q): %d %v, want %d", target, replaces, code, err, want)
	}
}

// idle checks that no call holds a leg or a media session any more.
func (o *office) idle() {
	o.t.Helper()
	if n := o.b.Active(); n != 0 {
		o.t.Errorf("%d calls still hold legs", n)
	}
	o.media.mu.Lock()
	defer o.media.mu.Unlock()
	for _, s := range o.media.sessions {
		if !s.isClosed() {
			o.t.Errorf("media session %s left open", s.id)
		}
	}
}

// closed says whether a channel (a dialog's Done) is closed now.
func closed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// released waits for a dialog to end.
func released(t testing.TB, what string, c *siptest.Call) {
	t.Helper()
	select {
	case <-c.Done():
	case <-time.After(10 * time.Second):
		t.Fatalf("%s was not released", what)
	}
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// signal wakes everyone waiting for a change of some state.
type signal struct {
	mu sync.Mutex
	ch chan struct{}
}

// wait is closed at the next notify; take it before looking at the state
// so that a change in between is not missed.
func (s *signal) wait() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ch == nil {
		s.ch = make(chan struct{})
	}
	return s.ch
}

func (s *signal) notify() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ch != nil {
		close(s.ch)
		s.ch = nil
	}
}

// await waits until cond holds, looking again at every change sig reports.
func await(t testing.TB, what string, sig *signal, cond func() bool) {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		changed := sig.wait()
		if cond() {
			return
		}
		select {
		case <-changed:
		case <-deadline:
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}
