package b2bua

import (
	"context"
	"errors"
	"slices"
	"testing"

	"callgate/sip/siptest"

	"github.com/emiago/sipgo/sip"
)

// The API's attended transfer (consult.go): callgate moves the employee's
// phone to a consultation session with the target while the outside party
// hears a hold tone, then completes or cancels it. Run over loopback UDP
// against the office harness (office_test.go).

// apiResult is what ConsultTransfer returned.
type apiResult struct {
	code   int
	reason string
	err    error
}

// startConsultation asks for an attended transfer of p to petrov and
// waits until ivanov's phone is moved into the consultation session, which
// it returns.
func (o *office) startConsultation(p callParties) (<-chan apiResult, *fakeSession) {
	o.t.Helper()
	done := make(chan apiResult, 1)
	go func() {
		code, reason, err := o.b.ConsultTransfer(p.id, "petrov")
		done <- apiResult{code, reason, err}
	}()
	y := o.session(p.id + "-consult")
	o.phones["101"].await(o.t, "the re-INVITE into the consultation", reinviteTo(y.Port(SideA)))
	return done, y
}

// consulting runs an attended transfer of p to petrov up to the
// consultation: ivanov and petrov talk through the consultation session,
// the outside party is parked with a hold tone. It returns petrov's side
// and the consultation session.
func (o *office) consulting(ctx context.Context, p callParties) (*siptest.Call, *fakeSession) {
	t := o.t
	t.Helper()
	main := o.session(p.id)
	done, y := o.startConsultation(p)
	in := o.phones["103"].ring(t)
	if in.From() != "101" {
		t.Fatalf("petrov sees %q calling, want ivanov's extension", in.From())
	}
	if got := offerPort(t, in.Request.Body()); got != y.Port(SideB) {
		t.Fatalf("petrov is offered port %d, want the consultation's %d", got, y.Port(SideB))
	}
	petrovSide, err := in.Answer(ctx, o.phones["103"].sdp())
	if err != nil {
		t.Fatal(err)
	}
	if r := wait(t, done, "the consultation to start"); r.code != sip.StatusOK || r.err != nil {
		t.Fatalf("ConsultTransfer: %+v", r)
	}
	pointed(t, y, SideA, o.phones["101"].rtpAddr())
	pointed(t, y, SideB, o.phones["103"].rtpAddr())
	if main.playing() != 1 || main.parkedOf(SideB) != 1 {
		t.Fatalf("the outside party: %d hold tones, employee side parked %d times; want 1 and 1", main.playing(), main.parkedOf(SideB))
	}
	if closed(p.outside.Done()) || closed(p.ivanov.Done()) {
		t.Fatal("a party of the call was hung up for the consultation")
	}
	return petrovSide, y
}

// over waits until the consultation's session is closed and the hold tone
// stopped.
func (o *office) over(main, y *fakeSession) {
	o.t.Helper()
	await(o.t, "the consultation session closed", &y.changed, y.isClosed)
	await(o.t, "the hold tone stopped", &main.changed, func() bool { return main.playing() == 0 })
}

// ivanovBack waits until ivanov's phone is re-INVITEd back onto the call
// and the call's media goes to it again.
func (o *office) ivanovBack(main *fakeSession) {
	o.t.Helper()
	o.phones["101"].await(o.t, "the re-INVITE back onto the call", reinviteTo(main.Port(SideB)))
	await(o.t, "the employee side's media back at ivanov", &main.changed, func() bool {
		r := main.remotesOf(SideB)
		return len(r) == 2 && r[1] == o.phones["101"].rtpAddr()
	})
}

// Cancelling brings the employee back: petrov is hung up, ivanov's phone is
// re-INVITEd to the call's port and the media follows, the consultation
// session and the hold tone end, and the call is still ivanov's. Another
// transfer is refused while the consultation lasts; a second cancel finds
// none.
func TestConsultationCancelBringsTheEmployeeBack(t *testing.T) {
	o := newOffice(t)
	ctx := testCtx(t)
	p := o.inbound(ctx)
	main := o.session(p.id)
	petrovSide, y := o.consulting(ctx, p)

	if _, _, err := o.b.Transfer(p.id, "103", "blind"); !errors.Is(err, ErrTransferState) {
		t.Fatalf("a transfer during the consultation: %v", err)
	}
	if _, _, err := o.b.ConsultTransfer(p.id, "103"); !errors.Is(err, ErrTransferState) {
		t.Fatalf("a second consultation: %v", err)
	}
	if err := o.b.FinishConsultation(p.id, "cancel"); err != nil {
		t.Fatal(err)
	}
	released(t, "petrov", petrovSide)
	o.ivanovBack(main)
	o.over(main, y)
	if err := o.b.FinishConsultation(p.id, "cancel"); !errors.Is(err, ErrNoConsultation) {
		t.Fatalf("a cancel without a consultation: %v", err)
	}
	if closed(p.ivanov.Done()) || closed(p.outside.Done()) || slices.Contains(o.kinds(p.id), EventTransferred) {
		t.Fatalf("after the cancel: ivanov gone %v, outside gone %v, events %v", closed(p.ivanov.Done()), closed(p.outside.Done()), o.kinds(p.id))
	}
	o.outsideHangsUp(ctx, p, ivanov, p.ivanov)
}

