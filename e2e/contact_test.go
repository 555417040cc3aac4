package e2e

import (
	"fmt"
	"testing"
	"time"

	"callgate/sip/siptest"

	"github.com/emiago/sipgo/sip"
)

// A dialog set up over TCP names callgate's TCP listener with
// ;transport=tcp in callgate's Contact (RFC 3261 §8.1.1.8), so a phone that
// only speaks TCP sends its ACK, re-INVITE and BYE where callgate listens;
// a UDP dialog's Contact stays without the parameter.
func TestContactNamesTheDialogTransport(t *testing.T) {
	o := newOffice(t, officeOpts{})
	ctx := withTimeout(t, 30*time.Second)
	tcp := newPhone(t, o.d, siptest.PhoneConfig{User: "102", Password: "Phone101pass", Transport: "tcp"})
	mustRegister(t, tcp)
	wantTCP := fmt.Sprintf("127.0.0.1:%d", o.d.cfg.SIPPort)
	checkTCP := func(what string, c *sip.ContactHeader) {
		t.Helper()
		if c == nil {
			t.Fatalf("%s: no Contact", what)
		}
		tr, _ := c.Address.UriParams.Get("transport")
		if tr != "tcp" || c.Address.HostPort() != wantTCP {
			t.Fatalf("%s: Contact %s, want callgate's TCP listener %s with transport=tcp", what, c.Value(), wantTCP)
		}
	}

	// Inbound: the INVITE to the TCP line names TCP, the one to the UDP line does not.
	vpbxDone := make(chan *siptest.Call, 1)
	go func() {
		if c, err := o.vpbx.Invite(ctx, "sales1", "79161234567", siptest.SDP("127.0.0.1:30951")); err == nil {
			vpbxDone <- c
		}
	}()
	inTCP, inUDP := nextCall(t, tcp), nextCall(t, o.phones["101"])
	checkTCP("INVITE to the TCP phone", inTCP.Request.Contact())
	if c := inUDP.Request.Contact(); c == nil || c.Address.UriParams.Has("transport") {
		t.Fatalf("INVITE to the UDP phone: Contact %v", c)
	}
	phoneSide, err := inTCP.Answer(ctx, siptest.SDP("127.0.0.1:30952"))
	if err != nil {
		t.Fatal(err)
	}
	<-inUDP.Gone()
	vpbxSide := <-vpbxDone
	if err := phoneSide.Hangup(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case <-vpbxSide.Done():
	case <-ctx.Done():
		t.Fatal("the outside party was not hung up after the TCP phone's BYE")
	}
	if rec := o.lastCall(); rec.Result != "answered" || rec.HangupBy != "employee" {
		t.Fatalf("record %+v", rec)
	}

	// Outbound: callgate's 200 to the TCP phone names TCP.
	go func() {
		select {
		case in := <-o.vpbx.Calls:
			_, _ = in.Answer(ctx, siptest.SDP("127.0.0.1:30953"))
		case <-ctx.Done():
		}
	}()
	out, err := tcp.Dial(ctx, "+74951112233", siptest.SDP("127.0.0.1:30954"))
	if err != nil {
		t.Fatal(err)
	}
	checkTCP("200 to the TCP phone's INVITE", out.RemoteContact())
	if err := out.Hangup(ctx); err != nil {
		t.Fatal(err)
	}
}
