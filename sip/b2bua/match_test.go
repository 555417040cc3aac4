package b2bua

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"callgate/sip/sipnet"

	"github.com/emiago/sipgo/sip"
)

// fakeLeg is a call's caller dialog without a network.
type fakeLeg struct {
	ctx      context.Context
	readByes atomic.Int32
	byes     atomic.Int32
}

func (f *fakeLeg) Bye(context.Context) error { f.byes.Add(1); return nil }
func (f *fakeLeg) Do(context.Context, *sip.Request) (*sip.Response, error) {
	return nil, errors.New("fake leg sends nothing")
}
func (f *fakeLeg) Context() context.Context { return f.ctx }
func (f *fakeLeg) ReadBye(req *sip.Request, tx sip.ServerTransaction) error {
	f.readByes.Add(1)
	return tx.Respond(sip.NewResponseFromRequest(req, sip.StatusOK, "OK", nil))
}

// syncBuffer is a log sink safe for the call goroutine and the test.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

const (
	phoneAddr = "127.0.0.1:5071"
	vpbxAddr  = "127.0.0.1:5080"
)

func newMatchB2BUA(logs *syncBuffer) *B2BUA {
	return New(Config{Trusted: sipnet.NewNetworkSet(sipnet.Networks{netip.MustParsePrefix("127.0.0.1/32")})}, nil, nil, nil, nil, nil, nil,
		slog.New(slog.NewTextHandler(logs, nil)))
}

// phoneCall is an outbound call whose caller leg is a phone at phoneAddr
// with dialog (callID, our tag "cg-tag", the phone's tag "ph-tag"); its
// goroutine runs until the call ends.
func phoneCall(b *B2BUA, callID string, run bool) (*call, *fakeLeg) {
	leg := &fakeLeg{ctx: context.Background()}
	c := &call{b: b, id: "call-" + callID, inbox: make(chan func(), 16), closed: make(chan struct{}),
		callerLeg: leg, callerCallID: callID}
	c.ev = Event{CallID: c.id, Direction: Outbound}
	b.trackDialog(callID, "cg-tag", "ph-tag", phonePeer(phoneAddr))
	b.bind(callID, c)
	if run {
		go c.loop()
	}
	return c, leg
}

// loop runs a test call's goroutine.
func (c *call) loop() {
	for {
		select {
		case fn := <-c.inbox:
			fn()
		case <-c.closed:
			return
		}
	}
}

// dialogReq is an in-dialog request as a peer sends it (From: its tag,
// To: ours) arriving from src.
func dialogReq(method sip.RequestMethod, callID, fromTag, toTag, src string) *sip.Request {
	req := sip.NewRequest(method, sip.Uri{Scheme: "sip", User: "callgate", Host: "127.0.0.1", Port: 5060})
	via := sip.NewParams()
	via.Add("branch", sip.GenerateBranch())
	host, port, _ := sip.ParseAddr(src)
	req.AppendHeader(&sip.ViaHeader{ProtocolName: "SIP", ProtocolVersion: "2.0", Transport: "UDP", Host: host, Port: port, Params: via})
	from := &sip.FromHeader{Address: sip.Uri{Scheme: "sip", User: "101", Host: "127.0.0.1"}, Params: sip.NewParams()}
	if fromTag != "" {
		from.Params.Add("tag", fromTag)
	}
	req.AppendHeader(from)
	to := &sip.ToHeader{Address: sip.Uri{Scheme: "sip", User: "79161234567", Host: "127.0.0.1"}, Params: sip.NewParams()}
	if toTag != "" {
		to.Params.Add("tag", toTag)
	}
	req.AppendHeader(to)
	if callID != "" {
		cid := sip.CallIDHeader(callID)
		req.AppendHeader(&cid)
	}
	req.AppendHeader(&sip.CSeqHeader{SeqNo: 7, MethodName: method})
	if method == sip.REFER {
		req.AppendHeader(sip.NewHeader("Refer-To", "<sip:+88212345678@127.0.0.1>"))
	}
	req.SetSource(src)
	return req
}

