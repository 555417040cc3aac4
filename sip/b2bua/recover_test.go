package b2bua

import (
	"strings"
	"testing"
	"time"

	"callgate/sip/location"

	"github.com/emiago/sipgo/sip"
)

// A phone answering 200 without Contact (callgate would later send its
// in-dialog requests nowhere, and used to dereference the missing header)
// has its answer dropped: the branch ends as unanswered and the VPBX gets
// a final error, not a call with a dialog callgate cannot address.
func TestAnswerWithoutContactDropped(t *testing.T) {
	h := newHarness(t, newClient(t))
	phone := newRawPhone(t)
	h.loc.bindings["101"] = []location.Binding{phone.binding("101")}

	done := h.served(invite("nc1"))
	inv := phone.next(sip.INVITE)
	ok := sip.NewResponseFromRequest(inv, sip.StatusOK, "OK", []byte(testSDP))
	ok.AppendHeader(sip.NewHeader("Content-Type", "application/sdp"))
	phone.answer(inv, ok)

	t.Cleanup(func() {
		if t.Failed() {
			t.Log(h.logs.String())
		}
	})
	fin := finals(wait(t, done, "the call to end"))
	if len(fin) != 1 || fin[0].StatusCode != sip.StatusTemporarilyUnavailable {
		t.Fatalf("VPBX got %v, want 480", fin)
	}
	if !strings.Contains(h.logs.String(), "Missing Contact") {
		t.Fatalf("the dropped answer is not logged: %s", h.logs.String())
	}
	if h.b.Panics() != 0 || h.b.Active() != 0 {
		t.Fatalf("panics %d, active %d", h.b.Panics(), h.b.Active())
	}
}

// A panic inside a call (here injected into its goroutine) ends that call
// only: it is counted and logged with the call id, the VPBX gets 500, the
// ringing phone a CANCEL, the media session is released, and another call
// in progress goes on.
func TestPanicInCallEndsOnlyThatCall(t *testing.T) {
	h := newHarness(t, newClient(t))
	phone := newRawPhone(t)
	h.loc.bindings["101"] = []location.Binding{phone.binding("101")}

	first := h.served(invite("pc1"))
	inv1 := phone.next(sip.INVITE)
	phone.answer(inv1, sip.NewResponseFromRequest(inv1, sip.StatusRinging, "Ringing", nil))
	second := h.served(invite("pc2"))
	inv2 := phone.next(sip.INVITE)
	phone.answer(inv2, sip.NewResponseFromRequest(inv2, sip.StatusRinging, "Ringing", nil))

	var c1, c2 *call
	for deadline := time.Now().Add(5 * time.Second); (c1 == nil || c2 == nil) && time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		c1, c2 = h.b.lookup("pc1"), h.b.lookup("pc2")
	}
	if c1 == nil || c2 == nil {
		t.Fatal("calls did not start")
	}
	if !c1.post(func() { panic("injected") }) {
		t.Fatal("call 1 ended early")
	}
	fin := finals(wait(t, first, "call 1 to end"))
	if len(fin) != 1 || fin[0].StatusCode != sip.StatusInternalServerError {
		t.Fatalf("VPBX got %v for the call that panicked, want 500", fin)
	}
	cancel := phone.next(sip.CANCEL)
	if cancel.CallID().Value() != inv1.CallID().Value() {
		t.Fatalf("CANCEL for %s, want the first call's branch %s", cancel.CallID().Value(), inv1.CallID().Value())
	}
	if h.b.Panics() != 1 {
		t.Fatalf("panics = %d, want 1", h.b.Panics())
	}
	if !strings.Contains(h.logs.String(), "call_id="+c1.id) || !strings.Contains(h.logs.String(), "injected") {
		t.Fatalf("the panic is not logged with the call id: %s", h.logs.String())
	}
	if !h.media.sessions[0].isClosed() || h.media.sessions[1].isClosed() {
		t.Fatal("media: the first call's session must be closed, the second's open")
	}
	if h.b.lookup("pc1") != nil || h.b.lookup("pc2") == nil || h.b.Active() != 1 {
		t.Fatalf("after the panic: call 1 bound %v, call 2 bound %v, active %d", h.b.lookup("pc1") != nil, h.b.lookup("pc2") != nil, h.b.Active())
	}
	ended := h.events.ended()
	if len(ended) != 1 || ended[0].CallID != c1.id || ended[0].Result != ResultFailed || ended[0].HangupBy != "system" {
		t.Fatalf("ended events %+v", ended)
	}

	if !h.b.Hangup(c2.id, "test over") {
		t.Fatal("call 2 is gone")
	}
	if fin := finals(wait(t, second, "call 2 to end")); len(fin) != 1 || fin[0].StatusCode != sip.StatusServiceUnavailable {
		t.Fatalf("call 2 ended with %v", fin)
	}
}

// A panic in a connected call hangs up both legs with BYE and releases
// the media.
func TestPanicInConnectedCallHangsUpBothLegs(t *testing.T) {
	h := newHarness(t, newClient(t))
	phone := newRawPhone(t)
	vpbx := newRawPhone(t)
	h.loc.bindings["101"] = []location.Binding{phone.binding("101")}

	first := []byte(strings.ReplaceAll(string(invite("pc3")), "127.0.0.1:5070", vpbx.addr()))
	done := h.servedFrom(first, vpbx.addr())
	phone.answerOK(phone.next(sip.INVITE))
	c, _ := h.established(t, "pc3")
	c.post(func() { panic("injected while talking") })

	phone.next(sip.BYE)
	vpbx.next(sip.BYE)
	wait(t, done, "the call to end")
	if h.b.Panics() != 1 || h.b.Active() != 0 || !h.media.sessions[0].isClosed() {
		t.Fatalf("panics %d, active %d, media closed %v", h.b.Panics(), h.b.Active(), h.media.sessions[0].isClosed())
	}
}
