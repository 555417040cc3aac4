package record

import (
	"errors"
	"math"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"callgate/media/g711"
	"callgate/media/rtptest"
)

// feed pushes n 20 ms packets of a tone for side, starting at RTP ts0,
// spaced in real time so arrival times match timestamps.
func feed(c *Call, side int, tone *rtptest.Tone, ts0 uint32, n int, skip map[int]bool) {
	var buf []byte
	for i := 0; i < n; i++ {
		buf = tone.Frame(buf[:0])
		if !skip[i] {
			c.Push(side, uint16(i), ts0+uint32(160*i), tone.PT, buf)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestStereoChannelsGapsAndLength(t *testing.T) {
	dir := t.TempDir()
	r := &Recorder{Dir: dir}
	start := time.Now()
	c, err := r.Start("call/../x", "1", start)
	if err != nil {
		t.Fatal(err)
	}
	if filepath.Dir(c.Path()) != dir {
		t.Fatalf("path %s escapes the recordings directory", c.Path())
	}
	left := &rtptest.Tone{Freq: 440, PT: g711.PCMA}
	right := &rtptest.Tone{Freq: 1000, PT: g711.PCMA}
	done := make(chan struct{})
	go func() {
		// The outside party loses 20 packets (400 ms) in the middle.
		skip := map[int]bool{}
		for i := 40; i < 60; i++ {
			skip[i] = true
		}
		feed(c, 0, left, 12345, 100, skip)
		close(done)
	}()
	feed(c, 1, right, 999999, 100, nil)
	<-done
	talk := time.Since(start)
	size, err := c.Close()
	if err != nil {
		t.Fatal(err)
	}
	info, err := ReadInfo(c.Path())
	if err != nil || info.PT != g711.PCMA {
		t.Fatalf("info %+v %v", info, err)
	}
	if size != int64(headerLen)+2*int64(info.Frames) {
		t.Fatalf("size %d does not match header frames %d", size, info.Frames)
	}
	if d := math.Abs(float64(info.Frames)/8000 - talk.Seconds()); d > 0.1 {
		t.Fatalf("recording %.3fs, talk %.3fs", float64(info.Frames)/8000, talk.Seconds())
	}
	l, rt, _ := Channels(c.Path())
	seg := func(ch []float64, from, to float64) []float64 { return ch[int(from*8000):int(to*8000)] }
	if !rtptest.Has(seg(l, 0.1, 0.7), 440) || rtptest.Has(seg(l, 0.1, 0.7), 1000) {
		t.Fatal("left channel is not the outside party's 440 Hz")
	}
	if !rtptest.Has(seg(rt, 0.1, 0.7), 1000) || rtptest.Has(seg(rt, 0.1, 0.7), 440) {
		t.Fatal("right channel is not the employee's 1000 Hz")
	}
	if e := rtptest.Energy(seg(l, 0.85, 1.15)); e > 1e-4 {
		t.Fatalf("lost packets not recorded as silence (energy %g)", e)
	}
	if r.Bytes.Load() != 2*uint64(info.Frames) {
		t.Fatalf("bytes counter %d", r.Bytes.Load())
	}
}

func TestSilentSideAndCrashRepair(t *testing.T) {
	dir := t.TempDir()
	r := &Recorder{Dir: dir}
	c, err := r.Start("crash", "1", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	feed(c, 0, &rtptest.Tone{Freq: 440, PT: g711.PCMU}, 0, 75, nil) // 1.5 s, the employee says nothing
	// Simulate kill -9: the writer stops, the file stays as it is on disk.
	c.f.(*os.File).Sync()
	path := c.Path()
	repaired, err := RepairActive(dir)
	if err != nil || len(repaired) != 1 || repaired[0] != path {
		t.Fatalf("repaired %v %v", repaired, err)
	}
	info, err := ReadInfo(path)
	if err != nil || info.PT != g711.PCMU {
		t.Fatalf("%+v %v", info, err)
	}
	st, _ := os.Stat(path)
	if int64(info.Frames)*2+headerLen != st.Size() || info.Frames < 4000 {
		t.Fatalf("header says %d frames, file holds %d bytes", info.Frames, st.Size())
	}
	l, rt, _ := Channels(path)
	if !rtptest.Has(l[800:4000], 440) || rtptest.Energy(rt) > 1e-4 {
		t.Fatal("repaired file lost its audio or the silent side is not silent")
	}
	c.Close()
}

// lowSpace is a disk whose free space the test sets.
type lowSpace struct{ low atomic.Bool }

func (s *lowSpace) Low() bool { return s.low.Load() }

func TestSpaceGuardsStart(t *testing.T) {
	dir := t.TempDir()
	space := &lowSpace{}
	space.low.Store(true)
	r := &Recorder{Dir: dir, Space: space}
	if _, err := r.Start("x", "1", time.Now()); !errors.Is(err, ErrLowDisk) || r.Skipped.Load() != 1 {
		t.Fatalf("err %v skipped %d", err, r.Skipped.Load())
	}
	space.low.Store(false)
	c, err := r.Start("x", "1", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
}

func TestNameOutsideDirRefused(t *testing.T) {
	dir := t.TempDir()
	for _, name := range []string{"../x.wav", "/tmp/x.wav", ""} {
		r := &Recorder{Dir: dir, Name: func(string, string, time.Time) string { return name }}
		if c, err := r.Start("x", "1", time.Now()); err == nil {
			c.Close()
			t.Fatalf("name %q accepted: %s", name, c.Path())
		}
	}
	r := &Recorder{Dir: dir, Name: func(id, leg string, at time.Time) string { return filepath.Join("a", "b", FileName(id, leg)) }}
	c, err := r.Start("x", "1", time.Now())
	if err != nil || c.Path() != filepath.Join(dir, "a", "b", "x-1.wav") {
		t.Fatalf("named %v: %v", c, err)
	}
	c.Close()
}

func TestInProgress(t *testing.T) {
	dir := t.TempDir()
	r := &Recorder{Dir: dir}
	done, _ := r.Start("done", "1", time.Now())
	done.Close()
	open, _ := r.Start("open", "1", time.Now())
	if got := InProgress(dir); len(got) != 1 || !got[open.Path()] {
		t.Fatalf("in progress: %v", got)
	}
	open.Close()
	if got := InProgress(dir); len(got) != 0 {
		t.Fatalf("in progress after close: %v", got)
	}
}

// BenchmarkPush measures handing one packet to the recorder (the cost on
// the relay's path).
func BenchmarkPush(b *testing.B) {
	r := &Recorder{Dir: b.TempDir()}
	c, _ := r.Start("bench", "1", time.Now())
	defer c.Close()
	payload := make([]byte, 160)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		c.Push(i&1, uint16(i), uint32(i/2)*160, g711.PCMA, payload)
	}
}

// With the writers stalled, a call's queue fills and Push drops and counts
// instead of blocking the relay.
func TestFullQueueDropsAndCounts(t *testing.T) {
	r := &Recorder{Dir: t.TempDir()}
	// Set the recorder up without starting its writers.
	r.once.Do(func() {
		r.work = make(chan *Call, 4096)
		r.active = map[*Call]struct{}{}
		r.slots.New = func() any { return new(slot) }
	})
	c, err := r.Start("stalled", "1", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	payload := make([]byte, 160)
	done := make(chan struct{})
	go func() {
		for i := 0; i < queueLen+36; i++ {
			c.Push(0, uint16(i), uint32(160*i), g711.PCMA, payload)
		}
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(2 * time.Second):
		t.Fatal("Push blocked on a full queue")
	}
	if got := r.Dropped.Load(); got != 36 {
		t.Fatalf("dropped %d, want 36", got)
	}
	go r.writer() // the writers come back: everything queued is written
	if _, err := c.Close(); err != nil {
		t.Fatal(err)
	}
	info, err := ReadInfo(c.Path())
	if err != nil || info.Frames < uint32(queueLen*160) {
		t.Fatalf("wrote %d frames, want the %d queued packets: %v", info.Frames, queueLen, err)
	}
}

// A side whose stream is replaced mid-recording (a transfer: the new phone
// starts its own timestamps) keeps being recorded, even when the new
// timestamps land within two seconds behind the old ones.
func TestNewStreamOnASideIsFollowed(t *testing.T) {
	r := &Recorder{Dir: t.TempDir()}
	c, err := r.Start("xfer", "2", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	old := &rtptest.Tone{Freq: 1000, PT: g711.PCMA}
	next := &rtptest.Tone{Freq: 1500, PT: g711.PCMA}
	feed(c, 1, old, 100000, 10, nil)               // 200 ms of the old phone
	feed(c, 1, next, 100000+10*160-12000, 50, nil) // 1.5 s behind its timestamps
	if _, err := c.Close(); err != nil {
		t.Fatal(err)
	}
	_, right, err := Channels(c.Path())
	if err != nil {
		t.Fatal(err)
	}
	tail := right[len(right)/2:]
	if !rtptest.Has(tail, 1500) {
		t.Fatal("the new stream was dropped as late")
	}
}
