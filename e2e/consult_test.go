package e2e

import (
	"context"
	"testing"
	"time"

	"callgate/media/g711"
	"callgate/media/rtptest"
	"callgate/sip/siptest"
)

// The API's attended transfer: the employee's phone is moved to a
// consultation with the target while the caller hears a hold tone; cancel
// brings the employee back, complete hands the caller to the target.
func TestAPIAttendedTransfer(t *testing.T) {
	o := newOffice(t, officeOpts{})
	outside, ivanov := tonePeers(t)
	petrov, _ := rtptest.NewPeer(1500, g711.PCMA)
	t.Cleanup(petrov.Close)
	ctx := withTimeout(t, 60*time.Second)
	vpbxSide, ivanovSide, _ := o.talking(ctx, outside, ivanov)
	id := o.activeCallID()

	// First petrov is consulted and the transfer cancelled.
	petrovSide := o.consult(ctx, id, outside, ivanov, petrov)
	if code, body := o.d.post(t, "/api/v1/calls/"+id+"/transfer/cancel", testToken, nil); code != 200 {
		t.Fatalf("cancel: %d %v", code, body)
	}
	select {
	case <-petrovSide.Done():
	case <-ctx.Done():
		t.Fatal("petrov was not hung up on cancel")
	}
	ivanov.SendTo(reinviteTo(t, o.phones["101"], 5*time.Second)) // back to the caller
	o.d.waitFor("ivanov back with the caller", 5*time.Second, func() bool { return hears(outside, 1000) && hears(ivanov, 440) })

	// Then again, completed.
	petrovSide = o.consult(ctx, id, outside, ivanov, petrov)
	if code, body := o.d.post(t, "/api/v1/calls/"+id+"/transfer/complete", testToken, nil); code != 200 {
		t.Fatalf("complete: %d %v", code, body)
	}
	petrov.SendTo(reinviteTo(t, o.phones["103"], 5*time.Second)) // petrov moves onto the call
	select {
	case <-ivanovSide.Done():
	case <-ctx.Done():
		t.Fatal("ivanov was not released")
	}
	o.d.waitFor("caller and petrov talk", 5*time.Second, func() bool { return hears(outside, 1500) && hears(petrov, 440) && !hears(outside, 425) })
	if code, body := o.d.post(t, "/api/v1/calls/"+id+"/transfer/complete", testToken, nil); code != 409 || apiCode(body) != "no_consultation" {
		t.Fatalf("complete without a consultation: %d %v", code, body)
	}
	time.Sleep(500 * time.Millisecond)
	_ = vpbxSide.Hangup(ctx)
	select {
	case <-petrovSide.Done():
	case <-ctx.Done():
		t.Fatal("petrov not hung up at the end")
	}
	rec := o.lastCall()
	if len(rec.Legs) != 2 || rec.Legs[1].Employee != "petrov" || len(rec.Transfers) != 1 || rec.Transfers[0].Mode != "attended" {
		t.Fatalf("record %+v", rec)
	}
}

// apiResult is an API call's status and JSON body.
type apiResult struct {
	code int
	body map[string]any
}

// consult starts the API's attended transfer of call id from ivanov (101)
// to petrov (103) and returns petrov's side once the two talk and the
// caller hears the hold tone.
func (o *office) consult(ctx context.Context, id string, outside, ivanov, petrov *rtptest.Peer) *siptest.Call {
	t := o.t
	t.Helper()
	done := make(chan apiResult, 1)
	go func() {
		code, body := o.d.post(t, "/api/v1/calls/"+id+"/transfer", testToken, map[string]string{"to": "petrov", "mode": "attended"})
		done <- apiResult{code, body}
	}()
	ivanov.SendTo(reinviteTo(t, o.phones["101"], 5*time.Second)) // ivanov's phone moves to the consultation
	o.d.waitFor("the caller on hold", 5*time.Second, func() bool { return hears(outside, 425) && !hears(outside, 1000) })
	target := nextCall(t, o.phones["103"])
	if target.From() != "101" {
		t.Fatalf("petrov sees %q, want ivanov's extension", target.From())
	}
	petrovSide, err := target.Answer(ctx, siptest.SDP(petrov.Addr().String()))
	if err != nil {
		t.Fatal(err)
	}
	toP, _ := siptest.MediaAddr(target.Request.Body())
	petrov.SendTo(toP)
	if r := <-done; r.code != 200 || r.body["state"] != "consulting" {
		t.Fatalf("attended transfer: %d %v", r.code, r.body)
	}
	o.d.waitFor("ivanov and petrov consult", 5*time.Second, func() bool { return hears(ivanov, 1500) && hears(petrov, 1000) })
	if hears(outside, 1000) || hears(outside, 1500) {
		t.Fatal("the caller overhears the consultation")
	}
	return petrovSide
}

// The employee hanging up during the API's consultation completes the
// transfer, as desk phones' "transfer on hang-up" does: the caller is put
// through to the target, and the record names the attended transfer and
// the outside party as the one who hung up at the end.
func TestAPIAttendedTransferCompletesWhenTheEmployeeHangsUp(t *testing.T) {
	o := newOffice(t, officeOpts{})
	outside, ivanov := tonePeers(t)
	petrov, _ := rtptest.NewPeer(1500, g711.PCMA)
	t.Cleanup(petrov.Close)
	ctx := withTimeout(t, 60*time.Second)
	vpbxSide, ivanovSide, _ := o.talking(ctx, outside, ivanov)
	id := o.activeCallID()
	petrovSide := o.consult(ctx, id, outside, ivanov, petrov)
	time.Sleep(500 * time.Millisecond)
	if err := ivanovSide.Hangup(ctx); err != nil {
		t.Fatal(err)
	}
	petrov.SendTo(reinviteTo(t, o.phones["103"], 5*time.Second)) // petrov moves onto the call
	o.d.waitFor("caller and petrov talk", 5*time.Second, func() bool { return hears(outside, 1500) && hears(petrov, 440) && !hears(outside, 425) })
	time.Sleep(500 * time.Millisecond)
	select {
	case <-vpbxSide.Done():
		t.Fatal("the caller was hung up")
	case <-petrovSide.Done():
		t.Fatal("petrov was hung up")
	default:
	}
	_ = vpbxSide.Hangup(ctx)
	select {
	case <-petrovSide.Done():
	case <-ctx.Done():
		t.Fatal("petrov not hung up at the end")
	}
	rec := o.lastCall()
	if rec.HangupBy != "outside" || len(rec.Legs) != 2 || rec.Legs[1].Employee != "petrov" || len(rec.Transfers) != 1 || rec.Transfers[0].Mode != "attended" {
		t.Fatalf("record %+v", rec)
	}
	o.recordingHas(rec.Legs[1], 440, 1500)
}
