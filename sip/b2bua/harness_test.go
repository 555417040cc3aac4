package b2bua

import (
	"bytes"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"callgate/media/relay"
	"callgate/sip/location"
	"callgate/sip/resolve"
	"callgate/sip/sipnet"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
	sipgotest "github.com/emiago/sipgo/siptest"
)

// fakeRouter rings extension 101 for inbound calls, sends dialled
// extensions (under 5 digits) to those and longer numbers upstream unless
// noUpstream.
type fakeRouter struct{ noUpstream bool }

func (fakeRouter) Inbound(account, caller string) (InboundRoute, error) {
	return InboundRoute{Steps: [][]Target{{{Extension: "101", Employee: "e101"}}}, RingTimeout: time.Second}, nil
}

func (r fakeRouter) Outbound(extension, dialled string) (OutboundRoute, error) {
	if dialled == "" {
		return OutboundRoute{}, errors.New("nothing dialled")
	}
	if len(dialled) < 5 {
		return OutboundRoute{Internal: true, Target: Target{Extension: dialled}, Employee: "e" + extension}, nil
	}
	if r.noUpstream {
		return OutboundRoute{}, errors.New("no upstream")
	}
	return OutboundRoute{Account: Account{User: "sales1", Password: "s3cret"}, Number: dialled, Employee: "e" + extension}, nil
}

func (fakeRouter) Transfer(extension, target string) (TransferRoute, error) {
	return TransferRoute{}, errors.New("no transfers in tests")
}

// fakeLocator returns the bindings set for an extension.
type fakeLocator struct {
	mu       sync.Mutex
	bindings map[string][]location.Binding
}

func (l *fakeLocator) Lookup(aor string, now time.Time) []location.Binding {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.bindings[aor]
}

// fakeAuth lets every phone in as extension 101.
type fakeAuth struct{}

func (fakeAuth) AuthorizeRequest(req *sip.Request, src netip.AddrPort) (string, *sip.Response) {
	return "101", nil
}

// fakeSession is a relay session that records what the B2BUA asks of it:
// where each side's media is sent, parking, tones; every change wakes the
// waiters on changed.
type fakeSession struct {
	id   string
	base int // Port(side) is base+2*side: every session has ports of its own

	mu      sync.Mutex
	closed  bool
	remotes [2][]netip.AddrPort // SetRemote calls by side, in order
	parked  [2]int
	tones   int // ringback tones playing now
	changed signal
}

func (s *fakeSession) Port(side relay.Side) int { return s.base + 2*int(side) }

func (s *fakeSession) SetRemote(side relay.Side, addr netip.AddrPort) {
	s.update(func() { s.remotes[side] = append(s.remotes[side], addr) })
}

func (s *fakeSession) Ringback(side relay.Side, pt uint8) (stop func()) {
	s.update(func() { s.tones++ })
	var once sync.Once
	return func() { once.Do(func() { s.update(func() { s.tones-- }) }) }
}

func (s *fakeSession) Park(side relay.Side) { s.update(func() { s.parked[side]++ }) }

func (s *fakeSession) SetTap(relay.Tap) {}

func (s *fakeSession) Stats(relay.Side) relay.Stats { return relay.Stats{} }

func (s *fakeSession) Close() { s.update(func() { s.closed = true }) }

func (s *fakeSession) update(fn func()) {
	s.mu.Lock()
	fn()
	s.mu.Unlock()
	s.changed.notify()
}

func (s *fakeSession) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

// remote is where side's media goes now (the last SetRemote).
func (s *fakeSession) remote(side relay.Side) netip.AddrPort {
	s.mu.Lock()
	defer s.mu.Unlock()
	if n := len(s.remotes[side]); n > 0 {
		return s.remotes[side][n-1]
	}
	return netip.AddrPort{}
}

func (s *fakeSession) playing() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.tones
}

type fakeMedia struct {
	mu       sync.Mutex
	sessions []*fakeSession
	opened   signal
}

func (m *fakeMedia) Open(id string) (MediaSession, error) {
	m.mu.Lock()
	s := &fakeSession{id: id, base: 20000 + 100*len(m.sessions)}
	m.sessions = append(m.sessions, s)
	m.mu.Unlock()
	m.opened.notify()
	return s, nil
}

// syncEvents is an Observer safe for calls on other goroutines.
type syncEvents struct {
	mu      sync.Mutex
	events  []Event
	changed signal
}

func (l *syncEvents) CallEvent(e Event) {
	l.mu.Lock()
	l.events = append(l.events, e)
	l.mu.Unlock()
	l.changed.notify()
}

func (l *syncEvents) ended() []Event {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []Event
	for _, e := range l.events {
		if e.Kind == EventEnded {
			out = append(out, e)
		}
	}
	return out
}

