package e2e

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"callgate/gateway/calls"
	"callgate/media/g711"
	"callgate/media/record"
	"callgate/media/rtptest"
	"callgate/sip/siptest"
)

// A blind transfer by REFER from the employee's phone: the outside party
// ends up talking to the target, the transferor is released, NOTIFYs report
// progress, and the record has one leg (and recording) per employee.
func TestBlindTransferByRefer(t *testing.T) {
	o := newOffice(t, officeOpts{})
	live := o.d.events(t, testToken, "")
	outside, ivanov := tonePeers(t)
	petrov, err := rtptest.NewPeer(1500, g711.PCMA)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(petrov.Close)
	ctx := withTimeout(t, 30*time.Second)

	vpbxSide, ivanovSide, _ := o.talking(ctx, outside, ivanov)
	time.Sleep(time.Second)

	if code, err := ivanovSide.Refer(ctx, "sip:103@vpbx.test", ""); err != nil || code != 202 {
		t.Fatalf("REFER: %d %v", code, err)
	}
	target := nextCall(t, o.phones["103"])
	if target.From() != "79161234567" {
		t.Fatalf("target shows %q, want the outside number", target.From())
	}
	if _, err := target.Answer(ctx, siptest.SDP(petrov.Addr().String())); err != nil {
		t.Fatal(err)
	}
	toB2, _ := siptest.MediaAddr(target.Request.Body())
	petrov.SendTo(toB2)
	frags := sipfrags(t, o.phones["101"], "SIP/2.0 200", 5*time.Second)
	if frags[0] != "SIP/2.0 100 Trying" {
		t.Fatalf("NOTIFYs %v", frags)
	}
	select {
	case <-ivanovSide.Done():
	case <-ctx.Done():
		t.Fatal("the transferor was not released")
	}
	o.d.waitFor("outside and petrov talk", 5*time.Second, func() bool { return hears(outside, 1500) && hears(petrov, 440) })
	for ev := nextEvent(t, live); ev.Kind != "transferred"; ev = nextEvent(t, live) {
		if ev.Kind == "ended" {
			t.Fatal("no transferred event before the call ended")
		}
	}
	time.Sleep(600 * time.Millisecond)
	if hears(outside, 1000) {
		t.Fatal("the outside party still hears the transferor")
	}
	time.Sleep(time.Second)
	if err := vpbxSide.Hangup(ctx); err != nil {
		t.Fatal(err)
	}
	rec := o.lastCall()
	if rec.Result != "answered" || len(rec.Legs) != 2 || rec.Legs[0].Employee != "ivanov" || rec.Legs[1].Employee != "petrov" ||
		rec.Legs[1].TransferredFrom != "ivanov" || len(rec.Transfers) != 1 || rec.Transfers[0].To != "petrov" || rec.Transfers[0].Mode != "blind" {
		t.Fatalf("record %+v", rec)
	}
	mid := func(ch []float64) []float64 { return ch[len(ch)/4 : 3*len(ch)/4] }
	for i, want := range []float64{1000, 1500} {
		left, right, err := record.Channels(filepath.Join(o.recDir, rec.Legs[i].Recording))
		if err != nil || len(left) < 4000 {
			t.Fatalf("leg %d recording: %v", i+1, err)
		}
		if !rtptest.Has(mid(left), 440) || !rtptest.Has(mid(right), want) {
			t.Fatalf("leg %d recording (%d samples): want 440 Hz left (%v) and %v Hz right (%v; 1000 Hz %v)", i+1, len(left), rtptest.Has(mid(left), 440), want, rtptest.Has(mid(right), want), rtptest.Has(mid(right), 1000))
		}
		if rec.Legs[i].TalkSeconds < 0.8 {
			t.Fatalf("leg %d talk %.2fs", i+1, rec.Legs[i].TalkSeconds)
		}
	}
}

