package recordings

import (
	"io/fs"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"callgate/media/record"
)

// DiskGuard keeps recordings from filling the disk: it reports the disk
// low once free space is below MinFree, and the recorder then starts no
// recording and stops those in progress (the calls go on).
type DiskGuard struct {
	Dir     string // the recordings directory
	MinFree uint64 // bytes; 0 disables the guard (until SetMinFree)
	// free is record.FreeBytes; tests replace it.
	free func(dir string) (uint64, error)
	// minFree replaces MinFree once SetMinFree set it.
	minFree atomic.Pointer[uint64]
}

// SetMinFree changes the free space recordings leave (a configuration
// reload); the next check uses it.
func (g *DiskGuard) SetMinFree(n uint64) { g.minFree.Store(&n) }

func (g *DiskGuard) limit() uint64 {
	if n := g.minFree.Load(); n != nil {
		return *n
	}
	return g.MinFree
}

// Low implements record.Space. A disk whose free space cannot be read
// is not low: a failing statfs must not silence every recording.
func (g *DiskGuard) Low() bool {
	limit := g.limit()
	if limit == 0 {
		return false
	}
	free, err := g.freeBytes(g.Dir)
	return err == nil && free < limit
}

func (g *DiskGuard) freeBytes(dir string) (uint64, error) {
	if g.free != nil {
		return g.free(dir)
	}
	return record.FreeBytes(dir)
}

// FreeBytes is the free space of the filesystem the recordings are (or,
// before the first one, will be) on: that of the nearest directory that
// exists. 0 if none can be read.
func (g *DiskGuard) FreeBytes() uint64 {
	for p := g.Dir; ; p = filepath.Dir(p) {
		if free, err := g.freeBytes(p); err == nil || p == filepath.Dir(p) {
			return free
		}
	}
}

// Usage is the recordings' part of the admin page.
type Usage struct {
	Enabled   bool   `json:"enabled"`       // recording.enabled
	Dir       string `json:"dir,omitempty"` // recording.dir
	Files     int    `json:"files"`         // recordings kept
	Bytes     int64  `json:"bytes"`         // their size
	FreeBytes uint64 `json:"free_bytes"`    // free space of their filesystem
	// EncodeBacklog is how many recordings wait to be compressed.
	EncodeBacklog int64 `json:"encode_backlog"`
	// Archive is the archive's state (nil: no archive).
	Archive *ArchiveUsage `json:"archive,omitempty"`
}

// ArchiveUsage is what the admin page shows of the archive.
type ArchiveUsage struct {
	Queued    int64  `json:"queued"`               // recordings waiting for upload
	LastError string `json:"last_error,omitempty"` // the last failure, until an upload succeeds
}

// usageEvery is how often Usage walks the recordings: a year of calls is
// many files, and the admin page is reloaded often.
const usageEvery = time.Minute

type usageCache struct {
	mu   sync.Mutex
	at   time.Time
	last Usage
}

// Usage counts the recordings and their bytes (at most once a minute) and
// reads the free space (every time: a disk filling up is what it is
// watched for). With recording disabled it is the zero Usage.
func (l *Library) Usage() Usage {
	if !l.cfg.Enabled {
		return Usage{}
	}
	c := &l.usage
	c.mu.Lock()
	defer c.mu.Unlock()
	if time.Since(c.at) < usageEvery {
		c.last.FreeBytes, c.last.EncodeBacklog = l.guard.FreeBytes(), l.enc.backlog.Load()
		u := c.last
		u.Archive = l.archiveUsage()
		return u
	}
	u := Usage{Enabled: true, Dir: l.cfg.Dir}
	_ = filepath.WalkDir(l.cfg.Dir, func(p string, e fs.DirEntry, err error) error {
		if err != nil || e.IsDir() || !isRecording(e.Name()) {
			return nil
		}
		if info, err := e.Info(); err == nil {
			u.Files++
			u.Bytes += info.Size()
		}
		return nil
	})
	u.FreeBytes, u.EncodeBacklog = l.guard.FreeBytes(), l.enc.backlog.Load()
	c.at, c.last = time.Now(), u
	u.Archive = l.archiveUsage()
	return u
}

func (l *Library) archiveUsage() *ArchiveUsage {
	a := l.arch
	if a == nil {
		return nil
	}
	u := &ArchiveUsage{Queued: a.depth.Load()}
	if e := a.lastErr.Load(); e != nil {
		u.LastError = *e
	}
	return u
}
