// Package record writes each call leg to a stereo WAV file off the media
// path: the relay hands packet copies to a bounded per-call queue (never
// blocking; a full queue drops and counts), and a writer goroutine places
// them by RTP timestamp, filling gaps and a silent side with silence. The
// header is rewritten every second and files left by a crash are repaired
// at start-up, so a kill -9 loses at most the last second. A recording
// stops cleanly, as a valid shorter file, when the disk runs low (Space)
// or a write fails (disk full): the call itself goes on. Where files go
// and how long they stay is the caller's policy (Recorder.Name).
package record

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"callgate/media/g711"
)

// ErrLowDisk means free space is below the configured minimum; the call goes
// on unrecorded.
var ErrLowDisk = errors.New("recording skipped: free disk space below recording.min_free")

// errBelowMinFree is why a recording in progress stopped before a write failed.
var errBelowMinFree = errors.New("free disk space fell below recording.min_free")

// Recorder creates recordings under Dir.
type Recorder struct {
	Dir string
	// Name says where under Dir a leg's recording goes: a local path
	// (filepath.IsLocal) built from the call, the leg and when it
	// started. nil: FileName straight under Dir.
	Name func(callID, leg string, start time.Time) string
	// Space is asked whether there is room to record; nil: recordings
	// stop only when a write fails.
	Space Space
	Log   *slog.Logger // nil: slog.Default()
	// Skipped, Dropped and Bytes feed callgate_recording_skipped_total,
	// callgate_recording_dropped_packets_total and callgate_recording_bytes_total.
	Skipped, Dropped, Bytes atomic.Uint64
	// Truncated counts recordings stopped early by a full disk
	// (callgate_recording_truncated_total).
	Truncated atomic.Uint64

	// low is set while Space reports low; the ticker asks at most every
	// freeEvery.
	low      atomic.Bool
	lastFree time.Time

	// A few shared writers serve every call (no goroutine per call): a call
	// with queued packets, or due for a commit, is put on work.
	once   sync.Once
	work   chan *Call
	slots  sync.Pool
	mu     sync.Mutex
	active map[*Call]struct{}
}

// writers is how many goroutines write recordings.
const writers = 2

func (r *Recorder) log() *slog.Logger {
	if r.Log != nil {
		return r.Log
	}
	return slog.Default()
}

// checkFree updates low from Space.
func (r *Recorder) checkFree(now time.Time) {
	if r.Space == nil || now.Sub(r.lastFree) < freeEvery {
		return
	}
	r.lastFree = now
	r.low.Store(r.Space.Low())
}

func (r *Recorder) init() {
	r.once.Do(func() {
		r.work = make(chan *Call, 4096)
		r.active = map[*Call]struct{}{}
		r.slots.New = func() any { return new(slot) }
		for i := 0; i < writers; i++ {
			go r.writer()
		}
		go r.ticker()
	})
}

func (r *Recorder) writer() {
	for c := range r.work {
		c.process()
	}
}

// ticker schedules every call now and then, so that files follow the clock
// even when no packets come (hold) and headers get rewritten.
func (r *Recorder) ticker() {
	t := time.NewTicker(commitEvery)
	defer t.Stop()
	for now := range t.C {
		r.checkFree(now)
		r.mu.Lock()
		for c := range r.active {
			c.schedule()
		}
		r.mu.Unlock()
	}
}

const (
	queueLen    = 64                     // packets waiting for the writer, per call (640 ms of both sides; slots are pooled)
	slotSize    = 320                    // largest G.711 payload kept (40 ms)
	windowLen   = 4000                   // frames held in memory before they are final (0.5 s)
	jitterDelay = 1600                   // frames (200 ms) a packet may arrive late and still be placed
	headerEvery = time.Second            // header rewrite period
	commitEvery = 250 * time.Millisecond // data older than the jitter delay goes to the file this often
	freeEvery   = time.Second            // free-space check period while recording
)

// FileName is the file name of a leg's recording. The call id comes from
// the network (a SIP Call-ID): whatever it holds, the name stays one file
// name and cannot reach another directory.
func FileName(callID, leg string) string {
	return safe(callID) + "-" + safe(leg) + ".wav"
}

