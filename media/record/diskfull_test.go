package record

import (
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"callgate/media/g711"
	"callgate/media/rtptest"
)

// fullFile is a recording on a disk with room for only so many more bytes:
// appending beyond that is a short write with ENOSPC, as write(2) does.
// Overwriting (the header) and truncating need no new blocks and work.
type fullFile struct {
	*os.File
	mu   sync.Mutex
	room int
}

func (f *fullFile) Write(b []byte) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(b) <= f.room {
		f.room -= len(b)
		return f.File.Write(b)
	}
	n, err := f.File.Write(b[:f.room])
	f.room -= n
	if err == nil {
		err = &os.PathError{Op: "write", Path: f.Name(), Err: syscall.ENOSPC}
	}
	return n, err
}

// checkValid asserts that a recording's header sizes match the data in it
// and returns its frames.
func checkValid(t *testing.T, path string) uint32 {
	t.Helper()
	info, err := ReadInfo(path)
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if int64(len(b)) != headerLen+2*int64(info.Frames) {
		t.Fatalf("header says %d data bytes, file holds %d", 2*info.Frames, len(b)-headerLen)
	}
	if riff := binary.LittleEndian.Uint32(b[offRIFFSize:]); int(riff) != len(b)-8 {
		t.Fatalf("RIFF size %d, file %d bytes", riff, len(b))
	}
	if fact := binary.LittleEndian.Uint32(b[offFact:]); fact != info.Frames {
		t.Fatalf("fact %d, frames %d", fact, info.Frames)
	}
	return info.Frames
}

func TestWriteErrorStopsRecordingWithValidFile(t *testing.T) {
	dir := t.TempDir()
	r := &Recorder{Dir: dir}
	c, err := r.Start("full", "1", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	// Room for 0.75 s and a half frame: the last write is cut mid-frame.
	const room = 12001
	c.f = &fullFile{File: c.f.(*os.File), room: room}
	done := make(chan struct{})
	go func() {
		feed(c, 1, &rtptest.Tone{Freq: 1000, PT: g711.PCMA}, 5000, 100, nil)
		close(done)
	}()
	feed(c, 0, &rtptest.Tone{Freq: 440, PT: g711.PCMA}, 0, 100, nil) // 2 s
	<-done
	if !c.Truncated() || r.Truncated.Load() != 1 {
		t.Fatalf("truncated %v, counter %d", c.Truncated(), r.Truncated.Load())
	}
	size, err := c.Close()
	if err != nil {
		t.Fatal(err)
	}
	frames := checkValid(t, c.Path())
	if frames != room/2 || size != headerLen+2*int64(frames) {
		t.Fatalf("%d frames in %d bytes, want %d frames", frames, size, room/2)
	}
	l, rt, err := Channels(c.Path())
	if err != nil || len(l) != int(frames) {
		t.Fatalf("%d samples, %v", len(l), err)
	}
	if !rtptest.Has(l[1600:5600], 440) || !rtptest.Has(rt[1600:5600], 1000) {
		t.Fatal("the recorded part lost its tones")
	}
	if marks, _ := os.ReadDir(filepath.Join(dir, MarkerDir)); len(marks) != 0 {
		t.Fatalf("marker left for a sealed file: %v", marks)
	}
	if r.Bytes.Load() != room {
		t.Fatalf("bytes counter %d, on disk %d", r.Bytes.Load(), room)
	}
}

func TestLowDiskStopsRecordingWhileWriting(t *testing.T) {
	dir := t.TempDir()
	space := &lowSpace{}
	r := &Recorder{Dir: dir, Space: space}
	start := time.Now()
	c, err := r.Start("low", "1", start)
	if err != nil {
		t.Fatal(err)
	}
	tone := &rtptest.Tone{Freq: 440, PT: g711.PCMU}
	feed(c, 0, tone, 0, 50, nil) // 1 s with room to spare
	space.low.Store(true)
	feed(c, 0, tone, 8000, 100, nil) // the disk "fills" during these 2 s
	if !c.Truncated() || r.Truncated.Load() != 1 {
		t.Fatalf("recording not stopped below min_free: truncated %v, counter %d", c.Truncated(), r.Truncated.Load())
	}
	if _, err := c.Close(); err != nil {
		t.Fatal(err)
	}
	frames := checkValid(t, c.Path())
	// Stopped within about a second (check period) of space running low.
	if s := float64(frames) / 8000; s < 0.9 || s > 2.6 {
		t.Fatalf("recording stopped after %.2f s", s)
	}
	l, _, _ := Channels(c.Path())
	if !rtptest.Has(l[800:6400], 440) {
		t.Fatal("recorded part lost its tone")
	}
	if _, err := r.Start("low", "2", time.Now()); !errors.Is(err, ErrLowDisk) {
		t.Fatalf("next recording on a full disk: %v", err)
	}
	// Space comes back: recordings resume.
	space.low.Store(false)
	c2, err := r.Start("after", "1", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(1200 * time.Millisecond) // past a free-space check
	feed(c2, 0, tone, 0, 25, nil)
	if _, err := c2.Close(); err != nil || c2.Truncated() {
		t.Fatalf("recording after space returned: %v truncated %v", err, c2.Truncated())
	}
	if f := checkValid(t, c2.Path()); f < 3000 {
		t.Fatalf("%d frames", f)
	}
}

func TestRepairHeaderClaimingMoreThanOnDisk(t *testing.T) {
	// The field report: a header claiming 80,216 data bytes over 24,518
	// (a half frame at the end) left by a disk that filled up.
	p := filepath.Join(t.TempDir(), "x.wav")
	b := append(header(g711.PCMA, 80216/2), make([]byte, 24517)...)
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	frames, err := Repair(p)
	if err != nil || frames != 24516/2 {
		t.Fatalf("repaired to %d frames: %v", frames, err)
	}
	checkValid(t, p)
}
