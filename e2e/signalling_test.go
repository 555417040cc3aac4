package e2e

import (
	"errors"
	"testing"
	"time"

	"callgate/media/g711"
	"callgate/media/rtptest"
	"callgate/sip/siptest"

	"github.com/emiago/sipgo"
)

func TestOutboundNumberSpellingsReachVPBXAsOne(t *testing.T) {
	o := newOffice(t, officeOpts{})
	phone := o.phones["101"]
	for _, dialled := range []string{"89161234567", "+79161234567", "79161234567"} {
		ctx := withTimeout(t, 10*time.Second)
		got := make(chan string, 1)
		go func() {
			c := <-o.vpbx.Calls
			got <- c.Request.Recipient.User
			c.Reject(486, "Busy Here")
		}()
		_, err := phone.Dial(ctx, dialled, siptest.SDP("127.0.0.1:30900"))
		var de *sipgo.ErrDialogResponse
		if !errors.As(err, &de) || de.Res.StatusCode != 486 {
			t.Fatalf("dial %s: %v, want 486 passed back from the VPBX", dialled, err)
		}
		select {
		case n := <-got:
			if n != "79161234567" {
				t.Fatalf("dialled %q reached the VPBX as %q", dialled, n)
			}
		case <-ctx.Done():
			t.Fatal("no INVITE at the VPBX")
		}
		rec := o.lastCall()
		if rec.Direction != "outbound" || rec.Result != "busy" || rec.Outside != "+79161234567" || rec.Account != "sales1" {
			t.Fatalf("record %+v", rec)
		}
	}
}

func TestUnauthenticatedInviteNeverReachesVPBX(t *testing.T) {
	o := newOffice(t, officeOpts{})
	intruder := newPhone(t, o.d, siptest.PhoneConfig{User: "101", Password: "wrong-password"})
	ctx := withTimeout(t, 10*time.Second)
	_, err := intruder.Dial(ctx, "79161234567", siptest.SDP("127.0.0.1:30902"))
	var de *sipgo.ErrDialogResponse
	if !errors.As(err, &de) || de.Res.StatusCode != 403 {
		t.Fatalf("dial with a wrong password: %v", err)
	}
	select {
	case <-o.vpbx.Calls:
		t.Fatal("an unauthenticated call reached the VPBX")
	case <-time.After(300 * time.Millisecond):
	}
}

