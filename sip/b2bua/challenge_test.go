package b2bua

import (
	"strings"
	"testing"

	"callgate/sip/location"

	"github.com/emiago/sipgo/sip"
	"github.com/icholy/digest"
)

// The VPBX puts an inbound call on hold; the phone challenges the
// re-INVITE callgate passes on. callgate has no credentials of the phone's
// to answer with, so the VPBX gets 488 (not a 407 without its challenge)
// and the call goes on.
func TestPhoneChallengeToReinviteRefused(t *testing.T) {
	h := newHarness(t, newClient(t))
	phone := newRawPhone(t)
	h.loc.bindings["101"] = []location.Binding{phone.binding("101")}
	t.Cleanup(func() {
		if t.Failed() {
			t.Log(h.logs.String())
		}
	})

	first := invite("ch1")
	done := h.served(first)
	phone.answerOK(phone.next(sip.INVITE))
	c, tag := h.established(t, "ch1")

	re := h.served(reinviteFrom(first, tag, 2))
	reinv := phone.next(sip.INVITE)
	chal := sip.NewResponseFromRequest(reinv, sip.StatusProxyAuthRequired, "Proxy Authentication Required", nil)
	chal.AppendHeader(sip.NewHeader("Proxy-Authenticate", `Digest realm="phone", nonce="n1", algorithm=MD5`))
	phone.answer(reinv, chal)

	fin := finals(wait(t, re, "the re-INVITE's answer"))
	if len(fin) != 1 || fin[0].StatusCode != sip.StatusNotAcceptableHere {
		t.Fatalf("VPBX got %v, want 488", fin)
	}
	if h.b.lookup("ch1") != c || h.b.Active() != 1 {
		t.Fatal("the call ended after a refused re-INVITE")
	}
	h.hangupFrom(t, first, tag, done)
}

// A phone's re-INVITE on an outbound call is challenged by the VPBX:
// callgate answers with the account's digest (the challenge is to its own
// request) and the phone gets the VPBX's 200.
func TestVPBXChallengeToReinviteAnswered(t *testing.T) {
	h := newHarness(t, newClient(t))
	vpbx := newRawPhone(t)
	h.b.cfg.Upstream = upstreamAt(vpbx.addr())
	// The calling phone, registered where its requests come from.
	h.loc.bindings["101"] = []location.Binding{{AOR: "101", Contact: "sip:101@127.0.0.1:5072", Source: "127.0.0.1:5070", Transport: "udp"}}
	t.Cleanup(func() {
		if t.Failed() {
			t.Log(h.logs.String())
		}
	})

	first := phoneInvite("ch2")
	done := h.served(first)
	vpbx.answerOK(vpbx.next(sip.INVITE))
	c, tag := h.established(t, "ch2")

	re := h.served(reinviteFrom(first, tag, 2))
	reinv := vpbx.next(sip.INVITE)
	chal := sip.NewResponseFromRequest(reinv, sip.StatusProxyAuthRequired, "Proxy Authentication Required", nil)
	challenge := `Digest realm="mango", nonce="n2", algorithm=MD5`
	chal.AppendHeader(sip.NewHeader("Proxy-Authenticate", challenge))
	vpbx.answer(reinv, chal)

	retry := vpbx.next(sip.INVITE)
	h2 := retry.GetHeader("Proxy-Authorization")
	if h2 == nil {
		t.Fatalf("re-INVITE retried without credentials:\n%s", retry)
	}
	got, err := digest.ParseCredentials(h2.Value())
	if err != nil {
		t.Fatal(err)
	}
	pc, _ := digest.ParseChallenge(strings.TrimSpace(challenge))
	want, _ := digest.Digest(pc, digest.Options{Method: "INVITE", URI: got.URI, Username: "sales1", Password: "s3cret"})
	if got.Username != "sales1" || got.Response != want.Response {
		t.Fatalf("credentials %+v, want user sales1 with response %s", got, want.Response)
	}
	if retry.CSeq().SeqNo <= reinv.CSeq().SeqNo || retry.Via().Value() == reinv.Via().Value() {
		t.Fatalf("retry must be a new transaction with a higher CSeq: %v / %v", retry.CSeq(), reinv.CSeq())
	}
	vpbx.answerOK(retry)

	fin := finals(wait(t, re, "the re-INVITE's answer"))
	if len(fin) != 1 || fin[0].StatusCode != sip.StatusOK {
		t.Fatalf("phone got %v, want 200", fin)
	}
	if h.b.lookup("ch2") != c {
		t.Fatal("the call ended")
	}
	h.hangupFrom(t, first, tag, done)
}
