package e2e

import (
	"errors"
	"testing"
	"time"

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
