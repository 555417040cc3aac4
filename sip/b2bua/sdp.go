package b2bua

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/pion/sdp/v3"
)

// errNoCodec means the offer has no G.711 audio: answered 488.
var errNoCodec = errors.New("no acceptable codec (PCMA/PCMU)")

// media is what callgate needs from a party's SDP.
type media struct {
	addr netip.AddrPort // where the party receives RTP
	dir  string         // sendrecv, sendonly, recvonly, inactive
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
		md := media{addr: netip.AddrPortFrom(ip.Unmap(), uint16(m.MediaName.Port.Value)), dir: "sendrecv"}
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
func rewriteSDP(s *sdp.SessionDescription, ip netip.Addr, port int, version uint64) ([]byte, error) {
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

// sdpVersion gives each rewritten SDP of a leg a growing o= version.
type sdpVersion struct{ n uint64 }

func (v *sdpVersion) next() uint64 { v.n++; return v.n }

func itoa(i int) string { return strconv.Itoa(i) }
