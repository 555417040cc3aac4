package e2e

import (
	"context"
	"strings"
	"testing"
	"time"

	"callgate/media/g711"
	"callgate/media/rtptest"
	"callgate/sip/siptest"

	"github.com/chromedp/chromedp"
)

// TestConsoleAttendedTransfer: an employee talking on the browser phone
// consults a colleague from the call's card while the client holds, then
// connects them; a transfer to nobody says why on the card and the call
// goes on.
func TestConsoleAttendedTransfer(t *testing.T) {
	if !inLoopbackNetns(t) {
		return
	}
	o, b := ivanovsBrowserPhone(t)
	outside := peerOf(t, 1000)
	petrov := peerOf(t, 1500)
	ctx := withTimeout(t, 90*time.Second)
	vpbxSide := answerInBrowser(t, ctx, o, b, outside, "")
	id := o.activeCallID()

	state := func() string {
		return value(t, b, "the card's transfer line", chromedp.Evaluate[string](`(document.querySelector('.popup .transfer-state') || {}).textContent || ''`))
	}
	browse(t, b, "transfer to nobody", chromedp.Click(chromedp.CSS(".popup button.transfer")),
		chromedp.WaitVisible(chromedp.CSS(".popup .transfer-to")), chromedp.SetValue(chromedp.CSS(".popup .transfer-to"), "nobody"), chromedp.Click(chromedp.CSS(".popup .transfer-consult")))
	value(t, b, "the card says the transfer failed", chromedp.Poll[bool](
		`((document.querySelector('.popup .transfer-state') || {}).textContent || '').startsWith('Перевод не удался: ')`))
	o.d.waitFor("the client still hears the browser", 5*time.Second, func() bool { return hears(outside, 440) })

	browse(t, b, "consult 103 first", chromedp.SetValue(chromedp.CSS(".popup .transfer-to"), "103"), chromedp.Click(chromedp.CSS(".popup .transfer-consult")))
	target := nextCall(t, o.phones["103"])
	if _, err := target.Answer(ctx, siptest.SDP(petrov.Addr().String())); err != nil {
		t.Fatal(err)
	}
	toB, _ := siptest.MediaAddr(target.Request.Body())
	petrov.SendTo(toB)
	browse(t, b, "the card offers Connect", chromedp.WaitVisible(chromedp.CSS(".popup .transfer-complete")))
	if s := state(); !strings.Contains(s, "Разговор с 103") {
		t.Fatalf("the card's transfer line: %q", s)
	}
	o.d.waitFor("the colleague hears the browser", 10*time.Second, func() bool { return hears(petrov, 440) })
	waitPageHears(t, b, 1500)
	if hears(outside, 440) {
		t.Fatal("the client hears the consultation")
	}
	browse(t, b, "connect the client to 103", chromedp.Click(chromedp.CSS(".popup .transfer-complete")))
	petrov.SendTo(reinviteTo(t, o.phones["103"], 5*time.Second)) // 103 moves onto the client's call
	o.d.waitFor("the client talks to 103", 10*time.Second, func() bool { return hears(outside, 1500) && hears(petrov, 1000) })
	browse(t, b, "the browser's card goes", chromedp.WaitNotPresent(chromedp.CSS(".popup")))
	if err := vpbxSide.Hangup(ctx); err != nil {
		t.Fatal(err)
	}
	rec := o.call(id)
	if len(rec.Transfers) != 1 || rec.Transfers[0].Mode != "attended" || len(rec.Legs) != 2 || rec.Legs[1].Employee != "petrov" {
		t.Fatalf("record %+v", rec)
	}
}

// TestConsolePhoneInternalCall: a colleague's desk phone calls the
// employee's line; the console has no live card for an internal call, so
// the phone makes its own, with only what the phone can do (answer, hold,
// keypad, hang up), and it goes when the call ends — from either side.
func TestConsolePhoneInternalCall(t *testing.T) {
	if !inLoopbackNetns(t) {
		return
	}
	o, b := ivanovsBrowserPhone(t)
	petrov := peerOf(t, 1500)
	ctx := withTimeout(t, 60*time.Second)
	for _, browserHangsUp := range []bool{false, true} {
		dialled := make(chan *siptest.Call, 1)
		go func() {
			if c, err := o.phones["103"].Dial(ctx, "101", siptest.SDP(petrov.Addr().String())); err == nil {
				dialled <- c
			}
		}()
		desk := nextCall(t, o.phones["101"])
		browse(t, b, "the phone's own card rings", chromedp.WaitVisible(chromedp.CSS(`.popup[data-phone="1"] button.answer`)))
		if n := value(t, b, "console buttons on the phone's card", chromedp.Evaluate[int](
			`[...document.querySelectorAll('.popup[data-phone="1"] .actions > button')].filter((b) => !b.hidden && !b.classList.contains('phone-btn')).length`)); n != 0 {
			t.Fatalf("%d console buttons (transfer, API hang-up) on a card only the phone can act on", n)
		}
		browse(t, b, "answer", chromedp.Click(chromedp.CSS(".popup button.answer")))
		<-desk.Gone()
		var call *siptest.Call
		select {
		case call = <-dialled:
		case <-ctx.Done():
			t.Fatal("the internal call was not answered")
		}
		to, _ := siptest.MediaAddr(call.Remote)
		petrov.SendTo(to)
		o.d.waitFor("103 hears the browser", 10*time.Second, func() bool { return hears(petrov, 440) })
		waitPageHears(t, b, 1500)
		if browserHangsUp {
			browse(t, b, "hang up on the card", chromedp.Click(chromedp.CSS(".popup .hangup-phone")))
			select {
			case <-call.Done():
			case <-ctx.Done():
				t.Fatal("103 was not hung up")
			}
		} else if err := call.Hangup(ctx); err != nil {
			t.Fatal(err)
		}
		browse(t, b, "the card goes with the call", chromedp.WaitNotPresent(chromedp.CSS(".popup")))
	}
	time.Sleep(3 * time.Second) // past the media's grace for a browser's close
	if n := o.d.metric("callgate_webrtc_failed_total"); n != 0 {
		t.Fatalf("%v browser legs counted failed after two hang-ups", n)
	}
}

// ivanovsBrowserPhone is a console office with ivanov logged in to
// Chromium (its microphone a 440 Hz WAV) and his browser phone ready.
func ivanovsBrowserPhone(t *testing.T) (*office, context.Context) {
	t.Helper()
	o := consoleOffice(t, nil, officeOpts{})
	b := phoneBrowser(t, toneWAV(t, 440))
	login(t, b, o.d.url(""), "ivanov")
	browse(t, b, "switch the browser phone on", chromedp.Click(chromedp.ID("phone-on")),
		chromedp.WaitVisible(chromedp.CSS(`#phone-state[data-state="phone.ready"]`)))
	return o, b
}

// peerOf is an RTP peer sending freq Hz in PCMA, closed with the test.
func peerOf(t *testing.T, freq float64) *rtptest.Peer {
	t.Helper()
	p, err := rtptest.NewPeer(freq, g711.PCMA)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return p
}