// send hands req to the handler the server would call and returns the
// status answered (0: none).
func send(b *B2BUA, req *sip.Request) int {
	tx := &respondTx{}
	if req.Method == sip.INVITE {
		b.onInvite(req, tx)
	} else {
		b.inDialog(req, tx)
	}
	if len(tx.res) == 0 {
		return 0
	}
	return tx.res[len(tx.res)-1].StatusCode
}

// In-dialog requests with the right Call-ID but a wrong or missing tag, or
// from another address or port than the phone's, get 481 and are counted
// (ACK: dropped), and leave the call alone; the phone's own BYE ends it.
func TestInDialogRequestsMatchTagsAndSource(t *testing.T) {
	var logs syncBuffer
	b := newMatchB2BUA(&logs)
	c, leg := phoneCall(b, "cid-1", true)

	forged := []struct {
		name string
		req  *sip.Request
		want int
	}{
		{"BYE wrong To-tag", dialogReq(sip.BYE, "cid-1", "ph-tag", "guess", phoneAddr), 481},
		{"BYE wrong From-tag", dialogReq(sip.BYE, "cid-1", "guess", "cg-tag", phoneAddr), 481},
		{"BYE tags swapped", dialogReq(sip.BYE, "cid-1", "cg-tag", "ph-tag", phoneAddr), 481},
		{"BYE without From-tag", dialogReq(sip.BYE, "cid-1", "", "cg-tag", phoneAddr), 481},
		{"BYE from another port", dialogReq(sip.BYE, "cid-1", "ph-tag", "cg-tag", "127.0.0.1:5072"), 481},
		{"BYE from another address", dialogReq(sip.BYE, "cid-1", "ph-tag", "cg-tag", "127.0.0.2:5071"), 481},
		{"BYE unknown Call-ID", dialogReq(sip.BYE, "cid-2", "ph-tag", "cg-tag", phoneAddr), 481},
		{"BYE without Call-ID", dialogReq(sip.BYE, "", "ph-tag", "cg-tag", phoneAddr), 481},
		{"re-INVITE wrong tags", dialogReq(sip.INVITE, "cid-1", "x", "y", phoneAddr), 481},
		{"re-INVITE from another address", dialogReq(sip.INVITE, "cid-1", "ph-tag", "cg-tag", "127.0.0.2:5071"), 481},
		{"INFO wrong To-tag", dialogReq(sip.INFO, "cid-1", "ph-tag", "x", phoneAddr), 481},
		{"REFER wrong tags", dialogReq(sip.REFER, "cid-1", "x", "y", phoneAddr), 481},
		{"REFER from another address", dialogReq(sip.REFER, "cid-1", "ph-tag", "cg-tag", "127.0.0.2:5071"), 481},
	}
	for i, f := range forged {
		if got := send(b, f.req); got != f.want {
			t.Errorf("%s: answered %d, want %d", f.name, got, f.want)
		}
		if n := b.DialogMismatches(); n != uint64(i+1) {
			t.Errorf("%s: mismatch counter %d, want %d", f.name, n, i+1)
		}
	}
	// A stray ACK (e.g. for a 407, outside its transaction) is dropped,
	// not counted.
	if got := send(b, dialogReq(sip.ACK, "cid-1", "x", "cg-tag", phoneAddr)); got != 0 || b.DialogMismatches() != uint64(len(forged)) {
		t.Fatalf("ACK with wrong tags: answered %d, mismatches %d", got, b.DialogMismatches())
	}
	if c.closedNow() || leg.readByes.Load() != 0 || b.Active() != 1 {
		t.Fatal("a forged request reached the call")
	}

	if got := send(b, dialogReq(sip.BYE, "cid-1", "ph-tag", "cg-tag", phoneAddr)); got != 200 {
		t.Fatalf("the phone's BYE answered %d", got)
	}
	<-c.closed
	if leg.readByes.Load() != 1 || b.Active() != 0 || c.ev.HangupBy != "caller" {
		t.Fatalf("the phone's BYE did not end the call (read %d, active %d, by %q)", leg.readByes.Load(), b.Active(), c.ev.HangupBy)
	}
	if n := b.DialogMismatches(); n != uint64(len(forged)) {
		t.Fatalf("the legitimate BYE was counted: %d", n)
	}
}

