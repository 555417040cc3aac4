package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"callgate/gateway/calls"
	"callgate/media/g711"
	"callgate/media/rtptest"
	"callgate/sip/siptest"

	"github.com/emiago/sipgo/sip"
)

// dialogMismatch is the metric of in-dialog requests refused with 481.
const dialogMismatch = "callgate_sip_dialog_mismatch_total"

// With(r, ...) helpers: variants of a raw in-dialog request.
func withTags(r siptest.RawRequest, from, to string) siptest.RawRequest {
	r.FromTag, r.ToTag = from, to
	return r
}

func withMethod(r siptest.RawRequest, method string, headers ...string) siptest.RawRequest {
	r.Method, r.Headers = method, headers
	return r
}

// callInProgress is the record of the newest call if it has not ended.
func (o *office) callInProgress() (calls.Record, bool) {
	o.t.Helper()
	var list struct{ Calls []calls.Record }
	res, err := o.d.get("/api/v1/calls?limit=1", true)
	if err != nil {
		o.t.Fatal(err)
	}
	defer res.Body.Close()
	if err := json.NewDecoder(res.Body).Decode(&list); err != nil || len(list.Calls) != 1 {
		o.t.Fatalf("call history: %v %+v", err, list.Calls)
	}
	return list.Calls[0], list.Calls[0].Ended.IsZero()
}

// Requests with the call's Call-ID but wrong tags, or the right tags from
// another address or port, get 481 and are counted; the call carries both
// tones on and its record stays open; the phone's own BYE then ends it.
func TestForgedInDialogRequestsGet481(t *testing.T) {
	o := newOffice(t, officeOpts{})
	outside, ivanov := tonePeers(t)
	ctx := withTimeout(t, 60*time.Second)
	vpbxSide, ivanovSide, _ := o.talking(ctx, outside, ivanov)
	server := o.d.sipAddr()

	phone := ivanovSide.Raw("BYE", server) // as phone 101 would send it
	upstream := vpbxSide.Raw("BYE", server)
	sdp := siptest.SDP("127.0.0.1:30950")
	reinvite := withMethod(phone, "INVITE", "Content-Type: application/sdp")
	reinvite.Body = sdp
	referOut := withMethod(phone, "REFER", "Refer-To: <sip:+88212345678@vpbx.test>")
	referExt := withMethod(phone, "REFER", "Refer-To: <sip:103@vpbx.test>")
	forged := []struct {
		name, from string
		req        siptest.RawRequest
	}{
		{"BYE with a wrong To-tag", "127.0.0.1:0", withTags(phone, phone.FromTag, "f0rged")},
		{"BYE with a wrong From-tag", "127.0.0.1:0", withTags(phone, "f0rged", phone.ToTag)},
		{"BYE without tags", "127.0.0.1:0", withTags(phone, "", "")},
		{"BYE with the right tags from another port", "127.0.0.1:0", phone},
		{"BYE with the right tags from another address", "127.0.0.2:0", phone},
		{"BYE on the VPBX leg from an untrusted address", "127.0.0.2:0", upstream},
		{"re-INVITE with wrong tags", "127.0.0.1:0", withTags(reinvite, "a1", "b2")},
		{"re-INVITE with the right tags from another address", "127.0.0.2:0", reinvite},
		{"INFO with a wrong To-tag", "127.0.0.1:0", withTags(withMethod(phone, "INFO"), phone.FromTag, "x")},
		{"REFER to an outside number with wrong tags", "127.0.0.1:0", withTags(referOut, "a1", phone.ToTag)},
		{"REFER to an outside number with the right tags from another address", "127.0.0.2:0", referOut},
		{"REFER to an extension with the right tags from another port", "127.0.0.1:0", referExt},
	}
	for _, f := range forged {
		code, err := siptest.SendUDP(f.from, server, f.req, 3*time.Second)
		if err != nil || code != 481 {
			t.Fatalf("%s: answered %d (%v), want 481", f.name, code, err)
		}
	}
	o.d.waitMetric(dialogMismatch, float64(len(forged)), 5*time.Second)

	// Nothing was dialled, nobody was hung up, the call carries both tones.
	select {
	case in := <-o.vpbx.Calls:
		t.Fatalf("a forged REFER was dialled: %s", in.Request.Recipient.User)
	case in := <-o.phones["103"].Calls:
		t.Fatalf("a forged REFER rang 103 (from %s)", in.From())
	case <-vpbxSide.Done():
		t.Fatal("the outside party was hung up")
	case <-ivanovSide.Done():
		t.Fatal("the employee was hung up")
	case <-time.After(500 * time.Millisecond):
	}
	if !hears(outside, 1000) || !hears(ivanov, 440) {
		t.Fatal("the call no longer carries both tones")
	}
	if rec, open := o.callInProgress(); !open || rec.HangupBy != "" {
		t.Fatalf("the record was ended: %+v", rec)
	}
	if o.d.metric("callgate_calls_active") != 1 {
		t.Fatal("calls_active is not 1")
	}

	// The phone's own BYE ends the call.
	if err := ivanovSide.Hangup(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case <-vpbxSide.Done():
	case <-ctx.Done():
		t.Fatal("the outside party was not hung up")
	}
	if rec := o.lastCall(); rec.HangupBy != "employee" || rec.Result != "answered" {
		t.Fatalf("record %+v", rec)
	}
	if n := o.d.metric(dialogMismatch); n != float64(len(forged)) {
		t.Fatalf("%s = %v after the legitimate BYE", dialogMismatch, n)
	}
}