// A target that refuses leaves the outside party with the transferor.
func TestTransferToRejectingPhoneReturnsToTransferor(t *testing.T) {
	o := newOffice(t, officeOpts{})
	outside, ivanov := tonePeers(t)
	ctx := withTimeout(t, 30*time.Second)
	vpbxSide, ivanovSide, _ := o.talking(ctx, outside, ivanov)

	if code, err := ivanovSide.Refer(ctx, "sip:petrov@vpbx.test", ""); err != nil || code != 202 {
		t.Fatalf("REFER: %d %v", code, err)
	}
	nextCall(t, o.phones["103"]).Reject(486, "Busy Here")
	if frags := sipfrags(t, o.phones["101"], "SIP/2.0 486", 5*time.Second); frags[0] != "SIP/2.0 100 Trying" {
		t.Fatalf("NOTIFYs %v", frags)
	}
	time.Sleep(500 * time.Millisecond)
	select {
	case <-ivanovSide.Done():
		t.Fatal("the transferor was released although the transfer failed")
	default:
	}
	if !hears(outside, 1000) || !hears(ivanov, 440) {
		t.Fatal("outside and transferor no longer hear each other")
	}
	// The API moves it instead, to petrov's line that now answers.
	done := make(chan struct {
		code int
		body map[string]any
	}, 1)
	go func() {
		code, body := o.d.post(t, "/api/v1/calls/"+o.activeCallID()+"/transfer", testToken, map[string]string{"to": "103", "mode": "blind"})
		done <- struct {
			code int
			body map[string]any
		}{code, body}
	}()
	petrovCall := nextCall(t, o.phones["103"])
	if _, err := petrovCall.Answer(ctx, siptest.SDP("127.0.0.1:30990")); err != nil {
		t.Fatal(err)
	}
	r := <-done
	if r.code != 200 {
		t.Fatalf("API transfer: %d %v", r.code, r.body)
	}
	select {
	case <-ivanovSide.Done():
	case <-ctx.Done():
		t.Fatal("the transferor was not released after the API transfer")
	}
	if code, body := o.d.post(t, "/api/v1/calls/nope/transfer", testToken, map[string]string{"to": "103"}); code != 404 || apiCode(body) != "call_not_found" {
		t.Fatalf("unknown call: %d %v", code, body)
	}
	_ = vpbxSide.Hangup(ctx)
	rec := o.lastCall()
	if len(rec.Legs) != 2 || rec.Legs[1].Employee != "petrov" || len(rec.Transfers) != 1 {
		t.Fatalf("record %+v", rec)
	}
}

// sipp as ivanov's phone answers an inbound call and transfers it blind by
// REFER to 103; the outside party ends up talking to 103.
func TestBlindTransferFromSippPhone(t *testing.T) {
	blindTransferFromSipp(t, "phone-refer.xml")
}

// The same with a transferor that sends its own BYE as soon as it gets the
// final NOTIFY, as most phones do (RFC 5589 §6): its BYE gets 200 and ends
// only its own leg; the outside party and 103 keep talking.
func TestBlindTransferorHangsUpItself(t *testing.T) {
	rec := blindTransferFromSipp(t, "phone-refer-bye.xml")
	if rec.HangupBy != "outside" {
		t.Fatalf("hangup_by %q, want outside (did the transferor's BYE end the call?)", rec.HangupBy)
	}
}

