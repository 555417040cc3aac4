package opus

import (
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// tones is interleaved stereo at rate: left lf Hz, right rf Hz.
func tones(rate int, seconds float64, lf, rf float64) []int16 {
	n := int(float64(rate) * seconds)
	pcm := make([]int16, 2*n)
	for i := range n {
		t := float64(i) / float64(rate)
		pcm[2*i] = int16(8000 * math.Sin(2*math.Pi*lf*t))
		pcm[2*i+1] = int16(8000 * math.Sin(2*math.Pi*rf*t))
	}
	return pcm
}

// encodeFile writes pcm (channels interleaved, 8 kHz) to path with the
// recordings' settings.
func encodeFile(t *testing.T, path string, channels int, pcm []int16) {
	t.Helper()
	enc, err := Create(path, 8000, channels, Telephony())
	if err != nil {
		t.Fatal(err)
	}
	if err := enc.Write(pcm); err != nil {
		t.Fatal(err)
	}
	if err := enc.Close(); err != nil {
		t.Fatal(err)
	}
}

// power is the share of ch's energy at freq (Goertzel over the whole
// slice, rate Hz): about 1/2 for a pure tone, near 0 without it.
func power(ch []float64, rate int, freq float64) float64 {
	k := 2 * math.Cos(2*math.Pi*freq/float64(rate))
	var s1, s2, e float64
	for _, x := range ch {
		s1, s2 = x+k*s1-s2, s1
		e += x * x
	}
	p := s1*s1 + s2*s2 - k*s1*s2
	return p / (e * float64(len(ch)) / 2)
}

// What is written at 8 kHz reads back at 48 kHz as long as it was made,
// each channel carrying its own tone and not the other's.
func TestStereoTonesRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), "call.opus")
	o := Telephony()
	o.Tags = map[string]string{"TITLE": "c1-1"}
	enc, err := Create(path, 8000, 2, o)
	if err != nil {
		t.Fatal(err)
	}
	pcm := tones(8000, 3, 440, 1000)
	for len(pcm) > 0 { // in pieces, as a stream comes
		n := min(len(pcm), 2*333)
		if err := enc.Write(pcm[:n]); err != nil {
			t.Fatal(err)
		}
		pcm = pcm[n:]
	}
	if err := enc.Close(); err != nil {
		t.Fatal(err)
	}
	f, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	n, err := f.Samples()
	if err != nil || f.Channels() != 2 {
		t.Fatalf("samples %d, channels %d, %v", n, f.Channels(), err)
	}
	if n != 3*Rate {
		t.Fatalf("lasts %d samples at 48 kHz, written 3 s", n)
	}
	out, err := f.ReadAll()
	if err != nil || int64(len(out)) != 2*n {
		t.Fatalf("decoded %d samples of %d: %v", len(out)/2, n, err)
	}
	var l, r []float64
	for i := len(out) / 4; i+1 < 3*len(out)/4; i += 2 {
		l, r = append(l, float64(out[i])), append(r, float64(out[i+1]))
	}
	if pl, pr := power(l, Rate, 440), power(r, Rate, 1000); pl < 0.3 || pr < 0.3 {
		t.Fatalf("tones after the round trip: left 440 Hz %.2f, right 1000 Hz %.2f", pl, pr)
	}
	if x, y := power(l, Rate, 1000), power(r, Rate, 440); x > 0.05 || y > 0.05 {
		t.Fatalf("channels leak into each other: %.2f %.2f", x, y)
	}
	if st, _ := os.Stat(path); st.Size() > 3*16000/8*2 {
		t.Fatalf("3 s at 16 kbit/s took %d bytes", st.Size())
	}
}

// Whatever the length, the file decodes to exactly as many samples as
// were written: the encoder's delay is skipped at the start and the
// padding after the end trimmed.
func TestExactLength(t *testing.T) {
	for _, frames := range []int{1, 7, 479, 480, 481, 959, 8000*2 + 13, 24000, 24001, 23999, 24400} {
		for _, ch := range []int{1, 2} {
			path := filepath.Join(t.TempDir(), "x.opus")
			pcm := tones(8000, float64(frames)/8000, 440, 1000)[:2*frames]
			if ch == 1 {
				pcm = pcm[:frames]
			}
			encodeFile(t, path, ch, pcm)
			f, err := Open(path)
			if err != nil {
				t.Fatalf("%d frames, %d channels: %v", frames, ch, err)
			}
			n, err := f.Samples()
			out, rerr := f.ReadAll()
			f.Close()
			if err != nil || rerr != nil || n != int64(frames*6) || len(out) != frames*6*ch || f.Channels() != ch {
				t.Fatalf("%d frames, %d channels: %d samples (%d decoded, %d channels), want %d: %v %v",
					frames, ch, n, len(out)/ch, f.Channels(), frames*6, err, rerr)
			}
			if n, err := Check(path); err != nil || n != int64(frames*6) {
				t.Fatalf("%d frames, %d channels: Check says %d samples (%v)", frames, ch, n, err)
			}
		}
	}
}

