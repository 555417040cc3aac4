package webrtc

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/pion/sdp/v3"
)

// ErrNoCodec means an SDP offers no G.711 audio: browsers speak PCMU and
// PCMA natively and callgate does not transcode, so such a call gets 488.
var ErrNoCodec = errors.New("no G.711 audio (PCMU/PCMA) offered")

// codec is one audio format callgate relays, with the payload type the
// SDP it came from gives it: the payload types are kept end to end, so
// the relay passes packets on unchanged.
type codec struct {
	pt    uint8
	name  string // PCMU, PCMA, telephone-event
	fmtp  string
	voice bool
}

// audio is what the bridge needs of an SDP's audio stream.
type audio struct {
	addr   netip.AddrPort // where it receives (plain SDP: the relay's port)
	codecs []codec
	dir    string // sendrecv, sendonly, recvonly, inactive
}

// parseAudio reads the first audio stream of an SDP with its G.711 and
// telephone-event formats, in the SDP's order of preference.
func parseAudio(body []byte) (*sdp.SessionDescription, audio, error) {
	var s sdp.SessionDescription
	if err := s.Unmarshal(body); err != nil {
		return nil, audio{}, fmt.Errorf("sdp: %w", err)
	}
	for _, m := range s.MediaDescriptions {
		if m.MediaName.Media != "audio" || m.MediaName.Port.Value == 0 {
			continue
		}
		a := audio{dir: "sendrecv"}
		c := m.ConnectionInformation
		if c == nil {
			c = s.ConnectionInformation
		}
		if c != nil && c.Address != nil {
			if ip, err := netip.ParseAddr(c.Address.Address); err == nil && m.MediaName.Port.Value > 0 && m.MediaName.Port.Value < 65536 {
				a.addr = netip.AddrPortFrom(ip.Unmap(), uint16(m.MediaName.Port.Value))
			}
		}
		names := map[string]string{}
		fmtps := map[string]string{}
		for _, at := range append(s.Attributes, m.Attributes...) {
			switch at.Key {
			case "sendrecv", "sendonly", "recvonly", "inactive":
				a.dir = at.Key
			case "rtpmap":
				pt, enc, _ := strings.Cut(at.Value, " ")
				names[pt] = enc
			case "fmtp":
				pt, f, _ := strings.Cut(at.Value, " ")
				fmtps[pt] = f
			}
		}
		for _, f := range m.MediaName.Formats {
			pt, err := strconv.ParseUint(f, 10, 7)
			if err != nil {
				continue
			}
			enc, ok := names[f]
			if !ok {
				// Static payload types need no rtpmap (RFC 3551).
				switch pt {
				case 0:
					enc = "PCMU/8000"
				case 8:
					enc = "PCMA/8000"
				}
			}
			name, rate, _ := strings.Cut(enc, "/")
			rate, _, _ = strings.Cut(rate, "/")
			if rate != "8000" {
				continue
			}
			switch up := strings.ToUpper(name); up {
			case "PCMU", "PCMA":
				a.codecs = append(a.codecs, codec{pt: uint8(pt), name: up, voice: true})
			case "TELEPHONE-EVENT":
				a.codecs = append(a.codecs, codec{pt: uint8(pt), name: "telephone-event", fmtp: fmtps[f]})
			}
		}
		voice := false
		for _, c := range a.codecs {
			voice = voice || c.voice
		}
		if !voice {
			return nil, audio{}, ErrNoCodec
		}
		return &s, a, nil
	}
	return nil, audio{}, ErrNoCodec
}

// plainSDP describes the bridge's side to the relay as a plain RTP phone
// would: its loopback socket, the formats and the direction the browser
// gave.
func plainSDP(addr netip.AddrPort, a audio, version uint64) []byte {
	var b strings.Builder
	fmt.Fprintf(&b, "v=0\r\no=callgate-webrtc %d %d IN IP4 %s\r\ns=-\r\nc=IN IP4 %s\r\nt=0 0\r\nm=audio %d RTP/AVP",
		version, version, addr.Addr(), addr.Addr(), addr.Port())
	for _, c := range a.codecs {
		fmt.Fprintf(&b, " %d", c.pt)
	}
	b.WriteString("\r\n")
	for _, c := range a.codecs {
		fmt.Fprintf(&b, "a=rtpmap:%d %s/8000\r\n", c.pt, c.name)
		if c.fmtp != "" {
			fmt.Fprintf(&b, "a=fmtp:%d %s\r\n", c.pt, c.fmtp)
		}
	}
	fmt.Fprintf(&b, "a=ptime:20\r\na=%s\r\n", a.dir)
	return []byte(b.String())
}

// withDirection sets the audio stream's direction in an SDP pion wrote:
// a hold passed on to a browser (sendonly, inactive) is said in the offer
// even though the browser's track keeps sending.
func withDirection(body, dir string) string {
	lines := strings.Split(body, "\r\n")
	for i, l := range lines {
		switch l {
		case "a=sendrecv", "a=sendonly", "a=recvonly", "a=inactive":
			lines[i] = "a=" + dir
		}
	}
	return strings.Join(lines, "\r\n")
}