func (c *call) closedNow() bool {
	select {
	case <-c.closed:
		return true
	default:
		return false
	}
}

// The VPBX's leg takes requests from any trusted source, no one else's.
func TestUpstreamLegTakesTrustedSourcesOnly(t *testing.T) {
	var logs syncBuffer
	b := newMatchB2BUA(&logs)
	leg := &fakeLeg{ctx: context.Background()}
	c := &call{b: b, id: "in-1", inbox: make(chan func(), 16), closed: make(chan struct{}), callerLeg: leg, callerCallID: "up-1"}
	c.ev = Event{CallID: c.id, Direction: Inbound}
	b.trackDialog("up-1", "cg", "vp", dialogPeer{upstream: true})
	b.bind("up-1", c)
	go c.loop()

	if got := send(b, dialogReq(sip.BYE, "up-1", "vp", "cg", "127.0.0.2:5080")); got != 481 {
		t.Fatalf("BYE from an untrusted address answered %d", got)
	}
	if got := send(b, dialogReq(sip.BYE, "up-1", "vp", "cg", "127.0.0.1:6000")); got != 200 {
		t.Fatalf("BYE from a trusted source answered %d", got)
	}
	<-c.closed
	if leg.readByes.Load() != 1 || c.ev.HangupBy != "caller" || b.DialogMismatches() != 1 {
		t.Fatalf("hangup by %q, mismatches %d", c.ev.HangupBy, b.DialogMismatches())
	}
}

// A leg callgate placed takes requests once answered (early: a provisional
// response with a tag), with the 2xx's tag, from where the answer came or
// where callgate sent its INVITE.
func TestAnsweredLegMatchesTheAnswer(t *testing.T) {
	var logs syncBuffer
	b := newMatchB2BUA(&logs)
	b.trackDialog("out-1", "ours", "", phonePeer("127.0.0.1:5090"))
	c := &call{b: b, id: "c", inbox: make(chan func(), 16), closed: make(chan struct{})}
	b.bind("out-1", c)
	if _, _, kind, why := b.dialogOf(dialogReq(sip.BYE, "out-1", "", "ours", "127.0.0.1:5090")); kind != matchNone {
		t.Fatal("a request matched a leg before its answer")
	} else if why == "" {
		t.Fatal("no reason given")
	}
	answer := func(code int, tag string) {
		res := sip.NewResponse(code, "")
		to := &sip.ToHeader{Address: sip.Uri{Scheme: "sip", User: "102", Host: "127.0.0.1"}, Params: sip.NewParams()}
		to.Params.Add("tag", tag)
		res.AppendHeader(to)
		res.SetSource("127.0.0.1:5091")
		b.dialogAnswered("out-1", res)
	}
	answer(180, "early")
	if _, _, kind, why := b.dialogOf(dialogReq(sip.INFO, "out-1", "early", "ours", "127.0.0.1:5090")); kind != matchLive {
		t.Fatalf("a request in the early dialog: %s", why)
	}
	answer(200, "theirs")
	answer(183, "late")
	if _, _, kind, _ := b.dialogOf(dialogReq(sip.INFO, "out-1", "early", "ours", "127.0.0.1:5090")); kind != matchNone {
		t.Fatal("the early dialog's tag still matches after the 2xx")
	}
	for _, src := range []string{"127.0.0.1:5090", "127.0.0.1:5091"} {
		if _, _, kind, why := b.dialogOf(dialogReq(sip.INFO, "out-1", "theirs", "ours", src)); kind != matchLive {
			t.Fatalf("request from %s: %s", src, why)
		}
	}
	if _, _, kind, _ := b.dialogOf(dialogReq(sip.INFO, "out-1", "theirs", "ours", "127.0.0.1:5092")); kind != matchNone {
		t.Fatal("a request from a third port matched")
	}
}

