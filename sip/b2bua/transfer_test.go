package b2bua

import (
	"context"
	"errors"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"callgate/sip/siptest"

	"github.com/emiago/sipgo/sip"
)

// Transfers by REFER from the employee's phone and through the API, run
// over loopback UDP against the office harness (office_test.go).

var (
	ivanov = Target{Extension: "101", Employee: "ivanov"}
	petrov = Target{Extension: "103", Employee: "petrov"}
)

// talking sets up a call between the outside party and ivanov in the
// given direction.
func (o *office) talking(ctx context.Context, dir Direction) callParties {
	if dir == Outbound {
		return o.outbound(ctx, "74951112233")
	}
	return o.inbound(ctx)
}

// shownNumber is the outside number a transfer target sees calling.
func shownNumber(dir Direction) string {
	if dir == Outbound {
		return "74951112233"
	}
	return callerNum
}

// transferred checks the event that says the call moved from ivanov to to.
func (o *office) transferred(id, mode string, to Target) Event {
	o.t.Helper()
	ev := o.awaitEvent("the transferred event", eventOf(EventTransferred, id))
	if ev.TransferMode != mode || ev.TransferFrom != ivanov || ev.Answered != to || ev.Result != ResultAnswered {
		o.t.Fatalf("transferred event: mode %q from %+v to %+v (result %q); want %s from ivanov to %+v",
			ev.TransferMode, ev.TransferFrom, ev.Answered, ev.Result, mode, to)
	}
	return ev
}

// A blind transfer by REFER, from an inbound and from an outbound call:
// 202, the target rings showing the outside number with an offer at the
// relay port the employee had, the transferor hears 100 Trying and 200 OK
// in NOTIFYs and is released with BYE, the media of the employee side goes
// to the target, the outside party stays, the event names mode, from and
// to, and the end of the call is the outside party's.
func TestBlindTransferByRefer(t *testing.T) {
	for _, dir := range []Direction{Inbound, Outbound} {
		t.Run(string(dir), func(t *testing.T) {
			o := newOffice(t)
			ctx := testCtx(t)
			p := o.talking(ctx, dir)
			s := o.session(p.id)

			refer(ctx, t, p.ivanov, "sip:103@vpbx.test", "", sip.StatusAccepted)
			in := o.phones["103"].ring(t)
			if in.From() != shownNumber(dir) {
				t.Fatalf("the target sees %q calling, want %s", in.From(), shownNumber(dir))
			}
			if got := offerPort(t, in.Request.Body()); got != s.Port(SideB) {
				t.Fatalf("the target is offered port %d, want the employee side's %d", got, s.Port(SideB))
			}
			petrovSide, err := in.Answer(ctx, o.phones["103"].sdp())
			if err != nil {
				t.Fatal(err)
			}
			o.phones["101"].awaitFrags(t, "SIP/2.0 100 Trying", "SIP/2.0 200 OK")
			released(t, "the transferor", p.ivanov)
			pointed(t, s, SideB, o.phones["103"].rtpAddr())
			o.transferred(p.id, "blind", petrov)
			if o.b.Busy("101") || !o.b.Busy("103") {
				t.Fatalf("busy: 101 %v, 103 %v; want the target only", o.b.Busy("101"), o.b.Busy("103"))
			}

			o.outsideHangsUp(ctx, p, petrov, petrovSide)
		})
	}
}

