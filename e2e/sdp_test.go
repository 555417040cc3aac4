package e2e

import (
	"errors"
	"net"
	"strconv"
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

// A phone's ICE candidates are not where callgate sends its RTP: the relay
// sends to the c= address (or to where the phone's RTP comes from, once it
// latched), never to a candidate the phone did not send from.
func TestRTPNeverGoesToAnICECandidate(t *testing.T) {
	o := newOffice(t, officeOpts{})
	outside, ivanov := tonePeers(t)
	candidate, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 2)})
	if err != nil {
		t.Fatal(err)
	}
	defer candidate.Close()
	got := make(chan int, 1)
	go func() {
		n := 0
		buf := make([]byte, 1500)
		for {
			if _, _, err := candidate.ReadFrom(buf); err != nil {
				got <- n
				return
			}
			n++
		}
	}()
	ctx := withTimeout(t, 30*time.Second)
	answered := make(chan *siptest.Call, 1)
	go func() {
		select {
		case in := <-o.vpbx.Calls:
			if c, err := in.Answer(ctx, siptest.AnswerSDP(in.Request.Body(), outside.Addr().String())); err == nil {
				toRelay, _ := siptest.MediaAddr(in.Request.Body())
				outside.SendTo(toRelay)
				answered <- c
			}
		case <-ctx.Done():
		}
	}()
	offer := strings.Replace(string(avpfOffer(ivanov.Addr().String(), "8 0 101")), "a=candidate:",
		"a=candidate:2 1 UDP 2130706431 "+candidate.LocalAddr().(*net.UDPAddr).IP.String()+" "+strconv.Itoa(candidate.LocalAddr().(*net.UDPAddr).Port)+" typ host\r\na=candidate:", 1)
	offer = strings.Replace(offer, "a=rtpmap:96 opus/48000/2\r\n", "a=rtpmap:8 PCMA/8000\r\na=rtpmap:0 PCMU/8000\r\n", 1)
	call, err := o.phones["101"].Dial(ctx, "+74951112233", []byte(offer))
	if err != nil {
		t.Fatal(err)
	}
	vpbxSide := <-answered
	o.d.waitFor("ivanov hears the outside party before sending anything", 5*time.Second, func() bool { return hears(ivanov, 440) })
	toRelay, _ := siptest.MediaAddr(call.Remote)
	ivanov.SendTo(toRelay)
	o.d.waitFor("both hear each other", 5*time.Second, func() bool { return hears(outside, 1000) && hears(ivanov, 440) })
	_ = vpbxSide.Hangup(ctx)
	<-call.Done()
	candidate.Close()
	if n := <-got; n != 0 {
		t.Fatalf("the relay sent %d packets to an ICE candidate", n)
	}
}

// The VPBX is told the office's public address (NAT), the phones the LAN one.
func TestUpstreamAdvertiseInSDPTowardVPBX(t *testing.T) {
	o := newOffice(t, officeOpts{UpstreamAdvertise: "198.51.100.7"})
	ctx := withTimeout(t, 15*time.Second)
	vpbxSide, _, in := o.inbound(ctx, "127.0.0.1:31000", "127.0.0.1:31002")
	toVPBX, _ := siptest.MediaAddr(vpbxSide.Remote)
	toPhone, _ := siptest.MediaAddr(in.Request.Body())
	if toVPBX.Addr().String() != "198.51.100.7" || toPhone.Addr().String() != "127.0.0.1" {
		t.Fatalf("SDP toward the VPBX %s, toward the phone %s", toVPBX, toPhone)
	}
	vpbxSide.Hangup(ctx)
}
