package opus

import (
	"encoding/binary"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"callgate/internal/testenv"
)

// phrase is a Russian phrase spoken by espeak-ng, as 8 kHz mono samples.
func phrase(t *testing.T, text string, pitch string) []float64 {
	t.Helper()
	espeak, sox := testenv.NeedTool(t, "espeak-ng"), testenv.NeedTool(t, "sox")
	dir := t.TempDir()
	wav, raw := filepath.Join(dir, "p.wav"), filepath.Join(dir, "p.raw")
	if out, err := exec.Command(espeak, "-v", "ru", "-p", pitch, "-w", wav, text).CombinedOutput(); err != nil {
		t.Fatalf("espeak-ng: %v %s", err, out)
	}
	if out, err := exec.Command(sox, wav, "-r", "8000", "-c", "1", "-b", "16", "-e", "signed", raw).CombinedOutput(); err != nil {
		t.Fatalf("sox: %v %s", err, out)
	}
	b, err := os.ReadFile(raw)
	if err != nil {
		t.Fatal(err)
	}
	out := make([]float64, len(b)/2)
	for i := range out {
		out[i] = float64(int16(binary.LittleEndian.Uint16(b[2*i:])))
	}
	return out
}

// similarity is the best normalised correlation of x with y over lags up
// to 50 ms (the codec's delay): about 0.9 for a signal and its coded
// copy, near 0 for two different phrases.
func similarity(x, y []float64) float64 {
	best := 0.0
	for lag := 0; lag < 400; lag++ {
		var xy, xx, yy float64
		for i := 0; i+lag < len(x) && i < len(y); i++ {
			xy += x[i+lag] * y[i]
			xx += x[i+lag] * x[i+lag]
			yy += y[i] * y[i]
		}
		best = max(best, xy/math.Sqrt(xx*yy+1e-9))
	}
	return best
}

// Two people talking at once stay one on each channel with the settings
// recordings use (Telephony: two mono streams): each decoded channel is its
// own phrase and carries no more of the other one than the two phrases
// share by themselves.
func TestSpeechChannelsStayApart(t *testing.T) {
	a := phrase(t, "Здравствуйте, это компания Ромашка, чем могу помочь? Я хотела бы узнать о доставке кофемашины.", "50")
	b := phrase(t, "Добрый день. Доставка по Москве занимает два дня, по области три дня.", "20")
	n := min(len(a), len(b))
	a, b = a[:n], b[:n]
	pcm := make([]int16, 2*n)
	for i := range n {
		pcm[2*i], pcm[2*i+1] = int16(a[i]), int16(b[i])
	}
	path := filepath.Join(t.TempDir(), "talk.opus")
	encodeFile(t, path, 2, pcm)
	f, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out, err := f.ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	// 48 kHz back to 8 kHz: the mean of each six samples.
	var l, r []float64
	for i := 0; i+11 < len(out); i += 12 {
		var sl, sr float64
		for j := 0; j < 12; j += 2 {
			sl, sr = sl+float64(out[i+j]), sr+float64(out[i+j+1])
		}
		l, r = append(l, sl/6), append(r, sr/6)
	}
	base := similarity(a, b)
	own, leak := min(similarity(l, a), similarity(r, b)), max(similarity(l, b), similarity(r, a))
	t.Logf("own %.2f, leak %.2f, the phrases' own similarity %.2f", own, leak, base)
	if own < 0.7 || leak > base+0.05 {
		t.Fatalf("channels after coding: own phrase %.2f (want ≥ 0.7), the other's %.2f (want ≤ %.2f)", own, leak, base+0.05)
	}
}
