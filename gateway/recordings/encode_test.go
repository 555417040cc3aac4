package recordings

import (
	"context"
	"encoding/binary"
	"io"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"callgate/internal/testenv"
	"callgate/media/g711"
	"callgate/media/opus"
	"callgate/media/record"
	"callgate/media/rtptest"
)

// writeWAV writes a recording as the recorder does: left lf Hz, right rf
// Hz. claim is the frame count the header states (-1: the true one; 0:
// none, as a crash before the first header update leaves it).
func writeWAV(t *testing.T, path string, seconds, lf, rf float64, claim int) {
	t.Helper()
	frames := int(8000 * seconds)
	pcm := make([]int16, 2*frames)
	for i := range frames {
		x := float64(i) / 8000
		pcm[2*i], pcm[2*i+1] = int16(9000*math.Sin(2*math.Pi*lf*x)), int16(9000*math.Sin(2*math.Pi*rf*x))
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := record.WriteWAV(path, g711.PCMA, pcm); err != nil {
		t.Fatal(err)
	}
	if claim >= 0 { // the sizes a crash left: RIFF, fact and data
		f, err := os.OpenFile(path, os.O_RDWR, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		for off, v := range map[int64]uint32{4: uint32(50 + 2*claim), 46: uint32(claim), 54: uint32(2 * claim)} {
			var b [4]byte
			binary.LittleEndian.PutUint32(b[:], v)
			if _, err := f.WriteAt(b[:], off); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// decoded is an Ogg Opus recording's channels at 8 kHz and its length.
func decoded(t *testing.T, path string) (left, right []float64, seconds float64) {
	t.Helper()
	left, right, seconds, err := opus.Channels8k(path)
	if err != nil {
		t.Fatal(err)
	}
	return left, right, seconds
}

// runEncoders runs the library's encoders until every recording waiting is
// done, then stops them.
func runEncoders(t *testing.T, l *Library) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { l.RunEncoders(ctx); close(done) }()
	deadline := time.Now().Add(20 * time.Second)
	for time.Sleep(20 * time.Millisecond); l.enc.backlog.Load() > 0; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d recordings still waiting", l.enc.backlog.Load())
		}
	}
	cancel()
	<-done
}

// A complete recording becomes Ogg Opus: the client's tone on the left and
// the employee's on the right, as long as the WAV was, with the WAV's time
// (retention counts from the call's end); the WAV is gone and the name the
// call record keeps opens the Ogg Opus file with its content type. A WAV a
// crash left with a header claiming nothing or too much is encoded as far
// as it holds audio; one that is not a recording is kept, counted and
// logged; an encoding a crash cut short is dropped and made again.
func TestRecordingsCompressedAfterTheCall(t *testing.T) {
	dir := t.TempDir()
	l := New(Config{Enabled: true, Dir: dir, Format: FormatOpus})
	ended := time.Now().Add(-time.Hour).Truncate(time.Second)
	day := filepath.Join(dir, "2026", "12", "03")
	whole, noHeader, overClaim, junk := filepath.Join(day, "c1-1.wav"), filepath.Join(day, "c2-1.wav"), filepath.Join(day, "c3-1.wav"), filepath.Join(day, "c4-1.wav")
	writeWAV(t, whole, 3, 440, 1000, -1)
	writeWAV(t, noHeader, 2, 440, 1000, 0)
	writeWAV(t, overClaim, 1.5, 440, 1000, 8000*60)
	_ = os.WriteFile(junk, []byte("not a recording"), 0o600)
	_ = os.WriteFile(filepath.Join(day, "c1-1.opus.tmp"), []byte("half"), 0o600)
	for _, p := range []string{whole, noHeader, overClaim, junk} {
		_ = os.Chtimes(p, ended, ended)
	}
	runEncoders(t, l)

	for p, want := range map[string]float64{whole: 3, noHeader: 2, overClaim: 1.5} {
		ogg := strings.TrimSuffix(p, ".wav") + ".opus"
		if _, err := os.Stat(p); !os.IsNotExist(err) {
			t.Errorf("%s: the WAV is still there (%v)", p, err)
		}
		left, right, secs := decoded(t, ogg)
		if math.Abs(secs-want) > 0.1 {
			t.Errorf("%s lasts %.3f s, its WAV %.1f s", ogg, secs, want)
		}
		mid := func(ch []float64) []float64 { return ch[len(ch)/4 : 3*len(ch)/4] }
		if !rtptest.Has(mid(left), 440) || !rtptest.Has(mid(right), 1000) || rtptest.Has(mid(left), 1000) || rtptest.Has(mid(right), 440) {
			t.Errorf("%s: want 440 Hz left and 1000 Hz right only", ogg)
		}
		if st, err := os.Stat(ogg); err != nil || !st.ModTime().Equal(ended) {
			t.Errorf("%s: time %v, want the call's end %v (%v)", ogg, st.ModTime(), ended, err)
		}
	}
	if _, err := os.Stat(filepath.Join(day, "c1-1.opus.tmp")); !os.IsNotExist(err) {
		t.Error("the interrupted encoding's temporary file is still there")
	}
	if _, err := os.Stat(junk); err != nil || l.enc.failed.Load() != 1 || l.enc.done.Load() != 3 {
		t.Errorf("not a recording: kept %v, failed %d, done %d", err, l.enc.failed.Load(), l.enc.done.Load())
	}
	if l.enc.cpu.Load() <= 0 {
		t.Error("the encoders' CPU time is not counted")
	}
	f, err := l.Open(filepath.Join("2026", "12", "03", "c1-1.wav"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	head := make([]byte, 4)
	if _, err := io.ReadFull(f, head); err != nil || string(head) != "OggS" || f.Type != "audio/ogg; codecs=opus" || f.Name != "c1-1.opus" {
		t.Fatalf("opened %q as %s named %s (%v)", head, f.Type, f.Name, err)
	}
	if u := l.Usage(); u.Files != 3+1 || u.EncodeBacklog != 0 { // the three Ogg Opus files and the kept WAV
		t.Errorf("usage %+v", u)
	}
	// Retention deletes the Ogg Opus files like the WAVs.
	l.SetLimits(time.Minute, 0)
	gone, err := l.Sweep(time.Now())
	if err != nil || len(gone) != 4 {
		t.Fatalf("retention deleted %q (%v), want the three Ogg Opus files and the kept WAV", gone, err)
	}
}

// A leg's recording is handed to the encoders as it closes; with the WAV
// format it stays as recorded.
func TestClosedLegIsQueued(t *testing.T) {
	for _, format := range []string{FormatOpus, FormatWAV} {
		dir := t.TempDir()
		l := New(Config{Enabled: true, Dir: dir, Format: format})
		rec, err := l.Start("call-1", 1, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		if _, err := rec.Close(); err != nil {
			t.Fatal(err)
		}
		runEncoders(t, l)
		_, errWAV := os.Stat(rec.Path())
		_, errOpus := os.Stat(strings.TrimSuffix(rec.Path(), ".wav") + ".opus")
		if format == FormatOpus && (errWAV == nil || errOpus != nil) || format == FormatWAV && (errWAV != nil || errOpus == nil) {
			t.Fatalf("%s: wav %v, opus %v", format, errWAV, errOpus)
		}
	}
}

// speechTurns is ten minutes of a call as stereo samples at 8 kHz: Russian
// phrases spoken by espeak-ng, the client (left) and the employee (right)
// taking turns, the other side silent meanwhile.
func speechTurns(b *testing.B) []int16 {
	espeak, sox := testenv.NeedTool(b, "espeak-ng"), testenv.NeedTool(b, "sox")
	lines := []string{
		"Здравствуйте, компания Ромашка, меня зовут Анна, чем могу помочь?",
		"Добрый день. Я хотел бы узнать, когда привезут мой заказ номер тысяча сорок два.",
		"Одну минуту, сейчас посмотрю. Ваш заказ передан в доставку, курьер приедет завтра с десяти до двух.",
		"А можно перенести доставку на пятницу? Завтра меня не будет дома.",
		"Конечно, я перенесу доставку на пятницу, курьер позвонит за час до приезда.",
		"Спасибо большое, до свидания.",
	}
	var turns [][]int16
	dir := b.TempDir()
	for i, line := range lines {
		wav, raw := filepath.Join(dir, "l.wav"), filepath.Join(dir, "l.raw")
		if out, err := exec.Command(espeak, "-v", "ru", "-p", []string{"60", "25"}[i%2], "-w", wav, line).CombinedOutput(); err != nil {
			b.Fatalf("espeak-ng: %v %s", err, out)
		}
		if out, err := exec.Command(sox, wav, "-r", "8000", "-c", "1", "-b", "16", "-e", "signed", raw).CombinedOutput(); err != nil {
			b.Fatalf("sox: %v %s", err, out)
		}
		data, _ := os.ReadFile(raw)
		mono := make([]int16, len(data)/2)
		for j := range mono {
			mono[j] = int16(binary.LittleEndian.Uint16(data[2*j:]))
		}
		turns = append(turns, mono)
	}
	var pcm []int16
	for len(pcm) < 2*8000*600 {
		for i, mono := range turns {
			for _, v := range mono {
				if i%2 == 0 {
					pcm = append(pcm, v, 0)
				} else {
					pcm = append(pcm, 0, v)
				}
			}
			pcm = append(pcm, make([]int16, 2*4000)...) // half a second between turns
		}
	}
	return pcm[:2*8000*600]
}

// BenchmarkEncodeCallHour is the encoder's CPU time and output size for
// one hour of a call's stereo recording (measured on ten minutes): speech
// taking turns, and tones on both sides at once (440 Hz client, 1000 Hz
// employee), the WAV read, the Ogg Opus file written, synced and its length
// read back.
// go test -run '^$' -bench EncodeCallHour -benchtime 3x ./gateway/recordings
func BenchmarkEncodeCallHour(b *testing.B) {
	for _, content := range []string{"speech-turns", "tones"} {
		b.Run(content, func(b *testing.B) {
			dir := b.TempDir()
			src := filepath.Join(dir, "src.wav")
			if content == "tones" {
				writeWAV(&testing.T{}, src, 600, 440, 1000, -1)
			} else if err := record.WriteWAV(src, g711.PCMA, speechTurns(b)); err != nil {
				b.Fatal(err)
			}
			data, _ := os.ReadFile(src)
			l := New(Config{Enabled: true, Dir: dir, Format: FormatOpus})
			var cpu time.Duration
			var size int64
			for b.Loop() {
				p := filepath.Join(dir, "leg.wav")
				_ = os.WriteFile(p, data, 0o600)
				before := cpuTime()
				if err := l.enc.encodeFile(p); err != nil {
					b.Fatal(err)
				}
				cpu += cpuTime() - before
				st, _ := os.Stat(strings.TrimSuffix(p, ".wav") + ".opus")
				size = st.Size()
			}
			b.ReportMetric(cpu.Seconds()*6/float64(b.N), "cpu-s/call-hour")
			b.ReportMetric(float64(size)*6/1e6, "MB/call-hour")
		})
	}
}