func TestInboundFailures(t *testing.T) {
	o := newOffice(t, officeOpts{}) // ring_timeout = 3s
	invite := func() chan error {
		ch := make(chan error, 1)
		go func() {
			_, err := o.vpbx.Invite(withTimeout(t, 15*time.Second), "sales1", "79161234567", siptest.SDP("127.0.0.1:30904"))
			ch <- err
		}()
		return ch
	}
	status := func(err error) int {
		var de *sipgo.ErrDialogResponse
		if errors.As(err, &de) {
			return de.Res.StatusCode
		}
		return 0
	}
	// Both lines busy.
	res := invite()
	nextCall(t, o.phones["101"]).Reject(486, "Busy Here")
	nextCall(t, o.phones["102"]).Reject(486, "Busy Here")
	if code := status(<-res); code != 486 {
		t.Fatalf("busy: VPBX got %d", code)
	}
	if rec := o.lastCall(); rec.Result != "busy" {
		t.Fatalf("busy record %+v", rec)
	}
	// One rejects (decline), the other does not answer: ring timeout -> 480.
	res = invite()
	nextCall(t, o.phones["101"]).Reject(603, "Decline")
	silent := nextCall(t, o.phones["102"])
	silent.Ringing()
	start := time.Now()
	if code := status(<-res); code != 480 {
		t.Fatalf("no answer: VPBX got %d", code)
	}
	if waited := time.Since(start); waited < 2500*time.Millisecond || waited > 5*time.Second {
		t.Fatalf("480 after %s, want the 3 s ring timeout", waited)
	}
	select {
	case <-silent.Gone():
	case <-time.After(3 * time.Second):
		t.Fatal("ringing line not cancelled at the timeout")
	}
	if rec := o.lastCall(); rec.Result != "no-answer" {
		t.Fatalf("no-answer record %+v", rec)
	}
	// The caller gives up while the phones ring.
	ctx, cancel := withCancel()
	ch := make(chan error, 1)
	go func() {
		_, err := o.vpbx.Invite(ctx, "sales1", "79161234567", siptest.SDP("127.0.0.1:30904"))
		ch <- err
	}()
	l1, l2 := nextCall(t, o.phones["101"]), nextCall(t, o.phones["102"])
	l1.Ringing()
	cancel() // the VPBX sends CANCEL
	<-ch
	for _, l := range []*siptest.IncomingCall{l1, l2} {
		select {
		case <-l.Gone():
		case <-time.After(5 * time.Second):
			t.Fatal("a line kept ringing after the caller hung up")
		}
	}
	if rec := o.lastCall(); rec.Result != "abandoned" || rec.HangupBy != "outside" {
		t.Fatalf("abandoned record %+v", rec)
	}
	// Nobody registered: unregister everyone, the VPBX gets 480 at once.
	for _, ext := range []string{"101", "102"} {
		o.phones[ext].UnregisterAll(withTimeout(t, 5*time.Second))
	}
	if code := status(<-invite()); code != 480 {
		t.Fatalf("nobody registered: VPBX got %d", code)
	}
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

func TestDiskGuardSkipsRecordingCallConnects(t *testing.T) {
	o := newOffice(t, officeOpts{MinFree: "1000000TB"}) // more free space than any disk has
	outside, _ := rtptest.NewPeer(440, g711.PCMA)
	defer outside.Close()
	ctx := withTimeout(t, 15*time.Second)
	call, _, _ := o.inbound(ctx, outside.Addr().String(), "127.0.0.1:30950") // connects with the guard tripped
	o.d.waitMetric("callgate_recording_skipped_total", 1, 5*time.Second)
	call.Hangup(ctx)
	rec := o.lastCall()
	if rec.Result != "answered" || len(rec.Legs) != 1 || rec.Legs[0].Recording != "" {
		t.Fatalf("record %+v", rec)
	}
}

func TestRejectionsPassThrough(t *testing.T) {
	o := newOffice(t, officeOpts{})
	ctx := withTimeout(t, 15*time.Second)
	// The outside party declines an outbound call: the phone sees 603.
	go func() { (<-o.vpbx.Calls).Reject(603, "Decline") }()
	_, err := o.phones["103"].Dial(ctx, "79161234567", siptest.SDP("127.0.0.1:30990"))
	var de *sipgo.ErrDialogResponse
	if !errors.As(err, &de) || de.Res.StatusCode != 603 {
		t.Fatalf("outbound decline: %v", err)
	}
	if rec := o.lastCall(); rec.Result != "busy" || rec.HangupBy != "outside" {
		t.Fatalf("record %+v", rec)
	}
	// The employee declines on both lines: the VPBX sees 603.
	done := make(chan error, 1)
	go func() {
		_, err := o.vpbx.Invite(ctx, "sales1", "79161234567", siptest.SDP("127.0.0.1:30992"))
		done <- err
	}()
	nextCall(t, o.phones["101"]).Reject(603, "Decline")
	nextCall(t, o.phones["102"]).Reject(603, "Decline")
	if err := <-done; !errors.As(err, &de) || de.Res.StatusCode != 603 {
		t.Fatalf("inbound decline: %v", err)
	}
}

func TestPhoneCancelsOutboundWhileVPBXRings(t *testing.T) {
	o := newOffice(t, officeOpts{})
	ctx, cancel := withCancel()
	defer cancel()
	dialDone := make(chan error, 1)
	go func() {
		_, err := o.phones["103"].Dial(ctx, "79161234567", siptest.SDP("127.0.0.1:30994"))
		dialDone <- err
	}()
	var in *siptest.IncomingCall
	select {
	case in = <-o.vpbx.Calls:
	case <-time.After(5 * time.Second):
		t.Fatal("no INVITE at the VPBX")
	}
	in.Ringing()
	cancel() // the employee hangs up before the outside party answers
	select {
	case <-in.Gone():
	case <-time.After(5 * time.Second):
		t.Fatal("the VPBX leg was not cancelled")
	}
	<-dialDone
	if rec := o.lastCall(); rec.Result != "abandoned" || rec.HangupBy != "employee" || rec.Direction != "outbound" {
		t.Fatalf("record %+v", rec)
	}
}

func TestCrossingByes(t *testing.T) {
	o := newOffice(t, officeOpts{})
	ctx := withTimeout(t, 15*time.Second)
	vpbxSide, phoneSide, _ := o.inbound(ctx, "127.0.0.1:30996", "127.0.0.1:30998")
	// Both hang up at once; whichever BYE loses gets 481 or 200, nothing hangs.
	errs := make(chan error, 2)
	start := time.Now()
	go func() { errs <- vpbxSide.Hangup(ctx) }()
	go func() { errs <- phoneSide.Hangup(ctx) }()
	<-errs
	<-errs
	if took := time.Since(start); took > 3*time.Second {
		t.Fatalf("crossing BYEs took %s: a BYE went unanswered", took)
	}
	rec := o.lastCall()
	if rec.Result != "answered" || (rec.HangupBy != "outside" && rec.HangupBy != "employee") {
		t.Fatalf("record %+v", rec)
	}
	o.d.waitMetric("callgate_calls_active", 0, 5*time.Second)
}
