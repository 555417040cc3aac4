package rtptest

import (
	"net/netip"
	"testing"
	"time"

	"callgate/media/g711"
)

func TestToneDetection(t *testing.T) {
	for _, pt := range []uint8{g711.PCMA, g711.PCMU} {
		tone := Tone{Freq: 440, PT: pt}
		var b []byte
		for i := 0; i < 25; i++ {
			b = tone.Frame(b)
		}
		s := Decode(pt, b)
		if !Has(s, 440) || Has(s, 1000) || Has(s, 350) {
			t.Fatalf("%s: 440 %v 1000 %v", g711.Name(pt), Has(s, 440), Has(s, 1000))
		}
	}
	silence := make([]float64, 4000)
	if Has(silence, 440) {
		t.Fatal("tone found in silence")
	}
}

// Two peers talking directly: each hears the other's tone and DTMF.
func TestPeersExchangeAudio(t *testing.T) {
	a, err := NewPeer(440, g711.PCMA)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := NewPeer(1000, g711.PCMA)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	a.SendTo(b.Addr())
	b.SendTo(a.Addr())
	a.DTMF(5)
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if Has(a.Heard(300*time.Millisecond), 1000) && Has(b.Heard(300*time.Millisecond), 440) && len(b.Events()) == 1 {
			if Has(a.Heard(300*time.Millisecond), 440) {
				t.Fatal("a hears its own tone")
			}
			if b.Events()[0] != 5 {
				t.Fatalf("events %v", b.Events())
			}
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("audio not exchanged: a has 1000 Hz %v, b has 440 Hz %v, events %v", Has(a.Heard(300*time.Millisecond), 1000), Has(b.Heard(300*time.Millisecond), 440), b.Events())
}

// MaxGap measures silence at the receiver: about a packet interval while
// audio flows, the pause when the sender stops.
func TestMaxGap(t *testing.T) {
	a, err := NewPeer(440, g711.PCMA)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := NewPeer(1000, g711.PCMA)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	a.SendTo(b.Addr())
	time.Sleep(300 * time.Millisecond)
	b.ResetGap()
	time.Sleep(300 * time.Millisecond)
	if g := b.MaxGap(); g > 200*time.Millisecond {
		t.Fatalf("gap %s while packets flow every 20 ms", g)
	}
	a.SendTo(netip.MustParseAddrPort("127.0.0.1:9")) // a pause at b
	time.Sleep(400 * time.Millisecond)
	a.SendTo(b.Addr())
	time.Sleep(200 * time.Millisecond)
	if g := b.MaxGap(); g < 350*time.Millisecond {
		t.Fatalf("gap %s, want the 400 ms pause", g)
	}
}
