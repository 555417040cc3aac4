// Package g711 names the two G.711 codecs as RTP payload types and converts
// single samples; the conversion tables come from github.com/zaf/g711.
package g711

import "github.com/zaf/g711"

// RTP payload types of the static G.711 codecs (RFC 3551).
const (
	PCMU uint8 = 0
	PCMA uint8 = 8
)

// Silence is the encoded value of a zero sample: what a recording writes for
// a side that sends nothing.
func Silence(pt uint8) byte {
	if pt == PCMU {
		return 0xFF
	}
	return 0xD5
}

// Decode returns the linear sample of an encoded byte.
func Decode(pt uint8, b byte) int16 {
	if pt == PCMU {
		return g711.DecodeUlawFrame(b)
	}
	return g711.DecodeAlawFrame(b)
}

// Encode returns the encoded byte of a linear sample.
func Encode(pt uint8, s int16) byte {
	if pt == PCMU {
		return g711.EncodeUlawFrame(s)
	}
	return g711.EncodeAlawFrame(s)
}

// Name is the SDP encoding name of a payload type ("PCMA", "PCMU").
func Name(pt uint8) string {
	if pt == PCMU {
		return "PCMU"
	}
	return "PCMA"
}
