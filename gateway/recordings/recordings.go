// Package recordings owns callgate's call recordings around the writer
// that makes them (media/record): where they are kept and under which
// names, how long (the retention janitor), whether there is room for more
// (the disk guard and the free-space view of the admin page), and how they
// are handed out (signed links, files opened for playback). Everything
// that would change if recordings moved elsewhere after the call (an
// archive to object storage, a compressed format) goes through this
// package, so the call model and the HTTP API do not change with it.
package recordings

import (
	"fmt"
	"log/slog"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"time"

	"callgate/media/record"
)

// Config is the recording part of callgate's configuration.
type Config struct {
	// Enabled is whether calls are recorded; the janitor and playback of
	// what is kept work either way.
	Enabled bool
	// Dir holds the recordings.
	Dir string
	// Retention is how long a recording is kept after its call ended.
	Retention time.Duration
	// MinFree is the free space (bytes) recordings leave on the disk:
	// below it no recording starts and those in progress stop. 0: no
	// guard.
	MinFree uint64
	// Format is what a recording becomes once its call leg ends: FormatOpus
	// or FormatWAV ("" is FormatWAV).
	Format string
	// Encoders is how many recordings are compressed at once (0: one).
	Encoders int
	Log      *slog.Logger // nil: slog.Default()
}

// Library is the recordings under one directory.
type Library struct {
	cfg   Config
	log   *slog.Logger
	rec   *record.Recorder
	guard *DiskGuard
	usage usageCache
	// retention is cfg.Retention, or what SetLimits set.
	retention atomic.Int64
	enc       *encoder
	arch      *archiver // nil: no archive
}

// New returns the library of the recordings under cfg.Dir and repairs
// those a crash left in progress, so that every file in it plays.
func New(cfg Config) *Library {
	l := &Library{cfg: cfg, log: cfg.Log}
	if l.log == nil {
		l.log = slog.Default()
	}
	l.retention.Store(int64(cfg.Retention))
	l.enc = &encoder{lib: l, queue: make(chan string)}
	l.guard = &DiskGuard{Dir: cfg.Dir, MinFree: cfg.MinFree}
	l.rec = &record.Recorder{Dir: cfg.Dir, Name: Name, Space: l.guard, Log: l.log.With("component", "recorder")}
	if repaired, err := record.RepairActive(cfg.Dir); err != nil {
		l.log.Warn("repairing interrupted recordings", "error", err)
	} else if len(repaired) > 0 {
		l.log.Info("recordings interrupted by a crash repaired", "count", len(repaired))
	}
	return l
}

// Name is where under the recordings directory a leg's recording goes:
// one directory per year, month and day of the call's start, so that a
// year of calls is not one directory and the janitor can drop whole days.
func Name(callID, leg string, start time.Time) string {
	return filepath.Join(start.Format("2006"), start.Format("01"), start.Format("02"), record.FileName(callID, leg))
}

// Recorder is the writer the library's recordings are made with.
func (l *Library) Recorder() *record.Recorder { return l.rec }

// Recording is one leg being recorded: Push hands it the leg's packets,
// Close ends it.
type Recording struct {
	*record.Call
	// Name is what the call record keeps to find the recording again
	// (Open, links), whatever form the recording takes later.
	Name string
	// Meta describes the recording to the archive (call id, leg,
	// employee, client, start); set before Close.
	Meta map[string]string
	lib  *Library
}

// Close ends the recording; a complete one is then compressed, when the
// library keeps Ogg Opus, off the caller's goroutine.
func (r *Recording) Close() (int64, error) {
	n, err := r.Call.Close()
	if err != nil {
		return n, err
	}
	if r.lib.arch != nil {
		r.lib.arch.queue(r.Name, r.Meta) // uploaded once in its final form
	}
	if r.lib.cfg.Format == FormatOpus {
		r.lib.enc.enqueue(r.Call.Path())
	}
	return n, err
}

// Start records leg n of a call from at on. It fails with
// record.ErrLowDisk when the disk guard refuses: the call goes on
// unrecorded.
func (l *Library) Start(callID string, n int, at time.Time) (*Recording, error) {
	c, err := l.rec.Start(callID, strconv.Itoa(n), at)
	if err != nil {
		return nil, err
	}
	name, err := filepath.Rel(l.cfg.Dir, c.Path())
	if err != nil {
		_, _ = c.Close()
		return nil, fmt.Errorf("recording %s: %w", c.Path(), err)
	}
	return &Recording{Call: c, Name: name, lib: l}, nil
}
