package e2e

import (
	"testing"
	"time"

	"callgate/sip/siptest"
)

func TestEarlyMediaReachesThePhoneBeforeAnswer(t *testing.T) {
	o := newOffice(t, officeOpts{})
	outside, employee := tonePeers(t)
	ctx := withTimeout(t, 15*time.Second)
	dialled := make(chan *siptest.Call, 1)
	go func() {
		c, err := o.phones["103"].Dial(ctx, "84951234567", siptest.SDP(employee.Addr().String()))
		if err == nil {
			dialled <- c
		}
	}()
	var in *siptest.IncomingCall
	select {
	case in = <-o.vpbx.Calls:
	case <-ctx.Done():
		t.Fatal("no INVITE at the VPBX")
	}
	if err := in.Progress(siptest.SDP(outside.Addr().String())); err != nil {
		t.Fatal(err)
	}
	toRelay, _ := siptest.MediaAddr(in.Request.Body())
	outside.SendTo(toRelay)
	o.d.waitFor("ringback heard before the answer", 5*time.Second, func() bool { return hears(employee, 440) })
	select {
	case <-dialled:
		t.Fatal("the phone's call was answered before the VPBX answered")
	default:
	}
	vpbxCall, err := in.Answer(ctx, siptest.SDP(outside.Addr().String()))
	if err != nil {
		t.Fatal(err)
	}
	phoneCall := <-dialled
	phoneCall.Hangup(ctx)
	<-vpbxCall.Done()
}

func TestHoldUnholdDTMFAndLatching(t *testing.T) {
	o := newOffice(t, officeOpts{})
	outside, employee := tonePeers(t)
	ctx := withTimeout(t, 20*time.Second)
	// The employee's phone dials out and advertises a private address it
	// cannot be reached at: the relay must latch to where its RTP comes from.
	answered := make(chan *siptest.Call, 1)
	go func() {
		c := <-o.vpbx.Calls
		call, err := c.Answer(ctx, siptest.SDP(outside.Addr().String()))
		if err == nil {
			answered <- call
		}
		toRelay, _ := siptest.MediaAddr(c.Request.Body())
		outside.SendTo(toRelay)
	}()
	out, err := o.phones["103"].Dial(ctx, "+74951112233", siptest.SDP("10.99.99.99:40000"))
	if err != nil {
		t.Fatal(err)
	}
	vpbxSide := <-answered
	toRelay, _ := siptest.MediaAddr(out.Remote)
	employee.SendTo(toRelay)
	o.d.waitFor("audio both ways with a private SDP address", 5*time.Second, func() bool { return hears(outside, 1000) && hears(employee, 440) })
	// Hold from the phone, then unhold: audio flows afterwards.
	if code, _, err := out.ReInvite(ctx, siptest.HoldSDP("10.99.99.99:40000")); err != nil || code != 200 {
		t.Fatalf("hold: %d %v", code, err)
	}
	if code, _, err := out.ReInvite(ctx, siptest.SDP("10.99.99.99:40000")); err != nil || code != 200 {
		t.Fatalf("unhold: %d %v", code, err)
	}
	sent := employee.Sent()
	o.d.waitFor("audio after unhold", 5*time.Second, func() bool { return employee.Sent() > sent+10 && hears(outside, 1000) && hears(employee, 440) })
	// DTMF both ways as RFC 4733 events.
	employee.DTMF(5)
	outside.DTMF(9)
	o.d.waitFor("DTMF through the relay", 5*time.Second, func() bool {
		return len(outside.Events()) == 1 && outside.Events()[0] == 5 && len(employee.Events()) == 1 && employee.Events()[0] == 9
	})
	if err := vpbxSide.Hangup(ctx); err != nil {
		t.Fatal(err)
	}
	if rec := o.lastCall(); rec.Result != "answered" || rec.HangupBy != "outside" || rec.Direction != "outbound" || rec.Caller != "103" || rec.Outside != "+74951112233" {
		t.Fatalf("record %+v", rec)
	}
}

func TestMediaTimeoutHangsUpBothSides(t *testing.T) {
	o := newOffice(t, officeOpts{MediaTimeout: "2s"})
	ctx := withTimeout(t, 15*time.Second)
	vpbxSide, phoneSide, _ := o.inbound(ctx, "127.0.0.1:30970", "127.0.0.1:30972")
	start := time.Now()
	// Nobody sends RTP: both legs get BYE from callgate.
	for _, c := range []*siptest.Call{phoneSide, vpbxSide} {
		select {
		case <-c.Done():
		case <-ctx.Done():
			t.Fatal("no BYE after the media timeout")
		}
	}
	if waited := time.Since(start); waited < 1500*time.Millisecond {
		t.Fatalf("hung up after %s, before the 2 s media timeout", waited)
	}
	rec := o.lastCall()
	if rec.HangupBy != "timeout" || rec.Reason != "media timeout" || rec.Result != "answered" {
		t.Fatalf("record %+v", rec)
	}
}