// blindTransferFromSipp runs a sipp transferor scenario on ivanov's line
// 101 and returns the call's record once the outside party hung up.
func blindTransferFromSipp(t *testing.T, scenario string) calls.Record {
	t.Helper()
	sipp := needTool(t, "sipp")
	o := newOffice(t, officeOpts{})
	dir := t.TempDir()
	port := freePort(t)
	run := func(scenario string, extra ...string) *exec.Cmd {
		sf, _ := filepath.Abs("../testdata/sipp/" + scenario)
		args := append([]string{o.d.sipAddr(), "-sf", sf, "-t", "u1", "-s", "101", "-au", "101", "-ap", "Phone101pass",
			"-i", "127.0.0.1", "-p", strconv.Itoa(port), "-mp", strconv.Itoa(freePort(t)), "-m", "1", "-timeout", "25", "-nostdin",
			"-trace_err", "-trace_msg", "-message_file", filepath.Join(dir, scenario+".msg"), "-error_file", filepath.Join(dir, scenario+".err")}, extra...)
		cmd := exec.Command(sipp, args...)
		cmd.Dir = dir
		return cmd
	}
	if out, err := run("register.xml").CombinedOutput(); err != nil {
		t.Fatalf("sipp register: %v\n%s", err, tail(string(out), 2000))
	}
	// -aa answers callgate's OPTIONS keepalives wherever they come.
	uas := run(scenario, "-key", "target", "103", "-aa")
	var uasOut syncBuffer
	uas.Stdout, uas.Stderr = &uasOut, &uasOut
	if err := uas.Start(); err != nil {
		t.Fatal(err)
	}
	uasDone := make(chan error, 1)
	go func() { uasDone <- uas.Wait() }()
	t.Cleanup(func() { _ = uas.Process.Kill() })
	time.Sleep(300 * time.Millisecond) // sipp listening

	outside, _ := tonePeers(t)
	petrov, err := rtptest.NewPeer(1500, g711.PCMA)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(petrov.Close)
	ctx := withTimeout(t, 30*time.Second)
	callDone := make(chan *siptest.Call, 1)
	go func() {
		c, err := o.vpbx.Invite(ctx, "sales1", "79161234567", siptest.SDP(outside.Addr().String()))
		if err == nil {
			callDone <- c
		}
	}()
	var vpbxSide *siptest.Call
	select {
	case vpbxSide = <-callDone:
	case <-ctx.Done():
		t.Fatalf("sipp did not answer:\n%s", tail(uasOut.String(), 2000))
	}
	toA, _ := siptest.MediaAddr(vpbxSide.Remote)
	outside.SendTo(toA)
	target := nextCall(t, o.phones["103"])
	if _, err := target.Answer(ctx, siptest.SDP(petrov.Addr().String())); err != nil {
		t.Fatal(err)
	}
	toB, _ := siptest.MediaAddr(target.Request.Body())
	petrov.SendTo(toB)
	select {
	case err := <-uasDone:
		if err != nil {
			errs, _ := os.ReadFile(filepath.Join(dir, scenario+".err"))
			msgs, _ := os.ReadFile(filepath.Join(dir, scenario+".msg"))
			t.Fatalf("sipp transferor: %v\n%s\n%s\nmessages:\n%s", err, tail(uasOut.String(), 3000), errs, tail(string(msgs), 4000))
		}
	case <-ctx.Done():
		msgs, _ := os.ReadFile(filepath.Join(dir, scenario+".msg"))
		t.Fatalf("sipp did not finish (202, NOTIFYs, BYE):\n%s\nmessages:\n%s", tail(uasOut.String(), 3000), tail(string(msgs), 8000))
	}
	o.d.waitFor("outside and petrov talk", 5*time.Second, func() bool { return hears(outside, 1500) && hears(petrov, 440) })
	// Still talking a moment later: nothing the transferor sent ended it.
	time.Sleep(500 * time.Millisecond)
	select {
	case <-vpbxSide.Done():
		t.Fatal("the outside party was hung up after the transfer")
	default:
	}
	if !hears(outside, 1500) || !hears(petrov, 440) {
		t.Fatal("outside and petrov no longer hear each other")
	}
	_ = vpbxSide.Hangup(ctx)
	rec := o.lastCall()
	if len(rec.Legs) != 2 || rec.Legs[0].Extension != "101" || rec.Legs[1].Employee != "petrov" || rec.Legs[1].TransferredFrom != "ivanov" {
		t.Fatalf("record %+v", rec)
	}
	return rec
}