// Check finds what a crash or a bad disk does to a file: cut short, a
// page damaged, the last page lost.
func TestCheckFindsDamage(t *testing.T) {
	path := filepath.Join(t.TempDir(), "call.opus")
	encodeFile(t, path, 2, tones(8000, 20, 440, 1000))
	good, _ := os.ReadFile(path)
	if n, err := Check(path); err != nil || n != 20*Rate {
		t.Fatalf("the whole file: %d samples (%v)", n, err)
	}
	lastPage := strings.LastIndex(string(good), "OggS")
	damaged := append([]byte(nil), good...)
	damaged[len(good)/2] ^= 0x55
	for name, data := range map[string][]byte{
		"cut short":      good[:len(good)/2],
		"page damaged":   damaged,
		"last page lost": good[:lastPage],
		"empty":          {},
		"not ogg":        []byte("RIFF....WAVEfmt "),
	} {
		p := filepath.Join(t.TempDir(), "x.opus")
		_ = os.WriteFile(p, data, 0o600)
		if n, err := Check(p); err == nil {
			t.Fatalf("%s: passes as %d samples", name, n)
		}
	}
	if _, err := Check(filepath.Join(t.TempDir(), "missing.opus")); err == nil {
		t.Fatal("a missing file passes")
	}
}

// Bad input: a file that is not Ogg Opus, a missing one, impossible
// formats and a write after close are errors, never crashes.
func TestBadInput(t *testing.T) {
	dir := t.TempDir()
	junk := filepath.Join(dir, "junk.opus")
	_ = os.WriteFile(junk, []byte("RIFF....WAVEfmt not an ogg file at all"), 0o600)
	for _, p := range []string{junk, filepath.Join(dir, "missing.opus")} {
		if f, err := Open(p); err == nil {
			f.Close()
			t.Fatalf("%s opened", p)
		}
	}
	if _, err := Create(filepath.Join(dir, "x.opus"), 8000, 3, Options{}); err == nil {
		t.Fatal("three channels accepted")
	}
	if _, err := Create(filepath.Join(dir, "no", "such", "dir.opus"), 8000, 2, Options{}); err == nil {
		t.Fatal("a file in a missing directory was created")
	}
	// Nothing written: a valid, (nearly) empty file, not an abort.
	empty := filepath.Join(dir, "y.opus")
	enc, err := Create(empty, 8000, 1, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := enc.Close(); err != nil {
		t.Fatal(err)
	}
	if f, err := Open(empty); err != nil {
		t.Fatalf("an empty recording: %v", err)
	} else if n, _ := f.Samples(); n > Rate/50 {
		t.Fatalf("an empty recording lasts %d samples", n)
	} else {
		f.Close()
	}
	if err := enc.Write([]int16{1, 2}); err == nil {
		t.Fatal("write after close accepted")
	}
	if _, err := Create(filepath.Join(dir, "z.opus"), 44100, 2, Options{}); err == nil {
		t.Fatal("a rate libopus does not code accepted")
	}
	if _, err := Create(filepath.Join(dir, "z.opus"), 8000, 2, Options{FrameMs: 30}); err == nil {
		t.Fatal("30 ms packets accepted")
	}
	odd, err := Create(filepath.Join(dir, "odd.opus"), 8000, 2, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := odd.Write([]int16{1, 2, 3}); err == nil {
		t.Fatal("half a stereo frame accepted")
	}
	_ = odd.Close()
}

// FuzzOpen: whatever bytes sit in a file named .opus, opening, decoding and
// checking it return an error or audio, never a crash.
func FuzzOpen(f *testing.F) {
	dir := f.TempDir()
	good := filepath.Join(dir, "good.opus")
	enc, _ := Create(good, 8000, 2, Options{Bitrate: 16000})
	_ = enc.Write(tones(8000, 0.2, 440, 1000))
	_ = enc.Close()
	b, _ := os.ReadFile(good)
	f.Add(b)
	f.Add(b[:len(b)/2])
	f.Add([]byte("OggS"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		p := filepath.Join(t.TempDir(), "x.opus")
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		_, _ = Check(p)
		file, err := Open(p)
		if err != nil {
			return
		}
		defer file.Close()
		_, _ = file.Samples()
		_, _ = file.ReadAll()
	})
}