// transferred runs a blind transfer by REFER from the employee's dialog to
// 103 (petrov, 1500 Hz), answered, until the final NOTIFY reaches 101.
func (o *office) transferred(ctx context.Context, employee *siptest.Call, petrov *rtptest.Peer) *siptest.Call {
	o.t.Helper()
	if code, err := employee.Refer(ctx, "sip:103@vpbx.test", ""); err != nil || code != 202 {
		o.t.Fatalf("REFER: %d %v", code, err)
	}
	target := nextCall(o.t, o.phones["103"])
	petrovSide, err := target.Answer(ctx, siptest.SDP(petrov.Addr().String()))
	if err != nil {
		o.t.Fatal(err)
	}
	toB, _ := siptest.MediaAddr(target.Request.Body())
	petrov.SendTo(toB)
	sipfrags(o.t, o.phones["101"], "SIP/2.0 200", 5*time.Second)
	return petrovSide
}

// A transferor that hangs up as its blind transfer completes (its BYE
// crossing callgate's, RFC 5589 §6) gets 200 for a dialog callgate has
// released, uncounted; the outside party and the target stay connected,
// and the record is not closed as hung up by the employee.
func TestTransferorByeAfterBlindTransferGets200(t *testing.T) {
	for _, dir := range []string{"inbound", "outbound"} {
		t.Run(dir, func(t *testing.T) {
			o := newOffice(t, officeOpts{})
			outside, ivanov := tonePeers(t)
			petrov, err := rtptest.NewPeer(1500, g711.PCMA)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(petrov.Close)
			ctx := withTimeout(t, 60*time.Second)

			var vpbxSide, ivanovSide *siptest.Call
			if dir == "inbound" {
				vpbxSide, ivanovSide, _ = o.talking(ctx, outside, ivanov)
			} else {
				vpbxSide, ivanovSide = o.outboundTalking(ctx, outside, ivanov)
			}
			bye := ivanovSide.Raw("BYE", o.d.sipAddr())
			petrovSide := o.transferred(ctx, ivanovSide, petrov)

			// The transferor's own BYE, right after the final NOTIFY.
			res, err := o.phones["101"].Send(ctx, bye)
			if err != nil || res.StatusCode != 200 {
				t.Fatalf("the transferor's BYE: %v %v", res, err)
			}
			select {
			case <-ivanovSide.Done():
			case <-ctx.Done():
				t.Fatal("the transferor was not released")
			}
			// Again once callgate's own BYE has surely been answered.
			time.Sleep(300 * time.Millisecond)
			bye.CSeq++
			if res, err := o.phones["101"].Send(ctx, bye); err != nil || res.StatusCode != 200 {
				t.Fatalf("the transferor's late BYE: %v %v", res, err)
			}
			o.d.waitFor("outside and petrov talk", 5*time.Second, func() bool { return hears(outside, 1500) && hears(petrov, 440) })
			select {
			case <-vpbxSide.Done():
				t.Fatal("the outside party was hung up")
			case <-petrovSide.Done():
				t.Fatal("the transfer target was hung up")
			default:
			}
			if rec, open := o.callInProgress(); !open || rec.HangupBy == "employee" {
				t.Fatalf("the record was ended: %+v", rec)
			}
			if n := o.d.metric(dialogMismatch); n != 0 {
				t.Fatalf("%s = %v", dialogMismatch, n)
			}
			if err := vpbxSide.Hangup(ctx); err != nil {
				t.Fatal(err)
			}
			select {
			case <-petrovSide.Done():
			case <-ctx.Done():
				t.Fatal("petrov was not hung up at the end")
			}
			if rec := o.lastCall(); rec.HangupBy != "outside" || len(rec.Transfers) != 1 || rec.Transfers[0].To != "petrov" {
				t.Fatalf("record %+v", rec)
			}
		})
	}
}

