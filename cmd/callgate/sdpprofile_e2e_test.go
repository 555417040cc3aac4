package main

import (
	"errors"
	"strings"
	"testing"
	"time"

	"callgate/sip/siptest"

	"github.com/emiago/sipgo"
)

// avpfOffer is what a softphone with AVPF, ICE and rtcp-mux on offers
// (Linphone's defaults), with its RTP on rtp.
func avpfOffer(rtp string, formats string) []byte {
	host, port, _ := strings.Cut(rtp, ":")
	return []byte("v=0\r\no=linphone 1 1 IN IP4 " + host + "\r\ns=Talk\r\nc=IN IP4 " + host + "\r\nt=0 0\r\n" +
		"a=ice-ufrag:Ab12\r\na=ice-pwd:0123456789abcdef01234567\r\n" +
		"m=audio " + port + " RTP/AVPF " + formats + "\r\na=rtpmap:96 opus/48000/2\r\na=rtpmap:101 telephone-event/8000\r\n" +
		"a=rtcp-fb:* trr-int 1000\r\na=rtcp-mux\r\n" +
		"a=candidate:1 1 UDP 2130706431 " + host + " " + port + " typ host\r\n")
}

// An AVPF/ICE offer reaches the VPBX as plain RTP/AVP without ICE, and the
// phone's answer is in the profile it offered (RFC 3264 §6); an offer with
// no G.711 gets 488 with a Warning naming what callgate relays.
func TestPhoneOfferNormalisedForTheVPBX(t *testing.T) {
	o := newOffice(t, officeOpts{})
	ctx := withTimeout(t, 30*time.Second)
	offered := make(chan string, 1)
	go func() {
		select {
		case in := <-o.vpbx.Calls:
			offered <- string(in.Request.Body())
			_, _ = in.Answer(ctx, siptest.SDP("127.0.0.1:30961"))
		case <-ctx.Done():
		}
	}()
	call, err := o.phones["101"].Dial(ctx, "+74951112233", avpfOffer("127.0.0.1:30962", "96 8 0 101"))
	if err != nil {
		t.Fatal(err)
	}
	up := <-offered
	if !strings.Contains(up, " RTP/AVP 8 0 101\r\n") {
		t.Fatalf("the VPBX got:\n%s", up)
	}
	for _, bad := range []string{"AVPF", "ice-", "candidate", "rtcp-fb", "rtcp-mux", "opus"} {
		if strings.Contains(up, bad) {
			t.Errorf("the VPBX's offer keeps %q:\n%s", bad, up)
		}
	}
	if !strings.Contains(string(call.Remote), " RTP/AVPF 8 0 101\r\n") {
		t.Fatalf("the phone's answer is not in its offer's profile:\n%s", call.Remote)
	}
	if err := call.Hangup(ctx); err != nil {
		t.Fatal(err)
	}

	// Opus only: nothing to relay without transcoding.
	_, err = o.phones["101"].Dial(ctx, "+74951112233", avpfOffer("127.0.0.1:30964", "96 101"))
	var refused *sipgo.ErrDialogResponse
	if !errors.As(err, &refused) || refused.Res.StatusCode != 488 {
		t.Fatalf("opus-only offer: %v", err)
	}
	w := refused.Res.GetHeader("Warning")
	if w == nil || !strings.HasPrefix(w.Value(), "305 ") || !strings.Contains(w.Value(), "PCMA") {
		t.Fatalf("488 without a Warning naming the codecs: %v", refused.Res)
	}
	// The record is written just after the answer: wait for it to be the newest.
	o.d.waitFor("the refused call's record", 5*time.Second, func() bool {
		rec := o.lastCall()
		return rec.Result == "failed"
	})
}
