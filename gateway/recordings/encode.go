package recordings

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"callgate/internal/aside"
	"callgate/media/opus"
	"callgate/media/record"

	"golang.org/x/sys/unix"
)

// The forms a recording is kept in after its call.
const (
	// FormatOpus compresses each leg's recording to Ogg Opus once it is
	// complete, stereo kept (left the client, right the employee).
	FormatOpus = "opus"
	// FormatWAV keeps the G.711 WAV the recorder wrote.
	FormatWAV = "wav"
)

// encodeNice is the encoders' scheduling priority: they run when the
// relay and the call setup leave a processor idle (SCHED_IDLE; at nice 19
// an encoder on a two-core box still raised the relay's p99 latency from
// 0.9 to 2.3-2.6 ms at 300 calls).
const encodeNice = aside.Idle

// encoder turns complete WAV recordings into Ogg Opus off the call's path.
// Its queue is the recordings directory itself: a WAV that is not being
// recorded is waiting to be encoded, so a restart finds the work a crash
// interrupted (a half-written .opus.tmp is dropped and made again).
type encoder struct {
	lib   *Library
	queue chan string
	// queued are the paths waiting or being encoded: a leg closing while
	// the start-up scan finds it is queued once.
	mu     sync.Mutex
	queued map[string]bool
	// gaveUp are the WAVs that could not be encoded: they are archived as
	// they are rather than wait for an encoding that will not come.
	gaveUp  map[string]bool
	backlog atomic.Int64
	cpu     atomic.Int64 // nanoseconds of CPU the encodings took
	done    atomic.Int64
	failed  atomic.Int64
}

// Encoders is how many recordings are encoded at once: a quarter of the
// processors, at least one, so that compression never competes with the
// relay for more than a share of the machine.
func Encoders() int { return max(1, runtime.NumCPU()/4) }

// enqueue hands a complete WAV to the encoders.
func (e *encoder) enqueue(path string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.queued[path] {
		return
	}
	if e.queued == nil {
		e.queued = map[string]bool{}
	}
	e.queued[path] = true
	e.backlog.Add(1)
	go func() { e.queue <- path }() // never blocks the caller (a call's goroutine)
}

// keptAsWAV tells whether path (a WAV) failed to encode since the start.
func (e *encoder) keptAsWAV(path string) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.gaveUp[path]
}

// finished takes a path off the queue.
func (e *encoder) finished(path string) {
	e.mu.Lock()
	delete(e.queued, path)
	e.mu.Unlock()
	e.backlog.Add(-1)
}

// RunEncoders encodes recordings until ctx ends: those left from before
// (a restart, a crash) first, then each leg as its recording closes. It
// does nothing when recordings are kept as WAV.
func (l *Library) RunEncoders(ctx context.Context) {
	if l.cfg.Format != FormatOpus {
		return
	}
	e := l.enc
	for _, p := range e.leftovers() {
		e.enqueue(p)
	}
	var wg sync.WaitGroup
	for range max(1, l.cfg.Encoders) {
		wg.Go(func() {
			for {
				select {
				case <-ctx.Done():
					return
				case p := <-e.queue:
					// On a lowered thread of its own with a Go processor
					// more: a cgo call keeps its processor until the
					// scheduler takes it back (up to 10 ms), which the
					// relay's workers would otherwise wait for.
					aside.RunAt(encodeNice, func() { e.encode(p) })
					e.finished(p)
				}
			}
		})
	}
	wg.Wait()
}

// leftovers are the WAVs waiting from before and drops the temporary
// files of encodings a crash cut short.
func (e *encoder) leftovers() []string {
	dir := e.lib.cfg.Dir
	active := record.InProgress(dir)
	var out []string
	_ = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		switch {
		case err != nil:
			return nil
		case d.IsDir() && d.Name() == record.MarkerDir:
			return filepath.SkipDir
		case d.IsDir():
			return nil
		case strings.HasSuffix(p, ".opus.tmp"):
			_ = os.Remove(p)
		case strings.HasSuffix(p, ".wav") && !active[p]:
			out = append(out, p)
		}
		return nil
	})
	return out
}

// encode makes path's Ogg Opus twin. The WAV goes only once the Ogg Opus
// file is written, synced, read back to the right length and in place;
// any failure keeps the WAV (it plays as before, and the next start tries
// again).
func (e *encoder) encode(path string) {
	if _, err := os.Stat(path); os.IsNotExist(err) {
		return // deleted meanwhile (retention), or encoded already
	}
	// The encoding has its thread to itself (aside.RunAt locks it): the
	// thread's CPU time is the encoding's.
	start := threadCPU()
	defer func() { e.cpu.Add(int64(threadCPU() - start)) }()
	if err := e.encodeFile(path); err != nil {
		e.failed.Add(1)
		e.mu.Lock()
		if e.gaveUp == nil {
			e.gaveUp = map[string]bool{}
		}
		e.gaveUp[path] = true
		e.mu.Unlock()
		e.lib.log.Warn("recording not compressed; the WAV is kept", "path", path, "error", err)
		return
	}
	e.done.Add(1)
	e.lib.usage.moved.Store(true)
}

func (e *encoder) encodeFile(path string) error {
	st, err := os.Stat(path)
	if err != nil {
		return err
	}
	pcm, err := record.PCM(path)
	if err != nil {
		return err
	}
	dst := strings.TrimSuffix(path, ".wav") + ".opus"
	tmp := dst + ".tmp"
	defer os.Remove(tmp) // gone once renamed
	o := opus.Telephony()
	o.Tags = map[string]string{"TITLE": filepath.Base(dst), "ENCODED_BY": "callgate"}
	enc, err := opus.Create(tmp, 8000, 2, o)
	if err != nil {
		return err
	}
	if err := enc.Write(pcm); err != nil {
		_ = enc.Close()
		return err
	}
	if err := enc.Close(); err != nil {
		return err
	}
	if err := syncFile(tmp); err != nil {
		return err
	}
	if err := checkLength(tmp, len(pcm)/2); err != nil {
		return err
	}
	// The call ended when the WAV was last written: retention counts from
	// there, whatever form the recording is in.
	if err := os.Chtimes(tmp, st.ModTime(), st.ModTime()); err != nil {
		return err
	}
	if err := os.Rename(tmp, dst); err != nil {
		return err
	}
	if err := syncFile(filepath.Dir(dst)); err != nil {
		return err
	}
	if err := os.Remove(path); err != nil {
		return err
	}
	return syncFile(filepath.Dir(path))
}

// checkLength reads the Ogg Opus file back: every packet must decode and
// the whole must last exactly as long as the frames it was made from.
func checkLength(path string, frames int) error {
	n, err := opus.Check(path)
	if err != nil {
		return err
	}
	if want := int64(frames) * opus.Rate / 8000; n != want {
		return fmt.Errorf("%s decodes to %s, its WAV lasts %s", path,
			time.Duration(n)*time.Second/opus.Rate, time.Duration(want)*time.Second/opus.Rate)
	}
	return nil
}

// threadCPU is the CPU time of the calling thread so far.
func threadCPU() time.Duration {
	var ru unix.Rusage
	if unix.Getrusage(unix.RUSAGE_THREAD, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func syncFile(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}