// Completing hands the outside party to the target, for an inbound and an
// outbound call: petrov is re-INVITEd onto the call's port and the media
// follows, ivanov is released, the event says attended from ivanov to
// petrov, and the call ends as the outside party's.
func TestConsultationCompleteHandsTheCallerToTheTarget(t *testing.T) {
	for _, dir := range []Direction{Inbound, Outbound} {
		t.Run(string(dir), func(t *testing.T) {
			o := newOffice(t)
			ctx := testCtx(t)
			p := o.talking(ctx, dir)
			main := o.session(p.id)
			petrovSide, y := o.consulting(ctx, p)

			if err := o.b.FinishConsultation(p.id, "complete"); err != nil {
				t.Fatal(err)
			}
			o.phones["103"].await(t, "the re-INVITE onto the call", reinviteTo(main.Port(SideB)))
			released(t, "ivanov", p.ivanov)
			pointed(t, main, SideB, o.phones["103"].rtpAddr())
			o.transferred(p.id, "attended", petrov)
			o.over(main, y)
			if err := o.b.FinishConsultation(p.id, "complete"); !errors.Is(err, ErrNoConsultation) {
				t.Fatalf("a complete without a consultation: %v", err)
			}
			if o.b.Busy("101") || !o.b.Busy("103") {
				t.Fatalf("busy: 101 %v, 103 %v; want petrov only", o.b.Busy("101"), o.b.Busy("103"))
			}
			o.outsideHangsUp(ctx, p, petrov, petrovSide)
		})
	}
}

// The employee hanging up during the consultation completes it (desk
// phones' transfer on hang-up).
func TestConsultationCompletesWhenTheEmployeeHangsUp(t *testing.T) {
	o := newOffice(t)
	ctx := testCtx(t)
	p := o.inbound(ctx)
	main := o.session(p.id)
	petrovSide, y := o.consulting(ctx, p)

	if err := p.ivanov.Hangup(ctx); err != nil {
		t.Fatalf("ivanov's BYE: %v", err)
	}
	o.phones["103"].await(t, "the re-INVITE onto the call", reinviteTo(main.Port(SideB)))
	pointed(t, main, SideB, o.phones["103"].rtpAddr())
	o.transferred(p.id, "attended", petrov)
	o.over(main, y)
	o.outsideHangsUp(ctx, p, petrov, petrovSide)
}

// The target hanging up during the consultation cancels it: ivanov is
// brought back to the outside party.
func TestConsultationCancelledWhenTheTargetHangsUp(t *testing.T) {
	o := newOffice(t)
	ctx := testCtx(t)
	p := o.inbound(ctx)
	main := o.session(p.id)
	petrovSide, y := o.consulting(ctx, p)

	if err := petrovSide.Hangup(ctx); err != nil {
		t.Fatalf("petrov's BYE: %v", err)
	}
	o.ivanovBack(main)
	o.over(main, y)
	if closed(p.ivanov.Done()) || closed(p.outside.Done()) || slices.Contains(o.kinds(p.id), EventTransferred) {
		t.Fatalf("after petrov left: ivanov gone %v, outside gone %v, events %v", closed(p.ivanov.Done()), closed(p.outside.Done()), o.kinds(p.id))
	}
	o.outsideHangsUp(ctx, p, ivanov, p.ivanov)
}

// A target that refuses the consultation: the API reports the refusal and
// ivanov is brought back.
func TestConsultationTargetRefuses(t *testing.T) {
	o := newOffice(t)
	ctx := testCtx(t)
	p := o.inbound(ctx)
	main := o.session(p.id)
	done, y := o.startConsultation(p)
	if err := o.phones["103"].ring(t).Reject(sip.StatusBusyHere, "Busy Here"); err != nil {
		t.Fatal(err)
	}
	if r := wait(t, done, "the consultation's answer"); r.code != sip.StatusBusyHere || r.err != nil {
		t.Fatalf("ConsultTransfer to a refusing target: %+v", r)
	}
	o.ivanovBack(main)
	o.over(main, y)
	if _, _, err := o.b.ConsultTransfer("no-such-call", "103"); !errors.Is(err, ErrNoCall) {
		t.Fatalf("a consultation on an unknown call: %v", err)
	}
	o.outsideHangsUp(ctx, p, ivanov, p.ivanov)
}

// The outside party hanging up during the consultation ends the call:
// ivanov and petrov are hung up, and nothing of the call or its
// consultation is left.
func TestConsultationEndsWhenTheOutsidePartyHangsUp(t *testing.T) {
	o := newOffice(t)
	ctx := testCtx(t)
	p := o.inbound(ctx)
	main := o.session(p.id)
	petrovSide, y := o.consulting(ctx, p)

	if err := p.outside.Hangup(ctx); err != nil {
		t.Fatal(err)
	}
	ev := o.awaitEvent("the call ended", eventOf(EventEnded, p.id))
	if ev.Result != ResultAnswered || ev.HangupBy != "outside" || ev.Answered != ivanov {
		t.Fatalf("ended event %+v", ev)
	}
	released(t, "ivanov", p.ivanov)
	released(t, "petrov", petrovSide)
	// The consultation is let go after the call's end, its session last.
	o.over(main, y)
	o.idle()
}
