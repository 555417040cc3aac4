package b2bua

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
)

const phoneOffer = "v=0\r\no=phone 1 1 IN IP4 10.0.0.5\r\ns=-\r\nc=IN IP4 10.0.0.5\r\nt=0 0\r\n" +
	"m=audio 4000 RTP/AVP 9 8 0 18 101\r\na=rtpmap:9 G722/8000\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:0 PCMU/8000\r\n" +
	"a=rtpmap:18 G729/8000\r\na=fmtp:18 annexb=no\r\na=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\n" +
	"a=rtcp:4001\r\na=sendonly\r\nm=video 5000 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\n"

func TestRewriteSDP(t *testing.T) {
	s, m, err := parseSDP([]byte(phoneOffer))
	if err != nil {
		t.Fatal(err)
	}
	if m.addr != netip.MustParseAddrPort("10.0.0.5:4000") || m.dir != "sendonly" {
		t.Fatalf("parsed %+v", m)
	}
	out, err := rewriteSDP(s, netip.MustParseAddr("192.168.1.2"), 20002, 7)
	if err != nil {
		t.Fatal(err)
	}
	got := string(out)
	for _, want := range []string{"c=IN IP4 192.168.1.2", "o=phone 1 7 IN IP4 192.168.1.2", "m=audio 20002 RTP/AVP 8 0 101", "a=rtpmap:101 telephone-event/8000", "a=fmtp:101 0-16", "a=sendonly", "m=video 0 "} {
		if !strings.Contains(got, want) {
			t.Errorf("rewritten SDP lacks %q:\n%s", want, got)
		}
	}
	for _, bad := range []string{"10.0.0.5", "G722", "G729", "a=rtcp", "H264"} {
		if strings.Contains(got, bad) {
			t.Errorf("rewritten SDP keeps %q:\n%s", bad, got)
		}
	}
	// The result parses again and points at the relay.
	if _, m2, err := parseSDP(out); err != nil || m2.addr != netip.MustParseAddrPort("192.168.1.2:20002") {
		t.Fatalf("reparse %+v %v", m2, err)
	}
}

func TestRewriteRefusesOtherCodecs(t *testing.T) {
	s, _, err := parseSDP([]byte(strings.Replace(phoneOffer, "RTP/AVP 9 8 0 18 101", "RTP/AVP 9 18 101", 1)))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := rewriteSDP(s, netip.MustParseAddr("127.0.0.1"), 20000, 1); err != errNoCodec {
		t.Fatalf("err = %v", err)
	}
	for _, bad := range []string{"", "garbage", "v=0\r\nm=audio x RTP/AVP 8\r\n"} {
		if _, _, err := parseSDP([]byte(bad)); err == nil {
			t.Errorf("%q parsed", bad)
		}
	}
}

func FuzzParseRewrite(f *testing.F) {
	f.Add([]byte(phoneOffer))
	f.Fuzz(func(t *testing.T, b []byte) {
		s, _, err := parseSDP(b)
		if err != nil {
			return
		}
		_, _ = rewriteSDP(s, netip.MustParseAddr("127.0.0.1"), 20000, 1)
	})
}

// A softphone's WebRTC-style offer (AVPF with feedback, ICE, rtcp-mux)
// reaches the VPBX as plain RTP/AVP with none of that, and the phone's
// answer comes back in the profile it offered.
func TestRewriteNormalisesAVPFAndICE(t *testing.T) {
	const offer = "v=0\r\no=linphone 1 1 IN IP4 192.168.1.50\r\ns=-\r\nc=IN IP4 192.168.1.50\r\nt=0 0\r\n" +
		"a=ice-ufrag:abcd\r\na=ice-pwd:0123456789abcdef012345\r\n" +
		"m=audio 7078 RTP/AVPF 96 8 0 101\r\na=rtpmap:96 opus/48000/2\r\na=rtpmap:101 telephone-event/8000\r\n" +
		"a=rtcp-fb:* trr-int 1000\r\na=rtcp-fb:* ccm tmmbr\r\na=rtcp-mux\r\na=rtcp:7079\r\n" +
		"a=candidate:1 1 UDP 2130706431 192.168.1.50 7078 typ host\r\na=candidate:2 1 UDP 1694498815 203.0.113.9 7078 typ srflx raddr 192.168.1.50 rport 7078\r\n"
	s, m, err := parseSDP([]byte(offer))
	if err != nil {
		t.Fatal(err)
	}
	if m.proto != "RTP/AVPF" {
		t.Fatalf("proto %q", m.proto)
	}
	up, err := rewriteSDP(s, netip.MustParseAddr("192.168.1.2"), 20002, 2)
	if err != nil {
		t.Fatal(err)
	}
	got := string(up)
	if !strings.Contains(got, "m=audio 20002 RTP/AVP 8 0 101\r\n") {
		t.Fatalf("offer toward the VPBX:\n%s", got)
	}
	for _, bad := range []string{"AVPF", "ice-", "candidate", "rtcp-fb", "rtcp-mux", "opus", "203.0.113.9", "192.168.1.50"} {
		if strings.Contains(got, bad) {
			t.Errorf("offer toward the VPBX keeps %q:\n%s", bad, got)
		}
	}
	// The VPBX answers AVP; the phone gets AVPF back, as it offered.
	vs, _, err := parseSDP(up)
	if err != nil {
		t.Fatal(err)
	}
	back, err := rewriteSDPAs(vs, netip.MustParseAddr("192.168.1.2"), 20004, 3, answerProfile(m.proto))
	if err != nil || !strings.Contains(string(back), "m=audio 20004 RTP/AVPF 8 0 101\r\n") {
		t.Fatalf("answer to the phone: %v\n%s", err, back)
	}
	for proto, want := range map[string]string{"RTP/AVP": "RTP/AVP", "RTP/AVPF": "RTP/AVPF", "rtp/avpf": "RTP/AVPF", "RTP/SAVP": "RTP/AVP", "": "RTP/AVP"} {
		if got := answerProfile(proto); got != want {
			t.Errorf("answerProfile(%q) = %q, want %q", proto, got, want)
		}
	}
}

func TestCodecWarningOnlyForCodecs(t *testing.T) {
	if h := codecWarning(errNoCodec); len(h) != 1 || !strings.HasPrefix(h[0].Value(), "305 callgate ") || !strings.Contains(h[0].Value(), "PCMA") {
		t.Fatalf("warning %v", h)
	}
	if h := codecWarning(errors.New("other")); h != nil {
		t.Fatalf("warning for another error: %v", h)
	}
}