// Attended transfer: ivanov holds the outside party, consults petrov on an
// internal call, then REFERs with Replaces naming that call. The outside
// party ends up talking to petrov (taken off hold), ivanov is released from
// both calls, and the record says attended.
func TestAttendedTransferWithReplaces(t *testing.T) {
	o := newOffice(t, officeOpts{})
	outside, ivanov := tonePeers(t)
	petrov, _ := rtptest.NewPeer(1500, g711.PCMA)
	t.Cleanup(petrov.Close)
	ctx := withTimeout(t, 30*time.Second)

	vpbxSide, ivanovSide, _ := o.talking(ctx, outside, ivanov)
	time.Sleep(time.Second)

	// Hold, then consult petrov.
	if code, _, err := ivanovSide.ReInvite(ctx, siptest.HoldSDP(ivanov.Addr().String())); err != nil || code != 200 {
		t.Fatalf("hold: %d %v", code, err)
	}
	consultDone := make(chan *siptest.Call, 1)
	go func() {
		c, err := o.phones["101"].Dial(ctx, "103", siptest.SDP("127.0.0.1:30970"))
		if err == nil {
			consultDone <- c
		}
	}()
	pin := nextCall(t, o.phones["103"])
	petrovSide, err := pin.Answer(ctx, siptest.SDP(petrov.Addr().String()))
	if err != nil {
		t.Fatal(err)
	}
	consult := <-consultDone
	toPetrov, _ := siptest.MediaAddr(pin.Request.Body())
	petrov.SendTo(toPetrov)

	if code, err := ivanovSide.Refer(ctx, "sip:103@vpbx.test", consult.ReplacesID()); err != nil || code != 202 {
		t.Fatalf("REFER with Replaces: %d %v", code, err)
	}
	// petrov's dialog is moved to the outside call's relay port.
	petrov.SendTo(reinviteTo(t, o.phones["103"], 5*time.Second))
	for name, c := range map[string]*siptest.Call{"call": ivanovSide, "consultation": consult} {
		select {
		case <-c.Done():
		case <-ctx.Done():
			t.Fatalf("ivanov's %s was not released", name)
		}
	}
	sipfrags(t, o.phones["101"], "SIP/2.0 200", 5*time.Second)
	o.d.waitFor("outside and petrov talk", 5*time.Second, func() bool { return hears(outside, 1500) && hears(petrov, 440) })
	// The outside party was taken off hold.
	held, resumed := false, false
	for drained := false; !drained; {
		select {
		case r := <-o.vpbx.Requests:
			if r.Method == "INVITE" && r.To().Params.Has("tag") {
				held = held || strings.Contains(string(r.Body()), "a=sendonly")
				resumed = held && strings.Contains(string(r.Body()), "a=sendrecv")
			}
		case <-time.After(300 * time.Millisecond):
			drained = true
		}
	}
	if !held || !resumed {
		t.Fatalf("the outside party: held %v, then resumed %v", held, resumed)
	}
	select {
	case <-petrovSide.Done():
		t.Fatal("petrov was hung up")
	default:
	}
	time.Sleep(time.Second)
	_ = vpbxSide.Hangup(ctx)
	select {
	case <-petrovSide.Done():
	case <-ctx.Done():
		t.Fatal("petrov not hung up at the end")
	}
	var list struct{ Calls []calls.Record }
	res, err := o.d.get("/api/v1/calls?limit=5", true)
	if err != nil {
		t.Fatal(err)
	}
	_ = json.NewDecoder(res.Body).Decode(&list)
	res.Body.Close()
	var outer, inner *calls.Record
	for i := range list.Calls {
		switch list.Calls[i].Direction {
		case "inbound":
			outer = &list.Calls[i]
		case "internal":
			inner = &list.Calls[i]
		}
	}
	if outer == nil || inner == nil {
		t.Fatalf("calls %+v", list.Calls)
	}
	if len(outer.Legs) != 2 || outer.Legs[1].Employee != "petrov" || len(outer.Transfers) != 1 || outer.Transfers[0].Mode != "attended" {
		t.Fatalf("outside call %+v", *outer)
	}
	if inner.HangupBy != "transfer" || inner.Ended.IsZero() {
		t.Fatalf("consultation call %+v", *inner)
	}
}

// A blind transfer to an outside number dials it through the VPBX from the
// transferor's account; the outside caller then talks to that number.
func TestBlindTransferToOutsideNumber(t *testing.T) {
	o := newOffice(t, officeOpts{})
	outside, ivanov := tonePeers(t)
	mobile, _ := rtptest.NewPeer(1500, g711.PCMA)
	t.Cleanup(mobile.Close)
	ctx := withTimeout(t, 30*time.Second)
	vpbxSide, ivanovSide, _ := o.talking(ctx, outside, ivanov)

	if code, err := ivanovSide.Refer(ctx, "sip:8-916-111-22-33@vpbx.test", ""); err != nil || code != 202 {
		t.Fatalf("REFER: %d %v", code, err)
	}
	var fwd *siptest.IncomingCall
	select {
	case fwd = <-o.vpbx.Calls:
	case <-ctx.Done():
		t.Fatal("the number was not dialled")
	}
	if fwd.Request.Recipient.User != "79161112233" || fwd.Request.From().Address.User != "sales1" {
		t.Fatalf("VPBX got %s from %s", fwd.Request.Recipient.User, fwd.Request.From().Address.User)
	}
	if _, err := fwd.Answer(ctx, siptest.SDP(mobile.Addr().String())); err != nil {
		t.Fatal(err)
	}
	toM, _ := siptest.MediaAddr(fwd.Request.Body())
	mobile.SendTo(toM)
	select {
	case <-ivanovSide.Done():
	case <-ctx.Done():
		t.Fatal("the transferor was not released")
	}
	o.d.waitFor("outside and the number talk", 5*time.Second, func() bool { return hears(outside, 1500) && hears(mobile, 440) })
	_ = vpbxSide.Hangup(ctx)
	rec := o.lastCall()
	if len(rec.Legs) != 1 || len(rec.Transfers) != 1 || rec.Transfers[0].From != "ivanov" || rec.Transfers[0].To != "79161112233" {
		t.Fatalf("record %+v", rec)
	}
}