// A transferor that sends its own BYE on the final NOTIFY (RFC 5589 §6),
// crossing callgate's, gets 200 and ends nothing but its own leg; so does
// the same BYE again once callgate has released the dialog; neither counts
// as a mismatch. The outside party and the target keep talking.
func TestTransferorByeCrossingTheFinalNotify(t *testing.T) {
	for _, dir := range []Direction{Inbound, Outbound} {
		t.Run(string(dir), func(t *testing.T) {
			o := newOffice(t)
			ctx := testCtx(t)
			p := o.talking(ctx, dir)
			bye := p.ivanov.Raw("BYE", o.addr)
			ivanovCallID := p.ivanov.CallID()

			refer(ctx, t, p.ivanov, "sip:petrov@vpbx.test", "", sip.StatusAccepted)
			_, petrovSide := o.phones["103"].answer(ctx, t)
			o.phones["101"].awaitFrags(t, "SIP/2.0 100 Trying", "SIP/2.0 200 OK")
			if res, err := o.phones["101"].Send(ctx, bye); err != nil || res.StatusCode != sip.StatusOK {
				t.Fatalf("the transferor's BYE on the final NOTIFY: %v %v", res, err)
			}
			released(t, "the transferor", p.ivanov)
			waitFor(t, "the transferor's dialog released", func() bool { return o.b.lookup(ivanovCallID) == nil })
			bye.CSeq++
			if res, err := o.phones["101"].Send(ctx, bye); err != nil || res.StatusCode != sip.StatusOK {
				t.Fatalf("the transferor's BYE after the release: %v %v", res, err)
			}
			o.transferred(p.id, "blind", petrov)
			if n := o.b.DialogMismatches(); n != 0 {
				t.Fatalf("%d mismatches counted", n)
			}
			if slices.Contains(o.kinds(p.id), EventEnded) {
				t.Fatal("the transferor's BYE ended the call")
			}
			o.outsideHangsUp(ctx, p, petrov, petrovSide)
		})
	}
}

// A transferor that hangs up while the target rings leaves the outside
// party waiting for the target: if the target answers the call is theirs
// (no NOTIFY or BYE goes to the gone transferor); if the target refuses,
// nobody is left in the office and the outside party is hung up.
func TestTransferorHangsUpWhileTheTargetRings(t *testing.T) {
	for _, answers := range []bool{true, false} {
		name := "target answers"
		if !answers {
			name = "target refuses"
		}
		t.Run(name, func(t *testing.T) {
			o := newOffice(t)
			ctx := testCtx(t)
			p := o.inbound(ctx)
			s := o.session(p.id)
			refer(ctx, t, p.ivanov, "sip:103@vpbx.test", "", sip.StatusAccepted)
			in := o.phones["103"].ring(t)
			if err := p.ivanov.Hangup(ctx); err != nil {
				t.Fatalf("the transferor's BYE while the target rings: %v", err)
			}
			if !answers {
				if err := in.Reject(sip.StatusBusyHere, "Busy Here"); err != nil {
					t.Fatal(err)
				}
				o.vpbxIn.await(t, "BYE to the outside party", byeIn(p.outside.CallID()))
				ev := o.awaitEvent("the call ended", eventOf(EventEnded, p.id))
				if ev.HangupBy != "employee" || ev.Answered != ivanov || slices.Contains(o.kinds(p.id), EventTransferred) {
					t.Fatalf("ended event %+v after %v", ev, o.kinds(p.id))
				}
				o.idle()
				return
			}
			petrovSide, err := in.Answer(ctx, o.phones["103"].sdp())
			if err != nil {
				t.Fatal(err)
			}
			o.transferred(p.id, "blind", petrov)
			pointed(t, s, SideB, o.phones["103"].rtpAddr())
			o.phones["101"].awaitFrags(t, "SIP/2.0 100 Trying")
			o.outsideHangsUp(ctx, p, petrov, petrovSide)
			if f := o.phones["101"].frags(); len(f) != 1 {
				t.Fatalf("NOTIFYs to the gone transferor: %q", f)
			}
		})
	}
}

