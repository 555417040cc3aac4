package g711

import "testing"

func TestSilenceDecodesToNearZero(t *testing.T) {
	for _, pt := range []uint8{PCMA, PCMU} {
		if s := Decode(pt, Silence(pt)); s > 16 || s < -16 {
			t.Fatalf("%s silence decodes to %d", Name(pt), s)
		}
	}
}

func TestRoundTrip(t *testing.T) {
	for _, pt := range []uint8{PCMA, PCMU} {
		for _, v := range []int16{-32000, -1000, -10, 0, 10, 1000, 32000} {
			got := Decode(pt, Encode(pt, v))
			diff := int(got) - int(v)
			if diff < 0 {
				diff = -diff
			}
			if diff > int(abs(v))/16+16 {
				t.Fatalf("%s %d -> %d", Name(pt), v, got)
			}
		}
	}
}

func abs(v int16) int16 {
	if v < 0 {
		return -v
	}
	return v
}
