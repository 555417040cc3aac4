package webrtc

import (
	"bytes"
	"net/netip"
	"testing"
)

// FuzzParseAudio feeds SDP from the network (a browser's offer or answer,
// a plain SDP from the B2BUA) to the translation: it never panics, and
// the plain SDP it writes for what it accepts reads back with the same
// formats and direction.
func FuzzParseAudio(f *testing.F) {
	f.Add(relaySDP(netip.MustParseAddrPort("127.0.0.1:4000"), "sendrecv"))
	f.Add(relaySDP(netip.MustParseAddrPort("10.0.0.5:30000"), "sendonly"))
	f.Add([]byte("v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111 8 0 126\r\nc=IN IP4 0.0.0.0\r\n" +
		"a=rtpmap:111 opus/48000/2\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:126 telephone-event/8000\r\na=fingerprint:sha-256 AB:CD\r\na=recvonly\r\n"))
	f.Add([]byte("v=0\r\nm=audio 70000 RTP/AVP 0\r\n"))
	f.Add([]byte("v=0\r\nm=audio 5 RTP/AVP 200 -1 x\r\n"))
	f.Fuzz(func(t *testing.T, body []byte) {
		_, a, err := parseAudio(body)
		if err != nil {
			return
		}
		plain := plainSDP(netip.MustParseAddrPort("127.0.0.1:5004"), a, 1)
		_, back, err := parseAudio(plain)
		if err != nil {
			t.Fatalf("own plain SDP unreadable: %v\n%s", err, plain)
		}
		if len(back.codecs) != len(a.codecs) || back.dir != a.dir || back.addr != netip.MustParseAddrPort("127.0.0.1:5004") {
			t.Fatalf("round trip: %+v -> %+v", a, back)
		}
		for i := range a.codecs {
			if back.codecs[i].pt != a.codecs[i].pt || back.codecs[i].name != a.codecs[i].name {
				t.Fatalf("codec %d: %+v -> %+v", i, a.codecs[i], back.codecs[i])
			}
		}
		_ = withDirection(string(body), "inactive")
		if bytes.Contains(plain, []byte("fingerprint")) {
			t.Fatal("plain SDP carries WebRTC attributes")
		}
	})
}