// safe keeps a network-supplied id (a SIP Call-ID) from naming another path.
func safe(s string) string {
	s = strings.Map(func(r rune) rune {
		if r == '/' || r == '\\' || r < 0x20 || r == 0x7f {
			return '_'
		}
		return r
	}, s)
	if s == "" || s == "." || s == ".." {
		return "_"
	}
	return s
}

type slot struct {
	side int
	seq  uint16
	ts   uint32
	pt   uint8
	n    int
	at   int64 // arrival, unix ns
	data [slotSize]byte
}

// Call is one leg being recorded.
type Call struct {
	rec    *Recorder
	callID string
	leg    string
	path   string
	marker string
	f      wavFile
	q      chan *slot
	done   chan struct{}
	closed atomic.Bool
	// scheduled is set while the call waits on (or is being served from)
	// the recorder's work queue, so a call is served by one writer at a time.
	scheduled atomic.Bool
	once      sync.Once
	err       error
	finished  bool
	// halted is set once the recording stopped early (disk full): packets
	// are no longer queued. stopped is the writer's copy.
	halted  atomic.Bool
	stopped bool

	lastCommit time.Time
	lastHeader time.Time
	size       int64

	// owned by the writer goroutine
	pt      uint8
	ptSet   bool
	start   int64 // unix ns of the first packet
	sides   [2]sideClock
	win     []byte // interleaved frames [base, base+windowLen)
	base    int64  // frame index of win[0] = frames already in the file
	high    int64  // one past the highest frame placed
	written int64
}

// wavFile is what a recording is written to (an *os.File; tests fail it).
type wavFile interface {
	io.Writer
	io.WriterAt
	Truncate(size int64) error
	Close() error
}

type sideClock struct {
	anchored bool
	ts0      uint32
	offset   int64 // frame index of ts0
	lastTS   uint32
}

// Start creates the recording of one leg of callID. It fails with ErrLowDisk
// (counted in Skipped) when the disk is too full.
func (r *Recorder) Start(callID, leg string, now time.Time) (*Call, error) {
	name := FileName(callID, leg)
	if r.Name != nil {
		name = r.Name(callID, leg, now)
	}
	if !filepath.IsLocal(name) {
		return nil, fmt.Errorf("recording %q: not a path under %s", name, r.Dir)
	}
	path := filepath.Join(r.Dir, name)
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return nil, fmt.Errorf("recording %s: %w", path, err)
	}
	if r.Space != nil {
		// Fresher than the ticker's view: a recording started after space
		// came back must not be stopped by a stale low flag.
		low := r.Space.Low()
		r.low.Store(low)
		if low {
			r.Skipped.Add(1)
			return nil, ErrLowDisk
		}
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o640)
	if err != nil {
		if errors.Is(err, syscall.ENOSPC) {
			r.Skipped.Add(1)
		}
		return nil, fmt.Errorf("recording %s: %w", path, err)
	}
	if _, err := f.Write(header(g711.PCMA, 0)); err != nil {
		// A header cut short by a full disk would be an invalid file.
		f.Close()
		os.Remove(path)
		if errors.Is(err, syscall.ENOSPC) {
			r.Skipped.Add(1)
		}
		return nil, fmt.Errorf("recording %s: %w", path, err)
	}
	r.init()
	c := &Call{rec: r, callID: callID, leg: leg, path: path, f: f, q: make(chan *slot, queueLen), done: make(chan struct{}), lastCommit: now, lastHeader: now}
	rel, _ := filepath.Rel(r.Dir, path)
	if err := os.MkdirAll(filepath.Join(r.Dir, MarkerDir), 0o750); err == nil {
		c.marker = filepath.Join(r.Dir, MarkerDir, strings.ReplaceAll(rel, string(filepath.Separator), "_"))
		_ = os.WriteFile(c.marker, []byte(rel), 0o640)
	}
	r.mu.Lock()
	r.active[c] = struct{}{}
	r.mu.Unlock()
	return c, nil
}

// Path of the file.
func (c *Call) Path() string { return c.path }