type harness struct {
	b      *B2BUA
	loc    *fakeLocator
	media  *fakeMedia
	events *syncEvents
	logs   *bytes.Buffer
}

// newHarness builds a B2BUA whose VPBX is 127.0.0.0/8 with account
// sales1. client may be nil for tests that never send a request.
func newHarness(t testing.TB, client *sipgo.Client) *harness {
	h := &harness{loc: &fakeLocator{bindings: map[string][]location.Binding{}}, media: &fakeMedia{}, events: &syncEvents{}, logs: &bytes.Buffer{}}
	var w io.Writer = io.Discard
	if _, ok := t.(*testing.T); ok {
		w = &lockedWriter{w: h.logs}
	}
	cfg := Config{
		Domain: "callgate", Upstream: upstreamAt("127.0.0.1:5099"), Failover: time.Second,
		Trusted:      sipnet.NewNetworkSet(sipnet.Networks{netip.MustParsePrefix("127.0.0.0/8")}),
		Accounts:     map[string]bool{"sales1": true},
		PhoneMediaIP: netip.MustParseAddr("127.0.0.1"), UpstreamMedia: netip.MustParseAddr("127.0.0.1"),
		Contact:     sip.ContactHeader{Address: sip.Uri{Scheme: "sip", User: "callgate", Host: "127.0.0.1", Port: 5060}},
		RingTimeout: 2 * time.Second,
	}
	h.b = New(cfg, client, fakeRouter{}, h.loc, fakeAuth{}, h.media, h.events, slog.New(slog.NewTextHandler(w, nil)))
	return h
}

type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// dispatch hands req to the handler Register installs for its method.
func (h *harness) dispatch(req *sip.Request, tx sip.ServerTransaction) {
	switch req.Method {
	case sip.INVITE:
		h.b.guard(h.b.onInvite)(req, tx)
	case sip.ACK, sip.BYE, sip.INFO, sip.REFER:
		h.b.guard(h.b.inDialog)(req, tx)
	}
}

// serve parses raw as if it came from src, runs it through a server
// transaction recorder the way sipgo's transaction layer would (which
// itself refuses requests without Via or CSeq), and returns the answers.
// ok is false when sipgo would not have passed raw to a handler.
func (h *harness) serve(raw []byte, src string) (res []*sip.Response, ok bool) {
	msg, err := sip.ParseMessage(raw)
	if err != nil {
		return nil, false
	}
	req, isReq := msg.(*sip.Request)
	if !isReq {
		return nil, false
	}
	if _, err := sip.ServerTxKeyMake(req); err != nil {
		return nil, false
	}
	req.SetSource(src)
	req.SetTransport("UDP")
	tx := sipgotest.NewServerTxRecorder(req)
	defer tx.Terminate()
	stop := make(chan struct{})
	if req.IsInvite() {
		go h.autoAck(req, tx, stop)
	}
	h.dispatch(req, tx)
	close(stop)
	return tx.Result(), true
}

// autoAck plays the VPBX's part after a final answer to its INVITE: the
// ACK a non-2xx needs inside the transaction, the ACK for a 2xx through
// the in-dialog handler. callgate's answer waits for either.
func (h *harness) autoAck(inv *sip.Request, tx *sipgotest.ServerTxRecorder, stop chan struct{}) {
	tick := time.NewTicker(2 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-stop:
			return
		case <-tick.C:
		}
		for _, res := range tx.Result() {
			if res.StatusCode < 200 {
				continue
			}
			ack := sip.NewRequest(sip.ACK, inv.Recipient)
			ack.AppendHeader(sip.HeaderClone(inv.Via()))
			ack.AppendHeader(sip.HeaderClone(inv.From()))
			ack.AppendHeader(sip.HeaderClone(res.To()))
			ack.AppendHeader(sip.HeaderClone(inv.CallID()))
			ack.AppendHeader(&sip.CSeqHeader{SeqNo: inv.CSeq().SeqNo, MethodName: sip.ACK})
			mf := sip.MaxForwardsHeader(70)
			ack.AppendHeader(&mf)
			ack.SetSource(inv.Source())
			ack.SetTransport(inv.Transport())
			if res.StatusCode >= 300 {
				_ = tx.Receive(ack)
			} else {
				ack.Via().Params.Add("branch", sip.GenerateBranch())
				ack.SetBody(nil)
				h.serve([]byte(ack.String()), inv.Source())
			}
			return
		}
	}
}

// finals are the final responses among res.
func finals(res []*sip.Response) []*sip.Response {
	var out []*sip.Response
	for _, r := range res {
		if r.StatusCode >= 200 {
			out = append(out, r)
		}
	}
	return out
}

// msg builds a request from lines joined with CRLF, with a body.
func msg(lines []string, body string) []byte {
	return []byte(strings.Join(lines, "\r\n") + "\r\n\r\n" + body)
}