// A target that refuses a REFER leaves the outside party with the
// transferor: the final NOTIFY carries the refusal, nothing is released or
// re-pointed. The API's blind transfer then reports a refusal's status,
// and moves the call once the target answers.
func TestRefusedTransferReturnsToTheTransferor(t *testing.T) {
	o := newOffice(t)
	ctx := testCtx(t)
	p := o.inbound(ctx)
	s := o.session(p.id)

	refer(ctx, t, p.ivanov, "sip:103@vpbx.test", "", sip.StatusAccepted)
	if err := o.phones["103"].ring(t).Reject(sip.StatusBusyHere, "Busy Here"); err != nil {
		t.Fatal(err)
	}
	o.phones["101"].awaitFrags(t, "SIP/2.0 100 Trying", "SIP/2.0 486 Busy Here")
	if closed(p.ivanov.Done()) || closed(p.outside.Done()) {
		t.Fatal("a party was hung up although the transfer failed")
	}
	if got := s.remotesOf(SideB); len(got) != 1 || got[0] != o.phones["101"].rtpAddr() {
		t.Fatalf("the employee side's media was re-pointed: %v", got)
	}
	if !o.b.Busy("101") || o.b.Busy("103") {
		t.Fatal("the transferor is no longer on the call")
	}

	// Through the API: refused, then answered.
	type result struct {
		code   int
		reason string
		err    error
	}
	api := func(target string) <-chan result {
		out := make(chan result, 1)
		go func() {
			code, reason, err := o.b.Transfer(p.id, target, "blind")
			out <- result{code, reason, err}
		}()
		return out
	}
	done := api("petrov")
	if err := o.phones["103"].ring(t).Reject(sip.StatusGlobalDecline, "Decline"); err != nil {
		t.Fatal(err)
	}
	if r := wait(t, done, "the refused API transfer"); r.code != sip.StatusGlobalDecline || r.err != nil {
		t.Fatalf("API transfer to a refusing target: %+v", r)
	}
	if closed(p.ivanov.Done()) || slices.Contains(o.kinds(p.id), EventTransferred) {
		t.Fatal("a refused API transfer moved the call")
	}
	done = api("103")
	_, petrovSide := o.phones["103"].answer(ctx, t)
	if r := wait(t, done, "the API transfer"); r.code != sip.StatusOK || r.err != nil {
		t.Fatalf("API transfer: %+v", r)
	}
	released(t, "the transferor", p.ivanov)
	pointed(t, s, SideB, o.phones["103"].rtpAddr())
	o.transferred(p.id, "blind", petrov)
	if _, _, err := o.b.Transfer("no-such-call", "103", "blind"); !errors.Is(err, ErrNoCall) {
		t.Fatalf("API transfer of an unknown call: %v", err)
	}
	o.outsideHangsUp(ctx, p, petrov, petrovSide)
}