// Truncated reports whether the recording was stopped early by a full
// disk; the file holds the audio up to that point.
func (c *Call) Truncated() bool { return c.halted.Load() }

// Push queues a packet for side 0 (left, outside party) or 1 (right,
// employee). It never blocks: with the queue full the packet is dropped
// and counted.
func (c *Call) Push(side int, seq uint16, ts uint32, pt uint8, payload []byte) {
	if (pt != g711.PCMA && pt != g711.PCMU) || len(payload) == 0 || len(payload) > slotSize || c.closed.Load() || c.halted.Load() {
		return
	}
	s := c.rec.slots.Get().(*slot)
	s.side, s.seq, s.ts, s.pt, s.n, s.at = side&1, seq, ts, pt, copy(s.data[:], payload), time.Now().UnixNano()
	select {
	case c.q <- s:
		// Wake a writer once 80 ms of audio has queued: few wake-ups, and
		// few pooled slots held per call.
		if len(c.q) >= 8 {
			c.schedule()
		}
	default:
		c.rec.slots.Put(s)
		c.rec.Dropped.Add(1)
	}
}

// schedule puts the call on the work queue unless it is there already. It
// never blocks: with the queue full the ticker reschedules the call later.
func (c *Call) schedule() {
	if !c.scheduled.CompareAndSwap(false, true) {
		return
	}
	select {
	case c.rec.work <- c:
	default:
		c.scheduled.Store(false)
	}
}

// Close flushes what is queued, finalises the header and returns the size.
func (c *Call) Close() (int64, error) {
	c.once.Do(func() {
		c.closed.Store(true)
		// Keep offering the call to the writers until one finishes it.
		for {
			c.schedule()
			select {
			case <-c.done:
				c.rec.mu.Lock()
				delete(c.rec.active, c)
				c.rec.mu.Unlock()
				st, err := os.Stat(c.path)
				if err == nil {
					c.size = st.Size()
				} else if c.err == nil {
					c.err = err
				}
				return
			case <-time.After(10 * time.Millisecond):
			}
		}
	})
	return c.size, c.err
}

// process runs on a writer: place what is queued, commit what is final,
// and finish a closed call.
func (c *Call) process() {
	if c.finished {
		c.scheduled.Store(false)
		return
	}
	if c.win == nil {
		c.win = make([]byte, 2*windowLen)
	}
	for drained := false; !drained; {
		select {
		case s := <-c.q:
			if !c.stopped {
				c.place(s)
			}
			c.rec.slots.Put(s)
		default:
			drained = true
		}
	}
	now := time.Now()
	if c.closed.Load() {
		c.finish()
		c.finished = true
		close(c.done)
		return // stays scheduled: nothing will be done for it again
	}
	if !c.stopped && c.rec.low.Load() {
		// Below min_free: keep what has arrived, then stop before the
		// disk is full.
		if err := c.commit(c.high); err != nil {
			c.stop(err)
		} else {
			c.stop(errBelowMinFree)
		}
	}
	if !c.stopped && now.Sub(c.lastCommit) >= commitEvery {
		c.lastCommit = now
		// Without packets (hold, silence suppression) the file still follows the clock.
		err := c.commit(max(c.high, c.wallFrame(now)) - jitterDelay)
		// A crash is repaired from the file size, so the header only has to
		// be right for readers of a recording in progress.
		if err == nil && now.Sub(c.lastHeader) >= headerEvery {
			c.lastHeader = now
			err = writeSizes(c.f, uint32(c.written))
		}
		if err != nil {
			c.stop(err)
		}
	}
	c.scheduled.Store(false)
	if len(c.q) > 0 {
		c.schedule()
	}
}

func (c *Call) finish() {
	if c.stopped {
		return // sealed when it stopped
	}
	if err := c.commit(max(c.high, c.wallFrame(time.Now()))); err != nil {
		c.stop(err)
		return
	}
	c.seal()
}