// A BYE for a dialog callgate released in the last 32 s gets 200 and is not
// counted (a transferor hanging up as its transfer completes), also when it
// was queued to the call before the leg left it; later, or with wrong
// tags or from elsewhere, it gets 481.
func TestReleasedDialogTakesBye(t *testing.T) {
	var logs syncBuffer
	b := newMatchB2BUA(&logs)
	c, leg := phoneCall(b, "cid-x", false)

	// Matched while live, run by the call after the leg was released.
	answered := make(chan int, 1)
	go func() { answered <- send(b, dialogReq(sip.BYE, "cid-x", "ph-tag", "cg-tag", phoneAddr)) }()
	waitFor(t, "the BYE queued to the call", func() bool { return len(c.inbox) == 1 })
	b.unbind("cid-x")
	go c.loop()
	if got := <-answered; got != 200 {
		t.Fatalf("crossing BYE answered %d", got)
	}
	if leg.readByes.Load() != 0 || c.closedNow() {
		t.Fatal("a BYE for a released leg reached the call")
	}

	// Arriving after the release.
	if got := send(b, dialogReq(sip.BYE, "cid-x", "ph-tag", "cg-tag", phoneAddr)); got != 200 {
		t.Fatalf("BYE after the release answered %d", got)
	}
	if got := send(b, dialogReq(sip.INFO, "cid-x", "ph-tag", "cg-tag", phoneAddr)); got != 481 {
		t.Fatalf("INFO after the release answered %d", got)
	}
	if b.DialogMismatches() != 0 {
		t.Fatalf("requests in a released dialog were counted: %d", b.DialogMismatches())
	}
	if got := send(b, dialogReq(sip.BYE, "cid-x", "ph-tag", "other", phoneAddr)); got != 481 {
		t.Fatalf("BYE with a wrong tag for a released dialog answered %d", got)
	}
	if got := send(b, dialogReq(sip.BYE, "cid-x", "ph-tag", "cg-tag", "127.0.0.2:5071")); got != 481 {
		t.Fatalf("BYE from elsewhere for a released dialog answered %d", got)
	}
	// 32 s later it is forgotten.
	b.mu.Lock()
	b.dlg.released["cid-x"].at = time.Now().Add(-releasedFor)
	b.mu.Unlock()
	if got := send(b, dialogReq(sip.BYE, "cid-x", "ph-tag", "cg-tag", phoneAddr)); got != 481 {
		t.Fatalf("BYE 32 s after the release answered %d", got)
	}
	if b.DialogMismatches() != 3 {
		t.Fatalf("mismatches %d, want 3", b.DialogMismatches())
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for i := 0; i < 500; i++ {
		if cond() {
			return
		}
		time.Sleep(2 * time.Millisecond)
	}
	t.Fatalf("timed out waiting for %s", what)
}

// The released table stays bounded however many legs end at once.
func TestReleasedTableIsBounded(t *testing.T) {
	var logs syncBuffer
	b := newMatchB2BUA(&logs)
	for i := 0; i < releasedMax+100; i++ {
		id := fmt.Sprint("cid-", i)
		b.trackDialog(id, "l", "r", phonePeer(phoneAddr))
		b.unbind(id)
	}
	b.mu.Lock()
	n, order := len(b.dlg.released), len(b.dlg.order)
	_, oldest := b.dlg.released["cid-0"]
	_, newest := b.dlg.released[fmt.Sprint("cid-", releasedMax+99)]
	b.mu.Unlock()
	if n != releasedMax || order != releasedMax || oldest || !newest {
		t.Fatalf("released %d (order %d), oldest kept %v, newest kept %v", n, order, oldest, newest)
	}
}

// Mismatches are warned about once per source and minute, with stable keys.
func TestMismatchLoggedOncePerSourcePerMinute(t *testing.T) {
	var logs syncBuffer
	b := newMatchB2BUA(&logs)
	for i := 0; i < 5; i++ {
		send(b, dialogReq(sip.BYE, "nope", "a", "b", "127.0.0.2:5071"))
	}
	send(b, dialogReq(sip.REFER, "nope-2", "a", "b", "127.0.0.1:5071"))
	out := logs.String()
	if n := strings.Count(out, "in-dialog request refused"); n != 2 {
		t.Fatalf("%d warnings, want 2:\n%s", n, out)
	}
	for _, want := range []string{"level=WARN", "source=127.0.0.2:5071", "call_id=nope", "method=BYE", `reason="unknown dialog"`, "method=REFER"} {
		if !strings.Contains(out, want) {
			t.Fatalf("log lacks %s:\n%s", want, out)
		}
	}
	if b.DialogMismatches() != 6 {
		t.Fatalf("mismatches %d, want 6", b.DialogMismatches())
	}
	if !b.dlg.shouldLog(netip.MustParseAddr("127.0.0.2"), time.Now().Add(time.Minute)) {
		t.Fatal("a source stays silenced after a minute")
	}
}

// A REFER's Replaces must name a dialog its sender holds with callgate.
func TestReplacesMustBeTheSendersDialog(t *testing.T) {
	var logs syncBuffer
	b := newMatchB2BUA(&logs)
	b.trackDialog("consult-1", "cg", "ph", phonePeer(phoneAddr))
	b.trackDialog("other-1", "cg2", "ph2", phonePeer("127.0.0.1:5075"))
	phone := netip.MustParseAddrPort(phoneAddr)
	for _, tc := range []struct {
		replaces string
		src      netip.AddrPort
		want     bool
	}{
		{"consult-1;to-tag=cg;from-tag=ph", phone, true},
		{"consult-1;to-tag=ph;from-tag=cg", phone, true},
		{"consult-1", phone, true},
		{"consult-1;to-tag=cg;from-tag=x", phone, false},
		{"consult-1;to-tag=cg;from-tag=ph", netip.MustParseAddrPort("127.0.0.1:5075"), false},
		{"other-1;to-tag=cg2;from-tag=ph2", phone, false},
		{"missing;to-tag=cg;from-tag=ph", phone, false},
		{"", phone, false},
	} {
		if _, got := b.ownsReplaced(tc.replaces, tc.src); got != tc.want {
			t.Errorf("Replaces %q from %s: %v, want %v", tc.replaces, tc.src, got, tc.want)
		}
	}
}

// A matched dialog that is bound to the call but is none of its parties
// (a branch whose answer the call has not taken yet) cannot end or change
// the call: it gets 481, uncounted (it is a dialog callgate holds).
func TestDialogNotYetAPartyCannotEndTheCall(t *testing.T) {
	var logs syncBuffer
	b := newMatchB2BUA(&logs)
	c, leg := phoneCall(b, "cid-main", true)
	b.trackDialog("cid-branch", "ours", "theirs", phonePeer("127.0.0.1:5077"))
	b.bind("cid-branch", c)
	for _, m := range []sip.RequestMethod{sip.BYE, sip.INFO, sip.REFER} {
		if got := send(b, dialogReq(m, "cid-branch", "theirs", "ours", "127.0.0.1:5077")); got != 481 {
			t.Fatalf("%s from a branch not yet answered: %d", m, got)
		}
	}
	if c.closedNow() || leg.readByes.Load() != 0 || b.DialogMismatches() != 0 {
		t.Fatalf("closed %v, caller BYEs %d, mismatches %d", c.closedNow(), leg.readByes.Load(), b.DialogMismatches())
	}
	c.post(func() { c.finish() })
	<-c.closed
}
