package recordings

import (
	"encoding/json"
	"io/fs"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"callgate/media/record"
)

// Usage is the recordings' part of the admin page: where they are, what
// they take, how fast that grows and how long the disk lasts at that rate.
type Usage struct {
	Enabled   bool   `json:"enabled"`       // recording.enabled
	Dir       string `json:"dir,omitempty"` // recording.dir
	Files     int    `json:"files"`         // recordings on the local disk
	Bytes     int64  `json:"bytes"`         // their size
	FreeBytes uint64 `json:"free_bytes"`    // free space of their filesystem
	MinFree   uint64 `json:"min_free"`      // recording.min_free in bytes
	// EncodeBacklog is how many recordings wait to be compressed.
	EncodeBacklog int64 `json:"encode_backlog"`
	// Week is what the calls of each of the last seven days recorded,
	// oldest first, wherever the recordings are now.
	Week []DayBytes `json:"week"`
	// DaysLeft is how many days the free space above min_free lasts at
	// the rate the local disk took recordings over the last week; 0 when
	// it does not grow (everything archived, or no calls).
	DaysLeft float64 `json:"days_left,omitempty"`
	// Archive is the archive's state (nil: no archive).
	Archive *ArchiveUsage `json:"archive,omitempty"`
}

// DayBytes is one day's recordings.
type DayBytes struct {
	Day   string `json:"day"` // YYYY-MM-DD, local time
	Bytes int64  `json:"bytes"`
}

// ArchiveUsage is what the admin page shows of the archive.
type ArchiveUsage struct {
	Files     int    `json:"files"`                // recordings in the bucket
	Bytes     int64  `json:"bytes"`                // their size
	Queued    int64  `json:"queued"`               // recordings waiting for upload
	LastError string `json:"last_error,omitempty"` // the last failure, until an upload succeeds
}

// usageEvery is how often Usage walks the recordings: a year of calls is
// many files, and the admin page is reloaded often. A recording
// compressed or archived since the last walk brings the next one forward
// to usageMoved after it, so the counts do not contradict the backlogs.
const (
	usageEvery = time.Minute
	usageMoved = 5 * time.Second
)

type usageCache struct {
	moved atomic.Bool // a recording was compressed or archived since the walk
	mu    sync.Mutex
	at    time.Time
	last  Usage
	// localPerDay is the local disk's growth over the last week.
	localPerDay float64
	archived    ArchiveUsage
}

// Usage counts the recordings and their bytes, locally and in the archive
// (at most once a minute), and reads the free space and the backlogs
// (every time: a disk filling up is what it is watched for). With
// recording disabled it is the zero Usage.
func (l *Library) Usage() Usage {
	if !l.cfg.Enabled {
		return Usage{}
	}
	c := &l.usage
	c.mu.Lock()
	defer c.mu.Unlock()
	if since := time.Since(c.at); since >= usageEvery || since >= usageMoved && c.moved.Load() {
		c.moved.Store(false)
		l.count(c, time.Now())
	}
	u := c.last
	u.FreeBytes, u.MinFree, u.EncodeBacklog = l.guard.FreeBytes(), l.minFree(), l.enc.backlog.Load()
	if c.localPerDay > 0 && u.FreeBytes > u.MinFree {
		u.DaysLeft = float64(u.FreeBytes-u.MinFree) / c.localPerDay
	}
	if a := l.arch; a != nil {
		au := c.archived
		au.Queued = a.depth.Load()
		if e := a.lastErr.Load(); e != nil {
			au.LastError = *e
		}
		u.Archive = &au
	}
	return u
}

// count walks the recordings: local files, then the archive's index.
func (l *Library) count(c *usageCache, now time.Time) {
	u := Usage{Enabled: true, Dir: l.cfg.Dir}
	week := make([]DayBytes, 7)
	day := map[string]int{}
	for i := range week {
		week[i].Day = now.AddDate(0, 0, i-6).Format(time.DateOnly)
		day[week[i].Day] = i
	}
	add := func(at time.Time, n int64) bool {
		i, ok := day[at.In(now.Location()).Format(time.DateOnly)]
		if ok {
			week[i].Bytes += n
		}
		return ok
	}
	var localWeek int64
	_ = filepath.WalkDir(l.cfg.Dir, func(p string, e fs.DirEntry, err error) error {
		if err == nil && e.IsDir() && e.Name() == record.MarkerDir {
			return filepath.SkipDir // markers of recordings in progress, not recordings
		}
		if err != nil || e.IsDir() || !isRecording(e.Name()) {
			return nil
		}
		if info, err := e.Info(); err == nil {
			u.Files++
			u.Bytes += info.Size()
			if add(info.ModTime(), info.Size()) {
				localWeek += info.Size()
			}
		}
		return nil
	})
	var au ArchiveUsage
	if a := l.arch; a != nil {
		_ = a.cfg.Index.Each(func(_ string, v []byte) error {
			var at archived
			if json.Unmarshal(v, &at) == nil {
				au.Files++
				au.Bytes += at.Size
				if at.Removed { // a local copy kept was counted above
					add(at.Ended, at.Size)
				}
			}
			return nil
		})
	}
	u.Week = week
	c.at, c.last, c.localPerDay, c.archived = now, u, float64(localWeek)/7, au
}