// stop ends a recording early because the disk is (nearly) full: the file
// is sealed as a valid WAV of what was written, and the call goes on.
func (c *Call) stop(reason error) {
	if c.stopped {
		return
	}
	c.stopped = true
	c.halted.Store(true)
	c.seal()
	c.rec.Truncated.Add(1)
	c.rec.log().Warn("recording stopped early: disk full or below recording.min_free; the call goes on unrecorded",
		"call_id", c.callID, "leg", c.leg, "path", c.path, "recorded_seconds", float64(c.written)/8000, "reason", reason)
}

// seal makes the file a valid WAV of the frames written: a write cut short
// by a full disk may have left part of a frame, which is cut off, and the
// header sizes are set to what is in the file. Rewriting the header and
// truncating need no new disk blocks, so this works on a full disk.
func (c *Call) seal() {
	err := c.f.Truncate(headerLen + 2*c.written)
	if err == nil {
		err = writeSizes(c.f, uint32(c.written))
	}
	if cerr := c.f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		// The marker stays, so the next start repairs the file.
		if c.err == nil {
			c.err = fmt.Errorf("recording %s: %w", c.path, err)
		}
		return
	}
	if c.marker != "" {
		os.Remove(c.marker)
	}
}

// wallFrame is the frame index of a wall-clock time (0 before any packet).
func (c *Call) wallFrame(t time.Time) int64 {
	if !c.ptSet {
		return 0
	}
	return (t.UnixNano() - c.start) * 8000 / int64(time.Second)
}

// place puts a packet's samples at their frame positions.
func (c *Call) place(s *slot) {
	if !c.ptSet {
		c.pt, c.ptSet = s.pt, true
		c.start = s.at
		c.silence(c.win)
		if _, err := c.f.WriteAt(header(c.pt, 0), 0); err != nil {
			c.stop(err)
			return
		}
	}
	sc := &c.sides[s.side]
	wall := (s.at - c.start) * 8000 / int64(time.Second)
	pos := int64(0)
	if sc.anchored {
		pos = sc.offset + int64(int32(s.ts-sc.ts0))
		// A new stream (transfer, re-INVITE) restarts its timestamps: follow
		// the wall clock. Within one stream timestamps advance 160 a packet,
		// so a jump of over a second from the last packet means a new one,
		// even if it happens to land near the wall clock.
		jump := int64(int32(s.ts - sc.lastTS))
		if d := pos - wall; d > 16000 || d < -16000 || jump > 8000 || jump < -8000 {
			sc.anchored = false
		}
	}
	if !sc.anchored {
		sc.anchored, sc.ts0, sc.offset = true, s.ts, wall
		pos = wall
	}
	sc.lastTS = s.ts
	if pos < c.base {
		return // later than the jitter allowance: already written as silence
	}
	end := pos + int64(s.n)
	if end > c.base+windowLen {
		if err := c.commit(end - windowLen); err != nil {
			c.stop(err)
			return
		}
	}
	data := s.data[:s.n]
	for i, b := range data {
		if s.pt != c.pt {
			b = g711.Encode(c.pt, g711.Decode(s.pt, b))
		}
		f := pos + int64(i) - c.base
		if f >= 0 && f < windowLen {
			c.win[2*f+int64(s.side)] = b
		}
	}
	if end > c.high {
		c.high = end
	}
}

// commit writes frames before upto to the file and slides the window. On a
// write error (disk full) written counts only the whole frames that made it
// to the file, and the caller stops the recording.
func (c *Call) commit(upto int64) error {
	// Beyond the window (a jump), the gap is written as silence.
	for upto > c.base {
		n := min(upto-c.base, windowLen)
		w, err := c.f.Write(c.win[:2*n])
		if err == nil && w < int(2*n) {
			err = io.ErrShortWrite
		}
		c.rec.Bytes.Add(uint64(w))
		if err != nil {
			c.written += int64(w / 2)
			return err // an *os.PathError: names the file
		}
		c.written += n
		copy(c.win, c.win[2*n:])
		c.silence(c.win[2*(windowLen-n):])
		c.base += n
	}
	return nil
}

func (c *Call) silence(b []byte) {
	s := g711.Silence(c.pt)
	for i := range b {
		b[i] = s
	}
}