const testSDP = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 40000 RTP/AVP 8\r\na=rtpmap:8 PCMA/8000\r\n"

// invite is a well-formed INVITE from the VPBX to account sales1, minus
// the headers named in drop.
func invite(callID string, drop ...string) []byte {
	hdrs := []string{
		"INVITE sip:sales1@127.0.0.1:5060 SIP/2.0",
		"Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-" + callID,
		"Max-Forwards: 70",
		"From: <sip:79161234567@127.0.0.1>;tag=vpbx1",
		"To: <sip:sales1@127.0.0.1>",
		"Call-ID: " + callID,
		"CSeq: 1 INVITE",
		"Contact: <sip:vpbx@127.0.0.1:5070>",
		"Content-Type: application/sdp",
		"Content-Length: " + itoa(len(testSDP)),
	}
	return msg(without(hdrs, drop), testSDP)
}

// inDialogReq is a request of method inside dialog callID, minus drop.
func inDialogReq(method, callID string, drop ...string) []byte {
	hdrs := []string{
		method + " sip:callgate@127.0.0.1:5060 SIP/2.0",
		"Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-" + method + callID,
		"Max-Forwards: 70",
		"From: <sip:79161234567@127.0.0.1>;tag=vpbx1",
		"To: <sip:sales1@127.0.0.1>;tag=cg1",
		"Call-ID: " + callID,
		"CSeq: 2 " + method,
		"Content-Length: 0",
	}
	return msg(without(hdrs, drop), "")
}

func without(hdrs, drop []string) []string {
	var out []string
next:
	for _, h := range hdrs {
		for _, d := range drop {
			if strings.HasPrefix(h, d+":") {
				continue next
			}
		}
		out = append(out, h)
	}
	return out
}

func newTx(req *sip.Request) *sipgotest.ServerTxRecorder { return sipgotest.NewServerTxRecorder(req) }

// rawPhone is a phone on a bare UDP socket, so a test can answer exactly
// what it wants (a 2xx without Contact, a 407 to a re-INVITE).
type rawPhone struct {
	t    testing.TB
	pc   net.PacketConn
	reqs chan *sip.Request
}

func newRawPhone(t testing.TB) *rawPhone {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &rawPhone{t: t, pc: pc, reqs: make(chan *sip.Request, 64)}
	t.Cleanup(func() { pc.Close() })
	go func() {
		buf := make([]byte, 65535)
		for {
			n, addr, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			m, err := sip.ParseMessage(append([]byte(nil), buf[:n]...))
			if err != nil {
				continue
			}
			if req, ok := m.(*sip.Request); ok {
				req.SetSource(addr.String())
				if req.Method == sip.BYE {
					_, _ = pc.WriteTo([]byte(sip.NewResponseFromRequest(req, sip.StatusOK, "OK", nil).String()), addr)
				}
				select {
				case p.reqs <- req:
				default:
				}
			}
		}
	}()
	return p
}

func (p *rawPhone) addr() string { return p.pc.LocalAddr().String() }

// binding registers the phone as extension ext.
func (p *rawPhone) binding(ext string) location.Binding {
	return location.Binding{AOR: ext, Contact: "sip:" + ext + "@" + p.addr(), Source: p.addr(), Transport: "udp", Expires: time.Now().Add(time.Hour)}
}

// next waits for the next request of method.
func (p *rawPhone) next(method sip.RequestMethod) *sip.Request {
	p.t.Helper()
	deadline := time.After(5 * time.Second)
	for {
		select {
		case req := <-p.reqs:
			if req.Method == method {
				return req
			}
		case <-deadline:
			p.t.Fatalf("phone got no %s", method)
			return nil
		}
	}
}

// answer sends res (built from req) back to where req came from.
func (p *rawPhone) answer(req *sip.Request, res *sip.Response) {
	p.t.Helper()
	addr, err := net.ResolveUDPAddr("udp", req.Source())
	if err != nil {
		p.t.Fatal(err)
	}
	if _, err := p.pc.WriteTo([]byte(res.String()), addr); err != nil {
		p.t.Fatal(err)
	}
}

// newClient is a sipgo client for the B2BUA under test.
func newClient(t testing.TB) *sipgo.Client {
	ua, err := sipgo.NewUA(sipgo.WithUserAgentHostname("127.0.0.1"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ua.Close() })
	c, err := sipgo.NewClient(ua, sipgo.WithClientHostname("127.0.0.1"))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// served runs h.serve on its own goroutine (an INVITE's handler runs for
// the whole call) and delivers its answers.
func (h *harness) served(raw []byte) <-chan []*sip.Response {
	return h.servedFrom(raw, "127.0.0.1:5070")
}

func (h *harness) servedFrom(raw []byte, src string) <-chan []*sip.Response {
	out := make(chan []*sip.Response, 1)
	go func() {
		res, _ := h.serve(raw, src)
		out <- res
	}()
	return out
}

func wait[T any](t testing.TB, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(10 * time.Second):
		t.Fatalf("timed out waiting for %s", what)
		var zero T
		return zero
	}
}