// outboundTalking has 101 (ivanov, 1000 Hz) call an outside number that the
// VPBX answers (440 Hz) and returns both ends once they hear each other.
func (o *office) outboundTalking(ctx context.Context, outside, ivanov *rtptest.Peer) (vpbxSide, ivanovSide *siptest.Call) {
	o.t.Helper()
	answered := make(chan *siptest.Call, 1)
	go func() {
		select {
		case in := <-o.vpbx.Calls:
			c, err := in.Answer(ctx, siptest.SDP(outside.Addr().String()))
			if err == nil {
				toRelay, _ := siptest.MediaAddr(in.Request.Body())
				outside.SendTo(toRelay)
				answered <- c
			}
		case <-ctx.Done():
		}
	}()
	ivanovSide, err := o.phones["101"].Dial(ctx, "+74951112233", siptest.SDP(ivanov.Addr().String()))
	if err != nil {
		o.t.Fatal(err)
	}
	select {
	case vpbxSide = <-answered:
	case <-ctx.Done():
		o.t.Fatal("the VPBX did not answer")
	}
	toRelay, _ := siptest.MediaAddr(ivanovSide.Remote)
	ivanov.SendTo(toRelay)
	o.d.waitFor("outside and ivanov talk", 5*time.Second, func() bool { return hears(outside, 1000) && hears(ivanov, 440) })
	return vpbxSide, ivanovSide
}

// A phone on TCP: a BYE with the right tags over another connection (so
// from another port) gets 481; the phone's own, over its connection, ends
// the call.
func TestForgedByeOverTCPGets481(t *testing.T) {
	o := newOffice(t, officeOpts{})
	outside, ivanov := tonePeers(t)
	ctx := withTimeout(t, 30*time.Second)
	tcp := newPhone(t, o.d, siptest.PhoneConfig{User: "102", Password: "Phone101pass", Transport: "tcp"})
	mustRegister(t, tcp)
	answered := make(chan *siptest.Call, 1)
	go func() {
		select {
		case in := <-o.vpbx.Calls:
			if c, err := in.Answer(ctx, siptest.SDP(outside.Addr().String())); err == nil {
				toRelay, _ := siptest.MediaAddr(in.Request.Body())
				outside.SendTo(toRelay)
				answered <- c
			}
		case <-ctx.Done():
		}
	}()
	phoneSide, err := tcp.Dial(ctx, "+74951112233", siptest.SDP(ivanov.Addr().String()))
	if err != nil {
		t.Fatal(err)
	}
	vpbxSide := <-answered
	toRelay, _ := siptest.MediaAddr(phoneSide.Remote)
	ivanov.SendTo(toRelay)
	o.d.waitFor("outside and ivanov talk", 5*time.Second, func() bool { return hears(outside, 1000) && hears(ivanov, 440) })

	bye := phoneSide.Raw("BYE", o.d.sipAddr()+";transport=tcp")
	if code, err := siptest.SendTCP(o.d.sipAddr(), bye, 3*time.Second); err != nil || code != 481 {
		t.Fatalf("BYE over another TCP connection: %d %v", code, err)
	}
	if code, err := siptest.SendUDP("127.0.0.1:0", o.d.sipAddr(), bye, 3*time.Second); err != nil || code != 481 {
		t.Fatalf("BYE over UDP for a TCP phone's dialog: %d %v", code, err)
	}
	o.d.waitMetric(dialogMismatch, 2, 5*time.Second)
	if !hears(outside, 1000) || !hears(ivanov, 440) {
		t.Fatal("the call no longer carries both tones")
	}
	if err := phoneSide.Hangup(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case <-vpbxSide.Done():
	case <-ctx.Done():
		t.Fatal("the outside party was not hung up")
	}
	if rec := o.lastCall(); rec.HangupBy != "employee" || rec.Caller != "102" {
		t.Fatalf("record %+v", rec)
	}
}

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
