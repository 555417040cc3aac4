package recordings

import (
	"path/filepath"
	"sync/atomic"

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