// phoneInvite is an INVITE from extension 101's phone to an outside number.
func phoneInvite(callID string) []byte {
	return msg([]string{
		"INVITE sip:79161234567@127.0.0.1:5060 SIP/2.0",
		"Via: SIP/2.0/UDP 127.0.0.1:5072;branch=z9hG4bK-" + callID,
		"Max-Forwards: 70",
		"From: <sip:101@127.0.0.1>;tag=ph1",
		"To: <sip:79161234567@127.0.0.1>",
		"Call-ID: " + callID,
		"CSeq: 1 INVITE",
		"Contact: <sip:101@127.0.0.1:5072>",
		"Content-Type: application/sdp",
		"Content-Length: " + itoa(len(testSDP)),
	}, testSDP)
}

// reinviteFrom is a re-INVITE with SDP from the party that sent first
// (its From tag fromTag, callgate's tag toTag) in dialog callID.
func reinviteFrom(first []byte, toTag string, cseq int) []byte {
	m, _ := sip.ParseMessage(first)
	inv := m.(*sip.Request)
	return msg([]string{
		"INVITE " + inv.Contact().Address.String() + " SIP/2.0",
		"Via: " + inv.Via().Value() + "-re" + itoa(cseq),
		"Max-Forwards: 70",
		"From: " + inv.From().Value(),
		"To: " + inv.To().Value() + ";tag=" + toTag,
		"Call-ID: " + inv.CallID().Value(),
		"CSeq: " + itoa(cseq) + " INVITE",
		"Contact: " + inv.Contact().Value(),
		"Content-Type: application/sdp",
		"Content-Length: " + itoa(len(testSDP)),
	}, testSDP)
}

// established waits for call callID to be connected and returns the tag
// callgate gave its dialog with the caller.
func (h *harness) established(t testing.TB, callID string) (*call, string) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		c := h.b.lookup(callID)
		if c == nil {
			continue
		}
		tags := make(chan string, 1)
		if !c.post(func() {
			tag := ""
			if c.callee != nil && c.ev.Result == ResultAnswered {
				tag, _ = c.caller.InviteRequest.To().Params.Get("tag")
			}
			tags <- tag
		}) {
			t.Fatalf("call %s ended", callID)
		}
		if tag := wait(t, tags, "the call's goroutine"); tag != "" {
			return c, tag
		}
	}
	t.Fatalf("call %s not established", callID)
	return nil, ""
}

// answerOK answers req with 200, a Contact at the raw phone and SDP.
func (p *rawPhone) answerOK(req *sip.Request) {
	p.t.Helper()
	ok := sip.NewResponseFromRequest(req, sip.StatusOK, "OK", []byte(testSDP))
	ok.AppendHeader(&sip.ContactHeader{Address: sip.Uri{Scheme: "sip", User: "peer", Host: "127.0.0.1", Port: p.pc.LocalAddr().(*net.UDPAddr).Port}})
	ok.AppendHeader(sip.NewHeader("Content-Type", "application/sdp"))
	p.answer(req, ok)
}

// byeFrom is a BYE from the party that sent first in its dialog.
func byeFrom(first []byte, toTag string, cseq int) []byte {
	m, _ := sip.ParseMessage(first)
	inv := m.(*sip.Request)
	return msg([]string{
		"BYE " + inv.Contact().Address.String() + " SIP/2.0",
		"Via: " + inv.Via().Value() + "-bye",
		"Max-Forwards: 70",
		"From: " + inv.From().Value(),
		"To: " + inv.To().Value() + ";tag=" + toTag,
		"Call-ID: " + inv.CallID().Value(),
		"CSeq: " + itoa(cseq) + " BYE",
		"Content-Length: 0",
	}, "")
}

// hangupFrom ends the call with a BYE from its first party.
func (h *harness) hangupFrom(t testing.TB, first []byte, tag string, done <-chan []*sip.Response) {
	t.Helper()
	res, _ := h.serve(byeFrom(first, tag, 9), "127.0.0.1:5070")
	if fin := finals(res); len(fin) != 1 || fin[0].StatusCode != sip.StatusOK {
		t.Fatalf("BYE answered %v", res)
	}
	wait(t, done, "the call to end")
}

// upstreamAt is a VPBX at fixed UDP addresses ("IP:port"), tried in order.
func upstreamAt(addrs ...string) resolve.Fixed {
	var out resolve.Fixed
	for _, a := range addrs {
		out = append(out, sipnet.Target{Transport: sipnet.UDP, Addr: netip.MustParseAddrPort(a)})
	}
	return out
}
