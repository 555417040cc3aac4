package e2e

import (
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"callgate/crm/crmtest"
	"callgate/media/g711"
	"callgate/media/opus"
	"callgate/media/record"
	"callgate/media/rtptest"

	"github.com/chromedp/chromedp"
)

// opusChannels decodes an Ogg Opus recording to its two channels at 8 kHz
// and its length in seconds.
func opusChannels(t *testing.T, path string) (left, right []float64, seconds float64) {
	t.Helper()
	left, right, seconds, err := opus.Channels8k(path)
	if err != nil {
		t.Fatal(err)
	}
	return left, right, seconds
}

// With recording.format = "opus", a call's recording ends as Ogg Opus: the
// WAV is gone, the file decodes to the client's tone on the left and the
// employee's on the right for as long as they talked; the API serves it
// as audio/ogg with Range, and the console in Chromium plays it.
func TestCallRecordedAsOggOpus(t *testing.T) {
	st := crmtest.NewRetailCRM(retailKey)
	t.Cleanup(st.Close)
	o := consoleOffice(t, st, officeOpts{Format: "opus"})
	ctx := withTimeout(t, 60*time.Second)
	outside, ivanov := tonePeers(t)
	vpbxSide, _, _ := o.talking(ctx, outside, ivanov)
	time.Sleep(2 * time.Second)
	if err := vpbxSide.Hangup(ctx); err != nil {
		t.Fatal(err)
	}
	rec := o.lastCall()
	if len(rec.Legs) != 1 || rec.Legs[0].Recording == "" {
		t.Fatalf("legs %+v", rec.Legs)
	}
	leg := rec.Legs[0]
	wav := filepath.Join(o.recDir, leg.Recording)
	ogg := strings.TrimSuffix(wav, ".wav") + ".opus"
	o.d.waitFor("the recording compressed", 20*time.Second, func() bool {
		_, errWAV := os.Stat(wav)
		_, errOgg := os.Stat(ogg)
		return os.IsNotExist(errWAV) && errOgg == nil
	})
	left, right, secs := opusChannels(t, ogg)
	// The recording runs from the first packet to the hang-up: as long as
	// the media the parties sent (20 ms a packet), whatever the signalling
	// took before it.
	if rec.RTP == nil {
		t.Fatal("no RTP statistics on the record")
	}
	sent := float64(max(rec.RTP.Outside.Packets, rec.RTP.Employee.Packets)) * 0.02
	if d := math.Abs(secs - sent); d > 0.1 || secs > leg.TalkSeconds+0.1 {
		t.Fatalf("the Ogg Opus file lasts %.3f s; the parties sent %.3f s of media; the leg talked %.3f s", secs, sent, leg.TalkSeconds)
	}
	mid := func(ch []float64) []float64 { return ch[len(ch)/4 : 3*len(ch)/4] }
	if !rtptest.Has(mid(left), 440) || !rtptest.Has(mid(right), 1000) {
		t.Fatalf("want the client's 440 Hz on the left and ivanov's 1000 Hz on the right")
	}
	if v := o.d.metric("callgate_recording_encoded_total"); v != 1 {
		t.Fatalf("callgate_recording_encoded_total %v", v)
	}

	// The API: the whole file as audio/ogg, and a range of it.
	url := o.d.url("/api/v1/recordings/" + rec.ID + "-1")
	for _, rng := range []string{"", "bytes=0-99"} {
		req, _ := http.NewRequest("GET", url, nil)
		req.Header.Set("Authorization", "Bearer "+testToken)
		if rng != "" {
			req.Header.Set("Range", rng)
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		want := map[string]int{"": 200, "bytes=0-99": 206}[rng]
		if res.StatusCode != want || res.Header.Get("Content-Type") != "audio/ogg; codecs=opus" || !strings.HasPrefix(string(body), "OggS") ||
			(rng != "" && len(body) != 100) || !strings.Contains(res.Header.Get("Content-Disposition"), ".opus") {
			t.Fatalf("GET %q: %d %s %q, %d bytes", rng, res.StatusCode, res.Header.Get("Content-Type"), res.Header.Get("Content-Disposition"), len(body))
		}
	}

	// The console plays it.
	b := browser(t)
	login(t, b, o.d.url(""), "ivanov")
	duration := value(t, b, "the Ogg Opus recording's duration in Chromium", chromedp.Poll[float64](
		recordingDuration(rec.ID),
		chromedp.WithPollingTimeout(10*time.Second)))
	if math.Abs(duration-secs) > 0.1 {
		t.Fatalf("Chromium reads %.2f s, the file lasts %.2f s", duration, secs)
	}
	// And decodes it: two channels (the file's two mono streams), the
	// client's tone louder on the left at 440 Hz than on the right.
	browse(t, b, "decode the recording with WebAudio", chromedp.Evaluate[chromedp.Void](`window.__decoded = '';
		fetch('/api/v1/recordings/`+rec.ID+`-1').then(r => r.arrayBuffer()).then(buf => new OfflineAudioContext(2, 8000, 8000).decodeAudioData(buf))
		.then(a => { const e = (ch) => a.getChannelData(ch).reduce((s, x) => s + x * x, 0); window.__decoded = a.numberOfChannels + ' ' + a.duration.toFixed(2) + ' ' + (e(0) > 0 && e(1) > 0) })
		.catch(e => { window.__decoded = 'error ' + e })`))
	decoded := value(t, b, "the recording decoded in Chromium", chromedp.Poll[string](`window.__decoded`, chromedp.WithPollingTimeout(10*time.Second)))
	if want := fmt.Sprintf("2 %.2f true", secs); decoded != want && decoded != fmt.Sprintf("2 %.2f true", secs+0.01) && decoded != fmt.Sprintf("2 %.2f true", secs-0.01) {
		t.Fatalf("Chromium decodes the recording as %q, want %q", decoded, want)
	}
	screenshot(t, b, "history-opus")
}

// A crash in the middle of compressing loses nothing: callgate is killed
// (SIGKILL) while it encodes a 5-minute recording left from before; the
// WAV is still there; the next start drops the half-written file,
// encodes again and only then removes the WAV.
func TestKillDuringEncodingLosesNothing(t *testing.T) {
	cfg := newDaemonConfig(t, "")
	cfg.Format = "opus"
	day := filepath.Join(cfg.DataDir, "recordings", "2026", "11", "30")
	if err := os.MkdirAll(day, 0o750); err != nil {
		t.Fatal(err)
	}
	wav := filepath.Join(day, "long-call-1.wav")
	const minutes = 5
	pcm := make([]int16, 2*8000*60*minutes)
	for i := 0; i < len(pcm)/2; i++ {
		x := float64(i) / 8000
		pcm[2*i], pcm[2*i+1] = int16(9000*math.Sin(2*math.Pi*440*x)), int16(9000*math.Sin(2*math.Pi*1000*x))
	}
	if err := record.WriteWAV(wav, g711.PCMA, pcm); err != nil {
		t.Fatal(err)
	}
	ogg, tmp := strings.TrimSuffix(wav, ".wav")+".opus", strings.TrimSuffix(wav, ".wav")+".opus.tmp"
	d := startDaemon(t, cfg)
	d.waitFor("the encoding under way", 30*time.Second, func() bool { _, err := os.Stat(tmp); return err == nil })
	d.kill()
	if _, err := os.Stat(wav); err != nil {
		t.Fatalf("the WAV after the crash: %v", err)
	}
	if _, err := os.Stat(ogg); err == nil {
		t.Fatal("an Ogg Opus file was put in place by an encoding that never finished")
	}
	d = startDaemon(t, cfg)
	d.waitFor("the encoding finished after the restart", 120*time.Second, func() bool {
		_, errWAV := os.Stat(wav)
		_, errOgg := os.Stat(ogg)
		return os.IsNotExist(errWAV) && errOgg == nil
	})
	if _, err := os.Stat(tmp); !os.IsNotExist(err) {
		t.Fatalf("the half-written file is still there: %v", err)
	}
	left, right, secs := opusChannels(t, ogg)
	if math.Abs(secs-60*minutes) > 0.1 {
		t.Fatalf("the Ogg Opus file lasts %.3f s, the WAV %d s", secs, 60*minutes)
	}
	mid := func(ch []float64) []float64 { return ch[len(ch)/2 : len(ch)/2+8000] }
	if !rtptest.Has(mid(left), 440) || !rtptest.Has(mid(right), 1000) {
		t.Fatal("want 440 Hz left and 1000 Hz right")
	}
	if v := d.metric("callgate_recording_encoded_total"); v != 1 {
		t.Fatalf("callgate_recording_encoded_total %v", v)
	}
}
