package b2bua

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/emiago/sipgo/sip"
	"github.com/pion/sdp/v3"
)

// errNoCodec means the offer has no G.711 audio: answered 488.
var errNoCodec = errors.New("no acceptable codec (PCMA/PCMU)")

// media is what callgate needs from a party's SDP.
type media struct {
	addr  netip.AddrPort // where the party receives RTP
	dir   string         // sendrecv, sendonly, recvonly, inactive
	proto string         // the audio stream's transport profile, "RTP/AVPF"
}

// parseSDP reads the audio address of an offer or answer.
func parseSDP(body []byte) (*sdp.SessionDescription, media, error) {
	var s sdp.SessionDescription
	if err := s.Unmarshal(body); err != nil {
		return nil, media{}, fmt.Errorf("sdp: %w", err)
	}
	for _, m := range s.MediaDescriptions {
		if m.MediaName.Media != "audio" || m.MediaName.Port.Value == 0 {
			continue
		}
		c := m.ConnectionInformation
		if c == nil {
			c = s.ConnectionInformation
		}
		if c == nil || c.Address == nil {
			return nil, media{}, errors.New("sdp: audio without a connection address")
		}
		ip, err := netip.ParseAddr(c.Address.Address)
		if err != nil {
			return nil, media{}, fmt.Errorf("sdp: connection address %q is not an IP", c.Address.Address)
		}
		md := media{addr: netip.AddrPortFrom(ip.Unmap(), uint16(m.MediaName.Port.Value)), dir: "sendrecv",
			proto: strings.Join(m.MediaName.Protos, "/")}
		for _, a := range append(s.Attributes, m.Attributes...) {
			switch a.Key {
			case "sendrecv", "sendonly", "recvonly", "inactive":
				md.dir = a.Key
			}
		}
		return &s, md, nil
	}
	return nil, media{}, errNoCodec
}

// rewriteSDP makes a party's SDP point at callgate's relay port for the
// other party: connection and origin address, audio port, and only G.711 and
// telephone-event left among the formats. Direction attributes stay, so
// hold and unhold pass through. Other media streams are refused (port 0).
// The profile is plain RTP/AVP: what the relay speaks, and what a VPBX
// expects whatever the phone offered (AVPF feedback, ICE candidates and
// rtcp-mux describe the phone's own transport, which the relay replaces).
func rewriteSDP(s *sdp.SessionDescription, ip netip.Addr, port int, version uint64) ([]byte, error) {
	return rewriteSDPAs(s, ip, port, version, "")
}

// answerProfile is the profile of an answer to an offer made in proto:
// RFC 3264 §6 wants the answer's profile to be the offer's. AVPF without
// any rtcp-fb attribute is plain RTP with AVPF's RTCP timing, which the
// relay passes through unchanged; every other profile is answered as AVP.
func answerProfile(proto string) string {
	if strings.EqualFold(proto, "RTP/AVPF") {
		return "RTP/AVPF"
	}
	return "RTP/AVP"
}

// rewriteSDPAs is rewriteSDP with the audio stream in profile proto
// (RTP/AVP when empty).
func rewriteSDPAs(s *sdp.SessionDescription, ip netip.Addr, port int, version uint64, proto string) ([]byte, error) {
	if proto == "" {
		proto = "RTP/AVP"
	}
	out := *s
	addrType := "IP4"
	if ip.Is6() {
		addrType = "IP6"
	}
	out.Origin.UnicastAddress = ip.String()
	out.Origin.AddressType = addrType
	out.Origin.SessionVersion = version
	conn := &sdp.ConnectionInformation{NetworkType: "IN", AddressType: addrType, Address: &sdp.Address{Address: ip.String()}}
	out.ConnectionInformation = conn
	out.MediaDescriptions = nil
	audio := false
	for _, m := range s.MediaDescriptions {
		nm := *m
		if m.MediaName.Media != "audio" || audio || m.MediaName.Port.Value == 0 {
			nm.MediaName.Port = sdp.RangedPort{Value: 0}
			nm.ConnectionInformation = nil
			nm.Attributes = nil
			out.MediaDescriptions = append(out.MediaDescriptions, &nm)
			continue
		}
		keep := map[string]bool{}
		events := map[string]bool{}
		for _, a := range m.Attributes {
			if a.Key != "rtpmap" {
				continue
			}
			pt, enc, _ := strings.Cut(a.Value, " ")
			name := strings.ToUpper(strings.SplitN(enc, "/", 2)[0])
			switch name {
			case "PCMA", "PCMU":
				keep[pt] = true
			case "TELEPHONE-EVENT":
				if strings.HasSuffix(enc, "/8000") {
					keep[pt], events[pt] = true, true
				}
			}
		}
		var formats []string
		for _, f := range m.MediaName.Formats {
			if f == "0" || f == "8" || keep[f] {
				formats = append(formats, f)
				keep[f] = true
			}
		}
		hasVoice := false
		for _, f := range formats {
			hasVoice = hasVoice || !events[f]
		}
		if !hasVoice {
			return nil, errNoCodec
		}
		audio = true
		nm.MediaName.Protos = strings.Split(proto, "/")
		nm.MediaName.Formats = formats
		nm.MediaName.Port = sdp.RangedPort{Value: port}
		nm.ConnectionInformation = nil
		nm.Attributes = nil
		for _, a := range m.Attributes {
			switch a.Key {
			case "rtpmap", "fmtp":
				pt, _, _ := strings.Cut(a.Value, " ")
				if keep[pt] {
					nm.Attributes = append(nm.Attributes, a)
				}
			case "sendrecv", "sendonly", "recvonly", "inactive", "ptime", "maxptime":
				nm.Attributes = append(nm.Attributes, a)
			}
			// Everything else (rtcp, ice, crypto, ssrc...) describes the party's
			// own transport, which the relay replaces.
		}
		out.MediaDescriptions = append(out.MediaDescriptions, &nm)
	}
	if !audio {
		return nil, errNoCodec
	}
	var attrs []sdp.Attribute
	for _, a := range s.Attributes {
		switch a.Key {
		case "sendrecv", "sendonly", "recvonly", "inactive":
			attrs = append(attrs, a)
		}
	}
	out.Attributes = attrs
	return out.Marshal()
}

// codecWarning explains a 488 for an offer without G.711 (RFC 3261 §20.43,
// warn-code 305 "Incompatible media format"): callgate relays audio and
// does not transcode.
func codecWarning(err error) []sip.Header {
	if !errors.Is(err, errNoCodec) {
		return nil
	}
	return []sip.Header{sip.NewHeader("Warning", `305 callgate "Incompatible media format: callgate relays PCMA, PCMU and telephone-event only (no transcoding)"`)}
}

// sdpVersion gives each rewritten SDP of a leg a growing o= version.
type sdpVersion struct{ n uint64 }

func (v *sdpVersion) next() uint64 { v.n++; return v.n }

func itoa(i int) string { return strconv.Itoa(i) }