// An attended transfer: ivanov holds the outside party, calls petrov
// through callgate and REFERs with Replaces naming that call. petrov's
// dialog is re-INVITEd onto the outside call's relay port, the outside
// party is taken off hold, ivanov is released from both calls, the
// consultation call ends as handed over, and the event says attended. A
// Replaces naming a dialog that is not the sender's is refused.
func TestAttendedTransferWithReplaces(t *testing.T) {
	o := newOffice(t)
	ctx := testCtx(t)
	p := o.inbound(ctx)
	s := o.session(p.id)

	if code, _, err := p.ivanov.ReInvite(ctx, siptest.HoldSDP(o.phones["101"].rtp)); err != nil || code != sip.StatusOK {
		t.Fatalf("hold: %d %v", code, err)
	}
	o.vpbxIn.await(t, "the hold re-INVITE", func(r *sip.Request) bool {
		return r.Method == sip.INVITE && strings.Contains(string(r.Body()), "a=sendonly")
	})
	consulted := make(chan *siptest.Call, 1)
	go func() {
		if c, err := o.phones["101"].Dial(ctx, "103", o.phones["101"].sdp()); err == nil {
			consulted <- c
		}
	}()
	in, petrovSide := o.phones["103"].answer(ctx, t)
	if in.From() != "101" {
		t.Fatalf("petrov sees %q calling, want 101", in.From())
	}
	consult := wait(t, consulted, "the consultation call")
	inner := o.awaitEvent("the consultation answered", func(e Event) bool { return e.Kind == EventAnswered && e.Direction == Internal })

	refer(ctx, t, p.ivanov, "sip:103@vpbx.test", "not-a-dialog;to-tag=a;from-tag=b", sip.StatusCallTransactionDoesNotExists)
	if code, err := p.ivanov.Refer(ctx, "sip:103@vpbx.test", consult.ReplacesID()); err != nil || code != sip.StatusAccepted {
		t.Fatalf("REFER with Replaces: %d %v", code, err)
	}
	o.phones["103"].await(t, "the re-INVITE onto the outside call", reinviteTo(s.Port(SideB)))
	released(t, "ivanov's call", p.ivanov)
	released(t, "ivanov's consultation", consult)
	o.phones["101"].awaitFrags(t, "SIP/2.0 100 Trying", "SIP/2.0 200 OK")
	o.vpbxIn.await(t, "the outside party taken off hold", func(r *sip.Request) bool {
		return r.Method == sip.INVITE && strings.Contains(string(r.Body()), "a=sendrecv")
	})
	pointed(t, s, SideB, o.phones["103"].rtpAddr())
	pointed(t, s, SideA, netip.MustParseAddrPort(rtpOutside))
	o.transferred(p.id, "attended", petrov)
	if ev := o.awaitEvent("the consultation ended", eventOf(EventEnded, inner.CallID)); ev.HangupBy != "transfer" {
		t.Fatalf("the consultation call ended %+v", ev)
	}
	o.outsideHangsUp(ctx, p, petrov, petrovSide)
}

// A blind transfer to an outside number dials it through the VPBX from
// the call's account, offering the relay's upstream address; the number
// becomes the call's other end, and the router's lease is kept as
// answered until the call ends.
func TestBlindTransferToAnOutsideNumber(t *testing.T) {
	o := newOffice(t)
	ctx := testCtx(t)
	p := o.inbound(ctx)
	s := o.session(p.id)

	refer(ctx, t, p.ivanov, "sip:8-916-111-22-33@vpbx.test", "", sip.StatusAccepted)
	var fwd *siptest.IncomingCall
	select {
	case fwd = <-o.vpbx.Calls:
	case <-ctx.Done():
		t.Fatal("the number was not dialled")
	}
	if fwd.Request.Recipient.User != "79161112233" || fwd.From() != "sales1" {
		t.Fatalf("the VPBX got a call to %s from %s", fwd.Request.Recipient.User, fwd.From())
	}
	if a, err := siptest.MediaAddr(fwd.Request.Body()); err != nil || a != netip.AddrPortFrom(o.b.cfg.UpstreamMedia, uint16(s.Port(SideB))) {
		t.Fatalf("the VPBX is offered %v (%v), want the employee side's port at the upstream address", a, err)
	}
	mobile, err := fwd.Answer(ctx, siptest.SDP(rtpMobile))
	if err != nil {
		t.Fatal(err)
	}
	o.phones["101"].awaitFrags(t, "SIP/2.0 100 Trying", "SIP/2.0 200 OK")
	released(t, "the transferor", p.ivanov)
	pointed(t, s, SideB, netip.MustParseAddrPort(rtpMobile))
	number := Target{Extension: "79161112233"}
	o.transferred(p.id, "blind", number)
	l := o.router.lease(0)
	if l == nil {
		t.Fatal("the transfer took no lease")
	}
	// The lease is settled once the transfer is done, after its event.
	await(t, "the lease kept as answered", &l.changed, func() bool { return l.answered.Load() == 1 })
	if n := l.ended.Load(); n != 0 {
		t.Fatalf("the answered transfer's lease ended %d times while the call goes on", n)
	}
	o.outsideHangsUp(ctx, p, number, mobile)
	if l.ended.Load() == 0 {
		t.Fatal("the transfer's lease outlived the call")
	}
}
